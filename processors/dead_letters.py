"""Builds the dead-letter envelope for a record the pipeline cannot use.

The envelope keeps the original key, bytes, headers and timestamp unchanged (like Kafka
Connect's `__connect.errors.*` headers and Kafka Streams' KIP-1034), so a partner can see
exactly what they sent and an operator can replay it after a fix.

One exception: a record rejected because it carries personal data (`WITHHELD_REASONS`, e.g. an
RT report whose note holds a NIK) keeps its key, partition and offset but not its value or
headers, and the message says so: copying the bytes would put the NIK on a topic kept 30 days
and read by partners. The partner still has what it sent; the offset says which record it was.
And whatever the reason, a key or header in which the personal-data screen
(`processors.personal_data.contains_nik`, bytes read as UTF-8) finds a NIK-shaped run is
withheld (a header: with the value) the same way (issue 23): a record rejected for a broken
count must not carry a NIK in a field the RT screen does not read. The value itself is not
scanned (Avro binary and coordinates look like digit runs): an incident rejected for another
reason keeps a description as sent (a known limit, docs/smart-village.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processors.personal_data import contains_nik, redact_nik

MAX_MESSAGE_CHARS = 1000
#: Original bytes kept in the envelope; above this they are cut (and the message says so) so the
#: envelope itself stays under the broker's 1 MiB record limit.
MAX_ORIGINAL_BYTES = 512 * 1024
#: The same for the original key (kept twice: in the envelope and as the dead letter's own key)
#: and for all original headers together. A partner can send a 900 kB key or headers; uncut, the
#: envelope went over the producer's 1 MB request limit, the send raised inside the agent and
#: Faust skipped the record: found by tests/e2e/test_hostile_input.py.
MAX_ORIGINAL_KEY_BYTES = 16 * 1024
MAX_ORIGINAL_HEADERS_BYTES = 64 * 1024
#: Reasons whose original value and headers are never copied into the envelope.
WITHHELD_REASONS = frozenset({"personal_data"})


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


def ward_source(topic: str, partition: int, ward_code: str) -> SourceRecord:
    """The source named by a dead letter that no single record caused: a scope (kelurahan,
    kecamatan, city) whose situation could not be evaluated or encoded for `topic`, the
    situations topic. Offset -1, no value; the key is the scope code, as its situations'."""
    return SourceRecord(topic=topic, partition=partition, offset=-1, timestamp_ms=None,
                        key=ward_code.encode(), value=None)


def dead_letter(source: SourceRecord, *, stage: str, reason: str, message: str,
                error_class: str, worker_id: str, now: datetime) -> dict[str, Any]:
    """An `org.cityops.DeadLetter` dict; the message, value, key and headers are capped so a
    hostile record cannot make an envelope too large to write (key + 2 x key cap + value cap +
    headers cap stay far below the 1 MB producer limit)."""
    value, key = source.value, source.key
    note = ""
    original_headers = source.headers
    # the value is not read here: Avro binary (doubles, varints) and coordinates look like
    # digit runs; every typed field of an RT report is screened before any other rule
    carried = any(contains_nik(name) or contains_nik(data) for name, data in original_headers)
    if reason in WITHHELD_REASONS or carried:
        note += " [original value and headers withheld: they carry personal data]"
        value, original_headers = None, ()
    if contains_nik(key):
        note += " [original key withheld: it carries personal data]"
        key = None
    if value is not None and len(value) > MAX_ORIGINAL_BYTES:
        note += f" [original value cut from {len(value)} to {MAX_ORIGINAL_BYTES} bytes]"
        value = value[:MAX_ORIGINAL_BYTES]
    if key is not None and len(key) > MAX_ORIGINAL_KEY_BYTES:
        note += f" [original key cut from {len(key)} to {MAX_ORIGINAL_KEY_BYTES} bytes]"
        key = key[:MAX_ORIGINAL_KEY_BYTES]
    headers: list[dict[str, Any]] = []
    header_bytes = 0
    for name, data in original_headers:
        size = len(name.encode()) + len(data or b"")
        if header_bytes + size > MAX_ORIGINAL_HEADERS_BYTES:
            note += (f" [{len(original_headers) - len(headers)} original header(s) dropped "
                     f"above {MAX_ORIGINAL_HEADERS_BYTES} bytes]")
            break
        header_bytes += size
        headers.append({"key": name, "value": data})
    message = redact_nik(message[: MAX_MESSAGE_CHARS - len(note)])[0] + note
    return {
        "original_topic": source.topic,
        "original_partition": source.partition,
        "original_offset": source.offset,
        "original_timestamp": (
            None if source.timestamp_ms is None
            else datetime.fromtimestamp(source.timestamp_ms / 1000, tz=UTC)
        ),
        "original_key": key,
        "original_value": value,
        "original_headers": headers,
        "stage": stage,
        "reason": reason,
        "error_message": message,
        "error_class": error_class,
        "worker_id": worker_id,
        "rejected_at": now,
    }


def letter_for(source: SourceRecord, error: BaseException, *, stage: str, reason: str,
               worker_id: str, now: datetime) -> dict[str, Any]:
    """The dead letter of a record that raised `error`: a `Rejection`'s own message, else the
    exception's text or, when it has none, its class name."""
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return dead_letter(source, stage=stage, reason=reason, message=text,
                       error_class=type(error).__name__, worker_id=worker_id, now=now)
