"""The benchmark's input: SYNTHETIC partner events from cityops.simulator, encoded once.

Events come from :class:`cityops.simulator.CitySimulator`, the same generator as
`cityops simulate`, so the mix of incident, lighting and waste events (and their lifecycles,
faults and collections) is the simulator's. Two settings differ from its defaults, on purpose:

- the feed is spread over the last `span` of event time (5 days by default), because the
  pipeline rejects events older than 7 days or in the future, and keeping every ward's 2-hour
  dedupe horizon realistic for a city (a few events per second) rather than packing a million
  events into minutes;
- incidents_per_hour is raised so incidents are about 9 % of events: with the simulator's
  default (6 per hour) a million events would hold almost no incident, and incidents are the
  events that change situations.

Records are encoded with schemas.codec (what a partner's producer would send) and keyed like
cityops.producer does, so they land on the partitions a partner's events would.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from cityops.assets import generate_asset_registry
from cityops.simulator import CitySimulator, PointSampler, SimEvent
from core.reference_data import load_ward_records
from core.vocabulary import ASSET_REGISTRY_SEED
from schemas.codec import encode
from topics import catalog
from topics.catalog import by_schema

SEED = 20251123
DEFAULT_SPAN = timedelta(days=5)
#: incidents per hour per (event per second): 90 gives ~9 % incident events (SYNTHETIC choice).
INCIDENTS_PER_HOUR_PER_RATE = 90.0
SCHEMA_TOPIC = {
    "org.cityops.IncidentEvent": catalog.INCIDENTS,
    "org.cityops.LightingEvent": catalog.LIGHTING,
    "org.cityops.WasteEvent": catalog.WASTE,
}
KINDS = ("org.cityops.IncidentEvent", "org.cityops.LightingEvent", "org.cityops.WasteEvent")


@dataclass(frozen=True, slots=True)
class Encoded:
    """One record ready to send: index into KINDS, key, value, event id, event time (ms)."""

    kind: int
    key: bytes
    value: bytes
    event_id: str
    at_ms: int


@dataclass
class FeedStats:
    by_kind: Counter[str] = field(default_factory=Counter)
    first: datetime | None = None
    last: datetime | None = None
    bytes: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.total,
            "by_type": {k.rpartition(".")[2]: v for k, v in sorted(self.by_kind.items())},
            "incident_share": round(self.by_kind["org.cityops.IncidentEvent"]
                                    / max(1, self.total), 4),
            "mean_value_bytes": round(self.bytes / max(1, self.total), 1),
            "event_time_first": self.first.isoformat() if self.first else None,
            "event_time_last": self.last.isoformat() if self.last else None,
        }


class Feed:
    """Wards, the asset registry and a point sampler, loaded once for every simulator run."""

    def __init__(self) -> None:
        self.wards = load_ward_records()
        self.assets = generate_asset_registry(self.wards, seed=ASSET_REGISTRY_SEED)
        self.points = PointSampler(self.wards)

    def simulator(self, start: datetime, rate_per_s: float, seed: int = SEED) -> CitySimulator:
        return CitySimulator(
            self.wards, self.assets, seed, start, rate_per_s,
            incidents_per_hour=INCIDENTS_PER_HOUR_PER_RATE * rate_per_s, points=self.points,
        )

    def events(self, count: int, end: datetime, span: timedelta = DEFAULT_SPAN,
               seed: int = SEED) -> Iterator[SimEvent]:
        """`count` events spread over the `span` before `end` (all in the past)."""
        rate = count / span.total_seconds()
        sim = self.simulator(end - span, rate, seed)
        for event in itertools.islice(sim.events(), count):
            if event.at >= end:  # the Poisson clock ran past the span: pin to the end
                record = dict(event.record)
                record["occurred_at"] = end - timedelta(milliseconds=1)
                event = SimEvent(event.schema, record, end - timedelta(milliseconds=1))
            yield event


def encode_event(event: SimEvent) -> Encoded:
    record = event.record
    key = str(record[str(by_schema(event.schema).key_field)]).encode()
    at = record["occurred_at"]
    return Encoded(KINDS.index(event.schema), key, encode(event.schema, record),
                   record["event_id"], int(at.timestamp() * 1000))


def encode_all(events: Iterator[SimEvent], stats: FeedStats,
               keep: list[SimEvent] | None = None) -> Iterator[Encoded]:
    for event in events:
        encoded = encode_event(event)
        stats.by_kind[event.schema] += 1
        stats.bytes += len(encoded.value)
        stats.first = stats.first or event.at
        stats.last = event.at
        if keep is not None:
            keep.append(event)
        yield encoded


class BatchSender:
    """Sends pre-encoded records with aiokafka's batch API, keyed partitioning as Java's
    default partitioner (murmur2), acks=all, so preloading 1M events takes seconds."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.partitioner = DefaultPartitioner()
        self._partition_of: dict[tuple[int, bytes], int] = {}

    async def send_all(self, records: Iterator[Encoded], batch_bytes: int = 1 << 20) -> int:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                    max_batch_size=batch_bytes, linger_ms=50,
                                    client_id="cityops-bench-preload")
        await producer.start()
        sent = 0
        try:
            partitions = {
                index: sorted(producer._metadata.partitions_for_topic(topic) or [])
                for index, topic in enumerate(self.topics)
            }
            for index, topic in enumerate(self.topics):
                if not partitions[index]:
                    await producer.client.force_metadata_update()
                    partitions[index] = sorted(
                        producer._metadata.partitions_for_topic(topic) or [])
            builders: dict[tuple[int, int], Any] = {}
            pending: list[asyncio.Future[Any]] = []
            for record in records:
                where = self._partition_of.get((record.kind, record.key))
                if where is None:
                    parts = partitions[record.kind]
                    where = self.partitioner(record.key, parts, parts)
                    self._partition_of[(record.kind, record.key)] = where
                slot = (record.kind, where)
                builder = builders.get(slot)
                if builder is None:
                    builder = builders[slot] = producer.create_batch()
                if builder.append(key=record.key, value=record.value, timestamp=None) is None:
                    pending.append(await producer.send_batch(
                        builder, self.topics[record.kind], partition=where))
                    builder = builders[slot] = producer.create_batch()
                    builder.append(key=record.key, value=record.value, timestamp=None)
                sent += 1
                if len(pending) > 64:
                    await asyncio.gather(*pending)
                    pending.clear()
            for (kind, where), builder in builders.items():
                if builder.record_count():
                    pending.append(await producer.send_batch(
                        builder, self.topics[kind], partition=where))
            await asyncio.gather(*pending)
        finally:
            await producer.stop()
        return sent


def utc_now_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)
