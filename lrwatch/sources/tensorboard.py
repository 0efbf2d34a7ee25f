"""TensorBoard logs: the scalars of ``events.out.tfevents.*`` files, read without TensorBoard.

A log directory is one run (TensorBoard's own view): every event file directly in it, in name
order (a resumed ``SummaryWriter`` starts a new file; on a step logged twice the later file
wins), plus the sub-directories its ``add_scalars`` calls wrote (:func:`scalars_children`). A
directory holding only a ``train/`` and a ``validation/`` log directory (Keras's ``TensorBoard``
callback; also ``val/``, ``eval/``, ``test/``) is one run too (:func:`split_children`). Each scalar
tag becomes a series - ``add_scalar("train/loss", ...)`` old style (``simple_value``) and new
style (a scalar float tensor) alike; images, histograms and text are skipped.

The file format is TFRecord framing around ``Event`` protocol buffers; the few fields scalars
use are decoded here from the wire format (see tensorflow's ``event.proto``/``summary.proto``):

    record  = uint64 length, uint32 crc, length bytes, uint32 crc   (lrwatch.sources.tfrecord)
    Event   = 1: wall_time (double), 2: step (int64), 5: summary (Summary)
    Summary = 1: repeated value (Value)
    Value   = 1: tag (string), 2: simple_value (float), 8: tensor (TensorProto)
    Tensor  = 1: dtype (1 float, 2 double), 2: shape (no dims: a scalar), 4: tensor_content,
              5: float_val (packed), 6: double_val (packed)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lrwatch.errors import InputError
from lrwatch.sources import tfrecord
from lrwatch.sources.epoch_steps import epochs_in, steps_across_epochs

EVENT_FILE_MARK = "tfevents"  # events.out.tfevents.<time>.<host>...
_DT_FLOAT, _DT_DOUBLE = 1, 2
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def is_event_file(path: Path) -> bool:
    return EVENT_FILE_MARK in path.name and path.is_file()


def event_files(folder: Path) -> list[Path]:
    """The event files directly in ``folder``, in name (= creation time) order."""
    return sorted(p for p in folder.iterdir() if is_event_file(p))


def log_dirs(folder: Path) -> list[Path]:
    """The TensorBoard runs at or below ``folder``: each directory holding event files, but for
    the sub-directories read with their parent: those ``add_scalars`` writes
    (:func:`scalars_children`) and a ``train/`` + ``validation/`` pair (:func:`split_children`),
    whose parent is the run."""
    found = {p.parent for p in folder.rglob(f"*{EVENT_FILE_MARK}*") if p.is_file()}
    # A split's parent is the run, unless the folder named is the split itself (``X/train``).
    parents = {d.parent for d in found if d != folder}
    split = {parent for parent in parents if split_children(parent)}
    children = {child for log_dir in found | split for child in member_dirs(log_dir)}
    return sorted(log_dir for log_dir in found | split if log_dir not in children)


def member_dirs(log_dir: Path) -> dict[Path, str]:
    """The sub-directories read with the run in ``log_dir``, each with how its tags are named:
    ``*`` stands for the tag (see :func:`scalars_children` and :func:`split_children`)."""
    return {**scalars_children(log_dir), **split_children(log_dir)}


# Sub-directories a trainer splits one run into: its training scalars and its held-out ones.
TRAIN_DIRS = ("train", "training")
HELD_OUT_DIRS = ("validation", "val", "valid", "eval", "test")


def split_children(log_dir: Path) -> dict[Path, str]:
    """The ``train/`` and held-out (``validation/``, ``val/``, ``eval/``, ``test/``) log
    directories of a run that keeps no event files of its own, each with how its tags are named.

    Keras's ``TensorBoard(log_dir)`` callback writes ``epoch_loss`` into both ``train/`` and
    ``validation/``; many PyTorch scripts open one ``SummaryWriter`` per split the same way.
    Read as two runs, the validation loss was analysed as a training loss, so overfitting was
    reported as a divergence with the advice to lower the rate. Training tags keep their names
    (``*``); a held-out directory's tags are prefixed with its name (``validation/*``), which
    keeps them from being taken for the loss.
    """
    if not log_dir.is_dir() or event_files(log_dir):
        return {}
    subs = {p.name: p for p in log_dir.iterdir() if p.is_dir() and event_files(p)}
    train = [subs[name] for name in TRAIN_DIRS if name in subs]
    held_out = {subs[name]: f"{name}/*" for name in HELD_OUT_DIRS if name in subs}
    if len(train) != 1 or not held_out:
        return {}
    return {train[0]: "*", **held_out}


def scalars_children(log_dir: Path) -> dict[Path, str]:
    """The sub-directories ``SummaryWriter.add_scalars`` wrote for the run in ``log_dir``, each
    with the series name its one tag gets in that run.

    ``add_scalars("loss", {"train": a, "val": b}, step)`` logs tag ``loss`` into the new log
    directories ``loss_train/`` and ``loss_val/`` under the writer's own (TensorBoard then shows
    them as runs of their own). Read alone, the run lost its losses and each of them became a
    run without an LR. A sub-directory counts as such when ``log_dir`` holds event files itself
    (the writer's) and its own hold one scalar tag ``T``, which it is named after: ``T`` with
    ``/`` as ``_``, then ``_KEY``. Its series is named ``T/KEY`` (``loss/train``). A run of its
    own in a sub-directory logs more than one tag (a loss and an LR), so it stays a run.
    """
    if not event_files(log_dir):
        return {}
    children = {}
    for sub in sorted(p for p in log_dir.iterdir() if p.is_dir()):
        tag = _only_tag(event_files(sub))
        prefix = None if tag is None else tag.replace("/", "_") + "_"
        if prefix is not None and sub.name.startswith(prefix) and len(sub.name) > len(prefix):
            children[sub] = f"{tag}/{sub.name[len(prefix) :]}"
    return children


def _only_tag(files: list[Path]) -> str | None:
    """The one scalar tag in ``files``; None when they hold several, none, or a damaged record."""
    tags: set[str] = set()
    try:
        for file in files:
            tags.update(tag for _, tag, _ in _scalars(file, []))
            if len(tags) > 1:
                return None
    except InputError:
        return None
    return next(iter(tags)) if tags else None


def read_scalars(path: Path, notes: list[str]) -> tuple[list[int], list[str], list[float], int]:
    """``(steps, tags, values, files)``, one entry per scalar logged, of an event file or of a
    log directory: its event files and those of the sub-directories read with it (tags named as
    :func:`member_dirs` says). A record cut off at a file's end (the writer was killed)
    is left out with a note. ``files`` is how many event files were read."""
    sources: list[tuple[Path, str]]  # an event file and how its tags are named ("*": the tag)
    if not path.is_dir():
        sources = [(path, "*")]
    else:
        sources = [(file, "*") for file in event_files(path)]
        children = member_dirs(path)
        for child, name in children.items():
            sources += [(file, name) for file in event_files(child)]
        if children:
            named = ", ".join(_named_as(child, name) for child, name in children.items())
            notes.append(f"sub-directories read with the run: {named}")
    if not sources:
        raise InputError(f"{path}: is a folder, not a file (and holds no TensorBoard event files)")
    steps: list[int] = []
    tags: list[str] = []
    values: list[float] = []
    epochs: dict[str, int] = {}  # tag -> epochs, for tags whose step starts again every epoch
    for file, renamed in sources:
        first = len(steps)
        for step, tag, value in _scalars(file, notes):
            steps.append(step)
            tags.append(renamed.replace("*", tag))
            values.append(value)
        steps[first:] = _numbered_across_epochs(steps[first:], tags[first:], values[first:], epochs)
    if not steps:
        raise InputError(f"{path}: no scalars in its TensorBoard event files ({len(sources)})")
    if epochs:
        named = ", ".join(repr(tag) for tag in epochs)
        notes.append(
            f"the step of {named} starts again every epoch ({max(epochs.values())} epochs, e.g. "
            "add_scalar(tag, value, batch_idx) inside the epoch loop): steps are numbered across "
            "epochs, in logging order"
        )
    return steps, tags, values, len(sources)


def _numbered_across_epochs(
    steps: list[int], tags: list[str], values: list[float], epochs: dict[str, int]
) -> list[int]:
    """One event file's steps, each tag's numbered across epochs when its step starts again
    every epoch (:mod:`lrwatch.sources.epoch_steps`). Per file: a second file starting at step
    0 again is a rerun into the same log directory, or a resumed writer - not an epoch."""
    ordered = np.asarray(steps, dtype=np.int64)
    if ordered.size < 2 or bool(np.all(ordered[1:] >= ordered[:-1])):
        return steps  # no step goes back: the usual file, checked in one pass
    numbers = np.asarray(values, dtype=np.float64)
    names, of_row = np.unique(np.asarray(tags, dtype=object), return_inverse=True)
    by_tag = np.argsort(of_row, kind="stable")  # each tag's rows together, in logging order
    bounds = np.searchsorted(of_row[by_tag], np.arange(names.size + 1))
    for k, tag in enumerate(names.tolist()):
        rows = by_tag[bounds[k] : bounds[k + 1]]
        logged = ordered[rows]
        across = steps_across_epochs(logged, numbers[rows])
        if across is not None:
            ordered[rows] = across
            epochs[tag] = max(epochs.get(tag, 0), epochs_in(logged))
    return ordered.tolist()


def _named_as(child: Path, name: str) -> str:
    if name == "*":
        return f"{child.name}/ under its own tag names"
    return f"{child.name}/ as {name.replace('*', '<tag>')!r}"


def _scalars(file: Path, notes: list[str]) -> Iterator[tuple[int, str, float]]:
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InputError(f"{file}: cannot read ({exc.strerror or exc})") from None
    try:
        yield from tfrecord.records(data, file.name, notes, _event_scalar_list)
    except tfrecord.NotTFRecord:
        raise InputError(f"{file}: not a TensorBoard event file (a damaged record)") from None


def _event_scalar_list(event: bytes) -> list[tuple[int, str, float]]:
    return list(_event_scalars(event))


def _event_scalars(event: bytes) -> Iterator[tuple[int, str, float]]:
    step, summary = 0, None
    for number, _, value in _fields(event):
        if number == 2:
            step = _signed(value)
        elif number == 5:
            summary = value
    if summary is None:
        return
    for number, _, value in _fields(summary):
        if number == 1:
            found = _scalar_value(value)
            if found is not None:
                yield step, found[0], found[1]


def _scalar_value(value: bytes) -> tuple[str, float] | None:
    tag, number_found = None, None
    for number, _, field in _fields(value):
        if number == 1:
            tag = field.decode("utf-8", errors="replace")
        elif number == 2:
            number_found = struct.unpack("<f", field)[0]
        elif number == 8:
            number_found = _scalar_tensor(field)
    return None if tag is None or number_found is None else (tag, float(number_found))


def _scalar_tensor(tensor: bytes) -> float | None:
    dtype, content = None, b""
    found: list[float] = []
    for number, wire, field in _fields(tensor):
        if number == 1:
            dtype = field
        elif number == 2 and any(n == 2 for n, _, _ in _fields(field)):
            return None  # a shape with dimensions: not a scalar
        elif number == 4:
            content = field
        elif number == 5:
            found += _packed(field, wire, "f")
        elif number == 6:
            found += _packed(field, wire, "d")
    if dtype not in (_DT_FLOAT, _DT_DOUBLE):
        return None
    if not found and content:
        found = list(np.frombuffer(content, dtype="<f4" if dtype == _DT_FLOAT else "<f8"))
    return float(found[0]) if len(found) == 1 else None


def _packed(field: bytes, wire: int, code: str) -> list[float]:
    if wire == _BYTES:
        return list(struct.unpack(f"<{len(field) // struct.calcsize(code)}{code}", field))
    return list(struct.unpack(f"<{code}", field))


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of a protocol buffer message: an int for varints,
    bytes for everything else."""
    offset, size = 0, len(buf)
    while offset < size:
        key, offset = _varint(buf, offset)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, offset = _varint(buf, offset)
            yield number, wire, value
        elif wire == _FIXED64:
            yield number, wire, buf[offset : offset + 8]
            offset += 8
        elif wire == _BYTES:
            length, offset = _varint(buf, offset)
            yield number, wire, buf[offset : offset + length]
            offset += length
        elif wire == _FIXED32:
            yield number, wire, buf[offset : offset + 4]
            offset += 4
        else:
            raise ValueError(f"wire type {wire}")
        if offset > size:
            raise ValueError("field runs past its message")


def _varint(buf: bytes, offset: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = buf[offset]
        offset += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, offset
        shift += 7
