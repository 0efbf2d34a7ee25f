"""Reading saved-run tables (CSV, Parquet, Feather / Arrow IPC, JSON Lines, Hugging Face
``trainer_state.json``)
into columns of float64, also compressed as pandas' ``to_csv`` writes by suffix (``run.csv.gz``,
``.bz2``, ``.xz``, a ``.zip`` holding the one table).

A table is one row per logged step: a step column plus one column per metric. Each column comes
back as ``(values, present)``: ``present`` is False where the row logged nothing for that metric
(an empty CSV cell, a Parquet null, a key missing from a JSON line) - sparse logging - while a
logged ``nan``/``inf`` is present and kept as evidence. Columns that are not numbers (a run
name, a timestamp string) are left out, each remembered with one of its cells so that an error
about a loss written as text (``"tensor(0.51, grad_fn=...)"``) can say so. A semicolon-separated
CSV (a European spreadsheet's export) may use a decimal comma (``0,51``).

A writer that crashed mid-line leaves a JSON Lines file (or a compressed stream) cut off at its end:
the lines before the cut are read and a note says what was left out (:class:`Table`).

Only numpy and the standard library are imported here (pyarrow for Parquet and Feather only;
``bz2``, ``lzma`` and ``zipfile`` for such files only), so ``lrwatch analyze run.csv`` starts
fast.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lrwatch.errors import InputError

Column = tuple[np.ndarray, np.ndarray]  # (float64 values, bool present)

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
# pandas' to_feather and polars' write_ipc: the Arrow IPC file format (Feather V2), also its
# stream format and the deprecated Feather V1.
ARROW_IPC_SUFFIXES = (".feather", ".arrow", ".ipc", ".arrows")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
# Any text table may be compressed with one of these (pandas' to_csv picks the codec from them).
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zip")
TABLE_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES + ARROW_IPC_SUFFIXES + JSONL_SUFFIXES
_PARQUET_MAGIC = b"PAR1"
# An Arrow IPC file (Feather V2) and a Feather V1 file begin so; an Arrow IPC stream (no magic)
# with the continuation marker of its first message, bytes no text file begins with.
_ARROW_IPC_MAGICS = (b"ARROW1", b"FEA1", b"\xff\xff\xff\xff")
_GZIP_MAGIC = b"\x1f\x8b"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZIP_MAGIC = b"PK\x03\x04"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# "BZh", the block size (1-9), then the first block's magic (the digits of pi) or, for an empty
# stream, the end-of-stream magic: a CSV could begin with "BZh", not with all of this.
_BZIP2_MAGIC = re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)")
_CODEC_HEAD_BYTES = 10  # enough for every magic above
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Control characters other than tab and line ends: a table holds none, binary data many (1 in
# 10 bytes of random data); one in a thousand leaves room for a stray form feed.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_MAX_CONTROL_SHARE = 1e-3
# Marks a table whose columns are separated by runs of spaces (numpy's savetxt default).
WHITESPACE = " "
# How much of a file is sniffed to tell the formats apart.
_SNIFF_BYTES = 4096
# The longest header line read on its own (a chart export of hundreds of runs fits).
_MAX_HEADER_BYTES = 1 << 20
# A number written with a decimal comma, as spreadsheets in many locales export it; read only
# from semicolon-separated files, where the comma cannot be the field separator.
_DECIMAL_COMMA = re.compile(r"([+-]?\d*),(\d+(?:[eE][+-]?\d+)?)")
# Cells that mean "not logged here" as a blank does: what pandas, R, spreadsheets and
# `str(None)` write for a missing value. "nan" is not among them: a NaN loss is evidence.
MISSING_CELLS = ("", "NA", "N/A", "#N/A", "null", "NULL", "None", "none", "-")
# Text columns kept whole, lower-cased: in a long table (one row per step and metric) they say
# which metric a row holds, or which run (:mod:`lrwatch.sources.long_format`).
LABEL_COLUMNS = ("tag", "key", "metric", "dir_name", "run", "run_id", "run_name")
# Step column names, in order of preference (ours, Lightning's CSVLogger, W&B, common others).
STEP_COLUMNS = ("step", "Step", "global_step", "trainer/global_step", "_step", "iteration", "iter")
# Epoch column names: a step that restarts every epoch is numbered with it.
EPOCH_COLUMNS = ("epoch", "Epoch", "trainer/epoch")
# How much of a text cell an error message quotes.
_QUOTE_CHARS = 48


@dataclass
class Table:
    """Numeric columns in file order, and notes on what reading had to leave out."""

    columns: dict[str, Column]
    notes: list[str] = field(default_factory=list)
    # Columns left out for holding something other than numbers: name -> one such cell.
    text_columns: dict[str, str] = field(default_factory=dict)
    # Every cell (None where blank) of the text columns that may label the rows of a long
    # table - which metric, which run (:data:`LABEL_COLUMNS`, any case).
    labels: dict[str, list[str | None]] = field(default_factory=dict)
    # Label column -> its distinct cells -> their row numbers (see rows_labelled); a copy of the
    # table shares it, as it shares the labels.
    label_rows: dict[str, dict[str | None, np.ndarray]] = field(default_factory=dict)

    def rows_labelled(self, name: str, cell: str | None) -> np.ndarray:
        """The rows (ascending) whose label column ``name`` holds ``cell``. The column is
        grouped once: a long table of N runs asks once per run."""
        groups = self.label_rows.get(name)
        if groups is None:
            grouped: dict[str | None, list[int]] = {}
            for row, label in enumerate(self.labels[name]):
                grouped.setdefault(label, []).append(row)
            groups = {label: np.array(rows, dtype=np.int64) for label, rows in grouped.items()}
            self.label_rows[name] = groups
        return groups.get(cell, np.empty(0, dtype=np.int64))

    def describe_text(self, name: str) -> str:
        """``column 'loss' holds text, not numbers ('tensor(0.5, grad_fn=...)')``."""
        return f"column {name!r} holds text, not numbers ({self.text_columns[name]!r})"

    def add_text(self, name: str, quoted: str, cells: Callable[[], list]) -> None:
        """Remember a text column by one quoted cell; a label column also by all its cells."""
        if name in self.text_columns:
            return  # a header that repeats a name: the first column counts
        self.text_columns[name] = quoted
        if name.lower() in LABEL_COLUMNS:
            self.labels[name] = [
                None if cell is None or str(cell).strip() in MISSING_CELLS else str(cell).strip()
                for cell in cells()
            ]


def table_suffix(path: Path) -> str:
    """The table format's suffix, looking through a compression suffix (``run.csv.gz`` ->
    ``.csv``)."""
    suffix = path.suffix.lower()
    return Path(path.stem).suffix.lower() if suffix in COMPRESSED_SUFFIXES else suffix


def table_stem(path: Path) -> str:
    """The file name without its table suffixes (``lr0.1.csv.gz`` -> ``lr0.1``)."""
    return Path(path.stem).stem if path.suffix.lower() in COMPRESSED_SUFFIXES else path.stem


def is_table_file(path: Path) -> bool:
    return table_suffix(path) in TABLE_SUFFIXES


def read_table(path: Path, *, csv_engine: str = "numpy") -> Table:
    """Numeric columns of the table at ``path``, in file order.

    ``csv_engine``: ``"numpy"`` (no import beyond numpy: fastest start for one file) or
    ``"arrow"`` (pyarrow's CSV reader: ~2-3x faster per file, worth its ~0.3 s import in a batch).

    Raises:
        InputError: missing, empty, unreadable, not a table, or without numeric columns/rows.
    """
    from lrwatch.sources.tensorboard import EVENT_FILE_MARK

    if path.is_dir() or EVENT_FILE_MARK in path.name:
        return _read_tensorboard(path)
    head = _read_head(path)
    suffix = table_suffix(path)
    table = Table({})
    binary = _binary_format(head, suffix)
    if binary and _codec(head[:_CODEC_HEAD_BYTES]) is not None:
        # Parquet and Arrow compress their own columns: a compressed copy gains little, and is
        # read by offset, which a compressed stream cannot give.
        raise InputError(f"{path}: a compressed {binary} file: decompress it first")
    if binary == "Parquet":
        table.columns = _read_parquet(path, table)
    elif binary == "Feather":
        table.columns = _arrow_columns(_arrow_ipc_table(path), table)
    else:
        data, text = _decode(path, table.notes)
        if suffix in JSONL_SUFFIXES or text.lstrip()[:1] in ("{", "["):
            # line numbers as in the file
            table.columns = _read_json_rows(path, text, table)
        else:
            table.columns = _read_csv_text(path, data, text, table, csv_engine)
    if not table.columns:
        text_columns = "; ".join(table.describe_text(name) for name in table.text_columns)
        raise InputError(
            f"{path}: no numeric columns ({text_columns})"
            if text_columns
            else f"{path}: no numeric columns (is it a table of logged steps?)"
        )
    if not any(present.any() for _, present in table.columns.values()):
        raise InputError(f"{path}: no numeric rows (columns: {', '.join(table.columns)})")
    return table


def _read_tensorboard(path: Path) -> Table:
    """A TensorBoard event file, or a log directory of them, as one column per scalar tag."""
    from lrwatch.sources import long_format, tensorboard

    table = Table({})
    steps, tags, values, files = tensorboard.read_scalars(path, table.notes)
    present = np.ones(len(steps), dtype=bool)
    table.columns = {
        "step": (np.array(steps, np.float64), present),
        "value": (np.array(values), present),
    }
    table.labels = {"tag": list(tags)}
    long_format.widen(table, long_format.LongLayout("step", "tag", "value", None), None)
    table.labels = {}
    table.notes.append(f"TensorBoard event files ({files}): one series per scalar tag")
    return table


def column_names(path: Path) -> list[str]:
    """The column names of a table file, read from its head alone: a CSV's header line, a JSON
    Lines file's first record, a Parquet file's schema. ``[]`` for a file that cannot be read
    so (:func:`read_table` reports what is wrong with it)."""
    suffix = table_suffix(path)
    if suffix not in TABLE_SUFFIXES:
        return []  # a TensorBoard event file, a log directory, anything else
    try:
        with path.open("rb") as raw:
            head = raw.read(_CODEC_HEAD_BYTES)
        binary = _binary_format(head, suffix)
        if binary == "Parquet":
            return _parquet_column_names(path)
        if binary == "Feather":
            return _arrow_ipc_column_names(path)
        with _opened_decompressed(path, _codec(head)) as f:
            first_line = f.readline(_MAX_HEADER_BYTES)
    except (OSError, EOFError, zlib.error, InputError):
        return []  # read_table says what is wrong
    text = first_line.decode("utf-8-sig", errors="replace").strip()
    if suffix in JSONL_SUFFIXES or text[:1] in ("{", "["):
        try:
            record = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return []
        if not isinstance(record, dict):
            return []
        try:
            return [str(name) for name in (_flattened(record) if _has_objects(record) else record)]
        except RecursionError:
            return []
    try:
        return _fields(text, _delimiter(text))
    except csv.Error:  # a NUL, a lone carriage return: not a table, as read_table will say
        return []


def _parquet_column_names(path: Path) -> list[str]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return []  # read_table says what is wrong
    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError, ValueError):  # ArrowInvalid is a ValueError
        return []


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            head = f.read(_SNIFF_BYTES)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise InputError(f"{path}: the file is empty")
    return head


def _not_a_table(path: Path) -> InputError:
    return InputError(f"{path}: not a table (expected CSV, Parquet, Feather or JSON Lines)")


def _binary_format(head: bytes, suffix: str) -> str | None:
    """``"Parquet"`` or ``"Feather"`` (any Arrow IPC file or stream) by the file's magic, else
    by its suffix; None for a text table."""
    if head.startswith(_PARQUET_MAGIC):
        return "Parquet"
    if head.startswith(_ARROW_IPC_MAGICS):
        return "Feather"
    if suffix in PARQUET_SUFFIXES:
        return "Parquet"
    return "Feather" if suffix in ARROW_IPC_SUFFIXES else None


def _decode(path: Path, notes: list[str]) -> tuple[bytes, str]:
    """The file's bytes as UTF-8 and its text. UTF-16 with a byte-order mark (Excel's "Unicode
    Text" export, Windows PowerShell's ``python train.py > log.csv``) is read as such. Text that
    is not UTF-8 (a run name in a Windows code page) is read as Latin-1, with a note: numbers
    are ASCII in every one of these encodings, so only text cells can differ."""
    data = _decompressed(path, path.read_bytes(), notes)
    if data.startswith(_UTF16_BOMS):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise _not_a_table(path) from None
        return text.encode(), text
    if b"\x00" in data:
        raise _not_a_table(path)
    try:
        return data, data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if len(_CONTROL_CHARS.findall(text)) > _MAX_CONTROL_SHARE * len(text):
        raise _not_a_table(path)  # binary data that happens to hold no NUL byte
    notes.append("the file is not UTF-8: its text cells were read as Latin-1")
    return text.encode(), text


def _codec(head: bytes) -> str | None:
    """The compression a file's first bytes announce, if any. Told by those bytes, not the
    suffix: a piped file has none, and names can lie."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if _BZIP2_MAGIC.match(head):
        return "bz2"
    if head.startswith(_XZ_MAGIC):
        return "xz"
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return None


def _decompressed(path: Path, data: bytes, notes: list[str]) -> bytes:
    """``data`` decompressed when its first bytes name a codec, else as it is."""
    codec = _codec(data[:_CODEC_HEAD_BYTES])
    if codec == "gzip":
        return _decompress_stream(path, data, notes, codec, _gzip_decompressor, zlib.error)
    if codec == "bz2":
        import bz2

        return _decompress_stream(path, data, notes, codec, bz2.BZ2Decompressor, OSError)
    if codec == "xz":
        import lzma

        return _decompress_stream(path, data, notes, codec, lzma.LZMADecompressor, lzma.LZMAError)
    if codec == "zip":
        return _unzipped(path, data)
    if codec == "zstd":
        # Python 3.11's standard library has no zstd decoder, and one codec is not worth a
        # dependency: say how to get the table out instead.
        raise InputError(
            f"{path}: zstd-compressed, which lrwatch does not read (it reads gzip, bz2, xz "
            "and zip): decompress it first (zstd -d)"
        )
    return data


def _gzip_decompressor():
    return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)


