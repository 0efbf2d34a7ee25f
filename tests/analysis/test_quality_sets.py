"""The detector-quality protocol's sets stay disjoint (``benchmarks/labelled_runs.py``).

A held-out figure means something only if its runs share no seed and no problem instance with the
runs the thresholds were set on, nor with the unit-test fixtures (seeds 7-9).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "labelled_runs.py"
FIXTURE_SEEDS = {7, 8, 9}


@functools.cache
def _labelled_runs():
    spec = importlib.util.spec_from_file_location("labelled_runs", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being defined
    spec.loader.exec_module(module)
    return module


def _seeds(spec: dict) -> tuple[set[int], set[int]]:
    return set(spec["seeds"]), set(spec.get("task_seeds", spec["seeds"]))


def test_no_two_quality_sets_share_a_seed_or_a_problem_instance():
    sets = _labelled_runs().SETS
    for (name_a, a), (name_b, b) in combinations(sets.items(), 2):
        (seeds_a, tasks_a), (seeds_b, tasks_b) = _seeds(a), _seeds(b)
        assert not seeds_a & seeds_b, (name_a, name_b)
        assert not tasks_a & tasks_b, (name_a, name_b)


def test_unit_test_fixtures_and_the_rate_sweep_use_no_quality_set_seed():
    sweep = importlib.util.spec_from_file_location(
        "best_rate_sweep", PATH.parent / "best_rate_sweep.py"
    )
    module = importlib.util.module_from_spec(sweep)
    sweep.loader.exec_module(module)
    sweep_seeds = set(module.SWEEP_SEEDS)
    sweep_tasks = {seed + module.TASK_SEED_OFFSET for seed in module.SWEEP_SEEDS}
    for name, spec in _labelled_runs().SETS.items():
        seeds, tasks = _seeds(spec)
        assert not (seeds | tasks) & FIXTURE_SEEDS, name
        assert not seeds & sweep_seeds and not tasks & sweep_tasks, name


@pytest.mark.parametrize(
    "last",
    [
        "final4",
        "final5",
        "final6",
        "final7",
        "schedules",
        "adam",
        "adam_schedules",
        "final8",
        "adam_final",
        "final9",
        "adam_final2",
    ],
)
def test_the_last_held_out_sets_use_batch_sizes_no_other_set_uses(last):
    sets = _labelled_runs().SETS
    others = {b for name, spec in sets.items() if name != last for b in spec["batch_sizes"]}
    assert not set(sets[last]["batch_sizes"]) & others


def test_a_per_epoch_view_averages_each_epoch_and_keeps_the_runs_labels():
    lr = _labelled_runs()
    steps = np.arange(1, 1001)
    loss = np.linspace(10.0, 1.0, 1000)
    rate = np.where(steps <= 500, 0.1, 0.01)
    run = lr.LabelledRun("oscillation", "q", steps, loss, rate)
    view = lr.EpochView(run, 50)
    assert view.loss.size == 50
    assert view.loss[0] == pytest.approx(loss[:20].mean())
    assert (view.steps[0], view.steps[-1]) == (20, 1000)
    assert (view.lr[24], view.lr[25]) == (0.1, 0.01)
    # A wave of 7-30 steps averages out of an epoch's mean: neither required nor a false alarm.
    assert "oscillation" in run.labels and "oscillation" not in view.labels
    assert "oscillation" in view.acceptable


def test_climbed_away_is_the_issues_divergence():
    lr = _labelled_runs()
    falling = np.linspace(10.0, 1.0, 1000)
    assert not lr.climbed_away(falling)
    climbed = np.concatenate([np.linspace(10.0, 1.0, 500), np.linspace(1.0, 8.0, 500)])
    assert lr.climbed_away(climbed)
    assert lr.climbed_away(np.append(falling, np.nan))
    # A high noisy floor that never came back up is not divergence.
    assert not lr.climbed_away(np.concatenate([np.linspace(10.0, 6.0, 100), np.full(900, 6.0)]))


def test_a_smoothed_view_is_fastais_debiased_moving_average_up_to_the_first_nan():
    lr = _labelled_runs()
    loss = np.array([4.0, 2.0, 3.0, np.nan, 1.0])
    run = lr.LabelledRun("best", "r", np.arange(5), loss, np.full(5, 0.1))
    view = lr.SmoothedView(run, 0.5)
    # m1 = 2 -> 2 / 0.5 = 4; m2 = 1 + 1 = 2 -> 2 / 0.75; m3 = 1 + 1.5 = 2.5 -> 2.5 / 0.875.
    np.testing.assert_allclose(view.loss[:3], [4.0, 2.0 / 0.75, 2.5 / 0.875])
    assert np.isnan(view.loss[3]) and view.loss[4] == 1.0  # as logged from the first NaN on
