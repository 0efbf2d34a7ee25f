"""MLflow metadata for the dashboard: experiments, run summaries for the table, one run's header.

Metric histories are read through :mod:`lrwatch.sources.mlflow_store` (direct SQL on SQL stores)
and cached by :mod:`dashboard.data.cache`; this module only asks the client for small things.
Every MLflow or network failure becomes a :class:`DataError` with one line for the page.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from lrwatch import keys
from lrwatch.analysis.findings import Finding
from lrwatch.errors import InputError
from lrwatch.sources.specs import describe_mlflow_failure
from lrwatch.store import display_uri

# A table of this many runs still renders quickly in the browser (paged, 25 a page); an
# experiment with more shows its newest runs and says so.
MAX_TABLE_RUNS = 5000
_SEARCH_PAGE = 1000  # MLflow's largest page for search_runs


class DataError(InputError):
    """Something the page should say instead of drawing: unknown run, store unreachable..."""


@dataclass(frozen=True)
class RunSummary:
    """One row of the runs table: what MLflow's run search returns, no metric histories."""

    id: str
    name: str
    status: str | None
    last_step: int | None
    base_lr: str | None
    optimizer: str | None
    start_time_ms: int | None
    experiment_id: str
    metric_keys: tuple[str, ...]
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    last_logged_ms: int | None = None  # the latest loss point's timestamp

    @property
    def is_range_test(self) -> bool:
        return self.tags.get(keys.TAG_RANGE_TEST, "").lower() == "true"

    @property
    def loss_key(self) -> str | None:
        return keys.find_loss_key(self.metric_keys)


def configure_client_timeouts() -> None:
    """Fail fast on an unreachable server (MLflow's default retries block for minutes)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


@contextlib.contextmanager
def mlflow_errors(tracking_uri: str, what: str) -> Iterator[None]:
    """Turn any failure while talking to the store into one :class:`DataError` line."""
    try:
        yield
    except DataError:
        raise
    except InputError as exc:
        raise DataError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - MLflow, requests, SQL errors: the page says why
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        if "RESOURCE_DOES_NOT_EXIST" in text or "not found" in text.lower():
            raise DataError(f"{what}: not found in {display_uri(tracking_uri)}") from None
        # As `lrwatch analyze` says it: "cannot reach" a server that is down, a file store's
        # way out (MLflow 3 refuses them by default, naming the way at the end of a long text).
        raise DataError(f"{what}: {describe_mlflow_failure(tracking_uri, exc)}") from None


def client(tracking_uri: str):
    from lrwatch.sources.mlflow_store import mlflow_client

    return mlflow_client(tracking_uri)


def list_experiments(tracking_uri: str) -> list[tuple[str, str]]:
    """(id, name) of every active experiment, most recently created first."""
    with mlflow_errors(tracking_uri, "experiments"):
        found = client(tracking_uri).search_experiments(order_by=["creation_time DESC"])
    return [(e.experiment_id, e.name) for e in found]


def list_runs(tracking_uri: str, experiment_id: str) -> list[RunSummary]:
    """Summaries of an experiment's runs, newest first (at most :data:`MAX_TABLE_RUNS`)."""
    summaries: list[RunSummary] = []
    token = None
    with mlflow_errors(tracking_uri, f"runs of experiment {experiment_id}"):
        while len(summaries) < MAX_TABLE_RUNS:
            page = client(tracking_uri).search_runs(
                [experiment_id],
                max_results=_SEARCH_PAGE,
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            summaries += [summarize(run) for run in page]
            token = page.token
            if not token:
                break
    return summaries


def has_runs(tracking_uri: str, experiment_id: str) -> bool:
    with mlflow_errors(tracking_uri, f"runs of experiment {experiment_id}"):
        return bool(client(tracking_uri).search_runs([experiment_id], max_results=1))


def get_summary(tracking_uri: str, run_id: str) -> RunSummary:
    """The summary of one run; :class:`DataError` when it does not exist."""
    if not run_id or not run_id.replace("-", "").isalnum():
        raise DataError(f"no run {run_id!r}: run ids are letters and digits")
    with mlflow_errors(tracking_uri, f"run {run_id}"):
        return summarize(client(tracking_uri).get_run(run_id))


def summarize(run) -> RunSummary:
    """A :class:`RunSummary` from an MLflow ``Run`` entity."""
    from lrwatch.sources.mlflow_store import run_status

    info, data = run.info, run.data
    params, tags = dict(data.params), dict(data.tags)
    # RunData keeps the latest Metric objects (with their step) beside the value-only dict.
    latest = {m.key: m for m in getattr(data, "_metric_objs", [])}
    loss_key = keys.find_loss_key(data.metrics)
    last = latest.get(loss_key) if loss_key else None
    return RunSummary(
        id=info.run_id,
        name=info.run_name or tags.get("mlflow.runName", ""),
        status=run_status(info.status),
        last_step=last.step if last is not None else None,
        base_lr=params.get(keys.PARAM_BASE_LR) or params.get("lr"),
        optimizer=params.get(keys.PARAM_OPTIMIZER),
        start_time_ms=info.start_time,
        experiment_id=info.experiment_id,
        metric_keys=tuple(sorted(data.metrics)),
        tags=tags,
        params=params,
        last_logged_ms=last.timestamp if last is not None else None,
    )


def tag_findings(tags: dict[str, str]) -> list[Finding]:
    """Findings the live logger wrote to the run as a JSON tag; malformed entries are skipped."""
    text = tags.get(keys.TAG_FINDINGS)
    if not text:
        return []
    try:
        items = json.loads(text)
    except ValueError:
        return []
    found = []
    for item in items if isinstance(items, list) else []:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            found.append(Finding.from_dict(item))
    return found
