"""MLflow round trips through a real per-test SQLite store: the fast reader and run loading."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest

from lrwatch.errors import InputError
from lrwatch.run import Run, Series
from lrwatch.sources import RunRef, load_ref, load_run, load_runs, mlflow_sql
from lrwatch.sources import mlflow_store as store
from tests.sources.conftest import log_run_to_mlflow, log_unstepped, train_logging_each_batch

# Logged out of order, with NaN, +/-inf and step 2 logged twice (the later value must win).
ODD_STEPS = np.array([3, 0, 1, 2, 4, 2, 5])
ODD_VALUES = np.array([0.3, 1.0, math.nan, math.inf, -math.inf, 0.25, -0.5])
ODD_TIMES = np.array([40, 10, 20, 30, 50, 60, 70])


def _odd_run() -> Run:
    return Run(
        id="odd",
        name="odd",
        metrics={
            "train/loss": Series(ODD_STEPS, ODD_VALUES),
            "lr": Series(ODD_STEPS, np.full(ODD_STEPS.size, 0.1)),
        },
    )


def test_read_history_restores_nan_inf_and_last_logged_value(tracking_uri):
    run_id = log_run_to_mlflow(tracking_uri, _odd_run(), timestamps_ms=ODD_TIMES)
    loss = store.read_history(tracking_uri, run_id, "train/loss")
    assert loss.steps.tolist() == [0, 1, 2, 3, 4, 5]
    expected = [1.0, math.nan, 0.25, 0.3, -math.inf, -0.5]
    np.testing.assert_array_equal(loss.values, expected)


def test_direct_sql_equals_mlflow_client(tracking_uri):
    run_id = log_run_to_mlflow(tracking_uri, _odd_run(), timestamps_ms=ODD_TIMES)
    direct = store.read_histories(tracking_uri, run_id)
    via_client = {
        key: series.cleaned()
        for key, series in store._client_histories(tracking_uri, run_id, None)[0].items()
    }
    assert direct.keys() == via_client.keys() == {"train/loss", "lr"}
    for key in direct:
        np.testing.assert_array_equal(direct[key].steps, via_client[key].steps)
        np.testing.assert_array_equal(direct[key].values, via_client[key].values)


def test_read_history_after_step_returns_only_newer_points(tracking_uri, healthy_run):
    run_id = log_run_to_mlflow(tracking_uri, healthy_run)
    newer = store.read_history(tracking_uri, run_id, "train/loss", after_step=249)
    assert newer.steps.tolist() == list(range(250, 300))
    np.testing.assert_array_equal(newer.values, healthy_run.loss.values[250:])
    assert store.read_history(tracking_uri, run_id, "train/loss", after_step=10_000).is_empty
    assert store.read_history(tracking_uri, run_id, "no/such/key").is_empty


def test_list_metric_keys_and_read_run_metadata(tracking_uri, healthy_run):
    run_id = log_run_to_mlflow(tracking_uri, healthy_run, status="KILLED")
    assert store.list_metric_keys(tracking_uri, run_id) == ["lr", "train/loss"]
    run = store.read_run(tracking_uri, run_id)
    assert (run.id, run.name, run.status) == (run_id, healthy_run.name, "failed")
    assert run.params["lr"] == "0.05" and run.start_time_ms > 0
    assert (run.loss_key, run.lr_key) == ("train/loss", "lr")
    np.testing.assert_array_equal(run.loss.values, healthy_run.loss.values)


def test_load_run_by_id_runs_uri_and_experiment(tracking_uri, healthy_run, diverging_run):
    first = log_run_to_mlflow(tracking_uri, healthy_run, experiment="sweep")
    second = log_run_to_mlflow(tracking_uri, diverging_run, experiment="sweep")
    assert load_run(first).id == first
    assert load_run(f"runs:/{second}").num_steps == diverging_run.num_steps
    runs = load_runs(["experiment:sweep"])
    assert [r.id for r in runs] == [first, second]
    assert [r.id for r in load_runs(["sweep"])] == [first, second]  # a bare name is an experiment


def test_load_ref_without_a_tracking_uri_reads_the_default_store(tracking_uri, healthy_run):
    # RunRef's tracking_uri defaults to None; this crashed in is_sql_store(None) before.
    run_id = log_run_to_mlflow(tracking_uri, healthy_run)
    run = load_ref(RunRef("mlflow", run_id, run_id))
    assert (run.id, run.num_steps) == (run_id, healthy_run.num_steps)


def test_plain_log_metric_and_lightning_names_are_found(tracking_uri, healthy_run):
    import mlflow

    mlflow.set_experiment("plain")
    with mlflow.start_run() as active:
        for step, (loss, lr) in enumerate(zip(healthy_run.loss.values[:20], healthy_run.lr.values)):
            mlflow.log_metric("loss", loss, step=step)
            mlflow.log_metric("learning_rate", lr, step=step)
    plain = load_run(active.info.run_id)
    assert (plain.loss_key, plain.lr_key, plain.num_steps) == ("loss", "learning_rate", 20)

    lightning = log_run_to_mlflow(
        tracking_uri, healthy_run, key_map={"train/loss": "train_loss", "lr": "lr-Adam"}
    )
    run = load_run(lightning)
    assert (run.loss_key, run.lr_key) == ("train_loss", "lr-Adam")


def test_a_loss_logged_again_after_a_resume_is_noted_with_the_latest_value_used(tracking_uri):
    import mlflow

    from lrwatch.sources.files import read_notes

    with mlflow.start_run() as active:
        for step in range(50):
            mlflow.log_metric("loss", 3 - step / 50, step=step)
        for step in range(30, 50):  # resumed from a checkpoint at step 30: logged again
            mlflow.log_metric("loss", 1 - step / 50, step=step)
    run = load_run(active.info.run_id)
    assert run.loss.steps.tolist() == list(range(50))
    assert run.loss.values[40] == pytest.approx(0.2)  # the resumed job's: the latest logged
    assert read_notes(run) == [
        "20 points of 'loss' repeat an earlier step: the latest of each step is used (right "
        "for a job resumed from a checkpoint; a step counted per epoch needs a global step)"
    ]
    with mlflow.start_run() as plain:
        for step in range(50):
            mlflow.log_metric("loss", 1.0, step=step)
    assert read_notes(load_run(plain.info.run_id)) == []


def _train_logging_like_mlflows_quickstart(
    epochs: int, batches: int = 20, after_each_point=None
) -> list[float]:
    """Real training logged as MLflow's PyTorch quickstart does: every 2nd batch, at
    ``step=batch // 2`` - a step that starts at 0 again every epoch. The losses, in order;
    ``after_each_point(logged)`` is called after each point is logged (a live reader)."""
    import mlflow

    logged: list[float] = []

    def log(batch: int, loss: float, lr: float) -> None:
        if batch % 2 == 0:
            mlflow.log_metric("loss", loss, step=batch // 2)
            logged.append(loss)
            if after_each_point is not None:
                after_each_point(logged)

    train_logging_each_batch(log, epochs=epochs, batches=batches)
    return logged


@pytest.mark.parametrize("store_kind", ["sqlite", "sqlalchemy", "client"])
def test_a_step_counted_per_epoch_is_numbered_across_epochs(
    tracking_uri, tmp_path, monkeypatch, store_kind
):
    """Read by step, each epoch's points replaced the epoch before's: a 3-epoch run logged as
    MLflow's quickstart logs it read as its last 10 points, "too short to judge"."""
    import mlflow

    from lrwatch.analysis import analyze
    from lrwatch.sources.files import read_notes

    uri = {
        "sqlite": tracking_uri,
        "sqlalchemy": tracking_uri.replace("sqlite:", "sqlite+pysqlite:", 1),
    }
    if store_kind == "client":  # no SQL: read through MlflowClient, here from a file store
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        uri["client"] = (tmp_path / "mlruns").as_uri()
        mlflow.set_tracking_uri(uri["client"])
    with mlflow.start_run() as active:
        logged = _train_logging_like_mlflows_quickstart(epochs=3)
        mlflow.log_metric("val_loss", logged[-1], step=2)  # once per epoch: left as logged
    run = load_run(active.info.run_id, tracking_uri=uri[store_kind])
    assert run.loss.steps.tolist() == list(range(30))
    np.testing.assert_array_equal(run.loss.values, logged)
    assert read_notes(run) == [
        "the step of 'loss' starts again every epoch (3 epochs, e.g. step=batch // 100 inside "
        "the epoch loop): steps are numbered across epochs, in logging order"
    ]
    assert run.metrics["val_loss"].steps.tolist() == [2]
    assert analyze(run).extras.get("verdict") != "too_short"


