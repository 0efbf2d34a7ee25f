"""Dashboard fixtures: a store of real training runs, the app served on 127.0.0.1, a browser.

The runs come from real PyTorch training (:mod:`lrwatch.tasks`, CPU, fixed seeds): an LR sweep
of one task whose high rates diverge, a real LR range test, and a run whose name is an HTML
injection attempt. They are logged with ``MlflowClient.log_batch`` as the logger would.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lrwatch.run import Run

SWEEP_LRS = (0.003, 0.03, 0.1, 0.3, 3.0)
XSS_NAME = "<img src=x onerror=alert(1)>"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"


@dataclass
class Store:
    uri: str
    experiment_id: str
    sweep: dict[float, str] = field(default_factory=dict)  # lr -> run id
    xss_run: str = ""
    range_test_run: str = ""


def log_run(client, experiment_id: str, run: Run, *, name: str | None = None, finish=True) -> str:
    """Log a :class:`Run` to MLflow with params and batched metrics; returns the run id."""
    from mlflow.entities import Param

    created = client.create_run(experiment_id, run_name=name or run.name)
    run_id = created.info.run_id
    params = [Param(k, v) for k, v in run.params.items()]
    client.log_batch(run_id, params=params)
    log_points(client, run_id, run, start=0, stop=None, timestamp=created.info.start_time)
    if finish:
        client.set_terminated(run_id, status="FINISHED")
    return run_id


def log_points(client, run_id: str, run: Run, *, start: int, stop: int | None, timestamp: int):
    """Log the points of every metric of ``run`` with index in [start, stop)."""
    from mlflow.entities import Metric

    metrics = [
        Metric(key, float(value), timestamp + int(step), int(step))
        for key, series in run.metrics.items()
        for step, value in zip(series.steps[start:stop], series.values[start:stop])
    ]
    for first in range(0, len(metrics), 1000):  # MLflow's per-request limit
        client.log_batch(run_id, metrics=metrics[first : first + 1000], synchronous=True)


def train_sweep(steps: int = 300) -> dict[float, Run]:
    from lrwatch.tasks import TrainConfig, train

    base = TrainConfig(task="mlp_regression", optimizer="sgd", steps=steps, seed=0)
    return {lr: train(base.with_(lr=lr)) for lr in SWEEP_LRS}


def populate(uri: str) -> Store:
    """A sweep, a range test and the XSS-named run, in experiment ``dashboard-test``."""
    import mlflow
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster, and kinder to a shared CI box
    try:
        return _populate(uri, mlflow.MlflowClient(tracking_uri=uri))
    finally:
        torch.set_num_threads(threads)


def _populate(uri: str, client) -> Store:
    from lrwatch.lr_finder import find_lr_on_task, log_range_test
    from lrwatch.tasks import TrainConfig

    experiment_id = client.create_experiment("dashboard-test")
    store = Store(uri=uri, experiment_id=experiment_id)
    for lr, run in train_sweep().items():
        store.sweep[lr] = log_run(client, experiment_id, run)
    xss = train_sweep_one(0.05)
    store.xss_run = log_run(client, experiment_id, xss, name=XSS_NAME)
    result = find_lr_on_task(TrainConfig(task="mlp_regression", optimizer="sgd"), num_steps=100)
    store.range_test_run = log_range_test(result, tracking_uri=uri, experiment="dashboard-test")
    return store


def train_sweep_one(lr: float, steps: int = 200) -> Run:
    from lrwatch.tasks import TrainConfig, train

    return train(TrainConfig(task="mlp_regression", optimizer="sgd", lr=lr, steps=steps, seed=1))


@pytest.fixture(scope="module")
def dashboard_store(tmp_path_factory, _migrated_mlflow_db) -> Store:
    """A store of real runs shared by one test module (training + logging take seconds)."""
    db = tmp_path_factory.mktemp("dashboard-store") / "mlflow.db"
    shutil.copy(_migrated_mlflow_db, db)
    return populate(f"sqlite:///{db}")


@contextlib.contextmanager
def serve(tracking_uri: str):
    """The dashboard for ``tracking_uri`` on 127.0.0.1 at a free port: (its URL, the Dash app)."""
    from werkzeug.serving import make_server

    from dashboard.app import create_app

    app = create_app(tracking_uri)
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def served(dashboard_store):
    """The dashboard for ``dashboard_store``, served on 127.0.0.1 at a free port."""
    with serve(dashboard_store.uri) as url_and_app:
        yield url_and_app


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through /usr/bin/chromedriver, collecting console messages."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
