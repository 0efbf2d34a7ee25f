"""What each page shows, as callback outputs: data layer in, figures and components out.

Callbacks stay thin by calling one function here. Every function catches failures and answers
with a message in the page (an unknown run, an empty experiment, an unreachable store), never a
traceback; unexpected errors are logged with their traceback on the server side only.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from urllib.parse import parse_qs, unquote

from dash import dcc, html

from dashboard import components, figures, ids, layout
from dashboard.data import DashboardData, DataError, liveness
from dashboard.data.curves import range_test_curve, sensitivity_curve
from lrwatch.analysis.sweep import diverged_in
from lrwatch.sources.files import read_notes
from lrwatch.sources.mlflow_store import unstepped_note
from lrwatch.store import display_uri

log = logging.getLogger("lrwatch.dashboard")
_RANGE_KEY = re.compile(r"^xaxis\d*\.range\[([01])\]$")


def _problem(exc: Exception) -> str:
    if isinstance(exc, DataError):
        return str(exc)
    log.exception("dashboard error")
    return f"something went wrong: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


# --- routing ---------------------------------------------------------------------------------


def page_for(data: DashboardData, pathname: str | None, search: str | None):
    """The page for a URL: ``/`` runs, ``/run/<id>`` one run, ``/compare?runs=a,b`` several."""
    path = pathname or "/"
    if path.startswith("/run/"):
        return layout.run_page(unquote(path[len("/run/") :]))
    if path.rstrip("/") == "/compare":
        runs = parse_qs((search or "").lstrip("?")).get("runs", [""])[0]
        return layout.compare_page([r for r in runs.split(",") if r])
    if path in ("/", ""):
        try:
            experiments = data.experiments()
        except Exception as exc:  # noqa: BLE001
            return layout.message(_problem(exc), kind="error")
        if not experiments:
            return layout.message(f"no experiments in {display_uri(data.tracking_uri)} yet")
        return layout.runs_page(experiments, _default_experiment(data, experiments))
    return layout.not_found_page(path)


def _default_experiment(data: DashboardData, experiments) -> str:
    """The newest experiment that has runs (the empty 'Default' one is rarely wanted)."""
    for experiment_id, _ in experiments[:20]:
        try:
            if data.has_runs(experiment_id):
                return experiment_id
        except DataError:
            continue
    return experiments[0][0]


# --- runs view -------------------------------------------------------------------------------


def runs_table(data: DashboardData, experiment_id: str | None):
    """(rows, message, refresh disabled) for the runs table."""
    if not experiment_id:
        return [], layout.message("pick an experiment"), True
    try:
        summaries = data.runs(experiment_id)
        badges = data.badges(summaries)
    except Exception as exc:  # noqa: BLE001
        return [], layout.message(_problem(exc), kind="error"), True
    if not summaries:
        return [], layout.message("this experiment has no runs yet"), True
    rows = [
        {
            "id": s.id,
            "name": s.name or s.id,
            "status": s.status or "unknown",
            "last_step": s.last_step,
            "base_lr": _number(s.base_lr),
            "optimizer": s.optimizer or "",
            "diagnosis": "range test" if s.is_range_test else badges[s.id],
            "started": components.started_text(s.start_time_ms),
            "open": f"[open]({components.run_href(s.id)})",
        }
        for s in summaries
    ]
    pending = data.pending_analyses()
    running = sum(1 for s in summaries if s.status == "running")
    note = f"{len(rows)} runs" + (f", {running} running" if running else "")
    note += f", analysing {pending} in the background" if pending else ""
    return rows, html.Div(note, style={"color": "#555"}), not (pending or running)


def compare_link(selected_ids: Sequence[str] | None):
    """(href, text) of the compare link for the selected rows."""
    chosen = list(selected_ids or [])
    if not chosen:
        return "/compare", "Compare selected runs (select rows first)"
    return components.compare_href(chosen), f"Compare {len(chosen)} selected runs"


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


# --- run view --------------------------------------------------------------------------------


def x_range_from(relayout: dict | None) -> tuple[float, float] | None:
    """The zoomed step range from a graph's relayoutData, None when autoscaled."""
    if not relayout:
        return None
    ends: dict[str, float] = {}
    for key, value in relayout.items():
        match = _RANGE_KEY.match(key)
        if match:
            ends[match.group(1)] = float(value)
        elif re.match(r"^xaxis\d*\.range$", key) and isinstance(value, list) and len(value) == 2:
            ends = {"0": float(value[0]), "1": float(value[1])}
    return (ends["0"], ends["1"]) if len(ends) == 2 else None


def changes_x_range(relayout: dict | None) -> bool:
    """True when a relayout zoomed, panned or reset the step axis (worth re-downsampling)."""
    return any(
        _RANGE_KEY.match(key) or re.match(r"^xaxis\d*\.(range|autorange)$", key)
        for key in (relayout or {})
    )


