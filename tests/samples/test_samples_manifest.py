"""The manifest describes the files truthfully, and the files are the documented saved-run format."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

import lrwatch
from lrwatch import keys
from lrwatch.analysis.findings import KINDS
from lrwatch.samples import load_manifest

ENTRIES = load_manifest()["runs"]
NAMES = [entry["name"] for entry in ENTRIES]
REQUIRED = ("file", "name", "task", "optimizer", "lr", "momentum", "schedule", "steps", "seed")
REQUIRED += ("shows", "expected_findings", "sweep", "rows", "columns", "params")
# The issue's budget for everything bundled.
MAX_TOTAL_BYTES = 2 * 1024 * 1024


def test_manifest_is_strict_json_with_unique_names(sample_folder):
    text = (sample_folder / "manifest.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert len(NAMES) == len(set(NAMES))
    assert len({entry["file"] for entry in ENTRIES}) == len(ENTRIES)


def test_every_file_is_listed_and_small(sample_folder):
    on_disk = {p.name for p in sample_folder.glob("*.parquet")}
    assert on_disk == {entry["file"] for entry in ENTRIES}
    total = sum((sample_folder / name).stat().st_size for name in on_disk)
    total += (sample_folder / "manifest.json").stat().st_size
    assert total < MAX_TOTAL_BYTES


def test_the_issue_cases_are_all_there(manifest):
    expected = [tuple(e["expected_findings"] or ()) for e in ENTRIES]
    assert () in expected  # a healthy run
    for kind in KINDS:
        assert any(kind in kinds for kinds in expected), kind
    assert (
        sum(
            1
            for e in ENTRIES
            if e["schedule"] == "warmup_constant" and "divergence" in (e["expected_findings"] or ())
        )
        == 1
    )
    assert any(e["schedule"] == "warmup_cosine" for e in ENTRIES)
    assert any(e["momentum"] >= 0.97 and e["task"] == "quadratic" for e in ENTRIES)
    assert any(e["range_test"] for e in ENTRIES)
    for sweep in manifest["sweeps"].values():
        members = [e for e in ENTRIES if e["name"] in sweep["runs"]]
        assert 6 <= len(members) <= 8
        assert len({(e["task"], e["optimizer"], e["steps"]) for e in members}) == 1  # one task
        assert len({e["lr"] for e in members}) == len(members)


@pytest.mark.parametrize("entry", ENTRIES, ids=NAMES)
def test_entry_matches_its_file(entry, sample_folder):
    for field in REQUIRED:
        assert field in entry, field
    assert set(entry["expected_findings"] or ()) <= set(KINDS)
    assert set(entry.get("must_not_find", ())) <= set(KINDS)
    table = pq.read_table(sample_folder / entry["file"])
    assert table.column_names == entry["columns"]
    assert table.column_names[:3] == ["step", keys.LOSS, keys.LR]
    assert table.num_rows == entry["rows"] > 0
    steps = table.column("step").to_numpy()
    assert np.array_equal(steps, np.arange(entry["rows"]))  # one row per logged step
    if not entry["range_test"]:
        assert entry["rows"] <= entry["steps"]
        assert float(entry["params"]["lr"]) == entry["lr"]
        assert entry["params"]["task"] == entry["task"]
        assert float(entry["params"]["momentum"]) == entry["momentum"]


@pytest.mark.parametrize("entry", ENTRIES, ids=NAMES)
def test_the_projects_loader_reads_each_file(entry, sample_folder):
    run = lrwatch.load_run(str(sample_folder / entry["file"]))
    assert (run.loss_key, run.lr_key) == (keys.LOSS, keys.LR)
    assert len(run.loss) == len(run.lr) == entry["rows"]
    assert np.all(run.lr.values > 0)


def test_divergent_runs_keep_their_non_finite_losses(sample_runs):
    for entry in ENTRIES:
        finite = np.isfinite(sample_runs[entry["name"]].loss.values)
        if "divergence" in (entry["expected_findings"] or ()):
            assert not finite[-1], entry["name"]  # the NaN/inf tail is evidence: kept
            assert finite[:10].all(), entry["name"]  # and it took a while to get there
        elif not entry["range_test"]:
            assert finite.all(), entry["name"]


def test_step_decay_twin_goes_lower_than_the_plateau(sample_runs):
    def final(name):
        values = sample_runs[name].loss.values
        return float(np.median(values[-len(values) // 5 :]))

    assert final("plateau-step-decay") < 0.8 * final("plateau-constant-lr")


def test_sweep_summary_matches_the_runs(manifest, sample_runs):
    for sweep in manifest["sweeps"].values():
        finals = {}
        for name in sweep["runs"]:
            values = sample_runs[name].loss.values
            tail = values[-max(len(values) // 10, 1) :]
            finals[name] = float(np.median(tail)) if np.isfinite(tail).all() else math.inf
        assert min(finals, key=finals.get) == sweep["best_run"]
        low, high = sweep["suggestion_band"]
        assert low is None or low < sweep["best_lr"]
        assert high is None or high > sweep["best_lr"]
