"""Pure report formatting: the text a person reads and the JSON document machines parse."""

from __future__ import annotations

import json
import math

from lrwatch.analysis.findings import Finding, Recommendation, Report, Schedule
from lrwatch.report_format import format_json, format_report_text, report_entry, run_extras
from lrwatch.run import Run, Series


def _run() -> Run:
    steps = list(range(100, 600))
    return Run(
        id="runs/a.csv",
        name="a",
        status="finished",
        metrics={"loss": Series(steps, [1.0] * 500), "lr": Series(steps, [0.1] * 500)},
    )


def _report(**extras) -> Report:
    findings = (
        Finding("plateau", 300, 599, "warning", "The loss stopped improving.", {"slope": 0.0}),
        Finding("divergence", 450, 460, "critical", "The loss blew up.", {"ratio": math.inf}),
    )
    recommendation = Recommendation(
        action="decrease_lr",
        message="Lower the rate 10x: it diverged.",
        suggested_lr=0.01,
        factor=0.1,
    )
    schedule = Schedule(kind="cosine", warmup_steps=50, initial_lr=0.1, final_lr=0.001, peak_lr=0.1)
    return Report("runs/a.csv", findings, recommendation, schedule, 500, dict(extras))


def test_text_report_lists_identity_schedule_findings_and_what_to_do():
    text = format_report_text(_report(), _run(), notes=["no step column: steps are row numbers"])
    lines = text.splitlines()
    assert lines[0] == "Run a"
    assert "id: runs/a.csv" in lines[1]
    assert "500 steps (100..599), finished, loss 'loss', lr 'lr'" in text
    assert "schedule: warmup (50 steps) then cosine, lr 0.1 -> 0.001" in text
    assert "note: no step column" in text
    critical = lines.index("    [CRITICAL] divergence at steps 450-460: The loss blew up.")
    warning = lines.index("    [WARNING] plateau at steps 300-599: The loss stopped improving.")
    assert critical < warning  # worst first
    assert "Recommendation: decrease lr, lr=0.01 (x0.1)" in text
    assert text.rstrip().endswith("Lower the rate 10x: it diverged.")


def test_range_test_runs_show_their_suggestion_instead_of_findings():
    report = _report(
        range_test={
            "suggested_lr": 0.003,
            "method": "valley",
            "min_loss_lr": 0.03,
            "tested_lr_range": [1e-5, 1.0],
        }
    )
    text = format_report_text(report, _run())
    assert "LR range test: start at lr=0.003 (valley rule); loss lowest at lr=0.03" in text
    assert "tested 1e-05 to 1" in text and "findings" not in text


def test_json_is_standard_and_keeps_the_contract_keys():
    entry = report_entry(_report(), run_extras(_run()))
    document = json.loads(format_json([entry], errors=[("x.csv", "x.csv: no such file")]))
    [run] = document["runs"]
    assert run["run"] == "runs/a.csv" and run["name"] == "a" and run["first_step"] == 100
    assert run["findings"][1]["evidence"]["ratio"] == "inf"  # no NaN/Infinity literals
    assert run["recommendation"]["suggested_lr"] == 0.01
    assert document["errors"] == [{"run": "x.csv", "error": "x.csv: no such file"}]
    assert "sweep" not in document
