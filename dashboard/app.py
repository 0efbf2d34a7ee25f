"""The Dash app: ``create_app(tracking_uri)`` for tests and embedding, ``serve(...)`` for the CLI.

Example::

    from dashboard.app import serve
    serve("sqlite:///mlflow.db")            # http://127.0.0.1:8050, local only
"""

from __future__ import annotations

import logging
import threading
import webbrowser

import dash

from dashboard import callbacks, layout
from dashboard.data import DashboardData
from dashboard.data.tracking import configure_client_timeouts


class LrwatchDash(dash.Dash):
    """The Dash app, holding its data layer for tests and benchmarks."""

    lrwatch_data: DashboardData


def create_app(tracking_uri: str, *, data: DashboardData | None = None) -> LrwatchDash:
    """A Dash app showing the runs of ``tracking_uri`` (any MLflow tracking URI).

    Args:
        tracking_uri: where the runs are; SQL stores are read directly for speed.
        data: the data layer to use (tests pass one to inspect its cache).
    """
    configure_client_timeouts()
    data = data or DashboardData(tracking_uri)
    app = LrwatchDash(
        __name__,
        title="lrwatch",
        suppress_callback_exceptions=True,  # pages are built by the router callback
        # dash annotates this as str, but documents None as "leave the tab title alone".
        update_title=None,  # type: ignore[arg-type]
    )
    app.layout = layout.app_layout()
    callbacks.register(app, data)
    app.lrwatch_data = data
    _warm_up()
    return app


def serve(
    tracking_uri: str, host: str = "127.0.0.1", port: int = 8050, open_browser: bool = False
) -> None:
    """Serve the dashboard until interrupted. Binds to ``127.0.0.1`` unless told otherwise."""
    app = create_app(tracking_uri)
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(dashboard_url(host, port),)).start()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host=host, port=port, debug=False)


def dashboard_url(host: str, port: int) -> str:
    """The address to open: a wildcard bind is reached through the loopback address."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"  # an IPv6 literal
    return f"http://{shown}:{port}/"


def _warm_up() -> None:
    """Start the read helper; import MLflow, the analysis, plotly's figure machinery, scipy and
    tsdownsample now.

    The first request of a fresh process would otherwise pay 3-5 s of imports; paying them at
    start-up keeps the time to first chart at what the data needs. The helper process (see
    :mod:`dashboard.data.read_helper`) imports its own share meanwhile.
    """
    from dashboard.data.read_helper import shared_helper

    shared_helper().start()
    import mlflow  # noqa: F401
    import numpy as np

    import lrwatch.analysis  # noqa: F401
    import lrwatch.sources.mlflow_store  # noqa: F401
    from dashboard.figures import figure_run
    from lrwatch.run import Run, Series

    steps = np.arange(5000)
    metrics = {"loss": Series(steps, np.cos(steps)), "lr": Series(steps, steps + 1.0)}
    figure_run(Run(id="warm-up", metrics=metrics), max_points=100).to_plotly_json()
