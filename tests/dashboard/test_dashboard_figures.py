"""Pure figure builders: what they mark comes from the data and the analysis, nothing else."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from dashboard.figures import (
    SEVERITY_COLOURS,
    figure_compare,
    figure_range_test,
    figure_run,
    figure_sensitivity,
)
from dashboard.log_axis import log_ticks, tick_label
from lrwatch.analysis.findings import Finding
from lrwatch.analysis.range_test import range_test_curve, suggest_lr
from lrwatch.run import Run, Series


def _run(n=5000, *, blow_up_at=None, run_id="r1") -> Run:
    steps = np.arange(n)
    loss = 1.0 / (1 + steps / 100) + 0.01 * np.cos(steps)
    if blow_up_at is not None:
        loss[blow_up_at:] = np.nan
        loss[blow_up_at - 1] = np.inf
    return Run(id=run_id, name=run_id, metrics={"train/loss": Series(steps, loss),
               "lr": Series(steps, np.full(n, 0.1)), "grad_norm": Series(steps, np.ones(n))})  # fmt: skip


def test_each_finding_is_shaded_in_its_severity_colour_with_its_message_on_hover():
    findings = [Finding("plateau", 1000, 2000, "warning", "flat from 1000"),
                Finding("divergence", 4000, 4000, "critical", "blew up at 4000")]  # fmt: skip
    fig = figure_run(_run(), findings)
    shapes = [s for s in fig.layout.shapes if s.xref == "x"]  # the loss panel's (one per panel)
    assert len(shapes) == 2 and len(fig.layout.shapes) == 2 * 2  # loss and LR panels
    assert (shapes[0].x0, shapes[0].x1) == (1000, 2000)
    assert shapes[0].fillcolor == SEVERITY_COLOURS["warning"]
    assert shapes[1].x0 < 4000 < shapes[1].x1  # a one-step finding is widened to stay visible
    hover = [t.text for t in fig.data if getattr(t, "hoveron", None) == "fills"]
    assert any("flat from 1000" in text for text in hover)
    assert any("blew up at 4000" in text for text in hover)


def test_nan_and_inf_losses_are_marked_and_kept_out_of_the_line():
    fig = figure_run(_run(blow_up_at=3000), smoothing=0.0)
    marks = next(t for t in fig.data if t.name == "NaN / inf loss")
    # 2,001 non-finite points are sampled evenly down to max_points, keeping both ends
    assert (marks.x[0], marks.x[-1], len(marks.x)) == (2999, 4999, 2000)
    raw = next(t for t in fig.data if t.name == "loss (raw)")
    assert np.isfinite(np.asarray(raw.y)).all() and raw.x[-1] == 2998


def test_the_smoothed_line_stops_where_the_loss_stopped_being_a_number():
    """It carried its last average through every NaN step after a blow-up: in the compare
    view, which draws only smoothed lines, a run dead at step 3000 sat flat to step 4999."""
    blown_up = _run(blow_up_at=3000)
    smoothed = next(t for t in figure_run(blown_up).data if t.name.startswith("loss (EMA"))
    (compared,) = [t for t in figure_compare([blown_up]).data if t.yaxis == "y"]
    for line in (smoothed, compared):
        assert np.isfinite(np.asarray(line.y)).all() and line.x[-1] == 2998


def test_lr_panel_is_log_scaled_and_extras_get_their_own_panel():
    fig = figure_run(_run(), extra_keys=["grad_norm"])
    assert fig.layout.yaxis2.type == "log"
    assert fig.layout.yaxis3.title.text == "grad_norm"
    assert fig.layout.xaxis3.title.text == "step"
    assert fig.layout.yaxis3.type is None  # a plain metric keeps plotly's linear axis


def test_another_param_groups_lr_is_drawn_on_a_log_axis_like_the_lr():
    """``lr/pg1`` (a second param group) sat on a linear axis under the log LR panel."""
    run = _run()
    run.metrics["lr/pg1"] = Series(run.lr.steps, np.geomspace(1e-2, 1e-5, len(run.lr)))
    axis = figure_run(run, extra_keys=["lr/pg1"]).layout.yaxis3
    assert (axis.type, axis.title.text) == ("log", "lr/pg1")
    assert {"1e-5", "1e-3"} <= set(axis.ticktext)


def test_a_million_step_run_ships_a_few_thousand_points():
    fig = figure_run(_run(1_000_000))
    assert all(len(trace.x) <= 2002 for trace in fig.data)
    assert isinstance(fig, go.Figure)


def test_range_test_marks_the_rate_suggest_lr_picks():
    lrs = np.geomspace(1e-6, 1, 120)
    losses = 2 - np.tanh(np.log10(lrs / 1e-3)) + (lrs / 0.2) ** 3
    suggestion = suggest_lr(lrs, losses)
    run = Run(id="rt", metrics={"train/loss": Series(np.arange(120), losses),
                                "lr": Series(np.arange(120), lrs)})  # fmt: skip
    curve_lrs, curve_losses, smoothed = range_test_curve(run)
    fig = figure_range_test(curve_lrs, curve_losses, smoothed=smoothed,
                            suggested_lr=suggestion.lr, method=suggestion.method)  # fmt: skip
    assert fig.layout.xaxis.type == "log"
    assert fig.layout.shapes[0].x0 == suggestion.lr
    assert any(f"{suggestion.lr:.3g}" in (t.name or "") for t in fig.data)


def _run_with_lr(lrs: np.ndarray, run_id: str = "r") -> Run:
    steps = np.arange(len(lrs))
    return Run(id=run_id, name=run_id, metrics={"train/loss": Series(steps, 1 / (1 + steps)),
                                                "lr": Series(steps, lrs)})  # fmt: skip


def _rates_labelled(axis) -> list[tuple[float, float]]:
    """(tick value, the rate its label states) of each tick on the axis."""
    return [(value, float(text)) for value, text in zip(axis.tickvals, axis.ticktext)]


def test_log_axes_label_every_tick_with_the_number_it_marks():
    """plotly labelled an LR axis of under a few decades with bare mantissas: a constant 0.03
    sat on a panel reading "2, 0.1, 5, 2" (0.2, 0.1, 0.05, 0.02); a blown-up loss's axis read
    "1, 10M, 100T, 10^21". Every label now states its number, small ones as 3e-4, large ones
    as 1e14, and the axis holds what is drawn."""
    steps = np.arange(1000)
    cosine = 1e-3 * np.minimum(1, (steps + 1) / 100) * (1 + np.cos(np.pi * steps / 1000)) / 2
    schedules = {
        "constant 0.03": np.full(1000, 0.03),
        "Adam's 3e-4": np.full(1000, 3e-4),
        "step decay 0.1 -> 0.001": 0.1 * 0.1 ** (steps // 400),
        "warmup-cosine to 0": cosine,
    }
    range_test = np.geomspace(1e-7, 10, 100)
    axes = {name: figure_run(_run_with_lr(lrs)).layout.yaxis2 for name, lrs in schedules.items()}
    axes["compare"] = figure_compare(
        [_run_with_lr(lrs, name) for name, lrs in schedules.items()]
    ).layout.yaxis2
    axes["range test"] = figure_range_test(range_test, 2 - range_test).layout.xaxis
    axes["sensitivity"] = figure_sensitivity([1e-4, 3e-3, 0.05], [1.0, 0.5, 0.7]).layout.xaxis
    blown_up = _run_with_lr(np.full(100, 2.0))
    blown_up.metrics["train/loss"] = Series(np.arange(100), np.geomspace(2.5, 3e30, 100))
    axes["blown-up loss"] = figure_run(blown_up).layout.yaxis
    axes["blown-up loss compared"] = figure_compare(
        [blown_up, _run_with_lr(np.full(100, 0.1))]
    ).layout.yaxis
    for name, axis in axes.items():
        assert axis.type == "log", name
        low, high = axis.range
        labelled = _rates_labelled(axis)
        assert 1 <= len(labelled) <= 10, (name, axis.ticktext)
        for value, stated in labelled:
            assert stated == pytest.approx(value, rel=0.01), (name, axis.ticktext)
            assert low <= np.log10(value) <= high, (name, axis.ticktext)
    # The rate itself is on the constant runs' axes, and small rates read as people write them.
    assert "0.03" in axes["constant 0.03"].ticktext
    assert "3e-4" in axes["Adam's 3e-4"].ticktext
    assert {"1e-3", "0.01", "0.1"} <= set(axes["step decay 0.1 -> 0.001"].ticktext)
    assert {"1e-7", "1e-5", "1e-3", "0.1", "10"} <= set(axes["range test"].ticktext)
    assert {"1e6", "1e12", "1e30"} <= set(axes["blown-up loss"].ticktext)
    # A warmup from 0 and a cosine to 0 keep the zero off the log axis; the peak is inside.
    assert axes["warmup-cosine to 0"].range[1] > np.log10(1e-3)


@pytest.mark.parametrize(
    ("value", "label"),
    [(0.03, "0.03"), (0.1, "0.1"), (1.0, "1"), (2.5, "2.5"), (0.01, "0.01"), (3e-4, "3e-4"),
     (1e-3, "1e-3"), (2.5e-5, "2.5e-5"), (1e-7, "1e-7"), (1.234e-4, "1.23e-4"),
     (1000.0, "1000"), (2500.0, "2500"), (1e5, "1e5"), (3e30, "3e30")],
)  # fmt: skip
def test_a_tick_is_written_as_people_write_rates(value, label):
    assert tick_label(value) == label


def test_a_narrow_lr_axis_gets_a_label_and_a_wide_one_at_most_the_ticks_asked_for():
    # Between two round rates: the axis's centre is labelled.
    assert log_ticks(np.log10(0.0301), np.log10(0.0309), 5) == pytest.approx([0.0305], rel=0.01)
    assert log_ticks(np.log10(0.024), np.log10(0.038), 5) == [0.03]
    assert log_ticks(-2.1, -0.9, 5) == [0.01, 0.02, 0.05, 0.1]
    # 1e-12 .. 1e2: powers of ten every few decades.
    ticks = log_ticks(-12, 2, 5)
    assert len(ticks) <= 5 and all(np.log10(t) == round(np.log10(t)) for t in ticks)


def test_sensitivity_plot_marks_the_recommended_lr_and_diverged_runs():
    fig = figure_sensitivity([0.3, 0.01, 0.1, 3.0], [0.5, 0.9, 0.4, np.inf], suggested_lr=0.12)
    line = fig.data[0]
    assert list(line.x) == [0.01, 0.1, 0.3]  # sorted by LR, the diverged run left out
    assert list(fig.data[1].x) == [3.0] and fig.data[1].marker.symbol == "x"
    assert fig.layout.shapes[0].x0 == 0.12 and fig.layout.xaxis.type == "log"
    # The axis spans the rates and the recommendation; a rate that is no number stays out.
    odd = figure_sensitivity([0.1, np.inf, 0.01, 0.0], [1.0, 0.5, 0.7, 0.9], suggested_lr=0.05)
    low, high = odd.layout.xaxis.range
    assert -2.5 < low < -2 and -1 < high < -0.5


def test_compare_overlays_one_loss_and_one_lr_line_per_run():
    fig = figure_compare([_run(run_id="a"), _run(run_id="b"), Run(id="empty")])
    names = [t.name for t in fig.data]
    assert names.count("a") == 2 and names.count("b") == 2


def test_a_run_without_loss_gets_a_message_figure():
    fig = figure_run(Run(id="x", name="x", metrics={"accuracy": Series([0], [1.0])}))
    assert "no loss metric" in fig.layout.annotations[0].text


def test_zoom_redraws_the_visible_steps_at_full_detail():
    from dashboard.views import x_range_from

    run = _run(1_000_000)
    x_range = x_range_from({"xaxis2.range[0]": 500_000.4, "xaxis2.range[1]": 501_000})
    fig = figure_run(run, x_range=x_range)
    raw = next(t for t in fig.data if t.name == "loss (raw)")
    assert len(raw.x) == 1001 + 1  # every step in view, one of margin on the left
    assert x_range_from({"xaxis.autorange": True}) is None
    assert x_range_from({"xaxis.range": [10, 20]}) == (10.0, 20.0)


def test_run_names_and_metric_keys_reach_plotly_as_text_not_markup():
    """Plotly renders <a href>, <b> and entities in names and titles; user text must stay text."""
    import json

    from dashboard.figures import figure_compare, figure_run, figure_sensitivity

    evil = '<a href="https://evil.example">x</a>'
    steps = np.arange(50)
    metrics = {"train/loss": Series(steps, 1 / (1 + steps)), "lr": Series(steps, np.full(50, 0.1))}
    runs = [Run(id=f"r{i}", name=evil, metrics=dict(metrics)) for i in range(2)]
    odd_key = Run(id="k", metrics={"<b>loss</b>": metrics["train/loss"]}, loss_key="<b>loss</b>")
    figures = [
        figure_compare(runs),
        figure_sensitivity([0.1, 0.3], [0.5, 0.4], names=[evil, evil]),
        figure_run(odd_key),
    ]
    for fig in figures:
        text = json.dumps(fig.to_plotly_json(), default=str)
        assert "<a href" not in text and "<b>" not in text
    assert "&lt;a href" in json.dumps(figures[0].to_plotly_json(), default=str)
