"""Which MLflow tracking store lrwatch talks to, decided in one place.

Order: an explicit ``--tracking-uri`` / argument, then ``MLFLOW_TRACKING_URI``, then the embedded
default ``sqlite:///mlflow.db`` in the current directory - the same default MLflow 3.x itself
uses, so ``lrwatch``, ``mlflow ui`` and other tools see the same runs.
"""

from __future__ import annotations

import os
import re

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
    return f"lrwatch: tracking store {display_uri(uri)}"


def display_uri(uri: str) -> str:
    """``uri`` with its password, if any, replaced by ``***``: for every message and page.

    A shared store's URI often carries one (``postgresql://mlflow:PASSWORD@db-host/mlflow``,
    ``https://user:token@mlflow-host``); stderr, CI logs and a dashboard page must not show it.
    The user part ends at the *last* ``@`` of the host part, so an unescaped ``@`` in a password
    is hidden too.
    """
    scheme, sep, rest = uri.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not (sep and at and ":" in userinfo):
        return uri
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{slash}{path}"


_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def hide_passwords(text: str) -> str:
    """``text`` with every URI in it passed through :func:`display_uri`.

    lrwatch words its own messages with :func:`display_uri`; this is the net at the places text
    leaves the program (an error line, a dashboard message, a logger warning), for messages
    that quote a URI from elsewhere (MLflow's, SQLAlchemy's).
    """
    return _URI_IN_TEXT.sub(lambda match: display_uri(match.group(0)), text)
