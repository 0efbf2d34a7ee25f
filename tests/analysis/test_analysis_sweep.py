"""Sweep analysis on real sweeps of lrwatch.tasks: the curve, the pick, the edges."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lrwatch import keys
from lrwatch.analysis import analyze_sweep, sensitivity_curve
from lrwatch.analysis.sweep import base_lr, final_loss
from lrwatch.run import Run, Series
from lrwatch.tasks import TrainConfig, train

# The quadratic task: MSE on features with scales up to 1, so the Hessian's largest eigenvalue
# is about 2 and plain SGD is stable below an LR of about 1 (2 / lambda_max).
GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
STEPS = 400


def quadratic(lr: float, steps: int = STEPS, seed: int = 0) -> Run:
    return train(TrainConfig(task="quadratic", lr=lr, steps=steps, seed=seed))


@pytest.fixture(scope="module")
def sweep() -> list[Run]:
    return [quadratic(lr) for lr in GRID]


def tail_mean(run: Run) -> float:
    """An independent, plain final loss: mean of the last 10%, inf if anything was non-finite."""
    values = run.loss.values
    if not np.all(np.isfinite(values)):
        return float("inf")
    return float(np.mean(values[-max(5, values.size // 10) :]))


def test_sweep_pick_is_near_the_grid_best_and_trains_well(sweep):
    finals = [tail_mean(run) for run in sweep]
    grid_best = GRID[int(np.argmin(finals))]
    rec = analyze_sweep(sweep)
    assert rec.action == "use_lr", rec.message
    assert grid_best / 3 <= rec.suggested_lr <= grid_best * 3
    diverged = [lr for lr, f in zip(GRID, finals) if not np.isfinite(f)]
    assert diverged and rec.suggested_lr < min(diverged)
    # Training at the suggested LR does about as well as the grid's best run.
    assert tail_mean(quadratic(rec.suggested_lr)) <= 1.5 * min(finals)


def test_curve_points_match_the_runs_and_serialise(sweep):
    curve = sensitivity_curve(sweep)
    assert [p.lr for p in curve] == pytest.approx(sorted(GRID))
    for point, run in zip(curve, sweep):
        has_nonfinite = not np.all(np.isfinite(run.loss.values))
        assert point.diverged == has_nonfinite
        assert np.isinf(point.final_loss) == point.diverged
        assert point.best_loss == pytest.approx(
            np.nanmin(np.where(np.isfinite(run.loss.values), run.loss.values, np.nan))
        )
    rec = analyze_sweep(sweep)
    text = json.dumps(rec.to_dict(), allow_nan=False)
    points = json.loads(text)["evidence"]["curve"]
    assert [p["lr"] for p in points] == pytest.approx(sorted(GRID))
    assert {"lr", "final_loss", "best_loss", "diverged", "run"} <= set(points[0])


def test_best_at_the_top_of_the_grid_says_extend_upward():
    runs = [quadratic(lr, steps=200) for lr in (0.001, 0.003, 0.01)]
    rec = analyze_sweep(runs)
    assert rec.action == "increase_lr"
    assert rec.suggested_lr > 0.01
    assert "upward" in rec.message


def test_best_at_the_bottom_of_the_grid_says_extend_downward():
    runs = [quadratic(lr, steps=200) for lr in (1.0, 3.0, 10.0)]
    rec = analyze_sweep(runs)
    assert rec.action == "decrease_lr"
    assert rec.suggested_lr < 1.0


def test_the_next_grid_point_is_a_round_number():
    # A decade grid extends by exactly 10x: 1.0, not the 1.0000000000000002 of exp(log(10)).
    runs = [quadratic(lr, steps=200) for lr in (0.001, 0.01, 0.1)]
    rec = analyze_sweep(runs)
    assert (rec.action, rec.suggested_lr, rec.factor) == ("increase_lr", 1.0, 10.0)


def test_all_diverged_says_go_lower():
    runs = [quadratic(lr, steps=200) for lr in (5.0, 20.0)]
    assert all(p.diverged for p in sensitivity_curve(runs))
    rec = analyze_sweep(runs)
    assert rec.action == "decrease_lr" and rec.suggested_lr < 5.0
    assert "diverged" in rec.message


def test_fewer_than_two_learning_rates_is_no_sweep():
    run = quadratic(0.1, steps=60)
    assert analyze_sweep([]) is None
    assert analyze_sweep([run]) is None
    assert analyze_sweep([run, quadratic(0.1, steps=60, seed=1)]) is None  # seeds, one LR


def test_base_lr_is_the_peak_of_the_schedule_else_the_params():
    warm = train(TrainConfig(task="quadratic", lr=0.2, steps=80, schedule="warmup_cosine"))
    assert base_lr(warm) == pytest.approx(0.2)
    no_lr = Run(id="x", params={keys.PARAM_BASE_LR: "0.05"}, metrics={keys.LOSS: warm.loss})
    assert base_lr(no_lr) == pytest.approx(0.05)
    assert base_lr(Run(id="y", metrics={keys.LOSS: warm.loss})) is None


def test_final_loss_ignores_a_few_spikes_and_flags_blow_ups():
    steps = np.arange(200)
    loss = 1.0 / (1 + steps / 20.0)
    spiky = loss.copy()
    spiky[-5] = 100.0  # one spike in the tail moves a trimmed mean little
    level, diverged = final_loss(spiky)
    assert not diverged and level < 2 * final_loss(loss)[0]
    climbing = np.exp(steps / 20.0)  # finite but ended far above where it began
    assert final_loss(climbing) == (float("inf"), True)
    assert final_loss(np.append(loss, np.nan))[1]
    assert Series(steps, loss).cleaned().values.size == 200


def test_runs_of_one_task_at_several_lrs_look_like_a_sweep(sweep):
    from lrwatch.analysis.sweep import looks_like_sweep

    assert looks_like_sweep(sweep)
    # Seeds may differ within a sweep; the task and the budget may not.
    other_seed = quadratic(GRID[2], seed=3)
    assert looks_like_sweep([*sweep[1:], other_seed])
    other_task = train(TrainConfig(task="autoencoder", lr=0.01, steps=STEPS))
    assert not looks_like_sweep([*sweep, other_task])


def test_the_folders_each_run_writes_to_do_not_split_a_sweep(sweep):
    # The Hugging Face Trainer logs output_dir and a timestamped logging_dir among its params:
    # no two of its runs agreed, so a learning_rate sweep got no sweep section.
    from lrwatch.analysis.sweep import looks_like_sweep

    runs = [run.with_metrics(run.metrics) for run in sweep]
    for k, run in enumerate(runs):
        run.params = {
            **run.params,
            "output_dir": f"out/lr{k}",
            "logging_dir": f"out/lr{k}/runs/Nov23_05-2{k}-00_host",
            "data_dir": "data/quadratic",
        }
    assert looks_like_sweep(runs)
    runs[0].params = {**runs[0].params, "data_dir": "data/other"}  # other data: another task
    assert not looks_like_sweep(runs)


def test_an_ultralytics_sweep_of_lr0_is_a_sweep(sweep):
    # Ultralytics (and YOLOv5) log their settings as params and call the rate lr0; a sweep of
    # it differs in lr0, name and save_dir, and was read as runs of different tasks.
    from lrwatch.analysis.recommend_context import base_lr_from_params
    from lrwatch.analysis.sweep import looks_like_sweep

    runs = [run.with_metrics(run.metrics) for run in sweep]
    for k, run in enumerate(runs):
        rate = run.params.pop("lr")
        run.params = {
            **run.params,
            "lr0": rate,
            "lrf": "0.01",
            "name": f"train{k + 2}",
            "save_dir": f"runs/detect/train{k + 2}",
        }
        assert base_lr_from_params(run.params) == float(rate)
    assert looks_like_sweep(runs)
    runs[0].params = {**runs[0].params, "lrf": "0.1"}  # another final rate: another task
    assert not looks_like_sweep(runs)


def test_runs_without_params_or_with_too_few_lrs_are_not_a_sweep(sweep):
    from lrwatch.analysis.sweep import looks_like_sweep

    bare = [run.with_metrics(run.metrics) for run in sweep]
    for run in bare:
        run.params = {}
    assert not looks_like_sweep(bare)
    assert not looks_like_sweep(sweep[:2])


def test_a_parent_run_of_the_trials_is_no_point_of_the_curve(sweep):
    """A search's parent run may log a default ``lr`` and its best trial's loss: a curve point
    at that LR would be another run's result counted twice."""
    from lrwatch.analysis.sweep import PARENT_RUN_TAG, looks_like_sweep

    parent = sweep[3].with_metrics(sweep[3].metrics)
    parent.id, parent.params = "search", {"lr": "0.1", "n_trials": "7"}
    trials = [run.with_metrics(run.metrics) for run in sweep]
    for trial in trials:
        trial.tags = {**trial.tags, PARENT_RUN_TAG: "search"}
    assert sensitivity_curve([parent, *trials]) == sensitivity_curve(sweep)
    assert looks_like_sweep([parent, *trials])
    assert len(sensitivity_curve([parent, *sweep])) == len(sweep) + 1  # not a parent of these


