"""Loading saved runs from CSV, Parquet and JSON Lines files and folders of them."""

from __future__ import annotations

import bz2
import decimal
import gzip
import io
import json
import lzma
import math
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lrwatch.analysis import analyze
from lrwatch.errors import InputError
from lrwatch.sources import load_run, load_runs, require_loss
from lrwatch.sources.files import TAG_STEPS_FROM, load_file, read_notes, save_run_csv
from tests.sources.conftest import train_logging_each_batch


def _write(path, text: str):
    path.write_text(text)
    return str(path)


def test_csv_round_trip_of_a_real_training_run(tmp_path, healthy_run):
    path = save_run_csv(healthy_run, tmp_path / "healthy.csv")
    run = load_run(str(path))
    assert (run.id, run.name, run.loss_key, run.lr_key) == (
        str(path),
        "healthy",
        "train/loss",
        "lr",
    )
    np.testing.assert_array_equal(run.loss.steps, healthy_run.loss.steps)
    np.testing.assert_array_equal(run.loss.values, healthy_run.loss.values)
    np.testing.assert_array_equal(run.lr.values, healthy_run.lr.values)


def test_parquet_and_json_lines_hold_the_same_run(tmp_path, healthy_run):
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {
        "step": healthy_run.loss.steps,
        "train_loss": healthy_run.loss.values,
        "lr-Adam": healthy_run.lr.values,
    }
    pq.write_table(pa.table(columns), tmp_path / "run.parquet")
    rows = [{k: v[i].item() for k, v in columns.items()} for i in range(len(healthy_run.loss))]
    (tmp_path / "run.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "run.json").write_text(json.dumps(rows))  # a JSON array of rows is accepted too
    for name in ("run.parquet", "run.jsonl", "run.json"):
        run = load_run(str(tmp_path / name))
        assert (run.loss_key, run.lr_key) == ("train_loss", "lr-Adam"), name
        np.testing.assert_array_equal(run.loss.values, healthy_run.loss.values)
        np.testing.assert_array_equal(run.loss.steps, healthy_run.loss.steps)


def test_feather_and_arrow_ipc_files_and_streams_hold_the_same_run(tmp_path, diverging_run):
    # pandas' to_feather (Feather V2: an Arrow IPC file), the deprecated Feather V1, and an
    # Arrow IPC stream, which has no magic and is known by its first bytes when unnamed (piped).
    import pyarrow as pa
    import pyarrow.feather as feather

    # round_trip: pandas 2.0's default float parser was off by one unit in the last place.
    frame = pd.read_csv(
        save_run_csv(diverging_run, tmp_path / "run.csv"), float_precision="round_trip"
    )
    frame.to_feather(tmp_path / "v2.feather")  # pandas writes the NaN loss as a null
    with warnings.catch_warnings():  # pyarrow 15 and later call V1 deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        feather.write_feather(frame, tmp_path / "v1.feather", version=1)
    arrow_table = pa.Table.from_pandas(frame)
    with pa.ipc.new_stream(tmp_path / "stream.arrows", arrow_table.schema) as writer:
        writer.write_table(arrow_table)
    (tmp_path / "unnamed").write_bytes((tmp_path / "stream.arrows").read_bytes())
    for name in ("v2.feather", "v1.feather", "stream.arrows", "unnamed"):
        run = load_run(str(tmp_path / name))
        np.testing.assert_array_equal(run.loss.steps, diverging_run.loss.steps)
        np.testing.assert_array_equal(run.loss.values, diverging_run.loss.values)  # NaN == NaN
        assert not np.isfinite(run.loss.values[-1]), name  # the divergence's evidence
        assert analyze(run).findings[0].kind == "divergence", name
    assert {r.name for r in load_runs([str(tmp_path)])} == {"run", "v2", "v1", "stream"}
    (tmp_path / "run.feather.gz").write_bytes(gzip.compress((tmp_path / "v2.feather").read_bytes()))
    with pytest.raises(InputError, match="run.feather.gz: a compressed Feather file: decompress"):
        load_run(str(tmp_path / "run.feather.gz"))
    (tmp_path / "cut.feather").write_bytes((tmp_path / "v2.feather").read_bytes()[:300])
    with pytest.raises(InputError, match=r"cut.feather: not a table \(expected CSV, Parquet, Fea"):
        load_run(str(tmp_path / "cut.feather"))


def test_a_folder_is_one_run_per_table_file(tmp_path, healthy_run, diverging_run):
    save_run_csv(healthy_run, tmp_path / "a.csv")
    save_run_csv(diverging_run, tmp_path / "b.csv")
    (tmp_path / "notes.md").write_text("not a run")
    runs = load_runs([str(tmp_path)])
    assert [r.name for r in runs] == ["a", "b"]
    assert not np.isfinite(runs[1].loss.values[-1])  # divergence evidence survives the trip


def _json_lines(run) -> str:
    rows = zip(run.loss.steps.tolist(), run.loss.values.tolist(), run.lr.values.tolist())
    return "".join(json.dumps({"step": s, "loss": v, "lr": lr}) + "\n" for s, v, lr in rows)


def test_gzipped_csv_and_json_lines_read_like_the_plain_files(tmp_path, healthy_run):
    folder = tmp_path / "runs"
    folder.mkdir()
    plain = save_run_csv(healthy_run, tmp_path / "lr0.1.csv").read_bytes()
    (folder / "lr0.1.csv.gz").write_bytes(gzip.compress(plain))
    (folder / "lr0.3.jsonl.gz").write_bytes(gzip.compress(_json_lines(healthy_run).encode()))
    # Two gzip members one after the other (``cat a.gz b.gz``) are one file to gunzip.
    half = plain.index(b"\n", len(plain) // 2) + 1
    (folder / "lr1.csv.gz").write_bytes(gzip.compress(plain[:half]) + gzip.compress(plain[half:]))
    runs = load_runs([str(folder)])
    assert [r.name for r in runs] == ["lr0.1", "lr0.3", "lr1"]
    for run in runs:
        np.testing.assert_array_equal(run.loss.steps, healthy_run.loss.steps)
        np.testing.assert_array_equal(run.loss.values, healthy_run.loss.values)
        assert read_notes(run) == []


def test_a_json_lines_file_cut_off_mid_line_keeps_every_line_before_the_cut(tmp_path, healthy_run):
    # A writer that crashed mid-line: the last line is half a record, with no newline after it.
    text = _json_lines(healthy_run)
    cut = text[: text.rindex("\n", 0, -1) + 20]
    run = load_run(_write(tmp_path / "crashed.jsonl", cut))
    n = len(healthy_run.loss)
    np.testing.assert_array_equal(run.loss.values, healthy_run.loss.values[: n - 1])
    assert read_notes(run) == [f"line {n} is cut off (the writer stopped mid-line): left out"]


def test_a_broken_line_inside_json_lines_is_an_error_naming_it(tmp_path):
    text = '{"step": 0, "loss": 1.0}\n{"step": 1, "lo\n{"step": 2, "loss": 0.5}\n'
    with pytest.raises(InputError, match="broken.jsonl: line 2 is not valid JSON"):
        load_run(_write(tmp_path / "broken.jsonl", text))
    # ... also as the last line when a newline follows it: that line was written whole.
    with pytest.raises(InputError, match="line 2 is not valid JSON"):
        load_run(_write(tmp_path / "broken_end.jsonl", '{"step": 0, "loss": 1.0}\n{"st\n'))


def test_what_pandas_to_csv_compresses_by_suffix_reads_like_the_plain_file(tmp_path, healthy_run):
    # df.to_csv("run.csv.bz2") and friends pick the codec from the suffix; a user keeps the file.
    frame = pd.read_csv(
        save_run_csv(healthy_run, tmp_path / "plain.csv"), float_precision="round_trip"
    )
    folder = tmp_path / "runs"
    folder.mkdir()
    for name in ("a.csv.bz2", "b.csv.xz", "c.csv.zip", "d.jsonl.xz"):
        if name.endswith(".jsonl.xz"):
            frame.to_json(folder / name, orient="records", lines=True)
        else:
            frame.to_csv(folder / name, index=False)
    # The codec is told by the first bytes, not the name: a piped file (saved as "stdin") has none.
    (folder / "e.csv").write_bytes(bz2.compress((tmp_path / "plain.csv").read_bytes()))
    runs = load_runs([str(folder)])
    assert [r.name for r in runs] == ["a", "b", "c", "d", "e"]
    for run in runs:
        np.testing.assert_array_equal(run.loss.steps, healthy_run.loss.steps)
        np.testing.assert_allclose(run.loss.values, healthy_run.loss.values, rtol=1e-9)
        assert read_notes(run) == []


@pytest.mark.parametrize(
    ("suffix", "compress", "codec"),
    [(".gz", gzip.compress, "gzip"), (".bz2", bz2.compress, "bz2"), (".xz", lzma.compress, "xz")],
)
def test_a_compressed_file_cut_off_reads_its_complete_lines(
    tmp_path, healthy_run, suffix, compress, codec
):
    plain = save_run_csv(healthy_run, tmp_path / "run.csv").read_bytes()
    # Two streams one after the other (``cat a.gz b.gz``, a log compressed as it was appended)
    # are one file to decompress; the second one is cut off by a crash.
    half = plain.index(b"\n", len(plain) // 2) + 1
    second = compress(plain[half:])
    path = tmp_path / f"cut.csv{suffix}"
    path.write_bytes(compress(plain[:half]) + second[: len(second) // 2])
    run = load_run(str(path))
    n = len(run.loss)
    assert plain[:half].count(b"\n") - 1 <= n < len(healthy_run.loss)
    np.testing.assert_array_equal(run.loss.values, healthy_run.loss.values[:n])  # no half row
    assert read_notes(run) == [
        f"the {codec} file is cut off at its end: read the complete lines before it"
    ]
    # Cut inside its first stream: bz2 decodes whole blocks, so it may hold no line at all.
    cut_early = tmp_path / f"cut_early.csv{suffix}"
    cut_early.write_bytes(compress(plain)[:32])
    with pytest.raises(InputError, match=f"the {codec} file is cut off before its first full line"):
        load_run(str(cut_early))
    damaged = tmp_path / "damaged" / f"damaged.csv{suffix}"
    damaged.parent.mkdir()
    packed = compress(plain)
    damaged.write_bytes(packed[:20] + bytes(64) + packed[84:])
    with pytest.raises(InputError, match=f"damaged.csv{re.escape(suffix)}: a damaged {codec} file"):
        load_run(str(damaged))
    # Read as a folder too (which first reads each file's header for the runs it may hold).
    with pytest.raises(InputError, match="a damaged"):
        load_runs([str(damaged.parent)])


@pytest.mark.parametrize("engine", ["numpy", "arrow"])
def test_a_nanosecond_clock_and_a_decimal_column_beside_the_loss_are_read(
    tmp_path, healthy_run, engine
):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # df["time_ns"] = time.time_ns() (an int64 beyond 2**53) and a datetime column: pyarrow's
    # safe cast to float refused the whole Parquet file ("Integer value ... not in range"),
    # and the CSV too when read by the arrow engine (batches and large files).
    steps = healthy_run.loss.steps
    frame = pd.DataFrame(
        {
            "step": steps,
            "loss": healthy_run.loss.values,
            "lr": healthy_run.lr.values,
            "time_ns": 1_795_423_882_341_636_209 + steps * 10**9,
            "time": pd.date_range("2026-11-23", periods=steps.size, freq="s"),
        }
    )
    frame.to_csv(tmp_path / "run.csv", index=False)
    # A decimal column (Spark's DECIMAL) is a number too, not text.
    table = pa.Table.from_pandas(frame, preserve_index=False)
    decimals = pa.array([decimal.Decimal("0.25")] * steps.size, pa.decimal128(10, 4))
    pq.write_table(table.append_column("val_loss", decimals), tmp_path / "run.parquet")
    for name in ("run.parquet", "run.csv"):
        run = load_file(tmp_path / name, csv_engine=engine)
        np.testing.assert_allclose(run.loss.values, healthy_run.loss.values, rtol=1e-9)
        assert run.metrics["time_ns"].values[0] == pytest.approx(1.795423882341636e18, rel=1e-15)
    assert np.all(load_file(tmp_path / "run.parquet").metrics["val_loss"].values == 0.25)


def test_a_zip_of_several_files_a_compressed_parquet_and_zstd_say_to_decompress_first(
    tmp_path, healthy_run
):
    plain = save_run_csv(healthy_run, tmp_path / "run.csv").read_bytes()
    several = tmp_path / "runs.zip"
    with zipfile.ZipFile(several, "w") as archive:
        archive.writestr("lr0.1.csv", plain)
        archive.writestr("lr0.3.csv", plain)
    with pytest.raises(InputError, match=re.escape("a zip file of 2 files (lr0.1.csv, lr0.3.csv)")):
        load_run(str(several))
    # One table and the folder entries and macOS copies a Finder zip adds is the one table.
    finder = tmp_path / "finder.zip"
    with zipfile.ZipFile(finder, "w") as archive:
        archive.writestr("run/", b"")
        archive.writestr("run/lr0.1.csv", plain)
        archive.writestr("__MACOSX/run/._lr0.1.csv", b"\x00\x05\x16\x07")
    np.testing.assert_array_equal(load_run(str(finder)).loss.values, healthy_run.loss.values)
    (tmp_path / "cut.zip").write_bytes(finder.read_bytes()[:200])
    with pytest.raises(InputError, match="cut.zip: a damaged zip file"):
        load_runs([str(tmp_path / "cut.zip")])
    packed_parquet = tmp_path / "run.parquet.gz"
    packed_parquet.write_bytes(gzip.compress(b"PAR1" + bytes(64) + b"PAR1"))
    with pytest.raises(InputError, match="run.parquet.gz: a compressed Parquet file: decompress"):
        load_run(str(packed_parquet))
    zstd = tmp_path / "run.csv.zst"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(32))  # a zstd frame's magic number
    with pytest.raises(InputError, match="zstd-compressed, which lrwatch does not read"):
        load_run(str(zstd))


def test_a_spreadsheet_says_to_save_the_sheet_as_csv(tmp_path, healthy_run):
    # An .xlsx or .ods file is a zip of XML parts: it read as "a zip file of 9 files (...)".
    frame = pd.DataFrame({"step": healthy_run.loss.steps, "loss": healthy_run.loss.values})
    frame.to_excel(tmp_path / "run.xlsx", index=False)  # a real workbook, written by openpyxl
    with pytest.raises(InputError, match=r"run.xlsx: an Excel workbook, .* save the sheet as CSV"):
        load_run(str(tmp_path / "run.xlsx"))
    # OpenDocument's first part is "mimetype", stored, naming the kind (LibreOffice's .ods).
    with zipfile.ZipFile(tmp_path / "run.ods", "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<office:document-content/>")
        archive.writestr("META-INF/manifest.xml", "<manifest:manifest/>")
    with pytest.raises(InputError, match="run.ods: an OpenDocument spreadsheet, .* as CSV"):
        load_run(str(tmp_path / "run.ods"))
    # A folder of them only: "no run files" said nothing about the spreadsheets beside it.
    with pytest.raises(InputError, match=re.escape("its spreadsheets (run.ods, run.xlsx) are not")):
        load_runs([str(tmp_path)])


@pytest.mark.parametrize("engine", ["numpy", "arrow"])
def test_odd_but_valid_csv_is_cleaned(tmp_path, engine):
    text = (
        "step,loss,lr,val_loss,note\n"
        "3,-0.5,0.1,,warm\n"
        "1,nan,0.1,2.0,x\n"
        "2,inf,0.1,,x\n"
        "2,0.25,0.1,,x\n"  # step 2 logged twice: the last row wins
        "5,-inf,0.1,1.5,x\n"
    )
    run = load_file(_write(tmp_path / "odd.csv", text), csv_engine=engine)
    assert run.loss.steps.tolist() == [1, 2, 3, 5]
    np.testing.assert_array_equal(run.loss.values, [math.nan, 0.25, -0.5, -math.inf])
    assert run.metrics["val_loss"].steps.tolist() == [1, 5]  # sparse: only the rows that logged it
    assert "note" not in run.metrics  # text columns are not metrics


@pytest.mark.parametrize("engine", ["numpy", "arrow"])
def test_missing_value_markers_are_blank_cells_and_nan_stays_evidence(tmp_path, engine):
    # pandas/R write NA, spreadsheets #N/A, str(None) None: "not logged here", like a blank -
    # one such cell made the whole loss column text before.
    text = 'step,loss,lr\n0,2.0,0.1\n1,NA,0.1\n2,None,N/A\n3,nan,"NA"\n4,#N/A,null\n5,1.0,-\n'
    run = load_file(_write(tmp_path / "na.csv", text), csv_engine=engine)
    assert run.loss.steps.tolist() == [0, 3, 5] and math.isnan(run.loss.values[1])
    assert run.lr.steps.tolist() == [0, 1]


@pytest.mark.parametrize("engine", ["numpy", "arrow"])
def test_windows_line_endings_byte_order_mark_and_semicolons(tmp_path, engine):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffstep;loss;lr\r\n10;1.5;0.1\r\n20;;0.1\r\n30;nan;0.1\r\n".encode())
    run = load_file(path, csv_engine=engine)
    assert (run.loss_key, run.lr_key) == ("loss", "lr")
    assert run.loss.steps.tolist() == [10, 30] and math.isnan(run.loss.values[1])
    assert run.lr.steps.tolist() == [10, 20, 30]


@pytest.mark.parametrize("engine", ["numpy", "arrow"])
def test_a_semicolon_csv_with_decimal_commas_reads_its_numbers(tmp_path, engine):
    # A spreadsheet exported in a comma-decimal locale: "0,5" is 0.5 where ";" separates fields.
    path = tmp_path / "excel.csv"
    path.write_bytes(b"step;loss;lr;note\r\n0;2,5;0,1;a,b\r\n1;1,25e-1;0,1;x\r\n2;nan;0,05;\r\n")
    run = load_file(path, csv_engine=engine)
    np.testing.assert_array_equal(run.loss.values, [2.5, 0.125, math.nan])
    assert run.lr.values.tolist() == [0.1, 0.1, 0.05]
    assert "note" not in run.metrics
    # A comma-separated file never reads "2,5" as one number: the comma splits the fields.
    plain = _write(tmp_path / "plain.csv", "step,loss\n0,2,5\n")
    with pytest.raises(InputError, match="3 fields"):
        load_file(plain, csv_engine=engine)


_TENSOR_REPR = "tensor(0.6931, grad_fn=<NllLossBackward0>)"


@pytest.mark.parametrize("engine", ["numpy", "arrow"])
def test_a_loss_written_as_a_tensor_repr_is_named_as_text_not_as_missing(tmp_path, engine):
    # f"{loss}" or csv.writer on a tensor writes its repr: the column is there but holds text.
    lines = [f'{i},"{_TENSOR_REPR}",0.1' for i in range(5)]
    path = _write(tmp_path / "run.csv", "\n".join(["step,loss,lr", *lines]) + "\n")
    message = f"the loss column 'loss' holds text, not numbers ('{_TENSOR_REPR}'); log loss.item()"
    with pytest.raises(InputError, match=re.escape(message)):
        load_file(path, csv_engine=engine)
    with pytest.raises(InputError, match=re.escape("column 'loss' holds text, not numbers")):
        load_file(path, csv_engine=engine, loss_key="loss")
    # The same in JSON Lines, and with nothing numeric besides the step.
    jsonl = tmp_path / "run.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"step": i, "loss": _TENSOR_REPR}) + "\n" for i in range(3))
    )
    with pytest.raises(InputError, match=re.escape(message)):
        load_file(jsonl)
    only_text = _write(tmp_path / "words.csv", "loss,lr\nhigh,fast\n")
    with pytest.raises(InputError, match="no numeric columns \\(column 'loss' holds text"):
        load_file(only_text, csv_engine=engine)


def test_a_text_loss_column_in_parquet_and_a_long_cell_is_shortened(tmp_path):
    import pandas as pd

    long_cell = "x" * 500
    path = tmp_path / "run.parquet"
    pd.DataFrame({"step": [0, 1], "loss": [long_cell, "y"], "lr": [0.1, 0.1]}).to_parquet(path)
    with pytest.raises(InputError, match="holds text") as caught:
        load_file(path)
    assert len(str(caught.value)) < 200 and "xxx..." in str(caught.value)


@pytest.mark.parametrize("engine", ["numpy", "arrow"])
def test_an_lr_column_holding_text_is_left_out_with_a_note(tmp_path, engine):
    lines = [f"{i},{1 / (i + 1)},[0.1]" for i in range(40)]
    path = _write(tmp_path / "run.csv", "\n".join(["step,loss,lr", *lines]) + "\n")
    run = load_file(path, csv_engine=engine)
    assert run.lr is None and run.loss.values.size == 40
    assert read_notes(run) == ["the LR column 'lr' holds text, not numbers ('[0.1]'): left out"]
    with pytest.raises(
        InputError, match=re.escape("column 'lr' holds text, not numbers ('[0.1]') (--lr-key)")
    ):
        load_file(path, csv_engine=engine, lr_key="lr")
    # A numeric LR under another common name is used, and nothing is noted.
    lines = [f"{i},{1 / (i + 1)},[0.1],0.1" for i in range(40)]
    both = _write(tmp_path / "both.csv", "\n".join(["step,loss,lr,learning_rate", *lines]) + "\n")
    run = load_file(both, csv_engine=engine)
    assert run.lr_key == "learning_rate" and read_notes(run) == []


@pytest.mark.parametrize("step_column", ["Step", "global_step", "iteration"])
def test_other_step_column_names(tmp_path, step_column):
    run = load_run(_write(tmp_path / "r.csv", f"{step_column},loss\n10,1.0\n20,0.5\n"))
    assert run.loss.steps.tolist() == [10, 20]
    assert read_notes(run) == []


def test_fractional_steps_are_numbered_in_order_and_no_row_is_lost(tmp_path):
    # Fractional epochs as the step (0.25, 0.5, ...) truncated to integers would merge four
    # rows into one step; they are numbered by their order instead, with a note.
    rows = [f"{i * 0.25},{10 - i},0.1" for i in (3, 0, 1, 2, 5, 4, 4)]  # unsorted, one repeat
    run = load_run(_write(tmp_path / "r.csv", "\n".join(["step,loss,lr", *rows]) + "\n"))
    assert run.loss.steps.tolist() == [0, 1, 2, 3, 4, 5]
    assert run.loss.values.tolist() == [10, 9, 8, 7, 6, 5]
    assert read_notes(run) == [
        "the step column 'step' holds fractions (0.75): steps are their order (0, 1, 2, ...)",
        "1 row of 'loss' repeats an earlier step: the latest of each step is used (right for a "
        "job resumed from a checkpoint; a step counted per epoch needs a global step, or an "
        "epoch column)",
    ]
    whole = load_run(_write(tmp_path / "w.csv", "step,loss\n10.0,1\n20.0,0.5\n"))
    assert whole.loss.steps.tolist() == [10, 20] and read_notes(whole) == []


def test_a_tensorboard_csv_download_is_named_by_its_file(tmp_path):
    # TensorBoard's "Download CSV": Wall time, Step, Value - the scalar's tag is in the name.
    rows = "".join(f"{1.7e9 + i},{i},{2.0 / (i + 1)}\n" for i in range(40))
    header = "Wall time,Step,Value\n"
    run = load_run(_write(tmp_path / "run-version_0-tag-train_loss_step.csv", header + rows))
    assert run.loss_key == "train_loss_step" and run.loss.values[1] == 1.0
    assert read_notes(run) == [
        "a TensorBoard scalar export: its Value column is 'train_loss_step', named by the file"
    ]
    lr_only = _write(tmp_path / "run-version_0-tag-lr-SGD.csv", header + rows)
    with pytest.raises(
        InputError, match=re.escape("no loss column among columns (Wall time, lr-SGD)")
    ):
        load_run(lr_only)
    # Neither a loss nor an LR by its name: "no loss column among columns (Wall time, Value)"
    # left the user to guess that --loss-key Value would read it.
    other = _write(tmp_path / "run-version_0-tag-accuracy.csv", header + rows)
    with pytest.raises(
        InputError,
        match="of 'accuracy' \\(the tag in its file name\\), not a name known for a loss",
    ):
        load_run(other)
    renamed = _write(tmp_path / "export.csv", header + rows)
    with pytest.raises(InputError, match="does not say which scalar it holds; if it is the loss"):
        load_run(renamed)
    assert load_run(renamed, loss_key="Value").loss.values[1] == 1.0


def test_a_step_counted_per_epoch_is_numbered_with_the_epoch(tmp_path):
    # Five epochs of steps 0-99: read as they stand, each epoch replaced the one before and the
    # run was analysed as its last 100 rows.
    rows = [f"{e},{s},{500 - (100 * e + s)}" for e in range(5) for s in range(100)]
    run = load_run(_write(tmp_path / "r.csv", "\n".join(["epoch,step,loss", *rows]) + "\n"))
    assert run.loss.steps.tolist() == list(range(500))
    assert run.loss.values.tolist() == list(range(500, 0, -1))
    assert read_notes(run) == [
        "the step column 'step' restarts every epoch: steps are numbered in (epoch, step) order"
    ]
    # Without an epoch column the rows' order tells: every epoch climbs over the same steps.
    rows = [f"{s},{500 - (100 * e + s)}" for e in range(5) for s in range(100)]
    run = load_run(_write(tmp_path / "n.csv", "\n".join(["step,loss", *rows]) + "\n"))
    assert run.loss.steps.tolist() == list(range(500))
    assert read_notes(run)[0].startswith("the step of 'loss' starts again every epoch (5 epochs")
    # A job resumed from a checkpoint goes back to the checkpoint's step: the later rows win,
    # and the note says what happened and why.
    rows = [f"{s},{1.0}" for s in range(100)] + [f"{s},{0.5}" for s in range(60, 100)]
    run = load_run(_write(tmp_path / "c.csv", "\n".join(["step,loss", *rows]) + "\n"))
    assert run.loss.steps.tolist() == list(range(100)) and run.loss.values[60:].max() == 0.5
    assert read_notes(run)[0].startswith("40 rows of 'loss' repeat an earlier step")
    # A global step beside the epoch (Lightning's CSVLogger) is read as it stands.
    rows = [f"{e},{100 * e + s},{1.0}" for e in range(3) for s in range(100)]
    run = load_run(_write(tmp_path / "g.csv", "\n".join(["epoch,step,loss", *rows]) + "\n"))
    assert run.loss.steps.tolist() == list(range(300)) and read_notes(run) == []


def test_no_step_column_uses_the_row_index_and_says_so(tmp_path):
    run = load_run(
        _write(tmp_path / "r.tsv", "epoch\tloss\tlearning_rate\n0\t1.0\t0.1\n0\t0.8\t0.1\n")
    )
    assert run.loss.steps.tolist() == [0, 1]
    assert run.tags[TAG_STEPS_FROM] == "row index"
    assert "row numbers" in read_notes(run)[0]
    # A step column of timestamps was reported as "no step column", as if it were not there.
    rows = ["step,loss", "2024-01-01 00:00:00,1.0", "2024-01-01 00:00:01,0.8"]
    run = load_run(_write(tmp_path / "t.csv", "\n".join(rows) + "\n"))
    assert run.loss.steps.tolist() == [0, 1]
    assert read_notes(run) == [
        "column 'step' holds dates/times, not numbers ('2024-01-01 00:00:00'): not used as the step",
        "no step column: steps are row numbers (0, 1, 2, ...)",
    ]
    # Typed by the format (a Parquet datetime, a bool) they were called "text" too.
    frame = pd.DataFrame({"step": pd.date_range("2024-01-01", periods=2, freq="s")})
    frame["loss"], frame["done"] = [1.0, 0.8], [False, True]
    frame.to_parquet(tmp_path / "t.parquet")
    run = load_run(str(tmp_path / "t.parquet"))
    assert run.loss.steps.tolist() == [0, 1]
    assert "column 'step' holds dates/times, not numbers" in read_notes(run)[0]
    with pytest.raises(InputError, match=re.escape("'done' holds true/false values, not numbers")):
        load_run(str(tmp_path / "t.parquet"), loss_key="done")


def test_rows_without_a_usable_step_are_left_out_and_said_so(tmp_path):
    # A row with a loss but no step (a summary row, a writer that lost its counter) cannot be
    # placed: it is left out, as before, but no longer without a word.
    run = load_run(_write(tmp_path / "r.csv", "step,loss\n0,1.0\n1,0.8\n,0.5\n2,0.6\n"))
    assert run.loss.steps.tolist() == [0, 1, 2] and run.loss.values.tolist() == [1.0, 0.8, 0.6]
    assert read_notes(run) == [
        "1 row without a usable step in 'step' (blank, non-finite or beyond 2^62): left out"
    ]
    # A step column with no usable value at all was "no numeric rows besides the step column"
    # beside a column of numeric losses: it is no step, as a text one is not.
    for steps in (["nan"] * 3, ["1e30", "2e30", "3e30"]):
        rows = [f"{step},{loss}" for step, loss in zip(steps, (1.0, 0.8, 0.6))]
        run = load_run(_write(tmp_path / "n.csv", "\n".join(["step,loss", *rows]) + "\n"))
        assert run.loss.steps.tolist() == [0, 1, 2] and run.loss.values.tolist() == [1.0, 0.8, 0.6]
        assert read_notes(run) == [
            "the step column 'step' holds no usable step: not used as the step",
            "no step column: steps are row numbers (0, 1, 2, ...)",
        ]
    # ... and such a step column alone is one clear error, not "generator raised StopIteration".
    with pytest.raises(InputError, match=r"no numeric rows besides the step column 'step' \(wh"):
        load_run(_write(tmp_path / "only.csv", "step\nnan\n4.7e18\n"))


def test_a_per_epoch_log_counts_steps_in_its_epochs(tmp_path, diverging_run):
    """Keras's CSVLogger writes ``epoch,...,loss`` with no step column (epochs from 0; a
    script's own log often from 1). Steps were row numbers, so a divergence "began at step 11"
    in the run whose log shows it at epoch 12."""
    loss, lr = diverging_run.loss.values, diverging_run.lr.values
    rows = [f"{i + 1},{lr[i]},{v}" for i, v in enumerate(loss)]
    path = _write(tmp_path / "log.csv", "\n".join(["epoch,learning_rate,loss", *rows]) + "\n")
    run = load_run(path)
    assert run.loss.steps.tolist() == list(range(1, loss.size + 1)) and "epoch" not in run.metrics
    assert read_notes(run) == ["no step column: steps are the epochs in 'epoch', one row each"]
    original = analyze(diverging_run).findings[0]
    found = analyze(run).findings[0]
    assert (found.kind, found.start_step) == ("divergence", original.start_step + 1)


def test_nested_json_objects_are_metrics_named_by_their_path(tmp_path, diverging_run):
    """A script's own log, ``json.dumps({"step": s, "train": {"loss": ..., "lr": ...}})``, was
    "no loss column among columns (step)": nested objects were read as text and left out."""
    loss, lr = diverging_run.loss.values, diverging_run.lr.values
    lines = [
        json.dumps({"step": i, "train": {"loss": v, "lr": lr[i]}, "val": {"loss": 1.0}})
        for i, v in enumerate(loss.tolist())
    ]
    run = load_run(_write(tmp_path / "log.jsonl", "\n".join(lines) + "\n"))
    assert (run.loss_key, run.lr_key) == ("train/loss", "train/lr")
    assert set(run.metrics) == {"train/loss", "train/lr", "val/loss"}
    np.testing.assert_array_equal(run.loss.values, loss)  # json writes NaN and Infinity
    found = analyze(run).findings[0]
    assert (found.kind, found.start_step) == (
        "divergence",
        analyze(diverging_run).findings[0].start_step,
    )


def test_a_keras_history_of_whole_columns_is_a_table(tmp_path, diverging_run):
    """``json.dump(history.history, f)`` after ``model.fit``: one list per metric, one value per
    epoch. Before: "no numeric columns (column 'loss' holds text ...)"."""
    loss, lr = diverging_run.loss.values.tolist(), diverging_run.lr.values.tolist()
    history = {"loss": loss, "learning_rate": lr, "val_loss": [1.0] * len(loss)}
    run = load_run(_write(tmp_path / "history.json", json.dumps(history)))
    assert (run.loss_key, run.lr_key) == ("loss", "learning_rate")
    assert set(run.metrics) == {"loss", "learning_rate", "val_loss"}
    np.testing.assert_array_equal(run.loss.values, loss)
    np.testing.assert_array_equal(run.loss.steps, np.arange(len(loss)))
    found = analyze(run).findings[0]
    assert (found.kind, found.start_step) == (
        "divergence",
        analyze(diverging_run).findings[0].start_step,
    )
    # validation_freq=5: the held-out list is shorter and does not say which epochs it holds.
    history["val_loss"] = history["val_loss"][::5]
    run = load_run(_write(tmp_path / "every5.json", json.dumps(history)))
    assert set(run.metrics) == {"loss", "learning_rate"}
    assert read_notes(run)[0] == (
        f"'val_loss' holds {len(history['val_loss'])} values against {len(loss)} for the "
        "others: left out (which rows they belong to is not recorded)"
    )


@pytest.mark.parametrize("orient", ["columns", "index"])
def test_a_pandas_json_export_is_a_table_indexed_by_its_labels(tmp_path, healthy_run, orient):
    """``DataFrame.to_json()`` keys each value by its row's index label. Before: one row, a
    column per label (``loss/0``, ``loss/1``, ...), "too short to judge"."""
    import pandas as pd

    steps = healthy_run.loss.steps * 10  # logged every 10th step, the step as the index
    frame = pd.DataFrame(
        {"loss": healthy_run.loss.values, "lr": healthy_run.lr.values}, index=steps
    )
    run = load_run(_write(tmp_path / "log.json", frame.to_json(orient=orient)))
    assert set(run.metrics) == {"loss", "lr"}
    np.testing.assert_array_equal(run.loss.steps, steps)
    # to_json writes 10 significant digits by default.
    np.testing.assert_allclose(run.loss.values, healthy_run.loss.values, rtol=1e-9)
    # With a step column the index is only the row number.
    frame = frame.reset_index(names="step")
    run = load_run(_write(tmp_path / "with_step.json", frame.to_json(orient=orient)))
    assert set(run.metrics) == {"loss", "lr"}
    np.testing.assert_array_equal(run.loss.steps, steps)


def _table_text(run, delimiter: str) -> str:
    rows = zip(run.loss.steps.tolist(), run.loss.values.tolist(), run.lr.values.tolist())
    return "".join(f"{s}{delimiter}{v!r}{delimiter}{lr!r}\n" for s, v, lr in rows)


def test_utf16_and_windows_code_page_tables_load(tmp_path, diverging_run):
    """Excel's "Unicode Text" export and Windows PowerShell's ``>`` write UTF-16; a run name in
    a Windows code page is not UTF-8. Before: both were "not a table"."""
    text = "step\tloss\tlr\n" + _table_text(diverging_run, "\t")
    (tmp_path / "unicode.txt").write_text(text.replace("\n", "\r\n"), encoding="utf-16")
    lines = _table_text(diverging_run, ",").splitlines()
    cp1252 = "step,loss,lr,run\n" + "".join(f"{line},café-€\n" for line in lines)
    (tmp_path / "excel.csv").write_bytes(cp1252.encode("cp1252"))
    for name, notes in (("unicode.txt", []), ("excel.csv", [_LATIN_1_NOTE])):
        run = load_run(str(tmp_path / name))
        np.testing.assert_array_equal(run.loss.values, diverging_run.loss.values)
        np.testing.assert_array_equal(run.lr.values, diverging_run.lr.values)
        assert read_notes(run) == notes


_LATIN_1_NOTE = "the file is not UTF-8: its text cells were read as Latin-1"


@pytest.mark.parametrize("delimiter", [",", " "])
def test_numpy_savetxt_files_load_with_the_header_in_their_comment(
    tmp_path, diverging_run, delimiter
):
    """``np.savetxt(path, table, header=...)`` writes ``# step loss lr`` and, by default,
    space-separated numbers. Before: "a row has 3 fields but the header has 1"."""
    table = np.column_stack(
        [diverging_run.loss.steps, diverging_run.loss.values, diverging_run.lr.values]
    )
    header = delimiter.join(("step", "train/loss", "lr"))
    np.savetxt(tmp_path / "log.txt", table, delimiter=delimiter, header=header)
    run = load_run(str(tmp_path / "log.txt"))
    assert (run.loss_key, run.lr_key) == ("train/loss", "lr")
    np.testing.assert_array_equal(run.loss.steps, diverging_run.loss.steps)
    np.testing.assert_array_equal(run.loss.values, diverging_run.loss.values)  # %.18e round-trips
    assert read_notes(run) == [f"the header is the comment line '# {header}'"]
    assert analyze(run).findings[0].start_step == analyze(diverging_run).findings[0].start_step
    # Without the "# " (comments=""), and columns aligned by runs of spaces.
    aligned = "step    loss      lr\n" + "".join(
        f"{int(s):<7d} {v:<9.6g} {lr}\n" for s, v, lr in table.tolist()
    )
    run = load_run(_write(tmp_path / "aligned.txt", aligned))
    assert (run.loss.steps.size, run.loss_key) == (diverging_run.loss.steps.size, "loss")


def test_comment_lines_above_a_header_are_left_out(tmp_path, healthy_run):
    text = "# lr sweep, seed 0\n# by train.py\nstep,loss,lr\n" + _table_text(healthy_run, ",")
    run = load_run(_write(tmp_path / "log.csv", text))
    np.testing.assert_array_equal(run.loss.values, healthy_run.loss.values)
    assert read_notes(run) == ["2 comment lines (#) at the top: left out"]
    text = "# step,loss,lr\n# by train.py\n" + _table_text(healthy_run, ",")
    run = load_run(_write(tmp_path / "numbers.csv", text))
    np.testing.assert_array_equal(run.loss.values, healthy_run.loss.values)
    assert read_notes(run) == [
        "the header is the comment line '# step,loss,lr'; 1 comment line (#) left out"
    ]


@pytest.mark.parametrize("engine", ["numpy", "arrow"])
def test_a_log_appended_to_after_a_restart_loads_with_the_newer_rows(
    tmp_path, diverging_run, engine
):
    """A script that appends to its CSV after resuming from a checkpoint writes its header (or
    a "# resumed" comment) again, then logs the steps after the checkpoint once more. Before:
    every column was text ("no numeric columns"), or, with a comment, steps were row numbers."""
    from lrwatch.sources.files import load_file

    lines = _table_text(diverging_run, ",").splitlines(keepends=True)
    crashed = 60  # the first attempt logged steps 0-59; the checkpoint was taken at step 40
    first, second = lines[:crashed], lines[40:]
    resumed = "step,loss,lr\n" + "".join(first) + "step,loss,lr\n" + "".join(second)
    path = _write(tmp_path / "appended.csv", resumed)
    run = load_file(path, csv_engine=engine)
    np.testing.assert_array_equal(run.loss.steps, diverging_run.loss.steps)
    np.testing.assert_array_equal(run.loss.values, diverging_run.loss.values)
    assert read_notes(run)[0] == (
        "the header line repeats once between the rows (a file appended to after a restart, "
        "or files joined): left out"
    )
    commented = resumed.replace("\nstep,loss,lr", "\n# resumed from the checkpoint of step 40")
    run = load_file(_write(tmp_path / "commented.csv", commented), csv_engine=engine)
    np.testing.assert_array_equal(run.loss.steps, diverging_run.loss.steps)
    assert read_notes(run)[0] == "1 comment line (#) between the rows: left out"
    assert analyze(run).findings[0].start_step == analyze(diverging_run).findings[0].start_step


def test_explicit_keys_override_the_guess(tmp_path):
    run = load_run(
        _write(tmp_path / "r.csv", "step,loss,my_loss,lr,my_lr\n0,1,2,0.1,0.2\n"),
        loss_key="my_loss",
        lr_key="my_lr",
    )
    assert (run.loss.values[0], run.lr.values[0]) == (2.0, 0.2)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "empty"),
        ("garbage.csv", bytes(range(256)) * 4, "not a table"),
        # Not UTF-8 and no NUL byte, but binary all the same: not read as Latin-1 text.
        ("garbage_no_nul.csv", bytes(range(1, 256)) * 4, "not a table"),
        ("only_comments.csv", b"# step,loss\n# lr 0.1\n", "not a table"),
        ("garbage.parquet", b"PAR1" + b"\x17" * 100, "not a table"),
        ("bad.jsonl", b'{"step": 1, "loss": \n', "not a table"),
        ("header.csv", b"step,loss,lr\n", "no rows"),
        ("words.csv", b"step,loss\na,b\nc,d\n", "no numeric"),
        (
            "noloss.csv",
            b"step,accuracy,lr\n0,0.5,0.1\n",
            "no loss column among columns (accuracy, lr)",
        ),
    ],
)
def test_bad_files_are_one_line_input_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        load_run(str(path))
    assert "\n" not in str(caught.value)


