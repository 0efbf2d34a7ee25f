"""The Lightning callback in a real (tiny) Lightning fit, with gradient accumulation."""

from __future__ import annotations

import lightning  # noqa: E402 - the dev extra installs it
import mlflow
import pytest
import torch

from lrwatch import keys
from lrwatch.tracking.lightning import LrwatchCallback  # noqa: E402
from tests.tracking.conftest import history


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


def test_callback_logs_each_optimizer_step_with_its_lr(tracking_uri):
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    trainer = lightning.Trainer(
        max_steps=20,
        accumulate_grad_batches=2,
        callbacks=[LrwatchCallback(experiment="pl", flush_interval=0.1)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(TinyRegression(), loader)
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
