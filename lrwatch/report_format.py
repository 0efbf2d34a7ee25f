"""Pure formatting of analysis reports: text for a person, one JSON document for machines.

Nothing here prints or reads files; ``lrwatch analyze`` prints what these return. The JSON
follows the contract in ``shared/design.md``::

    {"runs": [{"run": "...", "findings": [...], "recommendation": {...}, ...extras}],
     "sweep": {...}}            # "sweep" only when a sweep recommendation exists

Extras per run (added beside the contract keys, never replacing them): ``name``, ``source``,
``status``, ``loss_key``, ``lr_key``, ``first_step``, ``last_step``, ``notes``. A top-level
``errors`` list (``{"run": spec, "error": line}``) appears only when some input was bad.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from lrwatch.analysis.findings import Recommendation, Report, severity_rank
from lrwatch.run import Run

_INDENT = "  "


def run_extras(run: Run, notes: Sequence[str] = ()) -> dict[str, Any]:
    """Identity and key choices of ``run`` for the JSON entry (extras beside the contract)."""
    loss = run.loss
    first_step = last_step = None
    if loss is not None and not loss.is_empty:
        first_step, last_step = int(loss.steps[0]), int(loss.steps[-1])
    return {
        "name": run.display_name(),
        "source": run.source,
        "status": run.status,
        "loss_key": run.loss_key,
        "lr_key": run.lr_key,
        "first_step": first_step,
        "last_step": last_step,
        "notes": list(notes),
    }


def report_entry(report: Report, extras: dict[str, Any]) -> dict[str, Any]:
    """One ``runs[]`` entry: ``report.to_dict()`` plus extras that do not clash with it."""
    entry = report.to_dict()
    for key, value in extras.items():
        entry.setdefault(key, value)
    return entry


def format_json(
    entries: Sequence[dict[str, Any]],
    sweep: Recommendation | None = None,
    errors: Sequence[tuple[str, str]] = (),
    skipped: Sequence[tuple[str, str, str]] = (),
) -> str:
    """The one JSON document ``--format json`` prints (standard JSON: no NaN literals).

    ``skipped``: ``(run, reason, message)`` of each run left out as no log of steps."""
    document: dict[str, Any] = {"runs": [_finite(e) for e in entries]}
    if sweep is not None:
        document["sweep"] = _finite(sweep.to_dict())
    if errors:
        document["errors"] = [{"run": spec, "error": message} for spec, message in errors]
    if skipped:
        document["skipped"] = [
            {"run": run, "reason": reason, "message": message} for run, reason, message in skipped
        ]
    return json.dumps(document, indent=2, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def format_report_text(report: Report, run: Run, notes: Sequence[str] = ()) -> str:
    """A readable report of one run: identity, steps, schedule, findings, what to do."""
    extras = run_extras(run, notes)
    return format_entry_text(report_entry(report, extras))


def format_entry_text(entry: dict[str, Any]) -> str:
    """The text report of one JSON entry (so the text and JSON outputs cannot disagree)."""
    lines = [f"Run {entry.get('name') or entry['run']}"]
    if entry.get("name") and entry.get("name") != entry["run"]:
        lines.append(f"{_INDENT}id: {entry['run']}")
    lines.append(_INDENT + _steps_line(entry))
    schedule = entry.get("schedule") or {}
    if schedule:
        lines.append(f"{_INDENT}schedule: {_schedule_text(schedule)}")
    for note in entry.get("notes") or ():
        lines.append(f"{_INDENT}note: {note}")
    if "range_test" in entry:
        lines += _range_test_lines(entry["range_test"])
    else:
        lines += _findings_lines(entry.get("findings") or [])
    lines += _recommendation_lines("Recommendation", entry["recommendation"])
    return "\n".join(lines)


def _steps_line(entry: dict[str, Any]) -> str:
    count = entry.get("num_steps", 0)
    parts = [f"{count} step" if count == 1 else f"{count} steps"]
    if entry.get("first_step") is not None:
        parts[0] += f" ({entry['first_step']}..{entry['last_step']})"
    if entry.get("status"):
        parts.append(str(entry["status"]))
    if entry.get("loss_key"):
        parts.append(f"loss {entry['loss_key']!r}")
    parts.append(f"lr {entry['lr_key']!r}" if entry.get("lr_key") else "no LR logged")
    return ", ".join(parts)


def _schedule_text(schedule: dict[str, Any]) -> str:
    text = schedule.get("description") or schedule.get("kind", "unknown")
    start, end = schedule.get("initial_lr"), schedule.get("final_lr")
    if _is_number(start) and _is_number(end):
        text += f", lr {_num(start)} -> {_num(end)}"
    if _is_number(schedule.get("peak_lr")) and schedule.get("peak_lr") not in (start, end):
        text += f" (peak {_num(schedule['peak_lr'])})"
    return text


def _findings_lines(findings: list[dict[str, Any]]) -> list[str]:
    if not findings:
        return [f"{_INDENT}findings: none"]
    ordered = sorted(findings, key=lambda f: (-severity_rank(f["severity"]), f["start_step"]))
    lines = [f"{_INDENT}findings:"]
    for f in ordered:
        where = f"step {f['start_step']}"
        if f["end_step"] != f["start_step"]:
            where = f"steps {f['start_step']}-{f['end_step']}"
        lines.append(
            f"{_INDENT * 2}[{f['severity'].upper()}] {f['kind']} at {where}: {f['message']}"
        )
    return lines


def _range_test_lines(range_test: dict[str, Any]) -> list[str]:
    if not _is_number(range_test.get("suggested_lr")):
        return [f"{_INDENT}LR range test: no suggestion (too few finite points)"]
    line = f"{_INDENT}LR range test: start at lr={_num(range_test['suggested_lr'])}"
    if range_test.get("method"):
        line += f" ({range_test['method']} rule)"
    tested = range_test.get("tested_lr_range")
    details = []
    if _is_number(range_test.get("min_loss_lr")):
        details.append(f"loss lowest at lr={_num(range_test['min_loss_lr'])}")
    if tested and len(tested) == 2:
        details.append(f"tested {_num(tested[0])} to {_num(tested[1])}")
    return [line + ("; " + ", ".join(details) if details else "")]


def _recommendation_lines(title: str, rec: dict[str, Any]) -> list[str]:
    head = f"{_INDENT}{title}: {rec['action'].replace('_', ' ')}"
    if _is_number(rec.get("suggested_lr")):
        head += f", lr={_num(rec['suggested_lr'])}"
    if _is_number(rec.get("factor")):
        head += f" (x{_num(rec['factor'])})"
    lines = [head]
    if rec.get("message"):
        lines.append(f"{_INDENT * 2}{rec['message']}")
    return lines


def format_sweep_text(sweep: Recommendation, num_runs: int) -> str:
    """The sweep section printed after the per-run reports."""
    lines = [f"Sweep over {num_runs} runs"]
    lines += _recommendation_lines("Recommendation", sweep.to_dict())
    return "\n".join(lines)


def format_summary_text(
    entries: Sequence[dict[str, Any]], errors: int, skipped: Mapping[str, int]
) -> str:
    """One closing line: how many runs, how many with findings of each severity, how many
    were skipped (``skipped``: why -> how many)."""
    counts = {"critical": 0, "warning": 0, "info": 0}
    for entry in entries:
        worst = max((severity_rank(f["severity"]) for f in entry["findings"]), default=0)
        if worst:
            counts[("info", "warning", "critical")[worst - 1]] += 1
    parts = [f"{len(entries)} run{'s' if len(entries) != 1 else ''} analysed"]
    parts += [f"{n} {severity}" for severity, n in counts.items() if n]
    parts += [f"{n} skipped ({why})" for why, n in skipped.items() if n]
    if errors:
        parts.append(f"{errors} bad input{'s' if errors != 1 else ''}")
    return "Summary: " + ", ".join(parts)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num(value: float) -> str:
    return f"{value:.3g}"
