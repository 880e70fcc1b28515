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
from datetime import UTC, datetime
from typing import cast

import faust
from prometheus_client import Histogram, start_http_server

from core.rejections import Rejection
from processors.enrich import EnrichmentRules, data_quality
from processors.records import enrich_record
from streams.context import Record, WorkerContext
from streams.neighbourhood_agent import NeighbourhoodAgents
from streams.operator_web import register_operators
from streams.runtime import fast_delivery, offsets, poison
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
        poison.install(self.app, context.send_unparseable)
        # Per-event metric children, looked up once (labels() takes a lock and builds a key).
        inputs = [context.topics.name(spec) for event_type in EVENT_TYPES
                  for spec in event_type.inputs]
        self._consumed = {name: self.metrics.consumed.labels(name) for name in inputs}
        # Event age children are made on a topic's first event: a histogram never observed
        # gives only NaN quantiles (a dashboard's p95 of the unused transition topic).
        self._event_age: dict[str, Histogram] = {}
        for name in inputs:  # at 0: the first unparseable batch is an increase
            for kind in poison.KINDS:
                self.metrics.unparseable.labels(name, kind)
        self.wards = WardAggregator(context)
        # RT reports (issue 13) follow the ward aggregator's thresholds file and its reloads.
        self.neighbourhoods = NeighbourhoodAgents(context, lambda: self.wards.thresholds)
        self._wire()

    # -- enrichment ---------------------------------------------------------------------------

    async def enrich_event(self, event: faust.EventT[bytes], event_type: EventType,
                           source: tuple[str, str] | None = None) -> Record | None:
        """Decode, validate and place one partner event; never raises.

        `source` is (field, value) when the topic read is one partner's own: the record must
        name that source (docs/security.md). Returns (partition, key, value) of the enriched
        record to send, or None when the event went to the dead-letter topic.
        """
        message = event.message
        self._consumed[message.topic].inc()
        now = datetime.now(UTC)
        try:
            enriched, value = enrich_record(
                message.value, message.topic, event_type.schema, event_type.enriched_schema,
                event_type.enricher, self.references.data(), self.rules, now, source)
        except Rejection as error:  # CodecError included: stage DECODE
            await self.context.send_dead_letter(event, error.stage, error.reason, error)
            return None
        except Exception as error:
            log.exception("enrichment failed on %s@%d", message.topic, message.offset)
            await self.context.send_dead_letter(event, "PROCESS", "processing_error", error)
            return None
        ward_code: str = enriched["ward_code"]
        self.metrics.enriched.labels(message.topic, enriched["ward_resolution"]).inc()
        for reason in data_quality(enriched):
            self.metrics.corrected.labels(message.topic, reason).inc()
        occurred: datetime = enriched["event"]["occurred_at"]
        age = self._event_age.get(message.topic)
        if age is None:
            age = self._event_age[message.topic] = self.metrics.event_age.labels(message.topic)
        age.observe(max(0.0, (now - occurred).total_seconds()))
        return self.context.ward_partition(ward_code), ward_code.encode(), value

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
        for event_type in EVENT_TYPES:
            for spec in event_type.inputs:
                self._enrich_agent(event_type, spec)
        self.wards.wire()
        self.neighbourhoods.wire()
        self.app.task(self.references.follow)
        self.app.timer(5.0)(self.wards.reload_thresholds)
        register_operators(register_web(self.context))

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
    try:
        worker.execute_from_commandline()
    finally:
        log.info("worker ran %.1fs", time.monotonic() - started)

