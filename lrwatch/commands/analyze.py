"""`lrwatch analyze` (placeholder until its issue lands)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("analyze", help="(not yet available)")
    parser.set_defaults(run=run)


def run(args) -> int:
    raise SystemExit("lrwatch analyze: not available yet")
