"""The dashboard in a real headless Chromium against real runs in a real MLflow store."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from dashboard import ids
from tests.dashboard.conftest import ARTIFACTS, XSS_NAME, log_points, train_sweep_one

pytestmark = pytest.mark.browser
WAIT_S = 20


def _open(browser, url: str) -> None:
    browser.get_log("browser")  # drop messages of earlier pages
    browser.get(url)


def _wait_for(browser, css: str, *, text: str | None = None):
    condition = (
        EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)
        if text
        else EC.presence_of_element_located((By.CSS_SELECTOR, css))
    )
    WebDriverWait(browser, WAIT_S).until(condition)
    return browser.find_element(By.CSS_SELECTOR, css)


def _severe_console_errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _screenshot(browser, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _trace_count(browser, graph_id: str) -> int:
    return browser.execute_script(
        f"const g = document.querySelector('#{graph_id} .js-plotly-plot');"
        "return g && g.data ? g.data.length : 0;"
    )


def test_runs_page_lists_runs_as_text_without_console_errors(served, browser, dashboard_store):
    url, _ = served
    _open(browser, url + "/")
    table = _wait_for(browser, "#runs-table", text="lr-range-test")
    _wait_for(browser, "#runs-table", text=XSS_NAME)  # the name shows as characters...
    assert not browser.find_elements(By.CSS_SELECTOR, "#runs-table img")  # ...not as an image
    assert "finished" in table.text
    # Badges are analysed in the background and filled in by the table's refresh.
    WebDriverWait(browser, WAIT_S).until(lambda b: "analysing" not in table.text)
    _screenshot(browser, "runs")
    assert _severe_console_errors(browser) == []


def test_run_page_shows_charts_and_recommendation(served, browser, dashboard_store):
    from lrwatch.analysis import analyze
    from lrwatch.sources.mlflow_store import read_run

    url, _ = served
    run_id = dashboard_store.sweep[0.1]
    report = analyze(read_run(dashboard_store.uri, run_id))
    expected = report.recommendation
    _open(browser, f"{url}/run/{run_id}")
    _wait_for(browser, "#recommendation", text=expected.message)
    _wait_for(browser, "#run-graph .js-plotly-plot")
    # raw loss, smoothed loss and LR at least
    WebDriverWait(browser, WAIT_S).until(lambda b: _trace_count(b, "run-graph") >= 3)
    shaded = browser.execute_script(
        "const g = document.querySelector('#run-graph .js-plotly-plot');"
        "return (g.layout.shapes || []).filter(s => s.xref === 'x').length;"
    )
    assert shaded == len(report.findings)  # one band per finding on the loss panel
    # Each label of the LR panel states a rate on the axis (plotly's own read "2, 0.1, 5, 2"
    # around this constant 0.1: bare mantissas of 0.2, 0.05, 0.02).
    labels, (low, high) = browser.execute_script(
        "const g = document.querySelector('#run-graph .js-plotly-plot');"
        "return [[...g.querySelectorAll('.y2tick text')].map(t => t.textContent),"
        "        g._fullLayout.yaxis2.range];"
    )
    assert "0.1" in labels
    assert all(10**low <= float(label) <= 10**high for label in labels), (labels, low, high)
    # Only a loss and an LR logged: no "extra metrics" label standing beside nothing.
    assert not browser.find_element(By.ID, ids.EXTRA_METRICS_BOX).is_displayed()
    _screenshot(browser, "run")
    # a run that blew up: its findings shaded, its NaN/inf losses marked
    _open(browser, f"{url}/run/{dashboard_store.sweep[0.3]}")
    _wait_for(browser, "#findings", text="Findings")
    WebDriverWait(browser, WAIT_S).until(lambda b: _trace_count(b, "run-graph") >= 3)
    _screenshot(browser, "run_diverged")
    assert _severe_console_errors(browser) == []


def test_range_test_run_marks_the_suggested_lr(served, browser, dashboard_store):
    url, _ = served
    _open(browser, f"{url}/run/{dashboard_store.range_test_run}")
    _wait_for(browser, "#range-test-figure .js-plotly-plot")
    WebDriverWait(browser, WAIT_S).until(lambda b: _trace_count(b, ids.RANGE_TEST_FIGURE) >= 3)
    legend = browser.find_element(By.CSS_SELECTOR, "#range-test-figure").text
    assert "suggested LR" in legend
    _screenshot(browser, "range_test")
    assert _severe_console_errors(browser) == []


def test_compare_view_draws_the_sensitivity_plot(served, browser, dashboard_store):
    url, _ = served
    ids = ",".join(dashboard_store.sweep.values())
    _open(browser, f"{url}/compare?runs={ids}")
    _wait_for(browser, "#sensitivity-graph .js-plotly-plot")
    WebDriverWait(browser, WAIT_S).until(lambda b: _trace_count(b, "sensitivity-graph") >= 1)
    WebDriverWait(browser, WAIT_S).until(lambda b: _trace_count(b, "compare-graph") >= 5)
    _screenshot(browser, "compare")
    assert _severe_console_errors(browser) == []
    # The recommendation's text ends at its dashed line. plotly.js places text on a log axis
    # at the log10 of its x: it sat far to the right, and the axis grew to fit it.
    line = _wait_for(browser, "#sensitivity-graph .shapelayer path").rect
    text = _wait_for(browser, "#sensitivity-graph .annotation", text="recommended LR").rect
    assert abs(text["x"] + text["width"] - line["x"]) < 12, (text, line)
    plot = browser.find_element(By.CSS_SELECTOR, "#sensitivity-graph .nsewdrag").rect
    points = browser.find_elements(By.CSS_SELECTOR, "#sensitivity-graph .scatterlayer .point")
    rightmost = max(point.rect["x"] for point in points)
    assert plot["x"] + plot["width"] - rightmost < 0.15 * plot["width"]  # no empty third


def test_unknown_run_gets_a_message(served, browser):
    url, _ = served
    _open(browser, f"{url}/run/0123456789abcdef0123456789abcdef")
    message = _wait_for(browser, ".lrwatch-message", text="not found")
    assert "0123456789abcdef" in message.text
    assert _severe_console_errors(browser) == []


def test_a_running_run_updates_while_the_page_is_open(served, browser, dashboard_store):
    import mlflow

    url, app = served
    client = mlflow.MlflowClient(tracking_uri=dashboard_store.uri)
    run = train_sweep_one(0.05, steps=200)
    created = client.create_run(dashboard_store.experiment_id, run_name="live-run")
    run_id, stamp = created.info.run_id, created.info.start_time
    log_points(client, run_id, run, start=0, stop=100, timestamp=stamp)
    _open(browser, f"{url}/run/{run_id}")
    _wait_for(browser, "#run-status", text="last step 99")
    fetched_before = app.lrwatch_data.cache.points_fetched
    log_points(client, run_id, run, start=100, stop=None, timestamp=stamp)
    _wait_for(browser, "#run-status", text="last step 199")
    # Only the new points were read: 100 more of loss and of LR, not the 200 + 200 again.
    assert app.lrwatch_data.cache.points_fetched - fetched_before <= 2 * 100 + 4
    client.set_terminated(run_id)
    _screenshot(browser, "live")
    assert _severe_console_errors(browser) == []


def test_zooming_redraws_the_visible_steps(served, browser, dashboard_store):
    url, _ = served
    _open(browser, f"{url}/run/{dashboard_store.sweep[0.03]}")
    _wait_for(browser, "#run-graph .js-plotly-plot")
    raw_points = "return document.querySelector('#run-graph .js-plotly-plot')._fullData[0]._length;"
    WebDriverWait(browser, WAIT_S).until(lambda b: _trace_count(b, "run-graph") >= 3)
    assert browser.execute_script(raw_points) == 300
    zoom = (
        "Plotly.relayout(document.querySelector('#run-graph .js-plotly-plot'),"
        "{'xaxis.range[0]': 100, 'xaxis.range[1]': 150});"
    )

    def zoomed_in(b) -> bool:
        if b.execute_script(raw_points) == 53:  # steps 100-150 plus one of margin each side
            return True
        b.execute_script(zoom)  # (re)apply: a redraw landing right after page load may undo it
        return False

    WebDriverWait(browser, WAIT_S, poll_frequency=1.0).until(zoomed_in)
    shown = browser.execute_script(
        "return document.querySelector('#run-graph .js-plotly-plot')._fullLayout.xaxis.range;"
    )
    assert [round(x) for x in shown] == [100, 150]
    _screenshot(browser, "zoomed")
    assert _severe_console_errors(browser) == []
