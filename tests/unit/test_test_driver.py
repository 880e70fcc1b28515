"""The topology without a broker: the rules of tests/e2e/test_pipeline.py through the driver,
with exact situations and dead letters, per event and per batch."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cityops.assets import generate_asset_registry
from core.reference_data import load_ward_records
from core.vocabulary import ASSET_REGISTRY_SEED
from schemas.codec import encode
from streams.test_driver import TopologyTestDriver
from tests.pipeline_scenario import (
    CABINET,
    CABINET_WARD,
    COORDINATE_WARD,
    GARBAGE,
    WASTE_WARD,
    scenario,
    window_base,
)
from tests.pipeline_scenario import through_driver as scenario_through_driver

pytestmark = pytest.mark.unit

FLOOD_WARD = "36.72.01.1001"
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
BASE = NOW - timedelta(minutes=10)
WARDS = load_ward_records()
REGISTRY = generate_asset_registry(WARDS, seed=ASSET_REGISTRY_SEED)


def _incident(incident_id: str, at: datetime, status: str, ward: str | None = FLOOD_WARD,
              n: int = 0, source: str = "CALL_CENTER_112", severity: str = "MODERATE") -> bytes:
    return encode("org.cityops.IncidentEvent", {
        "event_id": str(uuid.UUID(int=n + 1)), "occurred_at": at, "incident_id": incident_id,
        "source_system": source, "category": "FLOOD", "severity": severity,
        "status": status, "ward_code": ward, "latitude": None, "longitude": None,
        "rw": None, "rt": None, "description": "test",
    })


def _view(s: dict[str, Any]) -> tuple[Any, ...]:
    return (s["sequence"], s["kind"], s["level"], s["reasons"], s["open_incidents"],
            s["mean_dispatch_seconds"], s["events_folded"])


def _floods(driver: TopologyTestDriver) -> None:
    for i in range(3):
        driver.pipe("incident", _incident(f"FLOOD-{i}", BASE + timedelta(seconds=30 * (i + 1)),
                                          "REPORTED", n=i), now=NOW)


def test_per_event_the_flood_ward_climbs_to_alert_and_shows_the_dispatch_time() -> None:
    driver = TopologyTestDriver(WARDS, REGISTRY, batch=1)
    _floods(driver)
    driver.pipe("incident", _incident("FLOOD-0", BASE + timedelta(seconds=330), "DISPATCHED",
                                      n=10), now=NOW)
    assert [_view(s) for s in driver.situations_of(FLOOD_WARD)] == [
        (1, "CHANGE", "NORMAL", [], 1, None, 1),
        (2, "CHANGE", "WATCH", ["2 flood reports in 20 min"], 2, None, 1),
        (3, "CHANGE", "ALERT", ["3 flood reports in 20 min", "3 open incidents"], 3, None, 1),
        (4, "CHANGE", "ALERT", ["3 flood reports in 20 min", "3 open incidents"], 3, 300.0, 1),
    ]
    assert len(driver.outputs.enriched) == 4
    assert driver.outputs.dead_letters == []


def test_in_one_batch_the_same_reports_are_one_change_with_the_same_final_situation() -> None:
    per_event = TopologyTestDriver(WARDS, REGISTRY, batch=1)
    _floods(per_event)
    batched = TopologyTestDriver(WARDS, REGISTRY, batch=1_000)
    _floods(batched)
    assert batched.outputs.situations == []
    batched.end_batch(NOW)
    [situation] = batched.situations_of(FLOOD_WARD)
    assert _view(situation) == (
        1, "CHANGE", "ALERT", ["3 flood reports in 20 min", "3 open incidents"], 3, None, 3)
    assert situation["caused_by_event_id"] == str(uuid.UUID(int=3))
    last = per_event.situations_of(FLOOD_WARD)[-1]
    ignored = {"sequence", "events_folded", "emitted_at"}
    assert {k: v for k, v in situation.items() if k not in ignored} == {
        k: v for k, v in last.items() if k not in ignored}


def test_a_cabinet_losing_three_lamps_alerts_its_ward() -> None:
    driver = TopologyTestDriver(WARDS, REGISTRY, batch=1)
    lamps = sorted(a["asset_id"] for a in REGISTRY if a.get("cabinet_id") == CABINET)[:3]
    for i, lamp in enumerate(lamps):
        driver.pipe("lighting", encode("org.cityops.LightingEvent", {
            "event_id": str(uuid.UUID(int=100 + i)),
            "occurred_at": BASE + timedelta(seconds=40 + i), "lamp_id": lamp,
            "cabinet_id": None, "report_kind": "FAULT",
            "lamp_status": "NO_POWER", "power_state": "OFF", "dimming_level": None,
            "energy_kwh": None, "ward_code": None, "latitude": None, "longitude": None,
        }), now=NOW)
    situations = driver.situations_of(CABINET_WARD)
    assert [s["level"] for s in situations] == ["NORMAL", "NORMAL", "ALERT"]
    assert (situations[-1]["reasons"], situations[-1]["cabinet_alerts"]) == (
        [f"cabinet {CABINET}: 3 lamp faults in 10 min (possible power loss or cable theft)"],
        [CABINET])


def test_garbage_and_an_unknown_ward_become_dead_letters_with_their_bytes() -> None:
    driver = TopologyTestDriver(WARDS, REGISTRY, batch=1)
    driver.pipe("lighting", b"\x00\x01not avro", key=b"garbage-key", now=NOW)
    nowhere = _incident("NOWHERE-1", BASE, "REPORTED", ward="36.72.99.9999")
    driver.pipe("incident", nowhere, now=NOW)
    assert [(d["original_topic"], d["original_offset"], d["stage"], d["reason"],
             d["original_key"], d["original_value"])
            for d in driver.outputs.dead_letters] == [
        ("city.lighting.v1", 0, "DECODE", "not_single_object", b"garbage-key",
         b"\x00\x01not avro"),
        ("city.incidents.v1", 0, "ENRICH", "unknown_ward", None, nowhere),
    ]
    assert driver.outputs.situations == []


def test_a_source_topic_takes_its_own_source_and_dead_letters_another_claim() -> None:
    driver = TopologyTestDriver(WARDS, REGISTRY, batch=1)
    at = BASE + timedelta(seconds=30)
    driver.pipe("incident", _incident("POL-1", at, "REPORTED", source="POLICE"), now=NOW,
                source="POLICE")
    # the citizen app, on its own topic: posing as the police, then cancelling POL-1
    driver.pipe("incident", _incident("CIT-1", at, "REPORTED", n=1, source="POLICE",
                                      severity="EXTREME"), now=NOW, source="CITIZEN_APP")
    driver.pipe("incident", _incident("POL-1", at + timedelta(seconds=5), "CANCELLED", n=2,
                                      source="CITIZEN_APP"), now=NOW, source="CITIZEN_APP")
    assert [(d["original_topic"], d["stage"], d["reason"], d["error_message"])
            for d in driver.outputs.dead_letters] == [
        ("city.incidents.citizen.v1", "VALIDATE", "source_mismatch",
         "source_system 'POLICE' on city.incidents.citizen.v1, which only CITIZEN_APP writes"),
    ]
    assert [(e["event"]["incident_id"], e["event"]["source_system"], e["event"]["status"])
            for e in driver.outputs.enriched] == [
        ("POL-1", "POLICE", "REPORTED"), ("POL-1", "CITIZEN_APP", "CANCELLED")]
    # The police incident stays open: the cancel is the citizen app's own (closed) incident,
    # counted as a flood report of its own, as any citizen report is.
    assert [(s["level"], s["open_incidents"], s["reasons"])
            for s in driver.situations_of(FLOOD_WARD)] == [
        ("NORMAL", 1, []), ("WATCH", 1, ["2 flood reports in 20 min"])]


# -- the e2e pipeline scenario (tests/pipeline_scenario.py), every rule it shows -------------

SCENARIO_NOW = datetime(2026, 3, 2, 15, 2, 17, tzinfo=UTC)
SCENARIO_BASE = window_base(SCENARIO_NOW)  # 14:50:00


def _full_view(s: dict[str, Any]) -> tuple[Any, ...]:
    return (s["sequence"], s["kind"], s["level"], s["reasons"], s["open_incidents"],
            s["open_incidents_by_category"], s["lamps_out"], s["cabinet_alerts"],
            s["containers_full"], s["mean_dispatch_seconds"])


def test_the_pipeline_scenario_gives_exact_situations_per_event() -> None:
    assert window_base(SCENARIO_NOW) == datetime(2026, 3, 2, 14, 50, tzinfo=UTC)
    driver = scenario_through_driver(scenario(SCENARIO_BASE), SCENARIO_NOW, batch=1)

    def of(code: str) -> list[tuple[Any, ...]]:
        return [_full_view(s) for s in driver.situations_of(code)]

    assert of(FLOOD_WARD) == [
        (1, "CHANGE", "NORMAL", [], 1, {"FLOOD": 1}, 0, [], 0, None),
        (2, "CHANGE", "WATCH", ["2 flood reports in 20 min"], 2, {"FLOOD": 2}, 0, [], 0, None),
        (3, "CHANGE", "ALERT", ["3 flood reports in 20 min", "3 open incidents"], 3,
         {"FLOOD": 3}, 0, [], 0, None),
        (4, "CHANGE", "ALERT", ["3 flood reports in 20 min", "3 open incidents"], 3,
         {"FLOOD": 3}, 0, [], 0, 300.0),
    ]
    assert of(CABINET_WARD) == [
        (1, "CHANGE", "NORMAL", [], 0, {}, 1, [], 0, None),
        (2, "CHANGE", "NORMAL", [], 0, {}, 2, [], 0, None),
        (3, "CHANGE", "ALERT",
         [f"cabinet {CABINET}: 3 lamp faults in 10 min (possible power loss or cable theft)"],
         0, {}, 3, [CABINET], 0, None),
    ]
    waste = of(WASTE_WARD)
    assert [v[8] for v in waste] == [1, 2, 3]
    assert waste[-1][2:4] == ("ALERT", ["3 containers full (60% of 5)"])
    assert of(COORDINATE_WARD) == [(1, "CHANGE", "NORMAL", [], 1, {"OTHER": 1}, 0, [], 0, None)]
    assert {s["scope_code"] for s in driver.outputs.situations} == {
        FLOOD_WARD, CABINET_WARD, WASTE_WARD, COORDINATE_WARD}


def test_the_pipeline_scenario_places_rejects_and_times_exactly() -> None:
    sent = scenario(SCENARIO_BASE)
    nowhere = next(item for item in sent if item.record.get("incident_id") == "NOWHERE-1")
    driver = scenario_through_driver(sent, SCENARIO_NOW)
    assert Counter((e["ward_code"], e["ward_resolution"]) for e in driver.outputs.enriched) == {
        (FLOOD_WARD, "WARD_CODE"): 4, (CABINET_WARD, "ASSET_REGISTRY"): 3,
        (WASTE_WARD, "ASSET_REGISTRY"): 3, (COORDINATE_WARD, "POINT_IN_POLYGON"): 1}
    assert sorted((d["original_topic"], d["stage"], d["reason"], d["original_key"],
                   d["original_value"]) for d in driver.outputs.dead_letters) == [
        ("city.incidents.112.v1", "ENRICH", "unknown_ward", b"NOWHERE-1", nowhere.value),
        ("city.lighting.v1", "DECODE", "not_single_object", GARBAGE[0], GARBAGE[1]),
    ]
    flood = driver.entries[FLOOD_WARD].state
    assert (flood.dispatch_count, flood.dispatch_ms_sum) == (1, 300_000)


def test_the_clock_repeats_the_sequence_a_change_when_time_moved_a_window_then_snapshots(
) -> None:
    """What tests/e2e/test_pipeline.py's clock test showed on a worker with a 2 s clock (the
    e2e test keeps that a tick leaves the worker running): the first tick may
    report a CHANGE (time moved the tumbling window on), never a new sequence number; after
    that, nothing changes and ticks are snapshots."""
    ward = "36.72.05.1001"
    driver = TopologyTestDriver(WARDS, REGISTRY, batch=1)
    driver.pipe("incident", _incident("TICK-1", NOW - timedelta(seconds=30), "REPORTED",
                                      ward=ward), now=NOW)
    for seconds in (2, 4, 6):
        driver.tick(NOW + timedelta(seconds=seconds))
    assert [(s["kind"], s["sequence"], s["open_incidents"], s["new_incidents_in_window"])
            for s in driver.situations_of(ward)] == [
        ("CHANGE", 1, 1, 1), ("CHANGE", 1, 1, 0), ("SNAPSHOT", 1, 1, 0), ("SNAPSHOT", 1, 1, 0)]


def _action(kind: str, role: str, ward: str = FLOOD_WARD, n: int = 0,
            **target: Any) -> bytes:
    return encode("org.cityops.OperatorAction", {
        "action_id": str(uuid.UUID(int=(7 << 100) + n)), "occurred_at": NOW,
        "operator_id": "oscar", "operator_role": role, "action": kind, "ward_code": ward,
        "incident_source": target.get("source"), "incident_id": target.get("incident"),
        "agency": target.get("agency"), "text": target.get("text")})


def test_operator_actions_fold_like_events_and_bad_ones_are_dead_letters() -> None:
    driver = TopologyTestDriver(WARDS, REGISTRY, batch=1)
    driver.pipe("incident", _incident("F-1", NOW - timedelta(minutes=5), "REPORTED",
                                      severity="EXTREME"), now=NOW)
    driver.pipe_action(_action("ACKNOWLEDGE", "OPERATOR"), now=NOW)
    driver.pipe_action(_action("ASSIGN", "OPERATOR", n=1, source="CALL_CENTER_112",
                               incident="F-1", agency="BPBD"), now=NOW)
    driver.pipe_action(_action("ASSIGN", "OPERATOR", n=1, source="CALL_CENTER_112",
                               incident="F-1", agency="BPBD"), now=NOW)  # a replay
    driver.pipe_action(_action("ACKNOWLEDGE", "VIEWER", n=2), now=NOW)
    driver.pipe_action(_action("NOTE", "OPERATOR", ward="36.72.99.9999", n=3, text="x"),
                       now=NOW)
    assert [(s["sequence"], s["reasons"], s["acknowledged_by"],
             [c["assigned_agency"] for c in s["cases"]])
            for s in driver.situations_of(FLOOD_WARD)] == [
        (1, ["CRITICAL not acknowledged", "1 open EXTREME incident (FLOOD)"], None, [None]),
        (2, ["1 open EXTREME incident (FLOOD)"], "oscar", [None]),
        (3, ["1 open EXTREME incident (FLOOD)"], "oscar", ["BPBD"]),
    ]
    assert [(d["stage"], d["reason"], d["error_message"]) for d in driver.outputs.dead_letters] \
        == [("VALIDATE", "action_not_allowed", "a viewer may not acknowledge"),
            ("ENRICH", "unknown_ward", "no kelurahan '36.72.99.9999'")]
