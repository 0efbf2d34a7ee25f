"""Pure figure builders: data in, ``plotly.graph_objects.Figure`` out. No Dash import.

The same figures serve the dashboard, a notebook (``figure_run(run, report.findings).show()``)
and static HTML (``fig.write_html``). Long series are smoothed at full resolution, then
downsampled (:mod:`dashboard.data.downsample`): spikes, first and last points survive, and
NaN/inf losses are drawn as red crosses along the top of the loss panel.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.data.downsample import DEFAULT_MAX_POINTS, Downsampled, downsample, ema
from dashboard.log_axis import log_axis
from lrwatch import keys
from lrwatch.analysis.findings import Finding
from lrwatch.run import Run, Series

SEVERITY_COLOURS = {"info": "#4C78A8", "warning": "#F58518", "critical": "#E45756"}
RAW_COLOUR, SMOOTH_COLOUR, LR_COLOUR = "rgba(31,119,180,0.35)", "#1f77b4", "#2ca02c"
NONFINITE_COLOUR = "#d62728"
TEMPLATE = "plotly_white"
# Ticks on a log axis: a run's or a comparison's loss panel (~230-300 px high), its short LR
# panel (~150-200 px), and along a chart's wide LR axis.
_LOSS_PANEL_TICKS = 6
_LR_PANEL_TICKS = 5
_LR_WIDE_TICKS = 10
# The loss panel switches to a log axis when its largest value exceeds the median this many times.
AUTO_LOG_SPAN = 50.0
# A finding shorter than this share of the visible steps is widened so it stays visible.
_MIN_SHADE_FRACTION = 0.004


def plain(text: str) -> str:
    """Text shown as itself: plotly reads ``<a href>``, ``<b>`` and entities in names, titles and
    hover text, so a run named ``<a href="...">`` would become a link. Entities keep it literal."""
    return html.escape(str(text), quote=False)


def figure_message(text: str, *, height: int = 300) -> go.Figure:
    """An empty chart that says ``text`` (no data, an error, still loading)."""
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, font={"size": 15}, x=0.5, y=0.5)
    fig.update_layout(template=TEMPLATE, height=height, xaxis_visible=False, yaxis_visible=False)
    return fig


def figure_run(
    run: Run,
    findings: Sequence[Finding] = (),
    *,
    smoothing: float = 0.6,
    extra_keys: Sequence[str] = (),
    x_range: tuple[float, float] | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    loss_axis: str = "auto",
) -> go.Figure:
    """Loss (raw + bias-corrected EMA), LR (log y) and extra metrics on one shared step axis.

    Findings are shaded from ``start_step`` to ``end_step`` in their severity colour; hovering
    the shaded band on the loss panel shows the finding's message.

    Args:
        run: the run; its ``loss`` is required, ``lr`` and ``extra_keys`` are drawn when present.
        findings: what to shade (e.g. ``report.findings`` plus live findings from tags).
        smoothing: EMA weight in [0, 1), applied on the full-resolution loss before downsampling.
        extra_keys: more metric keys of ``run``, one panel each (e.g. ``val/loss``, ``grad_norm``).
        x_range: draw only this step range at full detail (the zoom), else the whole run.
        max_points: points per line after downsampling.
        loss_axis: ``linear``, ``log``, or ``auto`` (log when the loss is positive and spans more
            than :data:`AUTO_LOG_SPAN` times its median: a blow-up would flatten a linear axis).
    """
    loss = run.loss
    if loss is None or not len(loss):
        return figure_message(f"run {plain(run.display_name())} has no loss metric to draw")
    extras = [k for k in extra_keys if k in run.metrics and k != run.lr_key]
    lr_series = run.lr if run.lr is not None and len(run.lr) > 0 else None
    has_lr = lr_series is not None
    panels = ["loss"] + (["lr"] if has_lr else []) + extras
    heights = [0.55] + [0.45 / (len(panels) - 1)] * (len(panels) - 1) if len(panels) > 1 else [1]
    titles = [run.loss_key or "loss"] + ([run.lr_key or "lr"] if has_lr else []) + extras
    titles = [plain(t) for t in titles]  # metric keys are the user's text
    fig = make_subplots(
        rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.04, row_heights=heights
    )
    for row, title in enumerate(titles, start=1):
        fig.update_yaxes(title_text=title, row=row, col=1)
    raw = downsample(loss, max_points=max_points, x_range=x_range)
    smooth = downsample(
        loss, max_points=max_points, x_range=x_range, values=ema(loss.values, smoothing)
    )
    fig.add_trace(_line(raw, "loss (raw)", RAW_COLOUR, width=1), row=1, col=1)
    if smoothing > 0:
        fig.add_trace(
            _line(smooth, f"loss (EMA {smoothing:g})", SMOOTH_COLOUR, width=2), row=1, col=1
        )
    _add_nonfinite_markers(fig, raw, row=1)
    if lr_series is not None:
        lr = downsample(lr_series, max_points=max_points, x_range=x_range)
        fig.add_trace(_line(lr, run.lr_key or "lr", LR_COLOUR, width=1.5), row=2, col=1)
        fig.update_yaxes(log_axis(lr.values, max_ticks=_LR_PANEL_TICKS), row=2, col=1)
    for row, key in enumerate(extras, start=len(panels) - len(extras) + 1):
        extra = downsample(run.metrics[key], max_points=max_points, x_range=x_range)
        fig.add_trace(_line(extra, key, "#9467bd", width=1.5), row=row, col=1)
        if keys.is_lr_key(key):  # another param group's or optimizer's LR: scaled as the LR is
            fig.update_yaxes(log_axis(extra.values, max_ticks=_LR_PANEL_TICKS), row=row, col=1)
    if _use_log_axis(raw.values, loss_axis):
        drawn = np.concatenate([raw.values, smooth.values])
        fig.update_yaxes(log_axis(drawn, max_ticks=_LOSS_PANEL_TICKS), row=1, col=1)
    _shade_findings(fig, findings, raw, x_range or _full_range(loss))
    fig.update_xaxes(title_text="step", row=len(panels), col=1)
    if x_range is not None:  # keep the zoom: autorange would widen to the findings' bands
        fig.update_xaxes(range=sorted(x_range))
    fig.update_layout(
        template=TEMPLATE, height=320 + 180 * (len(panels) - 1), uirevision=run.id,
        margin={"l": 60, "r": 20, "t": 40, "b": 40}, hovermode="x unified",
        legend={"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom"},
    )  # fmt: skip
    return fig


def figure_range_test(
    lrs: np.ndarray,
    losses: np.ndarray,
    *,
    smoothed: np.ndarray | None = None,
    suggested_lr: float | None = None,
    method: str | None = None,
) -> go.Figure:
    """An LR range test: loss against LR (log x), the suggested LR marked by a dashed line.

    ``smoothed`` is the curve the suggestion rule read (drawn bold); raw losses are drawn thin.
    """
    lrs, losses = np.asarray(lrs, float), np.asarray(losses, float)
    smooth = ema(losses, 0.9) if smoothed is None else np.asarray(smoothed, float)
    keep = np.isfinite(lrs) & (lrs > 0)
    lrs, losses, smooth = lrs[keep], losses[keep], smooth[keep]
    if lrs.size == 0:
        return figure_message("this range test logged no positive learning rates")
    finite = np.isfinite(losses)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=lrs[finite], y=losses[finite], mode="lines", name="loss",
                             line={"color": RAW_COLOUR, "width": 1}))  # fmt: skip
    fig.add_trace(go.Scatter(x=lrs, y=smooth, mode="lines", name="loss (smoothed)",
                             line={"color": SMOOTH_COLOUR, "width": 2}))  # fmt: skip
    if suggested_lr is not None and np.isfinite(suggested_lr) and suggested_lr > 0:
        label = f"suggested LR {suggested_lr:.3g}" + (f" ({method})" if method else "")
        fig.add_vline(x=suggested_lr, line_dash="dash", line_color=SEVERITY_COLOURS["critical"])
        ok = np.isfinite(smooth)
        y_at = (
            float(np.interp(np.log(suggested_lr), np.log(lrs[ok]), smooth[ok])) if ok.any() else 0
        )
        fig.add_trace(go.Scatter(x=[suggested_lr], y=[y_at], mode="markers+text", name=label,
                                 text=[label], textposition="top right",
                                 marker={"size": 12, "color": SEVERITY_COLOURS["critical"]}))  # fmt: skip
    _clip_y_to_finite(fig, losses)
    fig.update_xaxes(log_axis(lrs, max_ticks=_LR_WIDE_TICKS), title_text="learning rate")
    fig.update_yaxes(title_text="loss")
    fig.update_layout(template=TEMPLATE, height=420, margin={"l": 60, "r": 20, "t": 30, "b": 40})
    return fig


def figure_compare(
    runs: Sequence[Run],
    *,
    smoothing: float = 0.6,
    max_points: int = DEFAULT_MAX_POINTS,
) -> go.Figure:
    """Several runs' smoothed losses (top) and LRs (bottom, log y) on one step axis."""
    drawable = [r for r in runs if r.loss is not None and len(r.loss)]
    if not drawable:
        return figure_message("none of these runs logged a loss")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.65, 0.35], subplot_titles=["loss (smoothed)", "lr"])  # fmt: skip
    drawn, drawn_lrs = [], [np.empty(0)]
    for i, run in enumerate(drawable):
        colour = _palette(i)
        loss = run.loss
        assert loss is not None  # drawable holds only runs with a loss
        line = downsample(loss, max_points=max_points, values=ema(loss.values, smoothing))
        drawn.append(line.values)
        fig.add_trace(
            _line(line, plain(run.display_name()), colour, width=1.5, group=run.id), row=1, col=1
        )
        if run.lr is not None and len(run.lr):
            lr = downsample(run.lr, max_points=max_points)
            drawn_lrs.append(lr.values)
            fig.add_trace(_line(lr, plain(run.display_name()), colour, width=1, group=run.id,
                                showlegend=False), row=2, col=1)  # fmt: skip
    fig.update_yaxes(log_axis(np.concatenate(drawn_lrs), max_ticks=_LR_PANEL_TICKS), row=2, col=1)
    losses = np.concatenate(drawn)
    if _use_log_axis(losses, "auto"):  # a diverged run would flatten the rest
        fig.update_yaxes(log_axis(losses, max_ticks=_LOSS_PANEL_TICKS), row=1, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_layout(template=TEMPLATE, height=560, margin={"l": 60, "r": 20, "t": 40, "b": 40})
    return fig


def figure_sensitivity(
    lrs: npt.ArrayLike,
    losses: npt.ArrayLike,
    *,
    names: Sequence[str] | None = None,
    suggested_lr: float | None = None,
    loss_label: str = "final loss",
) -> go.Figure:
    """A sweep's LR sensitivity: final (or best) loss against LR on a log x axis.

    Diverged runs (non-finite loss) are drawn as red crosses along the top; the recommended LR
    is a dashed line.
    """
    lr_values, loss_values = np.asarray(lrs, float), np.asarray(losses, float)
    if lr_values.size == 0:
        return figure_message("no runs with a learning rate and a loss to compare")
    order = np.argsort(lr_values)
    lr_values, loss_values = lr_values[order], loss_values[order]
    text = [plain(names[i]) for i in order] if names is not None else None
    finite = np.isfinite(loss_values)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=lr_values[finite], y=loss_values[finite], mode="lines+markers",
                             name=loss_label, text=None if text is None else
                             [t for t, f in zip(text, finite) if f],
                             marker={"size": 9, "color": SMOOTH_COLOUR}))  # fmt: skip
    if (~finite).any():
        top = float(loss_values[finite].max()) if finite.any() else 1.0
        fig.add_trace(go.Scatter(x=lr_values[~finite], y=[top] * int((~finite).sum()),
                                 mode="markers", name="diverged (NaN/inf)",
                                 marker={"symbol": "x", "size": 12,
                                         "color": NONFINITE_COLOUR}))  # fmt: skip
    shown = lr_values[np.isfinite(lr_values) & (lr_values > 0)]
    if suggested_lr is not None and np.isfinite(suggested_lr) and suggested_lr > 0:
        fig.add_vline(x=suggested_lr, line_dash="dash", line_color=SEVERITY_COLOURS["critical"])
        # Its text by hand: plotly.js places an annotation on a log axis at the log10 of its x,
        # which add_vline's own text does not take: "recommended LR 0.572" sat at 10**0.572
        # = 3.7, right of a sweep whose LRs ended at 0.91, and the axis grew to 800 to fit it.
        fig.add_annotation(x=np.log10(suggested_lr), xref="x", y=1, yref="y domain",
                           xanchor="right", yanchor="top", showarrow=False,
                           text=f"recommended LR {suggested_lr:.3g}")  # fmt: skip
        shown = np.append(shown, suggested_lr)
    # The range spans the LRs and the recommendation, whatever the text needs.
    fig.update_xaxes(log_axis(shown, max_ticks=_LR_WIDE_TICKS), title_text="learning rate")
    fig.update_yaxes(title_text=loss_label)
    fig.update_layout(template=TEMPLATE, height=420, margin={"l": 60, "r": 20, "t": 30, "b": 40})
    return fig


