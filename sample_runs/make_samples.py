"""Make the bundled sample runs: real PyTorch training on the CPU, recorded with ``lrwatch.watch``.

Every run trains one of the tiny seeded tasks of :mod:`lrwatch.tasks` (fixed seeds, data the
task makes itself, one CPU thread), is logged by lrwatch's own logger into a temporary MLflow
store - the project's first real user is itself - and is then read back from MLflow and written
to ``sample_runs/<name>.parquet`` in the saved-run format (a ``step`` column plus one column per
metric: ``train/loss``, ``lr``; NaN and inf kept). ``manifest.json`` says what each run is meant
to show and the diagnosis it should get; ``lrwatch demo`` and the tests read both.

Usage (from the repository root; about a minute on one core)::

    python sample_runs/make_samples.py            # record with lrwatch.watch (the default)
    python sample_runs/make_samples.py --direct   # fallback: the Run lrwatch.tasks.train returns

Each logged run is checked against the losses the training loop itself saw, so a logger that
drops, reorders or alters a point fails here instead of shipping a wrong sample.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from sample_specs import (  # noqa: E402 - beside this script
    EXPERIMENT,
    FORMAT_VERSION,
    GOOD_MARGIN,
    RANGE_TEST_ARGS,
    RANGE_TEST_CONFIG,
    RANGE_TEST_NAME,
    SAMPLES,
    Sample,
)

from lrwatch import keys, tasks  # noqa: E402
from lrwatch.run import Run, Series  # noqa: E402
from lrwatch.tasks import TrainConfig  # noqa: E402

# --- training, with the logger watching -----------------------------------------------------


def train_watched(config: TrainConfig, name: str, tracking_uri: str) -> tuple[str, Series]:
    """Train ``config`` as :func:`lrwatch.tasks.train` does, logged by ``lrwatch.watch``.

    Returns the MLflow run id and the losses the loop saw (to check the logged copy against).
    """
    import torch

    import lrwatch

    torch.manual_seed(config.seed)
    task = tasks.make_task(
        config.task, task_seed=config.task_seed, batch_size=config.batch_size, width=config.width
    )
    model = task.make_model()
    optimizer = tasks.make_optimizer(model.parameters(), config)
    scheduler = tasks.make_scheduler(optimizer, config)
    batches = task.batches(torch.Generator().manual_seed(config.seed))
    params = {k: v for k, v in asdict(config).items() if k != "optimizer"}  # logger names it
    params["task.optimizer"] = config.optimizer
    seen, nonfinite_since = [], None
    watcher = lrwatch.watch(
        optimizer,
        experiment=EXPERIMENT,
        run_name=name,
        params=params,
        tracking_uri=tracking_uri,
        scheduler=scheduler,
        on_divergence="warn",
    )
    with watcher as w:
        for step in range(config.steps):
            inputs, targets = next(batches)
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            w.step(loss.detach())
            seen.append(float(loss.detach()))
            if not math.isfinite(seen[-1]):  # as tasks.train: a few more steps, then stop
                nonfinite_since = step if nonfinite_since is None else nonfinite_since
                if step - nonfinite_since >= config.steps_after_nonfinite:
                    break
    if w.run_id is None:
        raise RuntimeError(f"{name}: the logger never reached {tracking_uri}")
    return w.run_id, Series(np.arange(len(seen)), np.array(seen))


def range_test_watched(tracking_uri: str) -> str:
    from lrwatch.lr_finder import find_lr_on_task

    result = find_lr_on_task(
        RANGE_TEST_CONFIG,
        **RANGE_TEST_ARGS,
        log=True,
        tracking_uri=tracking_uri,
        experiment=EXPERIMENT,
    )
    return result.run_id


def export_from_mlflow(tracking_uri: str, run_id: str, name: str) -> Run:
    """Read a logged run back from MLflow: what the files will hold."""
    from lrwatch.sources.mlflow_store import read_run

    run = read_run(tracking_uri, run_id)
    run.name = name
    return run


def check_logged(run: Run, seen: Series) -> None:
    """The logged loss must be exactly what the training loop saw, point for point."""
    loss = run.loss
    same = (
        loss is not None
        and np.array_equal(loss.steps, seen.steps)
        and np.array_equal(loss.values, seen.values, equal_nan=True)
    )
    if not same:
        raise RuntimeError(f"{run.name}: the loss read back from MLflow differs from training")


# --- the fallback: no logger, the Run that lrwatch.tasks.train returns ----------------------


def train_direct(config: TrainConfig, name: str) -> Run:
    run = tasks.train(config)
    run.name = name
    return run


def range_test_direct() -> Run:
    from lrwatch.lr_finder import find_lr_on_task

    result = find_lr_on_task(RANGE_TEST_CONFIG, **RANGE_TEST_ARGS, log=False)
    steps = np.arange(len(result.lrs))
    return Run(
        id=RANGE_TEST_NAME,
        name=RANGE_TEST_NAME,
        params={k: str(v) for k, v in result.params.items()},
        tags={keys.TAG_RANGE_TEST: "true"},
        metrics={keys.LOSS: Series(steps, result.losses), keys.LR: Series(steps, result.lrs)},
    )


# --- writing files and the manifest -----------------------------------------------------------


def write_parquet(run: Run, path: Path) -> list[str]:
    """One row per step: ``step`` then loss, LR, any other metric. Returns the column names."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    steps = run.loss.steps
    names = [run.loss_key, run.lr_key] + sorted(set(run.metrics) - {run.loss_key, run.lr_key})
    columns = {"step": pa.array(steps, pa.int64())}
    for key in names:
        series = run.metrics[key]
        if not np.array_equal(series.steps, steps):
            raise RuntimeError(f"{run.name}: {key} was not logged at every loss step")
        columns[key] = pa.array(series.values, pa.float64())  # numpy NaN stays NaN, not null
    pq.write_table(pa.table(columns), path, compression="zstd")
    return list(columns)


