"""Metric points read straight from a tracking server's REST API (``http://``, ``https://``).

``MlflowClient.get_metric_history`` parses every point of the server's JSON into a protobuf
message and then a ``Metric`` object. Read as plain JSON into numpy, the loss and LR of a
100k-step run take 10.5-11.2 s instead of 14.0-15.5 s through a local ``mlflow server`` (the
rest is the server's own time; ``benchmarks/server_reads.py``).

More important is a running run that the dashboard follows. The client can only read a metric
whole, so every 2 s refresh read the whole run again: 14-15 s for 100k steps, the server busy
all the while. MLflow's sampled-history endpoint (``get-history-bulk-interval``, which MLflow's
UI draws its charts from) returns every point of a step range that holds fewer than 2,500;
:func:`points_after` reads the new points that way: 61-89 ms for 100 new points of both metrics.

Requests go through MLflow's own ``http_request``, so the login, TLS and retry settings (the
``MLFLOW_TRACKING_*`` and ``MLFLOW_HTTP_REQUEST_*`` variables) are the client's, and its errors
are the client's too.
"""

from __future__ import annotations

import json
import re

import numpy as np

from lrwatch.store import SERVER_READ_THREADS

# (steps, values, millisecond timestamps) of one metric, in the order the server returned them.
Points = tuple[np.ndarray, np.ndarray, np.ndarray]

# Points per page of a whole read: what MLflow's client asks for (a 1M-point metric in one reply
# would be ~130 MB of JSON and outlast a 10 s request timeout).
_PAGE = 25_000
# The most points the sampled-history endpoint returns per request (MLflow's
# MAX_RESULTS_PER_RUN). A reply this long may be a sample of its range; a shorter one is all of it.
_SAMPLED_MAX = 2_500
# The largest step a range can end at (MLflow stores steps as 64-bit integers).
_LAST_STEP = 2**63 - 1
# New points are read in ranges of steps: the first up to the newest point, halved while a reply
# comes back full (a sample), doubled while one comes back under half full. More requests than
# the cap: the metric is read whole.
_MAX_RANGE_REQUESTS = 64


def is_rest_store(tracking_uri: str) -> bool:
    """True for a tracking server's URI (``http://``, ``https://``)."""
    return tracking_uri.split(":", 1)[0].lower() in ("http", "https")


def reads_at_a_time(tracking_uri: str) -> int:
    """How many runs to read at once from this store: a tracking server's reads are its own
    work (:data:`~lrwatch.store.SERVER_READ_THREADS`), any other store's are local (1)."""
    return SERVER_READ_THREADS if is_rest_store(tracking_uri) else 1


def all_points(tracking_uri: str, run_id: str, key: str) -> Points:
    """Every point of metric ``key`` of run ``run_id``, in the server's order (by timestamp)."""
    rows: list[dict] = []
    token = None
    while True:
        reply = _history_page(tracking_uri, run_id, key, _PAGE, token)
        rows.extend(reply.get("metrics", ()))
        token = reply.get("next_page_token")
        if not token:
            return _to_points(rows)


