"""`lrwatch import SPOOL`: upload a logger spool file left behind by a killed or offline run."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import",
        help="upload a spool file the logger left behind (server down, process killed)",
        description=(
            "Send the steps in an lrwatch spool file that the tracking store does not hold yet. "
            "Safe to run more than once: nothing is logged twice."
        ),
    )
    parser.add_argument("spool", nargs="+", help="spool file(s) (*.jsonl) written by lrwatch.watch")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="store to upload to (default: the one recorded in the spool, then MLFLOW_TRACKING_URI)",
    )
    parser.add_argument(
        "--experiment",
        default=None,
        help="experiment for a run that was never created (default: the one recorded in the spool)",
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from lrwatch.store import describe_store
    from lrwatch.tracking.replay import import_spool

    for path in args.spool:
        result = import_spool(path, tracking_uri=args.tracking_uri, experiment=args.experiment)
        print(describe_store(result.tracking_uri), file=sys.stderr)
        created = " (new run)" if result.created_run else ""
        if result.damaged:
            entries = "entry" if result.damaged == 1 else "entries"
            print(
                f"{path}: {result.damaged} damaged {entries} left out (a line or metric row "
                "that is not a readable record); the rest was imported",
                file=sys.stderr,
            )
        print(
            f"{path}: run {result.run_id}{created}: {result.sent} values sent, "
            f"{result.already_there} already in the store"
        )
    return 0
