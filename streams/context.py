"""What the worker's parts share: the Faust app, settings, metrics, the deployment's topics, the
reference tables, and the one way out for records (batched sends and dead letters).

The enrich agents (`streams.app`), the ward aggregator and the board each take a
`WorkerContext` instead of the whole pipeline, so none of them imports another and the app
module only assembles them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner

from core.connection import faust_credentials
from processors.dead_letters import SourceRecord, dead_letter, letter_for, source_record
from schemas.codec import encode
from streams.metrics import WorkerMetrics
from streams.reference_tables import ReferenceTables
from streams.runtime.poison import Skipped
from streams.settings import WorkerSettings
from topics import catalog
from topics.catalog import TopicCatalog, TopicSpec

log = logging.getLogger(__name__)

#: Producer batching (docs/performance.md): at most 20 ms added per hop, many events per
#: request (aiokafka lingers per partition, so requests ~ partitions / linger under load).
PRODUCER_LINGER_S = 0.02
PRODUCER_MAX_BATCH_BYTES = 256 * 1024
#: Largest changelog record of the ward table (the topic's max.message.bytes; the worker's
#: producer accepts requests this big). Kafka's default, 1 MB, held the event ids of about
#: 20,000 events per ward per dedupe horizon (2.8 events/s in one kelurahan over 2 h).
STATE_RECORD_MAX_BYTES = 8 * 1024 * 1024
PRODUCER_MAX_REQUEST_BYTES = STATE_RECORD_MAX_BYTES + 1024 * 1024
#: Bytes fetched per partition per request by Faust's consumer (its default is 1 MiB). The client
#: hands out fetched partitions in the order they arrived and Faust's one delivery loop waits on a
#: full agent queue, so with a backlog each partition's whole fetch went through its agent before
#: the next partition's records were delivered. Under at_least_once partner topics no longer pass
#: through Faust (the batch hop, docs/runtime.md); this keeps the turns short for what still does:
#: the partner topics under exactly_once, the enriched and action topics, the RT reports. A batch
#: larger than this is still returned whole (Kafka returns at least one batch per fetch).
CONSUMER_MAX_FETCH_BYTES = 128 * 1024

Deliveries = list["Awaitable[Any]"]
"""The delivery futures of what a batch sent, for a checkpoint to check after the flush."""

Record = tuple[int, bytes, bytes]
"""(partition, key, value) of one record to send."""


class KeyPartitions:
    """The partition the producer's default (murmur2) partitioner picks for a key, computed once
    per key: the ward and scope codes are few, the events many."""

    def __init__(self, partitions: int) -> None:
        self._all = list(range(partitions))
        self._partitioner = DefaultPartitioner()
        self._cache: dict[str, int] = {}

    def __call__(self, key: str) -> int:
        partition = self._cache.get(key)
        if partition is None:
            partition = self._partitioner(key.encode(), self._all, self._all)
            self._cache[key] = partition
        return partition


class LocalBacklog:
    """Enriched records this worker's batch hop sent to the partitions its own ward agent owns,
    not yet applied by that agent; the hop waits while there are more than `limit`.

    Both run on one event loop, and the hop handles thousands of records per turn where Faust
    delivers the ward agent's records a few per turn: unchecked, enrichment ran far ahead and
    situations waited for it (docs/runtime.md). Counting restarts at every assignment; records
    for partitions other workers own are not counted (their agents pace themselves). The wait
    is bounded (`wait_s` per batch), so a stopped ward agent cannot stop enrichment.
    """

    def __init__(self, limit: int = 20_000, wait_s: float = 1.0) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self.owned: frozenset[tuple[str, int]] = frozenset()
        self.sent = 0
        self.applied = 0
        self._progress = asyncio.Event()

    @property
    def lead(self) -> int:
        return self.sent - self.applied

    def assigned(self, partitions: Any) -> None:
        self.owned = frozenset((tp.topic, tp.partition) for tp in partitions)
        self.sent = self.applied = 0
        self._progress.set()

    def sending(self, topic: str, records: list[Record]) -> None:
        owned = self.owned
        self.sent += sum(1 for partition, _, _ in records if (topic, partition) in owned)

    def applied_events(self, count: int) -> None:
        self.applied += count
        self._progress.set()

    async def room(self) -> None:
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while self.lead > self.limit:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                return


class WorkerContext:
    """The app and everything its agents share."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        if settings.data_dir is not None:  # Faust creates only the last level of it
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.topics = TopicCatalog(settings.catalog)
        self.metrics = WorkerMetrics()
        self.app = faust.App(
            settings.app_id,
            broker=f"kafka://{settings.bootstrap}",
            store=settings.store,
            processing_guarantee=settings.processing_guarantee,
            topic_partitions=self.topics.ward_partitions,
            # Faust's own topics (the ward table's changelog, its leader topic) replicate like
            # the catalog's: a changelog on one broker of a cluster would be lost with it.
            topic_replication_factor=settings.catalog.replication_factor,
            topic_allow_declare=True,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            web_enabled=True,
            web_bind=settings.web_host,
            web_host=settings.web_host,
            web_port=settings.web_port,
            datadir=str(settings.data_dir),
            table_standby_replicas=0,
            broker_credentials=faust_credentials(),
            # Batch produce requests: with Faust's default (no linger, 16 KB batches) every
            # event became its own produce request (docs/performance.md).
            producer_linger=PRODUCER_LINGER_S,
            producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
            # A busy ward's state record may be up to STATE_RECORD_MAX_BYTES.
            producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
            consumer_max_fetch_size=CONSUMER_MAX_FETCH_BYTES,
            broker_session_timeout=settings.session_timeout_s,
            broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        )
        self.references = ReferenceTables(settings, self.topics, self.metrics)
        self.raw_topics: dict[str, faust.TopicT] = {
            spec.name: self._raw_topic(spec) for spec in self.topics
        }
        self.ward_partition = KeyPartitions(self.topics.ward_partitions)
        self.situation_partition = KeyPartitions(catalog.SITUATIONS.partitions)
        self._producer: Any = None
        self.backlog = LocalBacklog()

    def _raw_topic(self, spec: TopicSpec) -> faust.TopicT:
        return self.app.topic(
            spec.name, key_type=bytes, value_type=bytes, key_serializer="raw",
            value_serializer="raw", partitions=spec.partitions, internal=False,
        )

    def raw_topic(self, spec: TopicSpec) -> faust.TopicT:
        """The Faust topic (raw bytes both ways) of a declared topic, under its deployed name."""
        return self.raw_topics[self.topics.name(spec)]

    # -- dead letters -----------------------------------------------------------------------

    async def send_dead_letter(self, event: faust.EventT[bytes], stage: str, reason: str,
                               error: BaseException) -> None:
        message = event.message
        await self.send_message_letter(message, message.timestamp, stage, reason, error)

    async def send_message_letter(self, message: Any, timestamp_s: float | None, stage: str,
                                  reason: str, error: BaseException,
                                  deliveries: Deliveries | None = None) -> None:
        """The dead letter of a consumed record (Faust's message or aiokafka's record)."""
        await self.send_letter(source_record(
            message.topic, message.partition, message.offset, timestamp_s,
            message.key, message.value, _headers(message.headers),
        ), stage, reason, error, deliveries)

    async def send_letter(self, source: SourceRecord, stage: str, reason: str,
                          error: BaseException, deliveries: Deliveries | None = None) -> None:
        """The dead letter of `source` (a consumed record, or `dead_letters.ward_source`)."""
        record = letter_for(source, error, stage=stage, reason=reason,
                            worker_id=self.settings.worker_id, now=datetime.now(UTC))
        sent = await self.raw_topic(catalog.DEAD_LETTERS).send(
            key=record["original_key"], value=encode(catalog.DEAD_LETTERS.value_schema, record),
        )
        if deliveries is not None:
            deliveries.append(sent)
        self.metrics.rejected.labels(source.topic, stage, reason).inc()
        log.info("dead-lettered %s[%d]@%d: %s/%s: %s", source.topic, source.partition,
                 source.offset, stage, reason, record["error_message"])

    async def send_unparseable(self, bad: Skipped) -> None:
        """A record batch the Kafka client could not parse: one dead letter holding the batch
        as fetched (streams/runtime/poison.py books its offsets once this returned)."""
        source = SourceRecord(bad.topic, bad.partition, bad.first_offset, bad.timestamp_ms,
                              None, bad.raw)
        record = dead_letter(
            source, stage="DECODE", reason="unparseable_record", message=bad.describe(),
            error_class=bad.error_class, worker_id=self.settings.worker_id,
            now=datetime.now(UTC),
        )
        await self.raw_topic(catalog.DEAD_LETTERS).send(
            key=None, value=encode(catalog.DEAD_LETTERS.value_schema, record))
        self.metrics.rejected.labels(bad.topic, "DECODE", "unparseable_record").inc()
        self.metrics.unparseable.labels(bad.topic, bad.kind).inc()

    # -- sending ------------------------------------------------------------------------------

    async def send_batch(self, topic: str, records: list[Record],
                         deliveries: Deliveries | None = None,
                         headers: list[list[tuple[str, bytes]]] | None = None) -> None:
        """Hand a batch's records to the producer with one record batch per partition.

        aiokafka's batch API costs a few microseconds per record where `send()` costs tens
        (a future and a lookup per record). The batches go into the same producer Faust
        flushes before it commits offsets, so at-least-once is unchanged. Under
        exactly-once, or if Faust's producer hides its aiokafka client, records go one by
        one through `send_fast` instead. `headers` are each record's, in order.
        """
        producer = self._producer
        if producer is None:
            producer = self._producer = await self.app.maybe_start_producer()
        client = getattr(producer, "_producer", None)
        if client is None or self.app.in_transaction or len(records) < 2:
            for index, (partition, key, value) in enumerate(records):
                await self.send_fast(topic, key, value, partition, deliveries,
                                     headers[index] if headers else None)
            return
        no_headers: list[tuple[str, bytes]] = []
        builders: dict[int, Any] = {}
        for index, (partition, key, value) in enumerate(records):
            extra = headers[index] if headers else no_headers
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = client.create_batch()
            if builder.append(key=key, value=value, timestamp=None, headers=extra) is None:
                sent = await client.send_batch(builder, topic, partition=partition)
                if deliveries is not None:
                    deliveries.append(sent)
                builder = builders[partition] = client.create_batch()
                builder.append(key=key, value=value, timestamp=None, headers=extra)
        for partition, builder in builders.items():
            if builder.record_count():
                sent = await client.send_batch(builder, topic, partition=partition)
                if deliveries is not None:
                    deliveries.append(sent)

    async def send_fast(self, topic: str, key: bytes, value: bytes, partition: int,
                        deliveries: Deliveries | None = None,
                        headers: list[tuple[str, bytes]] | None = None) -> None:
        """Send through the app's producer, as `Topic.send` ends up doing, minus Faust's
        per-message wrapping (future message, sensors), which took ~18 % of a worker's CPU.
        Offsets are still committed only after this producer was flushed."""
        producer = self._producer
        if producer is None:
            producer = self._producer = await self.app.maybe_start_producer()
        sent = await producer.send(topic, key, value, partition, None, headers)
        if deliveries is not None:
            deliveries.append(sent)


def _headers(headers: Any) -> list[tuple[str, bytes | None]]:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(key), value) for key, value in items]
