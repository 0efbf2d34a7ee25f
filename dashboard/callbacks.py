"""Thin callbacks: read the inputs, call one function of :mod:`dashboard.views`, return."""

from __future__ import annotations

from dash import Dash, Input, Output, State, ctx
from dash.exceptions import PreventUpdate

from dashboard import ids, views
from dashboard.data import DashboardData


def register(app: Dash, data: DashboardData) -> None:
    """Wire every callback of the dashboard to ``data``."""

    @app.callback(
        Output(ids.PAGE, "children"), Input(ids.URL, "pathname"), Input(ids.URL, "search")
    )
    def route(pathname, search):
        return views.page_for(data, pathname, search)

    @app.callback(
        Output(ids.RUNS_TABLE, "data"),
        Output(ids.RUNS_MESSAGE, "children"),
        Output(ids.RUNS_REFRESH, "disabled"),
        Input(ids.EXPERIMENT, "value"),
        Input(ids.RUNS_REFRESH, "n_intervals"),
    )
    def runs_table(experiment_id, _ticks):
        return views.runs_table(data, experiment_id)

    @app.callback(
        Output(ids.COMPARE_LINK, "href"),
        Output(ids.COMPARE_LINK, "children"),
        Input(ids.RUNS_TABLE, "selected_row_ids"),
    )
    def compare_link(selected_ids):
        return views.compare_link(selected_ids)

    @app.callback(
        Output(ids.RUN_GRAPH, "figure"),
        Output(ids.RUN_MESSAGE, "children"),
        Output(ids.RUN_TITLE, "children"),
        Output(ids.RUN_STATUS, "children"),
        Output(ids.RECOMMENDATION, "children"),
        Output(ids.SCHEDULE, "children"),
        Output(ids.FINDINGS, "children"),
        Output(ids.RANGE_TEST_GRAPH, "children"),
        Output(ids.EXTRA_METRICS, "options"),
        Output(ids.RUN_REFRESH, "disabled"),
        Output(ids.RUN_PARAMS, "children"),
        Output(ids.EXTRA_METRICS_BOX, "style"),
        Input(ids.RUN_ID, "data"),
        Input(ids.SMOOTHING, "value"),
        Input(ids.EXTRA_METRICS, "value"),
        Input(ids.RUN_REFRESH, "n_intervals"),
        State(ids.RUN_GRAPH, "relayoutData"),
    )
    def run_view(run_id, smoothing, extra_keys, _ticks, relayout):
        refresh = ctx.triggered_id == ids.RUN_REFRESH
        return views.run_view(data, run_id, smoothing, extra_keys, relayout, refresh=refresh)

    # Zooming re-downsamples the visible steps. A callback of its own, so the graph's own
    # relayout events (autosize on first draw) never supersede the page's first load.
    @app.callback(
        Output(ids.RUN_GRAPH, "figure", allow_duplicate=True),
        Input(ids.RUN_GRAPH, "relayoutData"),
        State(ids.RUN_ID, "data"),
        State(ids.SMOOTHING, "value"),
        State(ids.EXTRA_METRICS, "value"),
        prevent_initial_call=True,
    )
    def zoom(relayout, run_id, smoothing, extra_keys):
        if not views.changes_x_range(relayout):
            raise PreventUpdate  # autosize, y-only zoom, legend clicks: nothing to re-sample
        return views.run_figure(data, run_id, smoothing, extra_keys, relayout)

    @app.callback(
        Output(ids.COMPARE_GRAPH, "figure"),
        Output(ids.SENSITIVITY_GRAPH, "figure"),
        Output(ids.SWEEP_RECOMMENDATION, "children"),
        Output(ids.COMPARE_MESSAGE, "children"),
        Input(ids.COMPARE_IDS, "data"),
        Input(ids.COMPARE_SMOOTHING, "value"),
    )
    def compare_view(run_ids, smoothing):
        return views.compare_view(data, run_ids, smoothing)