def _decompress_stream(
    path: Path, data: bytes, notes: list[str], codec: str, decompressor, damage: type[Exception]
) -> bytes:
    """The decompressed bytes; of a stream cut off at its end, its complete lines (with a note).

    ``decompressor()`` makes one of zlib's, bz2's or lzma's decompressor objects (they share
    ``decompress``, ``eof`` and ``unused_data``), which raise ``damage`` on damaged data.
    """
    parts = []
    while data:  # one file may hold several streams, one after another (cat a.gz b.gz)
        stream = decompressor()
        try:
            parts.append(stream.decompress(data))
        except damage:
            raise InputError(f"{path}: a damaged {codec} file") from None
        if not stream.eof:
            # Whatever follows the last newline of a cut stream is a partial line: left out.
            parts[-1] = parts[-1][: parts[-1].rfind(b"\n") + 1]
            if not any(parts):
                # bz2 decodes whole blocks of up to 900 kB: a cut inside the first holds nothing
                raise InputError(f"{path}: the {codec} file is cut off before its first full line")
            notes.append(
                f"the {codec} file is cut off at its end: read the complete lines before it"
            )
            break
        data = stream.unused_data
    return b"".join(parts)


def _unzipped(path: Path, data: bytes) -> bytes:
    """The one table a zip file holds (pandas' ``to_csv("run.csv.zip")`` writes one)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.read(_zip_member(path, archive))
    # a bad directory (ValueError: "negative seek value"), bad data or a bad CRC
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError):
        raise InputError(f"{path}: a damaged zip file (cut off, or not a zip)") from None
    except RuntimeError:  # zipfile's "File ... is encrypted, password required"
        raise InputError(f"{path}: an encrypted zip file: unzip it first") from None
    except NotImplementedError:  # a compression method zipfile lacks (Deflate64)
        raise InputError(
            f"{path}: a zip file compressed in a way Python cannot read: unzip it first"
        ) from None


def _zip_member(path: Path, archive) -> str:
    """The name of the zip file's one file (folders and macOS's ``__MACOSX/`` copies aside)."""
    names = [
        info.filename
        for info in archive.infolist()
        if not info.filename.endswith("/") and not info.filename.startswith("__MACOSX/")
    ]
    spreadsheet = _spreadsheet_kind(archive, names)
    if spreadsheet:
        # An .xlsx or .ods file is a zip of XML parts: "a zip file of 9 files" said nothing.
        raise InputError(
            f"{path}: {spreadsheet}, which lrwatch does not read: save the sheet as CSV "
            "(pandas.read_excel(path).to_csv(...), or the spreadsheet's Save As) and pass that"
        )
    if len(names) != 1:
        listed = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise InputError(
            f"{path}: a zip file of {len(names)} files ({listed or 'none'}); lrwatch reads a zip "
            "holding one table: unzip it and pass the files or their folder"
        )
    return names[0]


# Spreadsheet files lrwatch does not read (a folder holding only these says so).
SPREADSHEET_SUFFIXES = (".xlsx", ".xls", ".ods")
# The part every Office Open XML workbook has, and the first bytes of an OpenDocument file's
# ``mimetype`` part (the standard's way to tell its kind).
_EXCEL_WORKBOOK_PART = "xl/workbook.xml"
_OPENDOCUMENT_SPREADSHEET = b"application/vnd.oasis.opendocument.spreadsheet"


def _spreadsheet_kind(archive, names: list[str]) -> str | None:
    """``"an Excel workbook"`` / ``"an OpenDocument spreadsheet"`` for such a zip, else None."""
    if _EXCEL_WORKBOOK_PART in names:
        return "an Excel workbook"
    if "mimetype" in names and archive.read("mimetype").startswith(_OPENDOCUMENT_SPREADSHEET):
        return "an OpenDocument spreadsheet"
    return None


@contextlib.contextmanager
def _opened_decompressed(path: Path, codec: str | None):
    """``path`` opened for reading its (decompressed) bytes as a stream. A damaged or
    unreadable archive raises ``OSError`` (:func:`read_table` says what is wrong with it)."""
    if codec not in ("bz2", "xz", "zip"):
        with (gzip.open if codec == "gzip" else open)(path, "rb") as f:
            yield f
        return
    import bz2  # these three only for such files: a plain CSV starts fast
    import lzma
    import zipfile

    try:
        if codec == "zip":
            with zipfile.ZipFile(path) as archive, archive.open(_zip_member(path, archive)) as f:
                yield f
        else:
            with (bz2.open if codec == "bz2" else lzma.open)(path, "rb") as f:
                yield f
    except (
        lzma.LZMAError,
        zipfile.BadZipFile,
        ValueError,  # a zip's bad directory: "negative seek value"
        InputError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise OSError(str(exc)) from None


# --- CSV ------------------------------------------------------------------------------------


def _read_csv_text(
    path: Path, data: bytes, text: str, table: Table, csv_engine: str
) -> dict[str, Column]:
    if "\r" in text and "\n" not in text:
        # Lines ended by a carriage return alone: Excel for Mac's "CSV (Macintosh)" export.
        text = text.replace("\r", "\n")
        data = text.encode()
    if text.startswith("#"):
        text = _without_leading_comments(text, table.notes)
        data = text.encode()
    first_end = text.find("\n")
    header = text[:first_end].rstrip("\r")
    if first_end >= 0 and ("\n#" in text or text.find("\n" + header, first_end) >= 0):
        # (searched in place: most files have neither, and a big one is not copied for it)
        text = text[:first_end] + "\n" + _rows_only(text[first_end + 1 :], header, table.notes)
        data = text.encode()
    try:
        if csv_engine == "arrow":
            return _read_csv_arrow(data, text, table) or _read_csv(path, text, table)
        return _read_csv(path, text, table)
    except csv.Error as exc:  # a stray carriage return or NUL inside a line
        raise InputError(f"{path}: not a readable CSV ({exc})") from None


def _read_csv(path: Path, text: str, table: Table) -> dict[str, Column]:
    first_line = text.split("\n", 1)[0]
    delimiter = _delimiter(text)
    header = _fields(first_line, delimiter)
    if len(header) < 1 or not any(header):
        raise _not_a_table(path)
    body = text.split("\n", 1)[1] if "\n" in text else ""
    if not body.strip():
        raise InputError(f"{path}: no rows, only a header ({', '.join(header)})")
    try:
        # numpy's C parser handles the common all-numeric, no-gaps file ~3x faster than csv.
        numbers = np.loadtxt(
            io.StringIO(body),
            delimiter=None if delimiter == WHITESPACE else delimiter,
            ndmin=2,
            comments=None,
            quotechar='"',
        )
    except ValueError:
        return _read_csv_slow(path, header, body, delimiter, table)
    if numbers.shape[1] != len(header):
        return _read_csv_slow(path, header, body, delimiter, table)
    present = np.ones(numbers.shape[0], dtype=bool)
    return {name: (numbers[:, i].copy(), present) for i, name in enumerate(header) if name}


def _read_csv_arrow(data: bytes, text: str, table: Table) -> dict[str, Column] | None:
    """pyarrow's CSV reader; None when it refuses the file (the numpy/row paths then decide)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    delimiter = _delimiter(text)
    if delimiter == WHITESPACE:
        return None  # pyarrow splits at each single space
    # Only MISSING_CELLS are "not logged" ("nan"/"NaN" stay NaN: evidence), quoted or not, as
    # the row reader reads them.
    convert = pacsv.ConvertOptions(null_values=list(MISSING_CELLS), quoted_strings_can_be_null=True)
    try:
        arrow_table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=convert,
        )
    except (pa.ArrowInvalid, ValueError):
        return None
    if arrow_table.num_rows == 0:
        return None
    found_text = Table({})
    columns = _arrow_columns(arrow_table, found_text)
    if delimiter == ";" and found_text.text_columns:
        return None  # perhaps decimal commas, which only the row reader takes
    table.text_columns.update(found_text.text_columns)
    table.labels.update(found_text.labels)
    return columns


