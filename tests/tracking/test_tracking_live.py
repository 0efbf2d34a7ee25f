"""Live diagnosis on a real diverging run: tagged on the MLflow run, and "stop" stops in time."""

from __future__ import annotations

import json
import logging
import math
import time

import mlflow
import numpy as np
import pytest

import lrwatch
from lrwatch import keys
from lrwatch.tasks import TrainConfig, train
from lrwatch.tracking import DivergenceError
from tests.tracking.conftest import history

# SGD at lr 1.1 on the quadratic task is past the stable step size (2 / largest Hessian
# eigenvalue ~ 1): the loss grows geometrically and turns non-finite near step 1000.
DIVERGING = TrainConfig(task="quadratic", lr=1.1, steps=3000)


def _watched_train(config, **watch_kwargs):
    state = {}

    def on_step(step, loss, optimizer):
        if "w" not in state:
            state["w"] = lrwatch.watch(optimizer, experiment="live", **watch_kwargs)
        state["w"].step(loss)
        time.sleep(0.001)  # a slower "model": ~50 steps per flush interval

    try:
        train(config, on_step=on_step)
    finally:
        if "w" in state:
            state["w"].close("FAILED")
    return state["w"]


def _tags(uri, run_id):
    return mlflow.MlflowClient(uri).get_run(run_id).data.tags


def test_stop_raises_at_a_step_before_the_loss_turns_nan(tracking_uri):
    with pytest.raises(DivergenceError) as caught:
        _watched_train(DIVERGING, on_divergence="stop", flush_interval=0.05)
    assert caught.value.finding.kind == "divergence"
    client = mlflow.MlflowClient(tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("live").experiment_id])[0]
    losses = [v for _, v in history(tracking_uri, run.info.run_id, keys.LOSS)]
    assert all(math.isfinite(v) and v < 1e300 for v in losses)  # stopped while still finite
    assert len(losses) < 1005
    tags = run.data.tags
    findings = json.loads(tags[keys.TAG_FINDINGS])
    assert any(f["kind"] == "divergence" for f in findings)
    assert tags[keys.TAG_WORST] in ("warning", "critical")


def test_warn_tags_the_run_and_calls_back_once(tracking_uri, caplog):
    seen = []
    w = _watched_train(DIVERGING, on_divergence=seen.append, flush_interval=0.05)
    assert [f.kind for f in seen] == ["divergence"]
    findings = json.loads(_tags(tracking_uri, w.run_id)[keys.TAG_FINDINGS])
    assert sum(f["kind"] == "divergence" for f in findings) == 1
    assert findings == [f.to_dict() for f in w.findings] or len(findings) <= len(w.findings)
    assert caplog.text.count("lrwatch: divergence") == 1


def test_a_healthy_run_gets_no_divergence(tracking_uri):
    w = _watched_train(TrainConfig(task="quadratic", lr=0.3, steps=600), flush_interval=0.05)
    tags = _tags(tracking_uri, w.run_id)
    findings = json.loads(tags.get(keys.TAG_FINDINGS, "[]"))
    assert not any(f["kind"] == "divergence" for f in findings)
    assert len(history(tracking_uri, w.run_id, keys.LOSS)) == 600


def test_the_findings_tag_fits_mlflows_limit_keeping_the_most_severe():
    from lrwatch.analysis.findings import Finding
    from lrwatch.tracking.live import findings_tag
    from lrwatch.tracking.sink import MAX_TAG_VALUE

    many = [
        Finding("plateau", i * 10, i * 10 + 5, "info", "flat " * 20, {"i": i}) for i in range(200)
    ]
    many.append(Finding("divergence", 3000, 3100, "critical", "blew up", {"peak": float("inf")}))
    text = findings_tag(many)
    kept = json.loads(text)
    assert len(text) <= MAX_TAG_VALUE and 0 < len(kept) < len(many)
    assert kept[0]["kind"] == "divergence" and kept[0]["evidence"]["peak"] == "inf"


