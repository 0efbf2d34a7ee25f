"""TFRecord framing, the records of a TensorBoard event file, with damage told from a cut-off end.

    record = uint64 length, uint32 masked crc32c(length bytes), length bytes, uint32 masked crc32c

A record that runs past the end of the file, or whose bytes do not parse, has its length's
checksum verified; others are taken as they are (a pure-Python CRC of every record's 8 length
bytes alone slowed reading by a third: 100,000 steps, 0.85 -> 1.13 s). A sound length means a record cut off at the
end (the writer was killed) or one damaged inside; a damaged length, which before read as a
cut-off and lost the rest of the run unsaid, is skipped to the next sound record. When a record
fails, the one read just before it has its length verified too: a length damaged upwards whose
payload still parsed (its own fields come first) sent reading into the middle of a later record.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import TypeVar

_HEADER = struct.Struct("<QI")
_TRAILER = 4  # the payload's checksum, not verified
# After damage the next sound record is looked for this far on: each candidate position costs
# one 8-byte CRC, and damage comes in disk blocks of 4 KiB.
_MAX_RESYNC_BYTES = 1 << 16
_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected
_MASK_DELTA = 0xA282EAD8
_TABLE: list[int] = []
# What a payload that does not parse raises (lrwatch.sources.tensorboard's wire decoding); a
# field of the wrong wire type raises TypeError (bytes where a step's varint belongs) or
# AttributeError (a number where a tag's text belongs: no .decode).
_PARSE_ERRORS = (IndexError, ValueError, TypeError, AttributeError, struct.error)

Item = TypeVar("Item")


class NotTFRecord(ValueError):
    """The first record of the data is damaged: it is not TFRecord framing at all."""


def records(
    data: bytes, name: str, notes: list[str], parse: Callable[[bytes], list[Item]]
) -> Iterator[Item]:
    """What ``parse`` makes of each record's payload in ``data`` (the file ``name``), in order.

    A record cut off at the end is left out with a note; a damaged one too, and reading goes on
    after it (at the next sound record when its length was damaged, or stops with a note when
    none is near).

    Raises:
        NotTFRecord: the first record is damaged.
    """
    offset, previous = 0, None  # previous: the last record read, its length unverified
    while offset < len(data):
        header_fits = offset + _HEADER.size <= len(data)
        end = offset + _HEADER.size + _HEADER.unpack_from(data, offset)[0] if header_fits else 0
        fits = header_fits and end + _TRAILER <= len(data)
        items = _parsed(parse, data[offset + _HEADER.size : end]) if fits else None
        if items is not None:
            yield from items
            offset, previous = end + _TRAILER, offset
            continue
        if previous is not None and not sound_header(data, previous):
            # The record before had a damaged length whose payload still parsed (the real
            # fields come first, and the bytes after them happened to read as fields too):
            # reading went on from inside a later record. The damage is there; its scalars
            # were the record's own.
            offset, previous = previous, None
        elif not header_fits or (not fits and sound_header(data, offset)):
            notes.append(f"{name}: its last record is cut off (the writer stopped): left out")
            return
        elif sound_header(data, offset):
            notes.append(f"{name}: a damaged record at byte {offset}: left out")
            offset, previous = end + _TRAILER, None
            continue
        elif offset == 0:
            raise NotTFRecord(name)
        resumed = _next_sound_header(data, offset + 1)
        lost = (len(data) if resumed is None else resumed) - offset
        none_after = "" if resumed is not None else ", and no sound record after it"
        notes.append(
            f"{name}: a damaged record at byte {offset}{none_after}: {lost} bytes left out"
        )
        if resumed is None:
            return
        offset = resumed


def _parsed(parse: Callable[[bytes], list[Item]], payload: bytes) -> list[Item] | None:
    try:
        return parse(payload)
    except _PARSE_ERRORS:
        return None


def sound_header(data: bytes, offset: int) -> bool:
    """Whether the 8 length bytes at ``offset`` match the checksum after them."""
    if offset + _HEADER.size > len(data):
        return False
    stored = struct.unpack_from("<I", data, offset + 8)[0]
    return masked_crc32c(data[offset : offset + 8]) == stored


def _next_sound_header(data: bytes, start: int) -> int | None:
    stop = min(len(data) - _HEADER.size, start + _MAX_RESYNC_BYTES)
    return next((p for p in range(start, stop + 1) if sound_header(data, p)), None)


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _crc32c(data: bytes) -> int:
    if not _TABLE:
        for byte in range(256):
            crc = byte
            for _ in range(8):
                crc = (crc >> 1) ^ (_CRC32C_POLY if crc & 1 else 0)
            _TABLE.append(crc)
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
