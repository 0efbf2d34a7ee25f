"""`lrwatch demo`: load the bundled sample runs into MLflow and open the dashboard on them.

The runs go into the experiment ``lrwatch-samples`` of the tracking store (the embedded default
``sqlite:///mlflow.db`` in the current directory unless told otherwise), once: running the demo
again reuses them. Then the dashboard starts and its address is printed.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import urllib.error
import urllib.request

from lrwatch.commands.serve_checks import check_port_free
from lrwatch.errors import InputError
from lrwatch.store import display_uri

# Seconds to wait for an http(s) tracking server to answer before calling it unreachable
# (MLflow's own client would retry for minutes first).
_PROBE_TIMEOUT_S = 5.0
# Seconds between starting the server and opening the browser on it.
_BROWSER_DELAY_S = 1.5


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="load the bundled sample runs into MLflow and open the dashboard on them",
        description=(
            "Load the sample runs (real training runs with known problems) into the "
            "experiment 'lrwatch-samples' of the tracking store - once; running it again reuses "
            "them - then start the dashboard and print its address."
        ),
    )
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port to serve on (default 8050)")
    parser.add_argument(
        "--no-browser", action="store_true", help="do not open a web browser on the dashboard"
    )
    parser.add_argument(
        "--load-only", action="store_true", help="load the sample runs and exit (no dashboard)"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from lrwatch.store import describe_store, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    print(describe_store(uri), file=sys.stderr)
    if not args.load_only:
        check_port_free(args.host, args.port)
    check_reachable(uri)
    from lrwatch.samples import sync_samples

    loaded = sync_samples(uri)
    print(
        f"lrwatch: {len(loaded.run_ids)} sample runs in experiment '{loaded.experiment}' "
        f"({loaded.created} added, {len(loaded.run_ids) - loaded.created} already there)",
        file=sys.stderr,
    )
    if args.load_only:
        return 0
    from dashboard.app import dashboard_url, serve

    url = dashboard_url(args.host, args.port)
    print(f"lrwatch: dashboard at {url} (Ctrl+C to stop)", flush=True)
    if not args.no_browser:
        threading.Timer(_BROWSER_DELAY_S, _open_browser, args=(url,)).start()
    serve(uri, host=args.host, port=args.port, open_browser=False)
    return 0


def check_reachable(uri: str) -> None:
    """For an http(s) tracking server, fail fast when nothing answers at its address."""
    if not uri.lower().startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=_PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # something answered; MLflow itself will say if it is not a tracking server
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(
            f"cannot reach the tracking server at {display_uri(uri)} ({reason})"
        ) from None


def _open_browser(url: str) -> None:
    import webbrowser

    opened = False
    # No browser (a headless machine, an ssh session) is not an error: the address is printed.
    with contextlib.suppress(Exception):
        opened = webbrowser.open(url)
    if not opened:
        print(f"lrwatch: no web browser to open here; open {url} yourself", file=sys.stderr)