# --- helpers -------------------------------------------------------------------------------------


def _line(points: Downsampled, name, colour, *, width, group=None, showlegend=True) -> go.Scatter:
    # SVG, not WebGL: every line stays under ~2,000 points (zooming re-samples), where SVG pans
    # smoothly too, and a WebGL chart's first draw took 0.4 s longer in headless Chromium without
    # a GPU (0.56 s against 0.14 s for the 1M-step run: a GL context and shaders come first).
    return go.Scatter(
        x=points.steps, y=points.values, mode="lines", name=name, legendgroup=group,
        showlegend=showlegend, line={"color": colour, "width": width},
    )  # fmt: skip


def _add_nonfinite_markers(fig: go.Figure, raw: Downsampled, *, row: int) -> None:
    if raw.nonfinite_steps.size == 0:
        return
    top = float(raw.values.max()) if raw.values.size else 1.0
    labels = [str(v) for v in raw.nonfinite_values]  # "nan", "inf", "-inf"
    fig.add_trace(go.Scatter(x=raw.nonfinite_steps, y=np.full(raw.nonfinite_steps.size, top),
                             mode="markers", name="NaN / inf loss", text=labels,
                             hovertemplate="step %{x}: loss %{text}<extra></extra>",
                             marker={"symbol": "x", "size": 10, "color": NONFINITE_COLOUR}),
                  row=row, col=1)  # fmt: skip


