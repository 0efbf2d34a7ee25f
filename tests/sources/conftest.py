"""Fixtures for the loader and `lrwatch analyze` tests: real runs logged into a real store."""

from __future__ import annotations

import numpy as np
import pytest

from lrwatch.run import Run


def log_run_to_mlflow(
    tracking_uri: str,
    run: Run,
    *,
    experiment: str = "lrwatch-sources",
    key_map: dict[str, str] | None = None,
    status: str = "FINISHED",
    timestamps_ms: np.ndarray | None = None,
) -> str:
    """Log every series of ``run`` with ``MlflowClient.log_batch`` (as a writer would); run id.

    ``key_map`` renames metrics (e.g. to Lightning's names); ``timestamps_ms`` (per point, in the
    order of each series) lets a test log repeated steps at distinct times.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    created = client.create_run(experiment_id, run_name=run.name or None)
    run_id = created.info.run_id
    metrics = []
    for key, series in run.metrics.items():
        stamps = timestamps_ms if timestamps_ms is not None else 1_000 + series.steps
        name = (key_map or {}).get(key, key)
        metrics += [
            Metric(name, float(v), int(t), int(s))
            for s, v, t in zip(series.steps, series.values, stamps)
        ]
    params = [Param(k, str(v)) for k, v in run.params.items()]
    for start in range(0, max(len(metrics), 1), 1000):  # MLflow's per-request limit
        client.log_batch(
            run_id, metrics=metrics[start : start + 1000], params=params if start == 0 else []
        )
    client.set_terminated(run_id, status=status)
    return run_id


def log_unstepped(tracking_uri, run_id, loss, lr_per_epoch, *, first=0, epoch=100):
    """Loss points 10 ms apart from point ``first`` on, an LR 1 ms before each epoch's first."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    metrics = []
    for i, value in enumerate(loss, start=first):
        if i % epoch == 0:
            metrics.append(Metric("lr", lr_per_epoch[i // epoch], 10_000 + 10 * i - 1, 0))
        metrics.append(Metric("loss", float(value), 10_000 + 10 * i, 0))
    MlflowClient(tracking_uri).log_batch(run_id, metrics=metrics)


@pytest.fixture(scope="session")
def diverging_run() -> Run:
    """A REAL diverging run: SGD on the regression MLP at 0.2 (4x its best rate): it trains ~40 steps, then NaN."""
    from lrwatch.tasks import TrainConfig, train

    return train(TrainConfig(task="mlp_regression", lr=0.2, steps=400, seed=0))


@pytest.fixture(scope="session")
def healthy_run() -> Run:
    """A REAL run at a sensible rate (loss falls and settles)."""
    from lrwatch.tasks import TrainConfig, train

    return train(TrainConfig(task="mlp_regression", lr=0.05, steps=300, seed=0))


def train_logging_each_batch(log, epochs: int = 4, batches: int = 25, seed: int = 1) -> list[float]:
    """Real training (a linear model, SGD) that calls ``log(batch, loss, lr)`` after each
    optimizer step, ``batch`` counting from 0 again every epoch. The losses, in order."""
    import torch

    torch.manual_seed(1)  # the task: the same data in every run of the script
    x = torch.randn(batches * 8, 6)
    y = x @ torch.randn(6, 1) + 0.1 * torch.randn(batches * 8, 1)
    torch.manual_seed(seed)  # the model's initial weights
    model = torch.nn.Linear(6, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    logged = []
    for _ in range(epochs):
        for batch in range(batches):
            loss = torch.nn.functional.mse_loss(model(x[batch::batches]), y[batch::batches])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            log(batch, loss.item(), optimizer.param_groups[0]["lr"])
            logged.append(loss.item())
    return logged