def _arrow_columns(arrow_table, table: Table) -> dict[str, Column]:
    import pyarrow as pa

    columns = {}
    for index, name in enumerate(arrow_table.column_names):
        chunked = arrow_table.column(index)  # by position: a header may repeat a name
        kind = chunked.type
        if not name.strip():
            continue
        if not (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
        ):
            cells = chunked.drop_null()
            if len(cells):  # a column blank in every row (type null) is no column at all
                table.add_text(name.strip(), _quote(cells[0].as_py()), chunked.to_pylist)
            continue
        present = ~np.asarray(chunked.is_null(), dtype=bool)
        # safe=False: an integer beyond 2**53 (a time.time_ns() column) becomes the nearest
        # float, as a CSV's digits do, where a safe cast refused the whole file.
        values = chunked.cast(pa.float64(), safe=False).fill_null(np.nan)
        values = np.asarray(values, dtype=np.float64)
        columns[name.strip()] = (values, present)
    return columns


def _delimiter(text: str) -> str:
    """The header line's separator: a comma, tab or semicolon, whichever it holds most of; else
    :data:`WHITESPACE` when the header and the first row split into as many fields at runs of
    spaces (numpy's ``savetxt`` default); else a comma (a one-column table)."""
    first_line, second_line = _line(text, 0), _line(text, 1)
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.__getitem__)
    if counts[best]:
        return best
    width = len(first_line.split())
    return WHITESPACE if width > 1 and len(second_line.split()) == width else ","


