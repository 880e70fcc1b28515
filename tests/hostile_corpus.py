"""The hostile-input corpus: every kind of bad partner record, each with the rule it breaks
(stage and reason), interleaved with valid events, odd-but-valid ones and partner retries.

Shared by the rules' test without a broker (tests/unit/test_driver_hostile_input.py, through
streams/test_driver.py) and the real-broker test (tests/e2e/test_hostile_input.py), which sends
the same corpus through the Kafka client to a worker and checks delivery, counts and that the
worker gives what the driver gives. Records are SYNTHETIC.
"""

from __future__ import annotations

import copy
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_writer

from cityops.assets import generate_asset_registry
from core.reference_data import load_ward_records
from core.vocabulary import ASSET_REGISTRY_SEED
from schemas.codec import decode, default_catalog, encode
from streams.test_driver import TopologyTestDriver
from topics import catalog

INCIDENT = "org.cityops.IncidentEvent"
LIGHTING = "org.cityops.LightingEvent"
WASTE = "org.cityops.WasteEvent"
KINDS = ("incidents", "lighting", "waste")
EVENT_KIND = {"incidents": "incident", "lighting": "lighting", "waste": "waste"}
"""The corpus's kinds as `topics.event_types` names them."""
SPEC = {"incidents": catalog.INCIDENTS, "lighting": catalog.LIGHTING, "waste": catalog.WASTE}
ENRICHED = {"incidents": catalog.INCIDENTS_ENRICHED, "lighting": catalog.LIGHTING_ENRICHED,
            "waste": catalog.WASTE_ENRICHED}
SCHEMA = {"incidents": INCIDENT, "lighting": LIGHTING, "waste": WASTE}
ID_FIELD = {"incidents": "incident_id", "lighting": "lamp_id", "waste": "container_id"}
#: Only workers write the enriched topics; this is what another writer could put there (the
#: ward stage's dead letter), sent to the incidents' enriched topic with WARD as its key.
ENRICHED_GARBAGE = b"\x00\x01not avro"
WARD = "36.72.01.1001"  # Cibeber: every valid event of this test lands here
OTHER_WARD = "36.72.06.1001"  # a real kelurahan whose code partners send for WARD's assets
ESCAPES = "\x1b[2J\x1b[H\x1b[32mALL CLEAR\x1b[8m\x1b]0;cityops: ok\x07"
"""What issue 12 saw reach `cityops watch`: clear, home, green text, conceal, window title."""


@dataclass(frozen=True)
class Item:
    """One record to send; `reason` None means valid (must be enriched, never dead-lettered)."""

    name: str
    kind: str
    key: bytes | None
    value: bytes | None
    stage: str | None = None
    reason: str | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    event_id: str | None = None


# --------------------------------------------------------------------------- record builders


