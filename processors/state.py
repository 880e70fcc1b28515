"""Per-kelurahan state and the pure function that folds one enriched event into it.

Faust delivers at least once and partners deliver out of order, so every update here is
either a max/min over event time (idempotent and independent of arrival order) or a counter
guarded by the event_id dedupe set kept in the same table value.  With no late events, the
final state does not depend on arrival order; tests/unit/test_state_property.py checks that.

Incidents are keyed by (source_system, incident_id): an incident id belongs to the source that
opened it. The worker takes the source from the partner's own topic (a contradicting payload is
dead-lettered before it gets here), so another partner reusing a police incident's id opens an
incident of its own instead of advancing or cancelling the police one. Keying, rather than
recording a first opener and refusing the rest, keeps the state independent of arrival order:
which of two partners' events for one id arrives first changes nothing.

`apply` mutates the given `WardState` in place: copying a ward's state per event would cost
more than the update itself, and Faust stores the same object back into the table anyway.
Times are kept as integer epoch milliseconds: exact, cheap to compare, and JSON-native.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from core.rejections import Rejection
from processors.thresholds import Thresholds

EPOCH: Final[datetime] = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final[timedelta] = timedelta(milliseconds=1)
STATE_FORMAT_VERSION: Final[int] = 2
#: Version 1 keyed incidents by incident_id alone; its rows load as unattributed (see `apply`).
_READABLE_VERSIONS: Final[frozenset[int]] = frozenset({1, STATE_FORMAT_VERSION})

IncidentKey = tuple[str, str]
"""(source_system, incident_id): an incident id belongs to the source that opened it, so the
same id from another source is another incident and can neither advance nor cancel it."""

#: The source of incident rows restored from a version-1 state, which did not record one.
UNATTRIBUTED: Final[str] = ""

# Dedupe ids are grouped by 10-minute buckets of event time so pruning and serialisation work
# on buckets; a constant (not a threshold) so a thresholds change can't misread stored state.
DEDUPE_BUCKET_MS: Final[int] = 600_000

# Caps on every collection partner data can grow in one ward (issue 12, hole 1; docs/rules.md,
# "Bounded by construction"). Constants, not thresholds: they bound the worst case of one
# changelog record and one situation, which must hold whatever an operator configures.
#: Incidents held per ward (open, and closed within the horizon). Incident ids are the one id
#: a partner invents freely; about 160 bytes of state each, so 0.8 MB at the cap.
MAX_INCIDENTS: Final[int] = 5_000
#: Lamps and waste sites per ward: registered assets only (unknown_asset otherwise), so the
#: registry bounds them; the caps hold even against a registry import gone wrong.
MAX_LAMPS: Final[int] = 20_000
MAX_CONTAINERS: Final[int] = 2_000
#: Control cabinets with recent faults per ward; a fault under a cabinet beyond this is still a
#: lamp fault, but its cabinet is not tracked.
MAX_CABINETS: Final[int] = 500
#: Full readings kept per container since its last collection (the earliest ones and the
#: newest); more only refine when a late COLLECTION splits the run.
MAX_FULL_READINGS: Final[int] = 64

# Lifecycle order: status only advances.  CANCELLED ranks above RESOLVED only to make the
# terminal state deterministic when both arrive; both mean closed.
STATUS_RANK: Final[dict[str, int]] = {
    "REPORTED": 0,
    "DISPATCHED": 1,
    "ON_SCENE": 2,
    "RESOLVED": 3,
    "CANCELLED": 4,
}
STATUS_BY_RANK: Final[tuple[str, ...]] = tuple(STATUS_RANK)
CLOSED_RANK: Final[int] = 3

# On equal occurred_at the worse lamp status wins, so the outcome doesn't hang on arrival order.
LAMP_RANK: Final[dict[str, int]] = {
    "OK": 0,
    "DEFECTIVE_LAMP": 1,
    "COLUMN_ISSUE": 2,
    "BROKEN_LANTERN": 3,
    "NO_POWER": 4,
}

EventKind = Literal["incident", "lighting", "waste"]
ApplyStatus = Literal["applied", "duplicate", "late", "expired"]


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of a tz-aware datetime (integer arithmetic: no float rounding)."""
    return (moment - EPOCH) // _ONE_MS