def test_missing_file_and_missing_named_column(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_run(str(tmp_path / "missing.csv"))
    path = _write(tmp_path / "r.csv", "step,loss\n0,1\n")
    with pytest.raises(
        InputError, match="no column 'nope' \\(--loss-key\\); numeric columns: loss"
    ):
        load_run(path, loss_key="nope")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError, match="no run files"):
        load_runs([str(tmp_path / "empty_dir")])


_CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(
        ["", "nan", "NaN", "inf", "-Infinity", "x", " 1.5 ", '"2"', "NA", '""', '"NA"']
    ),
)


@given(
    header=st.lists(
        st.sampled_from(["step", "loss", "lr", "val_loss", "", "a b"]), min_size=1, max_size=5
    ),
    rows=st.lists(st.lists(_CELLS, min_size=0, max_size=6), max_size=30),
)
@example(header=["step", "step", "step", "loss"], rows=[["0.0", "0.0", "", "0.0"]])
@example(header=["step"], rows=[["4.611686018427388e+18"]])  # a step beyond 2^62, nothing else
def test_any_csv_loads_or_is_an_input_error(header, rows):
    # A folder per example, removed after it: pytest's numbered tmp_path_factory folders cost a
    # listing of all earlier ones each, quadratic in LRWATCH_PROPERTY_EXAMPLES.
    with tempfile.TemporaryDirectory() as folder:
        _csv_loads_or_is_an_input_error(Path(folder) / "run.csv", header, rows)


