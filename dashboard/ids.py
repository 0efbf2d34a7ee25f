"""Every element id of the dashboard, in one place: layout and callbacks both import from here."""

from __future__ import annotations

# Page frame and routing.
URL = "url"
PAGE = "page"
NAV_RUNS = "nav-runs"

# Runs view.
EXPERIMENT = "experiment"
RUNS_TABLE = "runs-table"
RUNS_MESSAGE = "runs-message"
RUNS_REFRESH = "runs-refresh"
COMPARE_LINK = "compare-link"

# Run view.
RUN_ID = "run-id"
RUN_TITLE = "run-title"
RUN_MESSAGE = "run-message"
RUN_GRAPH = "run-graph"
RANGE_TEST_GRAPH = "range-test-graph"  # the container; the chart inside it:
RANGE_TEST_FIGURE = "range-test-figure"
SMOOTHING = "smoothing"
EXTRA_METRICS = "extra-metrics"
EXTRA_METRICS_BOX = "extra-metrics-box"  # its label with it: hidden while there are none
RECOMMENDATION = "recommendation"
RECOMMENDATION_CARD = "recommendation-card"
SCHEDULE = "schedule"
FINDINGS = "findings"
RUN_PARAMS = "run-params"
RUN_REFRESH = "run-refresh"
RUN_STATUS = "run-status"

# Compare view.
COMPARE_IDS = "compare-ids"
COMPARE_MESSAGE = "compare-message"
COMPARE_GRAPH = "compare-graph"
SENSITIVITY_GRAPH = "sensitivity-graph"
SWEEP_RECOMMENDATION = "sweep-recommendation"
COMPARE_SMOOTHING = "compare-smoothing"
