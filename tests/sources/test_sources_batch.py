"""lrwatch.batch: many runs, in order, in parallel, with per-run errors and progress."""

from __future__ import annotations

import io

from lrwatch.batch import (
    PARALLEL_MIN_RUNS,
    ProgressLine,
    analyze_refs,
    analyze_specs,
    available_cores,
    expand_specs,
    parallel_plan,
)
from lrwatch.sources import RunRef
from lrwatch.sources.files import save_run_csv
from lrwatch.store import SERVER_READ_THREADS


def test_parallel_results_equal_serial_results_in_order(tmp_path, healthy_run, diverging_run):
    for i in range(6):
        save_run_csv(healthy_run if i % 2 else diverging_run, tmp_path / f"run{i}.csv")
    (tmp_path / "run8.csv").write_text("step,loss\n0,tensor(0.5)\n")  # bad: a text loss
    (tmp_path / "run9.csv").write_text("step,accuracy\n0,0.5\n")  # no loss: skipped in a folder
    refs, errors = expand_specs([str(tmp_path)])
    assert errors == [] and len(refs) == 8
    serial = list(analyze_refs(refs, workers=1))
    parallel = list(analyze_refs(refs, workers=2, keep_series=False))
    assert [r.label for r in parallel] == [r.label for r in serial] == [ref.target for ref in refs]
    for one, other in zip(serial[:6], parallel[:6]):
        assert one.report.to_dict() == other.report.to_dict()
        assert other.run.loss.steps[-1] == one.run.loss.steps[-1]  # metadata keeps the step range
    assert serial[6].report is None and "holds text, not numbers" in serial[6].error
    assert serial[7].report is None and serial[7].skipped == "no loss" and not serial[7].error
    assert [(r.error, r.skipped, r.notes) for r in parallel[6:]] == [
        (r.error, r.skipped, r.notes) for r in serial[6:]
    ]


def test_bad_specs_become_error_results(tmp_path, healthy_run):
    good = save_run_csv(healthy_run, tmp_path / "good.csv")
    results = list(analyze_specs([str(tmp_path / "missing.csv"), str(good)]))
    assert [(r.label, r.report is not None) for r in results] == [
        (str(tmp_path / "missing.csv"), False),
        (str(good), True),
    ]
    assert results[0].error.endswith("no such file")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_draws_on_a_terminal_only():
    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = ProgressLine(stream, width=10)
        for done in range(1, 5):
            progress(done, 4)
    assert "[#####-----] 2/4 runs" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r")  # the bar is cleared when done
    assert pipe.getvalue() == ""


def test_files_go_to_processes_runs_on_a_tracking_server_to_threads():
    """Parsing files is Python work, spread over the cores; reading runs from a tracking server
    is the server's, a few at a time in threads; a database store is read here, one by one."""
    files = [RunRef("file", f"run{i}.csv", f"run{i}.csv") for i in range(PARALLEL_MIN_RUNS)]
    server = "http://mlflow.example:5000"
    on_server = [RunRef("mlflow", f"{i:032x}", f"{i:032x}", server) for i in range(9)]
    in_database = [
        RunRef("mlflow", f"{i:032x}", f"{i:032x}", "sqlite:///mlflow.db") for i in range(9)
    ]
    assert parallel_plan(files, None) == ("processes", min(available_cores(), len(files)))
    assert parallel_plan(files[:3], None) == ("processes", 1)
    assert parallel_plan(on_server, None) == ("threads", SERVER_READ_THREADS)
    assert parallel_plan(on_server[:2], None) == ("threads", 2)
    assert parallel_plan(in_database, None) == ("threads", 1)
    assert parallel_plan(on_server + in_database, None) == ("threads", 1)
    assert parallel_plan(on_server, 1) == ("threads", 1)
    assert parallel_plan(files + on_server, 2) == ("processes", 2)