@pytest.mark.parametrize("store_kind", ["sqlite", "sqlalchemy", "client"])
def test_reads_after_a_step_follow_a_live_run_counted_per_epoch(
    tracking_uri, tmp_path, monkeypatch, store_kind
):
    """The dashboard follows a live run by reading the points after the last step it holds.
    Such a run's whole read is numbered across epochs, but a read after step 9 looked for raw
    steps above 9: once the second epoch began again at step 0, nothing new was ever found."""
    import mlflow

    uri = tracking_uri.replace("sqlite:", "sqlite+pysqlite:", 1)
    if store_kind == "sqlite":
        uri = tracking_uri
    elif store_kind == "client":
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = (tmp_path / "mlruns").as_uri()
        mlflow.set_tracking_uri(uri)
    follow_a_run_counted_per_epoch(uri)


def follow_a_run_counted_per_epoch(uri: str) -> None:
    """Train 3 epochs with a step counted per epoch, logged to the active tracking URI, and
    read ``uri`` after the last step read every 3 points: the parts read add up to the whole
    run, numbered across epochs."""
    import mlflow

    from lrwatch.sources.mlflow_store import read_history

    followed: list[Series] = []

    def follow(logged: list[float]) -> None:
        if len(logged) % 3:
            return  # a refresh every 3 points: some land mid-epoch, some at an epoch's end
        last = int(followed[-1].steps[-1]) if followed else None
        followed.append(read_history(uri, run_id, "loss", after_step=last))
        assert sum(len(part) for part in followed) == len(logged)

    with mlflow.start_run() as active:
        run_id = active.info.run_id
        logged = _train_logging_like_mlflows_quickstart(epochs=3, after_each_point=follow)
    steps = np.concatenate([part.steps for part in followed])
    values = np.concatenate([part.values for part in followed])
    assert steps.tolist() == list(range(30))  # 30 points: the last refresh came after the last
    np.testing.assert_array_equal(values, logged)
    whole = read_history(uri, run_id, "loss")
    np.testing.assert_array_equal(whole.steps, steps)


