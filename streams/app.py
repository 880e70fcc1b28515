"""The Faust worker: partner topics in, enriched events, ward state and situations out.

Each event type's path, in the order it flows:

    city.<type>.v1 (raw bytes, keyed by asset or incident id)
      -> enrich agent: decode (schemas.codec) + validate and place in a ward (processors.enrich)
      -> city.<type>.enriched.v1 (keyed by kelurahan code: the repartition step)
      -> ward agent: apply to the ward's state (processors.state), in the `ward_state` table
      -> city.situations.v1 when the ward's level or counts changed (processors.situation)
    anything unusable at any step -> city.deadletter.v1 with the rule it broke.

Input topics are read as raw bytes and decoded inside the per-event try, because Faust acks and
skips an event whose processing raised and crashes the agent on a value it cannot deserialize
(see shared/docs/faust-kafka-facts.md): every failure becomes a dead letter instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import faust
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import start_http_server

from cityops.security import faust_credentials
from processors.dead_letters import SourceRecord, dead_letter, source_record
from processors.enrich import (
    EnrichmentRules,
    enrich_incident,
    enrich_lighting,
    enrich_waste,
)
from processors.rejections import Rejection
from schemas.codec import CodecError, decode, encode
from streams import faust_offsets, faustpatch
from streams.metrics import WorkerMetrics
from streams.runtime import poison
from streams.settings import WorkerSettings
from streams.wards import STATE_RECORD_MAX_BYTES, WardAggregator
from streams.web import register_web
from topics import catalog
from topics.catalog import TopicSpec

log = logging.getLogger(__name__)

Enricher = Callable[..., dict[str, Any]]

#: Producer batching (docs/performance.md): at most 20 ms added per hop, many events per
#: request (aiokafka lingers per partition, so requests ~ partitions / linger under load).
PRODUCER_LINGER_S = 0.02
PRODUCER_MAX_BATCH_BYTES = 256 * 1024
PRODUCER_MAX_REQUEST_BYTES = STATE_RECORD_MAX_BYTES + 1024 * 1024
#: Enrichment works on what has arrived, up to this many events, waiting at most this long.
ENRICH_BATCH = 1_000
ENRICH_WITHIN_S = 0.005
_PARTITIONER = DefaultPartitioner()


class Pipeline:
    """The app and everything its agents share: reference views, metrics, settings."""

    def __init__(self, settings: WorkerSettings) -> None:
        from streams.reference import ReferenceViews

        faustpatch.install()
        faust_offsets.install(settings.processing_guarantee)
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.rules = EnrichmentRules()
        self.app = faust.App(
            settings.app_id,
            broker=f"kafka://{settings.bootstrap}",
            store=settings.store,
            processing_guarantee=settings.processing_guarantee,
            topic_partitions=catalog.WARD_PARTITIONS,
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
            # A busy ward's state record may be up to STATE_RECORD_MAX_BYTES (streams/wards.py).
            producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
            broker_session_timeout=settings.session_timeout_s,
            broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        )
        # A record batch the client cannot parse is dead-lettered and skipped (issue 17).
        poison.install(self.app, self.send_unparseable)
        self.references = ReferenceViews(settings, self.metrics)
        # Per-event metric children, looked up once (labels() takes a lock and builds a key).
        self._consumed = {spec.name: self.metrics.consumed.labels(spec.name)
                          for spec in catalog.INPUT_TOPICS}
        self._event_age = {spec.name: self.metrics.event_age.labels(spec.name)
                           for spec in catalog.INPUT_TOPICS}
        for spec in catalog.INPUT_TOPICS:  # at 0: the first unparseable batch is an increase
            for kind in poison.KINDS:
                self.metrics.unparseable.labels(spec.name, kind)
        self._ward_partitions: dict[str, int] = {}
        self._producer: Any = None
        self.raw_topics: dict[str, faust.TopicT] = {
            spec.name: self._raw_topic(spec) for spec in catalog.CATALOG
        }
        self.wards = WardAggregator(self)
        self._wire()

    def _raw_topic(self, spec: TopicSpec) -> faust.TopicT:
        return self.app.topic(
            spec.name, key_type=bytes, value_type=bytes, key_serializer="raw",
            value_serializer="raw", partitions=spec.partitions, internal=False,
        )

    # -- dead letters -----------------------------------------------------------------------

    async def send_dead_letter(self, event: faust.EventT[bytes], stage: str, reason: str,
                               error: BaseException) -> None:
        message = event.message
        source = source_record(
            message.topic, message.partition, message.offset, message.timestamp,
            message.key, message.value, _headers(message.headers),
        )
        text = getattr(error, "message", None) or str(error) or type(error).__name__
        record = dead_letter(
            source, stage=stage, reason=reason, message=text,
            error_class=type(error).__name__, worker_id=self.settings.worker_id,
            now=datetime.now(UTC),
        )
        await self.raw_topics[catalog.DEAD_LETTERS.name].send(
            key=record["original_key"], value=encode("org.cityops.DeadLetter", record),
        )
        self.metrics.rejected.labels(message.topic, stage, reason).inc()
        log.info("dead-lettered %s[%d]@%d: %s/%s: %s", message.topic, message.partition,
                 message.offset, stage, reason, text)

    async def send_unparseable(self, bad: poison.Skipped) -> None:
        """A record batch the Kafka client could not parse: one dead letter holding the batch
        as fetched (streams/runtime/poison.py books its offsets once this returned)."""
        source = SourceRecord(bad.topic, bad.partition, bad.first_offset, bad.timestamp_ms,
                              None, bad.raw)
        record = dead_letter(
            source, stage="DECODE", reason="unparseable_record", message=bad.describe(),
            error_class=bad.error_class, worker_id=self.settings.worker_id,
            now=datetime.now(UTC),
        )
        await self.raw_topics[catalog.DEAD_LETTERS.name].send(
            key=None, value=encode("org.cityops.DeadLetter", record))
        self.metrics.rejected.labels(bad.topic, "DECODE", "unparseable_record").inc()
        self.metrics.unparseable.labels(bad.topic, bad.kind).inc()

    # -- enrichment ---------------------------------------------------------------------------

    async def enrich_event(self, event: faust.EventT[bytes], spec: TopicSpec, out: TopicSpec,
                           enricher: Enricher) -> tuple[int, bytes, bytes] | None:
        """Decode, validate and place one partner event; never raises.

        Returns (partition, key, value) of the enriched record to send, or None when the event
        went to the dead-letter topic.
        """
        message = event.message
        self._consumed[spec.name].inc()
        now = datetime.now(UTC)
        try:
            if message.value is None:
                raise CodecError("undecodable", f"{spec.name}: record has no value (tombstone)")
            decoded = decode(message.value, expected=spec.value_schema)
            enriched = enricher(decoded.record, self.references.data(), self.rules, now)
            # Built from a record decode() just checked: skip re-validating it (the Avro
            # writer still refuses anything it cannot write).
            value = encode(out.value_schema, enriched, validate=False)
        except CodecError as error:
            await self.send_dead_letter(event, "DECODE", error.reason, error)
            return None
        except Rejection as error:
            await self.send_dead_letter(event, error.stage, error.reason, error)
            return None
        except Exception as error:
            log.exception("enrichment failed on %s@%d", message.topic, message.offset)
            await self.send_dead_letter(event, "PROCESS", "processing_error", error)
            return None
        ward_code: str = enriched["ward_code"]
        self.metrics.enriched.labels(spec.name, enriched["ward_resolution"]).inc()
        occurred: datetime = decoded.record["occurred_at"]
        self._event_age[spec.name].observe(max(0.0, (now - occurred).total_seconds()))
        return self.ward_partition(ward_code), ward_code.encode(), value

    async def send_batch(self, topic: str, records: list[tuple[int, bytes, bytes]]) -> None:
        """Hand a batch's records to the producer with one record batch per partition.

        aiokafka's batch API costs a few microseconds per record where `send()` costs tens
        (a future and a lookup per record). The batches go into the same producer Faust
        flushes before it commits offsets, so at-least-once is unchanged. Under
        exactly-once, or if Faust's producer hides its aiokafka client, records go one by
        one through `send_fast` instead.
        """
        producer = self._producer
        if producer is None:
            producer = self._producer = await self.app.maybe_start_producer()
        client = getattr(producer, "_producer", None)
        if client is None or self.app.in_transaction or len(records) < 2:
            for partition, key, value in records:
                await self.send_fast(topic, key, value, partition)
            return
        builders: dict[int, Any] = {}
        for partition, key, value in records:
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = client.create_batch()
            if builder.append(key=key, value=value, timestamp=None) is None:
                await client.send_batch(builder, topic, partition=partition)
                builder = builders[partition] = client.create_batch()
                builder.append(key=key, value=value, timestamp=None)
        for partition, builder in builders.items():
            if builder.record_count():
                await client.send_batch(builder, topic, partition=partition)

    async def send_fast(self, topic: str, key: bytes, value: bytes, partition: int) -> None:
        """Send through the app's producer, as `Topic.send` ends up doing, minus Faust's
        per-message wrapping (future message, sensors), which took ~18 % of a worker's CPU.
        Offsets are still committed only after this producer was flushed."""
        producer = self._producer
        if producer is None:
            producer = self._producer = await self.app.maybe_start_producer()
        await producer.send(topic, key, value, partition, None, None)

    def ward_partition(self, ward_code: str) -> int:
        """The partition of a ward's key on the ward-keyed topics, as the producer's default
        (murmur2) partitioner would pick it, computed once per ward instead of per event."""
        partition = self._ward_partitions.get(ward_code)
        if partition is None:
            partitions = list(range(catalog.WARD_PARTITIONS))
            partition = _PARTITIONER(ward_code.encode(), partitions, partitions)
            self._ward_partitions[ward_code] = partition
        return partition

    def _enrich_agent(self, name: str, spec: TopicSpec, out: TopicSpec,
                      enricher: Enricher) -> None:
        async def agent(stream: faust.StreamT[bytes]) -> None:
            await self.references.wait_ready()
            # Batches of what has arrived (at most ENRICH_BATCH, waiting at most
            # ENRICH_WITHIN_S): Faust acks a batch's events only after this body handled it.
            batches = cast(faust.Stream[bytes], stream).take_events(
                ENRICH_BATCH, within=ENRICH_WITHIN_S)
            async for events in batches:
                records = []
                for event in events:
                    record = await self.enrich_event(event, spec, out, enricher)
                    if record is not None:
                        records.append(record)
                await self.send_batch(out.name, records)

        agent.__name__ = f"enrich_{name}"
        agent.__qualname__ = agent.__name__
        self.app.agent(self.raw_topics[spec.name], name=f"cityops.{agent.__name__}")(agent)

    def _wire(self) -> None:
        self._enrich_agent("incidents", catalog.INCIDENTS, catalog.INCIDENTS_ENRICHED,
                           enrich_incident)
        self._enrich_agent("lighting", catalog.LIGHTING, catalog.LIGHTING_ENRICHED, enrich_lighting)
        self._enrich_agent("waste", catalog.WASTE, catalog.WASTE_ENRICHED, enrich_waste)
        self.wards.wire()
        self.app.task(self.references.follow)
        self.app.timer(5.0)(self.wards.reload_thresholds)
        register_web(self)

        async def _start_metrics() -> None:
            start_http_server(self.settings.metrics_port, addr=self.settings.metrics_host,
                              registry=self.metrics.registry)
            log.info("metrics on http://%s:%d/metrics", self.settings.metrics_host,
                     self.settings.metrics_port)

        self.app.task(_start_metrics)


def _headers(headers: Any) -> list[tuple[str, bytes | None]]:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(key), value) for key, value in items]


def create_app(settings: WorkerSettings) -> Pipeline:
    return Pipeline(settings)


def run_worker(settings: WorkerSettings, loglevel: str = "info") -> None:
    """Run one worker until SIGTERM/SIGINT; several with the same app id share partitions."""
    pipeline = create_app(settings)
    worker = faust.Worker(pipeline.app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG whenever the level is WARNING or
    # above, so every aiokafka debug call built a log record (8 % of a worker's CPU).
    worker.spinner = None
    started = time.monotonic()
    try:
        worker.execute_from_commandline()
    finally:
        log.info("worker ran %.1fs", time.monotonic() - started)

