"""REAL PyTorch Lightning runs logged to MLflow load and analyse.

Two ways people log them: Lightning's ``MLFlowLogger`` + ``LearningRateMonitor`` (loss and LR per
step) and ``mlflow.pytorch.autolog`` (loss per step; the LR only as the ``lr`` param).
"""

from __future__ import annotations

import json

import pytest

from lrwatch.cli import main
from lrwatch.sources import load_run

STEPS = 60


def _regression_module(decay: bool):
    import lightning as L
    import torch

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
            if not decay:
                return optimizer
            step_lr = torch.optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.5)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": step_lr, "interval": "step"},
            }

    L.seed_everything(0, verbose=False)
    return Regression()


def _data():
    import torch

    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(512, 8, generator=generator)
    targets = inputs @ torch.randn(8, 1, generator=generator) + 0.1
    dataset = torch.utils.data.TensorDataset(inputs, targets)
    return torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True)


def _trainer(root, **kwargs):
    import lightning as L

    return L.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **kwargs,
    )


@pytest.mark.slow
def test_a_real_lightning_run_loads_and_analyses(tracking_uri, tmp_path, capsys):
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import MLFlowLogger

    logger = MLFlowLogger(experiment_name="lightning", tracking_uri=tracking_uri)
    monitor = LearningRateMonitor(logging_interval="step")
    _trainer(tmp_path, logger=logger, callbacks=[monitor]).fit(_regression_module(True), _data())
    run = load_run(logger.run_id)
    assert (run.loss_key, run.lr_key) == ("train_loss", "lr-SGD")
    assert run.status == "finished"
    assert len(run.loss) >= STEPS - 1  # one point per optimizer step
    lrs = run.lr.values
    assert lrs[0] == pytest.approx(0.05) and lrs[-1] == pytest.approx(0.0125)  # two StepLR halvings
    assert main(["analyze", f"runs:/{logger.run_id}", "--format", "json"]) == 0
    entry = json.loads(capsys.readouterr().out)["runs"][0]
    assert (entry["run"], entry["loss_key"], entry["lr_key"]) == (
        logger.run_id,
        "train_loss",
        "lr-SGD",
    )


@pytest.mark.slow
def test_a_real_mlflow_pytorch_autolog_run_loads(tracking_uri, tmp_path):
    import mlflow
    import mlflow.pytorch

    # Autolog writes a model summary artifact: keep it in tmp_path, not ./mlruns.
    mlflow.create_experiment("autolog", artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment("autolog")
    mlflow.pytorch.autolog(log_every_n_step=1, log_models=False)
    try:
        _trainer(tmp_path, logger=False).fit(_regression_module(False), _data())
    finally:
        mlflow.pytorch.autolog(disable=True)
    run = load_run(mlflow.last_active_run().info.run_id)
    assert (run.loss_key, run.lr_key) == ("train_loss", None)  # autolog keeps the LR as a param
    assert run.params["lr"] == "0.05" and len(run.loss) == STEPS


@pytest.mark.slow
@pytest.mark.parametrize("named", [False, True])
def test_lightning_param_groups_are_read_and_scaled_together(tmp_path, named):
    """A backbone at 0.02 and a head at 2.0, which blows the run up. LearningRateMonitor logs
    ``lr-SGD/pg1``/``lr-SGD/pg2``, or ``lr-SGD/backbone``/``lr-SGD/head`` for named groups.
    Before: the advice scaled the backbone alone (the head, at 100x, was left as it was), and
    named groups were "no LR logged"."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger

    class TwoGroups(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.body, self.head = torch.nn.Linear(8, 16), torch.nn.Linear(16, 1)

        def training_step(self, batch, _):
            inputs, targets = batch
            loss = torch.nn.functional.mse_loss(self.head(torch.tanh(self.body(inputs))), targets)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            groups = [
                {"params": self.body.parameters(), "lr": 0.02},
                {"params": self.head.parameters(), "lr": 2.0},
            ]
            if named:
                groups[0]["name"], groups[1]["name"] = "backbone", "head"
            return torch.optim.SGD(groups, lr=0.1)

    L.seed_everything(0, verbose=False)
    logger = CSVLogger(tmp_path, name="groups")
    monitor = LearningRateMonitor(logging_interval="step")
    _trainer(tmp_path, logger=logger, callbacks=[monitor]).fit(TwoGroups(), _data())
    run = load_run(str(tmp_path / "groups" / "version_0" / "metrics.csv"))
    first, second = ("lr-SGD/backbone", "lr-SGD/head") if named else ("lr-SGD/pg1", "lr-SGD/pg2")
    assert run.lr_key == first
    from lrwatch.analysis import analyze

    advice = analyze(run).recommendation
    assert advice.action == "decrease_lr" and advice.suggested_lr == pytest.approx(0.002)
    assert advice.evidence["group_lrs"] == {second: pytest.approx(0.2)}
