"""A table file's bytes: which format its first bytes announce, and its text, decompressed
(gzip, bz2, xz, a zip holding one table) and decoded (UTF-8, UTF-16 with a byte-order mark,
else Latin-1). ``bz2``, ``lzma`` and ``zipfile`` are imported for such files only."""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import zlib
from pathlib import Path

from lrwatch.errors import InputError
from lrwatch.sources.tables._table import ARROW_IPC_SUFFIXES, PARQUET_SUFFIXES, not_a_table

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
CODEC_HEAD_BYTES = 10  # enough for every magic above
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Control characters other than tab and line ends: a table holds none, binary data many (1 in
# 10 bytes of random data); one in a thousand leaves room for a stray form feed.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_MAX_CONTROL_SHARE = 1e-3
# How much of a file is sniffed to tell the formats apart.
_SNIFF_BYTES = 4096


def read_head(path: Path) -> bytes:
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


def binary_format(head: bytes, suffix: str) -> str | None:
    """``"Parquet"`` or ``"Feather"`` (any Arrow IPC file or stream) by the file's magic, else
    by its suffix; None for a text table."""
    if head.startswith(_PARQUET_MAGIC):
        return "Parquet"
    if head.startswith(_ARROW_IPC_MAGICS):
        return "Feather"
    if suffix in PARQUET_SUFFIXES:
        return "Parquet"
    return "Feather" if suffix in ARROW_IPC_SUFFIXES else None


def decode(path: Path, notes: list[str]) -> tuple[bytes, str]:
    """The file's bytes as UTF-8 and its text. UTF-16 with a byte-order mark (Excel's "Unicode
    Text" export, Windows PowerShell's ``python train.py > log.csv``) is read as such. Text that
    is not UTF-8 (a run name in a Windows code page) is read as Latin-1, with a note: numbers
    are ASCII in every one of these encodings, so only text cells can differ."""
    data = _decompressed(path, path.read_bytes(), notes)
    if data.startswith(_UTF16_BOMS):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise not_a_table(path) from None
        return text.encode(), text
    if b"\x00" in data:
        raise not_a_table(path)
    try:
        return data, data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if len(_CONTROL_CHARS.findall(text)) > _MAX_CONTROL_SHARE * len(text):
        raise not_a_table(path)  # binary data that happens to hold no NUL byte
    notes.append("the file is not UTF-8: its text cells were read as Latin-1")
    return text.encode(), text


def codec_of(head: bytes) -> str | None:
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
    codec = codec_of(data[:CODEC_HEAD_BYTES])
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
def opened_decompressed(path: Path, codec: str | None):
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
