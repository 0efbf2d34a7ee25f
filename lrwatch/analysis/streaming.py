"""Online (incremental) analysis for the live logger's background thread.

Contract: the logger feeds new points; :meth:`OnlineAnalyzer.update` returns only findings not
reported before, so each is tagged and logged once. A finding is "the same" as a reported one when
it has the same kind and its step span overlaps the reported span (within a tolerance); a reported
finding is never retracted while the run runs, so the live view does not flip-flop. At its end,
:meth:`OnlineAnalyzer.finalize` judges two kinds again, as the whole run shows: a provisional note
(steady slow progress while the run runs: see :func:`lrwatch.analysis.findings.while_running`) is
replaced by the warning or dropped, and a divergence the whole run does not bear out (the loss
came back) becomes an ``info`` note.

Memory is bounded for arbitrarily long runs: the most recent ``recent_points`` points are kept at
full resolution; older ones are folded into at most ``max_blocks`` block aggregates (step range,
count, mean, min, max, LR, and the first non-finite loss with its step, so blow-up evidence
survives). When the blocks fill up, neighbours merge pairwise, halving the past's resolution.

Cost per call is bounded too: the detectors re-run only every ``min_new_points`` new points (or
every 1% of the run so far, when that is more), or at once when a new point looks alarming
(non-finite, or far above the recent level) - that is what lets a divergence be reported while
the loss is still climbing, before it turns NaN.
"""

from __future__ import annotations

import numpy as np

from lrwatch.analysis.detectors import (
    MIN_STEPS_TO_JUDGE,
    detect_divergence,
    detect_oscillation,
    run_detectors,
)
from lrwatch.analysis.detectors.divergence import TAIL_FRACTION
from lrwatch.analysis.findings import (
    Finding,
    Schedule,
    is_not_borne_out,
    is_provisional,
    not_borne_out,
    supersedes,
    while_running,
)
from lrwatch.analysis.prepare import prepare_arrays, robust_diff_noise
from lrwatch.analysis.schedule import recognize_schedule

# A new point this many robust noise-sigmas above the recent median triggers an evaluation now
# (minibatch noise almost never reaches it; a climbing loss does within a few steps).
ALARM_SIGMAS = 8.0
# Points behind the alarm level (median + noise of the recent loss).
_ALARM_WINDOW = 200
# On an alarm, the divergence test looks at the median of this many latest points: 3 of 5 must
# be high, so one wild batch is not enough, yet a fast blow-up is seen within a few steps.
EARLY_TAIL_POINTS = 5
_BLOCK_FIELDS = ("start", "end", "count", "mean", "min", "max", "bad_step", "bad_value", "lr")


