"""`lrwatch analyze`: exit codes, one-line errors, JSON shape, MLflow specs, light imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lrwatch.cli import main
from lrwatch.sources.files import save_run_csv
from lrwatch.store import UnsupportedTrackingUri, check_tracking_uri, display_uri, hide_passwords
from tests.net import free_port
from tests.sources.conftest import log_run_to_mlflow
from tests.sources.test_sources_tensorboard import _log_with_summary_writer

CONTRACT_FINDING_KEYS = {"kind", "start_step", "end_step", "severity", "message", "evidence"}
CONTRACT_RECOMMENDATION_KEYS = {"action", "suggested_lr", "factor", "message"}


def _cli(*args: str, cwd=None, stdin: bytes = b"", env=None) -> subprocess.CompletedProcess:
    """The real command in a fresh process (stdout, stderr, exit status as a user sees them),
    given ``stdin`` piped in."""
    out = subprocess.run(
        [sys.executable, "-m", "lrwatch.cli", "analyze", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )
    return subprocess.CompletedProcess(
        out.args, out.returncode, out.stdout.decode(), out.stderr.decode()
    )


def _strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def healthy_csv(tmp_path, healthy_run):
    return str(save_run_csv(healthy_run, tmp_path / "healthy.csv"))


@pytest.fixture
def diverging_csv(tmp_path, diverging_run):
    return str(save_run_csv(diverging_run, tmp_path / "diverging.csv"))


def test_analysing_a_csv_imports_neither_mlflow_dash_nor_torch(healthy_csv):
    code = (
        "import sys; from lrwatch.cli import main; rc = main(['analyze', sys.argv[1]]); "
        "heavy = [m for m in ('mlflow', 'dash', 'torch', 'sqlalchemy') if m in sys.modules]; "
        "print('HEAVY', heavy, rc, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code, healthy_csv], capture_output=True, text=True)
    assert "HEAVY [] 0" in out.stderr, out.stderr
    assert "Run healthy" in out.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "not a table"),
        (
            b"step,accuracy\n0,0.5\n",
            "no loss column among columns (accuracy); name it with --loss-key",
        ),
        # Before: "no loss column among columns (0, 2.5, 0.1); name it with --loss-key".
        (b"0,2.5,0.1\n1,2.4,0.1\n", "no header row: the first row holds numbers (0, 2.5, 0.1)"),
    ],
    ids=["missing", "garbage", "no-loss", "no-header"],
)
def test_bad_input_in_a_real_process_is_one_line_and_exit_2(tmp_path, content, message):
    path = tmp_path / "run.csv"
    if content is not None:
        path.write_bytes(content)
    result = _cli(str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"step,loss\n", "no rows"),
        (b"step,loss\nx,y\n", "no numeric"),
    ],
)
def test_more_bad_files_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "run.csv"
    path.write_bytes(content)
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_usage_errors_exit_2(capsys, healthy_csv):
    assert main(["analyze"]) == 2
    assert "nothing to analyse" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:  # argparse: unknown choice
        main(["analyze", healthy_csv, "--format", "yaml"])
    assert caught.value.code == 2


def test_json_follows_the_contract(capsys, healthy_csv, diverging_csv):
    assert main(["analyze", healthy_csv, diverging_csv, "--format", "json"]) == 0
    document = _strict_json(capsys.readouterr().out)
    assert [entry["run"] for entry in document["runs"]] == [healthy_csv, diverging_csv]
    for entry in document["runs"]:
        assert entry["recommendation"].keys() >= CONTRACT_RECOMMENDATION_KEYS
        for finding in entry["findings"]:
            assert finding.keys() >= CONTRACT_FINDING_KEYS
            assert entry["first_step"] <= finding["start_step"] <= finding["end_step"]
    if "sweep" in document:
        assert document["sweep"].keys() >= CONTRACT_RECOMMENDATION_KEYS


def test_text_report_names_the_run_and_what_to_do(capsys, healthy_csv, tmp_path):
    assert main(["analyze", healthy_csv]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Run healthy\n")
    assert "300 steps (0..299)" in out and "Recommendation:" in out and "schedule:" in out
    one_row = tmp_path / "one.csv"
    one_row.write_text("step,loss\n0,1.0\n")
    assert main(["analyze", str(one_row)]) == 0
    out = capsys.readouterr().out
    assert "1 step (0..0)" in out and "Too short to judge: 1 loss point logged" in out


def test_a_crashed_writers_cut_off_json_lines_is_analysed_with_a_note(tmp_path, diverging_run):
    # The real diverging run as JSON Lines whose writer died mid-line: the run is still judged
    # (its divergence is in the lines before the cut) and the report says what was left out.
    rows = zip(diverging_run.loss.steps.tolist(), diverging_run.loss.values.tolist())
    text = "".join(json.dumps({"step": step, "loss": loss}) + "\n" for step, loss in rows)
    path = tmp_path / "crashed.jsonl"
    path.write_text(text[: text.rindex("\n", 0, -1) + 12])
    done = _cli(str(path))
    assert done.returncode == 0 and done.stderr == ""
    line = len(diverging_run.loss)
    assert f"note: line {line} is cut off (the writer stopped mid-line): left out" in done.stdout
    assert "divergence" in done.stdout
    entry = _strict_json(_cli(str(path), "--format", "json").stdout)["runs"][0]
    assert entry["notes"] == [f"line {line} is cut off (the writer stopped mid-line): left out"]
    assert entry["last_step"] == int(diverging_run.loss.steps[-2])


def test_one_bad_input_among_good_ones(tmp_path, capsys, healthy_csv):
    missing = str(tmp_path / "missing.csv")
    assert main(["analyze", healthy_csv, missing, "--format", "json"]) == 2
    captured = capsys.readouterr()
    document = _strict_json(captured.out)
    assert [e["run"] for e in document["runs"]] == [healthy_csv]  # the good one is still reported
    assert document["errors"][0]["run"] == missing
    assert captured.err.strip() == f"lrwatch: error: {missing}: no such file"


def test_fail_on_critical_for_a_real_diverging_run(capsys, healthy_csv, diverging_csv):
    assert main(["analyze", healthy_csv, "--fail-on", "critical"]) == 0
    assert main(["analyze", diverging_csv, "--fail-on", "warning"]) == 1
    assert main(["analyze", diverging_csv, "--fail-on", "critical"]) == 1
    out = capsys.readouterr().out
    assert "[CRITICAL] divergence" in out


def test_mlflow_run_id_runs_uri_and_experiment(tracking_uri, capsys, healthy_run, diverging_run):
    first = log_run_to_mlflow(tracking_uri, healthy_run, experiment="cli-sweep")
    second = log_run_to_mlflow(tracking_uri, diverging_run, experiment="cli-sweep")
    for spec in (first, f"runs:/{first}"):
        assert main(["analyze", spec, "--format", "json", "--tracking-uri", tracking_uri]) == 0
        captured = capsys.readouterr()
        assert [e["run"] for e in _strict_json(captured.out)["runs"]] == [first]
        assert f"tracking store {tracking_uri}" in captured.err
    for args in (["--experiment", "cli-sweep"], ["experiment:cli-sweep"], ["cli-sweep"]):
        assert main(["analyze", *args, "--format", "json"]) == 0  # store from MLFLOW_TRACKING_URI
        runs = _strict_json(capsys.readouterr().out)["runs"]
        assert [(e["run"], e["name"], e["status"]) for e in runs] == [
            (first, healthy_run.name, "finished"),
            (second, diverging_run.name, "finished"),
        ]


@pytest.mark.server
def test_an_mlflow_ui_address_pasted_from_the_browser(
    tmp_path, _migrated_mlflow_db, healthy_run, diverging_run
):
    # People copy a run's address out of the MLflow UI; it was read as a missing file
    # ("http:/127.0.0.1:5000/#/experiments/1/runs/...: no such file").
    import shutil

    from tests.tracking.conftest import MlflowServer

    shutil.copy(_migrated_mlflow_db, tmp_path / "server.db")
    server = MlflowServer(f"sqlite:///{tmp_path / 'server.db'}", free_port(), tmp_path)
    server.start()
    try:
        first = log_run_to_mlflow(server.uri, healthy_run, experiment="ui")
        second = log_run_to_mlflow(server.uri, diverging_run, experiment="ui")
        from mlflow import MlflowClient

        experiment = MlflowClient(server.uri).get_experiment_by_name("ui").experiment_id
        ui = f"{server.uri}/#/experiments/{experiment}"
        elsewhere = f"sqlite:///{tmp_path / 'other.db'}"  # the address names its own server
        cases = [
            (f"{ui}/runs/{first}", [first]),
            (f"{ui}/runs/{second}/model-metrics", [second]),
            (f"{ui}?searchFilter=&orderByKey=attributes.start_time", [first, second]),
        ]
        for spec, expected in cases:
            result = _cli(spec, "--format", "json", "--tracking-uri", elsewhere, cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            assert [e["run"] for e in _strict_json(result.stdout)["runs"]] == expected
            assert result.stderr.splitlines()[0] == f"lrwatch: tracking store {server.uri}"
        unknown = _cli(f"{server.uri}/#/experiments/999", cwd=tmp_path)
        assert unknown.returncode == 2 and unknown.stderr.splitlines()[-1] == (
            f"lrwatch: error: no experiment with id '999' in tracking store {server.uri}"
        )
    finally:
        server.stop()
    assert not (tmp_path / "other.db").exists()


def test_unknown_run_and_experiment_exit_2(tracking_uri, capsys):
    assert main(["analyze", "0123456789abcdef0123456789abcdef"]) == 2
    assert "no run '0123456789abcdef0123456789abcdef'" in capsys.readouterr().err
    assert main(["analyze", "--experiment", "nope"]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err
    assert main(["analyze", "nope"]) == 2
    assert "'nope': no such file, run id or experiment" in capsys.readouterr().err


def test_unreachable_tracking_server_is_one_line(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = _cli("0123456789abcdef0123456789abcdef", "--tracking-uri", uri, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"lrwatch: error: cannot reach tracking server {uri} (connection refused)"
    )


def test_a_tracking_uri_scheme_no_store_has_is_named(tmp_path):
    """Before: MLflow's "Model registry functionality is unavailable; got unsupported URI ..."
    and its list of schemes, for a tracking URI mistyped as ``htpx://``."""
    result = _cli(
        "my-experiment", "--tracking-uri", "htpx://team:s3cret@mlflow-host:5000", cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "lrwatch: error: tracking URI htpx://team:***@mlflow-host:5000: MLflow has no tracking "
        "store for 'htpx://' (use a folder, sqlite:///path.db, postgresql://..., mysql://... or "
        "http(s)://host:port)"
    )


