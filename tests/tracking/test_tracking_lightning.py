"""The Lightning callback in a real (tiny) Lightning fit, with gradient accumulation."""

from __future__ import annotations

import lightning  # noqa: E402 - the dev extra installs it
import mlflow
import pytest
import torch

from lrwatch import keys
from lrwatch.tracking.lightning import LrwatchCallback  # noqa: E402
from tests.tracking.conftest import history, steps_of


class TinyRegression(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.5)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def _loader():
    x = torch.randn(256, 4)
    data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    return torch.utils.data.DataLoader(data, batch_size=8)


def _trainer(max_steps: int, experiment: str, **kwargs) -> lightning.Trainer:
    return lightning.Trainer(
        max_steps=max_steps,
        callbacks=[LrwatchCallback(experiment=experiment, flush_interval=0.1)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **kwargs,
    )


def test_callback_logs_each_optimizer_step_with_its_lr(tracking_uri):
    torch.manual_seed(0)
    trainer = _trainer(20, "pl", accumulate_grad_batches=2)
    trainer.fit(TinyRegression(), _loader())
    client = mlflow.MlflowClient(tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("pl").experiment_id])[0]
    assert run.info.status == "FINISHED"
    assert [s for s, _ in history(tracking_uri, run.info.run_id, keys.LOSS)] == list(range(20))
    lrs = [v for _, v in history(tracking_uri, run.info.run_id, keys.LR)]
    assert lrs == pytest.approx(
        [0.1 * 0.5 ** (k // 5) for k in range(20)]
    )  # the rate each step used
    assert run.data.params["scheduler"] == "StepLR"
    assert run.data.params["optimizer.momentum"] == "0.5"


def test_a_fit_resumed_from_a_checkpoint_numbers_steps_from_it(tracking_uri, tmp_path):
    torch.manual_seed(0)
    first = _trainer(12, "pl-resume")
    first.fit(TinyRegression(), _loader())
    first.save_checkpoint(tmp_path / "step12.ckpt")
    _trainer(20, "pl-resume").fit(TinyRegression(), _loader(), ckpt_path=tmp_path / "step12.ckpt")
    client = mlflow.MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name("pl-resume").experiment_id
    runs = client.search_runs([experiment_id], order_by=["attributes.start_time ASC"])
    assert [steps_of(tracking_uri, r.info.run_id, keys.LOSS) for r in runs] == [
        list(range(12)),
        list(range(12, 20)),  # the steps Lightning itself counts, not 0-7 again
    ]
