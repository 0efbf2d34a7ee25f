"""Page skeletons: the frame with URL routing, and the runs, run and compare pages.

Every id comes from :mod:`dashboard.ids`. Pages hold only ids in ``dcc.Store``; the callbacks
fill graphs, tables and cards.
"""

from __future__ import annotations

from collections.abc import Sequence

from dash import dash_table, dcc, html

from dashboard import ids
from dashboard.components import CARD
from lrwatch.store import hide_passwords

# Live runs: redraw every 2 s (only new points are fetched); the runs table every 5 s while runs
# are running or badges are still being analysed.
RUN_REFRESH_MS = 2000
RUNS_REFRESH_MS = 5000
TABLE_PAGE_SIZE = 25

RUN_COLUMNS = [
    {"name": "name", "id": "name"},
    {"name": "status", "id": "status"},
    {"name": "last step", "id": "last_step", "type": "numeric"},
    {"name": "base LR", "id": "base_lr", "type": "numeric"},
    {"name": "optimizer", "id": "optimizer"},
    {"name": "diagnosis", "id": "diagnosis"},
    {"name": "started", "id": "started"},
    {"name": "", "id": "open", "presentation": "markdown"},
]


def app_layout() -> html.Div:
    return html.Div(
        [
            dcc.Location(id=ids.URL, refresh="callback-nav"),
            html.Div(
                [
                    dcc.Link("lrwatch", href="/", id=ids.NAV_RUNS, style={"fontWeight": "bold"}),
                    html.Span(
                        "  is my learning rate wrong, and what should it be?",
                        style={"color": "#666"},
                    ),  # fmt: skip
                ],
                style={"padding": "8px 0", "borderBottom": "1px solid #eee"},
            ),
            html.Div(id=ids.PAGE),
        ],
        style={"fontFamily": "system-ui, sans-serif", "maxWidth": "1300px", "margin": "0 auto"},
    )


def message(text: str, *, kind: str = "info") -> html.Div:
    """A visible message box (text only, never HTML; any password in a URI shown as ***)."""
    colour = {"info": "#eef4fb", "error": "#fdecea", "warning": "#fff4e5"}[kind]
    return html.Div(hide_passwords(text), className=f"lrwatch-message {kind}",
                    style={**CARD, "background": colour})  # fmt: skip


def runs_page(experiments: Sequence[tuple[str, str]], selected: str | None) -> html.Div:
    options = [{"label": f"{name} ({eid})", "value": eid} for eid, name in experiments]
    return html.Div(
        [
            html.H2("Runs"),
            html.Div([html.Label("experiment "), dcc.Dropdown(
                id=ids.EXPERIMENT, options=options, value=selected, clearable=False,
                style={"width": "420px", "display": "inline-block", "verticalAlign": "middle"})]),
            html.Div(id=ids.RUNS_MESSAGE),
            # dash_table/__init__.py is marked "# type: ignore", so mypy misses its DataTable.
            dash_table.DataTable(  # type: ignore[attr-defined]
                id=ids.RUNS_TABLE, columns=RUN_COLUMNS, data=[], row_selectable="multi",
                selected_row_ids=[], sort_action="native", filter_action="native",
                page_action="native", page_size=TABLE_PAGE_SIZE, markdown_options={"html": False},
                style_cell={"textAlign": "left", "fontFamily": "system-ui, sans-serif",
                            "padding": "4px 8px", "maxWidth": "320px", "overflow": "hidden",
                            "textOverflow": "ellipsis"},
                style_data_conditional=_diagnosis_colours(),
                sort_by=[],
            ),
            dcc.Link("Compare selected runs", id=ids.COMPARE_LINK, href="/compare"),
            dcc.Interval(id=ids.RUNS_REFRESH, interval=RUNS_REFRESH_MS, disabled=False),
        ]
    )  # fmt: skip


def extra_metrics_style(*, shown: bool) -> dict:
    """The extra-metrics box: a label with no checkboxes beside it says nothing, so it is hidden
    for a run that logged no metric worth an extra chart."""
    return {"width": "50%", "display": "inline-block" if shown else "none", "verticalAlign": "top"}


def run_page(run_id: str) -> html.Div:
    return html.Div(
        [
            dcc.Store(id=ids.RUN_ID, data=run_id),
            html.H2(id=ids.RUN_TITLE, children=run_id),
            html.Div(id=ids.RUN_STATUS, style={"color": "#555"}),
            html.Div(id=ids.RUN_MESSAGE),
            html.Div([
                html.Div([html.Label("smoothing (EMA weight)"), dcc.Slider(
                    id=ids.SMOOTHING, min=0, max=0.99, step=0.01, value=0.6,
                    marks={0: "0", 0.6: "0.6", 0.9: "0.9", 0.99: "0.99"})],
                    style={"width": "45%", "display": "inline-block"}),
                html.Div([html.Label("extra metrics"), dcc.Checklist(
                    id=ids.EXTRA_METRICS, options=[], value=[], inline=True)],
                    id=ids.EXTRA_METRICS_BOX, style=extra_metrics_style(shown=False)),
            ]),
            html.Div(id=ids.RANGE_TEST_GRAPH),
            html.Div([
                html.Div(dcc.Graph(id=ids.RUN_GRAPH, config={"displaylogo": False}),
                         style={"width": "68%", "display": "inline-block", "verticalAlign": "top"}),
                html.Div([html.Div(id=ids.RECOMMENDATION), html.Div(id=ids.SCHEDULE),
                          html.Div(id=ids.FINDINGS)],
                         style={"width": "31%", "display": "inline-block", "paddingLeft": "1%"}),
            ]),
            html.Details([html.Summary("params and tags"), html.Div(id=ids.RUN_PARAMS)]),
            dcc.Interval(id=ids.RUN_REFRESH, interval=RUN_REFRESH_MS, disabled=True),
        ]
    )  # fmt: skip


def compare_page(run_ids: Sequence[str]) -> html.Div:
    return html.Div(
        [
            dcc.Store(id=ids.COMPARE_IDS, data=list(run_ids)),
            html.H2(f"Compare {len(run_ids)} runs"),
            html.Div(id=ids.COMPARE_MESSAGE),
            html.H3("LR sensitivity: final loss against learning rate"),
            html.Div([
                html.Div(dcc.Graph(id=ids.SENSITIVITY_GRAPH, config={"displaylogo": False}),
                         style={"width": "64%", "display": "inline-block", "verticalAlign": "top"}),
                html.Div(id=ids.SWEEP_RECOMMENDATION,
                         style={"width": "35%", "display": "inline-block", "paddingLeft": "1%"}),
            ]),
            html.H3("Loss and LR by step"),
            html.Div([html.Label("smoothing (EMA weight)"), dcc.Slider(
                id=ids.COMPARE_SMOOTHING, min=0, max=0.99, step=0.01, value=0.6,
                marks={0: "0", 0.6: "0.6", 0.9: "0.9", 0.99: "0.99"})], style={"width": "45%"}),
            dcc.Graph(id=ids.COMPARE_GRAPH, config={"displaylogo": False}),
        ]
    )  # fmt: skip


def not_found_page(path: str) -> html.Div:
    return html.Div([message(f"no page at {path}", kind="error"), dcc.Link("all runs", href="/")])


def _diagnosis_colours() -> list[dict]:
    colours = {"critical": "#fdecea", "warning": "#fff4e5", "info": "#eef4fb", "ok": "#edf7ed"}
    return [
        {"if": {"filter_query": f'{{diagnosis}} contains "{word}"', "column_id": "diagnosis"},
         "backgroundColor": colour}
        for word, colour in colours.items()
    ]  # fmt: skip
