"""Unit tests of processors.state: lifecycle, ordering, dedupe, lateness, pruning, round trips.

All asset ids, counts and readings here are synthetic test values; the ward is a real
kelurahan of Cilegon (36.72.06.1002 Grogol, Kecamatan Gerogol) from cityops/data.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from processors.state import (
    APPLIED,
    DUPLICATE,
    EXPIRED,
    LATE,
    UNATTRIBUTED,
    ContainerRecord,
    IncidentRecord,
    WardState,
    WindowCounts,
    apply,
    evict_oldest_event_ids,
    from_ms,
    to_ms,
)
from processors.thresholds import BurstRule, LevelSteps, Thresholds

pytestmark = pytest.mark.unit

#: The source of the incidents below unless a test says otherwise; incidents are keyed by it.
SOURCE = "CALL_CENTER_112"

T0 = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)  # aligned to 5-min windows and 10-min buckets
T0_MS = to_ms(T0)
DEFAULTS = Thresholds()
WARD = {
    "ward_code": "36.72.06.1002",
    "kelurahan_name": "Grogol",
    "kecamatan_code": "36.72.06",
    "kecamatan_name": "Gerogol",
}


def ms(seconds: float) -> int:
    """Epoch ms of T0 + seconds."""
    return T0_MS + round(seconds * 1000)


def at(seconds: float) -> datetime:
    return T0 + timedelta(milliseconds=round(seconds * 1000))


def eid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _enriched(event: dict[str, Any], seconds: float, **extra: Any) -> dict[str, Any]:
    return {
        "event": event,
        **WARD,
        "ingested_at": at(seconds),
        "ward_resolution": "WARD_CODE",
        **extra,
    }


def incident(
    n: int,
    seconds: float,
    incident_id: str,
    status: str,
    category: str = "CRIME",
    severity: str = "MODERATE",
    source: str = "CALL_CENTER_112",
) -> dict[str, Any]:
    event = {
        "event_id": eid(n),
        "occurred_at": at(seconds),
        "incident_id": incident_id,
        "source_system": source,
        "category": category,
        "severity": severity,
        "status": status,
        "ward_code": WARD["ward_code"],
        "latitude": None,
        "longitude": None,
        "rw": None,
        "rt": None,
        "description": "",
    }
    return _enriched(event, seconds)


def lighting(
    n: int,
    seconds: float,
    lamp_id: str,
    status: str,
    kind: str = "STATUS",
    cabinet: str | None = None,
) -> dict[str, Any]:
    event = {
        "event_id": eid(n),
        "occurred_at": at(seconds),
        "lamp_id": lamp_id,
        "cabinet_id": None,
        "report_kind": kind,
        "lamp_status": status,
        "power_state": "UNKNOWN",
        "dimming_level": None,
        "energy_kwh": None,
        "ward_code": WARD["ward_code"],
        "latitude": None,
        "longitude": None,
    }
    return _enriched(event, seconds, cabinet_id=cabinet, location_name=None)


def waste(
    n: int,
    seconds: float,
    container_id: str,
    kind: str,
    fill: float | None = None,
    temperature: float | None = None,
) -> dict[str, Any]:
    event = {
        "event_id": eid(n),
        "occurred_at": at(seconds),
        "container_id": container_id,
        "site_kind": "CONTAINER",
        "report_kind": kind,
        "filling_level": fill,
        "temperature_celsius": temperature,
        "collected_weight_kg": None,
        "ward_code": WARD["ward_code"],
        "latitude": None,
        "longitude": None,
    }
    return _enriched(event, seconds, location_name=None, container_capacity_l=None)


def kind_of(enriched: dict[str, Any]) -> str:
    event = enriched["event"]
    if "incident_id" in event:
        return "incident"
    if "lamp_id" in event:
        return "lighting"
    return "waste"


def run(state: WardState, *events: dict[str, Any], thresholds: Thresholds = DEFAULTS) -> list[str]:
    return [apply(state, kind_of(e), e, thresholds).status for e in events]


# --------------------------------------------------------------------------------------------
# time conversion


def test_to_ms_and_from_ms_are_exact_inverses_at_millisecond_precision() -> None:
    moment = datetime(2025, 1, 6, 8, 0, 0, 999_000, tzinfo=UTC)
    assert to_ms(moment) == 1_736_150_400_999
    assert from_ms(1_736_150_400_999) == moment


def test_naive_datetime_is_rejected() -> None:
    event = incident(1, 0, "I-1", "REPORTED")
    event["event"]["occurred_at"] = datetime(2025, 1, 6, 8, 0)
    with pytest.raises(TypeError):
        apply(WardState(), "incident", event, DEFAULTS)


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown event kind 'parking'"):
        apply(WardState(), "parking", incident(1, 0, "I-1", "REPORTED"), DEFAULTS)


# --------------------------------------------------------------------------------------------
# incidents


def test_lifecycle_in_order_updates_status_open_counts_and_response_times() -> None:
    state = WardState()
    assert run(state, incident(1, 0, "I-1", "REPORTED")) == ["applied"]
    assert state.open_by_key == {("MODERATE", "CRIME"): 1}
    assert (state.dispatch_count, state.on_scene_count) == (0, 0)

    assert run(state, incident(2, 120, "I-1", "DISPATCHED")) == ["applied"]
    assert (state.dispatch_ms_sum, state.dispatch_count) == (120_000, 1)

    assert run(state, incident(3, 600, "I-1", "ON_SCENE")) == ["applied"]
    assert (state.on_scene_ms_sum, state.on_scene_count) == (600_000, 1)
    assert state.open_by_key == {("MODERATE", "CRIME"): 1}

    assert run(state, incident(4, 1800, "I-1", "RESOLVED")) == ["applied"]
    assert state.open_by_key == {}
    assert state.incidents == {
        (SOURCE, "I-1"): IncidentRecord(
            status=3,
            category="CRIME",
            category_at=ms(1800),
            severity="MODERATE",
            severity_at=ms(1800),
            first_seen=ms(0),
            last_seen=ms(1800),
            reported_at=ms(0),
            dispatched_at=ms(120),
            on_scene_at=ms(600),
            closed_at=ms(1800),
            counted_window=ms(0),
            counted_category="CRIME",
        )
    }
    # Closed incidents keep their response times.
    assert (state.dispatch_ms_sum, state.dispatch_count) == (120_000, 1)
    assert (state.on_scene_ms_sum, state.on_scene_count) == (600_000, 1)
    assert state.windows == {ms(0): WindowCounts({"CRIME": 1}, 0, 0)}


def _lifecycle_within_grace() -> list[dict[str, Any]]:
    return [
        incident(1, 0, "I-1", "REPORTED"),
        incident(2, 30, "I-1", "DISPATCHED"),
        incident(3, 200, "I-1", "ON_SCENE"),
        incident(4, 350, "I-1", "RESOLVED"),
    ]


def test_out_of_order_lifecycle_ends_in_the_same_state_and_never_reopens() -> None:
    reported, dispatched, on_scene, resolved = _lifecycle_within_grace()
    in_order = WardState()
    assert run(in_order, reported, dispatched, on_scene, resolved) == ["applied"] * 4

    shuffled = WardState()
    assert run(shuffled, on_scene) == ["applied"]
    rec = shuffled.incidents[(SOURCE, "I-1")]
    assert (rec.status_name, rec.first_seen, rec.reported_at) == ("ON_SCENE", ms(200), None)
    assert shuffled.on_scene_count == 0  # no REPORTED yet, so no response time
    assert run(shuffled, dispatched) == ["applied"]
    assert (rec.status_name, rec.first_seen) == ("ON_SCENE", ms(30))
    assert run(shuffled, resolved) == ["applied"]
    assert shuffled.open_by_key == {}
    assert run(shuffled, reported) == ["applied"]
    assert shuffled.open_by_key == {}  # a late REPORTED doesn't reopen
    assert rec.status_name == "RESOLVED"
    assert (shuffled.dispatch_ms_sum, shuffled.on_scene_ms_sum) == (30_000, 200_000)
    assert shuffled == in_order


def test_cancelled_wins_over_resolved_whatever_the_order() -> None:
    first, second = WardState(), WardState()
    resolved = incident(2, 60, "I-1", "RESOLVED")
    cancelled = incident(3, 30, "I-1", "CANCELLED")
    run(first, incident(1, 0, "I-1", "REPORTED"), resolved, cancelled)
    run(second, incident(1, 0, "I-1", "REPORTED"), cancelled, resolved)
    assert first.incidents[(SOURCE, "I-1")].status_name == "CANCELLED"
    assert first.incidents[(SOURCE, "I-1")].closed_at == ms(30)
    assert first == second


def test_unknown_status_updates_only_category_and_severity() -> None:
    state = WardState()
    run(state, incident(1, 0, "I-1", "REPORTED", "CRIME", "MINOR"))
    run(state, incident(2, 60, "I-1", "UNKNOWN", "FIRE", "SEVERE"))
    rec = state.incidents[(SOURCE, "I-1")]
    assert (rec.status_name, rec.category, rec.severity) == ("REPORTED", "FIRE", "SEVERE")
    assert (rec.first_seen, rec.last_seen) == (ms(0), ms(60))
    assert state.open_by_key == {("SEVERE", "FIRE"): 1}
    assert state.windows == {ms(0): WindowCounts({"FIRE": 1}, 0, 0)}


def test_incident_seen_only_with_unknown_status_is_neither_open_nor_new() -> None:
    state = WardState()
    assert run(state, incident(1, 0, "I-1", "UNKNOWN", "FLOOD", "EXTREME")) == ["applied"]
    assert state.open_by_key == {}
    assert state.windows == {}
    assert state.incidents[(SOURCE, "I-1")].status is None


def test_unknown_severity_never_overwrites_a_known_one() -> None:
    state = WardState()
    run(state, incident(1, 0, "I-1", "REPORTED", severity="EXTREME"))
    run(state, incident(2, 60, "I-1", "DISPATCHED", severity="UNKNOWN"))
    assert state.incidents[(SOURCE, "I-1")].severity == "EXTREME"
    assert state.open_by_key == {("EXTREME", "CRIME"): 1}


def test_same_instant_category_tie_is_decided_by_symbol_not_arrival() -> None:
    first, second = WardState(), WardState()
    crime = incident(1, 10, "I-1", "REPORTED", "CRIME")
    fire = incident(2, 10, "I-1", "DISPATCHED", "FIRE")
    run(first, crime, fire)
    run(second, fire, crime)
    assert first.incidents[(SOURCE, "I-1")].category == "FIRE"  # "FIRE" > "CRIME"
    assert first == second


def test_negative_response_interval_from_clock_skew_counts_as_zero() -> None:
    state = WardState()
    run(state, incident(1, 100, "I-1", "REPORTED"), incident(2, 40, "I-1", "DISPATCHED"))
    assert (state.dispatch_ms_sum, state.dispatch_count) == (0, 1)


def test_new_incident_moves_to_the_window_of_its_earliest_event() -> None:
    state = WardState()
    run(state, incident(1, 320, "I-1", "DISPATCHED", "FLOOD"))
    assert state.windows == {ms(300): WindowCounts({"FLOOD": 1}, 0, 0)}
    run(state, incident(2, 250, "I-1", "REPORTED", "FLOOD"))
    assert state.windows == {ms(0): WindowCounts({"FLOOD": 1}, 0, 0)}
    # A category correction while window 0 is still open moves the count to the new category.
    run(state, incident(3, 350, "I-1", "ON_SCENE", "FIRE"))
    assert state.windows == {ms(0): WindowCounts({"FIRE": 1}, 0, 0)}
    # Once window 0 is closed (0 + 300 s + 60 s grace <= watermark) its counts are frozen.
    run(state, incident(4, 400, "I-1", "ON_SCENE", "CRIME"))
    assert state.incidents[(SOURCE, "I-1")].category == "CRIME"
    assert state.incidents[(SOURCE, "I-1")].counted_category == "FIRE"
    assert state.windows == {ms(0): WindowCounts({"FIRE": 1}, 0, 0)}


def test_late_reported_keeps_the_count_in_the_window_where_it_was_counted() -> None:
    state = WardState()
    assert run(state, incident(1, 600, "I-1", "ON_SCENE")) == ["applied"]
    assert run(state, incident(2, 0, "I-1", "REPORTED")) == ["late"]
    rec = state.incidents[(SOURCE, "I-1")]
    assert (rec.first_seen, rec.counted_window) == (ms(0), ms(600))
    assert state.windows == {ms(600): WindowCounts({"CRIME": 1}, 0, 0)}
    assert (state.on_scene_ms_sum, state.on_scene_count) == (600_000, 1)
    assert state.late_events == 1


# --------------------------------------------------------------------------------------------
# dedupe, lateness, expiry


def test_duplicate_event_id_changes_nothing() -> None:
    state = WardState()
    event = lighting(1, 0, "PJU-1", "NO_POWER", "FAULT", "CAB-1")
    assert apply(state, "lighting", event, DEFAULTS) is APPLIED
    before = state.to_dict()
    assert apply(state, "lighting", event, DEFAULTS) is DUPLICATE
    assert state.to_dict() == before
    assert state.windows == {ms(0): WindowCounts({}, 1, 0)}
    assert DUPLICATE.changed is False
    assert APPLIED.changed is True


def test_serialised_incident_rows_follow_every_change_and_are_never_shared() -> None:
    state = WardState()
    run(state, incident(1, 0, "INC-1", "REPORTED"), incident(2, 10, "INC-2", "REPORTED"))
    first = state.to_dict()
    run(state, incident(3, 60, "INC-1", "DISPATCHED", severity="SEVERE"))
    second = state.to_dict()
    assert second["inc"][SOURCE]["INC-1"] == state.incidents[(SOURCE, "INC-1")].to_list()
    assert second["inc"][SOURCE]["INC-1"][0] == "DISPATCHED"
    assert second["inc"][SOURCE]["INC-2"] is first["inc"][SOURCE]["INC-2"]  # unchanged: reused
    assert first["inc"][SOURCE]["INC-1"][0] == "REPORTED"  # an earlier value is never rewritten
    assert second["inc"] is not first["inc"]
    assert WardState.from_dict(json.loads(json.dumps(second))) == state


def test_eviction_forgets_whole_oldest_buckets_and_a_retry_then_applies_again() -> None:
    state = WardState()
    # Three 10-minute dedupe buckets: ids 1-2 at 0 s, 3-4 at 600 s, 5 at 1200 s.
    for n, seconds in ((1, 0), (2, 60), (3, 600), (4, 660), (5, 1200)):
        assert apply(state, "lighting", lighting(n, seconds, f"PJU-{n}", "OK"), DEFAULTS) is APPLIED
    assert evict_oldest_event_ids(state, 1) == 2
    assert state.seen == {eid(3): ms(600), eid(4): ms(600), eid(5): ms(1200)}
    assert evict_oldest_event_ids(state, 0) == 0
    assert evict_oldest_event_ids(state, 3) == 3
    assert state.seen == {}
    assert evict_oldest_event_ids(state, 1) == 0
    # The price of eviction: a retry of a forgotten id is applied again.
    assert apply(state, "lighting", lighting(5, 1200, "PJU-5", "OK"), DEFAULTS) is APPLIED


def test_lateness_boundary_is_window_end_plus_grace() -> None:
    state = WardState()
    run(state, lighting(1, 359.999, "PJU-9", "OK"))
    assert run(state, lighting(2, 10, "PJU-1", "NO_POWER", "FAULT")) == ["applied"]
    assert state.windows == {ms(0): WindowCounts({}, 1, 0)}
    run(state, lighting(3, 360, "PJU-9", "OK"))
    assert run(state, lighting(4, 20, "PJU-2", "NO_POWER", "FAULT", "CAB-1")) == ["late"]
    # Not counted in the closed window, but the lamp's status and the cabinet fault are kept.
    assert state.windows == {ms(0): WindowCounts({}, 1, 0)}
    assert state.lamps["PJU-2"] == ("NO_POWER", ms(20))
    assert state.lamps_out == 2
    assert state.cabinets == {"CAB-1": {"PJU-2": ms(20)}}
    assert state.late_events == 1
    assert LATE.changed is True


def test_old_event_for_an_unknown_incident_is_expired_but_a_known_one_applies() -> None:
    state = WardState()
    run(state, lighting(1, 90_000, "PJU-1", "OK"))
    horizon = DEFAULTS.closed_incident_horizon_seconds
    old_unknown = incident(2, 90_000 - horizon - 0.001, "I-OLD", "REPORTED")
    assert apply(state, "incident", old_unknown, DEFAULTS) is EXPIRED
    assert (SOURCE, "I-OLD") not in state.incidents
    assert EXPIRED.changed is False
    assert run(state, incident(3, 90_000 - horizon, "I-2", "REPORTED")) == ["late"]
    assert run(state, incident(4, 0, "I-2", "DISPATCHED")) == ["late"]
    assert state.incidents[(SOURCE, "I-2")].dispatched_at == ms(0)


# --------------------------------------------------------------------------------------------
# lighting


def test_lamp_status_is_the_latest_by_event_time_and_unknown_keeps_it() -> None:
    state = WardState()
    run(state, lighting(1, 100, "PJU-1", "DEFECTIVE_LAMP"))
    assert (state.lamps["PJU-1"], state.lamps_out) == (("DEFECTIVE_LAMP", ms(100)), 1)
    run(state, lighting(2, 50, "PJU-1", "OK"))  # older report
    assert (state.lamps["PJU-1"], state.lamps_out) == (("DEFECTIVE_LAMP", ms(100)), 1)
    run(state, lighting(3, 200, "PJU-1", "UNKNOWN"))
    assert (state.lamps["PJU-1"], state.lamps_out) == (("DEFECTIVE_LAMP", ms(100)), 1)
    run(state, lighting(4, 300, "PJU-1", "OK"))
    assert (state.lamps["PJU-1"], state.lamps_out) == (("OK", ms(300)), 0)
    run(state, lighting(5, 300, "PJU-2", "NO_POWER"), lighting(6, 300, "PJU-2", "OK"))
    assert (state.lamps["PJU-2"], state.lamps_out) == (("NO_POWER", ms(300)), 1)


def test_fault_reports_counted_per_window_and_per_cabinet_lamp() -> None:
    state = WardState()
    run(
        state,
        lighting(1, 10, "PJU-1", "DEFECTIVE_LAMP", "STATUS", "CAB-1"),  # fault
        lighting(2, 20, "PJU-2", "UNKNOWN", "FAULT", "CAB-1"),  # fault, status unknown
        lighting(3, 30, "PJU-3", "OK", "FAULT", "CAB-1"),  # contradictory: not a fault
        lighting(4, 40, "PJU-4", "OK", "ENERGY_READING", "CAB-1"),
        lighting(5, 50, "PJU-1", "NO_POWER", "FAULT", "CAB-1"),  # same lamp again
        lighting(6, 60, "PJU-5", "COLUMN_ISSUE", "FAULT", None),  # no cabinet known
    )
    assert state.windows == {ms(0): WindowCounts({}, 4, 0)}
    assert state.cabinets == {"CAB-1": {"PJU-1": ms(50), "PJU-2": ms(20)}}
    assert "PJU-2" not in state.lamps
    assert state.lamps_out == 2


# --------------------------------------------------------------------------------------------
# waste


def test_container_fill_collection_and_full_since() -> None:
    state = WardState()
    run(
        state,
        waste(1, 0, "TPS-1", "FILL_LEVEL", 0.5),
        waste(2, 60, "TPS-1", "FILL_LEVEL", 0.95),
        waste(3, 120, "TPS-1", "FILL_LEVEL", 0.92),
    )
    rec = state.containers["TPS-1"]
    assert (rec.effective_fill(), rec.full_since) == (0.92, [ms(60), ms(120)])
    run(state, waste(4, 180, "TPS-1", "COLLECTION"))
    assert (rec.effective_fill(), rec.full_since, rec.collected_at) == (0.0, [], ms(180))
    run(state, waste(5, 240, "TPS-1", "FILL_LEVEL", 0.3))
    run(state, waste(6, 170, "TPS-1", "FILL_LEVEL", 0.99))  # older than the collection
    assert (rec.fill, rec.fill_at, rec.full_since) == (0.3, ms(240), [])


def test_late_collection_splits_the_full_run() -> None:
    state = WardState()
    run(
        state,
        waste(1, 0, "C-2", "FILL_LEVEL", 0.95),
        waste(2, 200, "C-2", "FILL_LEVEL", 0.95),
        waste(3, 100, "C-2", "COLLECTION"),
    )
    rec = state.containers["C-2"]
    assert (rec.effective_fill(), rec.full_since) == (0.95, [ms(200)])


def test_reading_sent_with_the_collection_wins_over_the_reset() -> None:
    state = WardState()
    run(state, waste(1, 0, "C-3", "FILL_LEVEL", 1.0), waste(2, 300, "C-3", "COLLECTION", 0.1))
    assert state.containers["C-3"].effective_fill() == 0.1


def test_temperature_fire_report_and_bad_readings() -> None:
    state = WardState()
    run(
        state,
        waste(1, 0, "C-4", "FILL_LEVEL", temperature=61.5),
        waste(2, 100, "C-4", "FILL_LEVEL", temperature=30.0),
        waste(3, 50, "C-4", "FIRE_RISK"),
        waste(4, 20, "C-4", "FIRE_RISK"),
        waste(5, 10, "C-5", "FILL_LEVEL", float("nan"), float("inf")),
        waste(6, 10, "C-6", "OVERFLOW_COMPLAINT"),
    )
    assert state.containers == {
        "C-4": ContainerRecord(
            fill=None,
            fill_at=None,
            temperature=30.0,
            temperature_at=ms(100),
            collected_at=None,
            fire_report_at=ms(50),
            full_since=[],
        )
    }
    assert state.windows == {ms(0): WindowCounts({}, 0, 1)}


# --------------------------------------------------------------------------------------------
# pruning keeps memory bounded


def test_pruning_windows_ids_incidents_faults_and_full_runs() -> None:
    t = Thresholds(
        window_seconds=60,
        grace_seconds=0,
        category_bursts=(BurstRule("FLOOD", 120, LevelSteps(2, 3, None)),),
        dedupe_horizon_seconds=600,
        closed_incident_horizon_seconds=600,
        stale_open_incident_seconds=1200,
        cabinet_window_seconds=60,
        overdue_seconds=300,
    )
    state = WardState()
    events = [
        incident(1, 0, "I-1", "REPORTED"),
        incident(2, 10, "I-1", "RESOLVED"),
        incident(3, 20, "I-2", "REPORTED"),
        lighting(4, 30, "PJU-1", "NO_POWER", "FAULT", "CAB-1"),
        waste(5, 40, "C-1", "FILL_LEVEL", 0.95),
        waste(6, 100, "C-1", "FILL_LEVEL", 0.96),
    ]
    run(state, *events, thresholds=t)
    assert state.windows == {ms(0): WindowCounts({"CRIME": 2}, 1, 0)}

    run(state, waste(7, 700, "C-1", "FILL_LEVEL", 0.97), thresholds=t)
    assert state.windows == {}
    assert sorted(state.incidents) == [(SOURCE, "I-2")]  # closed I-1 last seen > 600 s ago
    assert state.open_by_key == {("MODERATE", "CRIME"): 1}
    assert state.cabinets == {}
    assert state.containers["C-1"].full_since == [ms(100), ms(700)]
    assert len(state.seen) == 7

    run(state, lighting(8, 1300, "PJU-9", "OK"), thresholds=t)
    assert sorted(state.seen) == [eid(7), eid(8)]
    assert state.incidents == {}  # open I-2 silent for more than 1200 s
    assert state.open_by_key == {}

    # Beyond the horizons: an unknown incident expires, a lamp report is merely late.
    assert apply(state, "incident", events[0], t) is EXPIRED
    assert apply(state, "lighting", events[3], t) is LATE
    assert state.lamps["PJU-1"] == ("NO_POWER", ms(30))
    assert state.late_events == 1


# --------------------------------------------------------------------------------------------
# serialisation


def test_to_dict_of_a_small_state_is_exact() -> None:
    state = WardState()
    run(
        state,
        incident(1, 10, "I-1", "REPORTED", "FLOOD", "SEVERE"),
        lighting(2, 20, "PJU-1", "NO_POWER", "FAULT", "CAB-1"),
        waste(3, 30, "C-1", "FILL_LEVEL", 0.95, 41.0),
    )
    assert state.to_dict() == {
        "v": 2,
        "wm": ms(30),
        "late": 0,
        "seen": [[ms(0), [eid(1), eid(2), eid(3)]]],
        "inc": {SOURCE: {
            "I-1": [
                "REPORTED",
                "FLOOD",
                ms(10),
                "SEVERE",
                ms(10),
                ms(10),
                ms(10),
                ms(10),
                None,
                None,
                None,
                ms(0),
                "FLOOD",
            ]
        }},
        "lamp": {"PJU-1": ["NO_POWER", ms(20)]},
        "cab": {"CAB-1": {"PJU-1": ms(20)}},
        "cont": {"C-1": [0.95, ms(30), 41.0, ms(30), None, None, [ms(30)]]},
        "win": [[ms(0), {"FLOOD": 1}, 1, 0]],
    }


def _rich_state() -> WardState:
    state = WardState()
    run(
        state,
        *_lifecycle_within_grace(),
        incident(5, 100, "I-2", "REPORTED", "FIRE", "EXTREME"),
        incident(6, 150, "I-2", "DISPATCHED", "FIRE", "EXTREME"),
        incident(7, 160, "I-3", "UNKNOWN", "FLOOD", "UNKNOWN"),
        lighting(8, 40, "PJU-1", "NO_POWER", "FAULT", "CAB-1"),
        lighting(9, 45, "PJU-2", "OK"),
        waste(10, 50, "C-1", "FILL_LEVEL", 0.95, 22.5),
        waste(11, 60, "C-1", "COLLECTION"),
        waste(12, 70, "C-2", "OVERFLOW_COMPLAINT"),
        waste(13, 80, "C-3", "FIRE_RISK"),
        lighting(14, 900, "PJU-3", "BROKEN_LANTERN"),
        lighting(15, 10, "PJU-4", "DEFECTIVE_LAMP", "FAULT", "CAB-2"),  # late
    )
    return state


def test_round_trip_through_dict_and_json_restores_an_equal_state() -> None:
    state = _rich_state()
    assert state.late_events == 1
    restored = WardState.from_dict(state.to_dict())
    via_json = WardState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    assert via_json == state
    for copy in (restored, via_json):
        assert copy.lamps_out == state.lamps_out == 3
        assert copy.open_by_key == state.open_by_key == {("EXTREME", "FIRE"): 1}
        assert (copy.dispatch_ms_sum, copy.dispatch_count) == (80_000, 2)
        assert (copy.on_scene_ms_sum, copy.on_scene_count) == (200_000, 1)
    # The restored state keeps evolving exactly like the original.
    more = incident(16, 950, "I-2", "RESOLVED", "FIRE", "EXTREME")
    assert apply(state, "incident", more, DEFAULTS) is APPLIED
    assert apply(via_json, "incident", more, DEFAULTS) is APPLIED
    assert via_json == state
    assert via_json.open_by_key == {}


def test_from_dict_rejects_an_unknown_format_version() -> None:
    data = WardState().to_dict() | {"v": 3}
    with pytest.raises(ValueError, match="unsupported WardState format version 3"):
        WardState.from_dict(data)


def test_a_version_1_incident_row_belongs_to_the_first_source_that_continues_it() -> None:
    state = WardState()
    run(state, incident(1, 0, "I-1", "REPORTED"), incident(2, 10, "I-2", "REPORTED"))
    data = state.to_dict()
    version_1 = data | {"v": 1, "inc": data["inc"][SOURCE]}  # keyed by incident_id alone
    restored = WardState.from_dict(version_1)
    assert sorted(restored.incidents) == [(UNATTRIBUTED, "I-1"), (UNATTRIBUTED, "I-2")]
    assert run(restored, incident(3, 60, "I-1", "DISPATCHED", source="POLICE")) == ["applied"]
    assert sorted(restored.incidents) == [(UNATTRIBUTED, "I-2"), ("POLICE", "I-1")]
    assert restored.incidents[("POLICE", "I-1")].status_name == "DISPATCHED"
    assert restored.open_by_key == {("MODERATE", "CRIME"): 2}
    assert restored.to_dict()["inc"] == {
        "POLICE": {"I-1": restored.incidents[("POLICE", "I-1")].to_list()},
        UNATTRIBUTED: {"I-2": restored.incidents[(UNATTRIBUTED, "I-2")].to_list()},
    }


# ownership: an incident id belongs to the source that opened it


def test_another_source_can_neither_advance_nor_cancel_an_incident() -> None:
    state = WardState()
    run(state, incident(1, 0, "I-1", "REPORTED", "FIRE", "SEVERE", source="POLICE"))
    assert run(
        state,
        incident(2, 60, "I-1", "CANCELLED", "FIRE", "SEVERE", source="CITIZEN_APP"),
        incident(3, 70, "I-1", "DISPATCHED", "FIRE", "EXTREME", source="CALL_CENTER_112"),
    ) == ["applied", "applied"]
    assert {key: rec.status_name for key, rec in state.incidents.items()} == {
        ("POLICE", "I-1"): "REPORTED",
        ("CITIZEN_APP", "I-1"): "CANCELLED",
        ("CALL_CENTER_112", "I-1"): "DISPATCHED",
    }
    # The police incident is still open, with its own severity; the others are their own.
    assert state.open_by_key == {("SEVERE", "FIRE"): 1, ("EXTREME", "FIRE"): 1}
    assert state.incidents[("POLICE", "I-1")].dispatched_at is None
    assert run(state, incident(4, 80, "I-1", "RESOLVED", "FIRE", "SEVERE", source="POLICE")) == [
        "applied"]
    assert state.open_by_key == {("EXTREME", "FIRE"): 1}


def test_states_with_different_content_are_not_equal() -> None:
    state = WardState()
    run(state, lighting(1, 0, "PJU-1", "OK"))
    assert state != WardState()
    assert state.__eq__("not a state") is NotImplemented