def from_ms(millis: int) -> datetime:
    """Tz-aware UTC datetime of epoch milliseconds."""
    return EPOCH + timedelta(milliseconds=millis)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What `apply` did with an event.

    applied: folded in everywhere.  duplicate: event_id already seen, nothing changed.
    late: its tumbling window had closed (window end + grace <= watermark), so windowed counts
    ignored it, but latest-status state took it.  expired: an event for an incident unknown to
    the state and older than closed_incident_horizon behind the watermark, ignored because the
    incident may have been closed and pruned already (re-creating it would reopen it).
    """

    status: ApplyStatus

    @property
    def changed(self) -> bool:
        """True when the state may have changed and a situation may need re-evaluating."""
        return self.status == "applied" or self.status == "late"


APPLIED: Final[ApplyResult] = ApplyResult("applied")
DUPLICATE: Final[ApplyResult] = ApplyResult("duplicate")
LATE: Final[ApplyResult] = ApplyResult("late")
EXPIRED: Final[ApplyResult] = ApplyResult("expired")


@dataclass(slots=True)
class IncidentRecord:
    """Lifecycle of one (source, incident_id), each field a max/min so arrival order doesn't matter.

    status is a STATUS_RANK (None while only UNKNOWN statuses were seen: we can't call such an
    incident open).  category/severity come from the event with the greatest
    (occurred_at, symbol); UNKNOWN severity never overwrites a known one.  Stage times are the
    earliest occurred_at of that stage.  counted_window/counted_category say where the incident
    is counted as "new", so a correction can move it instead of counting it twice.
    """

    status: int | None
    category: str
    category_at: int
    severity: str
    severity_at: int | None
    first_seen: int | None
    last_seen: int
    reported_at: int | None = None
    dispatched_at: int | None = None
    on_scene_at: int | None = None
    closed_at: int | None = None
    counted_window: int | None = None
    counted_category: str | None = None
    #: RW (neighbourhood unit) of the incident, from the newest event that named one; what an
    #: SLA reason says where the incident is ("FLOOD at RW 003 unassigned for 12 min").
    rw: str | None = None
    rw_at: int | None = None

    @property
    def is_open(self) -> bool:
        return self.status is not None and self.status < CLOSED_RANK

    @property
    def status_name(self) -> str | None:
        return None if self.status is None else STATUS_BY_RANK[self.status]

    def to_list(self) -> list[Any]:
        return [
            self.status_name,
            self.category,
            self.category_at,
            self.severity,
            self.severity_at,
            self.first_seen,
            self.last_seen,
            self.reported_at,
            self.dispatched_at,
            self.on_scene_at,
            self.closed_at,
            self.counted_window,
            self.counted_category,
        ] + ([] if self.rw is None else [self.rw, self.rw_at])

    @classmethod
    def from_list(cls, row: list[Any]) -> IncidentRecord:
        """Rows without an RW (and rows written before the RW was kept) have 13 fields."""
        status = row[0]
        return cls(None if status is None else STATUS_RANK[status], *row[1:])


@dataclass(slots=True)
class ContainerRecord:
    """Latest readings of one container or TPS.

    full_since holds the sorted times of full readings at or after the last collection: the
    earliest of them is when the container became full, and keeping them all lets a late
    COLLECTION split the run correctly.  Entries older than overdue_seconds are collapsed to
    the newest of them (any of them proves "full long enough"), which bounds the list.
    """

    fill: float | None = None
    fill_at: int | None = None
    temperature: float | None = None
    temperature_at: int | None = None
    collected_at: int | None = None
    fire_report_at: int | None = None
    full_since: list[int] = field(default_factory=list)

    def effective_fill(self) -> float | None:
        """Latest filling level; 0 when a collection came after it (a reading at the same
        instant as the collection wins, as it was taken after emptying)."""
        if self.fill is None or self.fill_at is None:
            return 0.0 if self.collected_at is not None else None
        if self.collected_at is not None and self.fill_at < self.collected_at:
            return 0.0
        return self.fill

    def to_list(self) -> list[Any]:
        return [
            self.fill,
            self.fill_at,
            self.temperature,
            self.temperature_at,
            self.collected_at,
            self.fire_report_at,
            list(self.full_since),
        ]

    @classmethod
    def from_list(cls, row: list[Any]) -> ContainerRecord:
        fill, fill_at, temperature, temperature_at, collected_at, fire_report_at, full = row
        return cls(
            fill, fill_at, temperature, temperature_at, collected_at, fire_report_at, list(full)
        )


@dataclass(slots=True)
class WindowCounts:
    """Counts of one tumbling window (keyed by its start in epoch ms)."""

    incidents: dict[str, int] = field(default_factory=dict)
    lamp_faults: int = 0
    overflow_reports: int = 0

    def is_empty(self) -> bool:
        return not self.incidents and self.lamp_faults == 0 and self.overflow_reports == 0


class WardState:
    """Everything the situation of one kelurahan is computed from; one Faust table value.

    Attributes are read directly by processors.situation; only `apply` should change them.
    The derived aggregates (lamps_out, open_by_key, response sums) are not serialised: they
    are rebuilt by from_dict, so a stored state can never carry inconsistent totals.
    """

    __slots__ = (
        "_incident_rows",
        "cabinets",
        "containers",
        "dispatch_count",
        "dispatch_ms_sum",
        "frontier",
        "incidents",
        "lamps",
        "lamps_out",
        "late_events",
        "on_scene_count",
        "on_scene_ms_sum",
        "open_by_key",
        "seen",
        "watermark",
        "windows",
    )

    def __init__(self) -> None:
        self.watermark: int | None = None
        #: The time the watermark would be at without the upstream hold (the newest event
        #: time, capped by ingestion): where `release` takes it once the hold lets it.
        self.frontier: int | None = None
        self.late_events = 0
        self.seen: dict[str, int] = {}
        self.incidents: dict[IncidentKey, IncidentRecord] = {}
        self.lamps: dict[str, tuple[str, int]] = {}
        self.cabinets: dict[str, dict[str, int]] = {}
        self.containers: dict[str, ContainerRecord] = {}
        self.windows: dict[int, WindowCounts] = {}
        # Derived, maintained incrementally so apply and summarize stay O(1) in ward size.
        self.lamps_out = 0
        self.open_by_key: dict[tuple[str, str], int] = {}
        self.dispatch_ms_sum = 0
        self.dispatch_count = 0
        self.on_scene_ms_sum = 0
        self.on_scene_count = 0
        # Serialised incident rows from the last to_dict, dropped when the incident changes:
        # a ward holds thousands of incidents and few change between two changelog writes.
        self._incident_rows: dict[IncidentKey, list[Any]] = {}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WardState):
            return NotImplemented
        return (
            self.watermark == other.watermark
            and self.frontier == other.frontier
            and self.late_events == other.late_events
            and self.seen == other.seen
            and self.incidents == other.incidents
            and self.lamps == other.lamps
            and self.cabinets == other.cabinets
            and self.containers == other.containers
            and self.windows == other.windows
        )

    def __repr__(self) -> str:
        return (
            f"WardState(watermark={self.watermark}, incidents={len(self.incidents)}, "
            f"lamps={len(self.lamps)}, containers={len(self.containers)}, "
            f"windows={len(self.windows)}, seen={len(self.seen)})"
        )

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON-able form (short keys, rows as lists) for the changelog."""
        buckets: dict[int, list[str]] = {}
        for event_id, bucket in self.seen.items():
            buckets.setdefault(bucket, []).append(event_id)
        return {
            "v": STATE_FORMAT_VERSION,
            "wm": self.watermark,
            **({} if self.frontier == self.watermark else {"fr": self.frontier}),
            "late": self.late_events,
            "seen": [[bucket, buckets[bucket]] for bucket in sorted(buckets)],
            "inc": self._incident_rows_now(),
            "lamp": {key: [status, at] for key, (status, at) in self.lamps.items()},
            "cab": {key: dict(faults) for key, faults in self.cabinets.items()},
            "cont": {key: rec.to_list() for key, rec in self.containers.items()},
            "win": [
                [start, dict(w.incidents), w.lamp_faults, w.overflow_reports]
                for start, w in sorted(self.windows.items())
            ],
        }

    def _incident_rows_now(self) -> dict[str, dict[str, list[Any]]]:
        """Every incident's row by source, then incident id, reusing rows of unchanged incidents.

        Rows are never mutated once built (a changed incident gets a new one), and the dicts
        returned are fresh: a value handed to the changelog may be serialised later.
        """
        cached = self._incident_rows
        rows: dict[IncidentKey, list[Any]] = {}
        by_source: dict[str, dict[str, list[Any]]] = {}
        for key, rec in self.incidents.items():
            row = cached.get(key)
            row = rows[key] = rec.to_list() if row is None else row
            by_source.setdefault(key[0], {})[key[1]] = row
        self._incident_rows = rows  # also forgets pruned incidents
        return by_source

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WardState:
        """Inverse of to_dict (also after a JSON round trip); rebuilds derived aggregates."""
        version = data.get("v")
        if version not in _READABLE_VERSIONS:
            raise ValueError(f"unsupported WardState format version {version!r}")
        state = cls()
        state.watermark = data["wm"]
        state.frontier = data.get("fr", state.watermark)
        state.late_events = data["late"]
        state.seen = {
            event_id: int(bucket) for bucket, event_ids in data["seen"] for event_id in event_ids
        }
        if version == 1:  # keyed by incident_id alone: the owner is not known
            state.incidents = {(UNATTRIBUTED, incident_id): IncidentRecord.from_list(row)
                               for incident_id, row in data["inc"].items()}
        else:
            state.incidents = {
                (source, incident_id): IncidentRecord.from_list(row)
                for source, rows in data["inc"].items() for incident_id, row in rows.items()
            }
        state.lamps = {key: (row[0], row[1]) for key, row in data["lamp"].items()}
        state.cabinets = {key: dict(faults) for key, faults in data["cab"].items()}
        state.containers = {
            key: ContainerRecord.from_list(row) for key, row in data["cont"].items()
        }
        state.windows = {
            int(start): WindowCounts(dict(incidents), faults, overflow)
            for start, incidents, faults, overflow in data["win"]
        }
        state.lamps_out = sum(1 for status, _ in state.lamps.values() if status != "OK")
        for rec in state.incidents.values():
            _account(state, rec, 1)
        return state


