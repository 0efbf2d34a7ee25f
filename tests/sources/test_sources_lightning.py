"""A REAL PyTorch Lightning run logged with MLFlowLogger + LearningRateMonitor loads and analyses."""

from __future__ import annotations

import json

import pytest

from lrwatch.cli import main
from lrwatch.sources import load_run

STEPS = 60


def _train_with_lightning(tracking_uri: str, root) -> str:
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import MLFlowLogger

    class Regression(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(8, 1)

        def training_step(self, batch, _):
            inputs, targets = batch
            loss = torch.nn.functional.mse_loss(self.layer(inputs), targets)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.05)
            decay = torch.optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.5)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": decay, "interval": "step"},
            }

    L.seed_everything(0, verbose=False)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(512, 8, generator=generator)
    targets = inputs @ torch.randn(8, 1, generator=generator) + 0.1
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(inputs, targets), batch_size=32, shuffle=True
    )
    logger = MLFlowLogger(experiment_name="lightning", tracking_uri=tracking_uri)
    trainer = L.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        logger=logger,
        callbacks=[LearningRateMonitor(logging_interval="step")],
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(Regression(), data)
    return logger.run_id


@pytest.mark.slow
def test_a_real_lightning_run_loads_and_analyses(tracking_uri, tmp_path, capsys):
    run_id = _train_with_lightning(tracking_uri, tmp_path)
    run = load_run(run_id)
    assert (run.loss_key, run.lr_key) == ("train_loss", "lr-SGD")
    assert run.status == "finished"
    assert len(run.loss) >= STEPS - 1  # one point per optimizer step
    lrs = run.lr.values
    assert lrs[0] == pytest.approx(0.05) and lrs[-1] == pytest.approx(0.0125)  # two StepLR halvings
    assert main(["analyze", f"runs:/{run_id}", "--format", "json"]) == 0
    entry = json.loads(capsys.readouterr().out)["runs"][0]
    assert (entry["run"], entry["loss_key"], entry["lr_key"]) == (run_id, "train_loss", "lr-SGD")
