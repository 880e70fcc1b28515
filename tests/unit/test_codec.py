"""Single-object Avro codec: wire format checked independently, every rejection reason provoked.

The fingerprint and the IncidentEvent body are recomputed here from the Avro specification
(Parsing Canonical Form, CRC-64-AVRO, zig-zag varints) instead of through fastavro, so a bug
shared by fastavro and the codec would still show. Event records below are SYNTHETIC examples;
the Ward record is the real Cibeber row of cityops/data.
"""

from __future__ import annotations

import json
import pickle
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_writer
from fastavro.schema import parse_schema

from schemas.codec import (
    AVRO_DIR,
    CODEC_REASONS,
    DEFAULT_MAX_BYTES,
    CodecError,
    DecodedRecord,
    SchemaCatalog,
    SchemaCatalogError,
    SingleObjectCodec,
    UnknownSchemaError,
    decode,
    default_catalog,
    encode,
    validate,
)

pytestmark = pytest.mark.unit

HISTORY_DIR = AVRO_DIR / "history"

# ------------------------------------------------------------------------------------------------
# Independent reference implementations (Avro specification)
# ------------------------------------------------------------------------------------------------

_EMPTY64 = 0xC15D213AA4D7A795


def _fp_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    return table


_FP_TABLE = _fp_table()


def rabin64(data: bytes) -> int:
    """CRC-64-AVRO, transcribed from the reference algorithm in the Avro specification."""
    fp = _EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ _FP_TABLE[(fp ^ byte) & 0xFF]
    return fp


def as_signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


