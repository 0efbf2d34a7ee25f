"""``-`` as a run: a table piped into ``lrwatch analyze -`` (``ssh gpu1 cat run.csv | ...``).

The loaders read files (a table's format is found from its first bytes; Parquet is read by
offset), so standard input is saved once to a private temporary file, removed at exit, and the
run is shown as ``stdin`` - its name, id and messages never name that file. A TensorBoard event
file (``cat events.out.tfevents.* | ...``), which the loaders know by its name, is saved under an
event file's name in a folder named ``stdin``, so it is read as one and its run is ``stdin`` too.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

from lrwatch.errors import InputError

STDIN_SPEC = "-"
STDIN_NAME = "stdin"
# Every TensorBoard writer's first record is an event holding ``file_version``
# ("brain.Event:2"), a few bytes after the record's 12-byte header and the event's wall time;
# the header's length checksum must hold too, so a table that merely mentions it stays a table.
EVENT_FILE_SIGNATURE = b"brain.Event:"
EVENT_FILE_HEAD = 64

_saved: Path | None = None  # read once: "-" given twice names the same run


def saved_stdin() -> Path:
    """The file holding what was piped in (read on the first call).

    Raises:
        InputError: nothing is piped in (a terminal would wait for typing), or it is empty.
    """
    global _saved
    if _saved is not None:
        return _saved
    stream = sys.stdin
    if stream is None or stream.isatty():
        raise InputError(
            "'-' reads a run from standard input, but nothing is piped in "
            "(e.g. cat run.csv | lrwatch analyze -)"
        )
    try:
        data = stream.buffer.read()
    except (AttributeError, OSError, ValueError) as exc:  # a notebook's stdin, a closed one
        raise InputError(f"'-': standard input cannot be read here ({exc})") from None
    if not data:
        raise InputError("stdin: empty (nothing was piped in)")
    folder = Path(tempfile.mkdtemp(prefix="lrwatch-stdin-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / STDIN_NAME
    if _is_event_file(data):
        path.mkdir()
        path = path / f"events.out.tfevents.{STDIN_NAME}"
    path.write_bytes(data)
    _saved = path
    return path


def _is_event_file(data: bytes) -> bool:
    from lrwatch.sources.tfrecord import sound_header

    return EVENT_FILE_SIGNATURE in data[:EVENT_FILE_HEAD] and sound_header(data, 0)


def shown(text: str, saved_path: str) -> str:
    """``text`` with the temporary file's path written as ``stdin``."""
    return text.replace(saved_path, STDIN_NAME)
