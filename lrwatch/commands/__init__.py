"""One module per ``lrwatch`` subcommand: ``register(subparsers)`` and ``run(args) -> int``."""
