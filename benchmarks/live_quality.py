"""Live analysis on labelled real training runs: what the logger would warn about while they run.

Usage::

    python benchmarks/live_quality.py                 # the five final held-out sets, chunks of 10
    python benchmarks/live_quality.py --set adam      # another set (see labelled_runs.SETS)
    python benchmarks/live_quality.py --chunk 100     # points per update (the logger: one flush)

Each run is fed to :class:`lrwatch.analysis.streaming.OnlineAnalyzer` in chunks, as the logger's
background thread feeds it, then finalised as at the run's end. For each label it prints how many
runs got a warning-level finding of each kind while running ("live") and after the final
evaluation ("end": the findings then held, notes the whole run did not bear out dropped). Healthy
runs with any live warning are the live false alarms (README, "Live analysis").
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from labelled_runs import SETS, load  # noqa: E402

from lrwatch.analysis.findings import KINDS, severity_rank  # noqa: E402
from lrwatch.analysis.streaming import OnlineAnalyzer  # noqa: E402

WARNING = severity_rank("warning")


def warned_kinds(findings) -> set[str]:
    return {f.kind for f in findings if severity_rank(f.severity) >= WARNING}


def feed(run, chunk: int) -> tuple[set[str], set[str]]:
    """The kinds warned about while ``run`` ran, and those held at its end."""
    online = OnlineAnalyzer()
    live = []
    for first in range(0, len(run.steps), chunk):
        part = slice(first, first + chunk)
        live += online.update(run.steps[part], run.loss[part], run.lr[part])
    online.finalize()
    return warned_kinds(live), warned_kinds(online.findings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--set", nargs="+", default=["final", "final2", "final3", "final4", "final5"],
        choices=tuple(SETS),
    )  # fmt: skip
    parser.add_argument("--chunk", type=int, default=10, help="points per update (default 10)")
    args = parser.parse_args()
    counts: Counter = Counter()
    for name in args.set:
        for run in load(name):
            if run.label == "excluded":
                continue
            live, end = feed(run, args.chunk)
            counts[run.label, "runs"] += 1
            counts[run.label, "any", "live"] += bool(live)
            counts[run.label, "any", "end"] += bool(end)
            for kind in live:
                counts[run.label, kind, "live"] += 1
            for kind in end:
                counts[run.label, kind, "end"] += 1
    print(f"sets {' + '.join(args.set)}, chunks of {args.chunk}; runs with a warning-level finding")
    print("| label | runs | any: live / end | " + " | ".join(KINDS) + " |")
    print("|---|---:|---|" + "---|" * len(KINDS))
    for label in sorted({key[0] for key in counts}):
        cells = [f"{counts[label, kind, 'live']} / {counts[label, kind, 'end']}" for kind in KINDS]
        any_cell = f"{counts[label, 'any', 'live']} / {counts[label, 'any', 'end']}"
        print(f"| {label} | {counts[label, 'runs']} | {any_cell} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
