"""A tracking server that asks for a login (MLflow's basic-auth app, as a team's shared server
may run it): the logger, ``lrwatch import``, ``lrwatch analyze`` and the dashboard's reader with
a login, without one, with a wrong one, with one that lacks permission, and with one that stops
working mid-run.

MLflow's own text for a refusal ("API request to endpoint ... failed with error code 401 != 200.
Response body: 'You are not authenticated. Please see ...'") names neither the login that was
sent nor the settings a client reads it from, and a login that stopped working mid-run printed
"refused metrics; dropped" at every flush.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

import lrwatch
from dashboard.data.service import DashboardData
from dashboard.data.tracking import DataError
from lrwatch import keys
from lrwatch.tasks import TrainConfig
from tests.net import free_port
from tests.tracking.conftest import MlflowServer, steps_of
from tests.tracking.tracking_loops import ManualLoop

pytestmark = pytest.mark.server

CONFIG = TrainConfig(task="mlp_regression", lr=0.05, steps=200)
ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "admin-Pass-1234"
PASSWORD = "bob-Pass-1234"  # MLflow asks for at least 12 characters
LOGIN_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@pytest.fixture(scope="module")
def login_server(tmp_path_factory, _migrated_mlflow_db):
    """One basic-auth ``mlflow server`` for the module (each test logs in as its own user)."""
    workdir = tmp_path_factory.mktemp("login-server")
    db = workdir / "server.db"
    shutil.copy(_migrated_mlflow_db, db)
    server = MlflowServer(f"sqlite:///{db}", free_port(), workdir, admin_password=ADMIN_PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_login(monkeypatch):
    """Each test starts with no login set in this process."""
    for name in LOGIN_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@contextlib.contextmanager
def as_admin():
    """MLflow's clients read the login from the environment at each request."""
    saved = {name: os.environ.pop(name, None) for name in LOGIN_VARIABLES}
    os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD)
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def admin_client(server: MlflowServer):
    from mlflow.server import get_app_client

    return get_app_client("basic-auth", tracking_uri=server.uri)


def log_in(monkeypatch, server: MlflowServer, user: str) -> None:
    with as_admin():
        admin_client(server).create_user(user, PASSWORD)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)


def lrwatch_cli(*args: str, **login: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in LOGIN_VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", "lrwatch.cli", *args],
        env=dict(env, PYTHONPATH=str(ROOT), **login),
        capture_output=True,
        text=True,
        timeout=120,
    )


def lrwatch_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "lrwatch"]


def test_the_logger_sends_every_step_with_a_login(login_server, monkeypatch):
    log_in(monkeypatch, login_server, "carol")
    loop = ManualLoop(CONFIG)
    with lrwatch.watch(
        loop.optimizer, tracking_uri=login_server.uri, experiment="carol's", analyze=False
    ) as w:
        for _ in loop.steps(w):
            pass
    for key in (keys.LOSS, keys.LR):
        assert steps_of(login_server.uri, w.run_id, key) == list(range(CONFIG.steps))


def test_a_login_that_stops_working_mid_run_is_one_warning_and_import_sends_the_rest(
    login_server, spool_dir, caplog, monkeypatch
):
    monkeypatch.setenv("LRWATCH_STRICT", "0")  # strict mode would raise the refusal at close
    log_in(monkeypatch, login_server, "bob")
    loop = ManualLoop(CONFIG)
    with caplog.at_level(logging.WARNING, logger="lrwatch"):
        w = lrwatch.watch(
            loop.optimizer,
            tracking_uri=login_server.uri,
            experiment="bob's",
            flush_interval=0.05,
            analyze=False,
        )
        for step in loop.steps(w):
            if step == 50:
                deadline = time.monotonic() + 60
                while not steps_of(login_server.uri, w.run_id, keys.LOSS):
                    assert time.monotonic() < deadline, "no step landed with the login"
                    time.sleep(0.05)
                with as_admin():  # an admin rotates the password the job runs with
                    admin_client(login_server).update_user_password("bob", "bob-Rotated-5678")
            time.sleep(0.002)
        started = time.monotonic()
        assert not w.close(timeout_s=30)
        assert time.monotonic() - started < 5  # nothing retried until the timeout
    (line,) = lrwatch_lines(caplog)  # before: "refused metrics; dropped" at every flush
    (spool,) = spool_dir.iterdir()
    assert line == (
        "lrwatch: the tracking store stopped taking this run's data (the server did not accept "
        "the login of user 'bob' (HTTP 401): check MLFLOW_TRACKING_PASSWORD); every step stays "
        f"in {spool} - fix the login, then upload it with: lrwatch import {spool}"
    )

    old_login = {"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": PASSWORD}
    refused = lrwatch_cli("import", str(spool), **old_login)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        f"lrwatch: error: tracking server {login_server.uri} did not accept the login of user "
        "'bob' (HTTP 401): check MLFLOW_TRACKING_PASSWORD"
    )
    new_login = {"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": "bob-Rotated-5678"}
    assert lrwatch_cli("import", str(spool), **new_login).returncode == 0
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "bob-Rotated-5678")
    for key in (keys.LOSS, keys.LR):
        assert steps_of(login_server.uri, w.run_id, key) == list(range(CONFIG.steps))