# ---------------------------------------------------------------------------------------------
# apply


def apply(
    state: WardState,
    kind: EventKind | str,
    enriched: Mapping[str, Any],
    thresholds: Thresholds,
    hold: int | None = None,
) -> ApplyResult:
    """Fold one enriched event (an Enriched*Event dict) into `state`, in place.

    `hold` is the upstream low watermark (processors/event_order.py): the watermark advances
    to this event's time only as far as every input channel has delivered (None: no bound;
    negative: a channel has delivered nothing yet, no advance). The event time it could not
    advance to is kept (`frontier`) for `release`."""
    if kind != "incident" and kind != "lighting" and kind != "waste":
        raise ValueError(f"unknown event kind {kind!r} (expected incident, lighting or waste)")
    event = enriched["event"]
    event_id: str = event["event_id"]
    if event_id in state.seen:
        return DUPLICATE
    _check_capacity(state, kind, event)
    at = to_ms(event["occurred_at"])
    # What this event may move the watermark to: its event time, but never past the time the
    # worker ingested it. A partner whose clock runs fast (events are accepted up to 5 min in
    # the future) would otherwise make everyone else's on-time events late (issue 12, hole 6).
    # `ingested_at` travels in the enriched record, so a replay moves it the same way.
    clock = min(at, to_ms(enriched["ingested_at"]))
    watermark = state.watermark
    if state.frontier is None or clock > state.frontier:
        state.frontier = clock
    if hold is not None:
        clock = min(clock, hold)
    late = False
    if watermark is not None:
        if (
            kind == "incident"
            and at < watermark - thresholds.closed_incident_horizon_ms
            and (event["source_system"], event["incident_id"]) not in state.incidents
            and (UNATTRIBUTED, event["incident_id"]) not in state.incidents
        ):
            return EXPIRED
        window_ms = thresholds.window_ms
        late = at - at % window_ms + window_ms + thresholds.grace_ms <= watermark
        if at >= watermark - thresholds.dedupe_horizon_ms:
            state.seen[event_id] = at - at % DEDUPE_BUCKET_MS
        if clock > watermark:
            _advance(state, clock, thresholds)
    else:
        state.seen[event_id] = at - at % DEDUPE_BUCKET_MS
        if clock >= 0:
            state.watermark = clock
    if kind == "incident":
        _apply_incident(state, event, at, late, thresholds)
    elif kind == "lighting":
        _apply_lighting(state, event, enriched, at, late, thresholds)
    else:
        _apply_waste(state, event, at, late, thresholds)
    if late:
        state.late_events += 1
        return LATE
    return APPLIED


