"""Which MLflow tracking store lrwatch talks to, decided in one place.

Order: an explicit ``--tracking-uri`` / argument, then ``MLFLOW_TRACKING_URI``, then the embedded
default ``sqlite:///mlflow.db`` in the current directory - the same default MLflow 3.x itself
uses, so ``lrwatch``, ``mlflow ui`` and other tools see the same runs.
"""

from __future__ import annotations

import os

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"


def resolve_tracking_uri(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    return os.environ.get(ENV_TRACKING_URI) or DEFAULT_TRACKING_URI


def describe_store(uri: str) -> str:
    """One line for stderr, so a person always knows which store a command used."""
    if uri == DEFAULT_TRACKING_URI:
        where = os.path.join(os.getcwd(), "mlflow.db")
        return f"lrwatch: tracking store {uri} ({where}; set MLFLOW_TRACKING_URI or --tracking-uri to change)"
    return f"lrwatch: tracking store {uri}"