def test_a_run_its_analysis_calls_diverged_is_diverged_on_the_curve_too():
    # Adam at 10 (1000x its best rate) throws the autoencoder from 3.2 to a floor near 46: a
    # finite final loss, but its analysis reports a critical divergence. The sweep said that
    # run "did not diverge" beside a report that it did.
    runs = [
        train(TrainConfig(task="autoencoder", optimizer="adam", lr=lr, steps=400, seed=8))
        for lr in (0.001, 0.01, 0.1, 10.0)
    ]
    thrown = runs[-1]
    assert np.isfinite(thrown.loss.values).all() and not final_loss(thrown.loss.values)[1]
    (point,) = [p for p in sensitivity_curve(runs) if p.run == thrown.id]
    assert point.diverged and point.final_loss == float("inf")
    rec = analyze_sweep(runs)
    assert "none of the runs at 0.001 to 0.1 ended diverged" in rec.message, rec.message
    # A caller that analysed the runs already says which diverged; the curve takes its word.
    (point,) = [p for p in sensitivity_curve(runs, diverged=set()) if p.run == thrown.id]
    assert not point.diverged
    (point,) = [p for p in sensitivity_curve(runs, diverged={thrown.id}) if p.run == thrown.id]
    assert point.diverged


def test_a_run_is_related_to_the_sweep_both_ways_and_a_diverged_neighbour_is_named(sweep):
    """On the quadratic sweep 0.3 ends lowest and 3.0 diverges. Advice to move the best run's
    rate either way is contradicted by its neighbours; advice that follows the curve is not."""
    from lrwatch.analysis.findings import Recommendation
    from lrwatch.analysis.sweep import relate_to_sweep

    picked = analyze_sweep(sweep)
    ids = {lr: run.id for lr, run in zip(GRID, sweep)}

    def advice(action: str) -> Recommendation:
        return Recommendation(action, None, None, "")

    down = relate_to_sweep(ids[0.3], advice("decrease_lr"), picked)
    assert (down["contradicts_advice"], down["next_lr_that_way"]) == (True, 0.1)
    assert "Its next lower LR, 0.1, ended higher" in down["message"]
    up = relate_to_sweep(ids[0.01], advice("increase_lr"), picked)
    assert up["contradicts_advice"] is False and "next" not in up["message"]
    assert up["grid_best_lr"] == 0.3 and up["final_loss"] > up["grid_best_final_loss"]
    to_the_edge = relate_to_sweep(ids[1.0], advice("increase_lr"), picked)
    assert "Its next higher LR, 3, diverged" in to_the_edge["message"]
    assert relate_to_sweep("not-a-run-of-it", advice("keep"), picked) is None


