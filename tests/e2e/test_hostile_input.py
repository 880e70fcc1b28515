"""Hostile input on every partner topic: each item becomes a dead letter with the right reason,
valid events sent in between are all processed, duplicates are counted once, and the worker never
crashes or skips an event.

The worker runs in its own topic namespace (bench.harness.Namespace) so the exact counts below
are not disturbed by other tests sharing the broker and the session's topics.

Invariants checked, per input topic, both from the worker's metrics and from the topics:
    consumed = enriched + dead-lettered
and per enriched topic:
    records = applied + late + duplicate + expired (+ dead-lettered at the PROCESS stage)
"""

from __future__ import annotations

import copy
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from kafka import KafkaProducer

from bench.harness import Namespace, Worker, read_records, wait_until
from cityops.assets import generate_asset_registry
from core.reference_data import load_ward_records
from core.vocabulary import ASSET_REGISTRY_SEED
from processors.dead_letters import MAX_ORIGINAL_BYTES, MAX_ORIGINAL_KEY_BYTES
from schemas.codec import decode, default_catalog, encode
from topics import catalog

pytestmark = pytest.mark.e2e

WORKER_ID = "hostile-worker-1"
INCIDENT = "org.cityops.IncidentEvent"
LIGHTING = "org.cityops.LightingEvent"
WASTE = "org.cityops.WasteEvent"
KINDS = ("incidents", "lighting", "waste")
SPEC = {"incidents": catalog.INCIDENTS, "lighting": catalog.LIGHTING, "waste": catalog.WASTE}
ENRICHED = {"incidents": catalog.INCIDENTS_ENRICHED, "lighting": catalog.LIGHTING_ENRICHED,
            "waste": catalog.WASTE_ENRICHED}
SCHEMA = {"incidents": INCIDENT, "lighting": LIGHTING, "waste": WASTE}
ID_FIELD = {"incidents": "incident_id", "lighting": "lamp_id", "waste": "container_id"}
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


