"""What the logger records about the optimizers and the scheduler, as MLflow params.

For the first optimizer: ``optimizer`` (class name), ``base_lr`` (initial LR of group 0; other
groups as ``base_lr/pg1``...) and ``optimizer.<name>`` for each hyperparameter in
:data:`HYPERPARAMETERS` it has. A second, third... optimizer gets the same keys suffixed
``/opt1``, ``/opt2`` - the suffix scheme of the LR metrics (``lr/opt1``).
"""

from __future__ import annotations

from collections.abc import Sequence

from lrwatch import keys

# The optimizer settings that explain LR behaviour (present ones are logged, others skipped).
HYPERPARAMETERS = (
    "momentum",
    "dampening",
    "nesterov",
    "betas",
    "eps",
    "alpha",
    "weight_decay",
    "amsgrad",
)


def _suffix(optimizer_index: int) -> str:
    return "" if optimizer_index == 0 else f"/opt{optimizer_index}"


def text(value) -> str:
    if hasattr(value, "tolist"):
        value = value.tolist()  # a tensor-valued hyperparameter (e.g. capturable Adam's lr)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def optimizer_params(optimizers: Sequence, scheduler=None) -> dict[str, str]:
    """Params describing ``optimizers`` (and the ``scheduler``, when given)."""
    params: dict[str, str] = {}
    for index, optimizer in enumerate(optimizers):
        suffix = _suffix(index)
        params[keys.PARAM_OPTIMIZER + suffix] = type(optimizer).__name__
        groups = list(getattr(optimizer, "param_groups", []))
        for g, group in enumerate(groups):
            base = group.get("initial_lr", group.get("lr"))
            if base is not None:
                params[keys.base_lr_key(g, index)] = text(base)
        first = groups[0] if groups else getattr(optimizer, "defaults", {})
        for name in HYPERPARAMETERS:
            if name in first:
                params[keys.PARAM_PREFIX_OPTIMIZER + name + suffix] = text(first[name])
    schedulers = scheduler if isinstance(scheduler, (list, tuple)) else [scheduler]
    names = [type(s).__name__ for s in schedulers if s is not None]
    if names:
        params[keys.PARAM_SCHEDULER] = ",".join(names)
    return params