def test_only_whole_repeated_epochs_are_numbered_across_epochs():
    from lrwatch.sources.epoch_steps import steps_across_epochs

    def across(steps: list[int]):
        falling = 1.0 / (1.0 + np.arange(len(steps)))  # a loss that carries on across epochs
        found = steps_across_epochs(np.array(steps), falling)
        return None if found is None else found.tolist()

    assert across([0, 1, 2, 0, 1, 2, 0, 1]) == list(range(8))
    assert across([0, 100, 200, 0, 100]) == [0, 100, 200, 300, 400]
    assert across([0, 1, 2, 3, 2, 3, 4]) is None  # resumed at step 2
    assert across([0, 1, 2, 0, 1, 2, 3]) is None  # rerun, got further
    assert across([0, 1, 2, 0, 2, 4]) is None  # not the same steps
    assert across([0, 1, 1, 0, 1, 1]) is None  # a step logged twice
    assert across([0, 1, 2, 3]) is None  # one climb: nothing repeats


def test_a_rerun_from_scratch_is_not_read_as_a_second_epoch():
    """The same steps again, but starting over from the run's first level: a job run again
    into the same run (or file), which read as a loss jumping back up mid-run."""
    from lrwatch.sources.epoch_steps import steps_across_epochs

    rng = np.random.default_rng(0)
    attempt = 2.0 * np.exp(-np.arange(100) / 20) + 0.3 + 0.01 * rng.standard_normal(100)
    steps = np.concatenate([np.arange(100), np.arange(60)])  # the rerun has reached step 59
    rerun = np.concatenate([attempt, attempt[:60] + 0.01 * rng.standard_normal(60)])
    assert steps_across_epochs(steps, rerun) is None
    epochs = np.concatenate([attempt, 0.3 + 0.01 * rng.standard_normal(60)])  # carries on
    assert steps_across_epochs(steps, epochs).tolist() == list(range(160))
    flat = np.full(160, 0.1)  # a constant LR cannot tell: read as epochs
    assert steps_across_epochs(steps, flat) is not None


