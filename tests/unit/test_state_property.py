"""Property tests: the ward situation does not depend on arrival order, duplicates or restarts,
and matches a from-scratch computation over the event list.

Events are synthetic: small pools of incident, lamp, cabinet and container ids in two real
kelurahan codes, so that lifecycles, ties, duplicates and corrections collide often.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.situation import WardAssetCounts, summarize_ward
from processors.state import STATUS_RANK, WardState, apply, to_ms
from processors.thresholds import BurstRule, LevelSteps, Thresholds

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
T0_MS = to_ms(T0)
WARDS = {
    "36.72.06.1002": {
        "kelurahan_code": "36.72.06.1002",
        "kelurahan_name": "Grogol",
        "kecamatan_code": "36.72.06",
        "kecamatan_name": "Gerogol",
    },
    "36.72.01.1001": {
        "kelurahan_code": "36.72.01.1001",
        "kelurahan_name": "Cibeber",
        "kecamatan_code": "36.72.01",
        "kecamatan_name": "Cibeber",
    },
}
REGISTRY = WardAssetCounts(lamps_total=20, containers_total=4)  # synthetic

# Small windows, short horizons: every window, cabinet and overdue rule is exercised within
# 15 minutes of event time.  The grace covers the whole span, so no event is ever late.
NEVER_LATE = Thresholds(
    window_seconds=60,
    grace_seconds=900,
    category_bursts=(BurstRule("FLOOD", 180, LevelSteps(1, 3, None)),),
    open_incidents=LevelSteps(2, 3, 4),
    cabinet_fault_count=2,
    cabinet_window_seconds=120,
    fire_risk_report_seconds=300,
    overdue_seconds=300,
)
# Same rules but a 1-minute window closes after 1 more minute: many events arrive late.
OFTEN_LATE = Thresholds(
    window_seconds=60,
    grace_seconds=60,
    category_bursts=(BurstRule("FLOOD", 180, LevelSteps(1, 3, None)),),
    open_incidents=LevelSteps(2, 3, 4),
    cabinet_fault_count=2,
    cabinet_window_seconds=120,
    fire_risk_report_seconds=300,
    overdue_seconds=300,
)

FAULT_STATUSES = {"DEFECTIVE_LAMP", "COLUMN_ISSUE", "BROKEN_LANTERN", "NO_POWER"}
LAMP_RANK = {"OK": 0, "DEFECTIVE_LAMP": 1, "COLUMN_ISSUE": 2, "BROKEN_LANTERN": 3, "NO_POWER": 4}
CABINET_OF = {"PJU-1": "CAB-A", "PJU-2": "CAB-A", "PJU-3": None}

Event = tuple[str, dict[str, Any]]
# Mostly one ward so that events collide; the second ward checks that states stay apart.
_WARD_CHOICE = st.sampled_from(["36.72.06.1002"] * 3 + ["36.72.01.1001"])


def _enriched(ward: str, event: dict[str, Any], **extra: Any) -> dict[str, Any]:
    names = WARDS[ward]
    return {
        "event": event,
        "ward_code": ward,
        "kelurahan_name": names["kelurahan_name"],
        "kecamatan_code": names["kecamatan_code"],
        "kecamatan_name": names["kecamatan_name"],
        "ingested_at": event["occurred_at"],
        "ward_resolution": "WARD_CODE",
        **extra,
    }


def incident_report(ward: str, n: int, at: datetime, **changes: Any) -> Event:
    """One enriched REPORTED incident (FLOOD, MINOR) from the 112 call center, as the ward step
    folds it; `changes` replace fields of the partner's event."""
    event = {
        "event_id": f"00000000-0000-4000-8000-{n:012d}", "occurred_at": at,
        "incident_id": f"I-{n}", "source_system": "CALL_CENTER_112", "category": "FLOOD",
        "severity": "MINOR", "status": "REPORTED", "ward_code": None, "latitude": None,
        "longitude": None, "rw": None, "rt": None, "description": "", **changes,
    }
    return "incident", _enriched(ward, event)


