"""The bundled sample runs: real training runs with a known diagnosis, for the demo, tests and docs.

The runs live in ``sample_runs/`` at the root of a checkout of the lrwatch repository, next to
the ``lrwatch`` package (``pip install -e .`` keeps them there), with ``manifest.json`` saying
what each run shows and the diagnosis it should get. ``sample_runs/make_samples.py`` made them.
``LRWATCH_SAMPLE_RUNS`` may point at another copy of the folder. A non-editable install of the
package does not carry the folder; the functions here then raise :class:`InputError` saying so.

Example::

    from lrwatch.samples import load_samples, import_samples
    runs = load_samples()                          # list[Run], read from the files
    ids = import_samples("sqlite:///mlflow.db")    # the same runs in MLflow, once (idempotent)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from lrwatch import keys
from lrwatch.errors import InputError
from lrwatch.run import Run
from lrwatch.store import display_uri
from lrwatch.tracking.sink import MAX_METRICS_PER_REQUEST, MAX_PARAMS_PER_REQUEST

ENV_SAMPLE_RUNS = "LRWATCH_SAMPLE_RUNS"
EXPERIMENT = "lrwatch-samples"
# Tag holding the name of the sweep a sample run belongs to (the dashboard can group by it).
TAG_SWEEP = "lrwatch.sample_sweep"
# MLflow shows this tag as the run's description.
_TAG_DESCRIPTION = "mlflow.note.content"


def samples_dir() -> Path:
    """The folder holding ``manifest.json`` and the run files.

    Raises:
        InputError: no such folder (a non-editable install, or a bad ``LRWATCH_SAMPLE_RUNS``).
    """
    configured = os.environ.get(ENV_SAMPLE_RUNS)
    folder = Path(configured) if configured else Path(__file__).resolve().parents[1] / "sample_runs"
    if not (folder / "manifest.json").is_file():
        if configured:
            raise InputError(f"{ENV_SAMPLE_RUNS}={configured}: no manifest.json there")
        raise InputError(
            "the sample runs ship with a checkout of the lrwatch repository, not with this "
            f"install (looked in {folder}); clone it and run `pip install -e .` there, or set "
            f"{ENV_SAMPLE_RUNS} to its sample_runs folder"
        )
    return folder


def load_manifest(folder: Path | None = None) -> dict[str, Any]:
    """The manifest: ``runs`` (one entry per run: file, name, task, optimizer, lr, ...,
    ``expected_findings``, ``sweep``), ``sweeps`` and how the runs were recorded."""
    return _read_manifest(str(folder or samples_dir()))


@lru_cache(maxsize=4)
def _read_manifest(folder: str) -> dict[str, Any]:
    path = Path(folder) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable manifest ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("runs"), list):
        raise InputError(f"{path}: no 'runs' list")
    return manifest


def sample_names() -> list[str]:
    return [entry["name"] for entry in load_manifest()["runs"]]


def load_sample(name: str) -> Run:
    """One sample run, read from its file, with the manifest's params and tags."""
    entries = {entry["name"]: entry for entry in load_manifest()["runs"]}
    if name not in entries:
        raise InputError(f"no sample run {name!r}; there are: {', '.join(entries)}")
    return _load_entry(samples_dir(), entries[name])


def load_samples(names: list[str] | None = None) -> list[Run]:
    """Every sample run (or those named), in manifest order."""
    folder = samples_dir()
    entries = load_manifest(folder)["runs"]
    if names is not None:
        unknown = set(names) - {entry["name"] for entry in entries}
        if unknown:
            raise InputError(f"no sample run {sorted(unknown)[0]!r}")
        entries = [entry for entry in entries if entry["name"] in names]
    return [_load_entry(folder, entry) for entry in entries]


def _load_entry(folder: Path, entry: dict[str, Any]) -> Run:
    from lrwatch.sources.files import load_file

    path = folder / entry["file"]
    if not path.is_file():
        raise InputError(f"sample run {entry['name']!r}: {path} is missing")
    loaded = load_file(path)
    return Run(
        id=str(path),
        name=entry["name"],
        source=str(path),
        params=dict(entry.get("params", {})),
        tags=_tags(entry),
        metrics=loaded.metrics,
        status="finished",
    )


