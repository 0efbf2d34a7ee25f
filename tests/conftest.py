"""Fixtures every test area shares: a real, per-test MLflow SQLite store, real PostgreSQL
and MySQL servers for the shared-store tests (a fresh database per test), and quiet settings.

Area-specific fixtures live in ``tests/<area>/conftest.py``.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
# The logger's test flag: errors inside the logger raise instead of becoming warnings.
os.environ.setdefault("LRWATCH_STRICT", "1")

try:
    from hypothesis import HealthCheck, settings

    # LRWATCH_PROPERTY_EXAMPLES runs the property tests longer, to hunt rare cases before CI's
    # random draw meets them (each CI run draws 150 fresh examples per property).
    settings.register_profile(
        "lrwatch",
        deadline=None,
        max_examples=int(os.environ.get("LRWATCH_PROPERTY_EXAMPLES", "150")),
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile("lrwatch")
except ImportError:  # pragma: no cover - hypothesis is in the dev extra
    pass


def pytest_configure(config):
    """One torch thread: tiny models gain nothing from more, and 2 shared cores thrash (0.6 s vs 16 s)."""
    try:
        import torch
    except ImportError:  # the analysis, CLI and dashboard tests run without torch
        return
    torch.set_num_threads(1)


def stop_process(process, *, timeout_s: float = 20) -> tuple[str, str]:
    """Terminate a server process started by a test, kill it if it lingers; (stdout, stderr)."""
    import subprocess

    process.terminate()
    try:
        return process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


@pytest.fixture(scope="session")
def _migrated_mlflow_db(tmp_path_factory):
    """An empty MLflow SQLite store, migrated once; each test copies it (migrations take seconds)."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}")
    client.search_experiments()  # creates the schema
    return path


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch, _migrated_mlflow_db):
    """A fresh SQLite tracking store for this test, also set as ``MLFLOW_TRACKING_URI``."""
    import mlflow

    db = tmp_path / "mlflow.db"
    shutil.copy(_migrated_mlflow_db, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    # The fluent API remembers the active experiment process-wide; an id set by an earlier test
    # would not exist in this store. "0" (Default) exists in every fresh store.
    mlflow.set_experiment(experiment_id="0")
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def _started(server):
    """Start a private database server for the session; stop it (removing its folder, also
    of one that failed to start) after."""
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_cluster():
    """One real PostgreSQL server for the session (``tests/postgres.py``)."""
    from tests.postgres import PostgresCluster

    yield from _started(PostgresCluster())


@pytest.fixture
def postgres_uri(postgres_cluster) -> str:
    """A fresh, empty PostgreSQL database for this test, as a tracking URI."""
    return postgres_cluster.create_database(f"mlflow_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def mysql_server():
    """One real MySQL server (MariaDB) for the session (``tests/mysql.py``)."""
    from tests.mysql import MysqlServer

    yield from _started(MysqlServer())


@pytest.fixture
def mysql_uri(mysql_server) -> str:
    """A fresh, empty MySQL database for this test, as a tracking URI."""
    return mysql_server.create_database(f"mlflow_{uuid.uuid4().hex[:12]}")
