"""An independent reference calculation of what each ward must show after a stream of events.

Written from the rules in docs/rules.md, deliberately NOT from processors/state.py or
processors/situation.py (nothing here imports them): the worker folds events one at a time into
incremental state and must survive replays, crashes and any arrival order; this module looks at
the whole, deduplicated event list at once and computes every figure directly. When both agree
after a chaos run, neither a lost event nor a double count can hide in a shared helper.

Scope: the order-independent figures (open incidents by category and severity, response-time
means, lamps out, cabinet alerts, containers full / at fire risk, last event time, the set of
event ids a ward has seen). Windowed counts are left out on purpose: whether an event is late
depends on the order it arrived in, which a replay changes. Pruning horizons are not modelled
either, so `expected_wards` refuses a ward whose events span more than the closed-incident
horizon (after which a finished incident is forgotten). The dedupe horizon needs no modelling:
every figure here is a max/min over event time, so an event applied twice changes none of them;
what the horizon decides is only which event ids the worker must still remember
(`WardExpectation.recent_event_ids`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEFAULT_THRESHOLDS = Path(__file__).resolve().parent.parent / "cityops" / "thresholds.default.json"

OPEN_STATUSES = ("REPORTED", "DISPATCHED", "ON_SCENE")
CLOSED_STATUSES = ("RESOLVED", "CANCELLED")
#: Lifecycle order (docs/rules.md: status only advances; CANCELLED above RESOLVED).
STATUS_ORDER = (*OPEN_STATUSES, *CLOSED_STATUSES)
#: "At equal times the worse lamp status wins"; worse = later in this tuple.
LAMP_ORDER = ("OK", "DEFECTIVE_LAMP", "COLUMN_ISSUE", "BROKEN_LANTERN", "NO_POWER")


@dataclass(frozen=True)
class Params:
    """The thresholds the modelled figures depend on, read from the JSON file itself."""

    full_level: float
    fire_temperature_celsius: float
    fire_risk_report: timedelta
    cabinet_fault_count: int
    cabinet_window: timedelta
    dedupe_horizon: timedelta
    closed_incident_horizon: timedelta

    @classmethod
    def load(cls, path: Path = DEFAULT_THRESHOLDS) -> Params:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            full_level=float(raw["full_level"]),
            fire_temperature_celsius=float(raw["fire_temperature_celsius"]),
            fire_risk_report=timedelta(seconds=raw["fire_risk_report_seconds"]),
            cabinet_fault_count=int(raw["cabinet_fault_count"]),
            cabinet_window=timedelta(seconds=raw["cabinet_window_seconds"]),
            dedupe_horizon=timedelta(seconds=raw["dedupe_horizon_seconds"]),
            closed_incident_horizon=timedelta(seconds=raw["closed_incident_horizon_seconds"]),
        )


@dataclass(frozen=True)
class Asset:
    ward_code: str
    kind: str
    cabinet_id: str | None = None


@dataclass(frozen=True)
class Event:
    """One decoded partner record; kind is incident, lighting or waste."""

    kind: str
    record: Mapping[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.record["event_id"])

    @property
    def at(self) -> datetime:
        at: datetime = self.record["occurred_at"]
        return at


@dataclass
class WardExpectation:
    """What the ward's state and its last situation must say."""

    ward_code: str
    event_ids: set[str] = field(default_factory=set)
    #: Ids within the dedupe horizon of the last event: the worker must remember each of them.
    recent_event_ids: set[str] = field(default_factory=set)
    last_event_at: datetime | None = None
    incident_status: dict[str, str | None] = field(default_factory=dict)
    open_incidents: int = 0
    open_incidents_by_category: dict[str, int] = field(default_factory=dict)
    open_incidents_by_severity: dict[str, int] = field(default_factory=dict)
    dispatch_count: int = 0
    on_scene_count: int = 0
    mean_dispatch_seconds: float | None = None
    mean_on_scene_seconds: float | None = None
    lamp_status: dict[str, str] = field(default_factory=dict)
    lamps_out: int = 0
    cabinet_alerts: list[str] = field(default_factory=list)
    container_fill: dict[str, float | None] = field(default_factory=dict)
    containers_full: int = 0
    containers_fire_risk: int = 0

    def situation_fields(self) -> dict[str, Any]:
        """The SituationEvent fields this model predicts, under their schema names."""
        return {
            "last_event_at": self.last_event_at,
            "open_incidents": self.open_incidents,
            "open_incidents_by_category": self.open_incidents_by_category,
            "open_incidents_by_severity": self.open_incidents_by_severity,
            "dispatch_count": self.dispatch_count,
            "on_scene_count": self.on_scene_count,
            "mean_dispatch_seconds": self.mean_dispatch_seconds,
            "mean_on_scene_seconds": self.mean_on_scene_seconds,
            "lamps_out": self.lamps_out,
            "cabinet_alerts": self.cabinet_alerts,
            "containers_full": self.containers_full,
            "containers_fire_risk": self.containers_fire_risk,
        }