# The logger's live diagnosis, as it stood while recording: left out of the samples, whose
# diagnosis is what the current analysis says (and the manifest expects), not a frozen opinion.
LIVE_ANALYSIS_TAGS = (keys.TAG_FINDINGS, keys.TAG_WORST, keys.TAG_SCHEDULE)


def kept_tags(run: Run) -> dict[str, str]:
    """The run's own tags, without MLflow's system tags and the live diagnosis."""
    return {
        k: v
        for k, v in run.tags.items()
        if not k.startswith("mlflow.") and k not in LIVE_ANALYSIS_TAGS
    }


def manifest_entry(sample: Sample, run: Run, file: str, columns: list[str]) -> dict:
    config = sample.config
    tags = kept_tags(run)
    return {
        "name": sample.name,
        "file": file,
        "task": config.task,
        "optimizer": config.optimizer,
        "lr": config.lr,
        "momentum": config.momentum,
        "schedule": config.schedule,
        "warmup_steps": config.warmup_steps,
        "steps": config.steps,
        "seed": config.seed,
        "task_seed": config.task_seed,
        "rows": len(run.loss),
        "columns": columns,
        "shows": sample.shows,
        "expected_findings": (
            None if sample.expected_findings is None else list(sample.expected_findings)
        ),
        "must_not_find": list(sample.must_not_find),
        "expected_schedule": sample.expected_schedule,
        "expected_warmup": sample.expected_warmup,
        "sweep": sample.sweep,
        "range_test": False,
        "params": dict(sorted(run.params.items())),
        "tags": dict(sorted(tags.items())),
    }


def range_test_entry(run: Run, file: str, columns: list[str]) -> dict:
    tags = kept_tags(run)
    config = RANGE_TEST_CONFIG
    return {
        "name": RANGE_TEST_NAME,
        "file": file,
        "task": config.task,
        "optimizer": config.optimizer,
        "lr": None,
        "momentum": config.momentum,
        "schedule": "range_test",
        "warmup_steps": 0,
        "steps": RANGE_TEST_ARGS["num_steps"],
        "seed": config.seed,
        "task_seed": config.task_seed,
        "rows": len(run.loss),
        "columns": columns,
        "shows": (
            "An LR range test (lrwatch.find_lr) on the sweep's autoencoder with Adam: the LR rises "
            f"exponentially from {RANGE_TEST_ARGS['start_lr']:g} to {RANGE_TEST_ARGS['end_lr']:g} "
            "until the loss blows up; the suggested starting rate can be read against the sweep."
        ),
        "expected_findings": None,
        "must_not_find": [],
        "expected_schedule": None,
        "expected_warmup": None,
        "sweep": None,
        "range_test": True,
        "range_test_args": dict(RANGE_TEST_ARGS),
        "params": dict(sorted(run.params.items())),
        "tags": dict(sorted(tags.items())),
    }