def test_unknown_run_and_experiment_are_input_errors(tracking_uri):
    with pytest.raises(InputError, match="no run"):
        load_run("0123456789abcdef0123456789abcdef")
    with pytest.raises(InputError, match="no experiment 'nope'"):
        load_runs(["experiment:nope"])
    with pytest.raises(InputError, match="no such file, run id or experiment"):
        load_runs(["nope"])


def test_a_deleted_experiment_says_so_and_how_to_restore_it(tracking_uri, healthy_run):
    import mlflow

    run_id = log_run_to_mlflow(tracking_uri, healthy_run, experiment="gone")
    client = mlflow.MlflowClient(tracking_uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    client.delete_experiment(experiment_id)
    restore = f"mlflow experiments restore --experiment-id {experiment_id}"
    with pytest.raises(InputError, match=f"experiment 'gone' is deleted .*{restore}"):
        load_runs(["experiment:gone"])
    client.restore_experiment(experiment_id)
    assert [run.id for run in load_runs(["experiment:gone"])] == [run_id]


@pytest.mark.parametrize("driver_cursor", [True, False], ids=["driver-cursor", "sqlalchemy-rows"])
def test_sqlalchemy_path_equals_the_sqlite_path(tracking_uri, monkeypatch, driver_cursor):
    """The path PostgreSQL/MySQL stores take (SQLAlchemy), driven here through pysqlite: with the
    driver's own cursor, and as drivers with another parameter style are read."""
    if not driver_cursor:
        monkeypatch.setattr(mlflow_sql, "_DRIVER_PARAMETER_MARKERS", {})
    run_id = log_run_to_mlflow(tracking_uri, _odd_run(), timestamps_ms=ODD_TIMES)
    through_sqlalchemy = tracking_uri.replace("sqlite:", "sqlite+pysqlite:", 1)
    assert mlflow_sql.is_sql_store(through_sqlalchemy)
    assert store.list_metric_keys(through_sqlalchemy, run_id) == ["lr", "train/loss"]
    direct = store.read_histories(tracking_uri, run_id, after_step=0)
    generic = store.read_histories(through_sqlalchemy, run_id, after_step=0)
    assert direct.keys() == generic.keys() == {"train/loss", "lr"}
    for key in direct:
        np.testing.assert_array_equal(direct[key].steps, generic[key].steps)
        np.testing.assert_array_equal(direct[key].values, generic[key].values)


def test_a_run_logged_without_steps_is_read_in_logging_order(tracking_uri, diverging_run):
    """``mlflow.log_metrics({...})`` with no step logs every point at step 0. Read as one step, a
    real diverging run was a single point: "too short to judge"."""
    import mlflow

    from lrwatch.analysis import analyze
    from lrwatch.sources.files import read_notes

    with mlflow.start_run() as active:
        for loss, lr in zip(diverging_run.loss.values, diverging_run.lr.values):
            mlflow.log_metrics({"loss": loss, "learning_rate": lr})
    run = load_run(active.info.run_id)
    n = diverging_run.num_steps
    assert run.loss.steps.tolist() == list(range(n)) == run.lr.steps.tolist()
    np.testing.assert_array_equal(run.loss.values, diverging_run.loss.values)
    assert read_notes(run) == [
        f"all {n} points of 'loss' were logged at one step (mlflow.log_metric without step= "
        "logs step 0): read in logging order, one step per point"
    ]
    found = analyze(run).findings
    assert [(f.kind, f.start_step) for f in found] == [
        (f.kind, f.start_step) for f in analyze(diverging_run).findings
    ]
    assert found[0].kind == "divergence"


def test_an_lr_logged_once_per_epoch_without_steps_lands_on_its_epochs_first_step(
    tracking_uri, healthy_run
):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("unstepped")).info.run_id
    lr_per_epoch = [0.1, 0.05, 0.025]
    log_unstepped(tracking_uri, run_id, healthy_run.loss.values, lr_per_epoch)
    direct = store.read_histories(tracking_uri, run_id)
    assert direct["lr"].steps.tolist() == [0, 100, 200]
    assert direct["lr"].values.tolist() == lr_per_epoch
    assert direct["loss"].steps.tolist() == list(range(healthy_run.num_steps))
    # The client (an http server, Databricks) and the SQLAlchemy path (PostgreSQL) agree.
    through_client = store.number_in_logging_order(
        store._client_histories(tracking_uri, run_id, None)[1]
    )
    generic = store.read_histories(tracking_uri.replace("sqlite:", "sqlite+pysqlite:", 1), run_id)
    for other in (through_client, generic):
        assert other.keys() == direct.keys()
        for key in direct:
            np.testing.assert_array_equal(other[key].steps, direct[key].steps)
            np.testing.assert_array_equal(other[key].values, direct[key].values)


