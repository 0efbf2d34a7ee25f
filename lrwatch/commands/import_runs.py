"""`lrwatch import PATH...`: upload a logger spool file left behind by a killed or offline run,
or saved runs (files, folders) so that the dashboard charts them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

# How much of a file is read to tell a spool (its first line is the header record) from a run.
_SPOOL_HEADER_BYTES = 1 << 16


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import",
        help="upload a spool file the logger left behind, or saved runs for the dashboard",
        description=(
            "Send the steps in an lrwatch spool file that the tracking store does not hold yet, "
            "or make one MLflow run of each saved run (CSV, Parquet, Feather, JSON Lines, "
            "TensorBoard logs; files, folders, glob patterns) so that the dashboard charts and "
            "compares them. Safe to run more than once: nothing is logged twice."
        ),
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="spool file(s) written by lrwatch.watch, or saved runs as lrwatch analyze reads them",
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="store to upload to (default: the one recorded in a spool, then MLFLOW_TRACKING_URI, "
        "else sqlite:///mlflow.db here)",
    )
    parser.add_argument(
        "--experiment",
        default=None,
        help="experiment for saved runs (default: lrwatch-imported) and for a spool's run that "
        "was never created (default: the one recorded in the spool)",
    )
    parser.add_argument(
        "--loss-key", default=None, help="saved runs: the loss column (default: found by name)"
    )
    parser.add_argument(
        "--lr-key", default=None, help="saved runs: the LR column (default: found by name)"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    spools = [path for path in args.paths if is_spool_file(path)]
    saved = [path for path in args.paths if path not in spools]
    if saved:
        _import_saved(saved, args)
    for path in spools:
        _import_spool(path, args)
    return 0


def is_spool_file(path: str) -> bool:
    """A spool begins with its header record (``{"type": "header", ...}``); a run table never
    does."""
    try:
        with Path(path).open("rb") as handle:
            record = json.loads(handle.readline(_SPOOL_HEADER_BYTES))
    except (OSError, ValueError):  # a folder, a missing file, not JSON: not a spool
        return False
    return isinstance(record, dict) and record.get("type") == "header"


def _import_saved(specs: list[str], args) -> None:
    from lrwatch.store import describe_store, resolve_tracking_uri
    from lrwatch.tracking.import_runs import DEFAULT_EXPERIMENT, import_saved_runs

    experiment = args.experiment or DEFAULT_EXPERIMENT
    print(describe_store(resolve_tracking_uri(args.tracking_uri)), file=sys.stderr)
    imported = 0
    results = import_saved_runs(
        specs,
        tracking_uri=args.tracking_uri,
        experiment=experiment,
        loss_key=args.loss_key,
        lr_key=args.lr_key,
    )
    for result in results:
        if result.skipped:
            print(f"{result.label}: skipped ({result.skipped})", file=sys.stderr)
            continue
        imported += 1
        if result.created:
            print(
                f"{result.label}: run {result.run_id} (new run) in experiment {experiment!r}: "
                f"{result.points} values"
            )
        else:
            print(f"{result.label}: run {result.run_id} already holds this data")
    if imported:
        where = f" --tracking-uri {args.tracking_uri}" if args.tracking_uri else ""
        print(f"lrwatch: chart them with: lrwatch dashboard{where}", file=sys.stderr)


def _import_spool(path: str, args) -> None:
    from lrwatch.store import describe_store
    from lrwatch.tracking.replay import import_spool

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
