"""Time to first chart for long runs: lrwatch's dashboard beside MLflow's own read paths.

For runs of 10k, 100k and 1M steps (loss + LR, one spike, one NaN) in a SQLite MLflow store:

- lrwatch, data -> figure: read (direct SQL) + analysis + downsample + figure JSON, with an empty
  cache ("cold", the first view after start-up), from the on-disk copy ("restart": a new process
  whose cache folder holds the run) and from memory ("again"); plus a live refresh with no new
  points (what a 2 s tick costs).
- lrwatch, in a browser: navigation start to the chart drawn in headless Chromium (empty series
  and report caches), ``--repeats`` times per run: median and range.
- MLflow UI data endpoint: ``get-history-bulk-interval`` (loss and LR, 320 points each, as the UI
  asks) through a real ``mlflow server --workers 1`` on 127.0.0.1.
- ``MlflowClient.get_metric_history`` for loss and LR.

Usage::

    python benchmarks/dashboard_load.py [--store PATH] [--sizes 10000,100000,1000000]
        [--repeats 3] [--skip-mlflow]

The store is built once with ``MlflowClient.log_batch`` (about 20 minutes for 1M steps on a busy
2-core machine) and reused while it exists.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

EXPERIMENT = "lrwatch-dashboard-bench"


def synthetic_run(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A decaying noisy loss with one spike and one NaN, under a cosine LR."""
    rng = np.random.default_rng(0)
    steps = np.arange(n)
    loss = 2.0 * np.exp(-steps / (n / 5)) + 0.1 + 0.05 * rng.standard_normal(n)
    loss[n // 2] = 50.0
    loss[int(n * 0.9)] = np.nan
    lr = 1e-3 * 0.5 * (1 + np.cos(np.pi * steps / n))
    return steps, loss, lr


def build_store(uri: str, sizes: list[int]) -> dict[int, str]:
    """Run ids by size, logging the missing runs with log_batch (500 steps = 1000 metrics each)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = found.experiment_id if found else client.create_experiment(EXPERIMENT)
    runs = {r.info.run_name: r.info.run_id for r in client.search_runs([experiment_id])}
    ids = {}
    for n in sizes:
        name = f"bench-{n}"
        if name in runs:
            ids[n] = runs[name]
            continue
        run_id = client.create_run(experiment_id, run_name=name).info.run_id
        steps, loss, lr = synthetic_run(n)
        stamp = int(time.time() * 1000)
        for start in range(0, n, 500):
            chunk = range(start, min(n, start + 500))
            metrics = [Metric("train/loss", float(loss[i]), stamp + i, i) for i in chunk]
            metrics += [Metric("lr", float(lr[i]), stamp + i, i) for i in chunk]
            client.log_batch(run_id, metrics=metrics)
        client.set_terminated(run_id)
        ids[n] = run_id
        print(f"built {name} ({run_id})", file=sys.stderr)
    return ids


def _wait_until(ready, *, what: str, timeout_s: float = 120, poll: float = 0.05) -> None:
    """Poll ``ready()`` until true; a benchmark that never finishes says what it waited for."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"dashboard_load: gave up waiting {timeout_s:.0f} s for {what}")
        time.sleep(poll)


def _clock(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def time_lrwatch(uri: str, run_id: str) -> dict[str, float]:
    from dashboard.data import DashboardData, SeriesCache
    from dashboard.data.disk_cache import DiskCache
    from dashboard.figures import figure_run

    def first_chart(data: DashboardData, refresh: bool = False) -> str:
        loaded = data.load(run_id, refresh=refresh)
        return figure_run(loaded.run, loaded.findings).to_json()

    folder = Path(tempfile.mkdtemp(prefix="lrwatch-bench-cache-"))
    try:
        cold = DashboardData(uri, cache=SeriesCache(disk=DiskCache(folder)))
        out = {"cold": _clock(lambda: first_chart(cold))[0]}
        out["again"] = _clock(lambda: first_chart(cold))[0]
        out["refresh"] = _clock(lambda: first_chart(cold, refresh=True))[0]
        restart = DashboardData(uri, cache=SeriesCache(disk=DiskCache(folder)))
        out["restart"] = _clock(lambda: first_chart(restart))[0]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def time_get_metric_history(uri: str, run_id: str) -> float:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    return _clock(lambda: [client.get_metric_history(run_id, k) for k in ("train/loss", "lr")])[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"no answer from {url}")


@contextlib.contextmanager
def local_mlflow_server(store_uri: str, *, workers: int = 1) -> Iterator[str]:
    """A real ``mlflow server --workers N`` over ``store_uri`` on 127.0.0.1; yields its URI."""
    port = _free_port()
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    command = ["mlflow", "server", "--backend-store-uri", store_uri, "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers)]  # fmt: skip
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base + "/health")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def time_mlflow_ui_endpoint(uri: str, run_ids: dict[int, str]) -> dict[int, tuple[float, int]]:
    """Seconds for the UI's two sampled-history requests, and the loss points returned."""
    import json

    with local_mlflow_server(uri) as base:
        out = {}
        for n, run_id in run_ids.items():
            urls = [f"{base}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?run_ids={run_id}"
                    f"&metric_key={key}&max_results=320" for key in ("train/loss", "lr")]  # fmt: skip
            seconds, bodies = _clock(
                lambda urls=urls: [urllib.request.urlopen(u).read() for u in urls]
            )
            out[n] = (seconds, len(json.loads(bodies[0]).get("metrics", [])))
        return out


def time_browser(
    uri: str, run_ids: dict[int, str], screenshot: Path | None, repeats: int
) -> dict[int, list[float]]:
    """Navigation start to a drawn chart in headless Chromium, ``repeats`` times per run, each
    with empty series and report caches (the run's first view after start-up)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from werkzeug.serving import make_server

    from dashboard.app import create_app
    from dashboard.data import DashboardData, ReportCache, SeriesCache

    data = DashboardData(uri, cache=SeriesCache())
    app = create_app(uri, data=data)
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    drawn = ("const g = document.querySelector('#run-graph .js-plotly-plot');"
             "return !!(g && g.data && g.data.length >= 3);")  # fmt: skip
    out = {}
    try:
        # Load Dash's and plotly's JavaScript once (a run page of an unknown run draws a message
        # chart): the first timed load must not pay the browser's first compile of plotly.js.
        driver.get(f"http://127.0.0.1:{server.server_port}/run/{'0' * 32}")
        message_drawn = (
            "return !!document.querySelector('.lrwatch-message')"
            " && !!document.querySelector('#run-graph .js-plotly-plot .main-svg');"
        )
        _wait_until(lambda: driver.execute_script(message_drawn), what="the dashboard's first page")
        for n, run_id in run_ids.items():
            out[n] = []
            for _ in range(repeats):
                data.cache, data.reports = SeriesCache(), ReportCache()  # cold
                start = time.perf_counter()
                driver.get(f"http://127.0.0.1:{server.server_port}/run/{run_id}")
                _wait_until(
                    lambda: driver.execute_script(drawn), what=f"the {n:,}-step chart", poll=0.02
                )
                out[n].append(time.perf_counter() - start)
        if screenshot is not None:
            time.sleep(1.0)
            driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
    return out


def time_runs_table(uri: str, count: int) -> dict[str, float]:
    """An experiment of ``count`` runs (200 steps each): table render and background badges."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from dashboard import views
    from dashboard.data import DashboardData

    client = MlflowClient(uri)
    name = f"{EXPERIMENT}-table-{count}"
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else client.create_experiment(name)
    have = len(client.search_runs([experiment_id], max_results=count))
    steps, loss, lr = synthetic_run(200)
    for i in range(have, count):
        run_id = client.create_run(experiment_id, run_name=f"table-{i}").info.run_id
        metrics = [Metric("train/loss", float(v) * (1 + i / count), 0, int(s))
                   for s, v in zip(steps, loss)]  # fmt: skip
        metrics += [Metric("lr", float(v), 0, int(s)) for s, v in zip(steps, lr)]
        client.log_batch(run_id, metrics=metrics, params=[Param("lr", str(1e-3 * (1 + i)))])
        client.set_terminated(run_id)
    data = DashboardData(uri)
    first, (rows, _, _) = _clock(lambda: views.runs_table(data, experiment_id))
    start = time.perf_counter()
    _wait_until(lambda: not data.pending_analyses(), what="the badges", timeout_s=1800, poll=0.1)
    badges = time.perf_counter() - start
    again, _ = _clock(lambda: views.runs_table(data, experiment_id))
    return {"runs": len(rows), "first": first, "badges": badges, "again": again}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store", default=str(ROOT / "artifacts" / "bench-dashboard" / "mlflow.db")
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument(
        "--screenshot", default=str(ROOT / "artifacts" / "dashboard" / "run_1m.png")
    )
    parser.add_argument("--table-runs", type=int, default=0, help="also time a table of N runs")
    parser.add_argument("--repeats", type=int, default=3, help="browser loads per run (default 3)")
    parser.add_argument(
        "--skip-mlflow",
        action="store_true",
        help="leave out MLflow's UI endpoint and get_metric_history (~1 min for 1M steps)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    Path(args.store).parent.mkdir(parents=True, exist_ok=True)
    Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{Path(args.store).resolve()}"
    run_ids = build_store(uri, sizes)

    from dashboard.app import _warm_up
    from dashboard.data.read_helper import shared_helper

    _warm_up()  # the server pays imports at start-up, not per chart
    if not shared_helper().wait_until_ready(60):
        print("the read helper did not start: reads stay in one process", file=sys.stderr)
    browser = time_browser(uri, run_ids, Path(args.screenshot), args.repeats)
    ours = {n: time_lrwatch(uri, run_id) for n, run_id in run_ids.items()}
    ui, history = {}, {}
    if not args.skip_mlflow:
        ui = time_mlflow_ui_endpoint(uri, run_ids)
        history = {n: time_get_metric_history(uri, run_id) for n, run_id in run_ids.items()}
    if args.table_runs:
        table = time_runs_table(uri, args.table_runs)
        print(f"runs table: {table['runs']} runs listed in {table['first']:.2f} s; badges analysed "
              f"in the background in {table['badges']:.1f} s; a refresh then takes "
              f"{table['again']:.2f} s")  # fmt: skip

    print(
        "| steps | lrwatch cold | lrwatch restart (disk copy) | lrwatch again | live refresh "
        "| lrwatch in browser (cold) | MLflow UI endpoint (2 x 320 pts) | get_metric_history (2 keys) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        o, loads = ours[n], sorted(browser[n])
        shown = f"{np.median(loads):.2f} s" + (
            f" ({loads[0]:.2f}-{loads[-1]:.2f})" if len(loads) > 1 else ""
        )
        endpoint = f"{ui[n][0]:.2f} s ({ui[n][1]} loss pts)" if n in ui else "not measured"
        older = f"{history[n]:.1f} s" if n in history else "not measured"
        print(f"| {n:,} | {o['cold']:.2f} s | {o['restart']:.2f} s | {o['again']:.2f} s "
              f"| {o['refresh']:.3f} s | {shown} | {endpoint} | {older} |")  # fmt: skip


if __name__ == "__main__":
    main()