def _tags(entry: dict[str, Any]) -> dict[str, str]:
    tags = {str(k): str(v) for k, v in entry.get("tags", {}).items()}
    tags[keys.TAG_SAMPLE] = entry["name"]
    if entry.get("sweep"):
        tags[TAG_SWEEP] = entry["sweep"]
    if entry.get("shows"):
        tags[_TAG_DESCRIPTION] = entry["shows"]
    return tags


# --- into MLflow ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleImport:
    """What :func:`sync_samples` did: every sample's run id, and how many it had to create."""

    run_ids: list[str]
    created: int
    experiment: str


def import_samples(tracking_uri: str | None = None, *, experiment: str = EXPERIMENT) -> list[str]:
    """Load the sample runs into an MLflow store once; return their run ids (manifest order).

    Idempotent: each run is tagged ``lrwatch.sample=<name>``; a finished run with that tag in
    ``experiment`` is reused, a half-written one (an import that was interrupted) is deleted and
    written again, a missing one is created. Running it twice never duplicates a run.

    Raises:
        InputError: the sample files are missing or the store cannot be used.
    """
    return sync_samples(tracking_uri, experiment=experiment).run_ids


def sync_samples(tracking_uri: str | None = None, *, experiment: str = EXPERIMENT) -> SampleImport:
    """:func:`import_samples`, also saying how many runs were created."""
    from lrwatch.store import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    runs = load_samples()
    try:
        client = _client(uri)
        experiment_id = _experiment_id(client, experiment)
        existing = _existing_sample_runs(client, experiment_id)
        run_ids, created = [], 0
        now_ms = int(time.time() * 1000)
        for index, run in enumerate(runs):
            found = existing.get(run.name)
            if found is None:
                # Start times a second apart, newest first in manifest order: a run list sorted
                # newest-first (MLflow's UI, the dashboard) then shows the runs as the manifest does.
                found = _create_run(client, experiment_id, run, now_ms - 1000 * index)
                created += 1
            run_ids.append(found)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types; the CLI wants one line
        raise InputError(
            f"cannot load the sample runs into {display_uri(uri)}: {_one_line(exc)}"
        ) from None
    return SampleImport(run_ids=run_ids, created=created, experiment=experiment)


def _client(uri: str):
    from lrwatch.sources.mlflow_store import mlflow_client

    return mlflow_client(uri)


def _experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name)
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return found.experiment_id


def _existing_sample_runs(client, experiment_id: str) -> dict[str, str]:
    """Sample name -> id of a finished run already holding it; unfinished ones are deleted."""
    from mlflow.entities import ViewType

    found: dict[str, str] = {}
    page_token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{keys.TAG_SAMPLE}` != ''",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            order_by=["attributes.start_time ASC"],
            page_token=page_token,
        )
        for run in page:
            name = run.data.tags.get(keys.TAG_SAMPLE)
            if run.info.status != "FINISHED":
                client.delete_run(run.info.run_id)  # an interrupted import: write it again
            elif name and name not in found:
                found[name] = run.info.run_id
        page_token = page.token
        if not page_token:
            return found


def _create_run(client, experiment_id: str, run: Run, start_ms: int) -> str:
    from mlflow.entities import Metric, Param

    created = client.create_run(
        experiment_id, start_time=start_ms, run_name=run.name, tags=run.tags
    )
    run_id = created.info.run_id
    params = [Param(k, v) for k, v in run.params.items()]
    for first in range(0, len(params), MAX_PARAMS_PER_REQUEST):
        client.log_batch(run_id, params=params[first : first + MAX_PARAMS_PER_REQUEST])
    metrics = [
        Metric(key, float(value), start_ms, int(step))
        for key, series in run.metrics.items()
        for step, value in zip(series.steps.tolist(), series.values.tolist())
    ]
    for first in range(0, len(metrics), MAX_METRICS_PER_REQUEST):
        chunk = metrics[first : first + MAX_METRICS_PER_REQUEST]
        client.log_batch(run_id, metrics=chunk, synchronous=True)
    # FINISHED last: a run without it is a half-written import, replaced on the next call.
    client.set_terminated(run_id, status="FINISHED", end_time=start_ms)
    return run_id


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
