"""Latency at a fixed offered load: from a partner's send to the situation that reflects it.

The sender paces SYNTHETIC simulator events at the offered rate, each stamped with its planned
send time as event time; a reader thread follows the situations topic from its end. A
ward situation names the event that caused it (`caused_by_event_id`), so each situation read
gives one latency: the moment the reader received it minus the moment that event was handed to the
producer. Only events that change what an operator sees produce a situation, so the sample is
those events (incidents, lamp faults, filling containers): exactly the ones a command center
waits for. All clocks are this machine's, so no skew enters the figure.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from kafka import KafkaConsumer, TopicPartition

from bench.feed import KINDS, Encoded, Feed, encode_event
from schemas.codec import decode

SITUATION = "org.cityops.SituationEvent"
WARMUP_S = 2.0


@dataclass
class LatencyResult:
    offered_per_s: int
    seconds: float
    sent: int
    achieved_per_s: float
    situations: int
    samples: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    tail_s: float
    """From the last send to the last situation received: near 0 when the pipeline kept up,
    the backlog it had to work off when it did not."""

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


class SituationReader(threading.Thread):
    """Reads the situations topic from its current end; records (receive time, caused_by)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True, name="situation-reader")
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      fetch_max_wait_ms=100, client_id="cityops-bench-latency")
        partitions = [TopicPartition(topic, p)
                      for p in sorted(self.consumer.partitions_for_topic(topic) or [])]
        self.consumer.assign(partitions)
        self.consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the position now, before anything is sent
            self.consumer.position(tp)
        self.seen: list[tuple[float, str]] = []
        self.count = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for batch in self.consumer.poll(timeout_ms=100).values():
                    received = time.time()
                    for record in batch:
                        self.count += 1
                        situation = decode(record.value, expected=SITUATION).record
                        cause = situation.get("caused_by_event_id")
                        if cause:
                            self.seen.append((received, cause))
        finally:
            self.consumer.close()


def prepare(feed: Feed, rate: int, seconds: float, lead_s: float,
            seed: int) -> tuple[float, list[Encoded]]:
    """Events for one load level, with event times at their planned send times from a
    start `lead_s` in the future (so no event is stamped after it is sent)."""
    start = datetime.now(UTC) + timedelta(seconds=lead_s)
    start = start.replace(microsecond=start.microsecond - start.microsecond % 1000)
    sim = feed.simulator(start, float(rate), seed)
    events = []
    end = start + timedelta(seconds=seconds)
    for event in sim.events():
        if event.at >= end:
            break
        events.append(encode_event(event))
    return start.timestamp(), events


async def _paced_send(bootstrap: str, topics: Sequence[str], events: Sequence[Encoded],
                      sent_at: dict[str, float]) -> float:
    """Send each event at its planned time (its event time), in 5 ms ticks: every tick the
    events due are appended to one batch per partition (aiokafka's batch API, so the bench's
    own CPU stays small next to the worker's) and handed to the producer; an event's send time
    is the moment its batch was handed over. Returns when the last batch was acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0,
                                client_id="cityops-bench-latency")
    partitioner = DefaultPartitioner()
    await producer.start()
    try:
        partitions = [sorted(producer._metadata.partitions_for_topic(t) or [])
                      for t in topics]
        if not all(partitions):
            await producer.client.force_metadata_update()
            partitions = [sorted(producer._metadata.partitions_for_topic(t) or [])
                          for t in topics]
        partition_of: dict[tuple[int, bytes], int] = {}
        pending: list[asyncio.Future[Any]] = []
        index = 0
        while index < len(events):
            now = time.time()
            due = events[index].at_ms / 1000.0
            if due > now:
                await asyncio.sleep(min(0.005, due - now))
                continue
            builders: dict[tuple[int, int], Any] = {}
            ids: list[str] = []
            while index < len(events) and events[index].at_ms / 1000.0 <= now:
                event = events[index]
                where = partition_of.get((event.kind, event.key))
                if where is None:
                    parts = partitions[event.kind]
                    where = partition_of[(event.kind, event.key)] = partitioner(
                        event.key, parts, parts)
                builder = builders.get((event.kind, where))
                if builder is None:
                    builder = builders[(event.kind, where)] = producer.create_batch()
                if builder.append(key=event.key, value=event.value, timestamp=None) is None:
                    break  # batch full: the rest goes with the next tick
                ids.append(event.event_id)
                index += 1
            handed = time.time()
            for (kind, where), builder in builders.items():
                pending.append(await producer.send_batch(builder, topics[kind],
                                                         partition=where))
            for event_id in ids:
                sent_at[event_id] = handed
            if len(pending) > 256:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return time.time()
    finally:
        await producer.stop()


def run_level(bootstrap: str, topics: Sequence[str], situations_topic: str, feed: Feed,
              rate: int, seconds: float, wait_s: float, seed: int) -> LatencyResult:
    # lead time covers generating and encoding the events (~50k/s) before the first is due
    lead_s = 2.0 + rate * seconds / 40_000
    start, events = prepare(feed, rate, seconds, lead_s=lead_s, seed=seed)
    reader = SituationReader(bootstrap, situations_topic)
    reader.start()
    sent_at: dict[str, float] = {}
    try:
        finished = asyncio.run(_paced_send(bootstrap, topics, events, sent_at))
        # wait until the situations stop coming (the pipeline worked off what it was sent)
        deadline = time.monotonic() + wait_s
        last_count = -1
        while time.monotonic() < deadline:
            time.sleep(1.0)
            if reader.count == last_count:
                break
            last_count = reader.count
    finally:
        reader.stopping.set()
        reader.join(timeout=10)
    latencies = [
        (received - sent_at[cause]) * 1000.0
        for received, cause in reader.seen
        if cause in sent_at and sent_at[cause] >= start + WARMUP_S
    ]
    last = max((received for received, cause in reader.seen if cause in sent_at), default=finished)
    sent = len(events)
    return LatencyResult(
        offered_per_s=rate, seconds=seconds, sent=sent,
        achieved_per_s=sent / (finished - start) if finished > start else 0.0,
        situations=reader.count, samples=len(latencies),
        p50_ms=percentile(latencies, 50), p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99), max_ms=max(latencies) if latencies else None,
        tail_s=max(0.0, last - finished),
    )


__all__ = ["KINDS", "LatencyResult", "percentile", "run_level"]
