"""The sample runs go into a real MLflow store once, come back intact, and `lrwatch demo` works."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest

from lrwatch import keys
from lrwatch.samples import EXPERIMENT, import_samples, load_manifest, sync_samples
from lrwatch.sources.mlflow_store import read_run
from tests.conftest import stop_process
from tests.net import free_port

ENTRIES = load_manifest()["runs"]


def _sample_runs_in_store(uri: str) -> list:
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], max_results=1000)


def _lrwatch(*args: str, env: dict | None = None, timeout: float = 180):
    return subprocess.run(
        [sys.executable, "-m", "lrwatch.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_import_is_idempotent_and_runs_come_back_intact(tracking_uri, sample_runs):
    first = import_samples(tracking_uri)
    again = sync_samples(tracking_uri)
    assert again.run_ids == first and again.created == 0
    assert len(set(first)) == len(ENTRIES) == len(_sample_runs_in_store(tracking_uri))
    for entry, run_id in zip(ENTRIES, first):
        stored = read_run(tracking_uri, run_id)
        original = sample_runs[entry["name"]]
        assert stored.name == entry["name"]
        assert stored.status == "finished"
        assert stored.tags[keys.TAG_SAMPLE] == entry["name"]
        assert stored.params == entry["params"]
        assert (stored.loss_key, stored.lr_key) == (keys.LOSS, keys.LR)
        for key in (keys.LOSS, keys.LR):
            assert np.array_equal(stored.metrics[key].steps, original.metrics[key].steps)
            # NaN and inf survive the SQL store (inf is stored as DBL_MAX, read back as inf).
            assert np.array_equal(
                stored.metrics[key].values, original.metrics[key].values, equal_nan=True
            )
        assert stored.is_range_test == entry["range_test"]


def test_an_interrupted_import_is_completed_not_duplicated(tracking_uri):
    ids = import_samples(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    client.delete_run(ids[0])  # a user deleted one
    client.update_run(ids[1], status="RUNNING")  # an import killed half-way
    again = sync_samples(tracking_uri)
    assert again.created == 2
    assert again.run_ids[2:] == ids[2:]
    assert len(_sample_runs_in_store(tracking_uri)) == len(ENTRIES)


def test_demo_load_only_loads_once(tracking_uri):
    """First through MLFLOW_TRACKING_URI, then --tracking-uri: one store, runs added once."""
    first = _lrwatch("demo", "--load-only", env={"MLFLOW_TRACKING_URI": tracking_uri})
    again = _lrwatch("demo", "--load-only", "--tracking-uri", tracking_uri)
    for result, added in ((first, len(ENTRIES)), (again, 0)):
        assert result.returncode == 0, result.stderr
        assert f"({added} added" in result.stderr
        assert tracking_uri in result.stderr  # says which store it used
    assert len(_sample_runs_in_store(tracking_uri)) == len(ENTRIES)


def test_demo_unreachable_server_is_one_line_exit_2(tracking_uri):
    port = free_port()
    result = _lrwatch("demo", "--no-browser", "--tracking-uri", f"http://127.0.0.1:{port}")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "cannot reach" in errors[0]
    assert "Traceback" not in result.stderr


def test_demo_port_in_use_is_one_line_exit_2(tracking_uri):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _lrwatch("demo", "--no-browser", "--port", str(port))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"127.0.0.1:{port}" in result.stderr.splitlines()[-1]


def test_demo_without_sample_files_says_where_to_get_them(tmp_path, tracking_uri):
    result = _lrwatch("demo", "--load-only", env={"LRWATCH_SAMPLE_RUNS": str(tmp_path)})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no manifest.json" in result.stderr.splitlines()[-1]


def test_installed_without_a_checkout_says_so_in_one_line(tmp_path, tracking_uri):
    """A non-editable install: the package alone in site-packages, no sample_runs/ beside it."""
    import lrwatch

    site = tmp_path / "site-packages"
    shutil.copytree(Path(lrwatch.__file__).parent, site / "lrwatch")
    env = {k: v for k, v in os.environ.items() if k != "LRWATCH_SAMPLE_RUNS"}
    result = subprocess.run(
        [sys.executable, "-m", "lrwatch.cli", "demo", "--load-only"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert "checkout" in last and "pip install -e ." in last


@pytest.mark.slow
def test_demo_serves_the_dashboard(tracking_uri):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lrwatch.cli", "demo", "--no-browser", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status = _wait_for_http(f"http://127.0.0.1:{port}/", process, timeout_s=120)
        assert status == 200
    finally:
        output, _ = stop_process(process, timeout_s=30)
    assert f"http://127.0.0.1:{port}/" in output
    assert len(_sample_runs_in_store(tracking_uri)) == len(ENTRIES)


def _wait_for_http(url: str, process, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"demo exited with {process.returncode}: {process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"nothing answered at {url} within {timeout_s} s")


def test_an_unusable_store_is_an_input_error():
    from lrwatch.errors import InputError

    with pytest.raises(InputError, match="MLflow has no tracking store for 'bogus://'"):
        import_samples("bogus://nowhere")