_PRIMITIVE_NAMES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _full(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def canonical_form(schema: Any, namespace: str, defined: set[str]) -> str:
    """Parsing Canonical Form from raw .avsc JSON; named types in other files are inlined."""
    if isinstance(schema, list):
        return "[" + ",".join(canonical_form(s, namespace, defined) for s in schema) + "]"
    if isinstance(schema, str):
        if schema in _PRIMITIVE_NAMES:
            return json.dumps(schema)
        full = _full(schema, namespace)
        if full in defined:
            return json.dumps(full)
        referenced = json.loads((AVRO_DIR / f"{full}.avsc").read_text(encoding="utf-8"))
        return canonical_form(referenced, namespace, defined)
    kind = schema["type"]
    if kind in _PRIMITIVE_NAMES:
        return json.dumps(kind)
    if kind == "array":
        return (
            '{"type":"array","items":' + canonical_form(schema["items"], namespace, defined) + "}"
        )
    if kind == "map":
        return (
            '{"type":"map","values":' + canonical_form(schema["values"], namespace, defined) + "}"
        )
    full = _full(schema["name"], schema.get("namespace", namespace))
    defined.add(full)
    inner_ns = full.rpartition(".")[0]
    if kind == "enum":
        symbols = ",".join(json.dumps(s) for s in schema["symbols"])
        return f'{{"name":{json.dumps(full)},"type":"enum","symbols":[{symbols}]}}'
    if kind == "fixed":
        return f'{{"name":{json.dumps(full)},"type":"fixed","size":{int(schema["size"])}}}'
    fields = ",".join(
        f'{{"name":{json.dumps(f["name"])},"type":{canonical_form(f["type"], inner_ns, defined)}}}'
        for f in schema["fields"]
    )
    return f'{{"name":{json.dumps(full)},"type":"record","fields":[{fields}]}}'


def independent_fingerprint(path: Path) -> bytes:
    raw = json.loads(path.read_text(encoding="utf-8"))
    pcf = canonical_form(raw, "", set())
    return rabin64(pcf.encode("utf-8")).to_bytes(8, "little")


def zigzag(value: int) -> bytes:
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def avro_str(text: str | bytes) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return zigzag(len(raw)) + raw


def avro_double(value: float) -> bytes:
    return struct.pack("<d", value)


# ------------------------------------------------------------------------------------------------
# Example records (SYNTHETIC events; the Ward row is real reference data)
# ------------------------------------------------------------------------------------------------

T0 = datetime(2025, 3, 14, 8, 15, 30, 250000, tzinfo=UTC)
T0_MS = 1741940130250

INCIDENT: dict[str, Any] = {
    "event_id": "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f",
    "occurred_at": T0,
    "incident_id": "CC112-2025-000123",
    "source_system": "CALL_CENTER_112",
    "category": "FLOOD",
    "severity": "MODERATE",
    "status": "REPORTED",
    "ward_code": "36.72.01.1001",
    "latitude": -6.03311,
    "longitude": 106.06966,
    "rw": "003",
    "rt": "002",
    "description": "Road flooded — water about 40 cm deep",
}
LIGHTING: dict[str, Any] = {
    "event_id": "0b9e6a52-7d14-4f0e-9c1a-3e5f7a9b1c2d",
    "occurred_at": T0,
    "lamp_id": "PJU-CBB-0042",
    "cabinet_id": "CAB-CBB-07",
    "report_kind": "FAULT",
    "lamp_status": "DEFECTIVE_LAMP",
    "power_state": "OFF",
    "dimming_level": None,
    "energy_kwh": None,
    "ward_code": None,
    "latitude": -6.0335,
    "longitude": 106.0701,
}
WASTE: dict[str, Any] = {
    "event_id": "d2c4e6f8-1a3b-4c5d-9e7f-0a1b2c3d4e5f",
    "occurred_at": T0,
    "container_id": "TPS-CBB-011",
    "site_kind": "TPS",
    "report_kind": "FILL_LEVEL",
    "filling_level": 0.85,
    "temperature_celsius": 31.5,
    "collected_weight_kg": None,
    "ward_code": "36.72.01.1001",
    "latitude": None,
    "longitude": None,
}
WARD_FIELDS: dict[str, Any] = {
    "ward_code": "36.72.01.1001",
    "kelurahan_name": "Cibeber",
    "kecamatan_code": "36.72.01",
    "kecamatan_name": "Cibeber",
    "ingested_at": datetime(2025, 3, 14, 8, 15, 31, 7000, tzinfo=UTC),
}
EXAMPLES: dict[str, dict[str, Any]] = {
    "org.cityops.IncidentEvent": INCIDENT,
    "org.cityops.LightingEvent": LIGHTING,
    "org.cityops.WasteEvent": WASTE,
    "org.cityops.EnrichedIncidentEvent": {
        "event": INCIDENT,
        **WARD_FIELDS,
        "ward_resolution": "WARD_CODE",
    },
    "org.cityops.EnrichedLightingEvent": {
        "event": LIGHTING,
        **WARD_FIELDS,
        "ward_resolution": "ASSET_REGISTRY",
        "cabinet_id": "CAB-CBB-07",
        "location_name": "Jalan Contoh Raya (synthetic)",
    },
    "org.cityops.EnrichedWasteEvent": {
        "event": WASTE,
        **WARD_FIELDS,
        "ward_resolution": "WARD_CODE",
        "location_name": "TPS Contoh (synthetic)",
        "container_capacity_l": 6000,
    },
    "org.cityops.SituationEvent": {
        "scope": "KELURAHAN",
        "scope_code": "36.72.01.1001",
        "scope_name": "Cibeber",
        "kecamatan_code": "36.72.01",
        "kecamatan_name": "Cibeber",
        "kind": "CHANGE",
        "level": "ALERT",
        "reasons": ["3 flood reports in 20 min", "4 of 120 lamps out"],
        "emitted_at": datetime(2025, 3, 14, 8, 15, 31, 120000, tzinfo=UTC),
        "last_event_at": T0,
        "caused_by_event_id": "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f",
        "sequence": 17,
        "open_incidents": 3,
        "open_incidents_by_category": {"FLOOD": 3},
        "open_incidents_by_severity": {"MODERATE": 2, "SEVERE": 1},
        "new_incidents_in_window": 3,
        "window_start": datetime(2025, 3, 14, 8, 0, tzinfo=UTC),
        "window_end": datetime(2025, 3, 14, 8, 20, tzinfo=UTC),
        "lamps_total": 120,
        "lamps_out": 4,
        "lamps_working_ratio": 116 / 120,
        "cabinet_alerts": ["CAB-CBB-07"],
        "new_lamp_faults_in_window": 2,
        "containers_total": 15,
        "containers_full": 2,
        "containers_fire_risk": 0,
        "containers_overdue": 1,
        "overflow_reports_in_window": 1,
        "mean_dispatch_seconds": 312.5,
        "mean_on_scene_seconds": None,
        "dispatch_count": 0,
        "on_scene_count": 0,
        "events_folded": 0,
        "acknowledged_by": "rina",
        "acknowledged_at": datetime(2025, 3, 14, 8, 16, tzinfo=UTC),
        "sla_overdue": 1,
        "cases": [{
            "source_system": "CALL_CENTER_112", "incident_id": "112-2025-000123",
            "category": "FLOOD", "severity": "SEVERE", "status": "REPORTED", "rw": "003",
            "reported_at": T0, "assigned_agency": "BPBD", "assigned_by": "rina",
            "assigned_at": datetime(2025, 3, 14, 8, 17, tzinfo=UTC), "escalated_by": None,
            "escalated_at": None, "closed_by": None, "closed_at": None, "version": 1,
            "overdue": ["on_scene"],
            "timeline": [
                {"at": T0, "actor": "partner CALL_CENTER_112", "kind": "REPORTED", "text": None},
                {"at": datetime(2025, 3, 14, 8, 17, tzinfo=UTC), "actor": "rina",
                 "kind": "ASSIGN", "text": "BPBD"},
            ],
        }],
        "ward_timeline": [{"at": datetime(2025, 3, 14, 8, 16, tzinfo=UTC), "actor": "rina",
                           "kind": "ACKNOWLEDGE", "text": None}],
    },
    "org.cityops.OperatorAction": {
        "action_id": "0b6f3c1e-4a53-4c4e-9d2b-5f1f1e0c2a11",
        "occurred_at": datetime(2025, 3, 14, 8, 17, tzinfo=UTC),
        "operator_id": "rina",
        "operator_role": "OPERATOR",
        "action": "ASSIGN",
        "ward_code": "36.72.01.1001",
        "incident_source": "CALL_CENTER_112",
        "incident_id": "112-2025-000123",
        "agency": "BPBD",
        "text": "<b>perahu karet</b> dikirim",
        "expected_version": 0,
    },
    "org.cityops.BoardSession": {
        "session_digest": "9f" * 32, "account": "rina", "role": "OPERATOR",
        "created_at": datetime(2025, 3, 14, 8, 0, tzinfo=UTC),
        "last_seen_at": datetime(2025, 3, 14, 8, 17, tzinfo=UTC), "address": "203.0.113.7",
        "stage": "ACTIVE", "second_factor_step": 58_026_240,
        "scope": "agency=;kecamatan=36.72.01",
    },
    "org.cityops.SignInEvent": {
        "at": datetime(2025, 3, 14, 8, 17, 1, tzinfo=UTC), "outcome": "THROTTLED",
        "account": "rina", "address": "203.0.113.7", "worker_id": "cityops-1",
    },
    "org.cityops.ActionReceipt": {
        "action_id": "0b6f3c1e-4a53-4c4e-9d2b-5f1f1e0c2a11",
        "ward_code": "36.72.01.1001",
        "outcome": "REFUSED",
        "reason": "conflict",
        "message": "the case changed since it was loaded: assigned to Damkar by sari",
        "case_version": 2,
        "folded_at": datetime(2025, 3, 14, 8, 17, 1, tzinfo=UTC),
    },
    "org.cityops.GatewayReceipt": {
        "partner": "partner-112",
        "idempotency_key": "retry-7",
        "request_sha256": "ab" * 32,
        "status": 200,
        "body": '{"records": []}',
        "created_at": datetime(2025, 3, 14, 8, 17, tzinfo=UTC),
    },
    "org.cityops.Notification": {
        "key": "36.72.01.1001/CALL_CENTER_112/112-2025-000123|assigned:BPBD:0b6f3c1e",
        "kind": "ASSIGNED", "case": "36.72.01.1001/CALL_CENTER_112/112-2025-000123",
        "event": "assigned:BPBD:0b6f3c1e", "ward_code": "36.72.01.1001",
        "kecamatan_code": "36.72.01", "agency": "BPBD",
        "decided_at": datetime(2025, 3, 14, 8, 17, tzinfo=UTC),
        "map_url": "https://www.openstreetmap.org/?mlat=-6.03311&mlon=106.06966",
        "messages": [{"language": "id", "subject": "Penugasan untuk BPBD",
                      "text": "Apa: Banjir", "parameters": ["Banjir", "RW 003", "08:17", "-",
                                                            "-"]}],
        "deliveries": [{"channel": "telegram", "target": "-1001234567890"}],
    },
    "org.cityops.NotificationDelivery": {
        "notification_key": "36.72.01.1001/CALL_CENTER_112/112-2025-000123|assigned:BPBD:x",
        "channel": "whatsapp", "target": "6281234567890", "status": "RETRYING", "attempt": 2,
        "at": datetime(2025, 3, 14, 8, 18, tzinfo=UTC), "idempotency_key": "0f" * 16,
        "answer": '400 {"error":{"code":130429}}', "provider_id": None,
    },
    "org.cityops.DeadLetter": {
        "original_topic": "partner-incidents",
        "original_partition": 2,
        "original_offset": 10452,
        "original_timestamp": T0,
        "original_key": b"CC112-2025-000123",
        "original_value": b"\xc3\x01\x00\x00\x00\x00\x00\x00\x00\x00",
        "original_headers": [
            {"key": "partner", "value": b"112"},
            {"key": "trace", "value": None},
        ],
        "stage": "DECODE",
        "reason": "unknown_fingerprint",
        "error_message": "no known schema has the fingerprint 0000000000000000",
        "error_class": "CodecError",
        "worker_id": "worker-1",
        "rejected_at": datetime(2025, 3, 14, 8, 15, 31, 500000, tzinfo=UTC),
    },
    "org.cityops.Ward": {
        "kelurahan_code": "36.72.01.1001",
        "kelurahan_name": "Cibeber",
        "kecamatan_code": "36.72.01",
        "kecamatan_name": "Cibeber",
        "centroid_lat": -6.03311,
        "centroid_lon": 106.06966,
        "postal_code": "42423",
        "bps_code": "3672040005",
        "population": None,
        "area_km2": None,
        "boundary_geojson": None,
    },
    "org.cityops.Asset": {
        "asset_id": "PJU-CBB-0042",
        "asset_kind": "LAMP",
        "ward_code": "36.72.01.1001",
        "location_name": "Jalan Contoh Raya (synthetic)",
        "latitude": -6.0335,
        "longitude": 106.0701,
        "cabinet_id": "CAB-CBB-07",
        "lamp_wattage_w": 90,
        "container_capacity_l": None,
        "synthetic": True,
    },
    "org.cityops.Neighbourhood": {
        "rt_code": "36.72.01.1001.003.007", "kelurahan_code": "36.72.01.1001",
        "kecamatan_code": "36.72.01", "rw": "003", "rt": "007", "synthetic": True,
    },
    "org.cityops.RtReport": {
        "report_id": "RPT-1", "revision": 1, "period": "2025-02",
        "rt_code": "36.72.01.1001.003.007", "reporter_id": "KRT-0007", "submitted_at": T0,
        "households": 40, "residents": 150, "working_age": 110, "labour_force": 70,
        "unemployed": 5, "births": 1, "deaths": 0, "moved_in": 2, "moved_out": 1,
        "social_aid_households": 6, "note": "Jalan rusak di gang 3",
    },
    "org.cityops.RtReview": {
        "review_id": "0f3c1b2a-1234-4567-8901-234567890123",
        "decided_at": datetime(2025, 9, 10, 3, 0, tzinfo=UTC), "reviewer_id": "sinta",
        "reviewer_role": "VILLAGE_STAFF", "kelurahan_code": "36.72.01.1001",
        "rt_code": "36.72.01.1001.001.001", "period": "2025-08", "report_id": "R1",
        "revision": 1, "decision": "CORRECT",
        "counts": {"households": 40, "residents": 150}, "note": "dicek",
    },
    "org.cityops.RtValidation": {
        "rt_code": "36.72.01.1001.003.007", "kelurahan_code": "36.72.01.1001", "rw": "003",
        "period": "2025-02", "report_id": "RPT-1", "revision": 1, "verdict": "NEEDS_REVIEW",
        "reason_codes": ["continuity"], "reasons": ["residents 150 do not follow"],
        "residents": 150, "labour_force": 70, "unemployed": 5, "validated_at": T0,
        "synthetic": True,
    },
    "org.cityops.NeighbourhoodIndicator": {
        "scope_code": "36.72.01.1001", "scope_level": "KELURAHAN", "period": "2025-02",
        "rt_registered": 80, "rt_reported": 70, "rt_valid": 65, "rt_needs_review": 5,
        "residents": 10_000, "labour_force": 6_000, "unemployed": 450,
        "unemployment_rate": 0.075, "completeness": 0.875, "review_share": 5 / 70,
        "computed_at": T0, "synthetic": True, "withheld": None,
    },
}

INCIDENT_FP_V2 = "48f8de2db93d7da3"
INCIDENT_FP_V1 = "4a056b3ed61202f8"


def incident_body(
    *,
    event_id: bytes = avro_str(INCIDENT["event_id"]),
    occurred_at: bytes = zigzag(T0_MS),
    incident_id: bytes = avro_str("CC112-2025-000123"),
    source_system: bytes = zigzag(1),  # CALL_CENTER_112
    tail: bytes | None = None,
) -> bytes:
    """The IncidentEvent example encoded by hand; keyword arguments swap in hostile parts."""
    rest = (
        zigzag(2)  # FLOOD
        + zigzag(2)  # MODERATE
        + zigzag(0)  # REPORTED
        + zigzag(1)
        + avro_str("36.72.01.1001")
        + zigzag(1)
        + avro_double(-6.03311)
        + zigzag(1)
        + avro_double(106.06966)
        + zigzag(1)
        + avro_str("003")
        + zigzag(1)
        + avro_str("002")
        + avro_str("Road flooded — water about 40 cm deep")
    )
    return event_id + occurred_at + incident_id + source_system + (rest if tail is None else tail)


HEADER_V2 = b"\xc3\x01" + bytes.fromhex(INCIDENT_FP_V2)


def reason_of(data: bytes, expected: str | None = None) -> str:
    with pytest.raises(CodecError) as caught:
        decode(data, expected)
    return caught.value.reason


# ------------------------------------------------------------------------------------------------
# Fingerprints and wire format
# ------------------------------------------------------------------------------------------------


def test_rabin64_matches_apache_avro_published_vectors() -> None:
    # Vectors from apache/avro share/test/data/schema-tests.txt (signed Java longs).
    assert as_signed(rabin64(b'"null"')) == 7195948357588979594
    assert as_signed(rabin64(b'"boolean"')) == -6970731678124411036
    assert as_signed(rabin64(b'{"name":"foo","type":"fixed","size":15}')) == 1756455273707447556
    record = b'{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}'
    assert as_signed(rabin64(record)) == 7843277075252814651


def test_canonical_form_helper_matches_apache_avro_published_vectors() -> None:
    enum = {
        "namespace": "x.y.z",
        "type": "enum",
        "name": "foo",
        "doc": "d",
        "symbols": ["A1", "A2"],
    }
    assert (
        canonical_form(enum, "", set())
        == '{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}'
    )
    pig = {
        "name": "PigValue",
        "type": "record",
        "fields": [{"name": "value", "type": ["null", "int", "long", "PigValue"]}],
    }
    pcf = canonical_form(pig, "", set())
    assert as_signed(rabin64(pcf.encode())) == -1759257747318642341


@pytest.mark.parametrize(
    "path",
    sorted(AVRO_DIR.glob("*.avsc")) + sorted(HISTORY_DIR.glob("*.avsc")),
    ids=lambda p: p.name,
)
def test_catalog_fingerprint_equals_independent_computation(path: Path) -> None:
    expected = independent_fingerprint(path)
    matches = [v for v in default_catalog().all_versions() if v.source == path]
    assert [v.fingerprint for v in matches] == [expected]
    assert matches[0].header == b"\xc3\x01" + expected


def test_incident_fingerprints_are_pinned_because_partners_depend_on_them() -> None:
    # If this fails, a published schema changed: archive the old one in schemas/avro/history.
    versions = default_catalog().versions("IncidentEvent")
    assert [(v.version, v.is_current, v.fingerprint.hex()) for v in versions] == [
        (1, False, INCIDENT_FP_V1),
        (2, True, INCIDENT_FP_V2),
    ]


def test_enriched_fingerprint_covers_the_expanded_incident_schema() -> None:
    enriched = default_catalog().current("EnrichedIncidentEvent")
    incident = default_catalog().current("IncidentEvent")
    assert incident.canonical_form in enriched.canonical_form
    assert enriched.fingerprint == rabin64(enriched.canonical_form.encode()).to_bytes(8, "little")


def test_incident_encoding_is_exactly_marker_fingerprint_and_hand_encoded_body() -> None:
    assert encode("org.cityops.IncidentEvent", INCIDENT) == HEADER_V2 + incident_body()


@pytest.mark.parametrize("full_name", sorted(EXAMPLES))
def test_every_record_type_round_trips_exactly(full_name: str) -> None:
    payload = encode(full_name, EXAMPLES[full_name])
    current = default_catalog().current(full_name)
    assert payload[:10] == b"\xc3\x01" + current.fingerprint
    assert decode(payload, expected=full_name) == DecodedRecord(
        full_name=full_name, writer_version=current.version, record=EXAMPLES[full_name]
    )


def test_examples_cover_every_record_type() -> None:
    assert sorted(EXAMPLES) == list(default_catalog().record_names())


def test_short_and_full_names_are_the_same_type() -> None:
    assert encode("IncidentEvent", INCIDENT) == encode("org.cityops.IncidentEvent", INCIDENT)
    assert decode(encode("IncidentEvent", INCIDENT), expected="IncidentEvent").full_name == (
        "org.cityops.IncidentEvent"
    )


def test_unknown_type_name_is_a_lookup_error_not_a_codec_error() -> None:
    with pytest.raises(UnknownSchemaError):
        encode("NoSuchEvent", INCIDENT)
    with pytest.raises(UnknownSchemaError):
        decode(encode("IncidentEvent", INCIDENT), expected="NoSuchEvent")


def test_upper_case_uuid_is_kept_as_sent() -> None:
    record = dict(INCIDENT, event_id="6F1C2D3E-4B5A-4C6D-8E7F-9A0B1C2D3E4F")
    assert decode(encode("IncidentEvent", record)).record == record


# ------------------------------------------------------------------------------------------------
# Schema evolution
# ------------------------------------------------------------------------------------------------


def test_v1_incident_decodes_with_the_current_schema() -> None:
    v1_path = HISTORY_DIR / "org.cityops.IncidentEvent.v1.avsc"
    v1_schema = parse_schema(json.loads(v1_path.read_text(encoding="utf-8")))
    v1_record = {k: v for k, v in INCIDENT.items() if k not in ("rw", "rt", "description")}
    v1_record["status"] = "DISPATCHED"
    body = BytesIO()
    schemaless_writer(body, v1_schema, v1_record)
    payload = b"\xc3\x01" + independent_fingerprint(v1_path) + body.getvalue()

    assert payload[2:10].hex() == INCIDENT_FP_V1
    assert decode(payload, expected="IncidentEvent") == DecodedRecord(
        full_name="org.cityops.IncidentEvent",
        writer_version=1,
        record={
            "event_id": "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f",
            "occurred_at": T0,
            "incident_id": "CC112-2025-000123",
            "source_system": "CALL_CENTER_112",
            "category": "FLOOD",
            "severity": "MODERATE",
            "status": "DISPATCHED",
            "ward_code": "36.72.01.1001",
            "latitude": -6.03311,
            "longitude": 106.06966,
            "rw": None,
            "rt": None,
            "description": "",
        },
    )


def test_v1_indicator_decodes_as_published_with_nothing_withheld() -> None:
    # an indicator already on the compacted topic (before small cells) keeps its count and
    # reads as not withheld: a v1 writer never withheld anything
    v1_path = HISTORY_DIR / "org.cityops.NeighbourhoodIndicator.v1.avsc"
    v1_schema = parse_schema(json.loads(v1_path.read_text(encoding="utf-8")))
    example = EXAMPLES["org.cityops.NeighbourhoodIndicator"]
    body = BytesIO()
    schemaless_writer(body, v1_schema, {k: v for k, v in example.items() if k != "withheld"})
    payload = b"\xc3\x01" + independent_fingerprint(v1_path) + body.getvalue()
    assert decode(payload, expected="NeighbourhoodIndicator") == DecodedRecord(
        full_name="org.cityops.NeighbourhoodIndicator", writer_version=1, record=example)


def test_v1_payload_is_still_checked_for_trailing_bytes() -> None:
    v1 = default_catalog().version("IncidentEvent", 1)
    body = BytesIO()
    v1_record = {k: v for k, v in INCIDENT.items() if k not in ("rw", "rt", "description")}
    schemaless_writer(body, v1.writer_schema, v1_record)
    assert reason_of(v1.header + body.getvalue() + b"\x00") == "trailing_bytes"


# ------------------------------------------------------------------------------------------------
# Every rejection reason, provoked
# ------------------------------------------------------------------------------------------------


def test_reason_set_is_fixed() -> None:
    assert CODEC_REASONS == (
        "not_single_object",
        "truncated",
        "unknown_fingerprint",
        "unexpected_schema",
        "undecodable",
        "trailing_bytes",
        "non_canonical",
        "oversized",
        "schema_violation",
    )


def test_wrong_marker_is_not_single_object() -> None:
    assert reason_of(b"\xc3\x02" + HEADER_V2[2:] + incident_body()) == "not_single_object"
    assert reason_of(b'{"event_id": "x"}') == "not_single_object"
    assert reason_of(b"\x00") == "not_single_object"


def test_non_bytes_is_not_single_object() -> None:
    with pytest.raises(CodecError) as caught:
        decode(None)  # type: ignore[arg-type]
    assert (caught.value.reason, caught.value.message) == (
        "not_single_object",
        "expected bytes, got null",
    )


def test_payload_shorter_than_header_is_truncated() -> None:
    assert reason_of(b"") == "truncated"
    assert reason_of(b"\xc3") == "truncated"
    assert reason_of(HEADER_V2[:9]) == "truncated"


def test_body_cut_short_is_truncated() -> None:
    payload = HEADER_V2 + incident_body()
    assert reason_of(payload[:-1]) == "truncated"
    assert reason_of(HEADER_V2) == "truncated"


def test_unknown_fingerprint() -> None:
    with pytest.raises(CodecError) as caught:
        decode(b"\xc3\x01" + bytes(8) + incident_body())
    assert (caught.value.reason, caught.value.message) == (
        "unknown_fingerprint",
        "no known schema has the fingerprint 0000000000000000",
    )


def test_other_type_than_expected_is_unexpected_schema() -> None:
    with pytest.raises(CodecError) as caught:
        decode(HEADER_V2 + incident_body(), expected="LightingEvent")
    assert (caught.value.reason, caught.value.message) == (
        "unexpected_schema",
        "expected org.cityops.LightingEvent, got org.cityops.IncidentEvent (version 2)",
    )


def test_enum_schema_payload_is_unexpected_because_only_records_are_messages() -> None:
    header = default_catalog().current("WardResolution").header
    with pytest.raises(CodecError) as caught:
        decode(header + zigzag(0))
    assert (caught.value.reason, caught.value.message) == (
        "unexpected_schema",
        "org.cityops.WardResolution is not a record type; only records travel as messages",
    )


def test_trailing_garbage_is_trailing_bytes() -> None:
    with pytest.raises(CodecError) as caught:
        decode(HEADER_V2 + incident_body() + b"\x00\x00")
    assert caught.value.reason == "trailing_bytes"
    assert caught.value.message == (
        "IncidentEvent (version 2): 2 byte(s) left after the record (body is 148 of 150 bytes)"
    )


def test_enum_index_minus_one_is_non_canonical() -> None:
    # zig-zag 0x01 is -1; fastavro would read it as the last symbol, OTHER.
    assert reason_of(HEADER_V2 + incident_body(source_system=b"\x01")) == "non_canonical"


def test_enum_index_past_the_end_is_undecodable() -> None:
    assert reason_of(HEADER_V2 + incident_body(source_system=zigzag(6))) == "undecodable"


def test_timestamp_long_max_is_undecodable() -> None:
    assert reason_of(HEADER_V2 + incident_body(occurred_at=zigzag(2**63 - 1))) == "undecodable"


def test_invalid_utf8_is_undecodable() -> None:
    assert reason_of(HEADER_V2 + incident_body(incident_id=avro_str(b"\xff\xfe"))) == "undecodable"


def test_over_long_varint_is_non_canonical() -> None:
    # 0x82 0x00 is a valid varint for 1, padded with a redundant continuation byte.
    assert reason_of(HEADER_V2 + incident_body(source_system=b"\x82\x00")) == "non_canonical"


def test_malformed_uuid_text_is_schema_violation() -> None:
    with pytest.raises(CodecError) as caught:
        decode(HEADER_V2 + incident_body(event_id=avro_str("not-a-uuid")))
    assert (caught.value.reason, caught.value.message) == (
        "schema_violation",
        "IncidentEvent.event_id: 'not-a-uuid' is not a UUID (RFC 4122 text, 8-4-4-4-12 hex digits)",
    )


SITUATION = EXAMPLES["org.cityops.SituationEvent"]


def situation_body(reasons: bytes) -> bytes:
    """A SituationEvent whose ``reasons`` array is replaced by raw bytes."""
    head = (
        zigzag(0)  # KELURAHAN
        + avro_str("36.72.01.1001")
        + avro_str("Cibeber")
        + zigzag(0)  # kecamatan_code null
        + zigzag(0)  # kecamatan_name null
        + zigzag(0)  # CHANGE
        + zigzag(0)  # NORMAL
    )
    tail = (
        zigzag(T0_MS)  # emitted_at
        + zigzag(0)  # last_event_at null
        + zigzag(0)  # caused_by_event_id null
        + zigzag(1)  # sequence
        + zigzag(0)  # open_incidents
        + zigzag(0)  # by category: empty map
        + zigzag(0)  # by severity: empty map
        + zigzag(0)  # new_incidents_in_window
        + zigzag(T0_MS)  # window_start
        + zigzag(T0_MS)  # window_end
        + zigzag(0) * 2  # lamps_total, lamps_out
        + zigzag(0)  # lamps_working_ratio null
        + zigzag(0)  # cabinet_alerts: empty
        + zigzag(0) * 6  # lamp faults, containers x4, overflow reports
        + zigzag(0) * 2  # mean dispatch / on scene null
        + zigzag(0) * 2  # dispatch_count, on_scene_count
        + zigzag(0)  # events_folded
        + zigzag(0) * 2  # acknowledged_by, acknowledged_at null
        + zigzag(0)  # sla_overdue
        + zigzag(0) * 2  # cases, ward_timeline: empty
    )
    return head + reasons + tail


SITUATION_HEADER = default_catalog().current("SituationEvent").header


def test_situation_body_helper_is_a_valid_encoding() -> None:
    record = decode(SITUATION_HEADER + situation_body(zigzag(1) + avro_str("a") + zigzag(0)))
    assert record.record["reasons"] == ["a"]


def test_huge_array_count_ends_as_truncated_without_expanding() -> None:
    # 2^40 items declared in 6 bytes. Each string item costs at least one byte (the catalog
    # refuses arrays whose items could cost none), so the decoder runs out of payload after a
    # few items instead of allocating: "truncated", in microseconds.
    payload = SITUATION_HEADER + situation_body(zigzag(2**40) + avro_str("a"))
    assert reason_of(payload) == "truncated"


def test_negative_block_count_is_non_canonical() -> None:
    # Legal in Avro (count -1 followed by the block's byte size) but never what a plain writer
    # emits; accepting it would let two byte strings mean one record.
    block = zigzag(-1) + zigzag(2) + avro_str("a") + zigzag(0)
    assert reason_of(SITUATION_HEADER + situation_body(block)) == "non_canonical"


def test_payload_above_the_limit_is_oversized_before_decoding() -> None:
    payload = HEADER_V2 + bytes(DEFAULT_MAX_BYTES)
    with pytest.raises(CodecError) as caught:
        decode(payload)
    assert (caught.value.reason, caught.value.message) == (
        "oversized",
        f"payload is {DEFAULT_MAX_BYTES + 10} bytes, above the {DEFAULT_MAX_BYTES}-byte limit",
    )


def test_configured_limit_applies_to_decode_and_encode() -> None:
    small = SingleObjectCodec(default_catalog(), max_bytes=64)
    payload = encode("IncidentEvent", INCIDENT)
    with pytest.raises(CodecError) as decoding:
        small.decode(payload)
    with pytest.raises(CodecError) as encoding:
        small.encode("IncidentEvent", INCIDENT)
    assert (decoding.value.reason, encoding.value.reason) == ("oversized", "oversized")
    assert encoding.value.message == (
        "IncidentEvent: encodes to 158 bytes, above the 64-byte limit readers enforce"
    )


# ------------------------------------------------------------------------------------------------
# Encode-side validation
# ------------------------------------------------------------------------------------------------


def violation(full_name: str, record: Mapping[str, Any]) -> str:
    with pytest.raises(CodecError) as caught:
        validate(full_name, record)
    assert caught.value.reason == "schema_violation"
    with pytest.raises(CodecError):
        encode(full_name, record)
    return caught.value.message


def test_bad_enum_symbol_names_the_field_and_the_symbols() -> None:
    assert violation("IncidentEvent", dict(INCIDENT, severity="HUGE")) == (
        "IncidentEvent.severity: 'HUGE' is not one of EXTREME, SEVERE, MODERATE, MINOR, UNKNOWN"
    )


def test_wrong_type_in_optional_field_names_the_field() -> None:
    assert violation("LightingEvent", dict(LIGHTING, dimming_level="high")) == (
        "LightingEvent.dimming_level: expected double or null, got str"
    )


def test_missing_required_field() -> None:
    record = {k: v for k, v in INCIDENT.items() if k != "incident_id"}
    assert (
        violation("IncidentEvent", record) == "IncidentEvent.incident_id: required field is missing"
    )


def test_missing_field_with_default_gets_the_default() -> None:
    record = {k: v for k, v in INCIDENT.items() if k not in ("rw", "rt", "description")}
    assert decode(encode("IncidentEvent", record)).record == dict(
        record, rw=None, rt=None, description=""
    )


def test_unknown_field_is_rejected_instead_of_dropped() -> None:
    assert violation("LightingEvent", dict(LIGHTING, dimming_leve=0.5)) == (
        "LightingEvent: unknown field(s) 'dimming_leve' (not in the schema)"
    )


def test_naive_datetime_is_rejected() -> None:
    record = dict(INCIDENT, occurred_at=datetime(2025, 3, 14, 8, 15))
    assert violation("IncidentEvent", record) == (
        "IncidentEvent.occurred_at: 2025-03-14T08:15:00 is a naive datetime; "
        "give it a time zone (UTC)"
    )


def test_malformed_uuid_is_rejected_on_encode() -> None:
    assert violation("WasteEvent", dict(WASTE, event_id="42")) == (
        "WasteEvent.event_id: '42' is not a UUID (RFC 4122 text, 8-4-4-4-12 hex digits)"
    )


def test_int_out_of_range_and_bool_for_int() -> None:
    assert violation("SituationEvent", dict(SITUATION, open_incidents=2**31)) == (
        "SituationEvent.open_incidents: 2147483648 is out of range for int "
        "(-2147483648..2147483647)"
    )
    assert violation("SituationEvent", dict(SITUATION, lamps_out=True)) == (
        "SituationEvent.lamps_out: expected int, got bool"
    )


def test_nested_record_and_array_and_map_paths() -> None:
    enriched = EXAMPLES["org.cityops.EnrichedIncidentEvent"]
    assert violation("EnrichedIncidentEvent", dict(enriched, event=dict(INCIDENT, bogus=1))) == (
        "EnrichedIncidentEvent.event: unknown field(s) 'bogus' (not in the schema)"
    )
    assert violation("SituationEvent", dict(SITUATION, reasons=["ok", 3])) == (
        "SituationEvent.reasons: expected string, got int"
    )
    assert violation(
        "SituationEvent", dict(SITUATION, open_incidents_by_category={"FLOOD": "3"})
    ) == ("SituationEvent.open_incidents_by_category: expected int, got str")


def test_not_a_mapping() -> None:
    assert violation("IncidentEvent", ["not", "a", "record"]) == (  # type: ignore[arg-type]
        "IncidentEvent: expected record IncidentEvent, got list"
    )


def test_string_without_utf8_form_is_schema_violation() -> None:
    assert violation("IncidentEvent", dict(INCIDENT, description="\ud800")).startswith(
        "IncidentEvent: cannot be encoded: UnicodeEncodeError"
    )


def test_codec_error_checks_reason_and_survives_pickling() -> None:
    with pytest.raises(ValueError, match="not one of"):
        CodecError("typo", "x")  # type: ignore[arg-type]
    error = pickle.loads(pickle.dumps(CodecError("truncated", "cut")))
    assert (type(error), error.reason, error.message, str(error)) == (
        CodecError,
        "truncated",
        "cut",
        "cut",
    )


# ------------------------------------------------------------------------------------------------
# Catalog loading rules
# ------------------------------------------------------------------------------------------------


def _write(path: Path, schema: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema), encoding="utf-8")