def _line(text: str, index: int) -> str:
    """Line ``index`` (0 or 1) of ``text``, without copying the rest of a large file."""
    start = 0
    for _ in range(index):
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


def _fields(line: str, delimiter: str) -> list[str]:
    if delimiter == WHITESPACE:
        return line.split()
    return [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter), [])]


def _without_leading_comments(text: str, notes: list[str]) -> str:
    """``text`` less its leading ``#`` lines. numpy's ``savetxt(header="step,loss,lr")`` writes
    the header as one of them (``# step,loss,lr``); other writers put the run's settings there.
    When the line after them holds numbers only, the last of them with as many fields is the
    header; the others are left out."""
    lines = text.split("\n")
    count = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    rest = lines[count:]
    header = _commented_header(lines[:count], rest[0]) if rest else None
    if header is None:
        notes.append(f"{_comment_lines(count)} at the top: left out")
        return "\n".join(rest)
    others = f"; {_comment_lines(count - 1)} left out" if count > 1 else ""
    notes.append(f"the header is the comment line {header!r}{others}")
    return "\n".join([header.lstrip("#").strip(), *rest])


def _rows_only(body: str, header: str, notes: list[str]) -> str:
    """``body`` less the lines between its rows that hold no row: ``#`` comments (a script's
    ``# resumed from step 200``) and repeats of the header line (a script that appends to its
    CSV after a restart writes the header again, and so do files joined with ``cat``). Read as
    rows, they turned every column into text."""
    lines = body.split("\n")
    kept = [line for line in lines if not line.startswith("#") and line.rstrip("\r") != header]
    comments = sum(line.startswith("#") for line in lines)
    repeats = len(lines) - len(kept) - comments
    if comments:
        notes.append(f"{_comment_lines(comments)} between the rows: left out")
    if repeats:
        times = "once" if repeats == 1 else f"{repeats} times"
        notes.append(
            f"the header line repeats {times} between the rows (a file appended to after a "
            "restart, or files joined): left out"
        )
    return "\n".join(kept)


