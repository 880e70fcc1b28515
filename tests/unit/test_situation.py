"""Unit tests of processors.situation: every rule at and just below its threshold, exact
situation records, rollups and change detection.

Wards are real kelurahan of Kecamatan Gerogol (core/data/cilegon_wards.csv); asset ids,
asset counts (lamps_total, containers_total) and readings are synthetic test values.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema
import pytest

from processors.situation import (
    ResponseTotals,
    WardAssetCounts,
    response_totals,
    rollup,
    rollup_states,
    situation_changed,
    summarize_ward,
    totals_from_situation,
    ward_reasons,
)
from processors.state import WardState, apply, to_ms
from processors.thresholds import LevelSteps, Thresholds

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)  # aligned to 5-min windows
DEFAULTS = Thresholds()
NO_OPEN_COUNT = Thresholds(open_incidents=LevelSteps())  # isolates burst rules
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas/avro/org.cityops.SituationEvent.avsc"


def _ward(code: str, name: str) -> dict[str, Any]:
    return {
        "kelurahan_code": code,
        "kelurahan_name": name,
        "kecamatan_code": "36.72.06",
        "kecamatan_name": "Gerogol",
        "centroid_lat": 0.0,  # not used by the processors
        "centroid_lon": 0.0,
        "postal_code": None,
        "bps_code": None,
        "population": None,
        "area_km2": None,
        "boundary_geojson": None,
    }


KOTASARI = _ward("36.72.06.1001", "Kotasari")
GROGOL = _ward("36.72.06.1002", "Grogol")
RAWA_ARUM = _ward("36.72.06.1003", "Rawa Arum")
GEREM = _ward("36.72.06.1004", "Gerem")


def at(seconds: float) -> datetime:
    return T0 + timedelta(milliseconds=round(seconds * 1000))


class Events:
    """Builds enriched events with fresh event ids and applies them to one state."""

    def __init__(self, thresholds: Thresholds = DEFAULTS) -> None:
        self.state = WardState()
        self.thresholds = thresholds
        self.counter = 0

    def _apply(self, kind: str, event: dict[str, Any], seconds: float, **extra: Any) -> None:
        self.counter += 1
        event["event_id"] = f"00000000-0000-4000-8000-{self.counter:012d}"
        event["occurred_at"] = at(seconds)
        enriched = {
            "event": event,
            "ward_code": "36.72.06.1002",
            "kelurahan_name": "Grogol",
            "kecamatan_code": "36.72.06",
            "kecamatan_name": "Gerogol",
            "ingested_at": at(seconds),
            "ward_resolution": "WARD_CODE",
            **extra,
        }
        result = apply(self.state, kind, enriched, self.thresholds)
        assert result.status == "applied"

    def incident(
        self,
        seconds: float,
        incident_id: str,
        status: str = "REPORTED",
        category: str = "CRIME",
        severity: str = "MODERATE",
    ) -> Events:
        event = {
            "incident_id": incident_id,
            "source_system": "POLICE",
            "category": category,
            "severity": severity,
            "status": status,
            "ward_code": None,
            "latitude": None,
            "longitude": None,
            "rw": None,
            "rt": None,
            "description": "",
        }
        self._apply("incident", event, seconds)
        return self

    def lamp(
        self,
        seconds: float,
        lamp_id: str,
        status: str = "DEFECTIVE_LAMP",
        kind: str = "STATUS",
        cabinet: str | None = None,
    ) -> Events:
        event = {
            "lamp_id": lamp_id,
            "cabinet_id": None,
            "report_kind": kind,
            "lamp_status": status,
            "power_state": "UNKNOWN",
            "dimming_level": None,
            "energy_kwh": None,
            "ward_code": None,
            "latitude": None,
            "longitude": None,
        }
        self._apply("lighting", event, seconds, cabinet_id=cabinet, location_name=None)
        return self

    def waste(
        self,
        seconds: float,
        container_id: str,
        kind: str = "FILL_LEVEL",
        fill: float | None = None,
        temperature: float | None = None,
    ) -> Events:
        event = {
            "container_id": container_id,
            "site_kind": "CONTAINER",
            "report_kind": kind,
            "filling_level": fill,
            "temperature_celsius": temperature,
            "collected_weight_kg": None,
            "ward_code": None,
            "latitude": None,
            "longitude": None,
        }
        self._apply("waste", event, seconds, location_name=None, container_capacity_l=None)
        return self

    def summary(
        self,
        now_seconds: float,
        lamps: int = 0,
        containers: int = 0,
        ward: dict[str, Any] = GROGOL,
        kind: str = "CHANGE",
        sequence: int = 1,
        caused_by: str | None = None,
    ) -> dict[str, Any]:
        return summarize_ward(
            self.state,
            ward,
            WardAssetCounts(lamps, containers),
            self.thresholds,
            at(now_seconds),
            kind,
            sequence,
            caused_by,
        )

    def verdict(
        self, now_seconds: float, lamps: int = 0, containers: int = 0
    ) -> tuple[str, list[str]]:
        record = self.summary(now_seconds, lamps, containers)
        return record["level"], record["reasons"]


# --------------------------------------------------------------------------------------------
# whole records


def test_summary_of_an_empty_state_is_exact() -> None:
    record = Events().summary(12.345, lamps=125, containers=12, kind="SNAPSHOT", sequence=0)
    assert record == {
        "scope": "KELURAHAN",
        "scope_code": "36.72.06.1002",
        "scope_name": "Grogol",
        "kecamatan_code": "36.72.06",
        "kecamatan_name": "Gerogol",
        "kind": "SNAPSHOT",
        "level": "NORMAL",
        "reasons": [],
        "emitted_at": at(12.345),
        "last_event_at": None,
        "caused_by_event_id": None,
        "sequence": 0,
        "open_incidents": 0,
        "open_incidents_by_category": {},
        "open_incidents_by_severity": {},
        "new_incidents_in_window": 0,
        "window_start": at(0),
        "window_end": at(300),
        "lamps_total": 125,
        "lamps_out": 0,
        "lamps_working_ratio": 1.0,
        "cabinet_alerts": [],
        "new_lamp_faults_in_window": 0,
        "containers_total": 12,
        "containers_full": 0,
        "containers_fire_risk": 0,
        "containers_overdue": 0,
        "overflow_reports_in_window": 0,
        "mean_dispatch_seconds": None,
        "mean_on_scene_seconds": None,
        "dispatch_count": 0,
        "on_scene_count": 0,
        "events_folded": 0,
        # the command center's fields: filled in by the ward step (tests/unit/test_operations.py)
        "acknowledged_by": None,
        "acknowledged_at": None,
        "sla_overdue": 0,
        "cases": [],
        "ward_timeline": [],
    }


def _busy_ward() -> Events:
    events = Events()
    events.incident(700, "I-1", category="FLOOD", severity="SEVERE")
    events.incident(750, "I-2", category="FLOOD", severity="MODERATE")
    events.incident(760, "I-1", "DISPATCHED", category="FLOOD", severity="SEVERE")
    events.waste(800, "C-01", fill=0.95)
    events.waste(810, "C-02", fill=0.95)
    events.waste(820, "C-03", temperature=65.0)
    for n in range(15):
        events.lamp(910 + n, f"PJU-{n + 1:03d}", cabinet="CAB-07" if n < 4 else None)
    events.incident(950, "I-3", category="FLOOD", severity="MINOR")
    events.waste(990, "C-04", "OVERFLOW_COMPLAINT")
    return events


def test_summary_of_a_busy_ward_is_exact() -> None:
    record = _busy_ward().summary(1000, lamps=125, containers=12, sequence=42, caused_by="e-1")
    assert record == {
        "scope": "KELURAHAN",
        "scope_code": "36.72.06.1002",
        "scope_name": "Grogol",
        "kecamatan_code": "36.72.06",
        "kecamatan_name": "Gerogol",
        "kind": "CHANGE",
        "level": "ALERT",
        "reasons": [
            "1 container at fire risk (C-03)",
            "1 open SEVERE incident (FLOOD)",
            "12% of lamps out (15 of 125)",
            "3 flood reports in 20 min",
            "cabinet CAB-07: 4 lamp faults in 10 min (possible power loss or cable theft)",
            "3 open incidents",
        ],
        "emitted_at": at(1000),
        "last_event_at": at(990),
        "caused_by_event_id": "e-1",
        "sequence": 42,
        "open_incidents": 3,
        "open_incidents_by_category": {"FLOOD": 3},
        "open_incidents_by_severity": {"MINOR": 1, "MODERATE": 1, "SEVERE": 1},
        "new_incidents_in_window": 1,
        "window_start": at(900),
        "window_end": at(1200),
        "lamps_total": 125,
        "lamps_out": 15,
        "lamps_working_ratio": 110 / 125,
        "cabinet_alerts": ["CAB-07"],
        "new_lamp_faults_in_window": 15,
        "containers_total": 12,
        "containers_full": 2,
        "containers_fire_risk": 1,
        "containers_overdue": 0,
        "overflow_reports_in_window": 1,
        "mean_dispatch_seconds": 60.0,
        "mean_on_scene_seconds": None,
        "dispatch_count": 1,
        "on_scene_count": 0,
        "events_folded": 0,
        # the command center's fields: filled in by the ward step (tests/unit/test_operations.py)
        "acknowledged_by": None,
        "acknowledged_at": None,
        "sla_overdue": 0,
        "cases": [],
        "ward_timeline": [],
    }
    assert ward_reasons(_busy_ward().state, WardAssetCounts(125, 12), DEFAULTS, at(1000)) == list(
        zip(["ALERT"] * 5 + ["WATCH"], record["reasons"], strict=True)
    )


def _schema() -> dict[str, Any]:
    schema = fastavro.schema.load_schema(str(SCHEMA_PATH))
    assert isinstance(schema, dict)
    return schema


def test_summary_is_a_valid_situation_event_that_survives_avro_round_trip() -> None:
    schema = _schema()
    record = _busy_ward().summary(1000, lamps=125, containers=12)
    assert list(record) == [field["name"] for field in schema["fields"]]
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record, strict=True)
    buffer.seek(0)
    assert fastavro.schemaless_reader(buffer, schema, schema) == record


def test_evaluation_time_is_the_later_of_now_and_the_watermark() -> None:
    events = Events().incident(650, "I-1")
    ahead_of_clock = events.summary(100)
    assert (ahead_of_clock["window_start"], ahead_of_clock["window_end"]) == (at(600), at(900))
    assert ahead_of_clock["new_incidents_in_window"] == 1
    later = events.summary(905)
    assert (later["window_start"], later["new_incidents_in_window"]) == (at(900), 0)


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="kind must be one of CHANGE, SNAPSHOT, got 'DELTA'"):
        Events().summary(0, kind="DELTA")


# --------------------------------------------------------------------------------------------
# rules at and just below their thresholds (default thresholds)


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (2, ("NORMAL", [])),
        (3, ("WATCH", ["3 open incidents"])),
        (5, ("WATCH", ["5 open incidents"])),
        (6, ("ALERT", ["6 open incidents"])),
        (11, ("ALERT", ["11 open incidents"])),
        (12, ("CRITICAL", ["12 open incidents"])),
    ],
)
def test_open_incident_count(count: int, expected: tuple[str, list[str]]) -> None:
    events = Events()
    for n in range(count):
        events.incident(n, f"I-{n}")
    assert events.verdict(20) == expected


def test_open_extreme_incident_is_critical_until_resolved() -> None:
    events = Events().incident(0, "I-1", category="FIRE", severity="EXTREME")
    assert events.verdict(10) == ("CRITICAL", ["1 open EXTREME incident (FIRE)"])
    events.incident(20, "I-1", "RESOLVED", category="FIRE", severity="EXTREME")
    assert events.verdict(30) == ("NORMAL", [])


def test_open_severe_incidents_are_an_alert_and_moderate_is_not() -> None:
    events = Events()
    events.incident(0, "I-1", category="FLOOD", severity="SEVERE")
    events.incident(1, "I-2", category="CRIME", severity="SEVERE")
    events.incident(2, "I-3", category="CRIME", severity="MODERATE")
    assert events.verdict(10) == (
        "ALERT",
        ["2 open SEVERE incidents (CRIME, FLOOD)", "3 open incidents"],
    )


def test_flood_burst_counts_the_four_windows_of_the_20_minute_lookback() -> None:
    events = Events(NO_OPEN_COUNT)
    for n, seconds in enumerate((0, 400, 1100)):
        events.incident(seconds, f"F-{n}", category="FLOOD")
    assert events.verdict(1199.999) == ("ALERT", ["3 flood reports in 20 min"])
    # At 1200 s window 0 leaves the lookback: two reports remain.
    assert events.verdict(1200) == ("WATCH", ["2 flood reports in 20 min"])
    assert events.verdict(1500) == ("NORMAL", [])


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (1, ("NORMAL", [])),
        (2, ("WATCH", ["2 flood reports in 20 min"])),
        (3, ("ALERT", ["3 flood reports in 20 min"])),
        (5, ("ALERT", ["5 flood reports in 20 min"])),
        (6, ("CRITICAL", ["6 flood reports in 20 min"])),
    ],
)
def test_flood_burst_levels(count: int, expected: tuple[str, list[str]]) -> None:
    events = Events(NO_OPEN_COUNT)
    for n in range(count):
        events.incident(n * 10, f"F-{n}", category="FLOOD")
    assert events.verdict(100) == expected


@pytest.mark.parametrize(
    ("category", "count", "expected"),
    [
        ("FIRE", 1, ("NORMAL", [])),
        ("FIRE", 2, ("ALERT", ["2 fire reports in 30 min"])),
        ("FIRE", 4, ("CRITICAL", ["4 fire reports in 30 min"])),
        ("TRAFFIC_ACCIDENT", 2, ("NORMAL", [])),
        ("TRAFFIC_ACCIDENT", 3, ("WATCH", ["3 traffic accident reports in 1 h"])),
        ("TRAFFIC_ACCIDENT", 5, ("ALERT", ["5 traffic accident reports in 1 h"])),
        ("CRIME", 9, ("NORMAL", [])),  # no burst rule for crime
    ],
)
def test_category_bursts(category: str, count: int, expected: tuple[str, list[str]]) -> None:
    events = Events(NO_OPEN_COUNT)
    for n in range(count):
        events.incident(n, f"I-{n}", category=category, severity="MINOR")
    assert events.verdict(100) == expected


@pytest.mark.parametrize(
    ("total", "out", "expected"),
    [
        (61, 3, ("NORMAL", [])),  # 4.9 %
        (60, 3, ("WATCH", ["5% of lamps out (3 of 60)"])),
        (40, 2, ("NORMAL", [])),  # 5 % but fewer than 3 lamps out
        (60, 5, ("WATCH", ["8.3% of lamps out (5 of 60)"])),
        (60, 6, ("ALERT", ["10% of lamps out (6 of 60)"])),
        (125, 15, ("ALERT", ["12% of lamps out (15 of 125)"])),
        (60, 14, ("ALERT", ["23.3% of lamps out (14 of 60)"])),
        (60, 15, ("CRITICAL", ["25% of lamps out (15 of 60)"])),
        (0, 3, ("NORMAL", [])),  # no registry: no ratio
    ],
)
def test_lamps_out_ratio(total: int, out: int, expected: tuple[str, list[str]]) -> None:
    events = Events()
    for n in range(out):
        events.lamp(n, f"PJU-{n}")
    record = events.summary(100, lamps=total)
    assert (record["level"], record["reasons"]) == expected
    assert record["lamps_working_ratio"] == (None if total == 0 else (total - out) / total)


def test_cabinet_alert_needs_three_distinct_lamps_within_ten_minutes() -> None:
    events = Events()
    for n in range(3):
        events.lamp(n * 100, f"PJU-{n}", "NO_POWER", "FAULT", cabinet="CAB-07")
    alert = events.summary(600, lamps=1000)
    assert (alert["level"], alert["reasons"], alert["cabinet_alerts"]) == (
        "ALERT",
        ["cabinet CAB-07: 3 lamp faults in 10 min (possible power loss or cable theft)"],
        ["CAB-07"],
    )
    expired = events.summary(600.001, lamps=1000)  # the fault at 0 s left the window
    assert (expired["level"], expired["cabinet_alerts"]) == ("NORMAL", [])


def test_repeated_faults_of_one_lamp_count_once_for_its_cabinet() -> None:
    events = Events()
    events.lamp(0, "PJU-1", "NO_POWER", "FAULT", cabinet="CAB-07")
    events.lamp(10, "PJU-1", "NO_POWER", "FAULT", cabinet="CAB-07")
    events.lamp(20, "PJU-2", "NO_POWER", "FAULT", cabinet="CAB-07")
    events.lamp(30, "PJU-3", "NO_POWER", "FAULT", cabinet="CAB-08")
    record = events.summary(60, lamps=1000)
    assert (record["level"], record["cabinet_alerts"]) == ("NORMAL", [])
    assert record["new_lamp_faults_in_window"] == 4


@pytest.mark.parametrize(
    ("total", "full", "expected"),
    [
        (20, 2, ("NORMAL", [])),
        (20, 3, ("WATCH", ["3 containers full (15% of 20)"])),
        (7, 2, ("NORMAL", [])),  # 28.5 %
        (6, 2, ("WATCH", ["2 containers full (33.3% of 6)"])),
        (2, 1, ("NORMAL", [])),  # 50 % but a single container
        (20, 9, ("WATCH", ["9 containers full (45% of 20)"])),
        (20, 10, ("ALERT", ["10 containers full (50% of 20)"])),
        (10, 6, ("ALERT", ["6 containers full (60% of 10)"])),
        (0, 3, ("WATCH", ["3 containers full"])),  # no registry: count rule only
    ],
)
def test_containers_full(total: int, full: int, expected: tuple[str, list[str]]) -> None:
    events = Events()
    for n in range(full):
        events.waste(n, f"C-{n:02d}", fill=0.9)  # exactly the full level
    events.waste(50, "C-99", fill=0.8999)
    assert events.verdict(100, containers=total) == expected


def test_container_fire_risk_by_temperature() -> None:
    hot = Events().waste(0, "TPS-01", temperature=60.0)
    assert hot.verdict(10) == ("ALERT", ["1 container at fire risk (TPS-01)"])
    warm = Events().waste(0, "TPS-01", temperature=59.9)
    assert warm.verdict(10) == ("NORMAL", [])


def test_container_fire_risk_report_holds_for_two_hours() -> None:
    events = Events().waste(0, "TPS-01", "FIRE_RISK")
    assert events.verdict(7200) == ("ALERT", ["1 container at fire risk (TPS-01)"])
    assert events.verdict(7200.001) == ("NORMAL", [])


def test_fire_risk_reason_lists_at_most_three_containers() -> None:
    events = Events()
    for n in range(4):
        events.waste(n, f"C-{n + 1}", temperature=70.0)
    assert events.verdict(10) == (
        "ALERT",
        ["4 containers at fire risk (C-1, C-2, C-3, +1 more)"],
    )


def test_container_overdue_after_a_day_full_without_collection() -> None:
    events = Events().waste(0, "C-1", fill=0.95)
    assert events.verdict(86_399.999) == ("NORMAL", [])
    assert events.verdict(86_400) == ("WATCH", ["1 full container overdue for collection (C-1)"])
    record = events.summary(86_400)
    assert (record["containers_full"], record["containers_overdue"]) == (1, 1)
    events.waste(86_000, "C-1", "COLLECTION")
    record = events.summary(86_400)
    assert (record["level"], record["containers_full"], record["containers_overdue"]) == (
        "NORMAL",
        0,
        0,
    )


def test_overdue_counts_from_the_first_full_reading_after_the_last_collection() -> None:
    events = Events()
    events.waste(0, "C-1", fill=0.95)
    events.waste(100, "C-1", "COLLECTION")
    events.waste(200, "C-1", fill=0.91)
    events.waste(250, "C-1", fill=0.99)
    assert events.verdict(86_599.999) == ("NORMAL", [])
    assert events.verdict(86_600) == ("WATCH", ["1 full container overdue for collection (C-1)"])


def test_reasons_are_ordered_by_level_then_text() -> None:
    events = Events()
    events.incident(0, "I-1", category="FIRE", severity="EXTREME")
    events.incident(1, "I-2", category="MEDICAL", severity="SEVERE")
    events.incident(2, "I-3", category="CRIME", severity="MINOR")
    events.waste(3, "C-1", temperature=80.0)
    assert events.verdict(10) == (
        "CRITICAL",
        [
            "1 open EXTREME incident (FIRE)",
            "1 container at fire risk (C-1)",
            "1 open SEVERE incident (MEDICAL)",
            "3 open incidents",
        ],
    )


# --------------------------------------------------------------------------------------------
# change detection


def test_situation_changed_ignores_bookkeeping_fields_only() -> None:
    events = _busy_ward()
    first = events.summary(1000, lamps=125, containers=12, sequence=1, caused_by="a")
    again = events.summary(
        1010, lamps=125, containers=12, kind="SNAPSHOT", sequence=2, caused_by=None
    )
    again["last_event_at"] = at(999)
    assert situation_changed(None, first) is True
    assert situation_changed(first, again) is False
    assert situation_changed(first, again | {"lamps_out": 16}) is True
    assert situation_changed(first, again | {"reasons": []}) is True
    assert situation_changed(first, {k: v for k, v in again.items() if k != "level"}) is True
    # A new window is a change: the windowed counts describe a different period.
    assert situation_changed(first, events.summary(1200, lamps=125, containers=12)) is True


# --------------------------------------------------------------------------------------------
# rollups


def test_response_totals_add_and_serialise() -> None:
    totals = ResponseTotals(60_000, 1, 0, 0) + ResponseTotals(400_000, 2, 900_000, 1)
    assert totals == ResponseTotals(460_000, 3, 900_000, 1)
    assert totals.mean_dispatch_seconds == 460_000 / 3 / 1000
    assert totals.mean_on_scene_seconds == 900.0
    assert ResponseTotals().mean_dispatch_seconds is None
    assert totals.to_dict() == {
        "dispatch_ms_sum": 460_000,
        "dispatch_count": 3,
        "on_scene_ms_sum": 900_000,
        "on_scene_count": 1,
    }
    assert ResponseTotals.from_dict(totals.to_dict()) == totals


def _gerogol() -> list[tuple[Events, dict[str, Any], WardAssetCounts]]:
    grogol = Events()
    grogol.incident(0, "I-A1").incident(60, "I-A1", "DISPATCHED")
    for n in range(15):
        grogol.lamp(920 + n, f"PJU-{n:03d}")
    kotasari = Events()
    kotasari.incident(0, "I-B1", category="FIRE", severity="EXTREME")
    kotasari.incident(100, "I-B2", category="MEDICAL", severity="MINOR")
    kotasari.incident(200, "I-B2", "DISPATCHED", category="MEDICAL", severity="MINOR")
    kotasari.incident(300, "I-B1", "DISPATCHED", category="FIRE", severity="EXTREME")
    kotasari.incident(400, "I-B2", "RESOLVED", category="MEDICAL", severity="MINOR")
    kotasari.incident(900, "I-B1", "ON_SCENE", category="FIRE", severity="EXTREME")
    rawa_arum = Events().waste(950, "C-R1", "OVERFLOW_COMPLAINT")
    gerem = Events()
    for n in range(3):
        gerem.waste(n, f"C-G{n}", fill=0.97)
    return [
        (grogol, GROGOL, WardAssetCounts(125, 0)),
        (kotasari, KOTASARI, WardAssetCounts(40, 0)),
        (rawa_arum, RAWA_ARUM, WardAssetCounts(30, 5)),
        (gerem, GEREM, WardAssetCounts(0, 8)),
    ]


def _member_situations(now_seconds: float = 1000) -> list[dict[str, Any]]:
    return [
        events.summary(now_seconds, registry.lamps_total, registry.containers_total, ward)
        for events, ward, registry in _gerogol()
    ]


def _member_totals() -> dict[str, ResponseTotals]:
    return {ward["kelurahan_code"]: response_totals(e.state) for e, ward, _ in _gerogol()}


def test_kecamatan_rollup_is_exact() -> None:
    members = _member_situations()
    assert [m["level"] for m in members] == ["ALERT", "CRITICAL", "NORMAL", "WATCH"]
    # The naive mean of means would be (60 + 200) / 2 = 130 s; the exact mean is 460 s / 3.
    assert [m["mean_dispatch_seconds"] for m in members] == [60.0, 200.0, None, None]
    record = rollup(
        "KECAMATAN",
        "36.72.06",
        "Gerogol",
        members,
        at(1001),
        7,
        totals_by_ward=_member_totals(),
    )
    assert record == {
        "scope": "KECAMATAN",
        "scope_code": "36.72.06",
        "scope_name": "Gerogol",
        "kecamatan_code": "36.72.06",
        "kecamatan_name": "Gerogol",
        "kind": "CHANGE",
        "level": "CRITICAL",
        "reasons": [
            "Kelurahan Kotasari: CRITICAL (1 open EXTREME incident (FIRE))",
            "Kelurahan Grogol: ALERT (12% of lamps out (15 of 125))",
            "Kelurahan Gerem: WATCH (3 containers full (37.5% of 8))",
        ],
        "emitted_at": at(1001),
        "last_event_at": at(950),
        "caused_by_event_id": None,
        "sequence": 7,
        "open_incidents": 2,
        "open_incidents_by_category": {"CRIME": 1, "FIRE": 1},
        "open_incidents_by_severity": {"EXTREME": 1, "MODERATE": 1},
        "new_incidents_in_window": 0,
        "window_start": at(900),
        "window_end": at(1200),
        "lamps_total": 195,
        "lamps_out": 15,
        "lamps_working_ratio": 180 / 195,
        "cabinet_alerts": [],
        "new_lamp_faults_in_window": 15,
        "containers_total": 13,
        "containers_full": 3,
        "containers_fire_risk": 0,
        "containers_overdue": 0,
        "overflow_reports_in_window": 1,
        "mean_dispatch_seconds": 460_000 / 3 / 1000,
        "mean_on_scene_seconds": 900.0,
        "dispatch_count": 3,
        "on_scene_count": 1,
        "events_folded": 0,
        # the command center's fields: filled in by the ward step (tests/unit/test_operations.py)
        "acknowledged_by": None,
        "acknowledged_at": None,
        "sla_overdue": 0,
        "cases": [],
        "ward_timeline": [],
    }
    fastavro.schemaless_writer(io.BytesIO(), _schema(), record, strict=True)


def test_rollup_reasons_are_limited_and_say_how_many_were_left_out() -> None:
    record = rollup(
        "CITY",
        "36.72",
        "Kota Cilegon",
        _member_situations(),
        at(1001),
        8,
        totals_by_ward=_member_totals(),
        kind="SNAPSHOT",
        max_reasons=1,
    )
    assert record["reasons"] == [
        "Kelurahan Kotasari: CRITICAL (1 open EXTREME incident (FIRE))",
        "2 more kelurahan above NORMAL",
    ]
    assert (record["scope"], record["kecamatan_code"], record["kecamatan_name"]) == (
        "CITY",
        None,
        None,
    )
    assert record["kind"] == "SNAPSHOT"


def test_rollup_counts_windowed_figures_only_from_members_in_the_newest_window() -> None:
    members = _member_situations()
    stale = Events().waste(400, "C-R1", "OVERFLOW_COMPLAINT").summary(450, 30, 5, RAWA_ARUM)
    assert (stale["window_start"], stale["overflow_reports_in_window"]) == (at(300), 1)
    members[2] = stale
    record = rollup(
        "KECAMATAN", "36.72.06", "Gerogol", members, at(1001), 9, totals_by_ward=_member_totals()
    )
    assert (record["window_start"], record["overflow_reports_in_window"]) == (at(900), 0)
    assert record["new_lamp_faults_in_window"] == 15


def test_rollup_weights_means_by_the_counts_carried_in_the_situations() -> None:
    members = _member_situations()
    assert [(m["dispatch_count"], m["on_scene_count"]) for m in members] == [
        (1, 0),
        (2, 1),
        (0, 0),
        (0, 0),
    ]
    assert [totals_from_situation(m) for m in members] == list(_member_totals().values())
    with_totals = rollup(
        "KECAMATAN", "36.72.06", "Gerogol", members, at(1001), 1, totals_by_ward=_member_totals()
    )
    from_counts = rollup("KECAMATAN", "36.72.06", "Gerogol", members, at(1001), 1)
    assert from_counts == with_totals
    assert from_counts["mean_dispatch_seconds"] == 460_000 / 3 / 1000


def test_mean_without_count_cannot_be_weighted() -> None:
    old_record = _member_situations()[1]
    del old_record["dispatch_count"]
    with pytest.raises(
        ValueError,
        match=re.escape(
            "situation 36.72.06.1001: mean_dispatch_seconds without dispatch_count, so it"
        ),
    ):
        rollup("KECAMATAN", "36.72.06", "Gerogol", [old_record], at(1001), 1)


def test_rollup_of_no_members_and_bad_scope() -> None:
    record = rollup("CITY", "36.72", "Kota Cilegon", [], at(5), 1)
    assert (record["level"], record["reasons"], record["open_incidents"]) == ("NORMAL", [], 0)
    assert (record["window_start"], record["window_end"]) == (at(5), at(5))
    assert (record["lamps_working_ratio"], record["mean_dispatch_seconds"]) == (None, None)
    assert record["last_event_at"] is None
    with pytest.raises(ValueError, match="scope must be one of KECAMATAN, CITY, got 'KELURAHAN'"):
        rollup("KELURAHAN", "36.72.06.1002", "Grogol", [], at(5), 1)


def test_rollup_states_equals_rollup_of_summaries() -> None:
    members = _gerogol()
    direct = rollup_states(
        "KECAMATAN",
        "36.72.06",
        "Gerogol",
        [(events.state, ward, registry) for events, ward, registry in members],
        DEFAULTS,
        at(1000),
        3,
    )
    via_situations = rollup(
        "KECAMATAN",
        "36.72.06",
        "Gerogol",
        _member_situations(),
        at(1000),
        3,
        totals_by_ward=_member_totals(),
    )
    assert direct == via_situations
    assert to_ms(direct["emitted_at"]) == to_ms(at(1000))
