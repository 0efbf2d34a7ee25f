"""The other param groups' rates under a recommendation that scales the LR.

The suggested LR is param group 0's (the ``lr`` series). When the optimizer's groups train at
different rates - a pretrained backbone at 1e-5 and a new head at 1e-3, layer-wise decay - the
advice "use 3e-06" alone would leave the user to guess what happens to the others. Every group
is scaled by the same factor, keeping its ratio to group 0 (the ratio the schedule keeps too);
the message names each group's new rate and ``evidence["group_lrs"]`` holds them.

Only the groups of group 0's optimizer are scaled (``lr/pg1`` beside ``lr``, ``lr-Adam/pg2``
beside ``lr-Adam/pg1``: :func:`lrwatch.keys.sibling_group_keys`): a second optimizer
(``lr/opt1``, a GAN's discriminator) trains another loss.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lrwatch import keys
from lrwatch.analysis.findings import Recommendation
from lrwatch.run import Run, Series

# Actions whose suggested LR is group 0's rate times ``factor``.
SCALING_ACTIONS = ("decrease_lr", "increase_lr", "lower_peak_lr", "decay_lr")
# Groups whose rate matches group 0's to this relative tolerance need no words of their own
# (groups split only to switch weight decay off for biases and norms).
_SAME_RATE = 1e-6
# At most this many groups are named in the message; the evidence holds them all.
_NAMED_GROUPS = 3


def with_group_rates(recommendation: Recommendation, run: Run) -> Recommendation:
    """``recommendation`` with the other param groups' scaled rates, when they differ."""
    if (
        recommendation.action not in SCALING_ACTIONS
        or recommendation.suggested_lr is None
        or run.lr is None
        or run.lr_key is None
    ):
        return recommendation
    rates = {}
    for key, group in _sibling_groups(run).items():
        ratio = _ratio_to_group0(group, run.lr)
        if ratio is not None and abs(ratio - 1) > _SAME_RATE:
            rates[key] = float(f"{recommendation.suggested_lr * ratio:.3g}")
    if not rates:
        return recommendation
    named = ", ".join(f"{key} {lr:.3g}" for key, lr in list(rates.items())[:_NAMED_GROUPS])
    more = len(rates) - _NAMED_GROUPS
    if more > 0:
        named += f" and {more} more (evidence.group_lrs)"
    message = (
        f"{recommendation.message} Scale every param group alike, keeping their ratios: "
        f"{run.lr_key} {recommendation.suggested_lr:.3g}, {named}."
    )
    evidence = {**recommendation.evidence, "group_lrs": rates}
    return dataclasses.replace(recommendation, message=message, evidence=evidence)


def _sibling_groups(run: Run) -> dict[str, Series]:
    """The LR series of group 0's sibling groups, in group order; those the loader left unread
    (:class:`lrwatch.run.UnreadSeries`) are read now."""
    assert run.lr_key is not None
    unread = [name for name in run.unread.names if keys.is_lr_key(name)] if run.unread else []
    siblings = keys.sibling_group_keys(run.lr_key, dict.fromkeys(run.lr_group_keys + unread))
    siblings.sort(key=keys.group_order)
    series = {key: run.metrics[key] for key in siblings if key in run.metrics}
    missing = [key for key in siblings if key not in series]
    if missing and run.unread is not None:
        series.update(run.unread.read(missing))
    return {key: series[key] for key in siblings if key in series}


def _ratio_to_group0(group: Series, first: Series) -> float | None:
    """The group's LR over group 0's at the steps both logged (median: a group that a scheduler
    moves in step with group 0 has one ratio throughout)."""
    common, at_group, at_first = np.intersect1d(group.steps, first.steps, return_indices=True)
    if common.size == 0:
        return None
    a, b = group.values[at_group], first.values[at_first]
    ok = np.isfinite(a) & np.isfinite(b) & (b > 0) & (a >= 0)
    return float(np.median(a[ok] / b[ok])) if ok.any() else None