def test_a_databricks_uri_without_credentials_is_one_error_line(tmp_path):
    """MLflow logged a 400-character WARNING (no SDK workspace client, falling back) above
    lrwatch's own error; its log lines now stay below ERROR in ``lrwatch analyze``, unless the
    person sets MLFLOW_LOGGING_LEVEL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS", "MLFLOW_"))}
    env["HOME"] = str(tmp_path)  # no ~/.databrickscfg
    result = _cli("--tracking-uri", "databricks", "0123456789abcdef", env=env)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "lrwatch: tracking store databricks"
    assert [line.split(":")[0:2] for line in lines[1:]] == [["lrwatch", " error"]], lines


@pytest.mark.parametrize(
    "uri",
    ["mlruns", "/srv/mlruns", "file:///srv/mlruns", "sqlite:///mlflow.db", "SQLITE:///m.db",
     "postgresql+psycopg2://u@db/mlflow", "mysql+pymysql://u@db/mlflow", "https://host:5000",
     "databricks", "databricks://profile", "C:\\runs\\mlruns"],
)  # fmt: skip
def test_every_scheme_mlflow_reads_passes_the_uri_check(uri):
    assert check_tracking_uri(uri) == uri


@pytest.mark.parametrize("uri", ["bogus://x", "s3://bucket/mlruns", "postgres://u@db/mlflow"])
def test_schemes_no_tracking_store_has_are_refused(uri):
    with pytest.raises(UnsupportedTrackingUri, match="MLflow has no tracking store for") as error:
        check_tracking_uri(uri)
    assert ("did you mean postgresql://...?" in str(error.value)) == uri.startswith("postgres:")


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://mlflow:PASSWORD@db-host/mlflow", "postgresql://mlflow:***@db-host/mlflow"),
        ("https://user:to@ken@mlflow-host:5000", "https://user:***@mlflow-host:5000"),
        ("postgresql+psycopg://reader@db-host:5432/mlflow", None),  # no password: unchanged
        ("sqlite:///mlflow.db", None),
        ("http://127.0.0.1:5000", None),
    ],
)
def test_display_uri_hides_a_password_and_nothing_else(uri, shown):
    assert display_uri(uri) == (shown or uri)


def test_hide_passwords_reaches_uris_quoted_in_other_programs_messages():
    text = "got unsupported URI 'foo://u:pw@host/x' for storage; see https://a:b@c.org/d, done"
    assert hide_passwords(text) == (
        "got unsupported URI 'foo://u:***@host/x' for storage; see https://a:***@c.org/d, done"
    )


@pytest.mark.parametrize("scheme", ["http", "postgresql"])
def test_a_password_in_the_tracking_uri_is_never_printed(tmp_path, scheme):
    # Nothing listens on the port. MLflow's own PostgreSQL store would retry it for ~100 s with
    # a multi-line warning each time; lrwatch connects once and says so in one line.
    uri = f"{scheme}://team:s3cret@127.0.0.1:{free_port()}/mlflow"
    shown = uri.replace(":s3cret@", ":***@")
    result = _cli("0123456789abcdef0123456789abcdef", "--tracking-uri", uri, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"lrwatch: tracking store {shown}",
        f"lrwatch: error: cannot reach tracking server {shown} (connection refused)",
    ]


def test_odd_but_valid_real_run_is_analysed(tmp_path, capsys, healthy_run):
    """Shuffled rows, a repeated step, NaN/inf strings, negative losses, LR logged sparsely."""
    rng = np.random.default_rng(0)
    steps = healthy_run.loss.steps.tolist()
    losses = (healthy_run.loss.values - 5.0).tolist()  # negative losses
    lines = ["step,loss,lr"]
    for step, loss, lr in zip(steps, losses, healthy_run.lr.values.tolist()):
        lines.append(f"{step},{loss!r},{lr!r}" if step % 10 == 0 else f"{step},{loss!r},")
    lines[101] = "100,nan,0.05"
    lines[151] = "150,inf,"
    lines.append(f"{steps[5]},{losses[5]!r},")  # step 5 logged again (the later row wins)
    body = lines[1:]
    rng.shuffle(body)
    path = tmp_path / "odd.csv"
    path.write_text("\n".join([lines[0], *body]) + "\n")
    assert main(["analyze", str(path), "--format", "json"]) == 0
    entry = _strict_json(capsys.readouterr().out)["runs"][0]
    assert (entry["num_steps"], entry["first_step"], entry["last_step"]) == (300, 0, 299)
    assert entry["lr_key"] == "lr"


def test_reading_never_creates_a_tracking_store(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["analyze", "typo.cvs"]) == 2  # not a table suffix, so read as an experiment name
    err = capsys.readouterr().err
    assert "'typo.cvs': no such file, run id or experiment" in err
    assert not (tmp_path / "mlflow.db").exists()


def test_reading_writes_no_tables_into_a_sqlite_file_that_is_not_mlflows(tmp_path, capsys):
    """MLflow's client created its tables in whatever SQLite file was named as the store."""
    import sqlite3

    app = tmp_path / "app.db"
    with sqlite3.connect(app) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    (tmp_path / "empty.db").touch()
    for store in (app, tmp_path / "empty.db"):
        uri = f"sqlite:///{store}"
        for spec in ("0123456789abcdef0123456789abcdef", "experiment:sweep"):
            assert main(["analyze", spec, "--tracking-uri", uri]) == 2
            err = capsys.readouterr().err.strip().splitlines()[-1]
            assert err.endswith(
                f"({uri} is no MLflow tracking store: it holds none of MLflow's tables)"
            )
    with sqlite3.connect(app) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("users",)]
    assert (tmp_path / "empty.db").stat().st_size == 0


