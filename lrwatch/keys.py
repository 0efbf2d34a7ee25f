"""The one naming scheme for metric keys, tags and params that lrwatch writes and looks for.

Written by the logger (:mod:`lrwatch.tracking`), read by the loaders, the analysis and the
dashboard. Tests assert the scheme, so change it here and nowhere else.

Metrics lrwatch writes, one value per optimizer step:

=====================  =====================================================================
``train/loss``         the training loss passed to ``Watcher.step``
``lr``                 LR of param group 0 of the (first) optimizer
``lr/pg1``, ``lr/pg2`` LR of param groups 1, 2, ... (0-based index; group 0 is plain ``lr``)
``lr/opt1``, ...       LR of group 0 of a second, third ... optimizer; ``lr/opt1/pg1`` etc.
``grad_norm``          total gradient L2 norm, when ``grad_norm=True``
=====================  =====================================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable

LOSS = "train/loss"
LR = "lr"
GRAD_NORM = "grad_norm"

# Tags: findings from live analysis (a JSON list in the finding contract), schedule name, etc.
TAG_PREFIX = "lrwatch."
TAG_FINDINGS = "lrwatch.findings"
TAG_WORST = "lrwatch.worst_severity"
TAG_SCHEDULE = "lrwatch.schedule"
TAG_RANGE_TEST = "lrwatch.range_test"
# Written by find_lr on the range-test run: its suggestion and whether it stopped on divergence.
TAG_SUGGESTED_LR = "lrwatch.suggested_lr"
TAG_SUGGESTION_METHOD = "lrwatch.suggestion_method"
TAG_RANGE_TEST_STOPPED_EARLY = "lrwatch.range_test.stopped_early"
TAG_VERSION = "lrwatch.version"
TAG_SAMPLE = "lrwatch.sample"  # name of a bundled sample run (idempotent demo loading)
# Set by the logger when a job resumed from a checkpoint logs again steps the run already holds:
# JSON {"step", "earlier_last_step", "time"}. Readers that cached those steps read them again.
TAG_RESUMED = "lrwatch.resumed"
# Set by `lrwatch import` on a run made from a saved file: which file, and a digest of its data
# (the same data is imported once).
TAG_IMPORTED_FROM = "lrwatch.imported_from"
TAG_IMPORTED_DIGEST = "lrwatch.imported_digest"

# Params the logger records about the optimizer and scheduler.
PARAM_OPTIMIZER = "optimizer"
PARAM_SCHEDULER = "scheduler"
PARAM_BASE_LR = "base_lr"
PARAM_PREFIX_OPTIMIZER = "optimizer."  # optimizer.momentum, optimizer.betas, ...


def base_lr_key(group: int = 0, optimizer: int = 0) -> str:
    """Param key of one param group's starting LR, e.g. ``base_lr``, ``base_lr/pg2``,
    ``base_lr/opt1/pg1`` (the suffixes of :func:`lr_key`)."""
    return PARAM_BASE_LR + lr_key(group, optimizer)[len(LR) :]


def lr_key(group: int = 0, optimizer: int = 0) -> str:
    """Metric key of one param group's LR, e.g. ``lr``, ``lr/pg2``, ``lr/opt1/pg1``."""
    if group < 0 or optimizer < 0:
        raise ValueError("group and optimizer indices are non-negative")
    key = LR if optimizer == 0 else f"{LR}/opt{optimizer}"
    return key if group == 0 else f"{key}/pg{group}"


