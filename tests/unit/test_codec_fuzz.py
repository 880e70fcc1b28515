"""Hostile bytes: ``decode`` returns a record that re-encodes to the same bytes, or CodecError.

Nothing else may escape: a stray IndexError or OverflowError in a Faust agent would skip the
event instead of dead-lettering it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import CodecError, DecodedRecord, decode, default_catalog, encode
from tests.unit.test_codec import EXAMPLES

pytestmark = pytest.mark.unit

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

VALID_PAYLOADS = {name: encode(name, record) for name, record in sorted(EXAMPLES.items())}
HEADERS = sorted(version.header for version in default_catalog().all_versions())


def decode_or_codec_error(data: bytes) -> DecodedRecord | None:
    """Decode; on success the record must re-encode to exactly ``data``."""
    try:
        decoded = decode(data)
    except CodecError:
        return None
    current = default_catalog().current(decoded.full_name)
    if decoded.writer_version == current.version:
        assert encode(decoded.full_name, decoded.record) == data
    else:
        # An archived writer: the record is already in the current shape and must be writable.
        encode(decoded.full_name, decoded.record)
    return decoded


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    decode_or_codec_error(data)


@FUZZ
@given(st.sampled_from(HEADERS), st.binary(max_size=300))
def test_known_header_with_arbitrary_body(header: bytes, body: bytes) -> None:
    decode_or_codec_error(header + body)


Mutation = tuple[str, int, int]

MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append"]),
        st.integers(min_value=0, max_value=10_000),
        st.integers(min_value=0, max_value=255),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, mutations: list[Mutation]) -> bytes:
    buf = bytearray(data)
    for kind, position, value in mutations:
        if position % 8:
            # Seven times in eight, aim past the 10-byte header so the body decoder is exercised.
            index = 10 + position % max(len(buf) - 10, 1)
        else:
            index = position % max(len(buf), 1)
        if kind == "flip" and buf:
            buf[index % len(buf)] ^= 1 << (value % 8)
        elif kind == "set" and buf:
            buf[index % len(buf)] = value
        elif kind == "insert":
            buf.insert(min(index, len(buf)), value)
        elif kind == "delete" and buf:
            del buf[index % len(buf)]
        elif kind == "truncate":
            del buf[min(index, len(buf)) :]
        elif kind == "append":
            buf.extend(bytes([value]) * (1 + position % 5))
    return bytes(buf)


@FUZZ
@given(st.sampled_from(sorted(VALID_PAYLOADS)), MUTATIONS)
def test_mutated_valid_payloads(full_name: str, mutations: list[Mutation]) -> None:
    decode_or_codec_error(mutate(VALID_PAYLOADS[full_name], mutations))


UTC_MILLIS = st.integers(min_value=-(10**12), max_value=4 * 10**12).map(
    lambda ms: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
)
OPTIONAL_TEXT = st.none() | st.text(max_size=20)
OPTIONAL_DOUBLE = st.none() | st.floats(allow_nan=False)


def enum_of(name: str, field: str) -> st.SearchStrategy[str]:
    schema: dict[str, Any] = default_catalog().current(name).writer_schema
    field_type = next(f["type"] for f in schema["fields"] if f["name"] == field)
    return st.sampled_from(field_type["symbols"])


INCIDENTS = st.fixed_dictionaries(
    {
        "event_id": st.uuids().map(str),
        "occurred_at": UTC_MILLIS,
        "incident_id": st.text(max_size=40),
        "source_system": enum_of("IncidentEvent", "source_system"),
        "category": enum_of("IncidentEvent", "category"),
        "severity": enum_of("IncidentEvent", "severity"),
        "status": enum_of("IncidentEvent", "status"),
        "ward_code": OPTIONAL_TEXT,
        "latitude": OPTIONAL_DOUBLE,
        "longitude": OPTIONAL_DOUBLE,
        "rw": OPTIONAL_TEXT,
        "rt": OPTIONAL_TEXT,
        "description": st.text(max_size=200),
    }
)


@FUZZ
@given(INCIDENTS)
def test_generated_incidents_round_trip_exactly(record: dict[str, Any]) -> None:
    payload = encode("IncidentEvent", record)
    assert decode(payload, expected="IncidentEvent").record == record
