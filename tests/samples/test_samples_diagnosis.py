"""Every sample run gets the diagnosis its manifest says: a regression guard for the analysis.

The detectors are tuned on a different, held-out set; these runs only check that the diagnosis a
newcomer sees in the demo stays right. Do not tune detectors to pass them.
"""

from __future__ import annotations

import pytest

from lrwatch.analysis import analyze, analyze_sweep
from lrwatch.analysis.findings import severity_rank
from lrwatch.samples import load_manifest

MANIFEST = load_manifest()
ENTRIES = MANIFEST["runs"]
JUDGED = [e for e in ENTRIES if e["expected_findings"] is not None]
WITH_SCHEDULE = [e for e in ENTRIES if e.get("expected_schedule")]
WARNING = severity_rank("warning")


def _kinds(report) -> set[str]:
    return {finding.kind for finding in report.findings}


@pytest.mark.parametrize("entry", JUDGED, ids=[e["name"] for e in JUDGED])
def test_sample_gets_its_expected_findings(entry, sample_runs):
    report = analyze(sample_runs[entry["name"]])
    found = _kinds(report)
    expected = set(entry["expected_findings"])
    assert expected <= found, f"expected {sorted(expected)}, found {sorted(found)}"
    if not expected:  # a healthy run: nothing at warning level or above
        loud = [f.to_dict() for f in report.findings if severity_rank(f.severity) >= WARNING]
        assert not loud


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_sample_is_not_misdiagnosed(entry, sample_runs):
    report = analyze(sample_runs[entry["name"]])
    wrong = _kinds(report) & set(entry.get("must_not_find", ()))
    assert not wrong
    for finding in report.findings:  # findings lie inside the run
        steps = sample_runs[entry["name"]].loss.steps
        assert steps[0] <= finding.start_step <= finding.end_step <= steps[-1]


def test_a_plateau_is_told_to_decay_where_its_loss_reached_the_floor(sample_runs):
    """The constant-rate sample falls from ~4.5 to its floor by step ~30; the advice was to
    "decay the LR around step 0", which is no decay but a lower rate from the start."""
    import numpy as np

    run = sample_runs["plateau-constant-lr"]
    report = analyze(run)
    (plateau,) = [f for f in report.findings if f.kind == "plateau"]
    decay_at = report.recommendation.evidence["decay_at_step"]
    assert report.recommendation.action == "decay_lr" and decay_at == plateau.start_step
    level = plateau.evidence["plateau_level"]
    before = run.loss.values[run.loss.steps < decay_at]
    assert before.size >= 10 and np.median(before[:10]) > 2 * level  # the drop came first
    assert decay_at <= 100  # ...and the floor right after it


@pytest.mark.parametrize("entry", WITH_SCHEDULE, ids=[e["name"] for e in WITH_SCHEDULE])
def test_sample_schedule_is_recognised(entry, sample_runs):
    schedule = analyze(sample_runs[entry["name"]]).schedule
    assert schedule.kind == entry["expected_schedule"], schedule.to_dict()
    if entry.get("expected_warmup") is not None:
        assert bool(schedule.warmup_steps) == entry["expected_warmup"], schedule.to_dict()


@pytest.mark.parametrize("sweep_name", sorted(MANIFEST["sweeps"]))
def test_sweep_recommends_a_rate_near_its_best(sweep_name, sample_runs):
    sweep = MANIFEST["sweeps"][sweep_name]
    recommendation = analyze_sweep([sample_runs[name] for name in sweep["runs"]])
    assert recommendation is not None and recommendation.suggested_lr is not None
    low, high = sweep["suggestion_band"]
    assert (low or 0.0) < recommendation.suggested_lr < (high or float("inf")), (
        recommendation.to_dict()
    )


def test_range_test_is_recognised_and_agrees_with_the_sweep(sample_runs):
    """The range test ran on the sweep's task: its suggestion must land in the sweep's band."""
    entry = next(e for e in ENTRIES if e["range_test"])
    run = sample_runs[entry["name"]]
    assert run.is_range_test
    recommendation = analyze(run).recommendation
    assert recommendation.action == "use_lr"
    assert recommendation.suggested_lr is not None
    assert recommendation.suggested_lr < run.lr.values.max()
    sweep = next(s for s in MANIFEST["sweeps"].values() if _same_task(s, entry))
    low, high = sweep["suggestion_band"]
    assert (low or 0.0) < recommendation.suggested_lr < (high or float("inf"))


def _same_task(sweep: dict, entry: dict) -> bool:
    member = next(e for e in ENTRIES if e["name"] == sweep["runs"][0])
    return (member["task"], member["optimizer"]) == (entry["task"], entry["optimizer"])