def test_a_login_without_permission_is_told_so_and_import_sends_every_step_once_granted(
    login_server, spool_dir, caplog, monkeypatch
):
    monkeypatch.setenv("LRWATCH_STRICT", "0")
    with as_admin():
        experiment_id = mlflow.MlflowClient(login_server.uri).create_experiment("team")
    log_in(monkeypatch, login_server, "alice")  # may read "team" (READ is the default), not log
    loop = ManualLoop(CONFIG)
    with (
        caplog.at_level(logging.WARNING, logger="lrwatch"),
        lrwatch.watch(
            loop.optimizer, tracking_uri=login_server.uri, experiment="team", analyze=False
        ) as w,
    ):
        for _ in loop.steps(w):
            pass
    (line,) = lrwatch_lines(caplog)
    assert line.startswith(
        "lrwatch: the tracking store refused to create the run (the server denied user 'alice' "
        "permission (HTTP 403): ask the server's admin for access (EDIT on the experiment to "
        "log to it, READ to read it)); every step stays in "
    )
    with as_admin():
        admin_client(login_server).grant_user_permission(
            "alice", "experiment", experiment_id, "EDIT"
        )
    (spool,) = spool_dir.iterdir()
    login = {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": PASSWORD}
    imported = lrwatch_cli("import", str(spool), **login)
    assert imported.returncode == 0, imported.stderr
    (run,) = mlflow.MlflowClient(login_server.uri).search_runs([experiment_id])
    for key in (keys.LOSS, keys.LR):
        assert steps_of(login_server.uri, run.info.run_id, key) == list(range(CONFIG.steps))


@pytest.mark.parametrize(
    ("login", "says"),
    [
        (
            {},
            "asks for a login (HTTP 401): set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)",
        ),
        (
            {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "not-the-password"},
            "did not accept the login of user 'admin' (HTTP 401): check MLFLOW_TRACKING_PASSWORD",
        ),
        (
            {"MLFLOW_TRACKING_TOKEN": "an-expired-token"},
            "did not accept MLFLOW_TRACKING_TOKEN (HTTP 401): it may have expired",
        ),
    ],
    ids=["none", "wrong-password", "token"],
)
def test_readers_refused_a_login_say_which_setting_to_fix(login_server, monkeypatch, login, says):
    analyzed = lrwatch_cli("analyze", "Default", "--tracking-uri", login_server.uri, **login)
    assert analyzed.returncode == 2
    assert "Traceback" not in analyzed.stderr
    assert analyzed.stderr.splitlines()[-1] == (
        f"lrwatch: error: tracking server {login_server.uri} {says}"
    )
    for name, value in login.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DataError) as refused:  # what the dashboard's pages show
        DashboardData(login_server.uri).experiments()
    assert str(refused.value) == f"experiments: tracking server {login_server.uri} {says}"


def test_a_login_in_the_tracking_uri_is_sent_and_a_wrong_one_named(
    login_server, spool_dir, caplog, monkeypatch
):
    """``https://user:PASSWORD@host`` works (``requests`` sends it when the variables are unset);
    a wrong password in it was answered "set MLFLOW_TRACKING_USERNAME and ..._PASSWORD"."""
    monkeypatch.setenv("LRWATCH_STRICT", "0")
    with as_admin():
        admin_client(login_server).create_user("dave", PASSWORD)
    scheme, _, host = login_server.uri.partition("://")
    good_uri = f"{scheme}://dave:{PASSWORD}@{host}"
    loop = ManualLoop(CONFIG)
    with lrwatch.watch(
        loop.optimizer, tracking_uri=good_uri, experiment="dave's", analyze=False
    ) as w:
        for _ in loop.steps(w):
            pass
    assert steps_of(good_uri, w.run_id, keys.LOSS) == list(range(CONFIG.steps))

    wrong_uri, shown = f"{scheme}://dave:not-the-password@{host}", f"{scheme}://dave:***@{host}"
    says = (
        "did not accept the login of user 'dave' given in the tracking URI (HTTP 401): check the "
        "password in it"
    )
    analyzed = lrwatch_cli("analyze", "Default", "--tracking-uri", wrong_uri)
    assert analyzed.returncode == 2
    assert analyzed.stderr.splitlines()[-1] == f"lrwatch: error: tracking server {shown} {says}"
    assert "not-the-password" not in analyzed.stderr
    with pytest.raises(DataError) as refused:
        DashboardData(wrong_uri).experiments()
    assert str(refused.value) == f"experiments: tracking server {shown} {says}"
    loop = ManualLoop(CONFIG)
    with (
        caplog.at_level(logging.WARNING, logger="lrwatch"),
        lrwatch.watch(loop.optimizer, tracking_uri=wrong_uri, analyze=False) as w,
    ):
        for _ in loop.steps(w):
            pass
    (line,) = lrwatch_lines(caplog)
    assert f"(the server {says}); every step stays in {spool_dir}" in line
