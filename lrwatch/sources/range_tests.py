"""An LR range test logged without lrwatch's tag: fastai's ``lr_find``, Lightning's
``lr_finder``, torch-lr-finder or a loop of one's own, saved as a table of LR and loss (or logged
to MLflow by another tool). Its LR rising 1000x and more at a steady geometric pace gives it
away; read as a training run, it was a warmup that diverged ("lower the peak LR") instead of the
rate to start from that a range test is for.
"""

from __future__ import annotations

import math

from lrwatch import keys
from lrwatch.analysis.range_test import RANGE_TEST_MIN_DECADES as MIN_DECADES
from lrwatch.analysis.range_test import rises_like_a_range_test
from lrwatch.run import Run
from lrwatch.sources.files import add_read_note


def mark_range_test(run: Run) -> None:
    """Tag ``run`` as a range test (in memory, with a note) when its LR rises like one."""
    if run.is_range_test or run.lr is None:
        return
    logged = run.lr.values  # in logging order: a range test logs its rising LR in step order
    first, last = (float(logged[0]), float(logged[-1])) if logged.size else (0.0, 0.0)
    if not 0 < first < last < math.inf or math.log10(last) - math.log10(first) < MIN_DECADES:
        return  # a training run's LR (most runs): ruled out without sorting a long series
    lr = run.lr.cleaned()
    if not rises_like_a_range_test(lr.steps, lr.values):
        return
    run.tags[keys.TAG_RANGE_TEST] = "true"
    first, last = float(lr.values[0]), float(lr.values[-1])
    decades = math.log10(last) - math.log10(first)
    add_read_note(
        run,
        f"read as an LR range test: its LR rises over {decades:.1f} decades at a steady "
        f"geometric pace, from {first:.3g} to {last:.3g} (the answer is a rate to start from)",
    )
