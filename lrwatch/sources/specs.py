"""What the user typed -> the runs it names (:class:`RunRef`).

How a spec (a command-line argument or a ``load_run`` argument) is read, first match wins:

1. ``runs:/RUN_ID`` (anything after the id, like ``runs:/ID/model``, is ignored) -> an MLflow run.
2. ``experiment:NAME`` -> every run of that MLflow experiment (``NAME`` may also be an id).
   An MLflow UI address copied from the browser (``http://HOST:5000/#/experiments/1/runs/ID``,
   ``.../#/experiments/1``) -> that run, or every run of that experiment, on that server.
3. an existing file -> one saved run (one per run of a W&B chart export or of a long table
   with a run column); an existing folder -> each table file in it, and each TensorBoard log
   directory at or below it, is one run.
4. ``-`` -> the table piped into standard input (:mod:`lrwatch.sources.stdin`).
5. a glob pattern (``runs/*.csv``, ``logs/**/lr*``) that matches -> each run file and folder it
   matches, as above: a quoted pattern, or one from a shell that does not expand it (Windows),
   reaches lrwatch unexpanded.
6. 32 hexadecimal characters (an MLflow run id) -> an MLflow run.
7. a name ending in ``.csv``, ``.parquet``, ``.feather``, ``.jsonl``... or containing ``/`` -> a
   file (missing).
8. anything else -> an MLflow experiment name.

MLflow specs use the tracking URI given, else ``MLFLOW_TRACKING_URI``, else the embedded default
(:func:`lrwatch.store.resolve_tracking_uri`); a UI address uses the server it names. MLflow is
imported only for MLflow specs.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lrwatch.errors import InputError
from lrwatch.sources.files import folder_files, runs_in_file
from lrwatch.sources.stdin import STDIN_NAME, STDIN_SPEC, saved_stdin
from lrwatch.sources.tables import is_table_file
from lrwatch.sources.tensorboard import EVENT_FILE_MARK
from lrwatch.store import display_uri, file_store_refusal, login_refusal, network_reason

RUN_PREFIX = "runs:/"
EXPERIMENT_PREFIX = "experiment:"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
# What makes a spec a glob pattern (Python's glob: *, ?, [...]; ** with recursive=True).
_GLOB = re.compile(r"[*?\[]")
# The MLflow UI's address of an experiment or a run: the server (with any path prefix the UI is
# served under) before "#/", then the UI's route; a tab or a query after it (".../model-metrics",
# "?o=...") is ignored.
_UI_ADDRESS = re.compile(
    r"^(?P<server>https?://[^#\s]+?)/?#/experiments/(?P<experiment>[^/?#\s]+)"
    r"(?:/runs/(?P<run>[0-9a-f]{32}))?(?:[/?].*)?$"
)
# Longest MLflow error text kept in the one-line message (they can hold whole HTML pages).
_MAX_ERROR_CHARS = 240


@dataclass(frozen=True)
class RunRef:
    """One run to load: a table file (``kind="file"``) or an MLflow run (``kind="mlflow"``).

    ``spec`` is what the user wrote (for messages); ``optional`` marks runs found by listing an
    experiment or a folder, which are skipped (not an error) when they are no log of steps - a
    parent run, a folder's ``config.json`` (see :class:`lrwatch.sources.SkippedRun`).
    ``part`` names one run of a file that holds several (a W&B chart export, a long table with
    a run column); such a file is read once for all of them (see ``files.load_file``).
    """

    kind: str
    target: str
    spec: str
    tracking_uri: str | None = None
    optional: bool = False
    part: str | None = None

    @property
    def label(self) -> str:
        target = STDIN_NAME if self.spec == STDIN_SPEC else self.target
        return target if self.part is None else f"{target}#{self.part}"


def classify(spec: str) -> tuple[str, str]:
    """``(kind, value)`` with kind one of ``file``, ``folder``, ``stdin``, ``pattern``, ``run``,
    ``experiment``."""
    spec = spec.strip()
    if spec == STDIN_SPEC:  # a file named "-" is still ./-
        return "stdin", spec
    if spec.startswith(RUN_PREFIX):
        return "run", spec[len(RUN_PREFIX) :].strip("/").split("/", 1)[0]
    if spec.startswith(EXPERIMENT_PREFIX):
        return "experiment", spec[len(EXPERIMENT_PREFIX) :]
    address = _UI_ADDRESS.match(spec)
    if address:
        run = address.group("run")
        return ("run", run) if run else ("experiment", address.group("experiment"))
    path = Path(spec)
    if path.is_dir():
        return "folder", spec
    if path.exists():
        return "file", spec
    path_like = is_table_file(path) or "/" in spec or "\\" in spec
    if _GLOB.search(spec) and (path_like or glob.glob(spec, recursive=True)):
        return "pattern", spec  # matching nothing, it says so
    if _RUN_ID.match(spec):
        return "run", spec
    return ("file" if path_like else "experiment"), spec


def needs_mlflow(spec: str) -> bool:
    return classify(spec)[0] in ("run", "experiment")


def is_ui_address(spec: str) -> bool:
    """An MLflow UI address of a run or an experiment (``http://HOST:5000/#/experiments/...``)."""
    return bool(_UI_ADDRESS.match(spec.strip()))


def spec_tracking_uri(spec: str, tracking_uri: str | None) -> str:
    """The store an MLflow spec is read from: the server a UI address names, else the tracking
    URI given, else ``MLFLOW_TRACKING_URI``, else the embedded default."""
    address = _UI_ADDRESS.match(spec.strip())
    if address:
        return address.group("server")
    from lrwatch.store import resolve_tracking_uri

    return resolve_tracking_uri(tracking_uri)


def expand(spec: str, *, tracking_uri: str | None = None) -> list[RunRef]:
    """The runs one spec names (a folder or an experiment may name many).

    Raises:
        InputError: a missing file, an empty folder, an unknown run or experiment, an
            unreachable tracking store.
    """
    kind, value = classify(spec)
    if kind == "file":
        return file_refs(value, spec)
    if kind == "folder":
        return [ref for path in folder_files(value) for ref in file_refs(str(path), spec, True)]
    if kind == "stdin":
        return file_refs(str(saved_stdin()), spec)
    if kind == "pattern":
        return [ref for path in pattern_runs(value) for ref in file_refs(path, spec, True)]
    uri = spec_tracking_uri(spec, tracking_uri)
    _require_existing_sqlite_store(uri, spec, kind)
    if kind == "run":
        return [RunRef("mlflow", value, spec, uri)]
    return experiment_runs(value, uri, spec=spec, by_id=is_ui_address(spec))


def pattern_runs(pattern: str) -> list[str]:
    """The run files a glob pattern names, in the order of its sorted matches: each matching
    run file, and the runs in each matching folder. Other matches - a README, a folder holding
    no runs - are left out.

    Raises:
        InputError: it matches nothing that holds runs.
    """
    matches = sorted(glob.glob(pattern, recursive=True))
    if not matches:
        raise InputError(f"{pattern}: no file matches")
    runs: list[str] = []
    for match in matches:
        path = Path(match)
        if path.is_dir():
            try:
                runs += [str(run) for run in folder_files(path)]
            except InputError:
                continue  # a folder without runs, e.g. one holding only subfolders
        elif is_table_file(path) or EVENT_FILE_MARK in path.name:
            runs.append(match)
    if not runs:
        shown = ", ".join(matches[:3]) + (", ..." if len(matches) > 3 else "")
        raise InputError(f"{pattern}: matches no run file or folder (it matches {shown})")
    return list(dict.fromkeys(runs))  # "runs/**" matches a folder and the files in it


def file_refs(path: str, spec: str, found: bool = False) -> list[RunRef]:
    """One run per table file; one per run of a file holding several (a W&B chart export, a
    long table with a run column). ``found``: the file was found by listing a folder or a glob
    pattern, not named - one that is no log of steps is then skipped (``RunRef.optional``)."""
    runs = runs_in_file(Path(path))
    if len(runs) < 2:
        return [RunRef("file", path, spec, optional=found)]
    return [RunRef("file", path, spec, optional=found, part=run) for run in runs]


def _require_existing_sqlite_store(uri: str, spec: str, kind: str) -> None:
    """Reading must not create a store: MLflow would make an empty ``mlflow.db`` on first use,
    and write its tables into any other SQLite file named as the store (an empty one, an app's
    database given by mistake)."""
    if not uri.lower().startswith("sqlite:///"):
        return
    from lrwatch.sources.mlflow_sql import holds_mlflow_tables, sqlite_path

    path = Path(sqlite_path(uri))
    what = {"run": "no run", "experiment": "no experiment"}[kind]
    if kind == "experiment" and not spec.startswith(EXPERIMENT_PREFIX):
        what = "no such file, run id or experiment"
    if not path.exists():
        raise InputError(f"{spec!r}: {what} (tracking store {display_uri(uri)} does not exist)")
    if not holds_mlflow_tables(path):
        raise InputError(
            f"{spec!r}: {what} ({display_uri(uri)} is no MLflow tracking store: it holds none "
            "of MLflow's tables)"
        )


def experiment_runs(
    name_or_id: str, tracking_uri: str, *, spec: str | None = None, by_id: bool = False
) -> list[RunRef]:
    """Every active run of an MLflow experiment (by name, else by id; ``by_id``: by id only,
    as a UI address names it), oldest first."""
    spec = spec or f"{EXPERIMENT_PREFIX}{name_or_id}"
    from lrwatch.sources.mlflow_sql import experiment_run_ids, is_sql_store

    if is_sql_store(tracking_uri):
        found = experiment_run_ids(tracking_uri, name_or_id, by_id=by_id)
        if found:
            return [RunRef("mlflow", rid, spec, tracking_uri, optional=True) for rid in found]
    store = display_uri(tracking_uri)
    with mlflow_errors(tracking_uri):
        client = _client(tracking_uri)
        experiment = None if by_id else client.get_experiment_by_name(name_or_id)
        if experiment is None and (by_id or name_or_id.isdigit()):
            experiment = _experiment_by_id(client, name_or_id)
        if experiment is None:
            if by_id:
                raise InputError(f"no experiment with id {name_or_id!r} in tracking store {store}")
            if spec.startswith(EXPERIMENT_PREFIX):
                raise InputError(f"no experiment {name_or_id!r} in tracking store {store}")
            raise InputError(
                f"{spec!r}: no such file, run id or experiment (tracking store {store})"
            )
        if experiment.lifecycle_stage == "deleted":
            raise InputError(
                f"experiment {experiment.name!r} is deleted (tracking store {store}); restore it "
                f"with: mlflow experiments restore --experiment-id {experiment.experiment_id}"
            )
        run_ids = _search_run_ids(client, experiment.experiment_id)
    if not run_ids:
        raise InputError(f"experiment {experiment.name!r} has no runs (tracking store {store})")
    return [RunRef("mlflow", rid, spec, tracking_uri, optional=True) for rid in run_ids]


def _experiment_by_id(client, experiment_id: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_experiment(experiment_id)
    except MlflowException:
        return None


def _search_run_ids(client, experiment_id: str) -> list[str]:
    run_ids, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            order_by=["attributes.start_time ASC"],
            max_results=1000,
            page_token=token,
        )
        run_ids += [run.info.run_id for run in page]
        token = page.token
        if not token:
            return run_ids


def _client(tracking_uri: str):
    from lrwatch.sources.mlflow_store import mlflow_client

    return mlflow_client(tracking_uri)


@contextmanager
def mlflow_errors(tracking_uri: str) -> Iterator[None]:
    """Turn MLflow's exceptions (unreachable server, bad URI...) into one-line InputErrors."""
    try:
        yield
    except InputError:
        raise
    except Exception as exc:
        if not _is_mlflow_failure(exc):
            raise
        raise InputError(describe_mlflow_failure(tracking_uri, exc)) from None


def describe_mlflow_failure(tracking_uri: str, exc: BaseException) -> str:
    """One line: 'cannot reach' for network failures, else MLflow's own (shortened) text."""
    text = " ".join(str(exc).split())
    refusal = file_store_refusal(text)
    if refusal:
        return f"{display_uri(tracking_uri)} {refusal}"
    refusal = login_refusal(exc, tracking_uri)
    if refusal:
        return f"tracking server {display_uri(tracking_uri)} {refusal}"
    reason = network_reason(text)
    if reason:
        return f"cannot reach tracking server {display_uri(tracking_uri)} ({reason})"
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    return f"cannot read tracking store {display_uri(tracking_uri)}: {text}"


def _is_mlflow_failure(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, (MlflowException, ConnectionError, TimeoutError, OSError))