def release(state: WardState, hold: int | None, thresholds: Thresholds) -> bool:
    """Advance the watermark towards the newest event time folded as far as `hold` (the
    upstream low watermark, None: no bound) now allows; True when it moved (the ward's windows
    are then evaluated again)."""
    frontier = state.frontier
    if frontier is None:
        return False
    target = frontier if hold is None else min(frontier, hold)
    if target < 0 or (state.watermark is not None and target <= state.watermark):
        return False
    if state.watermark is None:
        state.watermark = target
    else:
        _advance(state, target, thresholds)
    return True


def _check_capacity(state: WardState, kind: str, event: Mapping[str, Any]) -> None:
    """Refuse, before changing anything, an event that would add an incident, lamp or container
    beyond the ward's cap: a dead letter (PROCESS, `ward_state_full`) rather than a state that
    grows until it no longer fits a changelog record or a situation."""
    held: Mapping[Any, object]
    key: object
    if kind == "incident":
        held, cap, what = state.incidents, MAX_INCIDENTS, "incidents"
        key = (event["source_system"], event["incident_id"])
    elif kind == "lighting":
        held, key, cap, what = state.lamps, event["lamp_id"], MAX_LAMPS, "lamps"
    else:
        held, key = state.containers, event["container_id"]
        cap, what = MAX_CONTAINERS, "containers"
    if key not in held and len(held) >= cap:
        raise Rejection("PROCESS", "ward_state_full",
                        f"the ward already holds {cap} {what}; "
                        f"{key[1] if isinstance(key, tuple) else key!r} is not added")