def _csv_loads_or_is_an_input_error(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.write_text("\n".join([",".join(header), *(",".join(r) for r in rows)]) + "\n")
    outcomes = []
    for engine in ("numpy", "arrow"):  # both CSV readers must agree on every input
        try:
            run = load_file(path, csv_engine=engine)
            require_loss(run)
        except InputError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            outcomes.append("error")
            continue
        assert np.all(np.diff(run.loss.steps) > 0)  # cleaned: sorted, one value per step
        outcomes.append({k: (s.steps.tolist(), s.values.tolist()) for k, s in run.metrics.items()})
    if outcomes[0] != "error" and outcomes[1] != "error":
        np.testing.assert_equal(outcomes[0], outcomes[1])
    else:
        assert outcomes[0] == outcomes[1]


def test_a_hugging_face_trainer_state_is_a_run():
    # A REAL Trainer run (data/make_hf_trainer_state.py): SGD at a peak rate of 4 (the task's
    # best is ~0.03) after 100 warmup steps, logged every 5 steps, with the Trainer's eval-free
    # summary row ("train_loss") at the end of log_history.
    path = Path(__file__).parent / "data" / "hf_trainer_state.json"
    run = load_file(path)
    assert (run.loss_key, run.lr_key) == ("loss", "learning_rate")
    assert run.loss.steps.tolist() == list(range(5, 401, 5))
    history = json.loads(path.read_text())["log_history"]
    logged = [entry["loss"] for entry in history if "loss" in entry]
    np.testing.assert_array_equal(run.loss.values, logged)
    assert read_notes(run) == []  # its summary row repeats the last step's epoch, not the loss
    report = analyze(run)
    assert report.schedule.warmup_steps == pytest.approx(100, abs=10)
    assert [f.kind for f in report.findings if f.severity == "critical"] == ["divergence"]
    assert report.recommendation.action == "lower_peak_lr"
    assert report.recommendation.suggested_lr < 1.0  # below where the loss began to climb


def _poisoned_run_records(steps: int = 300, poisoned_step: int = 200) -> list[dict]:
    """REAL SGD on a regression MLP whose batch at ``poisoned_step`` holds a NaN feature (a
    corrupt record): the weights turn NaN and so does every loss after - no climb before it.
    The records a script appends each step: step, loss, lr, grad_norm."""
    import torch

    torch.manual_seed(0)
    inputs, targets = torch.randn(512, 8), torch.randn(512, 1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    records = []
    for step in range(steps):
        batch = inputs[(step * 32) % 512 :][:32].clone()
        if step == poisoned_step:
            batch[0, 0] = float("nan")
        loss = torch.nn.functional.mse_loss(model(batch), targets[(step * 32) % 512 :][:32])
        optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
        optimizer.step()
        records.append(
            {"step": step, "loss": loss.item(), "lr": 0.05, "grad_norm": grad_norm.item()}
        )
    return records


@pytest.mark.parametrize("writer", ["to_csv", "to_parquet"])
def test_nan_losses_pandas_wrote_as_blanks_are_nan_again(tmp_path, writer):
    # pandas writes NaN as a blank cell / a null: the run read as one that stopped logging at
    # its last finite loss, and got "no problem found, keep".
    import pandas as pd

    frame = pd.DataFrame(_poisoned_run_records())
    path = tmp_path / f"run.{'csv' if writer == 'to_csv' else 'parquet'}"
    getattr(frame, writer)(path, index=False)
    run = load_run(str(path))
    assert run.loss.steps.tolist() == list(range(300))
    assert np.isnan(run.loss.values[200:]).all() and np.isfinite(run.loss.values[:200]).all()
    assert read_notes(run) == [
        "the loss 'loss' is blank from step 200 on (100 rows) where the LR goes on: read as NaN, "
        "as pandas writes it (to_csv(na_rep='nan') keeps it explicit)"
    ]
    report = analyze(run)
    assert report.findings[0].kind == "divergence" and report.findings[0].start_step <= 200


def test_blank_losses_that_are_not_nan_stay_unlogged(tmp_path):
    rows = [f"{s},{2.0 / (s + 1)},0.1," for s in range(100)]
    # Validation rows at the end (a val_loss the training rows never had, the LR logged too).
    with_eval = load_run(
        _write(tmp_path / "e.csv", "\n".join(["step,loss,lr,val_loss", *rows, "100,,0.1,0.3"]))
    )
    # Rows without the LR (a Lightning CSVLogger's validation rows).
    no_lr = load_run(_write(tmp_path / "v.csv", "\n".join(["step,loss,lr,x", *rows, "100,,,1"])))
    # The loss logged every 10th step, the LR every step: the LR's last rows hold no loss.
    sparse = [f"{s},{2.0 / (s + 1) if s % 10 == 0 else ''},0.1" for s in range(400)]
    sparse_run = load_run(_write(tmp_path / "s.csv", "\n".join(["step,loss,lr", *sparse])))
    for run in (with_eval, no_lr, sparse_run):
        assert np.isfinite(run.loss.values).all() and read_notes(run) == []
    assert sparse_run.loss.steps[-1] == 390


def test_lines_ended_by_a_carriage_return_alone(tmp_path):
    # Excel for Mac's "CSV (Macintosh)": was "lrwatch: error: Error: new-line character seen in
    # unquoted field - ..." (the csv module's words, no file named).
    rows = "".join(f"{s},{2.0 / (s + 1)},0.1\r" for s in range(40))
    run = load_run(_write(tmp_path / "mac.csv", "step,loss,lr\r" + rows))
    assert run.loss.steps.tolist() == list(range(40)) and run.lr.values[0] == 0.1
    # A stray carriage return inside a line is one clear error naming the file.
    stray = _write(tmp_path / "stray.csv", "step,lo\rss\n0,1\n")
    with pytest.raises(InputError, match=re.escape(f"{stray}: not a readable CSV (")):
        load_run(stray)


@pytest.mark.parametrize("writer", ["csv", "tensorboard"])
def test_a_batch_index_logged_as_the_step_is_numbered_across_epochs(tmp_path, writer):
    """`writer.writerow([batch_idx, loss])` or TensorBoard's `add_scalar("loss", loss,
    batch_idx)` in the epoch loop: read by step, each epoch's rows replaced the epoch before's,
    so a 4-epoch run read as its last 25 points. Rows are in logging order, as in MLflow."""
    import csv

    if writer == "csv":
        path = tmp_path / "log.csv"
        with path.open("w", newline="") as fh:
            rows = csv.writer(fh)
            rows.writerow(["step", "loss", "lr"])
            logged = train_logging_each_batch(lambda *row: rows.writerow(row))
    else:
        from torch.utils.tensorboard import SummaryWriter

        path = tmp_path / "tb"
        tb = SummaryWriter(str(path))

        def log(step, loss, lr):
            tb.add_scalar("loss", loss, step)
            tb.add_scalar("lr", lr, step)

        logged = train_logging_each_batch(log)
        tb.close()
    run = load_run(str(path))
    assert run.loss.steps.tolist() == list(range(100))
    np.testing.assert_allclose(run.loss.values, logged, rtol=1e-6)  # TensorBoard: float32
    assert run.lr.steps.tolist() == list(range(100))
    example = "step=batch // 100" if writer == "csv" else "add_scalar(tag, value, batch_idx)"
    tags = "'loss'" if writer == "csv" else "'loss', 'lr'"
    assert (
        f"the step of {tags} starts again every epoch (4 epochs, e.g. {example} inside the epoch "
        "loop): steps are numbered across epochs, in logging order"
    ) in read_notes(run)
    assert analyze(run).extras["verdict"] != "too_short"
    if writer == "tensorboard":
        # The script run again into the same log directory: a second event file starting at
        # step 0 is a rerun, not a fifth epoch; its values win step for step, as before.
        again = SummaryWriter(str(path), filename_suffix=".again")
        rerun = train_logging_each_batch(
            lambda step, loss, lr: again.add_scalar("loss", loss, step), seed=2
        )
        again.close()
        run = load_run(str(path))
        assert run.loss.steps.tolist() == list(range(100))
        np.testing.assert_allclose(run.loss.values, rerun, rtol=1e-6)


def test_a_rerun_appended_to_the_same_file_is_not_a_second_epoch(tmp_path):
    """A crashed job started again from scratch, appending to its log: the same steps again,
    from the first level. Read as a second epoch, the loss jumped back up to where it began (and
    this run was told to decay a plateau); the rerun's rows replace the first attempt's instead."""
    import csv

    path = tmp_path / "log.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerow(["step", "loss", "lr"])

    def attempt(seed: int, epochs: int) -> list[float]:
        """One run of the script, appending a row per step (a global step from 0)."""
        with path.open("a", newline="") as fh:
            rows, step = csv.writer(fh), iter(range(10_000))
            return train_logging_each_batch(
                lambda _, loss, lr: rows.writerow([next(step), loss, lr]), epochs=epochs, seed=seed
            )

    reruns = [attempt(1, epochs=4), attempt(2, epochs=2)]  # the rerun has not yet got as far
    run = load_run(str(path))
    assert run.loss.steps.tolist() == list(range(100))
    np.testing.assert_allclose(run.loss.values[:50], reruns[1])
    np.testing.assert_allclose(run.loss.values[50:], reruns[0][50:])
    assert read_notes(run)[0].startswith("50 rows of 'loss' repeat an earlier step")
    assert analyze(run).extras["verdict"] == "ok"  # read as epochs: a plateau warning


def _zip_of_one(data: bytes) -> bytes:
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("run.csv", data)
    return packed.getvalue()


_TABLE = b"step,loss,lr\n" + b"".join(b"%d,%.6f,0.1\n" % (i, 1 / (i + 1)) for i in range(200))
_PACKED = {
    ".gz": gzip.compress(_TABLE),
    ".bz2": bz2.compress(_TABLE),
    ".xz": lzma.compress(_TABLE),
    ".zip": _zip_of_one(_TABLE),
}


@given(
    suffix=st.sampled_from(sorted(_PACKED)),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=5),
)
def test_a_damaged_compressed_file_loads_or_is_an_input_error(suffix, cut, flips):
    data = bytearray(_PACKED[suffix])
    for where, byte in flips:
        data[int(where * (len(data) - 1))] = byte
    with tempfile.TemporaryDirectory() as folder:  # not tmp_path_factory: see the CSV property
        _loads_or_is_an_input_error(Path(folder), suffix, data[: max(1, int(cut * len(data)))])


def _small_arrow_table():
    import pyarrow as pa

    steps = np.arange(12)
    return pa.table({"step": steps, "loss": 1 / (steps + 1.0), "lr": 0.1 + 0 * steps})


def _small_parquet() -> bytes:
    import pyarrow.parquet as pq

    packed = io.BytesIO()
    pq.write_table(_small_arrow_table(), packed)
    return packed.getvalue()


def _small_feather() -> bytes:
    import pyarrow.feather as feather

    packed = io.BytesIO()
    feather.write_feather(_small_arrow_table(), packed)
    return packed.getvalue()


@pytest.mark.parametrize(
    ("suffix", "make", "bytes_set"),
    [
        (".zip", lambda: _PACKED[".zip"], (0, 255)),
        (".parquet", _small_parquet, (255,)),
        (".feather", _small_feather, (255,)),
    ],
)
def test_any_byte_damaged_loads_or_is_an_input_error(tmp_path, suffix, make, bytes_set):
    # Found by fuzzing, both as bare text from `lrwatch analyze` (naming no file) and as a
    # traceback from load_runs: damage in a zip's data or directory raised zlib.error,
    # EOFError, ValueError ("negative seek value") or IndexError (a nameless entry); in a
    # Parquet file's footer, UnicodeDecodeError and ArrowNotImplementedError. Every byte
    # (~1 s each).
    packed = make()
    for where in range(len(packed)):
        for byte in bytes_set:
            data = bytearray(packed)
            data[where] = byte
            _loads_or_is_an_input_error(tmp_path, suffix, data)


def _loads_or_is_an_input_error(folder: Path, suffix: str, data: bytes) -> None:
    binary = suffix in (".parquet", ".feather")
    path = folder / f"run{suffix}" if binary else folder / f"run.csv{suffix}"
    path.write_bytes(bytes(data))
    try:
        load_runs([str(path)])  # a file's header is read first (runs_in_file), then the file
    except InputError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
