"""Builds the dead-letter envelope for a record the pipeline cannot use.

The envelope keeps the original key, bytes, headers and timestamp unchanged (like Kafka
Connect's `__connect.errors.*` headers and Kafka Streams' KIP-1034), so a partner can see
exactly what they sent and an operator can replay it after a fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_MESSAGE_CHARS = 1000
#: Original bytes kept in the envelope; above this they are cut (and the message says so) so the
#: envelope itself stays under the broker's 1 MiB record limit.
MAX_ORIGINAL_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """Where a rejected record came from and what it carried."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


def source_record(topic: str, partition: int, offset: int, timestamp_s: float | None,
                  key: bytes | None, value: bytes | None,
                  headers: Iterable[tuple[str, bytes | None]] | None) -> SourceRecord:
    """Normalise a consumer record's fields (Faust gives seconds, the envelope wants ms)."""
    return SourceRecord(
        topic=topic, partition=partition, offset=offset,
        timestamp_ms=None if timestamp_s is None else int(timestamp_s * 1000),
        key=key, value=value, headers=tuple(headers or ()),
    )


def dead_letter(source: SourceRecord, *, stage: str, reason: str, message: str,
                error_class: str, worker_id: str, now: datetime) -> dict[str, Any]:
    """An `org.cityops.DeadLetter` dict; the message is capped so a hostile payload quoted in
    an error cannot blow up the dead-letter topic."""
    value = source.value
    note = ""
    if value is not None and len(value) > MAX_ORIGINAL_BYTES:
        note = f" [original value cut from {len(value)} to {MAX_ORIGINAL_BYTES} bytes]"
        value = value[:MAX_ORIGINAL_BYTES]
    message = message[: MAX_MESSAGE_CHARS - len(note)] + note
    return {
        "original_topic": source.topic,
        "original_partition": source.partition,
        "original_offset": source.offset,
        "original_timestamp": (
            None if source.timestamp_ms is None
            else datetime.fromtimestamp(source.timestamp_ms / 1000, tz=UTC)
        ),
        "original_key": source.key,
        "original_value": value,
        "original_headers": [{"key": name, "value": data} for name, data in source.headers],
        "stage": stage,
        "reason": reason,
        "error_message": message,
        "error_class": error_class,
        "worker_id": worker_id,
        "rejected_at": now,
    }