@st.composite
def _incident(draw: st.DrawFn, times: st.SearchStrategy[int]) -> Event:
    event = {
        "occurred_at": T0 + timedelta(milliseconds=draw(times)),
        "incident_id": draw(st.sampled_from(["I-1", "I-2", "I-3"])),
        # Two sources sharing ids: each owns its own incident, in any arrival order.
        "source_system": draw(st.sampled_from(["CALL_CENTER_112", "POLICE"])),
        "category": draw(st.sampled_from(["FLOOD", "FLOOD", "FIRE", "CRIME"])),
        "severity": draw(st.sampled_from(["EXTREME", "SEVERE", "MINOR", "UNKNOWN"])),
        "status": draw(st.sampled_from(["REPORTED", *STATUS_RANK, "UNKNOWN"])),
        "ward_code": None,
        "latitude": None,
        "longitude": None,
        "rw": None,
        "rt": None,
        "description": "",
    }
    return "incident", _enriched(draw(_WARD_CHOICE), event)


@st.composite
def _lighting(draw: st.DrawFn, times: st.SearchStrategy[int]) -> Event:
    lamp = draw(st.sampled_from(sorted(CABINET_OF)))
    event = {
        "occurred_at": T0 + timedelta(milliseconds=draw(times)),
        "lamp_id": lamp,
        "cabinet_id": None,
        "report_kind": draw(st.sampled_from(["STATUS", "FAULT", "ENERGY_READING", "UNKNOWN"])),
        "lamp_status": draw(st.sampled_from([*LAMP_RANK, "UNKNOWN"])),
        "power_state": "UNKNOWN",
        "dimming_level": None,
        "energy_kwh": None,
        "ward_code": None,
        "latitude": None,
        "longitude": None,
    }
    ward = draw(_WARD_CHOICE)
    return "lighting", _enriched(ward, event, cabinet_id=CABINET_OF[lamp], location_name=None)


@st.composite
def _waste(draw: st.DrawFn, times: st.SearchStrategy[int]) -> Event:
    event = {
        "occurred_at": T0 + timedelta(milliseconds=draw(times)),
        "container_id": draw(st.sampled_from(["C-1", "C-2"])),
        "site_kind": "CONTAINER",
        "report_kind": draw(
            st.sampled_from(
                ["FILL_LEVEL", "COLLECTION", "OVERFLOW_COMPLAINT", "FIRE_RISK", "UNKNOWN"]
            )
        ),
        "filling_level": draw(st.sampled_from([None, 0.1, 0.5, 0.89, 0.9, 1.0])),
        "temperature_celsius": draw(st.sampled_from([None, 25.0, 59.9, 60.0, 75.0])),
        "collected_weight_kg": None,
        "ward_code": None,
        "latitude": None,
        "longitude": None,
    }
    ward = draw(_WARD_CHOICE)
    return "waste", _enriched(ward, event, location_name=None, container_capacity_l=None)


@st.composite
def _scenario(draw: st.DrawFn, span_steps: int) -> tuple[list[Event], list[Event], list[bool]]:
    """(arrival order A with duplicates, another order B, restart points along A)."""
    # Either a handful of instants (ties everywhere; spaced so that cabinet, fire and overdue
    # horizons split them) or 30-second steps over the whole span.
    times: st.SearchStrategy[int]
    if draw(st.booleans()):
        times = st.sampled_from([0, 60_000, 200_000, 330_000])
    else:
        times = st.integers(0, span_steps).map(lambda step: step * 30_000)
    raw = draw(
        st.lists(
            st.one_of(_incident(times), _lighting(times), _waste(times)), min_size=8, max_size=40
        )
    )
    events: list[Event] = []
    for n, (kind, enriched) in enumerate(raw):
        enriched["event"]["event_id"] = f"00000000-0000-4000-8000-{n:012d}"
        # Some events come from a partner whose clock runs up to 4.5 min fast: ingested
        # before the time they claim, so they may not move the watermark past their ingest.
        enriched["ingested_at"] -= timedelta(seconds=draw(st.sampled_from([0, 0, 0, 90, 270])))
        events.append((kind, enriched))
    if events:
        repeats = draw(st.lists(st.integers(0, len(events) - 1), max_size=10))
        events += [events[i] for i in repeats]  # at-least-once redelivery
    order_a = draw(st.permutations(events))
    order_b = draw(st.permutations(events))
    restarts = draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    return list(order_a), list(order_b), restarts