def test_a_live_run_logged_without_steps_refreshes_with_its_new_points(tracking_uri, healthy_run):
    """The dashboard's refresh reads points after the last cached step; for a metric logged
    with no step that filter matched nothing, so the chart of a running job froze."""
    from mlflow import MlflowClient

    from dashboard.data.cache import SeriesCache

    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("unstepped-live")).info.run_id
    loss = healthy_run.loss.values
    log_unstepped(tracking_uri, run_id, loss[:150], [0.1, 0.05, 0.025])
    cache = SeriesCache(reader=store.read_histories)
    first = cache.get(tracking_uri, run_id, ["loss", "lr"])
    assert first["loss"].steps[-1] == 149 and first["lr"].steps.tolist() == [0, 100]
    log_unstepped(tracking_uri, run_id, loss[150:], [0.1, 0.05, 0.025], first=150)
    later = cache.refresh(tracking_uri, run_id, ["loss", "lr"])
    assert later["loss"].steps.tolist() == list(range(loss.size))
    np.testing.assert_array_equal(later["loss"].values, loss)
    assert later["lr"].steps.tolist() == [0, 100, 200]
    newer = store.read_histories(tracking_uri, run_id, ["loss"], after_step=249)["loss"]
    assert newer.steps.tolist() == list(range(250, loss.size))


def _run_with_other_metrics(run: Run) -> Run:
    """The loss and two param groups' LRs, beside what a real script logs too: per-layer
    gradient norms, a held-out loss, Lightning's momentum (which is not an LR)."""
    steps = run.loss.steps
    metrics = dict(run.metrics)
    metrics["lr/pg1"] = Series(steps, run.lr.values * 10)
    for layer in range(3):
        metrics[f"grad_norm/layer{layer}"] = Series(
            steps, np.linspace(1.0, 2.0 + layer, steps.size)
        )
    metrics["val_loss"] = Series(steps[::50], run.loss.values[::50] + 0.1)
    metrics["lr-SGD-momentum"] = Series(steps, np.full(steps.size, 0.9))
    return Run(id="many", name="many", params=dict(run.params), metrics=metrics)


def test_analyze_reads_the_loss_and_lr_alone_and_reports_as_on_the_whole_run(
    tracking_uri, healthy_run, diverging_run
):
    """Through a tracking server each metric is a paged read of its own: a run logging 20
    gradient norms a step took 10x as long to read whole as its loss and LR alone. The other
    param groups' LRs are read when the recommendation scales them, and only then."""
    from lrwatch.analysis import analyze
    from lrwatch.batch import analyze_specs

    for run, scaled in ((diverging_run, True), (healthy_run, False)):
        run_id = log_run_to_mlflow(tracking_uri, _run_with_other_metrics(run))
        [result] = analyze_specs([f"runs:/{run_id}"], tracking_uri=tracking_uri)
        assert sorted(result.run.metrics) == ["lr", "train/loss"]
        whole = store.read_run(tracking_uri, run_id)
        assert len(whole.metrics) == 8 and whole.unread is None
        assert result.report.to_dict() == analyze(whole).to_dict()

        loaded = load_ref(RunRef("mlflow", run_id, run_id, tracking_uri), analysed_only=True)
        read_later = _record_reads(loaded)
        recommendation = analyze(loaded).recommendation
        assert read_later == ([["lr/pg1"]] if scaled else []), recommendation.action
        assert ("group_lrs" in recommendation.evidence) is scaled


