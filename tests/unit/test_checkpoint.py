"""The batch hop's at-least-once order (streams/runtime/checkpoint.py), against a recording
stand-in of the consumer: settle the fence's dead letters, flush the producer, then commit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError

from streams.runtime.checkpoint import Checkpoint

pytestmark = pytest.mark.unit

A0 = TopicPartition("city.lighting.v1", 0)
A1 = TopicPartition("city.lighting.v1", 1)


class RecordingConsumer:
    def __init__(self, positions: dict[TopicPartition, int],
                 committed: dict[TopicPartition, int] | None = None,
                 fail: BaseException | None = None) -> None:
        self.positions = positions
        self.broker_committed = dict(committed or {})
        self.fail = fail
        self.calls: list[tuple[str, Any]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    async def position(self, tp: TopicPartition) -> int:
        if self.positions[tp] < 0:  # just assigned: no position until the rebalance ends
            await asyncio.Event().wait()
        return self.positions[tp]

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.calls.append(("commit", dict(offsets)))
        if self.fail is not None:
            raise self.fail
        self.broker_committed.update(offsets)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.broker_committed.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.calls.append(("seek", (tp, offset)))

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.calls.append(("seek_to_beginning", tps))


def checkpoint(consumer: RecordingConsumer, unsent: set[tuple[str, int]] | None = None
               ) -> Checkpoint:
    async def flush() -> None:
        consumer.calls.append(("flush", None))

    async def settle() -> set[tuple[str, int]]:
        consumer.calls.append(("settle", None))
        return set(unsent or ())

    return Checkpoint(consumer, flush, settle)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_commit_settles_then_flushes_then_commits_the_positions() -> None:
    consumer = RecordingConsumer({A0: 120, A1: 7})
    cp = checkpoint(consumer)

    async def scenario() -> bool:
        await cp.processed([A0, A1])
        return await cp.commit()

    assert run(scenario()) is True
    assert consumer.calls == [("settle", None), ("flush", None), ("commit", {A0: 120, A1: 7})]
    assert cp.pending is False


def test_nothing_processed_commits_nothing() -> None:
    consumer = RecordingConsumer({A0: 5})
    assert run(checkpoint(consumer).commit()) is True
    assert consumer.calls == []


def test_a_position_already_committed_is_not_committed_again() -> None:
    consumer = RecordingConsumer({A0: 5, A1: 9})
    cp = checkpoint(consumer)

    async def scenario() -> None:
        await cp.processed([A0, A1])
        await cp.commit()
        consumer.positions[A1] = 12
        await cp.processed([A0, A1])
        await cp.commit()

    run(scenario())
    assert [c for c in consumer.calls if c[0] == "commit"] == [
        ("commit", {A0: 5, A1: 9}), ("commit", {A1: 12})]


def test_a_partition_whose_dead_letter_failed_is_read_again_not_committed() -> None:
    consumer = RecordingConsumer({A0: 50, A1: 30}, committed={A0: 40})
    cp = checkpoint(consumer, unsent={("city.lighting.v1", 0)})

    async def scenario() -> bool:
        await cp.processed([A0, A1])
        return await cp.commit()

    assert run(scenario()) is False
    assert consumer.calls == [("settle", None), ("flush", None), ("seek", (A0, 40)),
                              ("commit", {A1: 30})]


def test_a_commit_refused_after_a_rebalance_forgets_the_partitions() -> None:
    consumer = RecordingConsumer({A0: 50}, fail=CommitFailedError("rebalanced"))
    cp = checkpoint(consumer)

    async def scenario() -> bool:
        await cp.processed([A0])
        return await cp.commit()

    assert run(scenario()) is False
    assert (cp.pending, cp.failed_commits) == (False, 1)


def test_a_commit_that_cannot_reach_the_broker_is_retried_at_the_next_checkpoint() -> None:
    consumer = RecordingConsumer({A0: 50}, fail=KafkaConnectionError())
    cp = checkpoint(consumer)

    async def scenario() -> tuple[bool, bool]:
        await cp.processed([A0])
        first = await cp.commit()
        consumer.fail = None
        return first, await cp.commit()

    assert run(scenario()) == (False, True)
    assert consumer.broker_committed == {A0: 50}


def test_revoked_partitions_are_never_committed_from_here() -> None:
    consumer = RecordingConsumer({A0: 50, A1: 8})
    cp = checkpoint(consumer)

    async def scenario() -> None:
        await cp.processed([A0, A1])
        cp.forget([A0])
        await cp.commit()

    run(scenario())
    assert consumer.calls[-1] == ("commit", {A1: 8})


def test_a_partition_without_a_position_yet_is_skipped_not_waited_for() -> None:
    consumer = RecordingConsumer({A0: 50, A1: -1})
    cp = checkpoint(consumer)

    async def scenario() -> None:
        await cp.processed([A0, A1])
        await cp.commit()

    run(scenario())
    assert consumer.calls[-1] == ("commit", {A0: 50})
