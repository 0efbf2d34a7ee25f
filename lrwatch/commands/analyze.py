"""`lrwatch analyze PATH_OR_RUN...`: a report for people, JSON for machines, exit codes for CI.

Exit status: 0 analysed (findings or not), 1 ``--fail-on`` met, 2 bad input (one line per bad
input on stderr). With several inputs the good ones are still analysed and reported; the bad
ones are named at the end and the exit status is 2.
"""

from __future__ import annotations

import os
import sys

from lrwatch.cli import EXIT_BAD_INPUT, EXIT_FAIL_ON, EXIT_OK
from lrwatch.store import SERVER_READ_THREADS, hide_passwords

# MLflow retries an unreachable server 7 times with backoff (minutes). A report command should
# answer in seconds: 1 retry and a 10 s timeout, unless the user set these variables.
_MLFLOW_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    # Bad input gets one line: MLflow's own log lines (a databricks URI without credentials
    # printed a 400-character WARNING above lrwatch's error) stay quiet below ERROR.
    "MLFLOW_LOGGING_LEVEL": "ERROR",
}

DESCRIPTION = """Diagnose learning-rate problems in saved or logged runs.

Each PATH_OR_RUN is read as, first match wins: runs:/RUN_ID (an MLflow run);
experiment:NAME (every run of an MLflow experiment, NAME or id); an MLflow UI address
('http://HOST:5000/#/experiments/ID/runs/RUN_ID', or an experiment's: read from that
server); an existing file (CSV, Parquet, Feather or JSON Lines, one row per logged step; also
compressed) or folder (each table file in it is a run; one that is no log of steps, such as a
config.json, is skipped); - (a table piped in: ssh gpu1 cat run.csv | lrwatch analyze -); a
quoted glob pattern ('runs/**/*.csv': the run files it matches); a 32-hex MLflow run id; a
path-like name (missing file); anything else is an experiment name."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="diagnose runs: divergence, oscillation, plateau, slow convergence; what LR to use",
        description=DESCRIPTION,
        epilog="Exit status: 0 analysed, 1 --fail-on met, 2 bad input (one line per bad input).",
        formatter_class=_raw_description(),
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="PATH_OR_RUN",
        help=(
            "files (CSV, Parquet, Feather, JSON Lines, TensorBoard event files), folders, "
            "MLflow runs"
        ),
    )
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        metavar="NAME",
        help="analyse every run of this MLflow experiment (name or id; repeatable)",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for a person (default) or one JSON document",
    )
    parser.add_argument(
        "--fail-on",
        choices=("info", "warning", "critical"),
        help="exit 1 when any run has a finding at least this severe",
    )
    parser.add_argument("--loss-key", metavar="KEY", help="metric/column holding the loss")
    parser.add_argument("--lr-key", metavar="KEY", help="metric/column holding the LR")
    parser.add_argument(
        "--tracking-uri", metavar="URI", help="MLflow store for run ids/experiments"
    )
    parser.add_argument(
        "--sweep",
        action=_boolean_optional(),
        default=None,
        help="add the sweep's LR-sensitivity recommendation (default: only when the runs' params "
        "show one task at 3+ LRs; --sweep for files, which carry no params)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes for many files (default: all cores), or runs read at a time from a "
        f"tracking server (default: {SERVER_READ_THREADS})",
    )
    parser.set_defaults(run=run)


def _boolean_optional():
    import argparse

    return argparse.BooleanOptionalAction


def _raw_description():
    import argparse

    return argparse.RawDescriptionHelpFormatter


def run(args) -> int:
    from lrwatch.errors import InputError

    specs = _specs(args)
    if not specs:
        raise InputError("nothing to analyse: give a file, folder, run id or --experiment NAME")
    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be at least 1")
    _announce_tracking_store(specs, args.tracking_uri)
    results = _analyse(specs, args)
    return _report(results, args)


def _specs(args) -> list[str]:
    return list(args.inputs) + [f"experiment:{name}" for name in args.experiment]


def _announce_tracking_store(specs: list[str], explicit_uri: str | None) -> None:
    from lrwatch.sources import needs_mlflow
    from lrwatch.sources.specs import spec_tracking_uri

    stores = [spec_tracking_uri(spec, explicit_uri) for spec in specs if needs_mlflow(spec)]
    if not stores:
        return
    for name, value in _MLFLOW_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from lrwatch.store import describe_store

    for uri in dict.fromkeys(stores):  # a UI address names its own server
        print(describe_store(uri), file=sys.stderr)


def _analyse(specs: list[str], args):
    from lrwatch.batch import ProgressLine, analyze_refs, expand_specs

    refs, errors = expand_specs(specs, tracking_uri=args.tracking_uri)
    results = list(
        analyze_refs(
            refs,
            loss_key=args.loss_key,
            lr_key=args.lr_key,
            keep_series=len(refs) > 1,  # the sweep analysis needs every run's series
            workers=args.workers,
            progress=ProgressLine(sys.stderr),
        )
    )
    return results, errors


def _report(outcome, args) -> int:
    from collections import Counter

    from lrwatch.analysis.findings import severity_rank
    from lrwatch.report_format import report_entry
    from lrwatch.sources import SKIPPED_NO_LOSS

    results, errors = outcome
    errors = errors + [(r.label, r.error) for r in results if r.error]
    analysed = [r for r in results if r.report is not None]
    parents = _search_parents(analysed)
    analysed = [r for r in analysed if not any(r is parent for parent in parents)]
    skipped = dict(Counter(r.skipped for r in results if r.skipped))
    skipped["a search's parent run"] = len(parents)
    from lrwatch.analysis.sweep import diverged_in, trial_runs

    trials = trial_runs([r.run for r in analysed])
    diverged = {r.run.id for r in analysed if diverged_in(r.report.findings)}
    sweep = _sweep(trials, args.sweep, diverged)
    entries = [report_entry(r.report, _extras(r, analysed, sweep)) for r in analysed]
    if not analysed and not errors:
        given = ", ".join(_specs(args))
        no_loss = skipped.get(SKIPPED_NO_LOSS, 0)
        errors.append((given, f"{given}: no run with a loss to analyse ({no_loss} logged no loss)"))
    skipped_results = [r for r in results if r.skipped]
    skipped_runs = [(r.label, r.skipped, hide_passwords(r.notes[0])) for r in skipped_results]
    _print(entries, (sweep, len(trials)), errors, (skipped, skipped_runs), args.format)
    if sweep is None and args.sweep is None:
        _hint_sweep(trials)
    for result, (_, _, message) in zip(skipped_results, skipped_runs):
        if result.ref.kind == "file":  # an experiment's parent runs: quiet
            print(f"lrwatch: skipped {message}", file=sys.stderr)
    if errors:
        return EXIT_BAD_INPUT
    if args.fail_on is not None:
        threshold = severity_rank(args.fail_on)
        if any(severity_rank(r.report.worst_severity) >= threshold for r in analysed):
            return EXIT_FAIL_ON
    return EXIT_OK


def _search_parents(analysed) -> list:
    """The results that are a search's parent run: the parent of other runs analysed here
    (an Optuna study or a hyperopt search logging each trial as a nested run) whose own loss is
    too short to judge - a summary such as its best trial's loss, not a training curve. Reported,
    it read "too short to judge" beside the trials; it is skipped and counted instead."""
    from lrwatch.analysis.sweep import PARENT_RUN_TAG

    parent_ids = {r.run.tags.get(PARENT_RUN_TAG) for r in analysed if r.run is not None}
    return [
        r
        for r in analysed
        if r.run is not None
        and r.run.id in parent_ids
        and r.report.extras.get("verdict") == "too_short"
    ]


def _extras(result, analysed, sweep) -> dict:
    """Identity extras, plus where the run's LR sits on a range test analysed beside it and
    where it ended in the sweep analysed with it (``sweep``: its recommendation, or None)."""
    from lrwatch.analysis.sweep import relate_to_sweep
    from lrwatch.report_format import run_extras

    to_range_test = _relative_to_range_test(result.run, [r.run for r in analysed])
    to_sweep = (
        relate_to_sweep(result.run.id, result.report.recommendation, sweep) if sweep else None
    )
    found = (("relative_to_range_test", to_range_test), ("relative_to_sweep", to_sweep))
    relations: dict[str, dict] = {key: value for key, value in found if value is not None}
    notes = [*result.notes, *(relation["message"] for relation in relations.values())]
    return {**run_extras(result.run, notes), **relations}


def _relative_to_range_test(run, runs) -> dict | None:
    """The diagnosis points back to the latest range test among the runs analysed with it that
    may have tested its setup (a quadratic's SGD run is not judged by an autoencoder's test)."""
    from lrwatch.analysis.range_test import may_have_tested, relate_lr_to_range_test

    if run is None or run.is_range_test:
        return None
    tests = [r for r in runs if r is not None and r.is_range_test and may_have_tested(r, run)]
    if not tests:
        return None
    from lrwatch.analysis.sweep import base_lr

    lr = base_lr(run)
    latest = max(tests, key=lambda r: r.start_time_ms or 0)
    return relate_lr_to_range_test(lr, latest) if lr is not None else None


def _sweep(runs, wanted: bool | None, diverged: set[str]):
    """The sweep recommendation: when asked (--sweep), or when the runs look like one sweep.
    ``diverged``: the ids of the runs whose report found a critical divergence."""
    if len(runs) < 2 or wanted is False:
        return None
    from lrwatch.analysis import analyze_sweep
    from lrwatch.analysis.sweep import looks_like_sweep

    if wanted or looks_like_sweep(runs):
        return analyze_sweep(runs, diverged=diverged)
    return None


def _hint_sweep(runs) -> None:
    """One line when runs without params (files) were trained at enough LRs to be a sweep: the
    sweep recommendation waits for ``--sweep`` there, and nothing said so - a sweep's CSVs got
    eight reports and no word on which rate to use."""
    from lrwatch.analysis.sweep import MIN_SWEEP_LRS, distinct_lrs

    if all(run.params for run in runs):
        return  # the params decided: one task at several LRs would have had its recommendation
    lrs = distinct_lrs(runs)
    if len(lrs) >= MIN_SWEEP_LRS:
        print(
            f"lrwatch: these {len(runs)} runs were trained at {len(lrs)} different LRs; if they "
            "are one sweep (one task), add --sweep for a recommendation from their final losses",
            file=sys.stderr,
        )


def _print(entries, sweep_of, errors, skipped_of, output_format: str) -> None:
    """``sweep_of``: the sweep's recommendation (or None) and how many runs it was drawn from;
    ``skipped_of``: how many runs were skipped per reason, and ``(run, reason, message)`` of
    each run skipped as no log of steps."""
    from lrwatch import report_format as fmt

    sweep, sweep_runs = sweep_of
    skipped, skipped_runs = skipped_of
    if output_format == "json":
        print(fmt.format_json(entries, sweep, errors, skipped_runs))
    else:
        blocks = [fmt.format_entry_text(entry) for entry in entries]
        if sweep is not None:
            blocks.append(fmt.format_sweep_text(sweep, sweep_runs))
        if len(entries) > 1 or (entries and (errors or any(skipped.values()))):
            blocks.append(fmt.format_summary_text(entries, len(errors), skipped))
        if blocks:
            print("\n\n".join(blocks))
    for _spec, message in errors:
        print(f"lrwatch: error: {hide_passwords(' '.join(str(message).split()))}", file=sys.stderr)