def _commented_header(comments: list[str], first_row: str) -> str | None:
    """The last comment line with as many fields as ``first_row``, when that row is numbers."""
    delimiter = _delimiter(first_row + "\n" + first_row)
    cells = _fields(first_row, delimiter)
    if not cells or isinstance(_parse_cells(cells), str):
        return None
    width = len(cells)
    fits = [c for c in comments if len(_fields(c.lstrip("#").strip(), delimiter)) == width]
    return fits[-1].strip() if fits else None


def _comment_lines(count: int) -> str:
    return f"{count} comment line{'' if count == 1 else 's'} (#)"


def _read_csv_slow(
    path: Path, header: list[str], body: str, delimiter: str, table: Table
) -> dict[str, Column]:
    """Row by row: blank cells (sparse logging), ragged rows, text columns, decimal commas."""
    if delimiter == WHITESPACE:
        rows = [line.split() for line in body.split("\n") if line.strip()]
    else:
        rows = [row for row in csv.reader(io.StringIO(body), delimiter=delimiter) if row]
    width = len(header)
    cells_by_column: list[list[str]] = [[] for _ in range(width)]
    for row in rows:
        if len(row) > width:
            raise InputError(f"{path}: a row has {len(row)} fields but the header has {width}")
        for i in range(width):
            cells_by_column[i].append(row[i].strip() if i < len(row) else "")
    columns = {}
    for name, cells in zip(header, cells_by_column):
        column = _parse_cells(cells)
        if isinstance(column, str) and delimiter == ";":
            column = _parse_cells([_decimal_point(cell) for cell in cells])
        if isinstance(column, str):
            if name:
                table.add_text(name, column, cells.copy)
            continue
        # A column blank in every row is no column, as for pyarrow (its type is null): with a
        # header that repeats a name, both readers then keep the same one.
        if name and column[1].any():
            columns[name] = column
    return columns