class Builder:
    """Valid partner records around `now`, and bodies written with a doctored schema."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        registry = generate_asset_registry(load_ward_records(), seed=ASSET_REGISTRY_SEED)
        in_ward = [a for a in registry if a["ward_code"] == WARD]
        self.lamps = sorted(a["asset_id"] for a in in_ward if a["asset_kind"] == "LAMP")
        self.containers = sorted(a["asset_id"] for a in in_ward
                                 if a["asset_kind"] == "WASTE_CONTAINER")
        self.other_ward_container = next(a["asset_id"] for a in registry
                                         if a["asset_kind"] == "WASTE_CONTAINER")
        self.count = 0

    def at(self) -> datetime:
        """Distinct, increasing event times a few minutes ago (all in the same windows)."""
        self.count += 1
        return self.now - timedelta(minutes=3) + timedelta(milliseconds=10 * self.count)

    def incident(self, **changes: Any) -> dict[str, Any]:
        record: dict[str, Any] = {
            "event_id": str(uuid.uuid4()), "occurred_at": self.at(),
            "incident_id": f"INC-{uuid.uuid4().hex[:10]}", "source_system": "POLICE",
            "category": "PUBLIC_ORDER", "severity": "MINOR", "status": "REPORTED",
            "ward_code": WARD, "latitude": None, "longitude": None, "rw": "003", "rt": "011",
            "description": "hostile-input test (synthetic)",
        }
        record.update(changes)
        return record

    def lighting(self, **changes: Any) -> dict[str, Any]:
        record: dict[str, Any] = {
            "event_id": str(uuid.uuid4()), "occurred_at": self.at(),
            "lamp_id": self.lamps[self.count % len(self.lamps)], "cabinet_id": None,
            "report_kind": "STATUS", "lamp_status": "OK", "power_state": "ON",
            "dimming_level": 0.8, "energy_kwh": 1.2, "ward_code": None, "latitude": None,
            "longitude": None,
        }
        record.update(changes)
        return record

    def waste(self, **changes: Any) -> dict[str, Any]:
        record: dict[str, Any] = {
            "event_id": str(uuid.uuid4()), "occurred_at": self.at(),
            "container_id": self.containers[self.count % len(self.containers)],
            "site_kind": "CONTAINER", "report_kind": "FILL_LEVEL", "filling_level": 0.4,
            "temperature_celsius": 31.0, "collected_weight_kg": None, "ward_code": None,
            "latitude": None, "longitude": None,
        }
        record.update(changes)
        return record

    def valid(self, kind: str, **changes: Any) -> dict[str, Any]:
        if kind == "incidents":
            return self.incident(**changes)
        if kind == "lighting":
            return self.lighting(**changes)
        return self.waste(**changes)


def _plain(node: Any) -> Any:
    """A parsed schema without fastavro's private keys, ready to be edited and parsed again."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def doctored(full_name: str, record: Mapping[str, Any], retype: Mapping[str, Any]) -> bytes:
    """The current header of `full_name` + a body written with some field types replaced.

    This is how a partner with a broken or newer writer produces bytes under our fingerprint:
    an enum with a symbol we don't know, a string that isn't UTF-8, a timestamp past year 9999.
    """
    version = default_catalog().current(full_name)
    schema = copy.deepcopy(_plain(version.reading_schema))
    for entry in schema["fields"]:
        if entry["name"] in retype:
            entry["type"] = retype[entry["name"]]
    out = BytesIO()
    out.write(version.header)
    schemaless_writer(out, parse_schema(schema, {}), dict(record))
    return out.getvalue()


def key_of(record: Mapping[str, Any], kind: str) -> bytes:
    value = record[ID_FIELD[kind]]
    return value if isinstance(value, bytes) else str(value).encode()


# --------------------------------------------------------------------------- the corpus