def _run(
    order: list[Event], thresholds: Thresholds, restarts: list[bool] | None = None
) -> dict[str, WardState]:
    states = {ward: WardState() for ward in WARDS}
    for index, (kind, enriched) in enumerate(order):
        ward = enriched["ward_code"]
        apply(states[ward], kind, enriched, thresholds)
        if restarts is not None and restarts[index]:
            # What a worker restart does: the state comes back from its changelog JSON.
            states[ward] = WardState.from_dict(json.loads(json.dumps(states[ward].to_dict())))
        elif restarts is not None:
            # What a commit does: the state is serialised and the same object carries on, so
            # the rows to_dict reuses between commits must follow every change.
            rows = states[ward].to_dict()["inc"]
            assert rows == _nested_rows(states[ward])
    return states


def _nested_rows(state: WardState) -> dict[str, dict[str, list[Any]]]:
    """Every incident's row by source, then incident id: what to_dict must write."""
    rows: dict[str, dict[str, list[Any]]] = {}
    for (source, incident_id), rec in state.incidents.items():
        rows.setdefault(source, {})[incident_id] = rec.to_list()
    return rows


def _summary(state: WardState, ward: str, thresholds: Thresholds, now_ms: int) -> dict[str, Any]:
    now = T0 + timedelta(milliseconds=now_ms - T0_MS)
    return summarize_ward(state, WARDS[ward], REGISTRY, thresholds, now, "CHANGE", 1, None)