def run_view(data, run_id, smoothing, extra_keys, relayout, *, refresh: bool):
    """All outputs of the run page (see callbacks.register_run_view for their order)."""
    try:
        loaded = data.load(run_id, extra_keys=extra_keys or (), refresh=refresh)
        extra_options = data.extra_metric_keys(loaded.summary)
    except Exception as exc:  # noqa: BLE001
        text = _problem(exc)
        fig = figures.figure_message(text)
        return (fig, layout.message(text, kind="error"), run_id, "", None, None, None,
                None, [], True, None, layout.extra_metrics_style(shown=False))  # fmt: skip
    run, report = loaded.run, loaded.report
    fig = figures.figure_run(run, loaded.findings, smoothing=float(smoothing or 0),
                             extra_keys=extra_keys or (), x_range=x_range_from(relayout))  # fmt: skip
    points = len(run.loss) if run.loss is not None else 0
    last = int(run.loss.steps[-1]) if points else None
    return (
        fig,
        _run_note(run, loaded.summary.last_step),
        run.display_name(),
        components.status_line(
            loaded.summary.status, points, last, report, _silence(loaded, points)
        ),
        components.recommendation_card(
            report.recommendation if report else None, error=loaded.analysis_error
        ),  # fmt: skip
        components.schedule_card(report.schedule if report else None),
        components.findings_list(loaded.findings),
        _range_test_block(run, report) if run.is_range_test else None,
        [{"label": k, "value": k} for k in extra_options],
        not loaded.is_running,
        components.params_table(loaded.summary.params, loaded.summary.tags),
        layout.extra_metrics_style(shown=bool(extra_options)),
    )


def _silence(loaded, points: int) -> tuple[float, float] | None:
    summary = loaded.summary
    now_ms = int(time.time() * 1000)
    return liveness.silent_for_s(
        summary.status, summary.start_time_ms, summary.last_logged_ms, points, now_ms
    )


def _run_note(run, last_step: int | None):
    """What the page says above the chart: no loss yet, a loss logged with no step, or how the
    loss was read (a sum of Ultralytics' loss parts)."""
    if run.loss is None:
        return layout.message("this run has no loss metric yet")
    if len(run.loss) > 1 and last_step == 0:
        # The store's latest loss point sits at step 0 though it has several: all of them do,
        # and they were read in logging order (the x axis is that order, not the run's steps).
        return layout.message(unstepped_note(len(run.loss), run.loss_key))
    notes = read_notes(run)
    return layout.message("; ".join(notes)) if notes else None


def run_figure(data, run_id, smoothing, extra_keys, relayout):
    """Only the run chart, for the visible step range (zoom); a message figure on failure."""
    try:
        loaded = data.load(run_id, extra_keys=extra_keys or ())
    except Exception as exc:  # noqa: BLE001
        return figures.figure_message(_problem(exc))
    return figures.figure_run(loaded.run, loaded.findings, smoothing=float(smoothing or 0),
                              extra_keys=extra_keys or (), x_range=x_range_from(relayout))  # fmt: skip


def _range_test_block(run, report):
    curve = range_test_curve(run, report)
    fig = figures.figure_range_test(curve.lrs, curve.losses, smoothed=curve.smoothed,
                                    suggested_lr=curve.suggested_lr, method=curve.method)  # fmt: skip
    note = layout.message(curve.note, kind="warning") if curve.note else None
    return html.Div([html.H3("LR range test: loss against learning rate"), note,
                     dcc.Graph(id=ids.RANGE_TEST_FIGURE, figure=fig)])  # fmt: skip


# --- compare view ----------------------------------------------------------------------------


def compare_view(data: DashboardData, run_ids: Sequence[str], smoothing):
    """(overlay figure, sensitivity figure, sweep recommendation card, message)."""
    try:
        loaded = data.load_many(list(run_ids or []))
    except Exception as exc:  # noqa: BLE001
        text = _problem(exc)
        empty = figures.figure_message(text)
        return empty, empty, None, layout.message(text, kind="error")
    runs = [item.run for item in loaded]
    overlay = figures.figure_compare(runs, smoothing=float(smoothing or 0))
    diverged = {item.run.id for item in loaded if diverged_in(item.findings)}
    try:
        curve = sensitivity_curve(runs, diverged=diverged)
    except Exception as exc:  # noqa: BLE001 - the overlay still helps
        return overlay, figures.figure_message(_problem(exc)), None, None
    recommendation = curve.recommendation
    sensitivity = figures.figure_sensitivity(
        curve.lrs, curve.losses, names=curve.names or None, loss_label=curve.loss_label,
        suggested_lr=recommendation.suggested_lr if recommendation else None,
    )  # fmt: skip
    card = components.recommendation_card(recommendation, error=curve.note or "no sweep verdict")
    note = layout.message(curve.note, kind="warning") if curve.note else None
    return overlay, sensitivity, card, note
