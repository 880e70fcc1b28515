"""The synthetic city feed and the scenarios: determinism, record shapes, lifecycles, targets."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cityops.assets import generate_asset_registry
from cityops.scenarios import (
    FLOOD_KECAMATAN,
    FLOOD_WARDS,
    POWER_LOSS_CABINET,
    SCENARIOS,
    SURGE_WARDS,
    get_scenario,
    scenario_names,
)
from cityops.simulator import (
    INCIDENT_HOURLY_FACTOR,
    INCIDENT_SCHEMA,
    LIGHTING_SCHEMA,
    MAIN_ROAD_WARDS,
    WASTE_DENSITY_KG_PER_L,
    WASTE_SCHEMA,
    WIB,
    CitySimulator,
    PointSampler,
    SimEvent,
    lamp_schedule,
)
from core.reference_data import load_ward_records
from core.vocabulary import ASSET_REGISTRY_SEED, level_rank
from processors.enrich import (
    EnrichmentRules,
    ReferenceData,
    enrich_incident,
    enrich_lighting,
    enrich_waste,
)
from processors.situation import WardAssetCounts, summarize_ward
from processors.state import WardState, apply
from processors.thresholds import Thresholds
from schemas.codec import decode, default_catalog, encode, validate

pytestmark = pytest.mark.unit

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
"""A Monday, 22:00 WIB: lamps on, so the first events include energy readings."""


@pytest.fixture(scope="module")
def wards() -> list[dict[str, Any]]:
    return load_ward_records()


@pytest.fixture(scope="module")
def assets(wards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return generate_asset_registry(wards, seed=ASSET_REGISTRY_SEED)


@pytest.fixture(scope="module")
def points(wards: list[dict[str, Any]]) -> PointSampler:
    return PointSampler(wards)


@pytest.fixture(scope="module")
def busy_feed(
    wards: list[dict[str, Any]], assets: list[dict[str, Any]], points: PointSampler
) -> list[SimEvent]:
    """34 simulated hours at a low rate with many incidents: every scheduled process fires."""
    sim = CitySimulator(wards, assets, 5, START, 0.05, incidents_per_hour=30, points=points)
    return sim.take(6000)


def _field_names(schema: str) -> list[str]:
    return [f["name"] for f in default_catalog().current(schema).writer_schema["fields"]]


# --- determinism --------------------------------------------------------------------------------


def test_same_seed_gives_identical_first_500_events(
    wards: list[dict[str, Any]], assets: list[dict[str, Any]]
) -> None:
    first = CitySimulator(wards, assets, 11, START, 20.0).take(500)
    second = CitySimulator(wards, assets, 11, START, 20.0).take(500)
    assert first == second


def test_events_restart_from_the_beginning_on_every_call(
    wards: list[dict[str, Any]], assets: list[dict[str, Any]], points: PointSampler
) -> None:
    sim = CitySimulator(wards, assets, 11, START, 20.0, points=points)
    taken = sim.take(300)
    assert list(itertools.islice(sim.events(), 300)) == taken
    assert sim.take(300) == taken


def test_different_seeds_give_different_events(
    wards: list[dict[str, Any]], assets: list[dict[str, Any]], points: PointSampler
) -> None:
    a = CitySimulator(wards, assets, 11, START, 20.0, points=points).take(500)
    b = CitySimulator(wards, assets, 12, START, 20.0, points=points).take(500)
    assert {e.record["event_id"] for e in a} & {e.record["event_id"] for e in b} == set()
    assert [e.at for e in a] != [e.at for e in b]


def test_naive_start_and_bad_rate_are_refused(
    wards: list[dict[str, Any]], assets: list[dict[str, Any]], points: PointSampler
) -> None:
    with pytest.raises(ValueError, match="naive"):
        CitySimulator(wards, assets, 1, datetime(2026, 3, 2, 15, 0), 1.0, points=points)
    with pytest.raises(ValueError, match=r"rate_per_s=0\.0"):
        CitySimulator(wards, assets, 1, START, 0.0, points=points)


def test_start_is_truncated_to_the_millisecond_and_converted_to_utc(
    wards: list[dict[str, Any]], assets: list[dict[str, Any]], points: PointSampler
) -> None:
    local = datetime(2026, 3, 2, 22, 0, 0, 123456, tzinfo=WIB)
    sim = CitySimulator(wards, assets, 1, local, 1.0, points=points)
    assert sim.start == datetime(2026, 3, 2, 15, 0, 0, 123000, tzinfo=UTC)
    assert sim.start.utcoffset() == timedelta(0)


# --- time -----------------------------------------------------------------------------------------


def test_events_are_in_event_time_order_at_the_requested_rate(
    wards: list[dict[str, Any]], assets: list[dict[str, Any]], points: PointSampler
) -> None:
    events = CitySimulator(wards, assets, 3, START, 20.0, points=points).take(20_000)
    times = [e.at for e in events]
    assert times == sorted(times)
    assert times[0] > START
    assert all(e.at == e.record["occurred_at"] for e in events)
    assert all(e.at.microsecond % 1000 == 0 for e in events)
    span_s = (times[-1] - START).total_seconds()
    # Mean 1000 s; the standard deviation of the sum of 20,000 gaps is about 7 s.
    assert 950.0 < span_s < 1050.0


def test_hourly_incident_factors_average_one() -> None:
    assert len(INCIDENT_HOURLY_FACTOR) == 24
    assert sum(INCIDENT_HOURLY_FACTOR) == pytest.approx(24.0)


# --- records --------------------------------------------------------------------------------------


def test_every_record_validates_and_round_trips(busy_feed: list[SimEvent]) -> None:
    for event in busy_feed:
        assert list(event.record) == _field_names(event.schema)
        validate(event.schema, event.record)
        decoded = decode(encode(event.schema, event.record), expected=event.schema)
        assert decoded.record == event.record


def test_the_busy_feed_covers_every_kind_of_report(busy_feed: list[SimEvent]) -> None:
    kinds = {
        (e.schema, e.record.get("report_kind") or e.record.get("status")) for e in busy_feed
    }
    assert kinds == {
        (INCIDENT_SCHEMA, "REPORTED"),
        (INCIDENT_SCHEMA, "DISPATCHED"),
        (INCIDENT_SCHEMA, "ON_SCENE"),
        (INCIDENT_SCHEMA, "RESOLVED"),
        (INCIDENT_SCHEMA, "CANCELLED"),
        (LIGHTING_SCHEMA, "STATUS"),
        (LIGHTING_SCHEMA, "FAULT"),
        (LIGHTING_SCHEMA, "ENERGY_READING"),
        (WASTE_SCHEMA, "FILL_LEVEL"),
        (WASTE_SCHEMA, "COLLECTION"),
        (WASTE_SCHEMA, "OVERFLOW_COMPLAINT"),
    }


def test_event_ids_are_unique(busy_feed: list[SimEvent]) -> None:
    ids = [e.record["event_id"] for e in busy_feed]
    assert len(set(ids)) == len(ids)


_LIFECYCLES = (
    ("REPORTED", "DISPATCHED", "ON_SCENE", "RESOLVED"),
    ("REPORTED", "CANCELLED"),
    ("REPORTED", "DISPATCHED", "CANCELLED"),
)
_PREFIXES = {path[:n] for path in _LIFECYCLES for n in range(1, len(path) + 1)}


def test_incident_lifecycles_are_ordered_and_consistent(busy_feed: list[SimEvent]) -> None:
    by_incident: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in busy_feed:
        if event.schema == INCIDENT_SCHEMA:
            by_incident[event.record["incident_id"]].append(event.record)
    complete: Counter[tuple[str, ...]] = Counter()
    for records in by_incident.values():
        statuses = tuple(r["status"] for r in records)
        assert statuses in _PREFIXES
        times = [r["occurred_at"] for r in records]
        assert all(a < b for a, b in itertools.pairwise(times))
        fixed = {
            (r["source_system"], r["category"], r["severity"], r["ward_code"], r["latitude"],
             r["longitude"], r["rw"], r["rt"])
            for r in records
        }
        assert len(fixed) == 1
        if statuses in _LIFECYCLES:
            complete[statuses] += 1
    assert set(complete) == set(_LIFECYCLES)


def test_incident_locations_resolve_to_the_intended_ward(
    busy_feed: list[SimEvent], points: PointSampler
) -> None:
    for event in busy_feed:
        record = event.record
        if event.schema != INCIDENT_SCHEMA:
            continue
        if record["source_system"] in ("CITIZEN_APP", "CCTV"):
            assert record["ward_code"] is None
            assert record["latitude"] is not None
        else:
            assert record["ward_code"] is not None
        if record["latitude"] is not None:
            location = points.locator.locate(record["latitude"], record["longitude"])
            assert location is not None
            assert location.method == "POINT_IN_POLYGON"
            if record["ward_code"] is not None:
                assert location.ward_code == record["ward_code"]
        if record["rw"] is not None:
            assert len(record["rw"]) == 3
            assert len(record["rt"]) == 3


def test_lamps_follow_the_day_night_schedule(busy_feed: list[SimEvent]) -> None:
    for event in busy_feed:
        record = event.record
        if event.schema != LIGHTING_SCHEMA:
            continue
        power, dimming = lamp_schedule(event.at.astimezone(WIB))
        if record["lamp_status"] == "OK":
            assert (record["power_state"], record["dimming_level"]) == (power, dimming)
        else:
            assert record["report_kind"] == "FAULT"
        if record["report_kind"] == "ENERGY_READING":
            assert power != "OFF"
            assert record["energy_kwh"] >= 0.0
        else:
            assert record["energy_kwh"] is None


def test_containers_fill_up_until_collected(
    busy_feed: list[SimEvent], assets: list[dict[str, Any]]
) -> None:
    capacity = {a["asset_id"]: a["container_capacity_l"] for a in assets}
    last_fill: dict[str, float] = {}
    for event in busy_feed:
        record = event.record
        if event.schema != WASTE_SCHEMA:
            continue
        site = record["container_id"]
        if record["report_kind"] == "COLLECTION":
            assert record["filling_level"] is None
            assert 0.0 < record["collected_weight_kg"] <= capacity[site] * WASTE_DENSITY_KG_PER_L
            last_fill.pop(site, None)
        elif record["report_kind"] == "FILL_LEVEL":
            fill = record["filling_level"]
            assert 0.0 <= fill <= 1.0
            # Readings are rounded (TPS to 0.01), so "rising" allows for the rounding step.
            assert fill >= last_fill.get(site, 0.0) - 0.005
            last_fill[site] = fill
        elif record["report_kind"] == "OVERFLOW_COMPLAINT":
            assert record["ward_code"] is None
            assert record["latitude"] is not None


def test_main_road_corridor_is_the_line_from_jombang_wetan_to_tamansari(
    wards: list[dict[str, Any]], points: PointSampler
) -> None:
    centroid = {w["kelurahan_name"]: (w["centroid_lat"], w["centroid_lon"]) for w in wards}
    (lat0, lon0), (lat1, lon1) = centroid["Jombang Wetan"], centroid["Tamansari"]
    crossed: list[str] = []
    steps = 2000
    for i in range(steps + 1):
        location = points.locator.locate(
            lat0 + (lat1 - lat0) * i / steps, lon0 + (lon1 - lon0) * i / steps
        )
        assert location is not None
        if not crossed or crossed[-1] != location.ward_code:
            crossed.append(location.ward_code)
    assert tuple(crossed) == MAIN_ROAD_WARDS


# --- scenarios ------------------------------------------------------------------------------------


EXPECTED_COUNTS = {
    "flood": 108,
    "cabinet-power-loss": 36,
    "holiday-waste-surge": 116,
    "night-accidents": 160,
}


def _ward_of(
    event: SimEvent, assets_by_id: Mapping[str, Mapping[str, Any]], points: PointSampler
) -> str:
    record = event.record
    if event.schema == INCIDENT_SCHEMA:
        if record["ward_code"] is not None:
            return str(record["ward_code"])
        location = points.locator.locate(record["latitude"], record["longitude"])
        assert location is not None
        assert location.method == "POINT_IN_POLYGON"
        return location.ward_code
    asset_id = record["lamp_id"] if event.schema == LIGHTING_SCHEMA else record["container_id"]
    return str(assets_by_id[asset_id]["ward_code"])


def test_scenario_names_are_fixed() -> None:
    assert scenario_names() == (
        "flood", "cabinet-power-loss", "holiday-waste-surge", "night-accidents"
    )
    with pytest.raises(KeyError, match="unknown scenario 'storm'"):
        get_scenario("storm")


@pytest.mark.parametrize("name", list(EXPECTED_COUNTS))
def test_scenario_targets_only_its_wards_with_an_exact_count(
    name: str,
    wards: list[dict[str, Any]],
    assets: list[dict[str, Any]],
    points: PointSampler,
) -> None:
    scenario = SCENARIOS[name]
    events = scenario.events(wards, assets, 1, START, points=points)
    assert len(events) == EXPECTED_COUNTS[name]
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert events[0].at >= START
    assets_by_id = {a["asset_id"]: a for a in assets}
    touched = {_ward_of(e, assets_by_id, points) for e in events}
    assert touched == set(scenario.expected_wards)
    ids = [e.record["event_id"] for e in events]
    assert len(set(ids)) == len(ids)
    for event in events:
        assert list(event.record) == _field_names(event.schema)
        validate(event.schema, event.record)


def test_scenarios_are_deterministic_and_shift_with_the_start(
    wards: list[dict[str, Any]], assets: list[dict[str, Any]], points: PointSampler
) -> None:
    for scenario in SCENARIOS.values():
        first = scenario.events(wards, assets, 4, START, points=points)
        again = scenario.events(wards, assets, 4, START, points=points)
        later = scenario.events(wards, assets, 4, START + timedelta(hours=3), points=points)
        other = scenario.events(wards, assets, 5, START, points=points)
        assert first == again
        assert [e.at + timedelta(hours=3) for e in first] == [e.at for e in later]
        assert [e.record["event_id"] for e in first] == [e.record["event_id"] for e in later]
        assert first != other


def test_flood_targets_every_kelurahan_of_the_kecamatan(wards: list[dict[str, Any]]) -> None:
    in_kecamatan = tuple(
        w["kelurahan_code"] for w in wards if w["kecamatan_code"] == FLOOD_KECAMATAN
    )
    assert in_kecamatan == FLOOD_WARDS


def test_flood_reports_are_severe_and_within_six_minutes(
    wards: list[dict[str, Any]], assets: list[dict[str, Any]], points: PointSampler
) -> None:
    events = SCENARIOS["flood"].events(wards, assets, 1, START, points=points)
    reports: dict[str, list[datetime]] = defaultdict(list)
    severities: Counter[str] = Counter()
    statuses: dict[str, list[str]] = defaultdict(list)
    assets_by_id = {a["asset_id"]: a for a in assets}
    for event in events:
        record = event.record
        assert record["category"] == "FLOOD"
        statuses[record["incident_id"]].append(record["status"])
        if record["status"] == "REPORTED":
            reports[_ward_of(event, assets_by_id, points)].append(event.at)
            severities[record["severity"]] += 1
    assert severities == Counter({"EXTREME": 6, "SEVERE": 30})
    assert set(map(tuple, statuses.values())) == {("REPORTED", "DISPATCHED", "ON_SCENE")}
    for times in reports.values():
        assert len(times) == 6
        assert max(times) - min(times) <= timedelta(minutes=6)


def test_power_loss_puts_every_lamp_of_the_cabinet_out(
    wards: list[dict[str, Any]], assets: list[dict[str, Any]], points: PointSampler
) -> None:
    events = SCENARIOS["cabinet-power-loss"].events(wards, assets, 1, START, points=points)
    cabinet_lamps = {a["asset_id"] for a in assets if a.get("cabinet_id") == POWER_LOSS_CABINET}
    assert {e.record["lamp_id"] for e in events} == cabinet_lamps
    assert {(e.record["lamp_status"], e.record["power_state"], e.record["report_kind"])
            for e in events} == {("NO_POWER", "OFF", "FAULT")}
    assert events[-1].at - START <= timedelta(minutes=3)


def test_waste_surge_fills_every_site_above_the_full_level(
    wards: list[dict[str, Any]], assets: list[dict[str, Any]], points: PointSampler
) -> None:
    events = SCENARIOS["holiday-waste-surge"].events(wards, assets, 1, START, points=points)
    latest: dict[str, float] = {}
    complaints: Counter[str] = Counter()
    for event in events:
        record = event.record
        if record["report_kind"] == "FILL_LEVEL":
            latest[record["container_id"]] = record["filling_level"]
        else:
            assert record["report_kind"] == "OVERFLOW_COMPLAINT"
            complaints[record["container_id"]] += 1
    sites = {a["asset_id"] for a in assets
             if a["asset_kind"] != "LAMP" and a["ward_code"] in SURGE_WARDS}
    assert set(latest) == sites
    assert min(latest.values()) >= 0.92
    assert len(complaints) == 22
    assert set(complaints.values()) == {1}


def test_night_accidents_lifecycles(
    wards: list[dict[str, Any]], assets: list[dict[str, Any]], points: PointSampler
) -> None:
    events = SCENARIOS["night-accidents"].events(wards, assets, 1, START, points=points)
    assert Counter(e.record["status"] for e in events) == Counter(
        {"REPORTED": 48, "DISPATCHED": 40, "ON_SCENE": 40, "RESOLVED": 24, "CANCELLED": 8}
    )
    assert {e.record["category"] for e in events} == {"TRAFFIC_ACCIDENT"}
    assert events[-1].at - START <= timedelta(minutes=44)


# --- scenario expectations against the pure processors -----------------------------------------


def _levels_reached(
    events: Sequence[SimEvent],
    wards: list[dict[str, Any]],
    assets: list[dict[str, Any]],
    now_of: Any,
) -> dict[str, str]:
    ref = ReferenceData.build(wards, assets)
    rules = EnrichmentRules()
    thresholds = Thresholds.load()
    lamps = Counter(a["ward_code"] for a in assets if a["asset_kind"] == "LAMP")
    sites = Counter(a["ward_code"] for a in assets if a["asset_kind"] != "LAMP")
    by_code = {w["kelurahan_code"]: w for w in wards}
    enrichers = {
        INCIDENT_SCHEMA: ("incident", enrich_incident),
        LIGHTING_SCHEMA: ("lighting", enrich_lighting),
        WASTE_SCHEMA: ("waste", enrich_waste),
    }
    states: dict[str, WardState] = defaultdict(WardState)
    best: dict[str, str] = {}
    for event in events:
        kind, enrich = enrichers[event.schema]
        now = now_of(event)
        enriched = enrich(event.record, ref, rules, now)
        code = enriched["ward_code"]
        apply(states[code], kind, enriched, thresholds)
        situation = summarize_ward(
            states[code], by_code[code], WardAssetCounts(lamps[code], sites[code]),
            thresholds, now, "CHANGE", 0, None,
        )
        if level_rank(situation["level"]) > level_rank(best.get(code, "NORMAL")):
            best[code] = situation["level"]
    return best


@pytest.mark.parametrize("name", list(EXPECTED_COUNTS))
def test_scenario_reaches_its_expected_levels_live_and_replayed(
    name: str, wards: list[dict[str, Any]], assets: list[dict[str, Any]], points: PointSampler
) -> None:
    scenario = SCENARIOS[name]
    events = scenario.events(wards, assets, 1, START, points=points)
    live = _levels_reached(events, wards, assets, lambda e: e.at)
    # Replayed as fast as possible: every event processed one minute after the last one.
    end = events[-1].at + timedelta(minutes=1)
    replayed = _levels_reached(events, wards, assets, lambda e: end)
    assert live == dict(scenario.expected_wards)
    assert replayed == dict(scenario.expected_wards)
