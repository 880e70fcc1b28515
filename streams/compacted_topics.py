"""Every worker's full, live copy of a compacted topic (wards, assets, situations).

This plays the role of a Faust GlobalTable: each worker reads all partitions from the start,
keeps the latest value per key and follows changes live. It is a plain aiokafka reader rather
than `app.GlobalTable` for three reasons measured or read here: a GlobalTable whose changelog is
our own reference topic hung the group assignment on Kafka 4.1.1 (Faust maps changelog topics to
tables by their `<app>-<table>-changelog` name); Faust's own source warns that a GlobalTable with
several workers can loop in recovery; and enrichment must know when the reference data has been
read to the end before it judges an event's ward, which `ready` gives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from core.connection import aiokafka_security

log = logging.getLogger(__name__)

Decoder = Callable[[bytes], dict[str, Any]]
OnChange = Callable[[str, dict[str, Any] | None], None]


class CompactedTopicView:
    """Latest decoded value per key of one compacted topic, readable without awaiting."""

    def __init__(
        self,
        topic: str,
        decode: Decoder,
        on_reject: Callable[[Exception], None] | None = None,
        on_change: OnChange | None = None,
    ) -> None:
        self.topic = topic
        self.values: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.ready = asyncio.Event()
        self._decode = decode
        self._on_reject = on_reject
        self._on_change = on_change
        #: Callers of `caught_up` not yet released by the `follow` loop.
        self._waiting: list[asyncio.Future[None]] = []

    async def caught_up(self) -> None:
        """Return once every record written to the topic before this call was applied.

        `ready` only covers the end offsets seen when the worker started; after a rebalance a
        worker that takes over a ward must also see what the previous owner published since,
        or it would continue that ward's sequence from an older number. Needs `follow` running.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        await future

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one record: a tombstone deletes, anything undecodable is reported and skipped."""
        if key is None:
            if self._on_reject is not None:
                self._on_reject(ValueError(f"{self.topic}: record without key"))
            return
        name = key.decode("utf-8", errors="replace")
        if value is None:
            self.values.pop(name, None)
            self.version += 1
            if self._on_change is not None:
                self._on_change(name, None)
            return
        try:
            record = self._decode(value)
        except Exception as error:
            log.warning("%s: unusable record for key %s: %s", self.topic, name, error)
            if self._on_reject is not None:
                self._on_reject(error)
            return
        self.values[name] = record
        self.version += 1
        if self._on_change is not None:
            self._on_change(name, record)


async def _reached(consumer: AIOKafkaConsumer,
                   target: tuple[dict[TopicPartition, int], list[asyncio.Future[None]]]) -> bool:
    """Release the waiters of `target` once every partition is read up to its end offset."""
    ends, waiting = target
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    for future in waiting:
        if not future.done():
            future.set_result(None)
    return True


async def follow(bootstrap: str, views: list[CompactedTopicView], client_id: str,
                 **security: Any) -> None:
    """Read every view's topic from the beginning and keep following it; never returns."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", client_id=client_id, isolation_level="read_committed",
        **{**aiokafka_security(), **security},
    )
    await consumer.start()
    try:
        by_topic = {view.topic: view for view in views}
        partitions: list[TopicPartition] = []
        for topic in by_topic:
            # aiokafka's public partitions_for_topic only knows subscribed topics; a manual
            # assignment needs the cluster metadata fetched explicitly.
            found = (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic)
            while not found:
                log.warning("waiting for topic %s to exist", topic)
                await asyncio.sleep(1.0)
                found = (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic)
            partitions.extend(TopicPartition(topic, p) for p in sorted(found))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end_offsets: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        pending = {tp for tp, end in end_offsets.items() if end > 0}
        #: (end offsets when asked, the callers of `caught_up` waiting for them)
        targets: list[tuple[dict[TopicPartition, int], list[asyncio.Future[None]]]] = []
        for view in views:
            if not any(tp.topic == view.topic for tp in pending):
                view.ready.set()
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                view = by_topic[tp.topic]
                for record in records:
                    view.apply(record.key, record.value)
                if tp in pending and records and records[-1].offset + 1 >= end_offsets[tp]:
                    pending.discard(tp)
                    if not any(p.topic == tp.topic for p in pending):
                        view.ready.set()
            if pending:
                for tp in list(pending):
                    if await consumer.position(tp) >= end_offsets[tp]:
                        pending.discard(tp)
                        if not any(p.topic == tp.topic for p in pending):
                            by_topic[tp.topic].ready.set()
            for view in views:
                if view._waiting:
                    waiting, view._waiting = view._waiting, []
                    mine = [tp for tp in partitions if tp.topic == view.topic]
                    targets.append((await consumer.end_offsets(mine), waiting))
            targets = [target for target in targets if not await _reached(consumer, target)]
    finally:
        await consumer.stop()
