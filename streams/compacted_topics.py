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
    finally:
        await consumer.stop()