def sweep_summary(entries: list[dict], runs: dict[str, Run]) -> dict:
    """Each sweep's members and its best rate by final loss (median of the last 10% of steps)."""
    sweeps: dict[str, dict] = {}
    for entry in entries:
        if entry["sweep"]:
            sweeps.setdefault(entry["sweep"], {"runs": []})["runs"].append(entry["name"])
    lr_of = {entry["name"]: entry["lr"] for entry in entries}
    for sweep in sweeps.values():
        finals = {name: final_loss(runs[name]) for name in sweep["runs"]}
        best = min(finals, key=finals.get)
        # "Good" rates end within 25% of the best final loss (the two best here differ by 0.01%).
        good = sorted(lr_of[n] for n, loss in finals.items() if loss <= GOOD_MARGIN * finals[best])
        lrs = sorted(lr_of[n] for n in sweep["runs"])
        below = [lr for lr in lrs if lr < good[0]]
        above = [lr for lr in lrs if lr > good[-1]]
        sweep["final_loss"] = finals
        sweep["best_run"] = best
        sweep["best_lr"] = lr_of[best]
        sweep["good_lrs"] = good
        # A sound suggestion lies strictly between the nearest clearly worse rates.
        sweep["suggestion_band"] = [below[-1] if below else None, above[0] if above else None]
    return sweeps


def final_loss(run: Run) -> float:
    values = run.loss.values
    tail = values[-max(len(values) // 10, 1) :]
    return float(np.median(tail)) if np.isfinite(tail).all() else math.inf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder for files + manifest")
    parser.add_argument(
        "--direct", action="store_true", help="fallback: skip the logger, use tasks.train's Run"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lrwatch-samples-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        entries, runs = [], {}
        for sample in SAMPLES:
            if args.direct:
                run = train_direct(sample.config, sample.name)
            else:
                run_id, seen = train_watched(sample.config, sample.name, uri)
                run = export_from_mlflow(uri, run_id, sample.name)
                check_logged(run, seen)
            file = f"{sample.name}.parquet"
            columns = write_parquet(run, args.out / file)
            entries.append(manifest_entry(sample, run, file, columns))
            runs[sample.name] = run
            print(
                f"{sample.name:28s} {len(run.loss):5d} rows  {time.perf_counter() - started:5.1f} s"
            )
        if args.direct:
            run = range_test_direct()
        else:
            run = export_from_mlflow(uri, range_test_watched(uri), RANGE_TEST_NAME)
        file = f"{RANGE_TEST_NAME}.parquet"
        entries.append(range_test_entry(run, file, write_parquet(run, args.out / file)))
        print(f"{RANGE_TEST_NAME:28s} {len(run.loss):5d} rows")
    manifest = {
        "format": FORMAT_VERSION,
        "about": (
            "Real PyTorch training runs (CPU, fixed seeds) made by sample_runs/make_samples.py. "
            "Files: one row per logged step, a 'step' column plus one column per metric."
        ),
        "experiment": EXPERIMENT,
        "recorded_with": "lrwatch.tasks.train" if args.direct else "lrwatch.watch",
        "torch_version": torch.__version__.split("+")[0],
        "runs": entries,
        "sweeps": sweep_summary(entries, runs),
    }
    text = json.dumps(manifest, indent=1, allow_nan=False) + "\n"
    (args.out / "manifest.json").write_text(text)
    size = sum(p.stat().st_size for p in args.out.glob("*.parquet"))
    print(
        f"{len(entries)} runs, {size / 1024:.0f} KiB of Parquet, {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