def _ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def deduplicate(events: Iterable[Event]) -> list[Event]:
    """One event per event_id. A partner retry must repeat the same event; an id reused for
    different content has no order-independent meaning, so it is refused here."""
    unique: dict[str, Event] = {}
    for event in events:
        seen = unique.get(event.event_id)
        if seen is None:
            unique[event.event_id] = event
        elif dict(seen.record) != dict(event.record) or seen.kind != event.kind:
            raise ValueError(f"event id {event.event_id} reused with different content")
    return list(unique.values())


def ward_of(event: Event, assets: Mapping[str, Asset]) -> str:
    """The registry ward of the lamp or container (it wins over the payload: docs/rules.md),
    else the partner's ward code."""
    asset_field = {"lighting": "lamp_id", "waste": "container_id"}.get(event.kind)
    if asset_field is not None and event.record[asset_field] in assets:
        return assets[event.record[asset_field]].ward_code
    code = event.record.get("ward_code")
    if code is not None:
        return str(code)
    raise ValueError(f"event {event.event_id} can't be placed without coordinates")


def expected_wards(events: Iterable[Event], assets: Mapping[str, Asset],
                   params: Params | None = None) -> dict[str, WardExpectation]:
    """Expectation per ward that received at least one event."""
    p = params or Params.load()
    by_ward: dict[str, list[Event]] = defaultdict(list)
    for event in deduplicate(events):
        by_ward[ward_of(event, assets)].append(event)
    result = {}
    for code, ward_events in sorted(by_ward.items()):
        first = min(e.at for e in ward_events)
        last = max(e.at for e in ward_events)
        if last - first >= p.closed_incident_horizon:
            raise ValueError(f"ward {code}: events span {last - first}, beyond the horizons "
                             "this model leaves out")
        expectation = WardExpectation(
            code, {e.event_id for e in ward_events},
            {e.event_id for e in ward_events if e.at >= last - p.dedupe_horizon}, last)
        _incidents(expectation, [e for e in ward_events if e.kind == "incident"])
        _lamps(expectation, [e for e in ward_events if e.kind == "lighting"], assets, p, last)
        _containers(expectation, [e for e in ward_events if e.kind == "waste"], p, last)
        result[code] = expectation
    return result


def _incidents(out: WardExpectation, events: list[Event]) -> None:
    by_incident: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_incident[str(event.record["incident_id"])].append(event)
    by_category: dict[str, int] = defaultdict(int)
    by_severity: dict[str, int] = defaultdict(int)
    dispatch_ms: list[int] = []
    on_scene_ms: list[int] = []
    for incident_id, history in by_incident.items():
        known = [e for e in history if e.record["status"] in STATUS_ORDER]
        status = max((e.record["status"] for e in known), key=STATUS_ORDER.index, default=None)
        out.incident_status[incident_id] = status
        category = max((e.at, e.record["category"]) for e in history)[1]
        severities = [(e.at, e.record["severity"]) for e in history
                      if e.record["severity"] != "UNKNOWN"]
        severity = max(severities)[1] if severities else "UNKNOWN"
        if status in OPEN_STATUSES:
            by_category[category] += 1
            by_severity[severity] += 1

        def first(stage: str, stage_history: list[Event] = known) -> datetime | None:
            return min((e.at for e in stage_history if e.record["status"] == stage),
                       default=None)

        reported, dispatched, on_scene = first("REPORTED"), first("DISPATCHED"), first("ON_SCENE")
        if reported is not None and dispatched is not None:
            dispatch_ms.append(max(0, _ms(dispatched) - _ms(reported)))
        if reported is not None and on_scene is not None:
            on_scene_ms.append(max(0, _ms(on_scene) - _ms(reported)))
    out.open_incidents_by_category = dict(sorted(by_category.items()))
    out.open_incidents_by_severity = dict(sorted(by_severity.items()))
    out.open_incidents = sum(by_category.values())
    out.dispatch_count, out.on_scene_count = len(dispatch_ms), len(on_scene_ms)
    out.mean_dispatch_seconds = _mean_seconds(dispatch_ms)
    out.mean_on_scene_seconds = _mean_seconds(on_scene_ms)