def _parse_cells(cells: list) -> Column | str:
    """Floats from text/number cells; if any non-blank cell is not a number, that cell, quoted."""
    values = np.full(len(cells), np.nan)
    present = np.zeros(len(cells), dtype=bool)
    for i, cell in enumerate(cells):
        if cell is None or cell in MISSING_CELLS:
            continue
        if isinstance(cell, bool):
            return _quote(cell)
        try:
            values[i] = float(cell)
        except (TypeError, ValueError):
            return _quote(cell)
        present[i] = True
    return values, present


def _decimal_point(cell: str) -> str:
    """``"0,51"`` -> ``"0.51"``; any other cell as it is."""
    return cell.replace(",", ".") if _DECIMAL_COMMA.fullmatch(cell) else cell


def _quote(cell) -> str:
    text = str(cell)
    return text if len(text) <= _QUOTE_CHARS else text[: _QUOTE_CHARS - 3] + "..."


# --- JSON Lines -------------------------------------------------------------------------------


def _read_json_rows(path: Path, text: str, table: Table) -> dict[str, Column]:
    """JSON Lines (one object per line), one JSON array of objects, a Hugging Face Trainer
    state (``trainer_state.json``: its ``log_history``, one object per logging event), or one
    object of whole columns (:func:`_column_records`)."""
    records = _json_records(path, text, table.notes)
    if not records or not all(isinstance(r, dict) for r in records):
        raise _not_a_table(path)
    try:
        records = [_flattened(r) if _has_objects(r) else r for r in records]
    except RecursionError:
        raise _not_a_table(path) from None
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    columns = {}
    for name in names:
        # Lists are not numbers: float() refuses them like any text.
        cells = [r.get(name) for r in records]
        column = _parse_cells(cells)
        if isinstance(column, str):
            table.add_text(str(name), column, cells.copy)
        else:
            columns[str(name)] = column
    return columns