# Loss names in order of preference; the first one present wins.
LOSS_CANDIDATES = (
    LOSS,
    "loss",
    "train_loss",
    "training_loss",
    "train/loss_step",
    "train_loss_step",
    "loss_step",
    "train/loss_epoch",
    "train_loss_epoch",
    "train-loss",
    "trainer/loss",
)
# LR names in order of preference. Lightning's LearningRateMonitor writes ``lr-<Optimizer>``,
# and for several param groups ``lr-<Optimizer>/pg<N>`` (N from 1) or, for groups given a
# ``"name"``, ``lr-<Optimizer>/<name>``; some tools write ``learning_rate`` or ``train/lr``.
LR_CANDIDATES = (LR, "learning_rate", "train/lr", "train/learning_rate", "lr-0", "lr_0")
# Composer's LRMonitor writes ``lr-<Optimizer>/group<N>`` the same way. Lightning's momentum and
# weight decay (``lr-SGD-momentum/pg1``) have a hyphen after the optimizer's name.
_LIGHTNING_LR = re.compile(r"^lr-([A-Za-z0-9_]+)(/[^/]+)?$")
_NUMBERED_GROUP = re.compile(r"/(pg|group)\d+$")
# Any other key whose last part is an LR name: DeepSpeed's ``Train/Samples/lr``, Keras's
# TensorBoard ``epoch_learning_rate``, ``optim/lr``, and the spellings scripts give
# ``SummaryWriter.add_scalar`` (``Learning Rate``, ``LearningRate``, once "no LR logged").
_NAMED_LR = re.compile(r"(^|[/_\-. ])(lr|learning[_\-. ]?rate)$", re.IGNORECASE)
# "loss" keys that hold no loss: a mixed-precision loss scale (DeepSpeed's ``loss_scale``,
# Megatron's ``loss-scale``) - but ``loss_unscaled`` is a loss.
_NOT_A_LOSS = re.compile(r"loss[_\-/. ]?scal(e|er|ing)($|[_\-/. ])", re.IGNORECASE)
_HELD_OUT = re.compile(r"(^|[/_\-.])(val|valid|validation|test|eval)([/_\-.]|$)", re.IGNORECASE)


def is_lr_key(key: str) -> bool:
    """True for any key that holds a learning rate (ours, Lightning's, common others)."""
    if key in LR_CANDIDATES or key.startswith(LR + "/"):
        return True
    if _LIGHTNING_LR.match(key):
        return not key.endswith("-momentum")
    return bool(_NAMED_LR.search(key))


def find_loss_key(names: Iterable[str]) -> str | None:
    """The training-loss key among ``names``: a known name, else one containing 'loss' -
    preferably ending in it (``Train/Samples/train_loss``), the shortest first.

    Held-out losses (``val_loss``, ``test/loss``) and loss scales (``loss_scale``) are never
    chosen implicitly.
    """
    names = list(names)
    present = set(names)
    for candidate in LOSS_CANDIDATES:
        if candidate in present:
            return candidate
    fallback = [
        n
        for n in names
        if "loss" in n.lower() and not _HELD_OUT.search(n) and not _NOT_A_LOSS.search(n)
    ]
    ranked = sorted(fallback, key=lambda n: (not n.lower().endswith("loss"), len(n), n))
    return ranked[0] if ranked else None


def group_order(name: str) -> tuple:
    """Sort key for LR keys: group 0's first, then numbered groups by number (pg2 before
    pg10), then named ones by name."""
    numbered = _NUMBERED_GROUP.search(name)
    number = int(re.sub(r"\D", "", numbered.group(0))) if numbered else 0
    return ("/" in name, numbered is None, number, name)


def sibling_group_keys(lr_key: str, names: Iterable[str]) -> list[str]:
    """The LR keys of the other param groups of ``lr_key``'s optimizer among ``names``.

    Ours: ``lr/pg1``... beside ``lr`` (not ``lr/opt1``, another optimizer's). Lightning's and
    Composer's: every ``lr-<Optimizer>/<group>`` beside ``lr-<Optimizer>`` or one of its groups
    (``lr-SGD/pg2`` beside ``lr-SGD/pg1``, ``lr-SGD/head`` beside ``lr-SGD/backbone``).
    """
    ours = re.compile(re.escape(lr_key) + r"/pg\d+")
    lightning = _LIGHTNING_LR.match(lr_key)
    siblings = []
    for name in names:
        other = _LIGHTNING_LR.match(name)
        if ours.fullmatch(name) or (
            lightning and other and other.group(1) == lightning.group(1) and name != lr_key
        ):
            siblings.append(name)
    return siblings


def find_lr_key(names: Iterable[str]) -> str | None:
    """The primary LR key among ``names`` (param group 0 of the first optimizer)."""
    names = list(names)
    present = set(names)
    for candidate in LR_CANDIDATES:
        if candidate in present:
            return candidate
    lightning = sorted(n for n in names if _LIGHTNING_LR.match(n) and not n.endswith("-momentum"))
    # Prefer a group-0 name (no group suffix), then the lowest numbered group (pg10 after pg9),
    # then a named group by name (which of them was first in the optimizer is not logged).
    lightning.sort(key=group_order)
    if lightning:
        return lightning[0]
    fallback = sorted(n for n in names if is_lr_key(n))
    return fallback[0] if fallback else None