def test_experiment_runs_without_a_loss_are_skipped_not_errors(tracking_uri, capsys, healthy_run):
    from lrwatch.run import Run, Series

    parent = Run(id="parent", name="parent", metrics={"accuracy": Series([0, 1], [0.5, 0.6])})
    log_run_to_mlflow(tracking_uri, parent, experiment="nested")
    child = log_run_to_mlflow(tracking_uri, healthy_run, experiment="nested")
    assert main(["analyze", "--experiment", "nested"]) == 0
    out = capsys.readouterr().out
    assert f"id: {child}" in out and "1 skipped (no loss)" in out.splitlines()[-1]

    log_run_to_mlflow(tracking_uri, parent, experiment="only-parents")
    assert main(["analyze", "--experiment", "only-parents"]) == 2
    err = capsys.readouterr().err
    assert "experiment:only-parents: no run with a loss to analyse (1 logged no loss)" in err


def test_a_folder_s_files_that_are_no_log_of_steps_are_skipped_not_errors(
    tmp_path, capsys, healthy_run
):
    """A Hugging Face output folder holds config.json beside trainer_state.json; a W&B run's
    files/ holds wandb-summary.json (one row: its final numbers); the bundled sample_runs/ a
    manifest. Each made `lrwatch analyze FOLDER` exit 2 or report a one-point "run"."""
    save_run_csv(healthy_run, tmp_path / "metrics.csv")
    (tmp_path / "config.json").write_text('{"hidden_size": 768, "num_hidden_layers": 12}')
    (tmp_path / "wandb-summary.json").write_text('{"train/loss": 0.2, "_step": 999, "lr": 0.1}')
    assert main(["analyze", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.count("Run ") == 1 and "Run metrics" in out
    summary = out.rstrip().splitlines()[-1]
    assert "1 skipped (no loss)" in summary and "1 skipped (a one-row JSON document)" in summary
    assert err.splitlines() == [
        f"lrwatch: skipped {tmp_path / 'config.json'}: no loss column among columns "
        "(hidden_size, num_hidden_layers); name it with --loss-key",
        f"lrwatch: skipped {tmp_path / 'wandb-summary.json'}: one row of JSON, the settings or "
        "final numbers of a run, not a log",
    ]
    # --format json lists them, with why (an extra key: the contract's keys are unchanged).
    assert main(["analyze", str(tmp_path), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["runs"]) == 1
    assert [(s["run"], s["reason"]) for s in document["skipped"]] == [
        (str(tmp_path / "config.json"), "no loss"),
        (str(tmp_path / "wandb-summary.json"), "a one-row JSON document"),
    ]
    # Named on their own they are read as given: an error, and a run too short to judge.
    assert main(["analyze", str(tmp_path / "config.json")]) == 2
    assert main(["analyze", str(tmp_path / "wandb-summary.json")]) == 0
    assert "Too short to judge" in capsys.readouterr().out
    # A folder of nothing but such files has no run to analyse.
    (tmp_path / "metrics.csv").unlink()
    assert main(["analyze", str(tmp_path)]) == 2
    assert "no run with a loss to analyse (1 logged no loss)" in capsys.readouterr().err


def test_the_bundled_sample_folder_is_its_runs_alone(capsys):
    from lrwatch.samples import sample_names, samples_dir

    assert main(["analyze", str(samples_dir())]) == 0
    out = capsys.readouterr().out
    assert out.count("\nRun ") + out.startswith("Run ") == len(sample_names())
    assert "Run manifest" not in out


def test_a_search_logged_as_nested_runs_is_a_sweep_of_its_trials(tracking_uri, capsys):
    """An Optuna/hyperopt search: a parent run with the search's params and best loss, each
    trial a nested run. Before: the parent's params kept the trials from reading as a sweep,
    so the sweep section was missing."""
    import mlflow

    from lrwatch.tasks import TrainConfig, train

    mlflow.set_experiment("study")
    with mlflow.start_run(run_name="search"):
        mlflow.log_params({"n_trials": 4, "sampler": "grid"})
        trials = []
        for lr in (0.01, 0.03, 0.1, 0.3):
            run = train(TrainConfig(task="quadratic", lr=lr, steps=200, seed=0))
            with mlflow.start_run(run_name=f"lr{lr}", nested=True) as trial:
                mlflow.log_params({"lr": lr, "task": "quadratic", "steps": 200})
                for step, loss in zip(run.loss.steps.tolist(), run.loss.values.tolist()):
                    mlflow.log_metric("train_loss", loss, step=step)
            trials.append(trial.info.run_id)
        mlflow.log_metric("best_loss", 0.01)
    assert main(["analyze", "--experiment", "study", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # The parent's best_loss (one point) is no training curve: it was reported "too short to
    # judge" beside its trials; it is skipped and counted.
    assert sorted(r["run"] for r in report["runs"]) == sorted(trials)
    assert sorted(p["run"] for p in report["sweep"]["evidence"]["curve"]) == sorted(trials)
    assert main(["analyze", "--experiment", "study"]) == 0
    text = capsys.readouterr().out
    assert "Sweep over 4 runs" in text and "Too short" not in text
    assert text.rstrip().endswith("1 skipped (a search's parent run)")


def test_sweep_section_needs_a_sweep_or_the_flag(tmp_path, healthy_run, diverging_run):
    """Files carry no params: unrelated runs get no sweep unless the person says they are one."""
    paths = [
        str(save_run_csv(run, tmp_path / f"{name}.csv"))
        for name, run in (("a", healthy_run), ("b", diverging_run))
    ]
    plain = _cli(*paths, "--format", "json")
    assert "sweep" not in _strict_json(plain.stdout)
    forced = _cli(*paths, "--format", "json", "--sweep")
    assert _strict_json(forced.stdout)["sweep"].keys() >= CONTRACT_RECOMMENDATION_KEYS


def test_files_trained_at_three_lrs_or_more_hint_at_the_sweep_flag(capsys, healthy_csv):
    """A sweep's saved files got one report each and no word that ``--sweep`` would say which
    rate to use (files carry no params, so lrwatch cannot tell they share a task)."""
    from lrwatch.samples import samples_dir

    sweep = sorted(str(path) for path in samples_dir().glob("sweep-adam-lr*.parquet"))[:4]
    hint = "these 4 runs were trained at 4 different LRs; if they are one sweep (one task), add "
    assert main(["analyze", *sweep]) == 0
    out, err = capsys.readouterr()
    assert f"lrwatch: {hint}--sweep" in err and "Sweep over" not in out
    assert main(["analyze", *sweep, "--sweep"]) == 0
    out, err = capsys.readouterr()
    assert "Sweep over 4 runs" in out and hint not in err
    for quiet in (["--no-sweep"], []):  # said they are no sweep; two rates are no sweep
        runs = sweep if quiet else [*sweep[:1], healthy_csv]
        assert main(["analyze", *runs, *quiet]) == 0
        assert "add --sweep" not in capsys.readouterr().err


def test_a_range_test_analysed_beside_a_sweep_is_no_point_of_its_curve(capsys):
    """With --sweep, the range test's top rate (1.28) and its blown-up last loss were a point
    of the sensitivity curve: "Of 7 LRs from 0.0001 to 1.28"."""
    from lrwatch.samples import samples_dir

    sweep = sorted(str(path) for path in samples_dir().glob("sweep-adam-lr0.0*.parquet"))
    range_test = str(samples_dir() / "lr-range-test.parquet")
    assert main(["analyze", *sweep, range_test, "--sweep", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert range_test in [r["run"] for r in report["runs"]]  # still analysed, as a range test
    assert sorted(p["run"] for p in report["sweep"]["evidence"]["curve"]) == sweep
    assert main(["analyze", *sweep, range_test]) == 0  # no range test counted toward the hint
    assert f"these {len(sweep)} runs were trained" in capsys.readouterr().err


def test_each_run_of_a_sweep_is_told_where_it_ended_and_when_the_sweep_contradicts_it(
    tmp_path, capsys
):
    """Adam on the regression MLP at 0.01, 0.03 (its best rate) and 0.1. At 0.03 the loss still
    falls at the end, and the run alone is told to raise its rate 3x; the sweep's own run at
    0.1 ended about twice as high. Before, the report gave that advice a few lines above the
    sweep's pick of a lower rate, and nothing tied the two together."""
    from lrwatch.tasks import TrainConfig, train

    config = TrainConfig(task="mlp_regression", optimizer="adam", steps=1000, seed=8, task_seed=8)
    paths = [
        str(save_run_csv(train(config.with_(lr=lr)), tmp_path / f"adam-lr{lr}.csv"))
        for lr in (0.01, 0.03, 0.1)
    ]
    assert main(["analyze", *paths, "--sweep", "--format", "json"]) == 0
    runs = {r["run"]: r for r in _strict_json(capsys.readouterr().out)["runs"]}
    low, best, high = (runs[path] for path in paths)
    assert best["recommendation"]["action"] == "increase_lr"
    assert best["relative_to_sweep"]["contradicts_advice"] is True
    assert best["relative_to_sweep"]["next_lr_that_way"] == pytest.approx(0.1)
    assert best["relative_to_sweep"]["next_final_loss"] > best["relative_to_sweep"]["final_loss"]
    for other in (low, high):  # told where they ended; their own advice is not contradicted
        relation = other["relative_to_sweep"]
        assert relation["grid_best_lr"] == pytest.approx(0.03)
        assert relation["final_loss"] > relation["grid_best_final_loss"]
        assert relation["contradicts_advice"] is False
    assert main(["analyze", *paths, "--sweep"]) == 0
    out = capsys.readouterr().out
    assert (
        "Its next higher LR, 0.1, ended higher" in out
        and "the sweep does not bear out this run's advice to go higher" in out
    )
    assert main(["analyze", *paths]) == 0  # not said to be a sweep: nothing to relate to
    assert "In the sweep analysed with it" not in capsys.readouterr().out


def test_a_glob_pattern_lrwatch_receives_unexpanded_names_its_matches(
    tmp_path, capsys, healthy_run, diverging_run
):
    # A quoted pattern (or one from a shell that does not expand it) was "no such file".
    save_run_csv(healthy_run, tmp_path / "lr0.05.csv")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    save_run_csv(diverging_run, tmp_path / "deep" / "er" / "lr0.2.csv")
    (tmp_path / "README.md").write_text("notes\n")
    assert main(["analyze", str(tmp_path / "lr*.csv"), "--format", "json"]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)["runs"]] == [
        str(tmp_path / "lr0.05.csv")
    ]
    assert main(["analyze", str(tmp_path / "**" / "lr*.csv"), "--format", "json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)["runs"]] == [
        "lr0.2",  # sorted by path: deep/er/lr0.2.csv before lr0.05.csv
        "lr0.05",
    ]
    # The README, and the folder "deep" (no run directly in it), are left out.
    assert main(["analyze", str(tmp_path / "*"), "--format", "json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["lr0.05"]
    assert main(["analyze", str(tmp_path / "deep" / "*"), "--format", "json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["lr0.2"]
    for pattern, message in [
        ("*.parquet", "no file matches"),
        ("*.md", "matches no run file or folder (it matches "),
    ]:
        assert main(["analyze", str(tmp_path / pattern)]) == 2
        err = capsys.readouterr().err
        assert f"{tmp_path / pattern}: {message}" in err and len(err.splitlines()) == 1


def test_a_file_store_mlflow_refuses_is_one_line_saying_how_to_read_it(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    client = mlflow.MlflowClient(uri)
    client.log_metric(client.create_run(client.create_experiment("old")).info.run_id, "loss", 1.0)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")  # the command runs in a process of its own
    out = _cli("--tracking-uri", uri, "--experiment", "old")
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (
        f"lrwatch: error: {uri} is a file store, which MLflow 3 refuses by default: set "
        "MLFLOW_ALLOW_FILE_STORE=true to use it, or migrate it with `mlflow migrate-filestore`"
    )


def test_a_run_piped_into_standard_input_is_analysed_as_stdin(tmp_path, healthy_csv, diverging_run):
    """``ssh gpu1 cat run.csv | lrwatch analyze -``: "-" was an experiment name ("no such file,
    run id or experiment"). Any format the file loaders read, shown as ``stdin``, never by the
    temporary file that holds it, which is removed at exit."""
    import pandas as pd

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    parquet = tmp_path / "diverging.parquet"
    pd.read_csv(
        save_run_csv(diverging_run, tmp_path / "d.csv"), float_precision="round_trip"
    ).to_parquet(parquet)
    csv_text = Path(healthy_csv).read_bytes()
    for data in (csv_text, parquet.read_bytes()):
        piped = _cli(
            "-", "--format", "json", stdin=data, cwd=tmp_path,
            env={**os.environ, "TMPDIR": str(scratch)},
        )  # fmt: skip
        assert piped.returncode == 0, piped.stderr
        from_file = _cli("--format", "json", str(parquet if data[:4] == b"PAR1" else healthy_csv))
        got, want = _strict_json(piped.stdout)["runs"][0], _strict_json(from_file.stdout)["runs"][0]
        assert got["run"] == "stdin" and got["findings"] == want["findings"]
        assert got["recommendation"] == want["recommendation"]
        assert list(scratch.iterdir()) == []  # the saved copy is gone
    text = _cli("-", healthy_csv, stdin=csv_text, cwd=tmp_path)
    assert text.returncode == 0 and "Run stdin" in text.stdout and "Run healthy" in text.stdout


def test_a_tensorboard_event_file_piped_in_is_read_as_one(tmp_path, diverging_run):
    """``cat events.out.tfevents.* | lrwatch analyze -``: the loaders know an event file by its
    name, so a piped one was "not a table". It is read as the file itself is, shown as stdin."""
    _log_with_summary_writer(tmp_path / "tb", diverging_run)
    (event_file,) = (tmp_path / "tb").iterdir()
    piped = _cli("-", "--format", "json", stdin=event_file.read_bytes(), cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr
    from_file = _cli("--format", "json", str(event_file))
    got, want = _strict_json(piped.stdout)["runs"][0], _strict_json(from_file.stdout)["runs"][0]
    assert got["run"] == "stdin" and got["findings"] == want["findings"] != []
    assert str(tmp_path) not in piped.stdout and "lrwatch-stdin" not in piped.stdout


@pytest.mark.parametrize(
    ("data", "args", "message"),
    [
        (b"", ("-",), "lrwatch: error: stdin: empty (nothing was piped in)\n"),
        (b"step,loss\n1,0.5\n", ("-", "--loss-key", "nope"),
         "lrwatch: error: stdin: no column 'nope' (--loss-key); numeric columns: loss\n"),
    ],
)  # fmt: skip
def test_bad_standard_input_is_one_line_naming_stdin(tmp_path, data, args, message):
    out = _cli(*args, stdin=data, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == message


def test_a_dash_with_nothing_piped_in_says_so_instead_of_waiting(tmp_path):
    """From a terminal, reading standard input would wait for typing: one line instead."""
    import pty

    controller, terminal = pty.openpty()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "lrwatch.cli", "analyze", "-"],
            stdin=terminal, capture_output=True, text=True, cwd=tmp_path, timeout=60,
        )  # fmt: skip
    finally:
        os.close(terminal)
        os.close(controller)
    assert out.returncode == 2
    assert out.stderr == (
        "lrwatch: error: '-' reads a run from standard input, but nothing is piped in "
        "(e.g. cat run.csv | lrwatch analyze -)\n"
    )


def test_the_sweep_section_calls_diverged_what_the_runs_reports_call_diverged(tmp_path, capsys):
    from lrwatch.tasks import TrainConfig, train

    paths = []
    for lr in (0.001, 0.01, 10.0):  # Adam at 10: thrown off by its first steps, finite
        run = train(TrainConfig(task="autoencoder", optimizer="adam", lr=lr, steps=400, seed=8))
        paths.append(str(save_run_csv(run, tmp_path / f"lr{lr}.csv")))
    assert main(["analyze", *paths, "--sweep", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    thrown = out["runs"][-1]
    assert thrown["findings"][0]["kind"] == "divergence"
    assert thrown["findings"][0]["severity"] == "critical"
    curve = {point["lr"]: point for point in out["sweep"]["evidence"]["curve"]}
    assert curve[10.0]["diverged"] and not curve[0.01]["diverged"]
    assert "runs at 0.001 to 0.01 ended diverged" in out["sweep"]["message"]