def test_an_lr_tried_with_several_seeds_is_said_to_be_their_mean(sweep):
    """A seed sweep averages each LR's runs into one point. The note said "this run's LR, 0.03,
    ended at 0.1" of that mean, as if it were the run's own final loss."""
    from lrwatch.analysis.findings import Recommendation
    from lrwatch.analysis.sweep import relate_to_sweep

    seeds = [quadratic(0.03, seed=1), quadratic(0.3, seed=1)]
    picked = analyze_sweep([*sweep, *seeds])
    assert picked.evidence["grid_best_lr"] == 0.3
    keep = Recommendation("keep", None, None, "")
    relation = relate_to_sweep(seeds[0].id, keep, picked)
    own, mean = final_loss(seeds[0].loss.values)[0], relation["final_loss"]
    assert mean == pytest.approx((own + final_loss(sweep[2].loss.values)[0]) / 2)
    best = picked.evidence["grid_best_final_loss"]
    assert (
        f"0.3 ended lowest (final loss {best:.4g}, the mean of its 2 runs)" in relation["message"]
    )
    assert relation["message"].endswith(f"ended at {mean:.4g}, the mean of its 2 runs.")
    # A single-seed LR reads as before.
    single = relate_to_sweep(sweep[1].id, keep, picked)["message"]
    assert single.endswith(
        f"this run's LR, 0.01, ended at {final_loss(sweep[1].loss.values)[0]:.4g}."
    )
    # One diverged seed marks its LR diverged: said so, not "this run's LR diverged".
    diverged = [quadratic(3.0, seed=1)]
    picked = analyze_sweep([*sweep, *diverged])
    message = relate_to_sweep(diverged[0].id, keep, picked)["message"]
    assert message.endswith("this run's LR, 3, diverged (at least one of its 2 runs did).")
