"""The ``lrwatch`` command: a thin adapter that parses arguments and hands off to a command module.

Each subcommand lives in :mod:`lrwatch.commands` as a module with ``register(subparsers)`` and
``run(args) -> int``. Heavy imports happen inside ``run``, so ``lrwatch analyze FILE.csv`` never
loads MLflow, Dash or torch unless the input needs them.

Exit status: 0 done, 1 ``--fail-on`` met, 2 bad input or usage (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from lrwatch import __version__

COMMANDS = ("analyze", "dashboard", "demo", "import_runs")
EXIT_OK, EXIT_FAIL_ON, EXIT_BAD_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrwatch",
        description="Is my learning rate wrong, and what should it be?",
    )
    parser.add_argument("--version", action="version", version=f"lrwatch {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"lrwatch.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("lrwatch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK  # e.g. `lrwatch analyze ... | head`
    except Exception as exc:  # noqa: BLE001 - the promise is one line, never a traceback
        if os.environ.get("LRWATCH_DEBUG"):
            raise
        print(f"lrwatch: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def one_line(exc: BaseException) -> str:
    from lrwatch.errors import LrwatchError
    from lrwatch.store import hide_passwords

    text = hide_passwords(" ".join(str(exc).split())) or type(exc).__name__
    return text if isinstance(exc, LrwatchError) else f"{type(exc).__name__}: {text}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
