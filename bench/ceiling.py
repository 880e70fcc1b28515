"""The ceiling: a raw aiokafka consume -> produce passthrough of the pipeline's input bytes.

No decoding, no state, no Faust: records are fetched in large batches, appended to one
BatchBuilder per output partition and sent with `send_batch` (the cheapest produce path aiokafka
offers), then offsets are committed once the batches are acknowledged (acks=all, like the
worker), which is the at-least-once contract the pipeline has to keep too. What it reaches is the
best one Python process can move these bytes through the local broker on this machine; the
pipeline is judged as a ratio of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.harness import process_usage


@dataclass
class CeilingResult:
    events: int
    seconds: float
    events_per_s: float
    cpu_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"events": self.events, "seconds": round(self.seconds, 2),
                "events_per_s": round(self.events_per_s), "cpu_s": round(self.cpu_s, 1),
                "cpu_cores_used": round(self.cpu_s / self.seconds, 2) if self.seconds else 0}


async def passthrough(bootstrap: str, sources: Sequence[str], sinks: Sequence[str],
                      expected: int, group: str, timeout_s: float = 1800.0,
                      per_message: bool = False) -> CeilingResult:
    """Copy `expected` records from `sources[i]` to `sinks[i]` (same partition); timed from
    the first record fetched to the last offset commit.

    `per_message` sends each record with `producer.send()` instead of batch builders: what a
    straightforward Python consumer/producer loop costs, for reference next to the ceiling.
    """
    import os

    sink_of = dict(zip(sources, sinks, strict=True))
    consumer = AIOKafkaConsumer(
        *sources, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_wait_ms=100,
        client_id="cityops-bench-ceiling",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=1 << 20, client_id="cityops-bench-ceiling")
    await consumer.start()
    await producer.start()
    moved = 0
    started: float | None = None
    cpu_before = process_usage(os.getpid()).cpu_s
    try:
        pending: list[asyncio.Future[Any]] = []
        offsets: dict[TopicPartition, int] = {}
        last_commit = time.monotonic()
        deadline = time.monotonic() + timeout_s
        while moved < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"passthrough moved {moved} of {expected} records")
            batches = await consumer.getmany(timeout_ms=200, max_records=50_000)
            if started is None and batches:
                started = time.monotonic()
            for tp, records in batches.items():
                sink = sink_of[tp.topic]
                if per_message:
                    for record in records:
                        pending.append(await producer.send(sink, record.value, key=record.key,
                                                           partition=tp.partition))
                    moved += len(records)
                    offsets[tp] = records[-1].offset + 1
                    continue
                builder = producer.create_batch()
                for record in records:
                    if builder.append(key=record.key, value=record.value, timestamp=None) is None:
                        pending.append(await producer.send_batch(builder, sink,
                                                                 partition=tp.partition))
                        builder = producer.create_batch()
                        builder.append(key=record.key, value=record.value, timestamp=None)
                if builder.record_count():
                    pending.append(await producer.send_batch(builder, sink,
                                                             partition=tp.partition))
                moved += len(records)
                offsets[tp] = records[-1].offset + 1
            if moved >= expected or time.monotonic() - last_commit > 1.0:
                await asyncio.gather(*pending)
                pending.clear()
                if offsets:
                    await consumer.commit(dict(offsets))
                last_commit = time.monotonic()
        await asyncio.gather(*pending)
        if offsets:
            await consumer.commit(dict(offsets))
        finished = time.monotonic()
    finally:
        await producer.stop()
        await consumer.stop()
    assert started is not None
    seconds = finished - started
    cpu = process_usage(os.getpid()).cpu_s - cpu_before
    return CeilingResult(moved, seconds, moved / seconds if seconds else 0.0, cpu)