def _reference(events: list[Event], ward: str, t: Thresholds, now_ms: int) -> dict[str, Any]:
    """The figures of a ward computed directly from the distinct events, no state involved."""
    distinct = {e["event"]["event_id"]: (kind, e) for kind, e in events}
    mine = [(kind, e["event"], e) for kind, e in distinct.values() if e["ward_code"] == ward]
    # docs/rules.md: an event moves the watermark to its occurred_at, at most to its ingest time
    stamps = [min(to_ms(event["occurred_at"]), to_ms(e["ingested_at"])) for _, event, e in mine]
    watermark = max(stamps) if stamps else None
    as_of = now_ms if watermark is None else max(now_ms, watermark)
    w = t.window_ms
    current = as_of - as_of % w

    def ts(event: dict[str, Any]) -> int:
        return to_ms(event["occurred_at"])

    # Incidents: one per (source, incident_id), an id belongs to the source that opened it.
    by_id: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for kind, event, _ in mine:
        if kind == "incident":
            by_id.setdefault((event["source_system"], event["incident_id"]), []).append(event)
    by_category: dict[str, int] = {}
    by_severity: dict[str, int] = {}
    new_in_window = 0
    flood_burst = 0
    first_flood_window = current - (t.windows_for(180) - 1) * w
    dispatch = [0, 0]
    on_scene = [0, 0]
    for evs in by_id.values():
        category = max((ts(e), e["category"]) for e in evs)[1]
        known = [e for e in evs if e["status"] != "UNKNOWN"]
        if not known:
            continue
        status = max(STATUS_RANK[e["status"]] for e in known)
        severities = [(ts(e), e["severity"]) for e in evs if e["severity"] != "UNKNOWN"]
        severity = max(severities)[1] if severities else "UNKNOWN"
        if status < STATUS_RANK["RESOLVED"]:
            by_category[category] = by_category.get(category, 0) + 1
            by_severity[severity] = by_severity.get(severity, 0) + 1
        first = min(ts(e) for e in known)
        window = first - first % w
        new_in_window += window == current
        flood_burst += category == "FLOOD" and first_flood_window <= window <= current

        def earliest(name: str, evs: list[dict[str, Any]] = known) -> int | None:
            stage = [ts(e) for e in evs if e["status"] == name]
            return min(stage) if stage else None

        reported = earliest("REPORTED")
        for stage, acc in (("DISPATCHED", dispatch), ("ON_SCENE", on_scene)):
            later = earliest(stage)
            if reported is not None and later is not None:
                acc[0] += max(0, later - reported)
                acc[1] += 1

    # Lamps.
    latest_lamp: dict[str, tuple[int, int, str]] = {}
    cabinet_lamps: dict[str, set[str]] = {}
    faults_in_window = 0
    for kind, event, enriched in mine:
        if kind != "lighting":
            continue
        status = event["lamp_status"]
        if status in LAMP_RANK:
            candidate = (ts(event), LAMP_RANK[status], status)
            latest_lamp[event["lamp_id"]] = max(
                latest_lamp.get(event["lamp_id"], candidate), candidate
            )
        fault = status in FAULT_STATUSES or (
            status == "UNKNOWN" and event["report_kind"] == "FAULT"
        )
        if fault:
            faults_in_window += ts(event) - ts(event) % w == current
            cabinet = enriched["cabinet_id"]
            if cabinet is not None and ts(event) >= as_of - t.cabinet_window_ms:
                cabinet_lamps.setdefault(cabinet, set()).add(event["lamp_id"])

    # Containers.
    containers: dict[str, list[dict[str, Any]]] = {}
    overflow_in_window = 0
    for kind, event, _ in mine:
        if kind == "waste":
            containers.setdefault(event["container_id"], []).append(event)
            if event["report_kind"] == "OVERFLOW_COMPLAINT":
                overflow_in_window += ts(event) - ts(event) % w == current
    full = fire = overdue = 0
    for evs in containers.values():
        fills = [(ts(e), e["filling_level"]) for e in evs if e["filling_level"] is not None]
        temps = [
            (ts(e), e["temperature_celsius"]) for e in evs if e["temperature_celsius"] is not None
        ]
        collections = [ts(e) for e in evs if e["report_kind"] == "COLLECTION"]
        collected = max(collections) if collections else None
        level: float | None = None
        if fills:
            fill_at, fill = max(fills)
            level = fill if collected is None or fill_at >= collected else 0.0
        elif collected is not None:
            level = 0.0
        is_full = level is not None and level >= t.full_level
        full += is_full
        full_runs = sorted(
            s for s, f in fills if f >= t.full_level and (collected is None or s >= collected)
        )
        overdue += is_full and full_runs[0] <= as_of - t.overdue_ms
        hot = bool(temps) and max(temps)[1] >= t.fire_temperature_celsius
        reported_fire = any(
            e["report_kind"] == "FIRE_RISK" and ts(e) >= as_of - t.fire_risk_report_ms for e in evs
        )
        fire += hot or reported_fire

    return {
        "open_incidents": sum(by_category.values()),
        "open_incidents_by_category": dict(sorted(by_category.items())),
        "open_incidents_by_severity": dict(sorted(by_severity.items())),
        "new_incidents_in_window": new_in_window,
        "flood_burst": flood_burst,
        "window_start": T0 + timedelta(milliseconds=current - T0_MS),
        "last_event_at": (
            None if watermark is None else T0 + timedelta(milliseconds=watermark - T0_MS)
        ),
        "lamps_out": sum(1 for _, _, status in latest_lamp.values() if status != "OK"),
        "cabinet_alerts": sorted(
            c for c, lamps in cabinet_lamps.items() if len(lamps) >= t.cabinet_fault_count
        ),
        "new_lamp_faults_in_window": faults_in_window,
        "containers_full": full,
        "containers_fire_risk": fire,
        "containers_overdue": overdue,
        "overflow_reports_in_window": overflow_in_window,
        "mean_dispatch_seconds": dispatch[0] / dispatch[1] / 1000.0 if dispatch[1] else None,
        "mean_on_scene_seconds": on_scene[0] / on_scene[1] / 1000.0 if on_scene[1] else None,
    }