class OnlineAnalyzer:
    """Incremental findings for a live run, in bounded memory.

    Args:
        min_new_points: re-run the detectors after this many new points (sooner on an alarm).
        recent_points: points kept at full resolution.
        max_blocks: block aggregates kept for the older past.
        block_points: points per block when the past is first folded.
        confirm: evaluations in a row that must find a non-divergence finding before it is
            reported (a divergence is reported at once: it cannot wait).

    Example::

        online = OnlineAnalyzer()
        for chunk in chunks:
            for finding in online.update(chunk.steps, chunk.losses, chunk.lrs):
                print(finding.message)
    """

    def __init__(
        self,
        *,
        min_new_points: int = 50,
        recent_points: int = 4096,
        max_blocks: int = 1024,
        block_points: int = 16,
        confirm: int = 2,
    ) -> None:
        if min(min_new_points, recent_points, max_blocks, block_points, confirm) < 1:
            raise ValueError("every OnlineAnalyzer size must be at least 1")
        self.min_new_points = min_new_points
        self.recent_points = recent_points
        self.max_blocks = max_blocks
        self.block_points = block_points
        self.confirm = confirm
        self._steps = np.empty(0, np.int64)
        self._loss = np.empty(0, np.float64)
        self._lr = np.empty(0, np.float64)
        self._blocks = {name: np.empty(0) for name in _BLOCK_FIELDS}
        self._reported: list[Finding] = []
        self._spans: list[list] = []  # [kind, start, end] of reported findings, kept extended
        self._pending: list[tuple[Finding, int]] = []  # candidates and how often seen in a row
        self._since_eval = 0
        self._alarm = np.inf
        self._alarmed = False
        self._nonfinite_evaluated = False
        self.total_points = 0
        self.evaluations = 0
        self._latest_candidates: list[Finding] = []  # the latest evaluation's candidates
        #: The LR schedule recognised at the last evaluation (``None`` before the first).
        self.schedule: Schedule | None = None

    @property
    def findings(self) -> list[Finding]:
        """Every finding reported so far."""
        return list(self._reported)

    def update(self, steps, losses, lrs=None) -> list[Finding]:
        """Append points (arrays of equal length); return findings that are new since last call.

        ``lrs`` may be ``None`` (no LR known). Never raises on odd values (NaN, inf, repeats).
        """
        steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        losses = np.asarray(losses, dtype=np.float64).reshape(-1)
        lrs = np.full(steps.size, np.nan) if lrs is None else np.asarray(lrs, np.float64).ravel()
        if not (steps.size == losses.size == lrs.size):
            raise ValueError("steps, losses and lrs must have equal lengths")
        if steps.size == 0:
            return []
        self._append(steps, losses, lrs)
        if not self._should_evaluate(losses):
            return []
        return self._evaluate(final=False)

    def finalize(self) -> list[Finding]:
        """Evaluate now and report every candidate, confirmed or not (call at the run's end).

        Provisional notes (judged at the end: see
        :func:`~lrwatch.analysis.findings.while_running`) the whole run does not bear out are
        dropped from :attr:`findings`; those it does are replaced by the new finding. A
        divergence reported live that the whole run does not bear out is replaced by an
        ``info`` note saying so (:func:`~lrwatch.analysis.findings.not_borne_out`), returned
        among the new findings.
        """
        if self.total_points == 0:
            return []
        new = self._evaluate(final=True)
        self._reported = [f for f in self._reported if not is_provisional(f)]
        self._spans = [s for s in self._spans if not s[3]]
        for f in self._divergences_the_end_does_not_bear_out():
            note = not_borne_out(f)
            self._reported = [note if g is f else g for g in self._reported]
            new.append(note)
        return new

    def _divergences_the_end_does_not_bear_out(self) -> list[Finding]:
        """Divergences reported live, when the final evaluation finds none and the run went on
        past them for the whole tail the divergence detector judges.

        Live, a spike at a rate far too high looks like a climb (25 of the 101 plateau runs of
        the five final labelled sets were reported so), and a live report stands while the run
        runs so the view does not flip-flop. The whole run is the better judge: when its final
        evaluation, whose last :data:`TAIL_FRACTION` lies wholly after the report, finds the
        loss back, the report is taken back. A run stopped at its divergence (``on_divergence=
        "stop"``) ends inside that tail, so its report always stands; so does a non-finite loss,
        which the final evaluation always finds.
        """
        steps = self.uniform_view()[0]
        if steps.size < 2 or any(f.kind == "divergence" for f in self._latest_candidates):
            return []
        tail_starts = steps[-1] - TAIL_FRACTION * (steps[-1] - steps[0])
        return [
            f
            for f in self._reported
            if f.kind == "divergence" and not is_not_borne_out(f) and f.end_step < tail_starts
        ]

    def view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(steps, losses, lrs)``: the folded past (one point per block), then recent points.

        The past's blocks keep their first non-finite loss as an extra point, so blow-up
        evidence survives folding.
        """
        steps, loss, lr = _block_points(self._blocks)
        return (
            np.concatenate((steps, self._steps)),
            np.concatenate((loss, self._loss)),
            np.concatenate((lr, self._lr)),
        )

    def uniform_view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`view`, with the recent points folded to the past's block size too.

        The detectors judge shapes in points, not steps: a view whose last 4,096 points are
        single steps while each earlier point stands for 64 would make the recent stretch look
        like most of the run (a "plateau" over its last 80%). One resolution keeps proportions.
        """
        if self._blocks["count"].size == 0:
            return self.view()
        size = self.block_points
        whole = self._steps.size - self._steps.size % size
        parts = [self._blocks]
        if whole:
            parts.append(
                _aggregate(self._steps[:whole], self._loss[:whole], self._lr[:whole], size)
            )
        if whole < self._steps.size:
            rest = self._steps.size - whole
            parts.append(
                _aggregate(self._steps[whole:], self._loss[whole:], self._lr[whole:], rest)
            )
        merged = {name: np.concatenate([p[name] for p in parts]) for name in _BLOCK_FIELDS}
        return _block_points(merged)

    # -- memory -------------------------------------------------------------------------------

    def _append(self, steps, losses, lrs) -> None:
        self._steps = np.concatenate((self._steps, steps))
        self._loss = np.concatenate((self._loss, losses))
        self._lr = np.concatenate((self._lr, lrs))
        self.total_points += steps.size
        self._since_eval += steps.size
        excess = self._steps.size - self.recent_points
        if excess >= self.block_points:
            self._fold(excess - excess % self.block_points)

    def _fold(self, count: int) -> None:
        """Move the oldest ``count`` recent points into block aggregates."""
        new = _aggregate(
            self._steps[:count], self._loss[:count], self._lr[:count], self.block_points
        )
        self._steps, self._loss, self._lr = (
            self._steps[count:],
            self._loss[count:],
            self._lr[count:],
        )
        for name in _BLOCK_FIELDS:
            self._blocks[name] = np.concatenate((self._blocks[name], new[name]))
        while self._blocks["count"].size > self.max_blocks:
            self._merge_pairs()

    def _merge_pairs(self) -> None:
        """Halve the past's resolution: merge blocks 0+1, 2+3, ... (an odd last one stays)."""
        b = self._blocks
        pairs = b["count"].size // 2
        a, c = slice(0, 2 * pairs, 2), slice(1, 2 * pairs, 2)
        weight_a, weight_c = b["count"][a], b["count"][c]
        with np.errstate(invalid="ignore", over="ignore"):
            mean = np.where(
                np.isnan(b["mean"][a]),
                b["mean"][c],
                np.where(
                    np.isnan(b["mean"][c]),
                    b["mean"][a],
                    (b["mean"][a] * weight_a + b["mean"][c] * weight_c) / (weight_a + weight_c),
                ),
            )
        first_bad_a = np.isfinite(b["bad_step"][a])
        merged = {
            "start": b["start"][a],
            "end": b["end"][c],
            "count": weight_a + weight_c,
            "mean": mean,
            "min": np.minimum(b["min"][a], b["min"][c]),
            "max": np.maximum(b["max"][a], b["max"][c]),
            "bad_step": np.where(first_bad_a, b["bad_step"][a], b["bad_step"][c]),
            "bad_value": np.where(first_bad_a, b["bad_value"][a], b["bad_value"][c]),
            "lr": np.where(np.isnan(b["lr"][c]), b["lr"][a], b["lr"][c]),
        }
        for name in _BLOCK_FIELDS:
            b[name] = np.concatenate((merged[name], b[name][2 * pairs :]))
        self.block_points *= 2

    # -- when to evaluate ---------------------------------------------------------------------

    def _should_evaluate(self, new_losses: np.ndarray) -> bool:
        finite = np.isfinite(new_losses)
        self._alarmed = bool(finite.any() and new_losses[finite].max() > self._alarm)
        # Routine re-runs come every min_new_points, or every 1% of the run so far when that is
        # more: ~600 evaluations for a million-point run instead of 20,000. Alarms (below) do
        # not wait for them.
        if self._since_eval >= max(self.min_new_points, self.total_points // 100):
            return True
        if not finite.all() and not self._nonfinite_evaluated:
            return True
        return self._alarmed and self._since_eval >= max(1, self.min_new_points // 10)

    def _update_alarm(self) -> None:
        recent = self._loss[-_ALARM_WINDOW:]
        recent = recent[np.isfinite(recent)]
        if recent.size < 10:
            self._alarm = np.inf
            return
        with np.errstate(over="ignore", invalid="ignore"):  # losses near 1e308: inf, no warning
            noise = robust_diff_noise(recent)
            level = float(np.median(recent))
        self._alarm = level + ALARM_SIGMAS * max(noise, 1e-9 * abs(level)) if noise > 0 else np.inf

    # -- evaluation and de-duplication -------------------------------------------------------

    def _evaluate(self, *, final: bool) -> list[Finding]:
        self.evaluations += 1
        self._since_eval = 0
        prepared = _prepared(*self.uniform_view())
        if prepared.first_nonfinite is not None:
            self._nonfinite_evaluated = True
        candidates = run_detectors(prepared)
        folded = self._blocks["count"].size > 0
        if folded:
            # Bounces live at single-step resolution: judge them on the recent points.
            recent = _prepared(self._steps, self._loss, self._lr)
            if recent.n >= MIN_STEPS_TO_JUDGE:
                candidates += detect_oscillation(recent)
        if self._alarmed and not any(f.kind == "divergence" for f in candidates + self._reported):
            candidates += self._early_divergence(_prepared(*self.view()) if folded else prepared)
        self.schedule = recognize_schedule(prepared.lr_steps, prepared.lr_values)
        self._update_alarm()
        if not final:
            candidates = [while_running(f) for f in candidates]
        self._latest_candidates = candidates
        tol = self._tolerance(prepared.steps)
        new, pending = [], []
        for f in candidates:
            if self._already_reported(f, tol):
                continue
            seen = 1 + max(
                (n for g, n in self._pending if g.kind == f.kind and _overlap(g, f, tol)),
                default=0,
            )
            if final or f.kind == "divergence" or seen >= self.confirm:
                self._report(f, tol)
                new.append(f)
            else:
                pending.append((f, seen))
        self._pending = pending
        return new

    def _early_divergence(self, prepared) -> list[Finding]:
        """The divergence detector judging only the last few points, on an alarm.

        Offline, the detector compares the last 10% of the run with its best level; live, that
        tail is what a climb has not filled yet. Right after an alarm (a point far above the
        recent level) the same test on the last ``EARLY_TAIL_POINTS`` catches the climb while
        it happens, with the detector's own thresholds (the tail's median must have given back
        half the progress and sit 4 noise-sigmas above the best level).
        """
        if prepared.first_nonfinite is not None or prepared.n < MIN_STEPS_TO_JUDGE:
            return []
        fraction = min(0.5, max(0.01, EARLY_TAIL_POINTS / prepared.n))
        try:
            return detect_divergence(prepared, tail_fraction=fraction)
        except TypeError:  # a detector without that knob: rely on the routine evaluation
            return []

    def _tolerance(self, steps: np.ndarray) -> float:
        """Steps within which two findings of one kind are the same event."""
        if steps.size < 2:
            return 0.0
        spacing = float(np.median(np.diff(steps[-min(steps.size, 1000) :])))
        return max(self.min_new_points * spacing, 0.05 * float(steps[-1] - steps[0]))

    def _already_reported(self, f: Finding, tol: float) -> bool:
        """Reported before - unless only as a provisional note (see
        :func:`~lrwatch.analysis.findings.while_running`) that ``f`` now judges."""
        for span in self._spans:
            kind, start, end, provisional = span
            if kind == f.kind and f.start_step <= end + tol and f.end_step >= start - tol:
                if provisional and not is_provisional(f):
                    return False
                span[1], span[2] = min(start, f.start_step), max(end, f.end_step)
                return True
        return False

    def _report(self, f: Finding, tol: float) -> None:
        """Report ``f``, in place of the provisional note of the same event, if any."""
        self._reported = [g for g in self._reported if not supersedes(f, g, tol)]
        self._spans = [s for s in self._spans if not supersedes(f, _span_note(s), tol)]
        self._reported.append(f)
        self._spans.append([f.kind, f.start_step, f.end_step, is_provisional(f)])


def _span_note(span: list) -> Finding:
    """A reported span (kind, start, end, provisional) as a finding, to compare with one."""
    kind, start, end, provisional = span
    evidence = {"run_ended": False} if provisional else {}
    return Finding(kind, int(start), int(end), "info", "", evidence)


def _prepared(steps, loss, lr):
    known = np.isfinite(lr)
    lr_steps, lr_values = (steps[known], lr[known]) if known.any() else (None, None)
    return prepare_arrays(steps, loss, lr_steps, lr_values)


def _aggregate(steps, loss, lr, size: int) -> dict[str, np.ndarray]:
    """Block aggregates of consecutive points, ``size`` per block (``len`` a multiple of it)."""
    s, v, r = (a.reshape(-1, size) for a in (steps, loss, lr))
    finite = np.isfinite(v)
    n_finite = finite.sum(axis=1)
    first_bad = np.argmax(~finite, axis=1)
    any_bad = ~finite.all(axis=1)
    rows = np.arange(v.shape[0])
    lr_known = np.isfinite(r)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return {
            "start": s[:, 0].astype(np.float64),
            "end": s[:, -1].astype(np.float64),
            "count": np.full(v.shape[0], float(size)),
            "mean": np.where(n_finite > 0, np.where(finite, v, 0.0).sum(axis=1) / n_finite, np.nan),
            "min": np.where(finite, v, np.inf).min(axis=1),
            "max": np.where(finite, v, -np.inf).max(axis=1),
            "bad_step": np.where(any_bad, s[rows, first_bad], np.nan),
            "bad_value": np.where(any_bad, v[rows, first_bad], np.nan),
            "lr": np.where(
                lr_known.any(axis=1),
                np.where(lr_known, r, 0.0).sum(axis=1) / np.maximum(lr_known.sum(axis=1), 1),
                np.nan,
            ),
        }


def _block_points(b: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One point per block at its last step, plus each block's first non-finite loss."""
    # Also when the bad step is the block's last: the block's own point is a mean of its finite
    # values, and the bad point, sorted after it, is the one Series.cleaned() keeps for that step.
    has_bad = np.isfinite(b["bad_step"])
    steps = np.concatenate((b["end"], b["bad_step"][has_bad])).astype(np.int64)
    loss = np.concatenate((b["mean"], b["bad_value"][has_bad]))
    lr = np.concatenate((b["lr"], b["lr"][has_bad]))
    order = np.argsort(steps, kind="stable")
    return steps[order], loss[order], lr[order]


def _overlap(a: Finding, b: Finding, tol: float) -> bool:
    return a.start_step <= b.end_step + tol and a.end_step >= b.start_step - tol