def test_an_info_finding_is_logged_as_info_not_as_a_warning(tracking_uri, caplog):
    # A healthy run that converges gets an info plateau ("looks like convergence"): a note. Logged
    # as a WARNING it would read as an alarm in the training script's output.
    with caplog.at_level(logging.INFO, logger="lrwatch"):
        w = _watched_train(TrainConfig(task="quadratic", lr=0.3, steps=600), flush_interval=0.05)
    assert "info" in {f.severity for f in w.findings}
    for finding in w.findings:
        level = logging.INFO if finding.severity == "info" else logging.WARNING
        text = f"lrwatch: {finding.kind}: {finding.message}"
        assert [r.levelno for r in caplog.records if r.getMessage() == text] == [level]


def test_the_runs_end_settles_a_slow_convergence_note_in_the_tags():
    # While a run runs, steady progress is only a note ("judged when the run ends"); at the end
    # the tag holds the judgment: the warning for a loss still falling in a straight line, and
    # nothing for a healthy run that went on to converge (the note is dropped, not left behind).
    from lrwatch.tracking.live import LiveDiagnosis

    healthy = train(TrainConfig(task="autoencoder", lr=0.0333, steps=1000, seed=0))
    rng = np.random.default_rng(0)
    straight = 2.0 - 0.0015 * np.arange(1000) + 0.02 * rng.standard_normal(1000)
    for losses, judged in ((healthy.loss.values, []), (straight, ["warning"])):
        live = LiveDiagnosis()
        for first in range(0, 1000, 10):
            live.feed([(k, float(losses[k]), 0.01) for k in range(first, first + 10)])
        assert [f.severity for f in live.findings if f.kind == "slow_convergence"] == ["info"]
        tags = live.finish()
        tagged = json.loads(tags[keys.TAG_FINDINGS])
        assert [f["severity"] for f in tagged if f["kind"] == "slow_convergence"] == judged
        assert sorted((f["kind"], f["severity"]) for f in tagged) == sorted(
            (f.kind, f.severity) for f in live.findings
        )


def test_the_runs_end_takes_back_a_divergence_the_loss_came_back_from():
    # A spike at a rate 3x the best, reported live as a critical divergence (the callback runs
    # then), that the loss came back from: at the end the tags hold it as a note, and the
    # worst severity is the run's plateau, not "critical" - as `lrwatch analyze` says.
    from lrwatch.tracking.live import LiveDiagnosis

    losses = train(TrainConfig(task="quadratic", lr=1.0, steps=1000, seed=9)).loss.values
    called = []
    live = LiveDiagnosis(called.append)
    tags = {}
    for first in range(0, losses.size, 10):
        tags |= live.feed([(k, float(losses[k]), 1.0) for k in range(first, first + 10)])
    assert tags[keys.TAG_WORST] == "critical" and [f.kind for f in called] == ["divergence"]
    tags |= live.finish()
    tagged = {f["kind"]: f for f in json.loads(tags[keys.TAG_FINDINGS])}
    assert tagged["divergence"]["severity"] == "info"
    assert tagged["divergence"]["evidence"]["borne_out"] is False
    assert tags[keys.TAG_WORST] == "warning" and tagged["plateau"]["severity"] == "warning"
    assert len(called) == 1


def test_stop_on_divergence_leaves_running_a_run_whose_first_steps_blew_up_and_came_back():
    # Adam at 1.0 throws the MLP from 9.1 to ~3,600 in two steps; by the first evaluation it is
    # back below 9.1. The blow-up is reported (decrease the LR), but the run trains: not stopped.
    from lrwatch.tracking.live import LiveDiagnosis

    run = train(TrainConfig(task="mlp_regression", optimizer="adam", lr=1.0, seed=7, task_seed=7))
    losses = run.loss.values
    live = LiveDiagnosis("stop")
    for first in range(0, losses.size, 10):
        live.feed([(k, float(losses[k]), 1.0) for k in range(first, first + 10)])
    assert [f.evidence.get("came_back") for f in live.findings if f.kind == "divergence"] == [True]
    assert not live.stop_requested