def corpus(b: Builder) -> list[Item]:
    """Every hostile item, per topic, each followed later by a valid event (see `interleave`)."""
    items: list[Item] = []

    def bad(name: str, kind: str, value: bytes | None, stage: str, reason: str,
            key: bytes | None = b"hostile", headers: tuple[tuple[str, bytes], ...] = ()
            ) -> None:
        items.append(Item(f"{kind}:{name}", kind, key, value, stage, reason, headers))

    def bad_record(name: str, kind: str, stage: str, reason: str, **changes: Any) -> None:
        record = b.valid(kind, **changes)
        value = encode(SCHEMA[kind], record)
        items.append(Item(f"{kind}:{name}", kind, key_of(record, kind), value, stage, reason,
                          event_id=record["event_id"]))

    for spec in KINDS:
        schema = SCHEMA[spec]
        header = default_catalog().current(schema).header
        good = encode(schema, b.valid(spec))
        other = {"incidents": "lighting", "lighting": "waste", "waste": "incidents"}[spec]
        # -- DECODE: bytes that never become a record
        bad("random_bytes", spec, bytes(range(7, 250, 3)), "DECODE", "not_single_object")
        bad("json_instead_of_avro", spec, b'{"event_id": "x"}', "DECODE", "not_single_object")
        bad("empty_value", spec, b"", "DECODE", "truncated")
        bad("tombstone", spec, None, "DECODE", "undecodable")
        bad("marker_only", spec, b"\xc3\x01", "DECODE", "truncated")
        bad("truncated_avro", spec, good[: len(good) // 2], "DECODE", "truncated")
        bad("header_only", spec, header, "DECODE", "truncated")
        bad("wrong_fingerprint", spec, b"\xc3\x01" + b"\x13" * 8 + good[10:], "DECODE",
            "unknown_fingerprint")
        bad("other_event_type", spec, encode(SCHEMA[other], b.valid(other)), "DECODE",
            "unexpected_schema")
        bad("reference_type", spec, encode("org.cityops.Ward", load_ward_records()[0]),
            "DECODE", "unexpected_schema")
        bad("trailing_garbage", spec, good + b"\x00garbage", "DECODE", "trailing_bytes")
        bad("oversized", spec, header + b"\x00" * (1 << 20), "DECODE", "oversized")
        bad("huge_key", spec, b"\x00\x01not avro", "DECODE", "not_single_object",
            key=b"K" * 700_000)
        bad("huge_headers", spec, b"\x00\x02not avro", "DECODE", "not_single_object",
            headers=(("trace", b"H" * 400_000), ("trace2", b"h" * 400_000)))
        enum_field = {"incidents": ("category", "IncidentCategory"),
                      "lighting": ("lamp_status", "LampStatus"),
                      "waste": ("report_kind", "WasteReportKind")}[spec]
        enum_name, enum_type = enum_field
        symbols = next(f["type"]["symbols"] for f in _plain(
            default_catalog().current(schema).reading_schema)["fields"]
            if f["name"] == enum_name)
        newer = {"type": "enum", "name": f"{enum_type}Newer",
                 "symbols": [*symbols, "NEWER_SYMBOL"]}
        bad("unknown_enum_symbol", spec, doctored(schema, b.valid(spec, **{
            enum_name: "NEWER_SYMBOL"}), {enum_name: newer}), "DECODE", "undecodable")
        bad("enum_index_minus_one", spec, doctored(schema, b.valid(spec, **{enum_name: -1}),
                                                  {enum_name: "int"}), "DECODE", "non_canonical")
        id_field = ID_FIELD[spec]
        bad("invalid_utf8", spec, doctored(schema, b.valid(spec, **{id_field: b"\xff\xfe\xfd"}),
                                          {id_field: "bytes"}), "DECODE", "undecodable")
        bad("timestamp_past_year_9999", spec, doctored(
            schema, b.valid(spec, occurred_at=2**63 - 1), {"occurred_at": "long"}),
            "DECODE", "undecodable")
        bad("event_id_not_a_uuid", spec, doctored(
            schema, b.valid(spec, event_id="not-a-uuid"), {"event_id": "string"}),
            "DECODE", "schema_violation")
        # -- VALIDATE: a record, but a value breaks a rule
        bad_record("nan_latitude", spec, "VALIDATE", "not_finite", latitude=float("nan"),
                   longitude=106.05)
        bad_record("inf_longitude", spec, "VALIDATE", "not_finite", latitude=-6.0,
                   longitude=float("inf"))
        bad_record("latitude_outside_city", spec, "VALIDATE", "out_of_range", latitude=-7.5,
                   longitude=106.05)
        bad_record("swapped_lat_lon", spec, "VALIDATE", "out_of_range", latitude=106.05,
                   longitude=-6.0)
        bad_record("latitude_without_longitude", spec, "VALIDATE", "unpaired_coordinates",
                   latitude=-6.0)
        bad_record("far_future", spec, "VALIDATE", "future_timestamp",
                   occurred_at=b.now + timedelta(days=365 * 20))
        bad_record("local_time_sent_as_utc", spec, "VALIDATE", "future_timestamp",
                   occurred_at=b.now + timedelta(hours=7))
        bad_record("older_than_retention", spec, "VALIDATE", "too_old",
                   occurred_at=b.now - timedelta(days=8))
        bad_record("before_1970", spec, "VALIDATE", "too_old",
                   occurred_at=datetime(1960, 1, 1, tzinfo=UTC))
        # -- ENRICH: valid but can't be joined to the reference data
        bad_record("unknown_ward", spec, "ENRICH", "unknown_ward", ward_code="36.72.99.9999")
        bad_record("ward_code_injection", spec, "ENRICH", "unknown_ward",
                   ward_code="36.72.01.1001' OR '1'='1")

    # -- type-specific rules
    incidents, lighting, waste = KINDS
    bad_record("no_location", incidents, "ENRICH", "missing_location", ward_code=None)
    bad_record("huge_incident_id", incidents, "VALIDATE", "oversized",
               incident_id="I" * 600_000)
    bad_record("huge_incident_id_again", incidents, "VALIDATE", "oversized",
               incident_id="J" * 600_000)
    bad_record("huge_rt", incidents, "VALIDATE", "oversized", rt="9" * 1_040_000)
    bad_record("dimming_above_one", lighting, "VALIDATE", "out_of_range", dimming_level=1.5)
    bad_record("dimming_below_zero", lighting, "VALIDATE", "out_of_range", dimming_level=-0.1)
    bad_record("dimming_nan", lighting, "VALIDATE", "not_finite", dimming_level=float("nan"))
    bad_record("negative_energy", lighting, "VALIDATE", "out_of_range", energy_kwh=-1.0)
    bad_record("energy_inf", lighting, "VALIDATE", "not_finite", energy_kwh=float("inf"))
    bad_record("huge_cabinet_id", lighting, "VALIDATE", "oversized",
               cabinet_id="C" * 600_000, report_kind="FAULT", lamp_status="NO_POWER")
    bad_record("unknown_lamp", lighting, "ENRICH", "unknown_asset", lamp_id="PJU-99999")
    bad_record("lamp_id_names_a_container", lighting, "ENRICH", "unknown_asset",
               lamp_id=b.containers[0])
    bad_record("huge_unknown_lamp_id", lighting, "ENRICH", "unknown_asset",
               lamp_id="P" * 900_000)
    bad_record("fill_above_one", waste, "VALIDATE", "out_of_range", filling_level=1.01)
    bad_record("fill_below_zero", waste, "VALIDATE", "out_of_range", filling_level=-0.2)
    bad_record("fill_nan", waste, "VALIDATE", "not_finite", filling_level=float("nan"))
    bad_record("temperature_inf", waste, "VALIDATE", "not_finite",
               temperature_celsius=float("-inf"))
    bad_record("temperature_saturated", waste, "VALIDATE", "out_of_range",
               temperature_celsius=850.0)
    bad_record("negative_weight", waste, "VALIDATE", "out_of_range", collected_weight_kg=-3.0)
    bad_record("unknown_container", waste, "ENRICH", "unknown_asset", container_id="WC-9999")

    # -- identifiers mean something and are text, never terminal control (issue 12, holes 4, 5)
    for spec in KINDS:
        id_field = ID_FIELD[spec]
        real_id = b.valid(spec)[id_field]
        bad_record("nil_event_id", spec, "VALIDATE", "degenerate_uuid",
                   event_id="00000000-0000-0000-0000-000000000000")
        bad_record("same_digit_event_id", spec, "VALIDATE", "degenerate_uuid",
                   event_id="ffffffff-ffff-ffff-ffff-ffffffffffff")
        bad_record("empty_id", spec, "VALIDATE", "blank_id", **{id_field: ""})
        bad_record("blank_id", spec, "VALIDATE", "blank_id", **{id_field: " \t\u3000 "})
        bad_record("terminal_escapes_in_id", spec, "VALIDATE", "forbidden_characters",
                   **{id_field: real_id + ESCAPES})
        bad_record("bidi_override_in_id", spec, "VALIDATE", "forbidden_characters",
                   **{id_field: "\u202e" + real_id[::-1]})
        bad_record("zero_width_in_id", spec, "VALIDATE", "forbidden_characters",
                   **{id_field: real_id[:3] + "\u200b" + real_id[3:]})
    bad_record("bell_in_rt", incidents, "VALIDATE", "forbidden_characters", rt="0\x0711")
    bad_record("empty_cabinet_id", lighting, "VALIDATE", "blank_id", cabinet_id="",
               report_kind="FAULT", lamp_status="NO_POWER")
    bad_record("terminal_escapes_in_cabinet_id", lighting, "VALIDATE", "forbidden_characters",
               cabinet_id=ESCAPES, report_kind="FAULT", lamp_status="NO_POWER")
    # -- an identifier that names an asset must be in the registry (issue 12, hole 1)
    bad_record("invented_cabinet_id", lighting, "ENRICH", "unknown_asset",
               cabinet_id="CAB-INVENTED-0001", report_kind="FAULT", lamp_status="NO_POWER")
    return items


def accepted_by_design(b: Builder) -> list[Item]:
    """Odd but valid records: enriched, never dead-lettered (each checked in the test).

    - A lamp and a container of WARD reported with OTHER_WARD's code: the registry wins, both
      are placed in WARD (counted there only) and counted as ``ward_code_mismatch``.
    - A description with escapes, bidi and emoji: free text keeps its Unicode (terminal output
      escapes it, :func:`core.text.terminal_safe`).
    """
    out = []
    for name, kind, record in (
        ("ward_code_contradicts_registry", "lighting",
         b.lighting(ward_code=OTHER_WARD, report_kind="FAULT", lamp_status="NO_POWER")),
        ("ward_code_contradicts_registry", "waste", b.waste(ward_code=OTHER_WARD)),
        ("control_characters_in_description", "incidents",
         b.incident(description=f"banjir {ESCAPES} \u202eabc \U0001f30a")),
    ):
        out.append(Item(f"{kind}:{name}", kind, key_of(record, kind),
                        encode(SCHEMA[kind], record),
                        event_id=record["event_id"]))
    return out


def valid_items(b: Builder, count: int, kind: str) -> list[Item]:
    """`count` valid events, the first with a huge description (normalised, not rejected)."""
    out = []
    for i in range(count):
        changes: dict[str, Any] = {}
        if i == 0 and kind == "incidents":
            changes["description"] = "  flooded\n\tstreet " * 40_000  # 760 kB of text
        if kind == "lighting":
            changes["lamp_status"] = ("OK", "NO_POWER", "DEFECTIVE_LAMP")[i % 3]
        if kind == "waste":
            changes["filling_level"] = round(0.05 * (i % 20), 2)
        record = b.valid(kind, **changes)
        out.append(Item(f"{kind}:valid-{i}", kind, key_of(record, kind),
                        encode(SCHEMA[kind], record), event_id=record["event_id"]))
    return out


def interleave(b: Builder) -> tuple[list[Item], list[Item]]:
    """(items in send order, partner retries): hostile, valid, hostile, valid, ... then the
    retries of some valid events (same bytes, and once the same id with other content)."""
    hostile = corpus(b)
    per_topic = Counter(item.kind for item in hostile)
    valid = {kind: valid_items(b, per_topic[kind], kind) for kind in per_topic}
    order: list[Item] = []
    taken: Counter[str] = Counter()
    for item in hostile:
        order.append(item)
        order.append(valid[item.kind][taken[item.kind]])
        taken[item.kind] += 1
    order += accepted_by_design(b)
    retries: list[Item] = []
    for kind, items in valid.items():
        for original in items[1:4]:
            retries.append(Item(f"{original.name}:retry", kind, original.key, original.value,
                                event_id=original.event_id))
    first = valid["waste"][5]
    record = decode(first.value or b"", expected=WASTE).record
    record["filling_level"] = 0.99  # same event id, other content: still the same event
    retries.append(Item(f"{first.name}:changed-retry", "waste", first.key,
                        encode(WASTE, record), event_id=first.event_id))
    return order + retries, retries


# --------------------------------------------------------------------------- through the driver


def through_driver(items: list[Item], now: datetime, batch: int = 1_000) -> TopologyTestDriver:
    """Each item on its type's shared input topic, in order, then the garbage on the incidents'
    enriched topic, through the topology without a broker (the worker's code, in process)."""
    driver = TopologyTestDriver(load_ward_records(), generate_asset_registry(
        load_ward_records(), seed=ASSET_REGISTRY_SEED), batch=batch)
    for item in items:
        driver.pipe(EVENT_KIND[item.kind], item.value, key=item.key, headers=item.headers,
                    now=now)
    driver.pipe_enriched("incident", ENRICHED_GARBAGE, key=WARD.encode(), now=now)
    driver.end_batch(now)
    return driver


def letters_by_item(items: list[Item], driver: TopologyTestDriver) -> dict[str, dict[str, Any]]:
    """Item name -> its dead letter from `through_driver`, matched by (topic, offset): the
    driver numbers each topic's records from 0 in pipe order. The enriched garbage's letter is
    under "enriched:garbage"; a letter of anything else raises KeyError."""
    offsets: Counter[str] = Counter()
    placed: dict[tuple[str, int], str] = {}
    for item in items:
        topic = SPEC[item.kind].name
        placed[(topic, offsets[topic])] = item.name
        offsets[topic] += 1
    garbage = (catalog.INCIDENTS_ENRICHED.name, ENRICHED_GARBAGE)
    return {"enriched:garbage" if (d["original_topic"], d["original_value"]) == garbage
            else placed[(d["original_topic"], d["original_offset"])]: d
            for d in driver.outputs.dead_letters}