def _NOW_OFFSETS(largest: int) -> st.SearchStrategy[int]:  # noqa: N802
    """Often 0: then the evaluation time is the watermark itself, where most rules fire."""
    return st.one_of(st.just(0), st.integers(0, largest))


WINDOWED = {
    "new_incidents_in_window",
    "new_lamp_faults_in_window",
    "overflow_reports_in_window",
    "flood_burst",
}


def _compare(summary: dict[str, Any], expected: dict[str, Any], keys: set[str]) -> None:
    for key in keys - {"flood_burst"}:
        assert summary[key] == expected[key], key
    if "flood_burst" in keys:
        count = expected["flood_burst"]
        flood = [r for r in summary["reasons"] if "flood report" in r]
        noun = "report" if count == 1 else "reports"
        assert flood == ([f"{count} flood {noun} in 3 min"] if count else [])


@settings(max_examples=500, deadline=None)
@given(scenario=_scenario(span_steps=30), now_offset=_NOW_OFFSETS(1_200_000))
def test_order_duplicates_and_restarts_do_not_change_the_situation(
    scenario: tuple[list[Event], list[Event], list[bool]], now_offset: int
) -> None:
    order_a, order_b, restarts = scenario
    with_restarts = _run(order_a, NEVER_LATE, restarts)
    in_one_go = _run(order_a, NEVER_LATE)
    other_order = _run(order_b, NEVER_LATE)
    now_ms = T0_MS + now_offset
    for ward in WARDS:
        assert with_restarts[ward] == in_one_go[ward]
        assert with_restarts[ward].late_events == 0
        summary = _summary(with_restarts[ward], ward, NEVER_LATE, now_ms)
        assert _summary(in_one_go[ward], ward, NEVER_LATE, now_ms) == summary
        assert _summary(other_order[ward], ward, NEVER_LATE, now_ms) == summary
        expected = _reference(order_a, ward, NEVER_LATE, now_ms)
        _compare(summary, expected, set(expected))


@settings(max_examples=500, deadline=None)
@given(scenario=_scenario(span_steps=120), now_offset=_NOW_OFFSETS(4_000_000))
def test_late_events_only_affect_windowed_counts(
    scenario: tuple[list[Event], list[Event], list[bool]], now_offset: int
) -> None:
    order_a, order_b, restarts = scenario
    with_restarts = _run(order_a, OFTEN_LATE, restarts)
    in_one_go = _run(order_a, OFTEN_LATE)
    other_order = _run(order_b, OFTEN_LATE)
    now_ms = T0_MS + now_offset
    for ward in WARDS:
        # Same arrival order: restarts are invisible, lateness included.
        assert with_restarts[ward] == in_one_go[ward]
        summary = _summary(with_restarts[ward], ward, OFTEN_LATE, now_ms)
        assert _summary(in_one_go[ward], ward, OFTEN_LATE, now_ms) == summary
        # Another arrival order may make other events late, which only windowed counts see.
        expected = _reference(order_a, ward, OFTEN_LATE, now_ms)
        not_windowed = set(expected) - WINDOWED
        _compare(summary, expected, not_windowed)
        _compare(_summary(other_order[ward], ward, OFTEN_LATE, now_ms), expected, not_windowed)
