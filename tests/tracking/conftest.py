"""Fixtures for the logger tests: a real `mlflow server` process, and reading a run back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.net import free_port


class MlflowServer:
    """`mlflow server` on 127.0.0.1 over ``backend_store_uri``; can be killed and restarted."""

    def __init__(
        self, backend_store_uri: str, port: int, workdir: Path, *, admin_password: str = ""
    ) -> None:
        self.backend_store_uri, self.port, self.workdir = backend_store_uri, port, workdir
        self.uri = f"http://127.0.0.1:{port}"
        # Set: MLflow's basic-auth app, which creates the user "admin" with this password (its
        # user database lands in ``workdir``) and answers 401/403 like a team's shared server.
        self.admin_password = admin_password
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 90.0) -> None:
        env = dict(
            os.environ,
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            MLFLOW_DISABLE_TELEMETRY="true",
        )
        env.pop("MLFLOW_TRACKING_URI", None)
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", self.backend_store_uri,
            "--default-artifact-root", str(self.workdir / "artifacts"),
        ]  # fmt: skip
        if self.admin_password:
            command += ["--app-name", "basic-auth"]
            env.update(
                MLFLOW_AUTH_ADMIN_PASSWORD=self.admin_password,
                MLFLOW_FLASK_SERVER_SECRET_KEY="lrwatch-tests",
            )
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "server.log", "a"),  # noqa: SIM115
            start_new_session=True,  # its own process group: kill it and its workers together
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.workdir / "server.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("mlflow server did not start in time")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def mlflow_server(tmp_path, _migrated_mlflow_db):
    import shutil

    db = tmp_path / "server.db"
    shutil.copy(_migrated_mlflow_db, db)
    server = MlflowServer(f"sqlite:///{db}", free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of every stored point of ``key``, sorted by step (duplicates kept)."""
    import mlflow

    points = mlflow.MlflowClient(tracking_uri=uri).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in points)


def steps_of(uri: str, run_id: str, key: str) -> list[int]:
    return [step for step, _ in history(uri, run_id, key)]


@pytest.fixture(autouse=True)
def spool_dir(tmp_path, monkeypatch):
    """Every watcher in these tests spools into the test's own directory."""
    path = tmp_path / "spool"
    monkeypatch.setenv("LRWATCH_SPOOL_DIR", str(path))
    return path
