"""The Faust worker: partner topics in, enriched events, ward state and situations out.

Each event type's path, in the order it flows:

    city.<type>.v1, city.incidents.<source>.v1 (raw bytes, keyed by asset or incident id)
      -> enrich agent, one per input topic: decode (schemas.codec), check the source a
         partner's own topic binds, validate and place in a ward (processors.enrich)
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
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import faust
from prometheus_client import Counter, Histogram, start_http_server

from core.connection import aiokafka_security
from core.rejections import Rejection
from processors.enrich import EnrichmentRules, data_quality
from processors.event_order import MARK_HEADER, encode_mark
from processors.records import enrich_record
from processors.state import to_ms
from streams.context import Deliveries, Record, WorkerContext
from streams.history_web import register_history_web
from streams.liveness import EXIT_STALLED
from streams.neighbourhood_agent import NeighbourhoodAgents
from streams.neighbourhood_web import register_neighbourhood_web
from streams.operator_web import register_operators
from streams.runtime import fast_delivery, offsets, poison, taskdump
from streams.runtime.batch_hop import BatchHop
from streams.runtime.checkpoint import DeliveryFailedError
from streams.settings import WorkerSettings
from streams.ward_aggregator import WardAggregator
from streams.web import register_web
from topics.catalog import TopicSpec
from topics.event_types import EVENT_TYPES, EventType

log = logging.getLogger(__name__)

#: Enrichment works on what has arrived, up to this many events, waiting at most this long.
ENRICH_BATCH = 1_000
ENRICH_WITHIN_S = 0.005


class Pipeline:
    """The worker assembled: one enrich agent per event type, the ward aggregator, the board."""

    def __init__(self, settings: WorkerSettings) -> None:
        fast_delivery.install()
        offsets.install(settings.processing_guarantee)
        self.settings = settings
        self.context = context = WorkerContext(settings)
        self.app = context.app
        self.metrics = context.metrics
        self.references = context.references
        self.rules = EnrichmentRules()
        # A record batch the client cannot parse is dead-lettered and skipped (issue 17).
        self.fence = poison.install(self.app, context.send_unparseable)
        # Per-event metric children, looked up once (labels() takes a lock and builds a key).
        inputs = [context.topics.name(spec) for event_type in EVENT_TYPES
                  for spec in event_type.inputs]
        self._consumed = {name: self.metrics.consumed.labels(name) for name in inputs}
        # Event age children are made on a topic's first event: a histogram never observed
        # gives only NaN quantiles (a dashboard's p95 of the unused transition topic).
        self._event_age: dict[str, Histogram] = {}
        self._enriched: dict[tuple[str, str], Counter] = {}
        for name in inputs:  # at 0: the first unparseable batch is an increase
            for kind in poison.KINDS:
                self.metrics.unparseable.labels(name, kind)
        self._inputs: dict[str, tuple[EventType, tuple[str, str] | None, str]] = {}
        self.hop: BatchHop | None = None
        self._expired_holds = 0
        self._deliveries: Deliveries = []
        self.wards = WardAggregator(context)
        # RT reports (issue 13) follow the ward aggregator's thresholds file and its reloads.
        self.neighbourhoods = NeighbourhoodAgents(context, lambda: self.wards.thresholds)
        self._wire()

    # -- enrichment ---------------------------------------------------------------------------

    async def enrich_event(self, event: faust.EventT[bytes], event_type: EventType,
                           source: tuple[str, str] | None = None) -> Record | None:
        """A Faust event of a partner topic (the exactly-once path): see `enrich_message`."""
        message = event.message
        return await self.enrich_message(message, message.timestamp, event_type, source)

    async def enrich_message(self, message: Any, timestamp_s: float | None,
                             event_type: EventType, source: tuple[str, str] | None = None,
                             deliveries: Deliveries | None = None) -> Record | None:
        """Decode, validate and place one partner record; never raises.

        `message` is a consumed record (Faust's or aiokafka's: topic, partition, offset, key,
        value, headers). `source` is (field, value) when the topic read is one partner's own:
        the record must name that source (docs/security.md). Returns (partition, key, value)
        of the enriched record to send, or None when the record went to the dead-letter topic.
        """
        enriched = await self._enrich(message, timestamp_s, event_type, source, deliveries)
        return None if enriched is None else enriched[0]

    async def _enrich(self, message: Any, timestamp_s: float | None, event_type: EventType,
                      source: tuple[str, str] | None, deliveries: Deliveries | None,
                      ) -> tuple[Record, int] | None:
        """`enrich_message`, with the event time the ward will fold it at (its occurred_at,
        capped by its ingestion: `processors.state.apply`), for the hop's event-time order."""
        self._consumed[message.topic].inc()
        now = datetime.now(UTC)
        try:
            enriched, value = enrich_record(
                message.value, message.topic, event_type.schema, event_type.enriched_schema,
                event_type.enricher, self.references.data(), self.rules, now, source)
        except Rejection as error:  # CodecError included: stage DECODE
            await self.context.send_message_letter(message, timestamp_s, error.stage,
                                                   error.reason, error, deliveries)
            return None
        except Exception as error:
            log.exception("enrichment failed on %s@%d", message.topic, message.offset)
            await self.context.send_message_letter(message, timestamp_s, "PROCESS",
                                                   "processing_error", error, deliveries)
            return None
        ward_code: str = enriched["ward_code"]
        resolution = (message.topic, enriched["ward_resolution"])
        enriched_counter = self._enriched.get(resolution)
        if enriched_counter is None:  # bounded: input topics x resolutions
            enriched_counter = self._enriched[resolution] = self.metrics.enriched.labels(
                *resolution)
        enriched_counter.inc()
        for reason in data_quality(enriched):
            self.metrics.corrected.labels(message.topic, reason).inc()
        occurred: datetime = enriched["event"]["occurred_at"]
        age = self._event_age.get(message.topic)
        if age is None:
            age = self._event_age[message.topic] = self.metrics.event_age.labels(message.topic)
        age.observe(max(0.0, (now - occurred).total_seconds()))
        clock = to_ms(min(occurred, now))
        return (self.context.ward_partition(ward_code), ward_code.encode(), value), clock

    async def enrich_batch(self, records: Sequence[Any]) -> list[tuple[int, Any] | None]:
        """The batch hop's `prepare`: every record of a `getmany` enriched (or dead-lettered),
        with its event time; the hop orders them across partitions before `send_enriched`."""
        await self.context.backlog.room()
        prepared: list[tuple[int, Any] | None] = []
        for message in records:
            event_type, source, enriched_topic = self._inputs[message.topic]
            timestamp_s = None if message.timestamp is None else message.timestamp / 1000
            enriched = await self._enrich(message, timestamp_s, event_type, source,
                                          self._deliveries)
            prepared.append(None if enriched is None
                            else (enriched[1], (enriched_topic, enriched[0])))
        return prepared

    async def send_enriched(self, items: Sequence[tuple[int, tuple[str, Record]]]) -> None:
        """The batch hop's `emit`: enriched records in the order given, one record batch per
        enriched topic and partition, each carrying its mark of the hop's low watermark."""
        outputs: dict[str, list[Record]] = defaultdict(list)
        marks: dict[str, list[list[tuple[str, bytes]]]] = defaultdict(list)
        hop = self.settings.worker_id
        for mark, (topic, record) in items:
            outputs[topic].append(record)
            marks[topic].append([(MARK_HEADER, encode_mark(hop, mark))])
        if self.hop is not None:
            self.metrics.hop_watermark_lag.set(self._mark_lag(self.hop.low_watermark))
        for topic, batch in outputs.items():
            self.context.backlog.sending(topic, batch)
            await self.context.send_batch(topic, batch, self._deliveries, marks[topic])

    def _mark_lag(self, mark: int) -> float:
        """Event-time seconds between the newest event the hop released and its low watermark
        (0 when it holds nothing back)."""
        hop = self.hop
        if hop is None:
            return 0.0
        expired = hop.merge.expired_holds - self._expired_holds
        if expired:
            self._expired_holds = hop.merge.expired_holds
            self.metrics.hop_hold_expired.inc(expired)
        if mark < 0 or hop.newest < 0:
            return 0.0
        return max(0.0, (hop.newest - mark) / 1000)

    def _wire_batch_hop(self) -> None:
        """Partner topics through the batch hop (streams/runtime/batch_hop.py)."""
        topics = self.context.topics
        for event_type in EVENT_TYPES:
            for spec in event_type.inputs:
                self._inputs[topics.name(spec)] = (
                    event_type, event_type.binding(spec), topics.name(event_type.enriched))
        self.fence.hop_topics = frozenset(self._inputs)

        async def flush() -> None:
            """Every record the batches since the last checkpoint sent is acknowledged."""
            await self.app.producer.flush()
            deliveries, self._deliveries = self._deliveries, []
            for sent in deliveries:  # done after the flush: a failed one raises here
                try:
                    await sent
                except Exception as error:
                    raise DeliveryFailedError(f"a record was not delivered: {error!r}") from error

        self.hop = BatchHop(
            bootstrap=self.settings.bootstrap, app_id=self.settings.app_id,
            topics=sorted(self._inputs), prepare=self.enrich_batch, emit=self.send_enriched,
            flush=flush,
            settle=self.fence.settle, security=aiokafka_security(),
            ready=self.references.wait_ready, client_id=f"{self.settings.app_id}-enrich",
            session_timeout_s=self.settings.session_timeout_s,
            loop=self.app.loop, beacon=self.app.beacon)
        hop = self.hop

        async def start_hop() -> None:  # after Faust's table recovery; stops with the app
            await self.app.add_runtime_dependency(hop)

        self.app.task(start_hop)

    def _enrich_agent(self, event_type: EventType, spec: TopicSpec) -> None:
        """One agent per input topic: a source topic's agent knows the source it binds."""
        enriched_topic = self.context.topics.name(event_type.enriched)
        source = event_type.binding(spec)

        async def agent(stream: faust.StreamT[bytes]) -> None:
            await self.references.wait_ready()
            # Batches of what has arrived (at most ENRICH_BATCH, waiting at most
            # ENRICH_WITHIN_S): Faust acks a batch's events only after this body handled it.
            batches = cast(faust.Stream[bytes], stream).take_events(
                ENRICH_BATCH, within=ENRICH_WITHIN_S)
            async for events in batches:
                records = []
                for event in events:
                    record = await self.enrich_event(event, event_type, source)
                    if record is not None:
                        records.append(record)
                await self.context.send_batch(enriched_topic, records)

        # city.incidents.v1 -> enrich_incidents, city.incidents.police.v1 -> enrich_incidents_police
        agent.__name__ = "enrich_" + "_".join(spec.name.split(".")[1:-1])
        agent.__qualname__ = agent.__name__
        self.app.agent(self.context.raw_topic(spec),
                       name=f"cityops.{agent.__name__}")(agent)

    def _wire(self) -> None:
        if self.settings.processing_guarantee == "exactly_once":
            # Faust's transactions cover only its own streams: enrichment stays on its agents.
            for event_type in EVENT_TYPES:
                for spec in event_type.inputs:
                    self._enrich_agent(event_type, spec)
        else:
            self._wire_batch_hop()
        self.wards.wire()
        self.neighbourhoods.wire()
        self.app.task(self.references.follow)
        self.app.timer(5.0)(self.wards.reload_thresholds)
        register_operators(register_web(self.context))
        register_neighbourhood_web(self.context)
        register_history_web(self.context, rules=lambda: self.wards.thresholds.sla)

        async def _start_metrics() -> None:
            start_http_server(self.settings.metrics_port, addr=self.settings.metrics_host,
                              registry=self.metrics.registry)
            log.info("metrics on http://%s:%d/metrics", self.settings.metrics_host,
                     self.settings.metrics_port)

        self.app.task(_start_metrics)


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
    taskdump.install(pipeline.app.loop)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        if pipeline.wards.liveness.fired:  # stopped itself: the supervisor must restart it
            raise SystemExit(EXIT_STALLED) from None
        raise
    finally:
        log.info("worker ran %.1fs", time.monotonic() - started)