def _advance(state: WardState, at: int, t: Thresholds) -> None:
    """Move the watermark forward; prune when it crosses a window or dedupe bucket."""
    old = state.watermark
    state.watermark = at
    if old is None:
        return
    if at // t.window_ms != old // t.window_ms:
        _prune_windows(state, t)
    if at // DEDUPE_BUCKET_MS != old // DEDUPE_BUCKET_MS:
        _prune_horizons(state, t)


def _prune_windows(state: WardState, t: Thresholds) -> None:
    """Drop windows that are both closed for late events and beyond every rule's lookback."""
    watermark = state.watermark
    assert watermark is not None
    window_ms = t.window_ms
    keep_from = watermark - watermark % window_ms - (t.lookback_windows - 1) * window_ms
    closed_before = watermark - window_ms - t.grace_ms  # start + W + grace <= wm
    stale = [start for start in state.windows if start < keep_from and start <= closed_before]
    for start in stale:
        del state.windows[start]


def _prune_horizons(state: WardState, t: Thresholds) -> None:
    """Bound memory: forget old event ids, finished incidents, old faults and readings."""
    watermark = state.watermark
    assert watermark is not None
    dedupe_cutoff = watermark - t.dedupe_horizon_ms
    old_ids = [
        event_id
        for event_id, bucket in state.seen.items()
        if bucket + DEDUPE_BUCKET_MS <= dedupe_cutoff
    ]
    for event_id in old_ids:
        del state.seen[event_id]

    closed_cutoff = watermark - t.closed_incident_horizon_ms
    stale_cutoff = watermark - t.stale_open_incident_ms
    gone = [
        key
        for key, rec in state.incidents.items()
        if rec.last_seen < (stale_cutoff if rec.is_open else closed_cutoff)
    ]
    for key in gone:
        _account(state, state.incidents.pop(key), -1)

    fault_cutoff = watermark - t.cabinet_window_ms
    for cabinet in list(state.cabinets):
        faults = state.cabinets[cabinet]
        for lamp in [lamp for lamp, at in faults.items() if at < fault_cutoff]:
            del faults[lamp]
        if not faults:
            del state.cabinets[cabinet]

    overdue_cutoff = watermark - t.overdue_ms
    for rec in state.containers.values():
        full = rec.full_since
        old = bisect.bisect_left(full, overdue_cutoff)
        if old > 1:
            del full[: old - 1]


