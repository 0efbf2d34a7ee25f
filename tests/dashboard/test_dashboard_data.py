"""The data layer against a real MLflow store: incremental cache, findings, error messages."""

from __future__ import annotations

import json
import os
import time

import mlflow
import numpy as np
import pytest

from dashboard import views
from dashboard.data import DashboardData, DataError, SeriesCache
from dashboard.data.curves import sensitivity_curve
from lrwatch import keys
from lrwatch.analysis.findings import Finding
from lrwatch.sources.mlflow_store import read_history
from tests.dashboard.conftest import log_points, train_sweep_one
from tests.net import free_port


@pytest.fixture
def live_run(tracking_uri):
    """A real training run logged half-way, left RUNNING; returns (client, run id, Run)."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.create_experiment("data-test")
    run = train_sweep_one(0.05, steps=120)
    created = client.create_run(experiment_id, run_name="live")
    for key, value in run.params.items():
        client.log_param(created.info.run_id, key, value)
    log_points(
        client, created.info.run_id, run, start=0, stop=60, timestamp=created.info.start_time
    )
    return client, created.info.run_id, run, experiment_id


def test_refresh_reads_only_new_points_and_matches_a_full_read(tracking_uri, live_run):
    client, run_id, run, _ = live_run
    cache = SeriesCache()
    first = cache.get(tracking_uri, run_id, [keys.LOSS, keys.LR])
    assert len(first[keys.LOSS]) == 60 and cache.points_fetched == 120
    log_points(client, run_id, run, start=60, stop=None, timestamp=int(time.time() * 1000))
    refreshed = cache.refresh(tracking_uri, run_id, [keys.LOSS, keys.LR])
    assert cache.points_fetched == 120 + 120  # 60 new loss + 60 new LR points, nothing re-read
    full = read_history(tracking_uri, run_id, keys.LOSS)
    np.testing.assert_array_equal(refreshed[keys.LOSS].steps, full.steps)
    np.testing.assert_array_equal(refreshed[keys.LOSS].values, full.values)


def test_cache_evicts_least_recently_used_series_beyond_its_budget(tracking_uri, live_run):
    _, run_id, _, _ = live_run
    cache = SeriesCache(max_points=100)
    cache.get(tracking_uri, run_id, [keys.LOSS])
    cache.get(tracking_uri, run_id, [keys.LR])  # 60 + 60 > 100: the loss is evicted
    assert cache.total_points == 60
    cache.get(tracking_uri, run_id, [keys.LOSS])
    assert cache.points_fetched == 180


def test_findings_logged_as_tags_show_beside_offline_ones(tracking_uri, live_run):
    client, run_id, _, _ = live_run
    live = Finding("oscillation", 10, 40, "warning", "the loss bounces", {"ratio": 1.5})
    client.set_tag(run_id, keys.TAG_FINDINGS, json.dumps([live.to_dict(), {"kind": "bogus"}]))
    loaded = DashboardData(tracking_uri).load(run_id)
    assert live in loaded.findings
    assert loaded.is_running and loaded.report is not None


def test_a_finished_run_is_shown_with_the_analysis_of_the_whole_run(tracking_uri, live_run):
    # A live alert the whole run does not bear out (slow progress while it was young) counts
    # while the run trains; once it has ended, table and run view agree with `lrwatch analyze`.
    client, run_id, run, experiment_id = live_run
    early = Finding("slow_convergence", 0, 30, "warning", "still falling slowly", {})
    client.set_tag(run_id, keys.TAG_FINDINGS, json.dumps([early.to_dict()]))
    data = DashboardData(tracking_uri)
    assert early in data.load(run_id).findings
    log_points(client, run_id, run, start=60, stop=None, timestamp=int(time.time() * 1000))
    client.set_terminated(run_id)
    finished = data.load(run_id)
    assert early not in finished.findings
    assert list(finished.findings) == list(finished.report.findings)
    summary = next(s for s in data.runs(experiment_id) if s.id == run_id)
    assert "slow convergence" not in data.badges([summary])[run_id]


def test_unknown_run_and_bad_ids_become_messages(tracking_uri):
    data = DashboardData(tracking_uri)
    with pytest.raises(DataError, match="not found"):
        data.load("0123456789abcdef0123456789abcdef")
    with pytest.raises(DataError, match="letters and digits"):
        data.load("../../etc/passwd")


def test_run_without_a_loss_metric_is_drawn_as_a_message(tracking_uri):
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    run_id = client.create_run("0", run_name="no-loss").info.run_id
    client.log_metric(run_id, "accuracy", 0.5, step=0)
    outputs = views.run_view(DashboardData(tracking_uri), run_id, 0.6, [], None, refresh=False)
    figure, note = outputs[0], outputs[1]
    assert "no loss metric" in figure.layout.annotations[0].text
    assert "no loss metric" in str(note)


def test_the_extra_metrics_box_shows_only_with_extra_metrics(tracking_uri):
    # It showed its label beside no checkbox at all for a run with only a loss and an LR.
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    data = DashboardData(tracking_uri)
    shown = {}
    for name, extra in [("plain", None), ("validated", "val_loss"), ("two-groups", "lr/pg1")]:
        run_id = client.create_run("0", run_name=name).info.run_id
        for step in range(5):
            client.log_metric(run_id, keys.LOSS, 1.0 / (step + 1), step=step)
            client.log_metric(run_id, keys.LR, 0.1, step=step)
            if extra:
                client.log_metric(run_id, extra, 0.5, step=step)
        outputs = views.run_view(data, run_id, 0.6, [], None, refresh=False)
        shown[name] = ([o["value"] for o in outputs[8]], outputs[-1]["display"])
    assert shown == {
        "plain": ([], "none"),
        "validated": (["val_loss"], "inline-block"),
        "two-groups": (["lr/pg1"], "inline-block"),
    }
    failed = views.run_view(data, "0123456789abcdef0123456789abcdef", 0.6, [], None, refresh=False)
    assert failed[-1]["display"] == "none"


def test_a_running_runs_steady_progress_is_a_note_until_it_ends(tracking_uri):
    # The run page and badge of a run still training judge the run so far: a loss falling in a
    # straight line is a note and `keep`; once the run has ended, the same points are the
    # slow-convergence warning (the report cache must not serve the running-time report).
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    run_id = client.create_run("0", run_name="straight").info.run_id
    rng = np.random.default_rng(0)
    loss = 2.0 - 0.0015 * np.arange(600) + 0.02 * rng.standard_normal(600)
    rows = [Metric(keys.LOSS, float(v), 1000 + k, k) for k, v in enumerate(loss)]
    rows += [Metric(keys.LR, 0.01, 1000 + k, k) for k in range(600)]
    for first in range(0, len(rows), 1000):
        client.log_batch(run_id, metrics=rows[first : first + 1000], synchronous=True)
    data = DashboardData(tracking_uri)
    running = data.load(run_id)
    client.set_terminated(run_id, status="FINISHED")
    ended = data.load(run_id)
    assert [(f.kind, f.severity) for f in running.findings] == [("slow_convergence", "info")]
    assert running.report.recommendation.action == "keep"
    assert [(f.kind, f.severity) for f in ended.findings] == [("slow_convergence", "warning")]
    assert ended.report.recommendation.action == "increase_lr"


@pytest.mark.parametrize(
    "status, last_point_ago_s, gap_s, silent",
    [
        ("running", 2 * 3600, 1.0, True),  # a step a second, nothing for 2 hours
        ("running", 10 * 60, 1.0, False),  # a checkpoint or an evaluation: under 15 min
        ("running", 3 * 3600, 1800.0, False),  # a per-epoch log: 30 min a point is its pace
        ("running", 6 * 3600, 1800.0, True),  # ...but 12 of its gaps is not
        ("finished", 2 * 3600, 1.0, False),
    ],
)
def test_a_running_run_that_stopped_logging_is_called_silent(
    status, last_point_ago_s, gap_s, silent
):
    from dashboard.data.liveness import silent_for_s

    now_ms = 10**13
    last_ms = now_ms - int(last_point_ago_s * 1000)
    start_ms = last_ms - int(99 * gap_s * 1000)  # 100 points
    assert (silent_for_s(status, start_ms, last_ms, 100, now_ms) is not None) is silent


def test_the_run_page_says_when_a_running_run_went_silent(tracking_uri):
    # A job killed by SIGKILL or the OOM killer leaves its MLflow run RUNNING for good: the page
    # said "status: running" and kept polling, with no hint that nothing had come for hours.
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    now_ms = int(time.time() * 1000)
    lines = {}
    for name, last_ms in (("killed", now_ms - 3 * 3600 * 1000), ("alive", now_ms - 5000)):
        start_ms = last_ms - 200 * 1000  # 200 points, one a second
        run_id = client.create_run("0", run_name=name, start_time=start_ms).info.run_id
        rows = [Metric(keys.LOSS, 1.0 / (k + 1), start_ms + 1000 * k, k) for k in range(201)]
        client.log_batch(run_id, metrics=rows, synchronous=True)
        lines[name] = views.run_view(
            DashboardData(tracking_uri), run_id, 0.6, [], None, refresh=False
        )[3]
    assert lines["killed"].startswith(
        "status: running - no new point for 3 h (usually one every 1 s): the job may have "
        "stopped without ending its run | 201 points"
    ), lines["killed"]
    assert lines["alive"].startswith("status: running | 201 points"), lines["alive"]


def test_empty_experiment_says_so(tracking_uri):
    experiment_id = mlflow.MlflowClient(tracking_uri=tracking_uri).create_experiment("empty")
    rows, message, refresh_disabled = views.runs_table(DashboardData(tracking_uri), experiment_id)
    assert rows == [] and "no runs" in str(message) and refresh_disabled


def test_unreachable_tracking_server_is_a_message_not_a_traceback(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    page = views.page_for(DashboardData("http://127.0.0.1:9"), "/", "")
    assert "cannot reach tracking server http://127.0.0.1:9 (connection refused)" in str(page)


def test_a_file_store_mlflow_refuses_says_how_to_read_it(tmp_path, monkeypatch):
    # MLflow 3 refuses ./mlruns stores unless MLFLOW_ALLOW_FILE_STORE is set, naming that at
    # the end of a long text: the page cut it off ("... See htt").
    import subprocess
    import sys

    uri = (tmp_path / "mlruns").as_uri()
    make = (
        "import sys, mlflow; c = mlflow.MlflowClient(sys.argv[1]); "
        "r = c.create_run(c.create_experiment('old')).info.run_id; c.log_metric(r, 'loss', 1.0)"
    )  # in its own process: MLflow keeps the store it made, opted in, for the process's life
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}
    subprocess.run([sys.executable, "-c", make, uri], env=env, check=True, timeout=120)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    page = str(views.page_for(DashboardData(uri), "/", ""))
    assert f"{uri} is a file store, which MLflow 3 refuses by default: set " in page
    assert "MLFLOW_ALLOW_FILE_STORE=true to use it, or migrate it with" in page


def test_an_unreachable_database_is_a_message_without_its_password():
    uri = f"postgresql://team:s3cret@127.0.0.1:{free_port()}/mlflow"  # nothing listens there
    page = str(views.page_for(DashboardData(uri), "/", ""))
    assert "cannot reach tracking server postgresql://team:***@127.0.0.1" in page
    assert "s3cret" not in page


def test_runs_table_rows_carry_status_length_lr_and_a_badge(tracking_uri, live_run):
    _, run_id, _, experiment_id = live_run
    data = DashboardData(tracking_uri)
    rows, _, refresh_disabled = views.runs_table(data, experiment_id)
    assert not refresh_disabled  # the run is running: the table keeps refreshing
    (row,) = rows
    assert (row["status"], row["last_step"], row["base_lr"], row["optimizer"]) == (
        "running", 59, 0.05, "sgd")  # fmt: skip
    deadline = time.monotonic() + 30
    while data.pending_analyses() and time.monotonic() < deadline:
        time.sleep(0.1)
    rows, _, _ = views.runs_table(data, experiment_id)
    assert rows[0]["diagnosis"] != "analysing..."


def test_sensitivity_curve_comes_from_the_sweep_analysis():
    from lrwatch.analysis import analyze_sweep

    runs = [train_sweep_one(lr, steps=120) for lr in (0.01, 0.05, 3.0)]
    curve = sensitivity_curve(runs)
    assert sorted(curve.lrs.tolist()) == [0.01, 0.05, 3.0]
    assert np.isinf(curve.losses[curve.lrs.tolist().index(3.0)])  # lr=3 diverges
    assert curve.recommendation == analyze_sweep(runs)


def test_disk_copy_serves_a_restart_and_only_new_points_are_read(tracking_uri, live_run, tmp_path):
    from dashboard.data.disk_cache import DiskCache

    client, run_id, run, _ = live_run
    first = SeriesCache(disk=DiskCache(tmp_path, min_points=10))
    first.get(tracking_uri, run_id, [keys.LOSS, keys.LR])
    log_points(client, run_id, run, start=60, stop=None, timestamp=int(time.time() * 1000))
    restarted = SeriesCache(disk=DiskCache(tmp_path, min_points=10))
    series = restarted.get(tracking_uri, run_id, [keys.LOSS, keys.LR])
    assert restarted.points_fetched == 120  # the 60 new points of each key, nothing else
    full = read_history(tracking_uri, run_id, keys.LOSS)
    np.testing.assert_array_equal(series[keys.LOSS].values, full.values)


@pytest.mark.parametrize("damage", ["not an npz", "empty", "cut in half", "a header byte"])
def test_a_damaged_disk_copy_is_read_from_the_store_instead(
    tracking_uri, live_run, tmp_path, damage
):
    # An empty file (a crash after the rename, before the data reached the disk), a cut one
    # and a damaged zip header raised EOFError and BadZipFile out of the load.
    from dashboard.data.disk_cache import DiskCache

    _, run_id, _, _ = live_run
    disk = DiskCache(tmp_path, min_points=10)
    SeriesCache(disk=disk).get(tracking_uri, run_id, [keys.LOSS])
    path = disk.path(tracking_uri, run_id, keys.LOSS)
    saved = path.read_bytes()
    damaged = {
        "not an npz": b"not an npz",
        "empty": b"",
        "cut in half": saved[: len(saved) // 2],
        "a header byte": saved[:26] + b"\x00" + saved[27:],  # the first file name's length
    }[damage]
    path.write_bytes(damaged)
    fresh = SeriesCache(disk=disk)
    assert len(fresh.get(tracking_uri, run_id, [keys.LOSS])[keys.LOSS]) == 60


def test_reopening_a_run_that_logged_more_meanwhile_shows_every_point(tracking_uri, live_run):
    """A run viewed live, left, and finished elsewhere: the next view is not the stale copy."""
    client, run_id, run, _ = live_run
    data = DashboardData(tracking_uri, cache=SeriesCache())
    assert len(data.load(run_id).run.loss) == 60
    log_points(client, run_id, run, start=60, stop=None, timestamp=int(time.time() * 1000))
    client.set_terminated(run_id)
    reopened = data.load(run_id)
    assert reopened.summary.status == "finished"
    assert len(reopened.run.loss) == len(run.loss) == 120


def test_reopening_a_run_logged_without_steps_shows_every_point(tracking_uri, live_run):
    """The same for a loss logged with no step (every point at step 0): the store's last step,
    0, never looked ahead of the cached copy, so the finished run stayed at 60 points."""
    from mlflow.entities import Metric

    client, _, run, experiment_id = live_run
    run_id = client.create_run(experiment_id, run_name="unstepped").info.run_id

    def log(start: int, stop: int) -> None:
        stamps = 1_000 + 10 * np.arange(start, stop)
        loss = run.loss.values[start:stop]
        metrics = [Metric(keys.LOSS, float(v), int(t), 0) for v, t in zip(loss, stamps)]
        client.log_batch(run_id, metrics=metrics)

    log(0, 60)
    data = DashboardData(tracking_uri, cache=SeriesCache())
    assert data.load(run_id).run.loss.steps.tolist() == list(range(60))
    log(60, len(run.loss))
    client.set_terminated(run_id)
    reopened = data.load(run_id).run.loss
    assert reopened.steps.tolist() == list(range(len(run.loss)))
    np.testing.assert_array_equal(reopened.values, run.loss.values)
    # The page says so, as `lrwatch analyze` does (it said nothing: the x axis looked like steps).
    note = views.run_view(data, run_id, 0.6, [], None, refresh=False)[1]
    assert f"all {len(run.loss)} points of 'train/loss' were logged at one step" in str(note)
    assert views.run_view(data, live_run[1], 0.6, [], None, refresh=False)[1] is None  # stepped


def test_a_live_run_counted_per_epoch_shows_each_new_epoch(tracking_uri):
    """MLflow's quickstart logs ``step=batch // 100`` inside the epoch loop. Followed live, the
    dashboard's refresh asked for steps past the last one it held, so from the second epoch on
    (steps 0, 1, ... again) the chart never grew; now each refresh ends where a whole read
    does, and the run page says how the steps were numbered, as `lrwatch analyze` does."""
    from tests.sources.test_sources_mlflow import _train_logging_like_mlflows_quickstart

    data = DashboardData(tracking_uri, cache=SeriesCache())
    shown: list[int] = []

    def follow(logged: list[float]) -> None:
        if len(logged) % 4 == 0:  # a refresh now and then: mid-epoch and at epochs' ends
            shown.append(len(data.load(run_id, refresh=len(shown) > 0).run.loss))
            assert shown[-1] == len(logged)

    with mlflow.start_run() as active:
        run_id = active.info.run_id
        logged = _train_logging_like_mlflows_quickstart(epochs=3, after_each_point=follow)
    assert shown == list(range(4, 30, 4))
    final = data.load(run_id, refresh=True).run.loss
    assert final.steps.tolist() == list(range(30))
    np.testing.assert_array_equal(final.values, logged)
    note = views.run_view(data, run_id, 0.6, [], None, refresh=True)[1]
    assert "the step of 'loss' starts again every epoch (3 epochs" in str(note)


def _watched_steps(tracking_uri: str, watcher, value: float, count: int, last_step: int) -> None:
    """``count`` steps of a constant loss, then wait until the store holds ``last_step``, the
    last of them (a key's rows land in step order, so then all have)."""
    import torch

    for _ in range(count):
        watcher.step(torch.tensor(value))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if watcher.run_id is not None:
            loss = read_history(tracking_uri, watcher.run_id, keys.LOSS)
            if last_step in loss.steps and loss.values[loss.steps == last_step][0] == value:
                return
        time.sleep(0.05)
    raise AssertionError(f"step {last_step} never reached the store")


def test_a_run_resumed_from_a_checkpoint_shows_the_resumed_values_live(tracking_uri, tmp_path):
    """The first attempt logged steps 0-99; the job restarts from its checkpoint at step 60 while
    the dashboard follows the run. Steps 60-99 it had cached are replaced as the job logs them
    again, also after a restart from the disk copy."""
    import torch

    import lrwatch
    from dashboard.data.disk_cache import DiskCache

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with lrwatch.watch(optimizer, experiment="resume", flush_interval=0.05) as first:
        _watched_steps(tracking_uri, first, 1.0, 100, last_step=99)
    run_id = first.run_id
    disk = DiskCache(tmp_path, min_points=10)
    data = DashboardData(tracking_uri, cache=SeriesCache(disk=disk))
    assert data.load(run_id).run.loss.values.tolist() == [1.0] * 100

    with lrwatch.watch(optimizer, run_id=run_id, start_step=60, flush_interval=0.05) as resumed:
        _watched_steps(tracking_uri, resumed, 2.0, 20, last_step=79)  # the earlier 80-99 stand
        live = data.load(run_id, refresh=True).run.loss
        assert live.values.tolist() == [1.0] * 60 + [2.0] * 20 + [1.0] * 20
        _watched_steps(tracking_uri, resumed, 2.0, 60, last_step=139)  # past the earlier 99
        live = data.load(run_id, refresh=True).run.loss
        assert live.steps.tolist() == list(range(140))
        assert live.values.tolist() == [1.0] * 60 + [2.0] * 80
    restarted = DashboardData(tracking_uri, cache=SeriesCache(disk=disk))
    assert restarted.load(run_id).run.loss.values.tolist() == [1.0] * 60 + [2.0] * 80
    marker = json.loads(
        mlflow.MlflowClient(tracking_uri).get_run(run_id).data.tags[keys.TAG_RESUMED]
    )
    assert (marker["step"], marker["earlier_last_step"]) == (60, 99)


def test_an_ultralytics_run_is_shown_with_the_sum_of_its_loss_parts(tracking_uri):
    """As `lrwatch analyze` reads it: the run page and the table's badge judge the loss the
    trainer stepped on, not its box part alone."""
    from lrwatch.run import Run, Series
    from tests.sources.conftest import log_run_to_mlflow
    from tests.sources.test_sources_ultralytics import PARTS, _train_like_ultralytics

    parts, totals, lrs = _train_like_ultralytics(epochs=35)
    epochs = np.arange(1, 36)
    metrics = {f"train/{name}": Series(epochs, parts[:, i]) for i, name in enumerate(PARTS)}
    metrics["lr/pg0"] = Series(epochs, lrs)
    run_id = log_run_to_mlflow(tracking_uri, Run("yolo", metrics=metrics))
    data = DashboardData(tracking_uri, cache=SeriesCache())
    loaded = data.load(run_id)
    assert loaded.run.loss_key == "train/loss"
    np.testing.assert_allclose(loaded.run.loss.values, totals, rtol=1e-6)
    assert loaded.report is not None and loaded.report.num_steps == 35
    summary = data.runs(loaded.summary.experiment_id)[0]
    assert data._load_for_analysis(summary).loss_key == "train/loss"
    note = views.run_view(data, run_id, 0.6, [], None, refresh=False)[1]
    assert "the loss 'train/loss' is the sum of the 3 loss parts logged" in str(note)


def test_a_live_run_read_past_its_summary_gets_no_epoch_note(tracking_uri, live_run):
    """The summary is read before the points: a run that logs in between has points past the
    summary's last step, as a run numbered across epochs has - but its first step once."""
    from dashboard.data import tracking
    from dashboard.data.service import _as_run, _note_epoch_steps
    from lrwatch.sources.files import read_notes

    client, run_id, run, _ = live_run
    summary = tracking.get_summary(tracking_uri, run_id)
    log_points(client, run_id, run, start=60, stop=None, timestamp=int(time.time() * 1000))
    read = _as_run(summary, SeriesCache().get(tracking_uri, run_id, [keys.LOSS, keys.LR]))
    assert read.loss.steps[-1] > summary.last_step
    _note_epoch_steps(tracking_uri, summary, read)
    assert read_notes(read) == []


def test_an_untagged_range_test_is_shown_as_one(tracking_uri):
    """As `lrwatch analyze` reads it: a range test logged by a loop of one's own, without
    lrwatch's tag, gets the range-test view (loss against LR, the rate to start from)."""
    from lrwatch.lr_finder import find_lr
    from lrwatch.run import Run, Series
    from tests.lr_finder.lr_finder_helpers import task_setup
    from tests.sources.conftest import log_run_to_mlflow

    model, optimizer, loss_fn, batches = task_setup()
    test = find_lr(model, optimizer, loss_fn, batches, num_steps=120, log=False)
    steps = np.arange(len(test.lrs))
    metrics = {keys.LOSS: Series(steps, test.losses), keys.LR: Series(steps, test.lrs)}
    run_id = log_run_to_mlflow(tracking_uri, Run("own-range-test", metrics=metrics))
    loaded = DashboardData(tracking_uri, cache=SeriesCache()).load(run_id)
    assert loaded.run.is_range_test
    assert loaded.report.recommendation.action == "use_lr"
    assert loaded.report.recommendation.suggested_lr == pytest.approx(test.suggestion.lr)


def test_run_page_and_table_recommend_as_the_cli_for_a_run_with_param_groups(tracking_uri):
    """A recommendation that scales the LR names every param group's new rate. The dashboard
    read only group 0's LR, so its card lacked the other groups' rates that `lrwatch analyze`
    gives (and the run page showed the table's report, made the same way)."""
    from lrwatch.batch import analyze_specs
    from lrwatch.tasks import TrainConfig, train
    from tests.sources.conftest import log_run_to_mlflow
    from tests.sources.test_sources_mlflow import _run_with_other_metrics

    diverging = train(TrainConfig(task="mlp_regression", lr=0.2, steps=400, seed=0))
    run_id = log_run_to_mlflow(tracking_uri, _run_with_other_metrics(diverging))
    [cli] = analyze_specs([run_id], tracking_uri=tracking_uri)
    expected = cli.report.recommendation.to_dict()
    assert list(expected["evidence"]["group_lrs"]) == ["lr/pg1"]

    data = DashboardData(tracking_uri, cache=SeriesCache())
    summary = data.runs(data.load(run_id).summary.experiment_id)[0]
    table = data.reports.report(tracking_uri, data._load_for_analysis(summary))
    assert table.recommendation.to_dict() == expected
    loaded = DashboardData(tracking_uri, cache=SeriesCache()).load(run_id)
    assert loaded.report.recommendation.to_dict() == expected
    assert sorted(loaded.run.metrics) == ["lr", "train/loss"]  # lr/pg1 read for the report only


@pytest.fixture(scope="module")
def tracking_server(dashboard_store, tmp_path_factory):
    """A real `mlflow server` over the module's store: a team's shared server."""
    from tests.tracking.conftest import MlflowServer

    server = MlflowServer(dashboard_store.uri, free_port(), tmp_path_factory.mktemp("server"))
    server.start()
    yield server
    server.stop()


def _noting_threads(monkeypatch, data: DashboardData, method: str) -> set[str]:
    """The names of the threads that call ``data.<method>`` from now on."""
    import threading

    called_on: set[str] = set()
    original = getattr(data, method)

    def noting(*args, **kwargs):
        called_on.add(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(data, method, noting)
    return called_on


@pytest.mark.server
def test_compare_reads_the_runs_of_a_tracking_server_several_at_a_time(
    dashboard_store, tracking_server, monkeypatch
):
    """A compare view of 30 runs of 2,000 steps took 8.1-8.8 s through a default `mlflow
    server` read one by one, 4.1-4.3 s four at a time. The runs, their order, reports and
    findings are those of the database read one by one."""
    import threading

    run_ids = [*dashboard_store.sweep.values(), dashboard_store.xss_run]
    data = DashboardData(tracking_server.uri, cache=SeriesCache())
    readers = _noting_threads(monkeypatch, data, "load")
    together = data.load_many(run_ids)
    assert len(readers) > 1 and threading.current_thread().name not in readers
    reference = DashboardData(dashboard_store.uri, cache=SeriesCache())
    one_by_one = [reference.load(run_id) for run_id in run_ids]
    assert [item.run.id for item in together] == run_ids
    for served, direct in zip(together, one_by_one):
        assert served.report.to_dict() == direct.report.to_dict()
        assert served.findings == direct.findings
        np.testing.assert_array_equal(served.run.loss.values, direct.run.loss.values)


@pytest.mark.server
def test_the_run_table_analyses_the_runs_of_a_tracking_server_several_at_a_time(
    dashboard_store, tracking_server, monkeypatch
):
    """The run table's badges of an experiment of 200 runs of 2,000 steps took 49-51 s to fill
    through a default `mlflow server`, one run at a time in the background; 25-27 s four at a
    time. Each report is the one the database's runs get."""
    data = DashboardData(tracking_server.uri, cache=SeriesCache())
    readers = _noting_threads(monkeypatch, data, "_load_for_analysis")
    summaries = data.runs(dashboard_store.experiment_id)
    data.badges(summaries)
    deadline = time.monotonic() + 120
    while data.pending_analyses() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert data.pending_analyses() == 0
    assert len(readers) > 1
    reference = DashboardData(dashboard_store.uri, cache=SeriesCache())
    reference.badges(summaries)
    while reference.pending_analyses():
        time.sleep(0.05)
    analysed = [summary.id for summary in summaries if summary.loss_key]
    assert len(analysed) >= len(dashboard_store.sweep)
    for run_id in analysed:
        served = data.reports.cached(tracking_server.uri, run_id)
        direct = reference.reports.cached(dashboard_store.uri, run_id)
        assert served is not None and served.to_dict() == direct.to_dict(), run_id