def points_after(tracking_uri: str, run_id: str, key: str, after_step: int) -> tuple[Points, bool]:
    """The points of metric ``key`` with a step above ``after_step``, and False; or, when they
    cannot be read apart, every point (as :func:`all_points`) and True.

    Read whole: every metric on a server older than MLflow 3.11 (:func:`_reads_step_ranges`) or
    without the endpoint; a metric whose first step was logged more than once (logged with no
    step, all at one step and numbered by logging order; or a step counted per epoch, which
    starts again at it and is numbered across epochs); one whose new points need more than
    ``_MAX_RANGE_REQUESTS`` requests.
    """
    from mlflow.exceptions import MlflowException

    if not _reads_step_ranges(tracking_uri):
        return all_points(tracking_uri, run_id, key), True
    first_page = _history_page(tracking_uri, run_id, key, 1, None)
    rows = first_page.get("metrics", [])
    if not first_page.get("next_page_token"):
        return _to_points(rows), True  # no point or one: all of them
    try:
        first = int(rows[0].get("step", 0))  # of the first point logged
        if len(_sampled(tracking_uri, run_id, key, 2, first, first)) > 1:
            return all_points(tracking_uri, run_id, key), True
        new = _range_points(tracking_uri, run_id, key, after_step + 1)
    except MlflowException as exc:
        # An HTTP 404 (a proxy or another server without the endpoint), or bounds it refuses.
        if exc.error_code not in ("ENDPOINT_NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            raise
        new = None
    if new is None:
        return all_points(tracking_uri, run_id, key), True
    return new, False


# MLflow servers from 3.11 on find a range's steps in SQL; before, each request of the sampled
# endpoint loaded the metric's every point into Python (2.4 s per request at 100k points with
# MLflow 3.9 here, two requests a metric: no faster than reading it whole).
_FIRST_VERSION_READING_RANGES = (3, 11)
_server_versions: dict[str, tuple[int, ...] | None] = {}


def _reads_step_ranges(tracking_uri: str) -> bool:
    """Whether the server is an MLflow whose sampled endpoint reads a step range cheaply."""
    if tracking_uri not in _server_versions:
        try:
            _server_versions[tracking_uri] = _server_version(tracking_uri)
        except Exception:  # noqa: BLE001 - not kept: asked again at the next read, and the
            return False  # whole read that follows reports what went wrong
    version = _server_versions[tracking_uri]
    return version is not None and version >= _FIRST_VERSION_READING_RANGES


def _server_version(tracking_uri: str) -> tuple[int, ...] | None:
    """The server's MLflow version from its ``/version`` page; None when it has none (not an
    MLflow server, or a proxy passing only the API)."""
    from mlflow.utils.rest_utils import http_request

    response = http_request(host_creds(tracking_uri), "/version", "GET")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    match = re.match(r"(\d+)\.(\d+)", response.text.strip())
    return tuple(int(part) for part in match.groups()) if match else None


def _range_points(tracking_uri: str, run_id: str, key: str, start: int) -> Points | None:
    """Every point from step ``start`` up to the newest, in as many range requests as it takes
    (None: more than the cap).

    The newest point's step is asked for first, and every range ends at or before it. The
    endpoint counts a range's points in one query and adds its newest point in another, so an
    open range read while the logger was writing came back with a step it had just logged and
    without the ones logged just before it (3601-4099 of a loss, for good: later reads start
    after the newest point held). The logger sends steps in order, so every point of a range
    that ends at a step already seen has landed.
    """
    ends = _sampled(tracking_uri, run_id, key, 2, start, _LAST_STEP)
    if not ends:
        return _to_points([])
    last = int(ends[-1].get("step", 0))
    rows: list[dict] = []
    width = last - start + 1
    for _ in range(_MAX_RANGE_REQUESTS):
        if start > last:
            return _to_points(rows)
        end = min(last, start + width - 1)
        found = _sampled(tracking_uri, run_id, key, _SAMPLED_MAX, start, end)
        if len(found) >= _SAMPLED_MAX:  # a sample of the range: ask for less of it
            if end == start:
                return None  # one step logged 2,500 times or more
            width = (end - start + 1) // 2
            continue
        rows.extend(found)
        start = end + 1
        if len(found) < _SAMPLED_MAX // 2:
            width *= 2
    return None


def _sampled(
    tracking_uri: str, run_id: str, key: str, max_results: int, start: int, end: int
) -> list[dict]:
    """Points of steps ``start``..``end`` from the sampled-history endpoint, ordered by step:
    all of them when there are fewer than ``max_results``, else that many spread evenly."""
    params = {"run_ids": run_id, "metric_key": key, "max_results": max_results}
    params.update(start_step=start, end_step=end)
    return _get(tracking_uri, "metrics/get-history-bulk-interval", params).get("metrics", [])


def _history_page(
    tracking_uri: str, run_id: str, key: str, max_results: int, token: str | None
) -> dict:
    params = {"run_id": run_id, "run_uuid": run_id, "metric_key": key, "max_results": max_results}
    if token:
        params["page_token"] = token
    return _get(tracking_uri, "metrics/get-history", params)


def _get(tracking_uri: str, endpoint: str, params: dict) -> dict:
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    response = http_request(
        host_creds(tracking_uri), f"/api/2.0/mlflow/{endpoint}", "GET", params=params
    )
    return json.loads(verify_rest_response(response, endpoint).text or "{}")


def host_creds(tracking_uri: str):
    """The server's address, login and TLS settings, as MLflow's client reads them."""
    from lrwatch.sources.mlflow_store import mlflow_client

    return mlflow_client(tracking_uri)._tracking_client.store.get_host_creds()


def _to_points(rows: list[dict]) -> Points:
    # Proto3 JSON leaves out a zero step and may write 64-bit integers as strings; a value is
    # a number, or "NaN" / "Infinity" / "-Infinity", which float() reads.
    count = len(rows)
    steps = np.fromiter((int(row.get("step", 0)) for row in rows), np.int64, count)
    values = np.fromiter((float(row.get("value", 0.0)) for row in rows), np.float64, count)
    stamps = np.fromiter((int(row.get("timestamp", 0)) for row in rows), np.int64, count)
    return steps, values, stamps
