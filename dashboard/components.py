"""Small Dash components built from lrwatch data: the recommendation card, findings, params.

Everything a person or a run named is passed as a plain string child, so Dash renders it as
text: a run called ``<img src=x onerror=alert(1)>`` shows those characters, never an image.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from urllib.parse import quote

from dash import html

from dashboard import ids
from dashboard.data import liveness
from dashboard.figures import SEVERITY_COLOURS
from lrwatch.analysis.findings import Finding, Recommendation, Report, Schedule

CARD = {  # the box every card of the dashboard is drawn in
    "border": "1px solid #ddd",
    "borderRadius": "6px",
    "padding": "10px 14px",
    "margin": "8px 0",
}


def run_href(run_id: str) -> str:
    return "/run/" + quote(run_id, safe="")


def compare_href(run_ids: Sequence[str]) -> str:
    return "/compare?runs=" + ",".join(quote(r, safe="") for r in run_ids)


def started_text(start_time_ms: int | None) -> str:
    if not start_time_ms:
        return ""
    when = dt.datetime.fromtimestamp(start_time_ms / 1000, tz=dt.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M")


def recommendation_card(recommendation: Recommendation | None, *, error: str | None = None):
    """What to change: the action, the suggested LR (if any) and the reasoning."""
    if recommendation is None:
        text = f"no diagnosis: {error}" if error else "no diagnosis (this run has no loss)"
        return html.Div([html.H4("Recommendation"), html.P(text)], style=CARD)
    rows = [html.H4("Recommendation"), html.P(html.B(recommendation.action.replace("_", " ")))]
    if recommendation.suggested_lr is not None:
        rows.append(html.P(["suggested LR: ", html.B(f"{recommendation.suggested_lr:.3g}",
                                                     className="suggested-lr")]))  # fmt: skip
    if recommendation.factor is not None:
        rows.append(html.P(f"factor: x{recommendation.factor:g}"))
    rows.append(html.P(recommendation.message, className="recommendation-message"))
    return html.Div(rows, id=ids.RECOMMENDATION_CARD, style={**CARD, "background": "#f7f9fc"})


def schedule_card(schedule: Schedule | None):
    if schedule is None:
        return html.Div()
    rows = [html.H4("LR schedule"), html.P(schedule.describe(), className="schedule-kind")]
    details = [("peak", schedule.peak_lr), ("initial", schedule.initial_lr),
               ("final", schedule.final_lr)]  # fmt: skip
    text = ", ".join(f"{name} {value:.3g}" for name, value in details if value is not None)
    if text:
        rows.append(html.P(text))
    return html.Div(rows, style=CARD)


def findings_list(findings: Sequence[Finding]):
    """One line per finding: severity, kind, step range and the message."""
    if not findings:
        return html.Div([html.H4("Findings"), html.P("nothing wrong found")], style=CARD)
    items = [
        html.Li(
            [
                html.Span(
                    f"{f.severity} ",
                    style={"color": SEVERITY_COLOURS.get(f.severity), "fontWeight": "bold"},
                ),  # fmt: skip
                html.Span(f"{f.kind.replace('_', ' ')} "),
                html.Span(f"(steps {f.start_step}-{f.end_step}): ", style={"color": "#666"}),
                html.Span(f.message),
            ],
            className="finding",
        )
        for f in findings
    ]
    return html.Div([html.H4(f"Findings ({len(findings)})"), html.Ul(items)], style=CARD)


def params_table(params: dict[str, str], tags: dict[str, str]):
    shown = sorted(params.items()) + sorted(
        (k, v) for k, v in tags.items() if not k.startswith("mlflow.")
    )
    rows = [html.Tr([html.Td(key), html.Td(value[:300])]) for key, value in shown]
    return html.Table(rows, style={"fontSize": "13px"})


def status_line(
    status: str | None,
    points: int,
    last_step: int | None,
    report: Report | None,
    silent: tuple[float, float] | None = None,
):
    """One line above the chart; ``silent``: (seconds since the last point, usual seconds between
    points) of a running run that stopped logging (:func:`dashboard.data.liveness.silent_for_s`)."""
    state = status or "unknown"
    if silent is not None:
        quiet, gap = silent
        state += (
            f" - no new point for {liveness.duration(quiet)} (usually one every "
            f"{liveness.duration(gap)}): the job may have stopped without ending its run"
        )
    parts = [f"status: {state}", f"{points:,} points"]
    if last_step is not None:
        parts.append(f"last step {last_step:,}")
    if report is not None and report.worst_severity:
        parts.append(f"worst finding: {report.worst_severity}")
    return " | ".join(parts)
