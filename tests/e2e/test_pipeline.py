"""The whole pipeline on the real broker: partner events in, exact situations and metrics out.

Scenario (event times fixed relative to a 5-minute window boundary in the recent past):
- Cibeber (36.72.01.1001): three FLOOD reports within 90 s, then one is dispatched 5 min after
  its report -> NORMAL, WATCH, ALERT, then the dispatch shows in the response time.
- Tamansari (36.72.03.1001): three lamps of control cabinet CAB-36.72.03.1001-01
  lose power -> cabinet alert (ALERT).
- Ciwedus (36.72.02.1002): three of its five containers (four bins and a TPS) report
  95% full -> ALERT.
- An incident with coordinates only (no ward code) lands in Warnasari by point-in-polygon.
- Garbage bytes and an unknown ward code go to the dead-letter topic with their reasons.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from bench.harness import Namespace, Worker, wait_until
from cityops.assets import generate_asset_registry
from core.reference_data import load_ward_records
from core.vocabulary import ASSET_REGISTRY_SEED
from schemas.codec import decode
from tests.integration.test_web_api import sla_thresholds
from tests.namespace import NamespacePlan
from topics.catalog import DEAD_LETTERS, INCIDENTS_112, LIGHTING, SITUATIONS

pytestmark = pytest.mark.e2e

FLOOD_WARD = "36.72.01.1001"
CABINET_WARD = "36.72.03.1001"
CABINET = "CAB-36.72.03.1001-01"
WASTE_WARD = "36.72.02.1002"
COORDINATE_WARD = "36.72.08.1001"


#: This module's own topic namespace, so exact counts see only the events sent here.
PLAN = NamespacePlan.new("pipeline")
_topic = PLAN.name


@pytest.fixture(scope="module")
def namespace(broker: str) -> Namespace:
    return PLAN.create(broker)


@pytest.fixture(scope="module")
def worker(namespace: Namespace, tmp_path_factory: pytest.TempPathFactory,
           artifacts_dir: Path) -> Iterator[Worker]:
    # events lie 10-15 min in the past: SLA clocks of a day keep the expected reasons exact
    thresholds = sla_thresholds(tmp_path_factory.mktemp("thresholds"))
    with namespace.worker(f"e2e-{uuid.uuid4().hex[:8]}", artifacts_dir / "e2e-worker.log",
                          tmp_path_factory.mktemp("worker"),
                          CITYOPS_THRESHOLDS=str(thresholds)) as process:
        yield process


def _incident(incident_id: str, at: datetime, status: str, category: str = "FLOOD",
              severity: str = "MODERATE", ward: str | None = FLOOD_WARD,
              lat: float | None = None, lon: float | None = None) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()), "occurred_at": at, "incident_id": incident_id,
        "source_system": "CALL_CENTER_112", "category": category, "severity": severity,
        "status": status, "ward_code": ward, "latitude": lat, "longitude": lon,
        "rw": None, "rt": None, "description": "test",
    }


def _read_all(bootstrap: str, topic: str, schema: str, wait_for: int,
              timeout_s: float = 60.0) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(records) < wait_for:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(decode(r.value, expected=schema).record for r in batch)
    # one more short poll so records beyond the awaited count are seen too
    for batch in consumer.poll(timeout_ms=1500).values():
        records.extend(decode(r.value, expected=schema).record for r in batch)
    consumer.close()
    return records


def _view(s: dict[str, Any]) -> tuple[Any, ...]:
    return (s["sequence"], s["kind"], s["level"], s["reasons"], s["open_incidents"],
            s["open_incidents_by_category"], s["lamps_out"], s["cabinet_alerts"],
            s["containers_full"], s["mean_dispatch_seconds"])


def test_scenario_gives_exact_situations_dead_letters_and_metrics(
    worker: Worker, namespace: Namespace
) -> None:
    bootstrap = namespace.bootstrap
    now = datetime.now(UTC).replace(microsecond=0)
    base = now - timedelta(minutes=10)
    base = base - timedelta(minutes=base.minute % 5, seconds=base.second)
    registry = generate_asset_registry(load_ward_records(), seed=ASSET_REGISTRY_SEED)
    lamps = sorted(a["asset_id"] for a in registry if a.get("cabinet_id") == CABINET)[:3]
    containers = sorted(a["asset_id"] for a in registry
                        if a["ward_code"] == WASTE_WARD and a["asset_kind"] == "WASTE_CONTAINER")
    floods = [f"FLOOD-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    centroid = next(w for w in load_ward_records() if w["kelurahan_code"] == COORDINATE_WARD)

    with namespace.producer() as producer:
        for i, incident_id in enumerate(floods):
            producer.send("IncidentEvent", _incident(
                incident_id, base + timedelta(seconds=30 * (i + 1)), "REPORTED"))
        for i, lamp in enumerate(lamps):
            producer.send("LightingEvent", {
                "event_id": str(uuid.uuid4()), "occurred_at": base + timedelta(seconds=40 + i),
                "lamp_id": lamp, "cabinet_id": None, "report_kind": "FAULT",
                "lamp_status": "NO_POWER", "power_state": "OFF", "dimming_level": None,
                "energy_kwh": None, "ward_code": None, "latitude": None, "longitude": None,
            })
        for i, container in enumerate(containers[:3]):
            producer.send("WasteEvent", {
                "event_id": str(uuid.uuid4()), "occurred_at": base + timedelta(seconds=50 + i),
                "container_id": container, "site_kind": "CONTAINER", "report_kind": "FILL_LEVEL",
                "filling_level": 0.95, "temperature_celsius": 31.0, "collected_weight_kg": None,
                "ward_code": None, "latitude": None, "longitude": None,
            })
        producer.send("IncidentEvent", _incident(
            "COORD-1", base + timedelta(seconds=45), "REPORTED", category="OTHER",
            severity="MINOR", ward=None, lat=centroid["centroid_lat"],
            lon=centroid["centroid_lon"]))
        producer.send("IncidentEvent", _incident(
            "NOWHERE-1", base + timedelta(seconds=46), "REPORTED", ward="36.72.99.9999"))
        producer.send_raw(_topic(LIGHTING), b"garbage-key", b"\x00\x01not avro")

    # the flood ward reaches ALERT; then one flood is dispatched 5 minutes after its report
    def flood_situations() -> list[dict[str, Any]]:
        return [s for s in _read_all(bootstrap, _topic(SITUATIONS),
                                     SITUATIONS.value_schema, wait_for=1, timeout_s=2)
                if s["scope_code"] == FLOOD_WARD]

    wait_until(lambda: len(flood_situations()) >= 3)
    with namespace.producer() as producer:
        producer.send("IncidentEvent", _incident(
            floods[0], base + timedelta(seconds=30 + 300), "DISPATCHED"))

    situations = _read_all(bootstrap, _topic(SITUATIONS), SITUATIONS.value_schema,
                           wait_for=4 + 3 + 1 + 1 + 2)

    def of(code: str) -> list[tuple[Any, ...]]:
        return [_view(s) for s in situations if s["scope_code"] == code]

    assert of(FLOOD_WARD) == [
        (1, "CHANGE", "NORMAL", [], 1, {"FLOOD": 1}, 0, [], 0, None),
        (2, "CHANGE", "WATCH", ["2 flood reports in 20 min"], 2, {"FLOOD": 2}, 0, [], 0, None),
        (3, "CHANGE", "ALERT", ["3 flood reports in 20 min", "3 open incidents"], 3,
         {"FLOOD": 3}, 0, [], 0, None),
        (4, "CHANGE", "ALERT", ["3 flood reports in 20 min", "3 open incidents"], 3,
         {"FLOOD": 3}, 0, [], 0, 300.0),
    ]
    cabinet = of(CABINET_WARD)
    assert cabinet[-1] == (
        3, "CHANGE", "ALERT",
        [f"cabinet {CABINET}: 3 lamp faults in 10 min (possible power loss or cable theft)"],
        0, {}, 3, [CABINET], 0, None,
    )
    assert [v[2] for v in cabinet] == ["NORMAL", "NORMAL", "ALERT"]
    waste = of(WASTE_WARD)
    assert [v[8] for v in waste] == [1, 2, 3]
    assert waste[-1][2:4] == ("ALERT", ["3 containers full (60% of 5)"])
    coordinate = of(COORDINATE_WARD)
    assert coordinate == [(1, "CHANGE", "NORMAL", [], 1, {"OTHER": 1}, 0, [], 0, None)]

    city = [s for s in situations if s["scope"] == "CITY"][-1]
    assert (city["level"], city["open_incidents"], city["lamps_out"],
            city["containers_full"]) == ("ALERT", 4, 3, 3)

    dead = _read_all(bootstrap, _topic(DEAD_LETTERS), DEAD_LETTERS.value_schema, wait_for=2)
    assert sorted((d["original_topic"], d["stage"], d["reason"]) for d in dead) == sorted([
        (_topic(INCIDENTS_112), "ENRICH", "unknown_ward"),
        (_topic(LIGHTING), "DECODE", "not_single_object"),
    ])
    garbage = next(d for d in dead if d["original_topic"] == _topic(LIGHTING))
    assert (garbage["original_key"], garbage["original_value"]) == (
        b"garbage-key", b"\x00\x01not avro")

    # metrics scraped over HTTP from the worker
    assert worker.metric("cityops_events_consumed_total", topic=_topic(INCIDENTS_112)) == 6.0
    assert worker.metric("cityops_events_consumed_total", topic=_topic(LIGHTING)) == 4.0
    assert worker.metric("cityops_events_rejected_total", topic=_topic(INCIDENTS_112),
                         stage="ENRICH", reason="unknown_ward") == 1.0
    assert worker.metric("cityops_events_rejected_total", topic=_topic(LIGHTING),
                         stage="DECODE", reason="not_single_object") == 1.0
    assert worker.metric("cityops_events_enriched_total", topic=_topic(INCIDENTS_112),
                         ward_resolution="POINT_IN_POLYGON") == 1.0
    assert worker.metric("cityops_events_enriched_total", topic=_topic(LIGHTING),
                         ward_resolution="ASSET_REGISTRY") == 3.0
    assert worker.metric("cityops_incident_dispatch_seconds_sum", kecamatan="Cibeber") == 300.0
    assert worker.metric("cityops_incident_dispatch_seconds_count", kecamatan="Cibeber") == 1.0
    wait_until(lambda: worker.metric("cityops_ward_situation_level",
                                    kelurahan_code=FLOOD_WARD) == 2.0)
    assert worker.metric("cityops_lamps_out", kecamatan="Pulomerak") == 3.0
    assert worker.metric("cityops_open_incidents", kecamatan="Cibeber", category="FLOOD") == 3.0


def test_clock_tick_emits_snapshots_that_repeat_the_sequence(
    namespace: Namespace, tmp_path: Path, artifacts_dir: Path
) -> None:
    """A worker with a 2 s snapshot interval refreshes a ward's situation without a new event,
    keeps its sequence, and keeps running (a tick must not write the table)."""
    ward = "36.72.05.1001"
    process = namespace.worker(
        f"e2e-tick-{uuid.uuid4().hex[:8]}", artifacts_dir / "e2e-tick.log", tmp_path,
        CITYOPS_SNAPSHOT_INTERVAL_S="2",
    ).start()
    bootstrap = namespace.bootstrap
    try:
        process.wait_ready()
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
        with namespace.producer() as producer:
            producer.send("IncidentEvent", _incident(
                f"TICK-{uuid.uuid4().hex[:6]}", at, "REPORTED", category="MEDICAL",
                severity="MINOR", ward=ward))

        def ward_records() -> list[dict[str, Any]]:
            return [s for s in _read_all(bootstrap, _topic(SITUATIONS),
                                         SITUATIONS.value_schema, wait_for=1, timeout_s=2)
                    if s["scope_code"] == ward]

        wait_until(lambda: sum(1 for s in ward_records() if s["kind"] == "SNAPSHOT") >= 2)
        records = ward_records()
        # the first tick may report a CHANGE (time moved the tumbling window on), never a new
        # sequence number; after that, nothing changes and ticks are snapshots
        assert (records[0]["kind"], records[0]["sequence"]) == ("CHANGE", 1)
        assert {(s["sequence"], s["open_incidents"]) for s in records} == {(1, 1)}
        assert records[-1]["kind"] == "SNAPSHOT"
        assert process.process is not None and process.process.poll() is None
    finally:
        process.stop()