def _key(record: Mapping[str, Any], kind: str) -> bytes:
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
        items.append(Item(f"{kind}:{name}", kind, _key(record, kind), value, stage, reason,
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
        out.append(Item(f"{kind}:{name}", kind, _key(record, kind), encode(SCHEMA[kind], record),
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
        out.append(Item(f"{kind}:valid-{i}", kind, _key(record, kind),
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


# --------------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def namespace(broker: str) -> Iterator[Namespace]:
    ns = Namespace.fresh(broker, "hostile")
    ns.setup()
    yield ns
    ns.teardown()


@pytest.fixture(scope="module")
def worker(namespace: Namespace, artifacts_dir: Path) -> Iterator[Worker]:
    log = artifacts_dir / "hostile-worker.log"
    log.unlink(missing_ok=True)
    process = Worker(namespace, f"hostile-{uuid.uuid4().hex[:8]}", log, worker_id=WORKER_ID,
                     loglevel="warning", extra_env={"CITYOPS_SNAPSHOT_INTERVAL_S": "0",
                                                    "CITYOPS_ROLLUP_INTERVAL_S": "1.0"}).start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
        namespace.teardown([process.app_id])


def _send(bootstrap: str, ns: Namespace, items: list[Item]) -> dict[str, tuple[int, int]]:
    """Send in order (gzip: lets the >1 MiB payloads through the broker's size limit);
    returns item name -> (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             compression_type="gzip", max_request_size=8 * 1024 * 1024,
                             linger_ms=5)
    futures = [(item.name, producer.send(ns.name(SPEC[item.kind]), key=item.key, value=item.value,
                                         headers=list(item.headers)))
               for item in items]
    producer.flush(timeout=120)
    placed = {}
    for name, future in futures:
        meta = future.get(timeout=60)
        placed[name] = (meta.partition, meta.offset)
    producer.close()
    return placed


def test_hostile_corpus_is_dead_lettered_and_valid_events_keep_flowing(
    worker: Worker, namespace: Namespace
) -> None:
    bootstrap = namespace.bootstrap
    started = datetime.now(UTC)
    b = Builder(started)
    items, retries = interleave(b)
    hostile = [i for i in items if i.reason is not None]
    valid = [i for i in items if i.reason is None]
    names = [i.name for i in items]
    assert len(names) == len(set(names))
    placed = _send(bootstrap, namespace, items)

    sent = Counter(item.kind for item in items)

    def consumed_all() -> bool:
        return all(worker.metric_sum("cityops_events_consumed_total",
                                     topic=namespace.name(SPEC[kind])) == count
                   for kind, count in sent.items())

    wait_until(consumed_all, 180, "every input record consumed")
    unique = {i.event_id for i in valid}

    def aggregated_all() -> bool:
        return worker.metric_sum("cityops_events_aggregated_total") == len(valid)

    wait_until(aggregated_all, 120, "every enriched record applied to the ward state")
    assert worker.running, worker.log_tail()

    # -- dead-letter topic: each hostile item exactly once, with its rule and original record
    dead = [decode(r.value, expected=catalog.DEAD_LETTERS.value_schema).record
            for r in read_records(bootstrap, namespace.name(catalog.DEAD_LETTERS))]
    by_place = {(d["original_topic"], d["original_partition"], d["original_offset"]): d
                for d in dead}
    assert len(by_place) == len(dead) == len(hostile)
    got = {}
    for item in hostile:
        partition, offset = placed[item.name]
        letter = by_place[(namespace.name(SPEC[item.kind]), partition, offset)]
        got[item.name] = (letter["stage"], letter["reason"])
        assert letter["worker_id"] == WORKER_ID
        assert started <= letter["rejected_at"] <= datetime.now(UTC)
        assert letter["error_message"] and letter["error_class"]
        assert len(letter["error_message"]) <= 1000
        if item.value is not None and len(item.value) > MAX_ORIGINAL_BYTES:
            assert letter["original_value"] == item.value[:MAX_ORIGINAL_BYTES]
            assert "cut" in letter["error_message"]
        else:
            assert letter["original_value"] == item.value
        if item.key is not None and len(item.key) > MAX_ORIGINAL_KEY_BYTES:
            assert letter["original_key"] == item.key[:MAX_ORIGINAL_KEY_BYTES]
        else:
            assert letter["original_key"] == item.key
        if item.headers and sum(len(v) for _, v in item.headers) < 1000:
            assert [(h["key"], h["value"]) for h in letter["original_headers"]] == list(
                item.headers)
    assert got == {item.name: (item.stage, item.reason) for item in hostile}

    # -- enriched topics: every valid send (retries included) and nothing else
    for kind in KINDS:
        records = [decode(r.value, expected=ENRICHED[kind].value_schema).record
                   for r in read_records(bootstrap, namespace.name(ENRICHED[kind]))]
        assert sorted(r["event"]["event_id"] for r in records) == sorted(
            str(i.event_id) for i in valid if i.kind == kind)
        assert {r["ward_code"] for r in records} == {WARD}
        if kind == "incidents":
            long_text = max(records, key=lambda r: len(r["event"]["description"]))
            assert long_text["event"]["description"] == ("flooded street " * 34)[:500].rstrip()
            assert [r["event"]["description"] for r in records
                    if ESCAPES in r["event"]["description"]] == [
                f"banjir {ESCAPES} \u202eabc \U0001f30a"]
        else:  # the registry's ward, also for the records that named OTHER_WARD
            assert sorted(r["event"]["ward_code"] for r in records
                          if r["ward_resolution"] == "ASSET_REGISTRY"
                          and r["event"]["ward_code"] is not None) == [OTHER_WARD]

    # -- the invariant, from the topics: input = enriched + dead-lettered
    for kind in KINDS:
        inputs = len(read_records(bootstrap, namespace.name(SPEC[kind])))
        enriched = len(read_records(bootstrap, namespace.name(ENRICHED[kind])))
        rejected = sum(1 for d in dead if d["original_topic"] == namespace.name(SPEC[kind]))
        assert (inputs, enriched + rejected) == (sent[kind], sent[kind])

    # -- and from the metrics, by reason
    for kind in KINDS:
        topic = namespace.name(SPEC[kind])
        expected_reasons = Counter((i.stage, i.reason) for i in hostile if i.kind == kind)
        for (stage, reason), count in expected_reasons.items():
            assert worker.metric_sum("cityops_events_rejected_total", topic=topic,
                                     stage=str(stage), reason=str(reason)) == count, reason
        assert worker.metric_sum("cityops_events_corrected_total", topic=topic,
                                 reason="ward_code_mismatch") == (kind != "incidents")
        assert (worker.metric_sum("cityops_events_consumed_total", topic=topic),
                worker.metric_sum("cityops_events_enriched_total", topic=topic),
                worker.metric_sum("cityops_events_rejected_total", topic=topic)) == (
            sent[kind], sum(1 for i in valid if i.kind == kind), expected_reasons.total())
        # ward stage: every enriched record applied once; the retries counted as duplicates
        outcomes = {outcome: worker.metric_sum("cityops_events_aggregated_total",
                                               topic=namespace.name(ENRICHED[kind]),
                                               outcome=outcome)
                    for outcome in ("applied", "late", "duplicate", "expired")}
        assert outcomes == {
            "applied": len({i.event_id for i in valid if i.kind == kind}), "late": 0.0,
            "duplicate": sum(1 for i in retries if i.kind == kind), "expired": 0.0,
        }
    assert worker.metric_sum("cityops_events_rejected_total", stage="PROCESS") == 0
    assert len(unique) == len(valid) - len(retries)

    # -- the worker never crashed, restarted an agent or skipped an event
    log = worker.log_tail(200_000)
    assert worker.running and worker.starts == 1
    for sign in ("Traceback", "Crashed", "crashed", "MessageSizeTooLarge"):
        assert sign not in log, log[-3000:]


LATE_WARD = "36.72.02.1002"  # Ciwedus


def test_a_late_event_updates_latest_status_but_no_window(worker: Worker,
                                                          namespace: Namespace) -> None:
    """docs/rules.md: an event whose window closed (end + grace <= the ward's watermark) still
    sets its lamp's latest status, is counted as late, and is not added to any window."""
    registry = generate_asset_registry(load_ward_records(), seed=ASSET_REGISTRY_SEED)
    lamps = sorted(a["asset_id"] for a in registry
                   if a["ward_code"] == LATE_WARD and a["asset_kind"] == "LAMP")[:2]
    now = datetime.now(UTC).replace(microsecond=0)
    topic = namespace.name(catalog.LIGHTING_ENRICHED)

    def outcome(name: str) -> float:
        return worker.metric_sum("cityops_events_aggregated_total", topic=topic, outcome=name)

    before = {name: outcome(name) for name in ("applied", "late")}
    for lamp, at, expected in ((lamps[0], now - timedelta(minutes=1), "applied"),
                               (lamps[1], now - timedelta(minutes=30), "late")):
        record = {
            "event_id": str(uuid.uuid4()), "occurred_at": at, "lamp_id": lamp,
            "cabinet_id": None, "report_kind": "FAULT", "lamp_status": "NO_POWER",
            "power_state": "OFF", "dimming_level": None, "energy_kwh": None, "ward_code": None,
            "latitude": None, "longitude": None,
        }
        _send(namespace.bootstrap, namespace, [Item(f"late-test:{lamp}", "lighting",
                                                    lamp.encode(), encode(LIGHTING, record))])
        wanted = before[expected] + 1
        wait_until(lambda: outcome(expected) == wanted, 60, f"{lamp} {expected}")  # noqa: B023

    def last() -> dict[str, Any]:
        situations = [decode(r.value, expected=catalog.SITUATIONS.value_schema).record
                      for r in read_records(namespace.bootstrap,
                                            namespace.name(catalog.SITUATIONS))]
        return [s for s in situations if s["scope_code"] == LATE_WARD][-1]

    wait_until(lambda: last()["lamps_out"] == 2, 30, "situation with both lamps out")
    situation = last()
    assert (situation["lamps_out"], situation["new_lamp_faults_in_window"],
            situation["last_event_at"]) == (2, 1, now - timedelta(minutes=1))


FAST_WARD = "36.72.04.1004"  # Gunung Sugih: shares its ward with a partner whose clock runs fast
CONTROL_WARD = "36.72.05.1005"  # Gedong Dalem: the same on-time reports, no fast clock
CAP_WARD = "36.72.04.1006"  # Randakari: flooded with new incident ids past the ward's cap


def _situations_of(namespace: Namespace, code: str) -> list[dict[str, Any]]:
    return [s for s in (decode(r.value, expected=catalog.SITUATIONS.value_schema).record
                        for r in read_records(namespace.bootstrap,
                                              namespace.name(catalog.SITUATIONS)))
            if s["scope_code"] == code]


def test_a_fast_clock_does_not_blind_a_ward(worker: Worker, namespace: Namespace) -> None:
    """Issue 12 hole 6: one incident stamped 4 min 50 s ahead, then three on-time flood reports;
    they are not late, and the ward reaches exactly what an identical control ward reaches."""
    b = Builder(datetime.now(UTC).replace(microsecond=0))
    fast = b.incident(ward_code=FAST_WARD, occurred_at=b.now + timedelta(minutes=4, seconds=50))
    items = [Item("fast-clock", "incidents", b"fast-clock", encode(INCIDENT, fast))]
    for ward in (FAST_WARD, CONTROL_WARD):
        for n in range(3):
            # on time: stamped when sent, as the three FLOOD reports were (reports two
            # minutes old could be late behind the worker's own clock in either ward)
            record = b.incident(ward_code=ward, category="FLOOD", severity="MODERATE",
                                occurred_at=b.now - timedelta(seconds=1) + timedelta(
                                    milliseconds=n))
            items.append(Item(f"flood-{ward}-{n}", "incidents", record["incident_id"].encode(),
                              encode(INCIDENT, record)))
    _send(namespace.bootstrap, namespace, items)

    def flood_reason(code: str) -> bool:
        situations = _situations_of(namespace, code)
        return bool(situations) and "3 flood reports in 20 min" in situations[-1]["reasons"]

    wait_until(lambda: flood_reason(FAST_WARD) and flood_reason(CONTROL_WARD), 60,
               "both wards report the three floods")
    fast_ward, control = _situations_of(namespace, FAST_WARD)[-1], _situations_of(
        namespace, CONTROL_WARD)[-1]
    assert (fast_ward["level"], fast_ward["new_incidents_in_window"]) == (
        control["level"], control["new_incidents_in_window"]) == ("ALERT", 3)
    assert fast_ward["open_incidents"] == control["open_incidents"] + 1 == 4


def test_a_flood_of_new_incident_ids_stays_within_the_ward_cap(
        worker: Worker, namespace: Namespace) -> None:
    """Issue 12 hole 1: 6,000 incidents with new ids in one ward: the first 5,000 (the ward's
    cap) are held, the next 1,000 are dead letters (PROCESS/ward_state_full); the ward's
    situation stays far under its byte budget and is published a bounded number of times."""
    b = Builder(datetime.now(UTC).replace(microsecond=0))
    items = []
    for n in range(6_000):
        record = b.incident(ward_code=CAP_WARD, incident_id=f"CAP-{n:05d}",
                            occurred_at=b.now - timedelta(minutes=2) + timedelta(milliseconds=n))
        items.append(Item(f"cap-{n}", "incidents", record["incident_id"].encode(),
                          encode(INCIDENT, record)))
    _send(namespace.bootstrap, namespace, items)

    def full() -> list[tuple[int, int]]:
        return [(d["original_partition"], d["original_offset"])
                for d in (decode(r.value, expected=catalog.DEAD_LETTERS.value_schema).record
                          for r in read_records(namespace.bootstrap,
                                                namespace.name(catalog.DEAD_LETTERS)))
                if d["reason"] == "ward_state_full"]

    wait_until(lambda: len(full()) >= 1_000, 120, "1,000 dead letters of a full ward")
    assert len(full()) == 1_000
    wait_until(lambda: _situations_of(namespace, CAP_WARD)[-1]["open_incidents"] == 5_000, 60,
               "the ward holds its cap")
    situations = _situations_of(namespace, CAP_WARD)
    sizes = [len(encode(catalog.SITUATIONS.value_schema, s)) for s in situations]
    assert max(sizes) < 4 * 1024
    assert len(situations) <= 50  # once per batch, not once per event: 6,000 events


SOURCE_WARD = "36.72.05.1001"  # only the impersonation test below reports here


def test_a_partner_can_neither_pose_as_another_source_nor_touch_its_incidents(
    worker: Worker, namespace: Namespace
) -> None:
    """Issue 12, hole 2: on its own topic the citizen app claims to be the police (dead-lettered
    VALIDATE/source_mismatch, it never reaches the ward) and cancels a police incident by reusing
    its id (accepted by design as the citizen app's own, closed incident: the police incident
    stays open)."""
    bootstrap = namespace.bootstrap
    b = Builder(datetime.now(UTC))
    police = b.incident(ward_code=SOURCE_WARD, category="OTHER", severity="MODERATE")
    posing = b.incident(ward_code=SOURCE_WARD, category="FIRE", severity="EXTREME")  # POLICE
    cancel = b.incident(ward_code=SOURCE_WARD, category="OTHER", severity="MODERATE",
                        incident_id=police["incident_id"], source_system="CITIZEN_APP",
                        status="CANCELLED")
    police_topic = namespace.name(catalog.INCIDENTS_POLICE)
    citizen_topic = namespace.name(catalog.INCIDENTS_CITIZEN)
    enriched_topic = namespace.name(catalog.INCIDENTS_ENRICHED)

    def applied() -> float:
        return worker.metric_sum("cityops_events_aggregated_total", topic=enriched_topic,
                                 outcome="applied")

    applied_before = applied()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    try:
        placed = {name: producer.send(topic, key=_key(record, "incidents"),
                                      value=encode(INCIDENT, record)).get(timeout=60)
                  for name, topic, record in (("police", police_topic, police),
                                              ("posing", citizen_topic, posing),
                                              ("cancel", citizen_topic, cancel))}
    finally:
        producer.close()

    def mine() -> list[tuple[str, str, str]]:
        ids = {police["event_id"], posing["event_id"], cancel["event_id"]}
        return [(r["event"]["incident_id"], r["event"]["source_system"], r["event"]["status"])
                for r in (decode(m.value, expected=ENRICHED["incidents"].value_schema).record
                          for m in read_records(bootstrap, enriched_topic))
                if r["event"]["event_id"] in ids]

    def dead_here() -> list[dict[str, Any]]:
        return [d for d in (decode(r.value, expected=catalog.DEAD_LETTERS.value_schema).record
                            for r in read_records(bootstrap,
                                                  namespace.name(catalog.DEAD_LETTERS)))
                if d["original_topic"] in (police_topic, citizen_topic)]

    def situation() -> dict[str, Any] | None:
        found = [s for s in (decode(r.value, expected=catalog.SITUATIONS.value_schema).record
                             for r in read_records(bootstrap,
                                                   namespace.name(catalog.SITUATIONS)))
                 if s["scope_code"] == SOURCE_WARD]
        return max(found, key=lambda s: s["sequence"]) if found else None

    wait_until(lambda: len(mine()) == 2 and len(dead_here()) == 1, 120,
          "the police incident and the citizen app's cancel enriched, the posing dead-lettered")
    assert sorted(mine()) == [(police["incident_id"], "CITIZEN_APP", "CANCELLED"),
                              (police["incident_id"], "POLICE", "REPORTED")]
    [letter] = dead_here()
    assert (letter["original_topic"], letter["original_offset"], letter["stage"],
            letter["reason"], letter["error_message"]) == (
        citizen_topic, placed["posing"].offset, "VALIDATE", "source_mismatch",
        f"source_system 'POLICE' on {citizen_topic}, which only CITIZEN_APP writes")
    assert letter["original_value"] == encode(INCIDENT, posing)
    assert worker.metric_sum("cityops_events_rejected_total", topic=citizen_topic,
                             stage="VALIDATE", reason="source_mismatch") == 1

    # both applied (the ward agent counts each fold), then the batch's situation published
    wait_until(lambda: applied() == applied_before + 2, 60, "both incidents applied")
    wait_until(lambda: situation() is not None, 30, f"a situation of {SOURCE_WARD}")
    time.sleep(3.0)  # the batch that folded the last of them publishes within a second
    final = situation()
    assert final is not None
    # the police incident is still open; the EXTREME claim never reached the ward
    assert (final["level"], final["reasons"], final["open_incidents"],
            final["open_incidents_by_severity"], final["open_incidents_by_category"]) == (
        "NORMAL", [], 1, {"MODERATE": 1}, {"OTHER": 1})
