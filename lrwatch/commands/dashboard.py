"""`lrwatch dashboard`: serve the Dash dashboard for a tracking store (local-only by default)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "dashboard",
        help="open the dashboard: runs, findings on the curves, recommendations, live updates",
        description="Serve the lrwatch dashboard for an MLflow tracking store.",
    )
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)",
    )
    parser.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    parser.add_argument(
        "--no-browser", action="store_true", help="do not open a browser tab on start"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from lrwatch.commands.serve_checks import check_port_free
    from lrwatch.errors import require
    from lrwatch.store import check_tracking_uri, describe_store, resolve_tracking_uri

    # A store that is down may come up while the page is open; a scheme no store has cannot.
    uri = check_tracking_uri(resolve_tracking_uri(args.tracking_uri))
    check_port_free(args.host, args.port)
    require("dash", "dash")
    from dashboard.app import dashboard_url, serve

    print(describe_store(uri), file=sys.stderr)
    url = dashboard_url(args.host, args.port)
    print(f"lrwatch: dashboard at {url} (Ctrl+C to stop)", file=sys.stderr)
    serve(uri, host=args.host, port=args.port, open_browser=not args.no_browser)
    return 0
