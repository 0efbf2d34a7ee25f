"""The one run model every part of lrwatch speaks: identity, metadata and step-indexed series.

Loaders build a :class:`Run`, the logger keeps a live one, the analysis reads one and the
dashboard draws one. Nothing passes raw MLflow objects or ad-hoc dicts across module boundaries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from lrwatch import keys


@dataclass(frozen=True)
class Series:
    """One metric over steps: ``steps`` (int64) and ``values`` (float64), equal length.

    A raw series may be unsorted or repeat steps; :meth:`cleaned` sorts it, keeps the last value
    logged for a repeated step, and maps MLflow's stored stand-in for infinity back to ``inf``.
    Non-finite values are kept: they are evidence.
    """

    steps: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        steps = np.asarray(self.steps, dtype=np.int64).reshape(-1)
        values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        if steps.shape != values.shape:
            raise ValueError(f"steps and values differ in length ({steps.size} != {values.size})")
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return int(self.steps.size)

    @classmethod
    def from_pairs(cls, steps, values) -> Series:
        return cls(np.asarray(steps), np.asarray(values))

    def cleaned(self) -> Series:
        """Sorted by step, one value per step (the last logged), SQL-store infinities restored."""
        values = restore_infinities(self.values)
        if self.steps.size < 2 or np.all(self.steps[1:] > self.steps[:-1]):
            return Series(self.steps, values)  # already sorted and unique: the common case
        # Stable sort keeps logging order among equal steps, so "last logged" is well defined.
        order = np.argsort(self.steps, kind="stable")
        steps, values = self.steps[order], values[order]
        is_last_of_step = np.append(steps[1:] != steps[:-1], True)
        return Series(steps[is_last_of_step], values[is_last_of_step])

    @property
    def is_empty(self) -> bool:
        return self.steps.size == 0


# MLflow's SQL stores save +/-inf as +/-DBL_MAX. Anything at that magnitude cannot be a real loss,
# so reading it back as infinity keeps divergence evidence instead of a huge finite number.
_SQL_INFINITY = 1.7976931348623157e308


def restore_infinities(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    huge = np.abs(values) >= _SQL_INFINITY
    if not huge.any():
        return values
    restored = values.copy()
    restored[huge] = np.copysign(np.inf, values[huge])
    return restored


@dataclass(frozen=True)
class UnreadSeries:
    """Metric keys a run logged that its loader left unread, and ``read(names)`` to read them.

    Through a tracking server each metric is a read of its own, so ``lrwatch analyze`` and the
    dashboard read a run's loss and LR alone; the analysis reads the other param groups' LRs
    only when its recommendation scales them (:mod:`lrwatch.analysis.recommend_groups`).
    """

    names: tuple[str, ...]
    read: Callable[[Sequence[str]], dict[str, Series]]


@dataclass
class Run:
    """A training run: identity and metadata plus step-indexed metric series.

    Attributes:
        id: stable identifier (an MLflow run id, or the file path for saved runs).
        name: human-readable name; shown as text, never as HTML.
        source: where it was loaded from (tracking URI + run id, or a file path).
        params / tags: string maps, as MLflow keeps them.
        metrics: metric key -> :class:`Series`.
        status: ``running``, ``finished``, ``failed`` or ``None`` when unknown (files).
        loss_key / lr_key: the metric keys chosen as loss and learning rate; found among common
            names when not given (see :mod:`lrwatch.keys`).
        unread: metrics the run logged beyond ``metrics``, read on demand (an MLflow run read
            for its analysis); ``None`` when ``metrics`` holds them all.
    """

    id: str
    name: str = ""
    source: str = ""
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Series] = field(default_factory=dict)
    status: str | None = None
    start_time_ms: int | None = None
    experiment_id: str | None = None
    loss_key: str | None = None
    lr_key: str | None = None
    unread: UnreadSeries | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.loss_key is None:
            self.loss_key = keys.find_loss_key(self.metrics)
        if self.lr_key is None:
            self.lr_key = keys.find_lr_key(self.metrics)

    @property
    def loss(self) -> Series | None:
        return self.metrics.get(self.loss_key) if self.loss_key else None

    @property
    def lr(self) -> Series | None:
        return self.metrics.get(self.lr_key) if self.lr_key else None

    @property
    def lr_group_keys(self) -> list[str]:
        """Every learning-rate series, one per param group (or optimizer)."""
        return [k for k in self.metrics if keys.is_lr_key(k)]

    @property
    def num_steps(self) -> int:
        loss = self.loss
        return len(loss) if loss is not None else 0

    @property
    def is_range_test(self) -> bool:
        return self.tags.get(keys.TAG_RANGE_TEST, "").lower() == "true"

    def with_metrics(self, metrics: Mapping[str, Series]) -> Run:
        """A copy holding ``metrics`` instead (same identity and key choices)."""
        return Run(
            id=self.id,
            name=self.name,
            source=self.source,
            params=dict(self.params),
            tags=dict(self.tags),
            metrics=dict(metrics),
            status=self.status,
            start_time_ms=self.start_time_ms,
            experiment_id=self.experiment_id,
            loss_key=self.loss_key,
            lr_key=self.lr_key,
            unread=self.unread,
        )

    def display_name(self) -> str:
        return self.name or self.id