def _shade_findings(fig, findings: Sequence[Finding], raw: Downsampled, x_range) -> None:
    low, high = (raw.values.min(), raw.values.max()) if raw.values.size else (0.0, 1.0)
    min_width = _MIN_SHADE_FRACTION * max(abs(x_range[1] - x_range[0]), 1)
    for finding in findings:
        start, end = float(finding.start_step), float(finding.end_step)
        if end - start < min_width:
            start, end = start - min_width / 2, end + min_width / 2
        colour = SEVERITY_COLOURS.get(finding.severity, "#7f7f7f")
        fig.add_vrect(x0=start, x1=end, fillcolor=colour, opacity=0.18, line_width=0,
                      layer="below", row="all", col=1)  # fmt: skip
        # Shapes have no hover text: an almost transparent filled polygon carries the message.
        label = f"{finding.severity} {finding.kind.replace('_', ' ')}: {finding.message}"
        fig.add_trace(go.Scatter(x=[start, start, end, end, start], y=[low, high, high, low, low],
                                 fill="toself", mode="lines", line={"width": 0},
                                 fillcolor="rgba(0,0,0,0.01)", hoveron="fills", hoverinfo="text",
                                 text=label, name=f"{finding.kind} ({finding.severity})",
                                 showlegend=False), row=1, col=1)  # fmt: skip


def _use_log_axis(values: np.ndarray, loss_axis: str) -> bool:
    if loss_axis not in ("auto", "linear", "log"):
        raise ValueError(f"loss_axis must be auto, linear or log, not {loss_axis!r}")
    if loss_axis != "auto" or values.size == 0:
        return loss_axis == "log"
    return bool(values.min() > 0 and values.max() > AUTO_LOG_SPAN * np.median(values))


def _full_range(series: Series) -> tuple[float, float]:
    return float(series.steps[0]), float(series.steps[-1])


def _clip_y_to_finite(fig: go.Figure, losses: np.ndarray) -> None:
    """Range tests end in a blow-up: cap the y axis so the useful part stays readable."""
    finite = losses[np.isfinite(losses)]
    if finite.size < 3:
        return
    low, start = float(finite.min()), float(finite[: max(finite.size // 10, 1)].mean())
    high = max(start * 1.5, low + 1e-12)
    fig.update_yaxes(range=[low - 0.05 * (high - low), high])


def _palette(i: int) -> str:
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip
    return colours[i % len(colours)]
