"""Errors that mean "the input is bad": the CLI prints their message as one line and exits 2."""


class LrwatchError(Exception):
    """Base class for every error lrwatch raises on purpose."""


class InputError(LrwatchError):
    """Bad input: a missing file, not a table, no loss column, an unknown run, an empty run..."""


class MissingDependency(LrwatchError):
    """An optional dependency is needed; the message holds the exact ``pip install`` line."""


def require(module: str, install: str):
    """Import ``module`` or raise :class:`MissingDependency` naming the install line.

    ``install`` is what follows ``pip install``: an lrwatch extra (``"lrwatch[torch]"``) where one
    exists, else the package itself (``"lightning"``).
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = module.split(".")[0]
        raise MissingDependency(
            f"{name} is needed for this; install it with: pip install '{install}'"
        ) from exc