def _record_reads(run: Run) -> list[list[str]]:
    """Record, in the list returned, each read of a series the loader left unread."""
    calls: list[list[str]] = []
    read = run.unread.read
    run.unread = dataclasses.replace(
        run.unread, read=lambda names: calls.append(list(names)) or read(names)
    )
    return calls


def test_a_key_the_run_lacks_is_worded_with_every_metric_it_has(tracking_uri, diverging_run):
    from lrwatch.batch import analyze_specs

    run_id = log_run_to_mlflow(tracking_uri, _run_with_other_metrics(diverging_run))
    for option in ({"loss_key": "train/nll"}, {"lr_key": "lr/pg7"}):
        [result] = analyze_specs([run_id], tracking_uri=tracking_uri, **option)
        assert "grad_norm/layer2" in result.error and "val_loss" in result.error, option


def test_analysed_keys_are_the_loss_or_its_parts_then_group_0s_lr():
    names = ["grad_norm/layer0", "lr", "lr-SGD-momentum", "lr/pg1", "train/loss", "val_loss"]
    assert store.analysed_keys(names, None, None) == ["train/loss", "lr"]
    assert store.analysed_keys(names, "val_loss", "lr/pg1") == ["val_loss", "lr/pg1"]
    lightning = ["epoch", "lr-Adam/pg2", "lr-Adam/pg1", "train_loss_step", "val_acc"]
    assert store.analysed_keys(lightning, None, None) == ["train_loss_step", "lr-Adam/pg1"]
    yolo = [
        "lr/pg0",
        "lr/pg1",
        "metrics/mAP50",
        "train/box_loss",
        "train/cls_loss",
        "train/dfl_loss",
    ]
    assert store.analysed_keys(yolo, None, None) == [
        "train/box_loss", "train/cls_loss", "train/dfl_loss", "lr/pg0",
    ]  # fmt: skip
    assert store.analysed_keys(["loss"], None, None) == ["loss"]  # no LR logged
    # Nothing to name the loss by, or a key asked for that the run lacks: read everything.
    assert store.analysed_keys(["accuracy", "lr"], None, None) is None
    assert store.analysed_keys(names, "train/nll", None) is None
    assert store.analysed_keys(names, None, "lr/pg7") is None