def evict_oldest_event_ids(state: WardState, count: int) -> int:
    """Forget at least `count` remembered event ids, oldest bucket first; returns how many.

    The dedupe set is what grows with a ward's event rate (one id per event within the dedupe
    horizon), and the whole state must fit one Kafka record. When it would not, the worker
    shortens this ward's dedupe memory instead of failing the changelog write: a partner retry
    of an evicted id would then be counted twice, which the caller makes visible in metrics.
    Whole buckets go, so the remaining ids still cover one contiguous, most recent span.
    """
    if count <= 0 or not state.seen:
        return 0
    by_bucket: dict[int, list[str]] = {}
    for event_id, bucket in state.seen.items():
        by_bucket.setdefault(bucket, []).append(event_id)
    removed = 0
    for bucket in sorted(by_bucket):
        if removed >= count:
            break
        for event_id in by_bucket[bucket]:
            del state.seen[event_id]
        removed += len(by_bucket[bucket])
    return removed


def _account(state: WardState, rec: IncidentRecord, sign: int) -> None:
    """Add (sign=1) or remove (sign=-1) an incident's share of the derived aggregates."""
    if rec.status is not None and rec.status < CLOSED_RANK:
        key = (rec.severity, rec.category)
        count = state.open_by_key.get(key, 0) + sign
        if count:
            state.open_by_key[key] = count
        else:
            del state.open_by_key[key]
    reported = rec.reported_at
    if reported is not None:
        if rec.dispatched_at is not None:
            # Partner clocks disagree now and then; a negative interval counts as zero.
            state.dispatch_ms_sum += sign * max(0, rec.dispatched_at - reported)
            state.dispatch_count += sign
        if rec.on_scene_at is not None:
            state.on_scene_ms_sum += sign * max(0, rec.on_scene_at - reported)
            state.on_scene_count += sign


def _window(state: WardState, start: int) -> WindowCounts:
    window = state.windows.get(start)
    if window is None:
        window = state.windows[start] = WindowCounts()
    return window


def _apply_incident(
    state: WardState, event: Mapping[str, Any], at: int, late: bool, t: Thresholds
) -> None:
    key: IncidentKey = (event["source_system"], event["incident_id"])
    category: str = event["category"]
    severity: str = event["severity"]
    rank = STATUS_RANK.get(event["status"])
    rec = state.incidents.get(key)
    if rec is None and state.incidents:
        # A row restored from a version-1 state has no owner: the first source that continues
        # it after the upgrade owns it (the shared topic's payload said so before, too).
        rec = state.incidents.pop((UNATTRIBUTED, key[1]), None)
        if rec is not None:
            state.incidents[key] = rec
            state._incident_rows.pop((UNATTRIBUTED, key[1]), None)
    if rec is None:
        rec = IncidentRecord(
            status=None,
            category=category,
            category_at=at,
            severity="UNKNOWN",
            severity_at=None,
            first_seen=None,
            last_seen=at,
        )
        state.incidents[key] = rec
    else:
        _account(state, rec, -1)
        if (at, category) > (rec.category_at, rec.category):
            rec.category, rec.category_at = category, at
        if at > rec.last_seen:
            rec.last_seen = at
    rw = event.get("rw")
    if rw and (rec.rw_at is None or rec.rw is None or (at, rw) > (rec.rw_at, rec.rw)):
        rec.rw, rec.rw_at = str(rw), at
    if severity != "UNKNOWN" and (
        rec.severity_at is None or (at, severity) > (rec.severity_at, rec.severity)
    ):
        rec.severity, rec.severity_at = severity, at
    if rank is not None:
        if rec.status is None or rank > rec.status:
            rec.status = rank
        if rec.first_seen is None or at < rec.first_seen:
            rec.first_seen = at
        if rank == 0:
            if rec.reported_at is None or at < rec.reported_at:
                rec.reported_at = at
        elif rank == 1:
            if rec.dispatched_at is None or at < rec.dispatched_at:
                rec.dispatched_at = at
        elif rank == 2:
            if rec.on_scene_at is None or at < rec.on_scene_at:
                rec.on_scene_at = at
        elif rec.closed_at is None or at < rec.closed_at:
            rec.closed_at = at
    _account(state, rec, 1)
    _recount_new_incident(state, rec, t)
    state._incident_rows.pop(key, None)


