"""Is a run that MLflow calls running still logging? MLflow has no heartbeat: a job killed with
SIGKILL, by the OOM killer or with its node leaves its run RUNNING for good."""

from __future__ import annotations

# A running run counts as silent when its last point is older than this many of its own average
# gaps between points (a per-epoch log's hour-long gaps are its normal pace, not a death)...
SILENT_GAPS = 10
# ...and older than this, so a fast loop that pauses for a checkpoint or an evaluation is not.
SILENT_MIN_S = 15 * 60


def silent_for_s(
    status: str | None, start_ms: int | None, last_ms: int | None, points: int, now_ms: int
) -> tuple[float, float] | None:
    """``(seconds since the last point, the run's average seconds between points)`` when a
    running run has gone silent (see :data:`SILENT_GAPS`), else None."""
    if status != "running" or start_ms is None or last_ms is None or points < 2:
        return None
    gap_s = max(last_ms - start_ms, 0) / 1000 / (points - 1)
    quiet_s = (now_ms - last_ms) / 1000
    if quiet_s > max(SILENT_MIN_S, SILENT_GAPS * gap_s):
        return quiet_s, gap_s
    return None


def duration(seconds: float) -> str:
    """``"3 h 12 min"``, ``"25 min"``, ``"40 s"``: how long, for a person."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    hours, minutes = divmod(seconds // 60, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"
