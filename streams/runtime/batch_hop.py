"""The enrichment hop on the consumer's batch API, inside the Faust app (issue 17, part 2).

Partner input topics are stateless to process (decode, validate, place in a ward, send to the
enriched topic keyed by ward), so they do not need Faust's streams, whose per-message path
(conductor, queues, events, acks) cost more CPU per event than the work itself, and whose
single delivery loop let a backlog of partner input starve the ward agent: the fetched
partitions are handed out in arrival order and the loop waits on a full agent queue. Here one
aiokafka consumer, in its own consumer group (`<app id>-enrich`), fetches batches with
`getmany`; the handler gets each batch whole; the producer is Faust's own (one producer, one
flush); offsets are committed by `Checkpoint` in the at-least-once order. Faust keeps the
stateful hop (the ward agent, its table, changelog and recovery), the app's lifecycle and the
web server; this hop starts after Faust's table recovery, as an `app.service`, and stops with
the app. Public aiokafka and Faust APIs only.

Event-time order (issue 26, docs/rules.md "Event-time order across partitions"): `prepare`
enriches each fetched record as it arrives (dead letters go out at once) and returns its event
time; the enriched outputs wait in a buffer per input partition (`processors.event_order.
PartitionMerge`) and are handed to `emit` lowest event time first across the partitions this
hop owns, with the hop's low watermark, which every enriched record carries to the ward stage.
A partition whose buffer is full is paused; a commit never passes a partition's first
buffered record.

Rebalances: the consumer's rebalance listener commits what was processed before the
partitions go (the handler never runs during that commit: both hold one lock). A worker that
upgrades from the Faust-agent enrichment finds no offsets in the new group: the partitions
start from what the app's Faust group committed for them, so nothing is read twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord
from mode import Service

from processors.event_order import PartitionMerge
from streams.runtime.checkpoint import POSITION_WAIT_S, Checkpoint, Flush, Settle

log = logging.getLogger(__name__)

#: Records per `getmany` (all partitions together) and the longest wait for the first one.
BATCH_RECORDS = 2_000
BATCH_WAIT_MS = 50
#: Bytes fetched per partition per request: small enough that every partition gets a turn.
FETCH_BYTES_PER_PARTITION = 256 * 1024
#: A commit at most this often (the replay after a crash is at most this long).
COMMIT_INTERVAL_S = 1.0

#: Longest wait for a partition that has lag but an empty buffer before the others go on
#: (Kafka Streams' max.task.idle.ms), and longest a partition that delivers nothing holds the
#: hop's low watermark back (docs/rules.md).
IDLE_S = 5.0
HOLD_MAX_S = 60.0
#: Records buffered per input partition before its fetches pause.
BUFFER_RECORDS = 4_000

Prepare = Callable[[Sequence[ConsumerRecord[bytes, bytes]]],
                   Awaitable[list[tuple[int, Any] | None]]]
"""Per record: (event time ms, what to emit for it), or None (it went to the dead letters)."""
Emit = Callable[[Sequence[tuple[int, Any]]], Awaitable[None]]
"""Send what `prepare` returned for these records, in this order, each with the mark it must
carry (`PartitionMerge.marks`)."""


async def group_offsets(admin: AIOKafkaAdminClient, group: str,
                        partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    """The offsets `group` committed for `partitions` (a partition it never committed is
    absent)."""
    found = await admin.list_consumer_group_offsets(group, partitions=list(partitions))
    return {tp: meta.offset for tp, meta in found.items()
            if meta is not None and meta.offset >= 0}


def hop_group(app_id: str) -> str:
    """The consumer group of the enrichment hop of the app `app_id`."""
    return f"{app_id}-enrich"


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, hop: BatchHop) -> None:
        self.hop = hop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.hop.lock:
            await self.hop.checkpoint_commit()
            if self.hop.checkpoint is not None:
                self.hop.checkpoint.forget(revoked)
            self.hop.merge.revoke(revoked)  # buffered, not committed: the next owner reads them

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.hop.merge.assign(assigned, time.monotonic())
        await self.hop.adopt_faust_offsets(set(assigned))


class BatchHop(Service):
    """Reads `topics` in batches, hands each batch to `handler`, commits at least once."""

    def __init__(self, *, bootstrap: str, app_id: str, topics: Sequence[str], prepare: Prepare,
                 emit: Emit, flush: Flush, settle: Settle, security: dict[str, Any],
                 ready: Callable[[], Awaitable[None]], client_id: str,
                 session_timeout_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bootstrap = bootstrap
        self.app_id = app_id
        self.group = hop_group(app_id)
        self.topics = list(topics)
        self.prepare = prepare
        self.emit = emit
        self.merge: PartitionMerge[TopicPartition, Any] = PartitionMerge(
            IDLE_S, HOLD_MAX_S, BUFFER_RECORDS)
        #: The low watermark sent with the last records (processors.event_order).
        self.low_watermark = -1
        #: The newest event time released (the low watermark's lag is measured against it).
        self.newest = -1
        self.flush = flush
        self.settle = settle
        self.security = security
        self.ready = ready
        self.client_id = client_id
        self.session_timeout_s = session_timeout_s
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.checkpoint: Checkpoint | None = None
        self.batches = 0
        self.records = 0

    async def on_start(self) -> None:
        self.add_future(self._main())

    async def _main(self) -> None:
        await self.ready()  # the reference tables: nothing can be enriched before them
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group, client_id=self.client_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            isolation_level="read_committed",  # a partner's aborted transaction is not an event
            max_partition_fetch_bytes=FETCH_BYTES_PER_PARTITION,
            # as the Faust group's: a killed worker's partitions move after this long
            session_timeout_ms=int(self.session_timeout_s * 1000),
            heartbeat_interval_ms=int(min(3.0, self.session_timeout_s / 3) * 1000),
            **self.security,
        )
        self.consumer.subscribe(self.topics, listener=_CommitOnRevoke(self))
        await self.consumer.start()
        self.checkpoint = Checkpoint(self.consumer, self.flush, self.settle)
        await self._run()

    async def on_stop(self) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        async with self.lock:
            await self.checkpoint_commit()
        await consumer.stop()

    async def checkpoint_commit(self) -> None:
        if self.checkpoint is not None:
            try:
                await self.checkpoint.commit()
            except Exception:  # the next checkpoint tries again; a crash would only replay
                log.exception("checkpoint failed")

    async def _run(self) -> None:
        consumer = self.consumer
        assert consumer is not None and self.checkpoint is not None
        last_commit = time.monotonic()
        while not self.should_stop:
            try:
                batch = await consumer.getmany(timeout_ms=BATCH_WAIT_MS,
                                               max_records=BATCH_RECORDS)
            except KafkaError as error:  # the client retries by itself; say so and go on
                log.warning("fetch failed (%r); retrying", error)
                await asyncio.sleep(1.0)
                continue
            async with self.lock:
                if batch and not await self._take(batch):
                    await asyncio.sleep(1.0)
                    continue
                if not await self._release():
                    await asyncio.sleep(1.0)
                    continue
                if batch:
                    self.batches += 1
                if time.monotonic() - last_commit >= COMMIT_INTERVAL_S:
                    last_commit = time.monotonic()
                    # positions also move past transaction markers and skipped batches
                    await self.checkpoint.processed(consumer.assignment(),
                                                    before=self.merge.first_offsets())
                    await self.checkpoint_commit()

    async def _take(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
                    ) -> bool:
        """Prepare a fetched batch into the partitions' buffers; False when it must be read
        again (what raises out of `prepare` is the way out, the producer of dead letters)."""
        consumer = self.consumer
        assert consumer is not None
        records = [record for part in batch.values() for record in part]
        try:
            prepared = await self.prepare(records)
        except Exception:
            log.exception("a batch of %d records failed; read again", len(records))
            for tp, part in batch.items():
                self._rewind(tp, part[0].offset)
            return False
        now = time.monotonic()
        merge = self.merge
        for record, item in zip(records, prepared, strict=True):
            if item is not None:
                merge.add(TopicPartition(record.topic, record.partition), item[0],
                          record.offset, item[1], now)
        self.records += len(records)
        return True

    async def _release(self) -> bool:
        """Emit what the partitions' buffers allow, lowest event time first; pause the
        partitions whose buffer is full. False when the emit failed (read again)."""
        consumer = self.consumer
        assert consumer is not None
        merge = self.merge
        now = time.monotonic()
        assignment = consumer.assignment()
        for tp in assignment:
            merge.fetched(tp, await self._caught_up(tp), now)
        released = merge.release(now)
        mark = self.low_watermark = merge.low_watermark(now)
        if released:
            self.newest = max(self.newest, max(clock for _, clock, _, _ in released))
            try:
                await self.emit(list(zip(PartitionMerge.marks(
                    [clock for _, clock, _, _ in released], mark),
                    [item for _, _, _, item in released], strict=True)))
            except Exception:
                log.exception("%d records failed; read again", len(released))
                first: dict[TopicPartition, int] = {}
                for tp, _, offset, _ in released:
                    first.setdefault(tp, offset)
                for tp, offset in merge.first_offsets().items():
                    first.setdefault(tp, offset)
                for tp, offset in first.items():
                    self._rewind(tp, offset)
                return False
        assignment = consumer.assignment()  # what the awaits above may have changed
        full = set(merge.full()) & assignment
        paused = consumer.paused() & assignment
        try:
            if full - paused:
                consumer.pause(*(full - paused))
            if paused - full:
                consumer.resume(*(paused - full))
        except (AssertionError, IllegalStateError, KeyError):  # a rebalance in between
            log.info("pause/resume skipped: the assignment changed")
        return True

    def _rewind(self, tp: TopicPartition, offset: int) -> None:
        self.merge.clear(tp)
        assert self.consumer is not None
        if tp in self.consumer.assignment():
            self.consumer.seek(tp, offset)

    async def _caught_up(self, tp: TopicPartition) -> bool:
        """Nothing more of `tp` on the broker right now (its position at the last stable
        offset, or at the high watermark where there is none)."""
        consumer = self.consumer
        assert consumer is not None
        try:
            # aiokafka asserts the partition is assigned; a rebalance may have just taken it
            end = consumer.last_stable_offset(tp)
            if end is None or end < 0:
                end = consumer.highwater(tp)
            if end is None:
                return False
            position = await asyncio.wait_for(consumer.position(tp), POSITION_WAIT_S)
        except (AssertionError, TimeoutError, IllegalStateError):
            return False
        return bool(position >= end)

    async def adopt_faust_offsets(self, assigned: set[TopicPartition]) -> None:
        """Partitions this group never committed start where the app's Faust group (which
        read these topics before the hop existed) committed them, if it did."""
        consumer = self.consumer
        if consumer is None or not assigned:
            return
        fresh = [tp for tp in assigned if await consumer.committed(tp) is None]
        if not fresh:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                    client_id=f"{self.client_id}-admin", **self.security)
        await admin.start()
        try:
            offsets = await group_offsets(admin, self.app_id, fresh)
        except Exception as error:  # no such group, no access: start from the beginning
            log.info("no offsets of group %s to start from (%r)", self.app_id, error)
            return
        finally:
            await admin.close()
        for tp, offset in offsets.items():
            consumer.seek(tp, offset)
            log.info("%s[%d] starts at offset %d, committed by group %s", tp.topic,
                     tp.partition, offset, self.app_id)
