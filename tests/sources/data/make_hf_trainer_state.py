"""Make ``hf_trainer_state.json``: a REAL Hugging Face ``Trainer`` run's saved state.

Not a test dependency: run it by hand where ``transformers`` and ``accelerate`` are installed
(``pip install transformers accelerate`` beside the torch build). It trains lrwatch's regression
MLP (``lrwatch.tasks``) with the Trainer's defaults - linear decay after a linear warmup, the
loss averaged over each logging window, NaN/inf filtered out of the logged loss - at a peak rate
far above the task's best (0.03), so the loss climbs away once warmup has raised the rate, and
saves ``trainer.state`` as the Trainer writes ``trainer_state.json`` into every checkpoint.

    python tests/sources/data/make_hf_trainer_state.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments, set_seed

from lrwatch.tasks import make_task

OUT = Path(__file__).resolve().parent / "hf_trainer_state.json"
PEAK_LR = 4.0
SCHEDULE = "constant_with_warmup"
STEPS, WARMUP, LOGGING_STEPS = 400, 100, 5


class Regression(torch.nn.Module):
    """The task's model, returning the loss the way Hugging Face models do."""

    def __init__(self, model: torch.nn.Module, loss_fn) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, inputs, labels):
        return {"loss": self.loss_fn(self.model(inputs), labels)}


def main() -> None:
    set_seed(0)
    task = make_task("mlp_regression", batch_size=1)
    examples = task.batches(torch.Generator().manual_seed(0))
    data = [{"inputs": x[0], "labels": y[0]} for x, y in (next(examples) for _ in range(4096))]
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, max_steps=STEPS, per_device_train_batch_size=32,
            learning_rate=PEAK_LR, warmup_steps=WARMUP, lr_scheduler_type=SCHEDULE, optim="sgd",
            logging_steps=LOGGING_STEPS, save_strategy="no", report_to=[], seed=0, use_cpu=True,
            disable_tqdm=True,
        )  # fmt: skip
        trainer = Trainer(model=Regression(task.make_model(), task.loss_fn), args=args,
                          train_dataset=data)  # fmt: skip
        trainer.train()
        trainer.state.save_to_json(str(OUT))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