def _recount_new_incident(state: WardState, rec: IncidentRecord, t: Thresholds) -> None:
    """Count the incident as new in the window of its first known-status event, moving the
    count when an earlier event or a category correction arrives, never into a closed window."""
    if rec.first_seen is None:
        return
    watermark = state.watermark
    window_ms = t.window_ms
    # a window starting <= this is closed (none while the upstream hold lets no watermark be)
    closed_until = -math.inf if watermark is None else watermark - window_ms - t.grace_ms
    target = rec.first_seen - rec.first_seen % window_ms
    current = rec.counted_window
    if target <= closed_until:
        if current is None or current <= closed_until:
            return  # counting is frozen: the windows involved are closed
        target = current
    if target == current and rec.category == rec.counted_category:
        return
    if current is not None and rec.counted_category is not None:
        old = state.windows.get(current)
        if old is not None:
            remaining = old.incidents.get(rec.counted_category, 0) - 1
            if remaining > 0:
                old.incidents[rec.counted_category] = remaining
            else:
                old.incidents.pop(rec.counted_category, None)
                if old.is_empty():
                    del state.windows[current]
    counts = _window(state, target).incidents
    counts[rec.category] = counts.get(rec.category, 0) + 1
    rec.counted_window = target
    rec.counted_category = rec.category


def _apply_lighting(
    state: WardState,
    event: Mapping[str, Any],
    enriched: Mapping[str, Any],
    at: int,
    late: bool,
    t: Thresholds,
) -> None:
    lamp_id: str = event["lamp_id"]
    status: str = event["lamp_status"]
    rank = LAMP_RANK.get(status)
    if rank is not None:
        previous = state.lamps.get(lamp_id)
        if previous is None:
            state.lamps[lamp_id] = (status, at)
            if rank:
                state.lamps_out += 1
        else:
            old_status, old_at = previous
            if (at, rank) > (old_at, LAMP_RANK[old_status]):
                state.lamps[lamp_id] = (status, at)
                state.lamps_out += (rank != 0) - (old_status != "OK")
    # A fault is a report of a not-OK lamp, or a FAULT report whose status we can't read.
    if rank or (rank is None and event["report_kind"] == "FAULT"):
        if not late:
            _window(state, at - at % t.window_ms).lamp_faults += 1
        cabinet = enriched.get("cabinet_id") or event.get("cabinet_id")
        watermark = state.watermark
        if cabinet and (watermark is None or at >= watermark - t.cabinet_window_ms):
            faults = state.cabinets.get(cabinet)
            if faults is None:
                if len(state.cabinets) >= MAX_CABINETS:
                    return
                faults = state.cabinets[cabinet] = {}
            if at > faults.get(lamp_id, at - 1):
                faults[lamp_id] = at


def _finite(value: object) -> float | None:
    """Readings as floats; NaN, infinite or missing -> None (NaN breaks equality and order)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _apply_waste(
    state: WardState, event: Mapping[str, Any], at: int, late: bool, t: Thresholds
) -> None:
    report_kind: str = event["report_kind"]
    if report_kind == "OVERFLOW_COMPLAINT" and not late:
        _window(state, at - at % t.window_ms).overflow_reports += 1
    fill = _finite(event.get("filling_level"))
    temperature = _finite(event.get("temperature_celsius"))
    is_collection = report_kind == "COLLECTION"
    is_fire_report = report_kind == "FIRE_RISK"
    if fill is None and temperature is None and not is_collection and not is_fire_report:
        return
    container_id: str = event["container_id"]
    rec = state.containers.get(container_id)
    if rec is None:
        rec = state.containers[container_id] = ContainerRecord()
    if is_collection and (rec.collected_at is None or at > rec.collected_at):
        rec.collected_at = at
        full = rec.full_since
        del full[: bisect.bisect_left(full, at)]
    if fill is not None:
        if rec.fill_at is None or rec.fill is None or (at, fill) > (rec.fill_at, rec.fill):
            rec.fill, rec.fill_at = fill, at
        if fill >= t.full_level and (rec.collected_at is None or at >= rec.collected_at):
            full = rec.full_since
            index = bisect.bisect_left(full, at)
            if index == len(full) or full[index] != at:
                full.insert(index, at)
                if len(full) > MAX_FULL_READINGS:
                    del full[-2]  # keep the earliest readings and the newest
    if temperature is not None and (
        rec.temperature_at is None
        or rec.temperature is None
        or (at, temperature) > (rec.temperature_at, rec.temperature)
    ):
        rec.temperature, rec.temperature_at = temperature, at
    if is_fire_report and (rec.fire_report_at is None or at > rec.fire_report_at):
        rec.fire_report_at = at