def _mean_seconds(intervals_ms: list[int]) -> float | None:
    """Integer sum first, one division chain after: the float a worker computes the same way."""
    return sum(intervals_ms) / len(intervals_ms) / 1000.0 if intervals_ms else None


def _is_fault(record: Mapping[str, Any]) -> bool:
    status = record["lamp_status"]
    if status == "UNKNOWN":
        return bool(record["report_kind"] == "FAULT")
    return bool(status != "OK")


def _lamps(out: WardExpectation, events: list[Event], assets: Mapping[str, Asset], p: Params,
           as_of: datetime) -> None:
    latest: dict[str, tuple[datetime, int]] = {}
    last_fault: dict[str, dict[str, datetime]] = defaultdict(dict)
    for event in events:
        record = event.record
        lamp = str(record["lamp_id"])
        if record["lamp_status"] in LAMP_ORDER:
            candidate = (event.at, LAMP_ORDER.index(record["lamp_status"]))
            if lamp not in latest or candidate > latest[lamp]:
                latest[lamp] = candidate
        if _is_fault(record):
            asset = assets.get(lamp)
            cabinet = record.get("cabinet_id") or (asset.cabinet_id if asset else None)
            if cabinet:
                faults = last_fault[cabinet]
                faults[lamp] = max(faults.get(lamp, event.at), event.at)
    out.lamp_status = {lamp: LAMP_ORDER[rank] for lamp, (_, rank) in sorted(latest.items())}
    out.lamps_out = sum(1 for status in out.lamp_status.values() if status != "OK")
    cutoff = as_of - p.cabinet_window
    out.cabinet_alerts = sorted(
        cabinet for cabinet, faults in last_fault.items()
        if sum(1 for at in faults.values() if at >= cutoff) >= p.cabinet_fault_count
    )


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value and (
            abs(value) != float("inf")):
        return float(value)
    return None


def _containers(out: WardExpectation, events: list[Event], p: Params, as_of: datetime) -> None:
    by_container: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_container[str(event.record["container_id"])].append(event)
    full = fire = 0
    for container, history in sorted(by_container.items()):
        readings = [(e.at, v) for e in history
                    if (v := _finite(e.record.get("filling_level"))) is not None]
        temperatures = [(e.at, v) for e in history
                        if (v := _finite(e.record.get("temperature_celsius"))) is not None]
        collections = [e.at for e in history if e.record["report_kind"] == "COLLECTION"]
        fire_reports = [e.at for e in history if e.record["report_kind"] == "FIRE_RISK"]
        if not (readings or temperatures or collections or fire_reports):
            continue  # nothing a container record is made of (e.g. only overflow complaints)
        collected = max(collections, default=None)
        fill: float | None
        if readings:
            fill_at, fill = max(readings)
            if collected is not None and fill_at < collected:
                fill = 0.0
        else:
            fill = 0.0 if collected is not None else None
        out.container_fill[container] = fill
        if fill is not None and fill >= p.full_level:
            full += 1
        hot = bool(temperatures) and max(temperatures)[1] >= p.fire_temperature_celsius
        reported = any(at >= as_of - p.fire_risk_report for at in fire_reports)
        if hot or reported:
            fire += 1
    out.containers_full, out.containers_fire_risk = full, fire


def rollup_totals(wards: Iterable[WardExpectation]) -> dict[str, Any]:
    """What a kecamatan or city rollup of these wards must add up to."""
    members = list(wards)
    by_category: dict[str, int] = defaultdict(int)
    for ward in members:
        for category, count in ward.open_incidents_by_category.items():
            by_category[category] += count
    return {
        "open_incidents": sum(w.open_incidents for w in members),
        "open_incidents_by_category": dict(sorted(by_category.items())),
        "lamps_out": sum(w.lamps_out for w in members),
        "containers_full": sum(w.containers_full for w in members),
        "cabinet_alerts": sorted({c for w in members for c in w.cabinet_alerts}),
    }
