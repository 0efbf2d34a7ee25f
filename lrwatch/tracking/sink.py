"""The MLflow side of the logger: one client, batched writes, fast failure, no hidden retries.

Local stores (``sqlite:///...``, any SQL URI) go through one :class:`mlflow.MlflowClient`, except
the metric rows of a SQLite or PostgreSQL store, once MLflow has accepted their names: those go
in with plain SQL (:mod:`lrwatch.tracking.sql_metrics`, ~7x less Python time). For an
``http(s)://`` tracking server the few calls the writer makes are sent with MLflow's own
``http_request`` helper but with ``max_retries=0`` and a short timeout: MLflow's default (7 urllib3
retries with backoff 2, up to 244 s of blocking per call against a dead server) would stall the
writer, which has its own retry-with-backoff and a disk spool. Setting
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` process-wide would also change the user's own MLflow calls,
so the writer passes its limits per request instead. The metrics of a ``runs/log-batch`` request
are written as JSON directly (:func:`_metric_json`), not through MLflow's entities and protobuf.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lrwatch.tracking.spool import MetricRow
from lrwatch.tracking.store_logs import install_store_log_filter, quiet_store_errors

if TYPE_CHECKING:
    from lrwatch.tracking.sql_metrics import SqlMetricWriter

# The store refuses more than 1000 metrics (or 100 params / 1000 tags) in one log_batch request.
MAX_METRICS_PER_REQUEST = 1000
MAX_PARAMS_PER_REQUEST = 100
# Values longer than these are refused by MLflow (mlflow.utils.validation).
MAX_TAG_VALUE = 8000
MAX_PARAM_VALUE = 6000
# A request to a hung server gives up after this long; the writer then retries with backoff.
DEFAULT_HTTP_TIMEOUT_S = 10
# "0" sends every metric through MLflow's own log_batch (no direct SQL writes): an escape hatch.
ENV_DIRECT_SQL = "LRWATCH_DIRECT_SQL"

# MLflow error codes that retrying cannot fix: the batch is dropped with a warning instead.
_PERMANENT_ERRORS = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_DOES_NOT_EXIST",
    "INVALID_STATE",
    "BAD_REQUEST",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
}
# Of those, the codes of a refusal of the request's content, not of the run or the login.
_CONTENT_ERRORS = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST"}


class RunNotActive(Exception):
    """The run was deleted: the store refuses every write to it (MLflow's SQL stores call that an
    invalid parameter, the same code as a bad metric name, so it is told apart here)."""

    error_code = "INVALID_STATE"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} was deleted")


class RunNotFound(Exception):
    """The run is gone for good (deleted, then ``mlflow gc``): MLflow's code and words for it."""

    error_code = "RESOURCE_DOES_NOT_EXIST"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"Run with id={run_id} not found")


def is_permanent(exc: BaseException) -> bool:
    """True when the store rejected the request itself (retrying would fail the same way)."""
    return getattr(exc, "error_code", None) in _PERMANENT_ERRORS


def split(items: Sequence, size: int) -> list:
    return [items[i : i + size] for i in range(0, len(items), size)]