def log_sweep(uri: str, healthy_run: Run, diverging_run: Run) -> dict[str, str]:
    """A store as MLflow's client writes it: an experiment of runs with params and tags (two
    started in the same millisecond), a deleted run, a run in another experiment. Ids by name."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(uri)
    ids = {
        "healthy": log_run_to_mlflow(uri, healthy_run, experiment="sweep"),
        "diverging": log_run_to_mlflow(uri, diverging_run, experiment="sweep"),
        "other": log_run_to_mlflow(uri, healthy_run, experiment="other"),
    }
    experiment_id = client.get_experiment_by_name("sweep").experiment_id
    for name in ("twin-b", "twin-a", "deleted"):
        created = client.create_run(experiment_id, start_time=1_000, run_name=name)
        client.log_batch(created.info.run_id, metrics=[Metric("loss", 0.5, 1_000, 0)])
        client.set_tag(created.info.run_id, "mlflow.note.content", "same start")
        ids[name] = created.info.run_id
    client.delete_run(ids["deleted"])
    ids["experiment_id"] = experiment_id
    return ids


def assert_read_as_its_client_reads_it(uri: str, ids: dict[str, str], monkeypatch) -> None:
    """Runs and experiments read from a SQL store's tables equal what MLflow's client gives."""
    from lrwatch.sources import specs

    run_ids = [v for k, v in ids.items() if k != "experiment_id"]
    direct = {rid: store.read_run(uri, rid) for rid in run_ids}
    specs_direct = {
        spec: [ref.target for ref in specs.expand(spec, tracking_uri=uri)]
        for spec in ("experiment:sweep", "sweep", ids["experiment_id"], "other")
    }
    # Oldest first; the two started in the same millisecond by run id; no deleted run.
    twins = sorted([ids["twin-a"], ids["twin-b"]])
    assert specs_direct["sweep"] == [*twins, ids["healthy"], ids["diverging"]]

    monkeypatch.setattr(mlflow_sql, "run_meta", lambda *args: None)
    monkeypatch.setattr(mlflow_sql, "experiment_run_ids", lambda *args, **kw: None)
    for rid, run in direct.items():
        through_client = store.read_run(uri, rid)
        fields = {**vars(run), "metrics": None}
        assert fields == {**vars(through_client), "metrics": None}, rid
        assert run.metrics.keys() == through_client.metrics.keys()
        for key, series in run.metrics.items():
            np.testing.assert_array_equal(series.values, through_client.metrics[key].values)
    for spec, targets in specs_direct.items():
        assert targets == [ref.target for ref in specs.expand(spec, tracking_uri=uri)], spec


def assert_direct_reads_equal_mlflows_own(uri: str) -> None:
    """A database store's metrics read from its tables equal what MLflow's client reads: NaN
    kept, -inf restored from the store's stand-in, a repeated step's later value winning."""
    assert mlflow_sql.is_sql_store(uri)
    run_id = log_run_to_mlflow(uri, _odd_run(), timestamps_ms=ODD_TIMES)
    loss = store.read_history(uri, run_id, "train/loss")
    assert loss.steps.tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(loss.values, [1.0, math.nan, 0.25, 0.3, -math.inf, -0.5])
    direct = store.read_histories(uri, run_id)
    via_client = store._client_histories(uri, run_id, None)[0]
    assert direct.keys() == via_client.keys() == {"train/loss", "lr"}
    for key, series in via_client.items():
        np.testing.assert_array_equal(direct[key].steps, series.cleaned().steps)
        np.testing.assert_array_equal(direct[key].values, series.cleaned().values)
    assert store.list_metric_keys(uri, run_id) == ["lr", "train/loss"]
    newer = store.read_history(uri, run_id, "train/loss", after_step=3)
    assert newer.steps.tolist() == [4, 5]


def assert_analysed_without_importing_mlflow(
    uri: str, ids: dict[str, str], heavy: tuple[str, ...] = ("mlflow",)
) -> None:
    code = (
        "import sys; from lrwatch.cli import main; rc = main(['analyze', *sys.argv[2:]]); "
        "heavy = [m for m in sys.argv[1].split(',') if m in sys.modules]; "
        "print('HEAVY', heavy, rc, file=sys.stderr)"
    )
    for spec in (ids["healthy"], "experiment:sweep"):
        args = [",".join(heavy), spec, "--tracking-uri", uri, "--format", "json"]
        out = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
        )
        assert "HEAVY [] 0" in out.stderr, out.stderr
        assert ids["healthy"] in out.stdout


def test_a_sqlite_store_is_read_without_mlflow_as_its_client_reads_it(
    tracking_uri, healthy_run, diverging_run, monkeypatch
):
    """Importing MLflow took 3 s of `lrwatch analyze RUN_ID` on the default store, whose
    analysis takes ~0.1 s; its ORM ~10 ms a run more. Runs and experiments of a SQL store are
    now read from its tables, and must come out as the client gives them."""
    ids = log_sweep(tracking_uri, healthy_run, diverging_run)
    assert_read_as_its_client_reads_it(tracking_uri, ids, monkeypatch)


def test_analysing_a_run_or_an_experiment_of_a_sqlite_store_does_not_import_mlflow(
    tracking_uri, healthy_run, diverging_run
):
    ids = log_sweep(tracking_uri, healthy_run, diverging_run)
    assert_analysed_without_importing_mlflow(tracking_uri, ids, heavy=("mlflow", "sqlalchemy"))
