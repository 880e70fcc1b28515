"""Edits a record batch in place in a partition's log segment on the local broker's disk.

Some unparseable records cannot be produced through any client: the broker checks a batch's
CRC, decompresses it and knows every codec before it appends a batch, and the Java client
encodes header keys as UTF-8. A disk fault, a broker bug or another client (librdkafka takes
header names as raw bytes) can still put them in a log. These tests therefore let a real
producer write the batch and then change bytes in the segment file the broker serves fetches
from (the broker reads the file through the page cache, so the change is served at once).

Record batch v2 layout (Kafka's DefaultRecordBatch): baseOffset int64 @0, batchLength int32
@8, partitionLeaderEpoch int32 @12, magic int8 @16, crc uint32 @17 (CRC-32C of everything from
attributes @21 to the end), attributes int16 @21 (bits 0-2: codec), lastOffsetDelta int32 @23,
..., recordsCount int32 @57, records @61.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka.record.util import calc_crc32c

CRC_AT = 17
ATTRIBUTES_AT = 21
RECORDS_AT = 61


@dataclass(frozen=True)
class Batch:
    segment: Path
    position: int  # of the batch in the segment file
    base_offset: int
    last_offset: int
    data: bytes


def partition_dir(data_dir: Path, topic: str, partition: int) -> Path:
    return data_dir / f"{topic}-{partition}"


def batches(directory: Path) -> list[Batch]:
    found: list[Batch] = []
    for segment in sorted(directory.glob("*.log")):
        raw = segment.read_bytes()
        position = 0
        while position + 12 <= len(raw):
            base_offset, length = struct.unpack_from(">qi", raw, position)
            end = position + 12 + length
            if length <= 0 or end > len(raw):
                break
            data = raw[position:end]
            last_delta = struct.unpack_from(">i", data, 23)[0]
            found.append(Batch(segment, position, base_offset, base_offset + last_delta, data))
            position = end
    return found


def batch_at(directory: Path, offset: int) -> Batch:
    for batch in batches(directory):
        if batch.base_offset <= offset <= batch.last_offset:
            return batch
    raise LookupError(f"no batch holds offset {offset} in {directory}")


def rewrite(batch: Batch, change: Callable[[bytearray], None], fix_crc: bool = True) -> bytes:
    """Apply `change` to the batch's bytes (same length), recompute the CRC unless told not to,
    and write it back in place. Returns the new bytes."""
    data = bytearray(batch.data)
    change(data)
    assert len(data) == len(batch.data), "a rewrite must keep the batch's length"
    if fix_crc:
        struct.pack_into(">I", data, CRC_AT, calc_crc32c(bytes(data[ATTRIBUTES_AT:])))
    with batch.segment.open("r+b") as segment:
        segment.seek(batch.position)
        segment.write(data)
    return bytes(data)


def replace_once(old: bytes, new: bytes) -> Callable[[bytearray], None]:
    """A change replacing the one occurrence of `old` in the records with `new` (same length)."""
    assert len(old) == len(new)

    def change(data: bytearray) -> None:
        at = data.find(old, RECORDS_AT)
        assert at > 0 and data.find(old, at + 1) < 0, f"{old!r} must occur once in the batch"
        data[at:at + len(old)] = new

    return change


def set_codec(codec: int) -> Callable[[bytearray], None]:
    def change(data: bytearray) -> None:
        attributes = struct.unpack_from(">h", data, ATTRIBUTES_AT)[0]
        struct.pack_into(">h", data, ATTRIBUTES_AT, (attributes & ~0x07) | codec)

    return change


def break_gzip_trailer(data: bytearray) -> None:
    """Invert the CRC-32 in the trailer of a gzip batch's compressed records (its last 8 bytes:
    CRC-32, then the uncompressed size): the payload inflates, then fails its own check."""
    data[-8:-4] = bytes(b ^ 0xFF for b in data[-8:-4])