class MlflowSink:
    """Creates or joins a run and writes metrics, params and tags to it."""

    def __init__(self, tracking_uri: str, *, http_timeout_s: int = DEFAULT_HTTP_TIMEOUT_S) -> None:
        self.tracking_uri = tracking_uri
        self.http_timeout_s = http_timeout_s
        self._rest = tracking_uri.startswith(("http://", "https://"))
        self._client = None
        # Metric names the store refused (e.g. "val acc%": MLflow allows only some characters),
        # with its reason: their rows are no longer sent, so they cannot sink the other rows.
        self.refused_keys: dict[str, str] = {}
        # Metric rows of a SQLite/PostgreSQL store go in with plain SQL (sql_metrics: ~50x less
        # Python time than MLflow's ORM, which held the GIL the training thread needs), once
        # MLflow's own log_batch has accepted (validated) each name.
        self._sql_writer: SqlMetricWriter | None = None
        self._sql_writer_checked = False
        self._accepted_keys: set[str] = set()
        self.direct_sql_rows = 0  # rows written that way (the tests check the path is taken)
        self.log_batch_rows = 0  # metric rows sent through MLflow's client instead
        if not self._rest:
            install_store_log_filter()

    @property
    def client(self):
        """The ``MlflowClient``, built on first use, not when the watcher starts.

        For a database store MLflow connects while building it and retries an unreachable
        database for ~100 s before raising; :func:`~lrwatch.sources.mlflow_store.mlflow_client`
        connects once first, so an outage is one quick failure the writer retries like any other.
        """
        if self._client is None:
            from lrwatch.sources.mlflow_store import mlflow_client

            self._client = mlflow_client(self.tracking_uri)
        return self._client

    # -- REST with explicit limits ---------------------------------------------------------
    def _call(self, endpoint: str, method: str, body: dict) -> dict:
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        from lrwatch.sources.mlflow_rest import host_creds

        creds = host_creds(self.tracking_uri)
        payload = {"params": body} if method == "GET" else {"json": body}
        response = http_request(
            creds,
            f"/api/2.0/mlflow/{endpoint}",
            method,
            max_retries=0,
            backoff_factor=0,
            timeout=self.http_timeout_s,
            **payload,
        )
        response = verify_rest_response(response, endpoint)
        return json.loads(response.text or "{}")

    # -- runs ------------------------------------------------------------------------------
    @quiet_store_errors
    def experiment_id(self, name: str | None) -> str:
        """The id of experiment ``name`` (created if missing); the default experiment for None."""
        if not name:
            return "0"
        if self._rest:
            try:
                found = self._call("experiments/get-by-name", "GET", {"experiment_name": name})
            except Exception as exc:  # noqa: BLE001 - missing is the one case we handle
                if getattr(exc, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
                    raise
                return self._call("experiments/create", "POST", {"name": name})["experiment_id"]
            experiment_id = found["experiment"]["experiment_id"]
            if found["experiment"].get("lifecycle_stage") == "deleted":
                _warn_restored(name)
                self._call("experiments/restore", "POST", {"experiment_id": experiment_id})
            return experiment_id
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            return self.client.create_experiment(name)
        if experiment.lifecycle_stage == "deleted":
            # A deleted experiment refuses new runs: without this the writer would retry forever.
            _warn_restored(name)
            self.client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    @quiet_store_errors
    def create_run(self, experiment: str | None, run_name: str | None, tags: dict) -> str:
        from mlflow.tracking.context.registry import resolve_tags

        experiment_id = self.experiment_id(experiment)
        all_tags = resolve_tags(dict(tags))
        if run_name:
            all_tags["mlflow.runName"] = run_name
        if not self._rest:
            run = self.client.create_run(experiment_id, tags=all_tags, run_name=run_name)
            return run.info.run_id
        body = {
            "experiment_id": experiment_id,
            "start_time": int(time.time() * 1000),
            "tags": [{"key": k, "value": str(v)} for k, v in all_tags.items()],
        }
        if run_name:
            body["run_name"] = run_name
        return self._call("runs/create", "POST", body)["run"]["info"]["run_id"]

    @quiet_store_errors
    def end_run(self, run_id: str, status: str) -> None:
        if not self._rest:
            self.client.set_terminated(run_id, status=status)
            return
        body = {"run_id": run_id, "status": status, "end_time": int(time.time() * 1000)}
        self._call("runs/update", "POST", body)

    @quiet_store_errors
    def latest_landed(self, run_id: str) -> dict[str, tuple[int, int]]:
        """Per metric key, the ``(step, timestamp)`` of the latest value the store holds."""
        if not self._rest:
            metrics = self.client.get_run(run_id).data._metric_objs
            return {m.key: (int(m.step), int(m.timestamp)) for m in metrics}
        run = self._call("runs/get", "GET", {"run_id": run_id})["run"]
        return {
            m["key"]: (int(m.get("step", 0)), int(m.get("timestamp", 0)))
            for m in run.get("data", {}).get("metrics", [])
        }

    # -- writes ----------------------------------------------------------------------------
    @quiet_store_errors
    def log_metrics(self, run_id: str, rows: Sequence[MetricRow]) -> int:
        """Send rows in requests of at most 1000 metrics, in order; return how many were sent.

        A request whose names MLflow's ``log_batch`` has all accepted before goes in with plain
        SQL where the store allows it (:meth:`_write_direct`).

        A request the store refuses as invalid is sent again one metric name at a time: one
        name the store does not accept (logged with ``w.log``) must not take the loss and LR
        rows of the same request with it. A refused name is warned about once, recorded in
        :attr:`refused_keys` and left out from then on.
        """
        if self.refused_keys:
            rows = [row for row in rows if row[0] not in self.refused_keys]
        sent = 0
        for chunk in split(rows, MAX_METRICS_PER_REQUEST):
            if self._direct_writer() is not None:
                chunk = self._accept_names(run_id, chunk)
                if not chunk:
                    continue
            if self._write_direct(run_id, chunk):
                sent += len(chunk)
                continue
            try:
                self._log_batch(run_id, metrics=chunk)
                sent += len(chunk)
                self._accepted_keys.update(row[0] for row in chunk)
            except Exception as exc:
                if getattr(exc, "error_code", None) != "INVALID_PARAMETER_VALUE":
                    raise
                sent += self._log_key_by_key(run_id, chunk)
        return sent

    def _accept_names(self, run_id: str, rows: Sequence[MetricRow]) -> Sequence[MetricRow]:
        """Have MLflow's ``log_batch`` validate each name of ``rows`` it has not accepted yet,
        with that name's first row alone; ``rows`` less the names it refused.

        The rest then go in with plain SQL, the first rows again among them (a row identical to
        a stored one is skipped). The whole first request went through ``log_batch`` before:
        1,000 metrics through MLflow's ORM at the start of every run, ~65 ms of GIL-holding
        Python, as much as the writer spends on ~4,000 steps afterwards.
        """
        first: dict[str, MetricRow] = {}
        for row in rows:
            if row[0] not in self._accepted_keys:
                first.setdefault(row[0], row)
        if not first:
            return rows
        try:
            self._log_batch(run_id, metrics=list(first.values()))
        except Exception as exc:
            if getattr(exc, "error_code", None) != "INVALID_PARAMETER_VALUE":
                raise
            self._log_key_by_key(run_id, list(first.values()))
        self._accepted_keys.update(key for key in first if key not in self.refused_keys)
        return [row for row in rows if row[0] not in self.refused_keys]

    def _write_direct(self, run_id: str, rows: Sequence[MetricRow]) -> bool:
        """Write ``rows`` with plain SQL when the store allows it; False: use log_batch."""
        writer = self._direct_writer()
        if writer is None or any(row[0] not in self._accepted_keys for row in rows):
            return False
        import sqlalchemy

        try:
            writer.write(run_id, rows)
        except (RunNotActive, RunNotFound, sqlalchemy.exc.OperationalError):
            raise  # a deleted or removed run, the database down: handled like log_batch's errors
        except Exception as exc:  # noqa: BLE001 - anything else: MLflow's own path from now on
            logging.getLogger("lrwatch").debug("lrwatch: direct SQL writes off (%r)", exc)
            self._sql_writer = None
            return False
        self.direct_sql_rows += len(rows)
        return True

    def _direct_writer(self) -> SqlMetricWriter | None:
        if not self._sql_writer_checked:
            self._sql_writer_checked = True
            if not self._rest and os.environ.get(ENV_DIRECT_SQL, "1") != "0":
                from lrwatch.tracking.sql_metrics import SqlMetricWriter

                self._sql_writer = SqlMetricWriter.for_store(self.client._tracking_client.store)
        return self._sql_writer

    @quiet_store_errors
    def run_is_active(self, run_id: str) -> bool:
        """False once the run was deleted (its lifecycle stage is no longer "active")."""
        if self._rest:
            info = self._call("runs/get", "GET", {"run_id": run_id})["run"]["info"]
            return info.get("lifecycle_stage", "active") == "active"
        return self.client.get_run(run_id).info.lifecycle_stage == "active"

    def _log_key_by_key(self, run_id: str, rows: Sequence[MetricRow]) -> int:
        by_key: dict[str, list[MetricRow]] = {}
        for row in rows:
            by_key.setdefault(row[0], []).append(row)
        batches = {key: {"metrics": key_rows} for key, key_rows in by_key.items()}
        refused = self._send_each(run_id, batches, "metric name", "its values are")
        self.refused_keys.update(refused)
        return sum(len(key_rows) for key, key_rows in by_key.items() if key not in refused)

    def _send_each(
        self, run_id: str, batches: dict[str, dict], what: str, lost: str
    ) -> dict[str, str]:
        """Send each named batch on its own; names the store refuses as invalid are warned about
        (``what`` and ``lost`` word it: "the metric name 'x' ...; its values are not sent, the
        other metrics are") and returned with the store's reason."""
        refused = {}
        for name, items in batches.items():
            try:
                self._log_batch(run_id, **items)
            except Exception as exc:
                if getattr(exc, "error_code", None) != "INVALID_PARAMETER_VALUE":
                    raise
                refused[name] = str(getattr(exc, "message", exc))
                shown = name if len(name) <= 80 else name[:77] + "..."
                logging.getLogger("lrwatch").warning(
                    "lrwatch: the tracking store refused the %s %r (%s); %s not sent, the "
                    "other %ss are",
                    what,
                    shown,
                    refused[name],
                    lost,
                    what.split()[0],
                )
        return refused

    @quiet_store_errors
    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        """Params in requests of at most 100; one the store refuses (a name it does not allow,
        a value that differs from the one a resumed run already holds) costs only itself."""
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_VALUE]) for k, v in params.items()]
        for chunk in split(items, MAX_PARAMS_PER_REQUEST):
            try:
                self._log_batch(run_id, params=chunk)
            except Exception as exc:
                if getattr(exc, "error_code", None) != "INVALID_PARAMETER_VALUE":
                    raise
                batches = {param.key: {"params": [param]} for param in chunk}
                self._send_each(run_id, batches, "param", "its value is")

    @quiet_store_errors
    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._log_batch(run_id, tags=[RunTag(k, str(v)[:MAX_TAG_VALUE]) for k, v in tags.items()])

    def _log_batch(self, run_id: str, **items) -> None:
        try:
            self._send_batch(run_id, **items)
        except Exception as exc:
            # A refusal of the request's content may be the run's removal in disguise: MLflow's
            # SQL stores call a write to a deleted run an invalid parameter, and a run removed
            # for good (`mlflow gc`) between the store's check and its insert fails the
            # insert's foreign key, a bad request. Asking for the run tells them apart (it
            # raises RESOURCE_DOES_NOT_EXIST for a removed one); refusals are rare, so the
            # request is too.
            if getattr(exc, "error_code", None) in _CONTENT_ERRORS and not self.run_is_active(
                run_id
            ):
                raise RunNotActive(run_id) from exc
            raise

    def _send_batch(self, run_id: str, *, metrics=(), params=(), tags=()) -> None:
        """``metrics`` are rows ``(key, value, timestamp_ms, step)``; params and tags MLflow's
        ``Param`` / ``RunTag``."""
        if not self._rest:
            self.client.log_batch(
                run_id, metrics=_metrics(metrics), params=params, tags=tags, synchronous=True
            )
            self.log_batch_rows += len(metrics)
            return
        body: dict = {"run_id": run_id}
        if params or tags:
            from mlflow.protos.service_pb2 import LogBatch
            from mlflow.utils.proto_json_utils import message_to_json

            request = LogBatch(
                run_id=run_id,
                params=[p.to_proto() for p in params],
                tags=[t.to_proto() for t in tags],
            )
            body = json.loads(message_to_json(request))
        if metrics:
            body["metrics"] = [_metric_json(row) for row in metrics]
        self._call("runs/log-batch", "POST", body)


def _metrics(rows: Sequence[MetricRow]) -> list:
    from mlflow.entities import Metric

    return [Metric(k, float(v), int(ts), int(s)) for k, v, ts, s in rows]


# How protobuf's JSON mapping writes a double that JSON has no number for: the server parses
# these strings back (what MLflow's own client sends for a NaN or infinite metric).
_NON_FINITE_JSON = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _metric_json(row: MetricRow) -> dict:
    """One metric of a ``runs/log-batch`` request body, written directly: through MLflow's
    ``Metric`` and protobuf's JSON encoder (indented, so pure Python) a request cost ~16 us of
    GIL-holding Python per metric, this way ~4 us (``benchmarks/logger_overhead.py --writer``)."""
    key, value, timestamp, step = row
    value = float(value)
    encoded = value if math.isfinite(value) else _NON_FINITE_JSON[repr(value)]
    return {"key": key, "value": encoded, "timestamp": int(timestamp), "step": int(step)}


def _warn_restored(name: str) -> None:
    import logging

    logging.getLogger("lrwatch").warning(
        "lrwatch: experiment %r was deleted; restoring it so this run's data has a home", name
    )