def _has_objects(record: dict) -> bool:
    return any(isinstance(value, dict) for value in record.values())


def _flattened(record: dict, prefix: str = "") -> dict:
    """``{"step": 3, "train": {"loss": 0.5}}`` -> ``{"step": 3, "train/loss": 0.5}``: the numbers
    in a nested object are metrics too, named by their path as TensorBoard tags are."""
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flattened(value, name + "/"))
        else:
            out[name] = value
    return out


def _json_records(path: Path, text: str, notes: list[str]) -> list:
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None  # more than one document: JSON Lines
    except RecursionError:
        raise _not_a_table(path) from None
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        history = document.get("log_history")  # Hugging Face Trainer's saved state
        if isinstance(history, list):
            return history
        return _column_records(document, notes) or [document]
    if document is not None:  # a bare number or string
        raise _not_a_table(path)
    return _json_lines(path, text, notes)


def _column_records(document: dict, notes: list[str]) -> list[dict] | None:
    """The rows of a JSON object that holds whole columns; None when it holds one row.

    ``json.dump(history.history, f)`` after Keras's ``model.fit`` writes one list per metric,
    one value per epoch (``{"loss": [...], "val_loss": [...]}``); pandas's
    ``DataFrame.to_json()`` writes one object per column keyed by the row's index label
    (``{"loss": {"0": 0.9, "1": 0.7}}``), and ``orient="index"`` one object per row
    (``{"0": {"loss": 0.9}}``). Read as one row, the first was lists that are not numbers and
    the others a column per index label (``loss/0``, ``loss/1``, ...).
    """
    values = list(document.values())
    if not values:
        return None
    if all(isinstance(value, list) for value in values):
        return _zipped(document, notes)
    if not all(isinstance(value, dict) and value for value in values):
        return None
    if all(map(_integer_label, document)):
        return _labelled_rows(document)
    if all(all(map(_integer_label, column)) for column in values):
        rows: dict[str, dict] = {}
        for name, column in document.items():
            for label, value in column.items():
                rows.setdefault(label, {})[name] = value
        return _labelled_rows(rows)
    return None


