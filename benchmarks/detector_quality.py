"""Detector quality on labelled real training runs: per-kind precision/recall, false alarms.

Usage::

    python benchmarks/detector_quality.py            # the five final held-out sets (README figures)
    python benchmarks/detector_quality.py --set tuning_wide   # a set of the tuning pool
    python benchmarks/detector_quality.py --set final final2  # ... one table each, then pooled
    python benchmarks/detector_quality.py --rebuild  # retrain the runs (a few minutes)
    python benchmarks/detector_quality.py --epochs 50  # the same runs as 50-point per-epoch logs
    python benchmarks/detector_quality.py --ema 0.98   # ... as logs of a smoothed (EMA) loss

A kind counts as *reported* for a run when the run has a finding of that kind at ``warning`` or
``critical`` severity (``info`` findings are notes, not alarms). Precision and recall are per
kind over all labelled runs (a run may carry two labels, e.g. oscillation and divergence); the
false-alarm rate is the share of healthy runs with any warning-level finding. Labels come from how
each run was made (see ``labelled_runs.py``). Each table is printed twice: counting a kind a run's
construction neither asserts nor rules out (``acceptable``: oscillation on a plateau run) neither
way, and ``strict``, counting it as a false alarm.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from labelled_runs import SETS, epoch_view, final_level, load, smoothed_view  # noqa: E402

from lrwatch.analysis.detectors import run_detectors  # noqa: E402
from lrwatch.analysis.findings import KINDS, severity_rank  # noqa: E402
from lrwatch.analysis.prepare import prepare_arrays  # noqa: E402

WARNING = severity_rank("warning")


def reported_kinds(run) -> set[str]:
    """Kinds found at warning severity or above (cached per run: every table reads them)."""
    key = id(run)
    if key not in _REPORTED:
        _REPORTED[key] = _detect(run)
    return set(_REPORTED[key])


_REPORTED: dict[int, frozenset[str]] = {}  # the runs stay loaded for the whole process


def _detect(run) -> frozenset[str]:
    prepared = prepare_arrays(run.steps, run.loss, run.steps, run.lr, run_id=run.name)
    findings = run_detectors(prepared)
    return frozenset(f.kind for f in findings if severity_rank(f.severity) >= WARNING)


def evaluate(runs, *, verbose: bool = False, strict: bool = False) -> dict:
    """Per-kind precision/recall; ``strict`` also counts a run's :attr:`acceptable` kinds as
    false alarms (by default they count neither way)."""
    tp, fp, fn = Counter(), Counter(), Counter()
    healthy = healthy_alarms = 0
    for run in runs:
        kinds, labels = reported_kinds(run), run.labels
        if not strict:
            kinds -= run.acceptable - labels
        for kind in KINDS:
            if kind in kinds and kind in labels:
                tp[kind] += 1
            elif kind in kinds:
                fp[kind] += 1
            elif kind in labels:
                fn[kind] += 1
        if "healthy" in labels:
            healthy += 1
            healthy_alarms += bool(kinds)
        wrong = kinds != (labels - {"healthy"})
        if verbose and wrong:
            print(f"  {run.label:22s} {run.name:45s} reported {sorted(kinds)}")
    table = {}
    for kind in KINDS:
        found, labelled = tp[kind] + fp[kind], tp[kind] + fn[kind]
        table[kind] = {
            "labelled": labelled,
            "precision": tp[kind] / found if found else float("nan"),
            "recall": tp[kind] / labelled if labelled else float("nan"),
        }
    table["healthy"] = {"runs": healthy, "false_alarm_rate": healthy_alarms / max(healthy, 1)}
    return table


def print_table(runs, *, verbose: bool = False) -> None:
    """One Markdown table: per-kind precision/recall (and strict precision), false alarms."""
    lenient = evaluate(runs, verbose=verbose)
    strict = evaluate(runs, strict=True)
    print(
        "| kind | labelled runs | precision | recall | precision (strict) |\n|---|---|---|---|---|"
    )
    for kind in KINDS:
        row = lenient[kind]
        print(
            f"| {kind} | {row['labelled']} | {row['precision']:.2f} | {row['recall']:.2f} | "
            f"{strict[kind]['precision']:.2f} |"
        )
    h = lenient["healthy"]
    print(
        f"| healthy: share with a warning-level finding | {h['runs']} | "
        f"{h['false_alarm_rate']:.1%} | | |"
    )
    print(f"recall by logging stride: {recall_by_stride(runs)}")
    told_to_raise = raise_borne_out(runs)
    if told_to_raise:
        print(told_to_raise)


def raise_borne_out(runs) -> str:
    """Healthy-labelled runs told the LR is too small, against the same run (task, seed,
    schedule) at 3x the rate where the set holds one: did that end lower? ``healthy`` comes
    from the constant-rate sweep's best rate and a third of it, not from a sweep of each
    schedule, so such a warning may be right."""
    import numpy as np

    def key(run) -> str:
        return "-".join(part for part in run.name.split("-") if not part.startswith("lr"))

    by_key: dict[str, list] = {}
    for run in runs:
        by_key.setdefault(key(run), []).append(run)
    warned = [r for r in runs if "healthy" in r.labels and "slow_convergence" in reported_kinds(r)]
    ratios = []
    for run in warned:
        peak = float(np.max(run.lr))
        for other in by_key[key(run)]:
            if abs(float(np.max(other.lr)) / peak - 3) < 0.03:
                ratios.append(final_level(other.loss) / final_level(run.loss))
    if not warned:
        return ""
    lower = sum(r < 1 for r in ratios)
    span = f" (its end / this run's: {min(ratios):.2f}-{max(ratios):.2f})" if ratios else ""
    return (
        f"healthy runs told to raise the LR: {len(warned)}; the same run at 3x the rate is in "
        f"the set for {len(ratios)}, and ended lower for {lower}{span}"
    )


def recall_by_stride(runs) -> str:
    """Found/labelled per kind and logging stride, e.g. ``oscillation 1:12/12 2:6/12``."""
    found, labelled = Counter(), Counter()
    for run in runs:
        stride = run.log_every
        kinds = reported_kinds(run)
        for kind in run.labels - {"healthy"}:
            labelled[kind, stride] += 1
            found[kind, stride] += kind in kinds
    return "; ".join(
        f"{kind} "
        + " ".join(f"{s}:{found[k, s]}/{labelled[k, s]}" for k, s in sorted(labelled) if k == kind)
        for kind in KINDS
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--set",
        nargs="+",
        default=["final", "final2", "final3", "final4", "final5"],
        choices=tuple(SETS),
    )
    parser.add_argument("--rebuild", action="store_true")
    view = parser.add_mutually_exclusive_group()
    view.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help="judge each run as a per-epoch log: the mean loss of each of N equal stretches",
    )
    view.add_argument(
        "--ema",
        type=float,
        metavar="BETA",
        help="judge each run as a log of its loss's moving average (fastai's smooth_loss: 0.98)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="list misclassified runs")
    args = parser.parse_args()
    pooled = []
    for name in args.set:
        t0 = time.perf_counter()
        runs = load(name, rebuild=args.rebuild)
        if args.epochs:
            runs = epoch_view(runs, args.epochs)
        elif args.ema:
            runs = smoothed_view(runs, args.ema)
        print(
            f"{name}: {len(runs)} runs ({dict(Counter(r.label for r in runs))}) in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        print_table(runs, verbose=args.verbose)
        pooled.extend(runs)
    if len(args.set) > 1:
        print(f"pooled ({' + '.join(args.set)}): {len(pooled)} runs")
        print_table(pooled)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
