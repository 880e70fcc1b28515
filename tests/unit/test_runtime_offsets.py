"""streams/runtime/offsets.py: a record Faust never delivered can't be committed past.

The chaos run (bench/chaos.py) found the loss end to end; these tests pin the two mechanisms on
a Faust consumer object that never connects to a broker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
import pytest
from faust.types import TP

from streams.runtime import offsets

pytestmark = pytest.mark.unit

TOPIC_PARTITION = TP("city.incidents.v1", 0)


@pytest.fixture(scope="module")
def consumer() -> Any:
    assert offsets.install("at_least_once") is True
    assert offsets.install("at_least_once") is True  # idempotent
    app = faust.App("test-faust-offsets", broker="kafka://127.0.0.1:1")
    return app.consumer


def test_exactly_once_keeps_fausts_own_behaviour() -> None:
    assert offsets.install("exactly_once") is False


def test_already_read_means_below_the_committed_offset(consumer: Any) -> None:
    assert consumer._read_offset[TOPIC_PARTITION] is None  # nothing committed: deliver all
    consumer._committed_offset[TOPIC_PARTITION] = 170
    consumer._read_offset[TOPIC_PARTITION] = 245  # read ahead, then a seek back to 170
    assert consumer._read_offset[TOPIC_PARTITION] == 170  # 170..244 are delivered again
    assert dict(consumer._read_offset) == {TOPIC_PARTITION: 245}


def test_a_hole_in_the_acknowledged_offsets_stops_the_commit_instead_of_skipping(
    consumer: Any,
) -> None:
    tp = TP("city.waste.v1", 3)
    consumer._committed_offset[tp] = 10
    asyncio.run(consumer._add_gap(tp, 11, 12))  # Faust saw 10, then 13: 11 and 12 missing
    consumer._acked[tp].extend([10, 13, 14])
    consumer._acked_index[tp].update([10, 13, 14])
    assert len(consumer._gap[tp]) == 0
    assert consumer._new_offset(tp) == 11  # commits 10 only; 11 and 12 are never skipped
    assert consumer._new_offset(tp) is None


def test_a_single_missing_record_is_not_committed_past(consumer: Any) -> None:
    tp = TP("city.lighting.v1", 5)
    consumer._committed_offset[tp] = 20
    consumer._acked[tp].extend([21, 22])  # 20 never acknowledged; Faust alone commits 23
    consumer._acked_index[tp].update([21, 22])
    assert consumer._new_offset(tp) is None
    assert consumer.__dict__["_cityops_holes"][tp][0] == 20


class _FakeApp:
    rebalancing = False


class _FakeConsumer:
    """Just what the commit wrapper touches."""

    def __init__(self, holes: dict[TP, tuple[int, float]]) -> None:
        self.app = _FakeApp()
        self._cityops_holes = holes
        self.sought: list[tuple[TP, int]] = []
        self._committed_offset: dict[TP, int] = {}
        self.outcome = True  # what the commit returns

    def assignment(self) -> set[TP]:
        return {TP("a", 0), TP("b", 0)}

    async def seek(self, tp: TP, offset: int) -> None:
        self.sought.append((tp, offset))


def test_a_lasting_hole_is_healed_by_seeking_back_to_the_committed_offset() -> None:
    async def original_commit(self: Any) -> bool:
        return True

    commit = offsets._wrap_commit(original_commit)
    old = time.monotonic() - offsets.HEAL_AFTER_S - 1
    fake = _FakeConsumer({TP("a", 0): (241, old), TP("b", 0): (7, time.monotonic()),
                          TP("revoked", 0): (3, old)})
    assert asyncio.run(commit(fake)) is True
    assert fake.sought == [(TP("a", 0), 241)]  # b is too recent, "revoked" not assigned
    assert list(fake._cityops_holes) == [TP("b", 0)]


def _message(tp: TP, offset: int, generation_id: int) -> Any:
    from faust.types.tuples import Message

    return Message(tp.topic, tp.partition, offset, 0.0, 0, None, None, b"v", None, tp=tp,
                   generation_id=generation_id)


def test_an_ack_of_a_record_the_stream_skipped_is_not_booked(consumer: Any) -> None:
    """Faust's stream acks a record of an earlier generation, or one read while the flow is
    suspended for a rebalance, without processing it; booked, the commit would pass it."""
    tp = TP("city.incidents.v1", 7)
    consumer.app.topics.acks_enabled_for = lambda topic: True
    consumer.app.consumer_generation_id = 5
    consumer.app.flow_control.resume()
    consumer._committed_offset[tp] = 100
    stale, suspended, current = _message(tp, 100, 4), _message(tp, 101, 5), _message(tp, 100, 5)

    assert consumer.ack(stale) is False
    consumer.app.flow_control.suspend()
    assert consumer.ack(suspended) is False
    assert (stale.acked, suspended.acked, consumer._acked[tp]) == (True, True, [])
    assert consumer._new_offset(tp) is None  # nothing to commit: 100 was never processed

    consumer.app.flow_control.resume()
    assert consumer.ack(current) is True  # the re-fetched copy, processed in generation 5
    assert consumer._acked[tp] == [100]
    assert consumer._new_offset(tp) == 101


def test_a_commit_that_did_not_happen_leaves_the_committed_offset_alone() -> None:
    """Faust books the offsets of a failed commit as committed; the broker still has the old
    ones, so records re-fetched from there would be dropped as already read."""
    failed, done = TP("city.lighting.v1", 0), TP("city.waste.v1", 2)

    async def original(self: _FakeConsumer, offsets: dict[TP, int], *args: Any) -> bool:
        self._committed_offset.update(offsets)  # what Faust does whatever the outcome
        return self.outcome

    commit_offsets = offsets._wrap_commit_offsets(original)
    fake = _FakeConsumer({})
    fake._committed_offset = {failed: 270}
    fake.outcome = False
    assert asyncio.run(commit_offsets(fake, {failed: 287})) is False
    assert fake._committed_offset == {failed: 270}

    fake.outcome = True
    assert asyncio.run(commit_offsets(fake, {failed: 287, done: 228})) is True
    assert fake._committed_offset == {failed: 287, done: 228}
