"""Which MLflow tracking store lrwatch talks to, decided in one place.

Order: an explicit ``--tracking-uri`` / argument, then ``MLFLOW_TRACKING_URI``, then the embedded
default ``sqlite:///mlflow.db`` in the current directory - the same default MLflow 3.x itself
uses, so ``lrwatch``, ``mlflow ui`` and other tools see the same runs.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from urllib.parse import urlsplit

from lrwatch.errors import InputError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
# Runs read at a time from a tracking server, in threads (`lrwatch analyze`, the dashboard's
# compare view and run table). The server's time is most of a run's (200 runs of 2,000 steps
# took 57-66 s one by one: ~0.3 s a run, ~30 ms of it in lrwatch), and `mlflow server` runs 4
# workers by default (benchmarks/mlflow_analyze.py --server).
SERVER_READ_THREADS = 4
# The URI schemes MLflow 3.x keeps runs behind (its tracking store registry), besides a plain
# path; a database scheme may name its driver (``postgresql+psycopg2``). A plugin adds its own
# under the ``mlflow.tracking_store`` entry point group.
MLFLOW_SCHEMES = (
    "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks",
    "databricks-uc", "uc",
)  # fmt: skip


def resolve_tracking_uri(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    return os.environ.get(ENV_TRACKING_URI) or DEFAULT_TRACKING_URI


class UnsupportedTrackingUri(InputError):
    """No MLflow tracking store has this URI's scheme. It carries MLflow's error code for the
    case, so the logger stops retrying at once, as with MLflow's own refusal."""

    error_code = "INVALID_PARAMETER_VALUE"


def check_tracking_uri(uri: str) -> str:
    """``uri``, or :class:`UnsupportedTrackingUri` when no MLflow tracking store has its scheme.

    MLflow's own error for a mistyped scheme (``htpp://``, ``sqlite//``... parse as a path and
    are fine, ``bogus://x`` is not) speaks of "Model registry functionality"; a person looking
    at their tracking URI needs to hear which part is wrong and what would work.
    """
    scheme = urlsplit(uri).scheme.lower()
    # One letter is a Windows drive (C:\runs), which MLflow reads as a path.
    if len(scheme) <= 1 or scheme.split("+")[0] in MLFLOW_SCHEMES or scheme in _plugin_schemes():
        return uri
    # Heroku and many tutorials write postgres://, which SQLAlchemy 1.4+ no longer accepts.
    hint = "postgresql://..." if scheme == "postgres" else None
    raise UnsupportedTrackingUri(
        f"tracking URI {display_uri(uri)}: MLflow has no tracking store for '{scheme}://' "
        + (f"(did you mean {hint}?)" if hint else _WHAT_WORKS)
    )


_WHAT_WORKS = (
    "(use a folder, sqlite:///path.db, postgresql://..., mysql://... or http(s)://host:port)"
)


def _plugin_schemes() -> set[str]:
    from importlib.metadata import entry_points

    return {entry.name for entry in entry_points(group="mlflow.tracking_store")}


# MLflow 3 refuses a file store ("./mlruns") unless this is set; it says so at the end of a
# paragraph that a one-line message cuts off.
_FILE_STORE_OPT_IN = "MLFLOW_ALLOW_FILE_STORE"


def file_store_refusal(error_text: str) -> str | None:
    """How to say MLflow's refusal of a file store in one line (after the store's URI), or None
    when ``error_text`` is no such refusal."""
    if _FILE_STORE_OPT_IN not in error_text:
        return None
    return (
        f"is a file store, which MLflow 3 refuses by default: set {_FILE_STORE_OPT_IN}=true to "
        "use it, or migrate it with `mlflow migrate-filestore`"
    )


