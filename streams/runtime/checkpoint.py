"""The at-least-once order of the batch hop, written once (as Quix Streams' `Checkpoint.commit`).

A consumed offset may be committed only when everything its record caused is on the broker:

1. every dead letter of a record batch the client could not parse (the poison fence sends
   them from its own tasks) has been handed to the producer;
2. the producer is flushed: every enriched record and dead letter is acknowledged
   (acks=all);
3. the consumed positions are committed.

A crash anywhere before 3 replays the batch from the last commit; the ward state recognises
replayed events by `event_id`, so a replay is never counted twice. A partition whose dead letter
could not be sent is not committed: it is read again from its committed offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

log = logging.getLogger(__name__)

#: Longest wait for a partition's position (see `processed`).
POSITION_WAIT_S = 0.05

Flush = Callable[[], Awaitable[None]]
"""Flush the producer; raise when a record sent since the last checkpoint was not delivered."""


class DeliveryFailedError(Exception):
    """A record the batches produced was not acknowledged by the broker."""

#: Waits for the fence's dead letters; returns the partitions whose dead letter failed.
Settle = Callable[[], Awaitable[set[tuple[str, int]]]]


class Checkpoint:
    """Positions processed since the last commit, and the one way to commit them."""

    def __init__(self, consumer: AIOKafkaConsumer, flush: Flush, settle: Settle) -> None:
        self._consumer = consumer
        self._flush = flush
        self._settle = settle
        self._processed: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self.commits = 0
        self.failed_commits = 0

    @property
    def pending(self) -> bool:
        return bool(self._processed)

    async def processed(self, partitions: Iterable[TopicPartition],
                        before: Mapping[TopicPartition, int] | None = None) -> None:
        """Every record the consumer returned for `partitions` has been handled (its outputs
        handed to the producer), except from `before[tp]` on (records still buffered): their
        positions may be committed at the next commit.

        The position, not the last record's offset + 1: it also moves past transaction markers,
        aborted transactions and batches the fence skipped, which hold nothing to process."""
        for tp in partitions:
            if tp not in self._consumer.assignment():
                continue
            try:
                # A partition just assigned has no position until the group's offsets are
                # fetched, which waits for the rebalance, which waits for the revoke callback,
                # which waits for this: never wait long for a position.
                position = await asyncio.wait_for(self._consumer.position(tp), POSITION_WAIT_S)
            except (TimeoutError, IllegalStateError):
                continue
            if before is not None and tp in before:
                position = min(position, before[tp])
            if self._committed.get(tp) != position:
                self._processed[tp] = position

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions this worker no longer owns: their next owner reads from the broker's
        committed offset, so nothing of theirs may be committed from here."""
        for tp in partitions:
            self._processed.pop(tp, None)
            self._committed.pop(tp, None)

    async def commit(self) -> bool:
        """Settle, flush, commit, in that order; False when the commit did not happen (the
        records since the last commit are then read again, by this worker or the next)."""
        if not self._processed:
            return True
        failed = await self._settle()
        try:
            await self._flush()
        except Exception as error:  # a record is not on the broker: replay from the last commit
            self.failed_commits += 1
            log.warning("not committed: %s; every partition is read again from its committed "
                        "offset", error)
            for tp in list(self._processed):
                self._processed.pop(tp, None)
                self._committed.pop(tp, None)
                await self._rewind(tp)
            return False
        offsets = {tp: offset for tp, offset in self._processed.items()
                   if (tp.topic, tp.partition) not in failed}
        for topic, partition in failed:
            tp = TopicPartition(topic, partition)
            self._processed.pop(tp, None)
            self._committed.pop(tp, None)
            await self._rewind(tp)
        if not offsets:
            return not failed
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # A rebalance took the partitions: their next owner replays from the committed
            # offsets, the ward state absorbs the replay.
            self.failed_commits += 1
            log.warning("commit of %d partitions did not happen (%s); their records since "
                        "the last commit will be read again", len(offsets), error)
            self.forget(offsets)
            return False
        except KafkaError as error:  # broker unreachable: keep the positions, retry later
            self.failed_commits += 1
            log.warning("commit failed (%r); retried at the next checkpoint", error)
            return False
        self.commits += 1
        self._committed.update(offsets)
        for tp, offset in offsets.items():
            if self._processed.get(tp) == offset:
                del self._processed[tp]
        return not failed

    async def _rewind(self, tp: TopicPartition) -> None:
        if tp not in self._consumer.assignment():
            return
        committed = await self._consumer.committed(tp)
        if committed is None:
            await self._consumer.seek_to_beginning(tp)
        else:
            self._consumer.seek(tp, committed)
        log.warning("%s[%d] is read again from offset %s", tp.topic, tp.partition,
                    committed if committed is not None else "0")
