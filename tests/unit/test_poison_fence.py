"""streams/runtime/poison.py on crafted record batches, without a broker."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import aiokafka
import pytest
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.consumer.fetcher import READ_COMMITTED, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition
from faust.types import TP

from streams.runtime import poison
from tests import log_surgery
from tests.crafted import non_utf8_header_batch

pytestmark = pytest.mark.unit

TOPIC = "city.incidents.v1"


def batch(base_offset: int, values: list[bytes], codec: int = 0) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=1_700_000_000_000, key=b"k", value=value, headers=[])
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base_offset)  # not covered by the CRC
    return bytes(data)


def with_base(data: bytes, base_offset: int) -> bytes:
    return struct.pack(">q", base_offset) + data[8:]


def recrc(data: bytearray) -> bytes:
    struct.pack_into(">I", data, 17, calc_crc32c(bytes(data[21:])))
    return bytes(data)


@pytest.fixture
def reported(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[poison.Skipped]]:
    found: list[poison.Skipped] = []
    monkeypatch.setattr(poison, "_sink", found.append)
    yield found


def read(data: bytes, fetch_offset: int = 0) -> tuple[list[Any], int]:
    """What the fenced fetcher returns for one fetch, and where the next fetch starts."""
    records = PartitionRecords(TopicPartition(TOPIC, 2), poison._TrackedMemoryRecords(data),
                               [], fetch_offset, None, None, True, READ_COMMITTED)
    records._records_iterator = poison._fenced_unpack_records(records)
    return [(r.offset, r.value) for r in records], records.next_fetch_offset


def test_check_accepts_the_installed_versions() -> None:
    poison.check()


def test_check_refuses_a_changed_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(poison.EXPECTED_SOURCE, "faust Consumer.ack", "0" * 16)
    monkeypatch.setattr(aiokafka_fetcher.PartitionRecords, "_cityops_poison_fence",
                        False, raising=False)
    with pytest.raises(RuntimeError, match=r"faust Consumer\.ack changed"):
        poison.check()


def test_check_refuses_an_untested_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiokafka, "__version__", "0.15.0")
    with pytest.raises(RuntimeError, match=r"aiokafka 0.15.0 outside \[0.14.0, 0.15\)"):
        poison.check()


def test_valid_batches_pass_unchanged(reported: list[poison.Skipped]) -> None:
    data = batch(0, [b"a", b"b"]) + batch(2, [b"c"])
    assert read(data) == ([(0, b"a"), (1, b"b"), (2, b"c")], 3)
    assert reported == []


@pytest.mark.parametrize(("case", "kind", "error_class"), [
    ("header", "invalid_utf8", "UnicodeDecodeError"),
    ("crc", "crc_mismatch", "CorruptRecordException"),
    ("codec", "unsupported_codec", "UnsupportedCodecError"),
    ("gzip", "malformed", "BadGzipFile"),
])
def test_an_unparseable_batch_is_reported_whole_and_skipped(
    case: str, kind: str, error_class: str, reported: list[poison.Skipped]
) -> None:
    if case == "header":
        bad = with_base(non_utf8_header_batch(b"k", b"poison"), 2)
    else:
        data = bytearray(batch(2, [b"poison-1", b"poison-2"], codec=1 if case == "gzip" else 0))
        if case == "crc":
            data[-3] ^= 0xFF
            bad = bytes(data)
        elif case == "codec":
            log_surgery.set_codec(5)(data)
            bad = recrc(data)
        else:
            log_surgery.break_gzip_trailer(data)
            bad = recrc(data)
    last = 2 if case == "header" else 3
    fetched = batch(0, [b"a", b"b"]) + bad + batch(last + 1, [b"after"])
    assert read(fetched) == ([(0, b"a"), (1, b"b"), (last + 1, b"after")], last + 2)
    [skipped] = reported
    assert (skipped.topic, skipped.partition, skipped.first_offset, skipped.next_offset,
            skipped.cause, skipped.kind, skipped.error_class, skipped.raw) == (
        TOPIC, 2, 2, last + 1, "unparseable", kind, error_class, bad)
    assert skipped.describe().startswith(
        f"record batch at offset{'s 2-3' if last == 3 else ' 2'} of {TOPIC}[2] cannot be "
        f"parsed ({kind}): {error_class}: ")


def test_a_bad_record_after_good_ones_in_its_batch_skips_only_the_rest(
    reported: list[poison.Skipped]
) -> None:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    builder.append(0, timestamp=None, key=b"k", value=b"good", headers=[])
    builder.append(1, timestamp=None, key=b"k", value=b"bad", headers=[("HDRKEY", b"x")])
    builder.append(2, timestamp=None, key=b"k", value=b"lost", headers=[])
    data = bytearray(builder.build())
    at = data.find(b"HDRKEY")
    data[at:at + 6] = b"\xff\xfeHDRK"
    bad = recrc(data)
    assert read(bad + batch(3, [b"next"])) == ([(0, b"good"), (3, b"next")], 4)
    [skipped] = reported
    assert (skipped.first_offset, skipped.next_offset, skipped.raw) == (1, 3, bad)


def test_a_crc_mismatch_in_the_header_trusts_the_next_batch(
    reported: list[poison.Skipped]
) -> None:
    data = bytearray(batch(0, [b"a"]))
    struct.pack_into(">i", data, 23, 1000)  # lastOffsetDelta corrupted, CRC not fixed
    assert read(bytes(data) + batch(1, [b"b"])) == ([(1, b"b")], 2)
    assert (reported[0].first_offset, reported[0].next_offset) == (0, 1)


def test_a_batch_the_buffer_cannot_even_split_skips_one_offset(
    reported: list[poison.Skipped]
) -> None:
    data = bytearray(batch(0, [b"a", b"b"]))
    struct.pack_into(">i", data, 8, 5)  # batchLength 5: MemoryRecords.next_batch raises
    assert read(bytes(data) + batch(2, [b"c"])) == ([], 1)
    [skipped] = reported
    assert (skipped.first_offset, skipped.next_offset, skipped.kind) == (0, 1, "malformed")


def test_control_batches_are_reported_as_offsets_without_records(
    reported: list[poison.Skipped]
) -> None:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=1,
                                        producer_id=7, producer_epoch=0, base_sequence=-1,
                                        batch_size=1 << 20)
    builder.append(0, timestamp=None, key=b"\x00\x00\x00\x01", value=b"\x00" * 6, headers=[])
    marker = bytearray(builder.build())
    struct.pack_into(">h", marker, 21, struct.unpack_from(">h", marker, 21)[0] | 0x20)
    struct.pack_into(">q", marker, 0, 1)
    fetched = batch(0, [b"a"]) + recrc(marker) + batch(2, [b"b"])
    assert read(fetched) == ([(0, b"a"), (2, b"b")], 3)
    assert [(s.first_offset, s.next_offset, s.cause) for s in reported] == [
        (1, 2, "control_batch")]


class FakeConsumer:
    def __init__(self, committed: int | None, assigned: bool = True) -> None:
        self.tp = TP(TOPIC, 2)
        self._committed_offset = {self.tp: committed}
        self._acked: dict[TP, list[int]] = {self.tp: [0, 1]}
        self._acked_index: dict[TP, set[int]] = {self.tp: {0, 1}}
        self._n_acked = 0
        self._waiting_for_ack = None
        self._assigned = {self.tp} if assigned else set()
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: True))

    def assignment(self) -> set[TP]:
        return self._assigned


def test_book_skipped_books_each_offset_once_from_the_committed_one() -> None:
    consumer = FakeConsumer(committed=1)
    assert poison.book_skipped(consumer, consumer.tp, 0, 4) == 2  # 1 booked already, 0 < 1
    assert consumer._acked[consumer.tp] == [0, 1, 2, 3]
    assert poison.book_skipped(consumer, consumer.tp, 2, 4) == 0
    assert consumer._n_acked == 2


def test_book_skipped_ignores_a_partition_no_longer_assigned() -> None:
    consumer = FakeConsumer(committed=None, assigned=False)
    assert poison.book_skipped(consumer, consumer.tp, 2, 4) == 0
    assert consumer._acked[consumer.tp] == [0, 1]
