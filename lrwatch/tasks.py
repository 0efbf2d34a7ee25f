"""Seeded tiny PyTorch training tasks that ship with lrwatch (needs ``lrwatch[torch]``).

Like the signal generators of a change-point library, these make *real* training runs with a
known cause: the same task trained at a rate far above its sweep's best diverges, far below it
creeps, heavy-ball momentum on an ill-conditioned quadratic oscillates. They feed the tests, the
bundled sample runs, the held-out quality set and the LR-finder evaluation; a small char-level
transformer (``char_lm``) and a small convolutional classifier with batch norm (``cnn_images``) feed
the out-of-distribution checks (``benchmarks/transformer_check.py``, ``benchmarks/cnn_check.py``).
Everything runs on the CPU in seconds, draws its data from seeded generators and downloads
nothing.

Example::

    from lrwatch.tasks import TrainConfig, train
    run = train(TrainConfig(task="mlp_regression", lr=0.05, steps=400, seed=1))
    run.loss.values[:5]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from lrwatch import keys
from lrwatch.errors import require
from lrwatch.run import Run, Series

if TYPE_CHECKING:  # mypy reads torch's own types; at runtime a missing torch names its install
    import torch
    from torch import nn
else:
    torch = require("torch", "lrwatch[torch]")
    nn = torch.nn

TASKS = (
    "mlp_regression",
    "mlp_classification",
    "quadratic",
    "autoencoder",
    "char_lm",
    "cnn_images",
)
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = (
    "constant",
    "step",
    "exponential",
    "cosine",
    "linear_decay",
    "warmup_constant",
    "warmup_cosine",
    "cyclic",
    "onecycle",
    "plateau",
)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``task_seed`` fixes the problem instance, ``seed`` the init and batches."""

    task: str = "mlp_regression"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    steps: int = 500
    batch_size: int = 32
    schedule: str = "constant"
    warmup_steps: int = 0
    seed: int = 0
    task_seed: int = 0
    width: int = 64
    log_every: int = 1
    # Steps still logged after the loss turned non-finite, as a real script would, then stop.
    steps_after_nonfinite: int = 10

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {self.task!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if self.lr <= 0 or self.steps <= 0 or self.batch_size <= 0 or self.log_every <= 0:
            raise ValueError("lr, steps, batch_size and log_every must be positive")

    def with_(self, **changes) -> TrainConfig:
        return replace(self, **changes)


@dataclass
class Task:
    """A model factory, an endless seeded batch stream and a loss function."""

    name: str
    make_model: Callable[[], nn.Module]
    batches: Callable[[torch.Generator], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _sampler(inputs, targets, batch_size):
    def batches(generator: torch.Generator):
        n = inputs.shape[0]
        while True:
            idx = torch.randint(0, n, (batch_size,), generator=generator)
            yield inputs[idx], targets[idx]

    return batches


def make_task(name: str, *, task_seed: int = 0, batch_size: int = 32, width: int = 64) -> Task:
    """Build one of :data:`TASKS`. The data set is fixed by ``task_seed``."""
    g = torch.Generator().manual_seed(10_000 + task_seed)
    if name == "mlp_regression":
        # A random teacher MLP plus label noise: a smooth non-convex regression problem.
        x = torch.randn(2048, 16, generator=g)
        teacher = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 1))
        with torch.no_grad():
            for p in teacher.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.8)
            y = teacher(x) + 0.1 * torch.randn(2048, 1, generator=g)
        return Task(
            name,
            lambda: nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, 1)),
            _sampler(x, y, batch_size),
            nn.functional.mse_loss,
        )
    if name == "mlp_classification":
        # Five Gaussian clusters in 10-d with overlap: cross-entropy with an irreducible floor.
        centers = torch.randn(5, 10, generator=g) * 1.5
        labels = torch.randint(0, 5, (4096,), generator=g)
        x = centers[labels] + torch.randn(4096, 10, generator=g)
        return Task(
            name,
            lambda: nn.Sequential(
                nn.Linear(10, width),
                nn.ReLU(),
                nn.Linear(width, width),
                nn.ReLU(),
                nn.Linear(width, 5),
            ),
            _sampler(x, labels, batch_size),
            nn.functional.cross_entropy,
        )
    if name == "quadratic":
        # Noisy linear least squares with feature scales spread over 100x: an ill-conditioned
        # quadratic whose Hessian eigenvalues are known (2 * scale^2), so stable step sizes are too.
        scales = torch.logspace(-1, 0, 20)
        x = torch.randn(2048, 20, generator=g) * scales
        w_true = torch.randn(20, 1, generator=g)
        y = x @ w_true + 0.05 * torch.randn(2048, 1, generator=g)
        return Task(
            name,
            lambda: nn.Linear(20, 1, bias=False),
            _sampler(x, y, batch_size),
            nn.functional.mse_loss,
        )
    if name == "autoencoder":
        # Low-rank data through a bottleneck MLP autoencoder.
        basis = torch.randn(4, 24, generator=g)
        x = torch.randn(2048, 4, generator=g) @ basis + 0.05 * torch.randn(2048, 24, generator=g)
        return Task(
            name,
            lambda: nn.Sequential(
                nn.Linear(24, width // 2),
                nn.Tanh(),
                nn.Linear(width // 2, 4),
                nn.Linear(4, width // 2),
                nn.Tanh(),
                nn.Linear(width // 2, 24),
            ),
            _sampler(x, x, batch_size),
            nn.functional.mse_loss,
        )
    if name == "char_lm":
        return _char_lm(g, batch_size, width)
    if name == "cnn_images":
        return _cnn_images(g, batch_size, width)
    raise ValueError(f"task must be one of {TASKS}, not {name!r}")


# The char-level language model: windows of this many characters of a synthetic text.
_LM_CONTEXT = 32


def _char_lm(g: torch.Generator, batch_size: int, width: int) -> Task:
    """A 2-layer causal transformer predicting the next character of a synthetic text: 400
    random words (Zipf-frequent), each followed by one of its 8 usual successors 70% of the time
    - spelling and a bigram grammar to learn: the loss falls for as long as it trains, letter
    frequencies first, then words. 400 steps take a few seconds on a CPU."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    lengths = torch.randint(1, 9, (400,), generator=g)
    words = [
        "".join(letters[i] for i in torch.randint(0, 26, (int(n),), generator=g)) for n in lengths
    ]
    successors = torch.randint(0, 400, (400, 8), generator=g).tolist()
    zipf = 1.0 / torch.arange(1, 401, dtype=torch.float64)
    count = 40_000  # words: ~230,000 characters
    follows = (torch.rand(count, generator=g) < 0.7).tolist()
    picks = torch.randint(0, 8, (count,), generator=g).tolist()
    anywhere = torch.multinomial(zipf, count, replacement=True, generator=g).tolist()
    word, chosen = 0, []
    for follow, pick, other in zip(follows, picks, anywhere, strict=True):
        word = successors[word][pick] if follow else other
        chosen.append(words[word])
    text = " ".join(chosen)
    alphabet = sorted(set(text))
    index = {c: i for i, c in enumerate(alphabet)}
    data = torch.tensor([index[c] for c in text])
    vocab = len(alphabet)

    def batches(generator: torch.Generator):
        offsets = torch.arange(_LM_CONTEXT + 1)
        while True:
            starts = torch.randint(
                0, data.numel() - _LM_CONTEXT - 1, (batch_size, 1), generator=generator
            )
            window = data[starts + offsets]
            yield window[:, :-1], window[:, 1:]

    def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))

    return Task("char_lm", lambda: _CharLM(vocab, width), batches, loss_fn)


class _CharLM(nn.Module):
    def __init__(self, vocab: int, width: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.zeros(_LM_CONTEXT, width))
        layer = nn.TransformerEncoderLayer(
            width, 4, 4 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(width, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(_LM_CONTEXT))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(tokens) + self.position
        return self.head(self.blocks(hidden, mask=self.mask, is_causal=True))


# The image classifier: 10 classes of 16x16 one-channel images, a fixed set of this many.
_IMAGE_CLASSES, _IMAGE_SIZE, _IMAGE_COUNT = 10, 16, 8192


def _cnn_images(g: torch.Generator, batch_size: int, width: int) -> Task:
    """A 3-layer convolutional network with batch norm classifying synthetic images: each class
    is a smooth random pattern, shown shifted by up to 4 pixels, at a random contrast, over a
    fainter pattern of another class and heavy pixel noise. The shifts need the convolutions,
    the overlap leaves a floor; SGD with momentum 0.9 near its best rate takes ~8 epochs
    (1,000 steps of 64) to approach it, ~7 s on one CPU core."""
    n, size = _IMAGE_COUNT, _IMAGE_SIZE

    def smooth(cells: int) -> torch.Tensor:
        noise = torch.randn(_IMAGE_CLASSES, 1, cells, cells, generator=g)
        return nn.functional.interpolate(noise, size=size, mode="bilinear", align_corners=False)

    templates = smooth(4) + 0.5 * smooth(8)
    templates = templates / templates.std(dim=(1, 2, 3), keepdim=True)
    labels = torch.randint(0, _IMAGE_CLASSES, (n,), generator=g)
    distractors = torch.randint(0, _IMAGE_CLASSES, (n,), generator=g)
    contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
    images = (
        contrast * templates[labels]
        + 0.6 * templates[distractors]
        + 1.2 * torch.randn(n, 1, size, size, generator=g)
    )
    shifts = torch.randint(-4, 5, (n, 2), generator=g).tolist()
    images = torch.stack(
        [
            torch.roll(image, (dy, dx), (1, 2))
            for image, (dy, dx) in zip(images, shifts, strict=True)
        ]
    )
    return Task(
        "cnn_images",
        lambda: _ConvNet(width // 4, width // 2),
        _sampler(images, labels, batch_size),
        nn.functional.cross_entropy,
    )


class _ConvNet(nn.Module):
    def __init__(self, narrow: int, wide: int):
        super().__init__()

        def block(inputs: int, outputs: int, stride: int) -> list[nn.Module]:
            conv = nn.Conv2d(inputs, outputs, 3, padding=1, stride=stride)
            return [conv, nn.BatchNorm2d(outputs), nn.ReLU()]

        self.layers = nn.Sequential(
            *block(1, narrow, 1),
            *block(narrow, wide, 2),
            *block(wide, wide, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(wide, _IMAGE_CLASSES),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


def make_optimizer(params, config: TrainConfig):
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.RMSprop(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def make_scheduler(optimizer, config: TrainConfig):
    """A scheduler stepped once per optimizer step, or ``None`` for a constant LR.

    ``plateau`` returns ``ReduceLROnPlateau``, which :func:`train` steps with a running loss.
    """
    steps, warmup = config.steps, max(config.warmup_steps, 0)
    s = config.schedule
    sched = torch.optim.lr_scheduler
    if s == "constant":
        return None
    if s == "step":
        return sched.StepLR(optimizer, step_size=max(steps // 3, 1), gamma=0.1)
    if s == "exponential":
        return sched.ExponentialLR(optimizer, gamma=0.01 ** (1 / steps))
    if s == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=steps)
    if s == "linear_decay":
        return sched.LinearLR(optimizer, start_factor=1.0, end_factor=0.01, total_iters=steps)
    if s == "cyclic":
        return sched.CyclicLR(
            optimizer,
            base_lr=config.lr / 10,
            max_lr=config.lr,
            step_size_up=max(steps // 8, 1),
            cycle_momentum=False,
        )
    if s == "onecycle":
        return sched.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps + 1)
    if s == "plateau":
        return sched.ReduceLROnPlateau(optimizer, factor=0.1, patience=5, threshold=1e-3)
    warmup = warmup or max(steps // 10, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if s == "warmup_constant":
            return 1.0
        progress = (step - warmup) / max(steps - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return sched.LambdaLR(optimizer, factor)


# ReduceLROnPlateau sees the mean loss of each window of this many steps.
_PLATEAU_WINDOW = 20


def train(
    config: TrainConfig,
    *,
    on_step: Callable[[int, torch.Tensor, torch.optim.Optimizer], None] | None = None,
    run_id: str | None = None,
) -> Run:
    """Train ``config`` and return the run (``train/loss`` and ``lr`` per logged step).

    ``lr`` is the rate the step used. ``on_step(step, loss_tensor, optimizer)`` is called after
    each optimizer and scheduler step, e.g. to feed ``lrwatch.watch``. Training continues for
    ``steps_after_nonfinite`` steps once the loss is NaN/inf (as a real script would), then stops.
    """
    torch.manual_seed(config.seed)
    task = make_task(
        config.task, task_seed=config.task_seed, batch_size=config.batch_size, width=config.width
    )
    model = task.make_model()
    optimizer = make_optimizer(model.parameters(), config)
    scheduler = make_scheduler(optimizer, config)
    batches = task.batches(torch.Generator().manual_seed(config.seed))
    steps, losses, lrs = [], [], []
    window: list[float] = []
    nonfinite_since = None
    for step in range(config.steps):
        inputs, targets = next(batches)
        lr_used = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss_fn(model(inputs), targets)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            window.append(value)
            if len(window) == _PLATEAU_WINDOW:
                scheduler.step(float(np.mean(window)))
                window.clear()
        elif scheduler is not None:
            scheduler.step()
        if on_step is not None:
            on_step(step, loss.detach(), optimizer)
        if step % config.log_every == 0:
            steps.append(step)
            losses.append(value)
            lrs.append(lr_used)
        if not math.isfinite(value):
            nonfinite_since = step if nonfinite_since is None else nonfinite_since
            if step - nonfinite_since >= config.steps_after_nonfinite:
                break
    params = {k: str(v) for k, v in asdict(config).items()}
    return Run(
        id=run_id or config_name(config),
        name=config_name(config),
        source="lrwatch.tasks",
        params=params,
        metrics={
            keys.LOSS: Series(np.array(steps), np.array(losses)),
            keys.LR: Series(np.array(steps), np.array(lrs)),
        },
        status="finished",
    )


def config_name(config: TrainConfig) -> str:
    name = f"{config.task}-{config.optimizer}-lr{config.lr:g}"
    if config.momentum:
        name += f"-m{config.momentum:g}"
    if config.schedule != "constant":
        name += f"-{config.schedule}"
    return f"{name}-s{config.seed}"