def _zipped(lists: dict, notes: list[str]) -> list[dict]:
    """Rows of equal-length lists. A shorter list (Keras's ``val_loss`` under
    ``validation_freq=5``) does not say which rows its values belong to: left out, with a note."""
    rows = max(len(values) for values in lists.values())
    kept = {name: values for name, values in lists.items() if len(values) == rows}
    for name, values in lists.items():
        if name not in kept:
            notes.append(
                f"{name!r} holds {len(values)} values against {rows} for the others: left out "
                "(which rows they belong to is not recorded)"
            )
    return [{name: values[i] for name, values in kept.items()} for i in range(rows)]


def _labelled_rows(rows: dict[str, dict]) -> list[dict]:
    """Rows keyed by an integer index label, in order: the label is the step unless a step or
    epoch column says otherwise (a default index is the row number either way)."""
    names = {name for row in rows.values() for name in row}
    if names & set(STEP_COLUMNS + EPOCH_COLUMNS):
        return list(rows.values())
    return [{"step": int(label), **row} for label, row in rows.items()]


def _integer_label(label: str) -> bool:
    return label.lstrip("-").isdigit()


def _json_lines(path: Path, text: str, notes: list[str]) -> list:
    """One record per non-blank line. A last line that does not parse and does not end the text
    with a newline was cut off by a writer that stopped mid-line (a crash, a full disk): it is
    left out with a note. Any other line that does not parse is an error naming it."""
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError):
            if number == len(lines) and not text.endswith("\n") and records:
                notes.append(f"line {number} is cut off (the writer stopped mid-line): left out")
                break
            if not records:
                raise _not_a_table(path) from None
            raise InputError(f"{path}: line {number} is not valid JSON") from None
    return records


# --- Parquet ------------------------------------------------------------------------------------


def _read_parquet(path: Path, table: Table) -> dict[str, Column]:
    from lrwatch.errors import require

    pq = require("pyarrow.parquet", "pyarrow")
    import pyarrow as pa

    try:
        arrow_table = pq.read_table(path)
        arrow_table.column_names  # noqa: B018 - damaged metadata fails here (UnicodeDecodeError)
    except (pa.ArrowException, OSError, ValueError):  # ArrowInvalid is a ValueError
        raise _not_a_table(path) from None
    return _arrow_columns(arrow_table, table)


def _arrow_ipc_table(path: Path):
    """The table of a Feather / Arrow IPC file, or of an Arrow IPC stream (no magic, no footer:
    what ``pyarrow.ipc.new_stream`` and polars' ``write_ipc_stream`` write).

    Raises:
        InputError: neither.
    """
    import warnings

    from lrwatch.errors import require

    feather = require("pyarrow.feather", "pyarrow")
    import pyarrow as pa

    # Damaged metadata fails only when the names are read (UnicodeDecodeError, a ValueError
    # like ArrowInvalid), so they are read here.
    try:
        with warnings.catch_warnings():
            # Feather V1 still reads, with a DeprecationWarning that is no news to the reader.
            warnings.simplefilter("ignore", DeprecationWarning)
            arrow_table = feather.read_table(path)
        arrow_table.column_names  # noqa: B018
        return arrow_table
    except (pa.ArrowException, OSError, ValueError):
        pass
    try:
        with pa.ipc.open_stream(path) as reader:
            arrow_table = reader.read_all()
        arrow_table.column_names  # noqa: B018
        return arrow_table
    except (pa.ArrowException, OSError, ValueError):
        raise _not_a_table(path) from None


def _arrow_ipc_column_names(path: Path) -> list[str]:
    """A Feather / Arrow IPC file's or stream's column names, from its schema alone (a Feather
    V1 file, which has no IPC schema, is read whole).

    Raises:
        InputError: not such a file.
    """
    import pyarrow as pa

    for open_schema in (pa.ipc.open_file, pa.ipc.open_stream):
        try:
            with open_schema(path) as reader:
                return list(reader.schema.names)
        except (pa.ArrowException, OSError, ValueError):  # UnicodeDecodeError: a ValueError
            continue
    return list(_arrow_ipc_table(path).column_names)
