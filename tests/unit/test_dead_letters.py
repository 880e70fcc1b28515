"""The dead-letter envelope, and the whole per-event path a worker runs on partner bytes.

A worker must turn every input into either an enriched record it can write or a dead letter it
can write: anything else raised inside a Faust agent skips the event. So besides exact envelope
checks, hypothesis drives hostile bytes and hostile-but-encodable records through
decode + enrich + encode and checks that only CodecError / Rejection come out, and that both
outcomes encode below the producer's 1,000,000-byte request limit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityops.assets import generate_asset_registry
from core.reference_data import load_ward_records
from core.rejections import Rejection
from core.vocabulary import ASSET_REGISTRY_SEED
from processors.dead_letters import (
    MAX_MESSAGE_CHARS,
    MAX_ORIGINAL_BYTES,
    MAX_ORIGINAL_HEADERS_BYTES,
    MAX_ORIGINAL_KEY_BYTES,
    SourceRecord,
    dead_letter,
    source_record,
)
from processors.enrich import (
    EnrichmentRules,
    ReferenceData,
    enrich_incident,
    enrich_lighting,
    enrich_waste,
)
from schemas.codec import CodecError, decode, default_catalog, encode

pytestmark = pytest.mark.unit

#: aiokafka's default max_request_size, which Faust keeps: a bigger record raises on send.
PRODUCER_LIMIT = 1_000_000
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _envelope(source: SourceRecord, message: str = "rule broken") -> dict[str, Any]:
    return dead_letter(source, stage="DECODE", reason="undecodable", message=message,
                       error_class="CodecError", worker_id="w-1", now=NOW)


def test_envelope_keeps_the_original_record_exactly() -> None:
    source = source_record("city.waste.v1", 4, 1234, 1_772_413_200.5, b"WC-0001",
                           b"\xc3\x01junk", [("trace-id", b"abc"), ("empty", None)])
    assert _envelope(source) == {
        "original_topic": "city.waste.v1",
        "original_partition": 4,
        "original_offset": 1234,
        "original_timestamp": datetime(2026, 3, 2, 1, 0, 0, 500_000, tzinfo=UTC),
        "original_key": b"WC-0001",
        "original_value": b"\xc3\x01junk",
        "original_headers": [{"key": "trace-id", "value": b"abc"},
                             {"key": "empty", "value": None}],
        "stage": "DECODE",
        "reason": "undecodable",
        "error_message": "rule broken",
        "error_class": "CodecError",
        "worker_id": "w-1",
        "rejected_at": NOW,
    }


def test_tombstone_without_timestamp_or_key() -> None:
    letter = _envelope(source_record("t", 0, 0, None, None, None, None))
    assert (letter["original_timestamp"], letter["original_key"], letter["original_value"],
            letter["original_headers"]) == (None, None, None, [])


def test_huge_value_key_headers_and_message_are_cut_and_said_so() -> None:
    source = source_record("t", 0, 7, None, b"k" * 700_000, b"v" * 1_100_000,
                           # letters: 16 digits in a row would be NIK-shaped (withheld)
                           [("a", b"x" * 40_000), ("b", b"y" * 40_000), ("c", b"3")])
    letter = _envelope(source, message="m" * 5000)
    assert letter["original_value"] == b"v" * MAX_ORIGINAL_BYTES
    assert letter["original_key"] == b"k" * MAX_ORIGINAL_KEY_BYTES
    assert letter["original_headers"] == [{"key": "a", "value": b"x" * 40_000}]
    note = (f" [original value cut from 1100000 to {MAX_ORIGINAL_BYTES} bytes]"
            f" [original key cut from 700000 to {MAX_ORIGINAL_KEY_BYTES} bytes]"
            f" [2 original header(s) dropped above {MAX_ORIGINAL_HEADERS_BYTES} bytes]")
    assert letter["error_message"] == "m" * (MAX_MESSAGE_CHARS - len(note)) + note
    payload = encode("org.cityops.DeadLetter", letter)
    assert len(payload) + MAX_ORIGINAL_KEY_BYTES < PRODUCER_LIMIT  # the key travels twice


def test_limits_are_inclusive() -> None:
    headers = [("h", b"x" * (MAX_ORIGINAL_HEADERS_BYTES - 1))]
    source = source_record("t", 0, 7, None, b"k" * MAX_ORIGINAL_KEY_BYTES,
                           b"v" * MAX_ORIGINAL_BYTES, headers)
    letter = _envelope(source)
    assert (len(letter["original_key"]), len(letter["original_value"]),
            len(letter["original_headers"]), letter["error_message"]) == (
        MAX_ORIGINAL_KEY_BYTES, MAX_ORIGINAL_BYTES, 1, "rule broken")


# --------------------------------------------------------------------------- decode + enrich


@lru_cache(maxsize=1)
def _reference() -> ReferenceData:
    """Built once: indexing the ward polygons takes a moment."""
    wards = load_ward_records()
    return ReferenceData.build(wards, generate_asset_registry(wards, seed=ASSET_REGISTRY_SEED))


ENRICHERS = {
    "org.cityops.IncidentEvent": ("org.cityops.EnrichedIncidentEvent", enrich_incident),
    "org.cityops.LightingEvent": ("org.cityops.EnrichedLightingEvent", enrich_lighting),
    "org.cityops.WasteEvent": ("org.cityops.EnrichedWasteEvent", enrich_waste),
}


def run_event(payload: bytes, expected: str) -> tuple[str, str]:
    """What a worker does with one input record; returns (outcome, reason)."""
    out_schema, enricher = ENRICHERS[expected]
    reason: str
    try:
        record = decode(payload, expected=expected).record
        enriched = enricher(record, _reference(), EnrichmentRules(), NOW)
        value = encode(out_schema, enriched)
    except CodecError as error:
        outcome, reason = "dead", error.reason
    except Rejection as error:
        outcome, reason = "dead", error.reason
    else:
        assert len(value) + len(enriched["ward_code"]) < PRODUCER_LIMIT
        return "enriched", enriched["ward_resolution"]
    letter = _envelope(source_record("t", 0, 0, None, b"key", payload, []))
    assert len(encode("org.cityops.DeadLetter", letter)) < PRODUCER_LIMIT
    return outcome, reason


def _symbols(name: str, field: str) -> list[str]:
    schema: dict[str, Any] = default_catalog().current(name).writer_schema
    field_type = next(f["type"] for f in schema["fields"] if f["name"] == field)
    symbols: list[str] = field_type["symbols"]
    return symbols


def _assets(kind: str) -> list[str]:
    return sorted(a for a, v in _reference().assets.items() if v["asset_kind"] == kind)[:50]


WARD_CODES = sorted(w["kelurahan_code"] for w in load_ward_records())
TIMES = st.integers(min_value=-(10**10), max_value=10**10).map(
    lambda ms: NOW + timedelta(milliseconds=ms))
HUGE = st.integers(min_value=0, max_value=400_000).map(lambda n: "x" * n)
TEXT = st.text(max_size=30) | HUGE
OPTIONAL_TEXT = st.none() | TEXT
DOUBLE = st.none() | st.floats() | st.sampled_from([-6.0, 106.05, -6.02, 0.5, 1.0])
WARD = st.none() | st.sampled_from(WARD_CODES) | TEXT
INCIDENT_FIELDS = {
    "event_id": st.uuids().map(str), "occurred_at": TIMES, "incident_id": TEXT,
    "source_system": st.sampled_from(_symbols("org.cityops.IncidentEvent", "source_system")),
    "category": st.sampled_from(_symbols("org.cityops.IncidentEvent", "category")),
    "severity": st.sampled_from(_symbols("org.cityops.IncidentEvent", "severity")),
    "status": st.sampled_from(_symbols("org.cityops.IncidentEvent", "status")),
    "ward_code": WARD, "latitude": DOUBLE, "longitude": DOUBLE, "rw": OPTIONAL_TEXT,
    "rt": OPTIONAL_TEXT, "description": TEXT,
}
LIGHTING_FIELDS = {
    "event_id": st.uuids().map(str), "occurred_at": TIMES,
    "lamp_id": st.sampled_from(_assets("LAMP")) | TEXT, "cabinet_id": OPTIONAL_TEXT,
    "report_kind": st.sampled_from(_symbols("org.cityops.LightingEvent", "report_kind")),
    "lamp_status": st.sampled_from(_symbols("org.cityops.LightingEvent", "lamp_status")),
    "power_state": st.sampled_from(_symbols("org.cityops.LightingEvent", "power_state")),
    "dimming_level": DOUBLE, "energy_kwh": DOUBLE, "ward_code": WARD, "latitude": DOUBLE,
    "longitude": DOUBLE,
}
WASTE_FIELDS = {
    "event_id": st.uuids().map(str), "occurred_at": TIMES,
    "container_id": st.sampled_from(_assets("WASTE_CONTAINER") + _assets("TPS")) | TEXT,
    "site_kind": st.sampled_from(_symbols("org.cityops.WasteEvent", "site_kind")),
    "report_kind": st.sampled_from(_symbols("org.cityops.WasteEvent", "report_kind")),
    "filling_level": DOUBLE, "temperature_celsius": DOUBLE, "collected_weight_kg": DOUBLE,
    "ward_code": WARD, "latitude": DOUBLE, "longitude": DOUBLE,
}
RECORDS = st.one_of(
    st.tuples(st.just("org.cityops.IncidentEvent"), st.fixed_dictionaries(INCIDENT_FIELDS)),
    st.tuples(st.just("org.cityops.LightingEvent"), st.fixed_dictionaries(LIGHTING_FIELDS)),
    st.tuples(st.just("org.cityops.WasteEvent"), st.fixed_dictionaries(WASTE_FIELDS)),
)


@FUZZ
@given(RECORDS)
def test_any_encodable_record_is_enriched_or_dead_lettered(pair: tuple[str, dict[str, Any]]
                                                           ) -> None:
    name, record = pair
    try:
        payload = encode(name, record)
    except CodecError:
        return  # a partner's producer refuses it before sending
    outcome, _ = run_event(payload, name)
    assert outcome in ("enriched", "dead")


@FUZZ
@given(st.sampled_from(sorted(ENRICHERS)), st.binary(max_size=400),
       st.integers(min_value=0, max_value=3))
def test_hostile_bytes_after_a_real_header_are_dead_lettered(name: str, body: bytes,
                                                            cut: int) -> None:
    header = default_catalog().current(name).header
    assert run_event(header[: len(header) - cut] + body, name)[0] == "dead"


@pytest.mark.parametrize(("name", "changes", "reason"), [
    ("org.cityops.IncidentEvent", {"incident_id": "I" * 65}, "oversized"),
    ("org.cityops.IncidentEvent", {"rt": "9" * 65}, "oversized"),
    ("org.cityops.IncidentEvent", {"rw": "9" * 65}, "oversized"),
    ("org.cityops.LightingEvent", {"cabinet_id": "C" * 65}, "oversized"),
    ("org.cityops.IncidentEvent", {"incident_id": "I" * 64}, "WARD_CODE"),
    # 64 characters pass the length rule; an invented cabinet then fails the registry rule
    ("org.cityops.LightingEvent", {"cabinet_id": "C" * 64}, "unknown_asset"),
])
def test_identifiers_longer_than_64_characters_are_rejected(
    name: str, changes: dict[str, Any], reason: str
) -> None:
    base: dict[str, dict[str, Any]] = {
        "org.cityops.IncidentEvent": {
            "event_id": "5f0c1c52-0c4f-4a43-9d0b-8f1a7e3f0a01", "occurred_at": NOW,
            "incident_id": "INC-1", "source_system": "POLICE", "category": "FIRE",
            "severity": "SEVERE", "status": "REPORTED", "ward_code": WARD_CODES[0],
            "latitude": None, "longitude": None, "rw": "001", "rt": "002", "description": "",
        },
        "org.cityops.LightingEvent": {
            "event_id": "5f0c1c52-0c4f-4a43-9d0b-8f1a7e3f0a02", "occurred_at": NOW,
            "lamp_id": _assets("LAMP")[0], "cabinet_id": None, "report_kind": "FAULT",
            "lamp_status": "NO_POWER", "power_state": "OFF", "dimming_level": None,
            "energy_kwh": None, "ward_code": None, "latitude": None, "longitude": None,
        },
    }
    outcome = run_event(encode(name, {**base[name], **changes}), name)
    dead = reason in ("oversized", "unknown_asset")
    assert outcome == (("dead", reason) if dead else ("enriched", reason))