# Substrings of requests/urllib3 and database-driver errors (wrapped in MLflow's text) -> a
# short reason.
_NETWORK_CLUES = (
    ("connection refused", "connection refused"),
    ("name or service not known", "unknown host"),
    ("nodename nor servname", "unknown host"),
    ("temporary failure in name resolution", "unknown host"),
    ("timed out", "timed out"),
    ("max retries exceeded", "no answer"),
    ("connection aborted", "connection aborted"),
)


def network_reason(error_text: str) -> str | None:
    """A short reason ("connection refused", "unknown host", ...) when ``error_text`` is a
    network failure, else None: the rest of such text (~400 characters of urllib3's pool and
    retry details) tells a person nothing more."""
    lowered = error_text.lower()
    return next((reason for clue, reason in _NETWORK_CLUES if clue in lowered), None)


# MLflow's error codes for a server's HTTP 401 and 403 (its basic-auth app, or a proxy before it).
LOGIN_ERRORS = ("UNAUTHENTICATED", "PERMISSION_DENIED")


def login_refusal(exc: BaseException, uri: str | None = None) -> str | None:
    """How to say a server's refusal of the login in one line (after the server's name), with
    the setting that fixes it; None when ``exc`` is no such refusal.

    MLflow's own text ("API request to endpoint ... failed with error code 401 != 200. Response
    body: 'You are not authenticated. Please see https://...'") names neither the login it sent
    nor the environment variables a client reads it from. A login written into the tracking URI
    (``https://bob:PASSWORD@host``) is sent too when those variables are unset, as ``requests``
    reads it from the URL.
    """
    code = getattr(exc, "error_code", None)
    if code not in LOGIN_ERRORS:
        return None
    env_user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    uri_login = None if env_user or token else uri_user(uri or "")
    if code == "PERMISSION_DENIED":
        user = env_user or uri_login
        who = f"user {user!r}" if user else "this login"
        return (
            f"denied {who} permission (HTTP 403): ask the server's admin for access (EDIT on "
            "the experiment to log to it, READ to read it)"
        )
    if env_user:
        return (
            f"did not accept the login of user {env_user!r} (HTTP 401): check "
            "MLFLOW_TRACKING_PASSWORD"
        )
    if token:
        return "did not accept MLFLOW_TRACKING_TOKEN (HTTP 401): it may have expired"
    if uri_login:
        return (
            f"did not accept the login of user {uri_login!r} given in the tracking URI (HTTP "
            "401): check the password in it"
        )
    return (
        "asks for a login (HTTP 401): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
        "(or MLFLOW_TRACKING_TOKEN)"
    )


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
    user = uri_user(uri)
    if user is None:
        return uri
    scheme, _, rest = uri.partition("://")
    netloc, slash, path = rest.partition("/")
    host = netloc.rpartition("@")[2]
    return f"{scheme}://{user}:***@{host}{slash}{path}"


def uri_user(uri: str) -> str | None:
    """The user of a ``scheme://user:password@host/...`` URI; None without a password in it."""
    _, sep, rest = uri.partition("://")
    userinfo, at, _ = rest.partition("/")[0].rpartition("@")
    if not (sep and at and ":" in userinfo):
        return None
    return userinfo.split(":", 1)[0]


_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def hide_passwords(text: str) -> str:
    """``text`` with every URI in it passed through :func:`display_uri`.

    lrwatch words its own messages with :func:`display_uri`; this is the net at the places text
    leaves the program (an error line, a dashboard message, a logger warning), for messages
    that quote a URI from elsewhere (MLflow's, SQLAlchemy's).
    """
    return _URI_IN_TEXT.sub(lambda match: display_uri(match.group(0)), text)


def one_per_uri(build):
    """Decorate ``build(tracking_uri)``: one object per URI (a client, a database engine), built
    on first use under a lock."""
    built: dict[str, object] = {}
    lock = threading.Lock()

    @functools.wraps(build)
    def get(tracking_uri: str):
        with lock:
            if tracking_uri not in built:
                built[tracking_uri] = build(tracking_uri)
            return built[tracking_uri]

    return get