def _record(name: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "t", "fields": fields}


def test_catalog_refuses_arrays_of_zero_byte_items(tmp_path: Path) -> None:
    _write(
        tmp_path / "t.A.avsc",
        _record("A", [{"name": "xs", "type": {"type": "array", "items": "null"}}]),
    )
    with pytest.raises(SchemaCatalogError, match="zero bytes"):
        SchemaCatalog(tmp_path)


def test_catalog_refuses_history_that_references_other_files(tmp_path: Path) -> None:
    _write(tmp_path / "t.B.avsc", _record("B", [{"name": "x", "type": "int"}]))
    _write(tmp_path / "t.A.avsc", _record("A", [{"name": "b", "type": "t.B"}]))
    _write(tmp_path / "history" / "t.A.v1.avsc", _record("A", [{"name": "b", "type": "t.B"}]))
    with pytest.raises(SchemaCatalogError, match="self-contained"):
        SchemaCatalog(tmp_path)


def test_catalog_refuses_history_identical_to_current(tmp_path: Path) -> None:
    schema = _record("A", [{"name": "x", "type": "int"}])
    _write(tmp_path / "t.A.avsc", schema)
    _write(tmp_path / "history" / "t.A.v1.avsc", dict(schema, doc="same wire form"))
    with pytest.raises(SchemaCatalogError, match="same fingerprint"):
        SchemaCatalog(tmp_path)


def test_catalog_refuses_file_named_after_another_type(tmp_path: Path) -> None:
    _write(tmp_path / "t.Wrong.avsc", _record("A", [{"name": "x", "type": "int"}]))
    with pytest.raises(SchemaCatalogError, match="file name"):
        SchemaCatalog(tmp_path)
