"""SituationEvent records for a kelurahan, and rollups for a kecamatan or the whole city.

Levels and reasons are for an operator at a screen, so reasons are short sentences with the
numbers that triggered them.  Evaluation time is `max(now, watermark)`: a ward that goes
quiet must not keep showing "3 flood reports in 20 min" forever, and events stamped slightly
ahead of the worker's clock must still land in the current window.

Rollups are built from the members' SituationEvent dicts, the natural input for a rollup
agent that reads the situation topic; each record carries its response-time counts next to
the means, so weighted means stay exact (`totals_from_situation`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from core.vocabulary import level_rank, max_level
from processors.operations import empty_fields
from processors.state import WardState, from_ms, to_ms
from processors.thresholds import Thresholds
from schemas.codec import encode

__all__ = [
    "ResponseTotals",
    "WardAssetCounts",
    "asset_counts_by_ward",
    "encode_situation",
    "level_rank",
    "max_level",
    "response_totals",
    "rollup",
    "rollup_states",
    "situation_changed",
    "summarize_ward",
    "totals_from_situation",
    "ward_reasons",
]

SITUATION_KINDS: Final[tuple[str, ...]] = ("CHANGE", "SNAPSHOT")
ROLLUP_SCOPES: Final[tuple[str, ...]] = ("KECAMATAN", "CITY")
# Fields that change on every emission without the situation itself changing.
NOT_COMPARED: Final[frozenset[str]] = frozenset(
    {"emitted_at", "sequence", "kind", "caused_by_event_id", "last_event_at", "events_folded"}
)
CABINET_HINT: Final[str] = "possible power loss or cable theft"
_LISTED_IDS: Final[int] = 3
#: Cabinet alerts named one reason each; past this, one reason counts the rest ("and 297 more
#: cabinets"), at the same level. Issue 12 hole 1: 300 invented cabinets once made 301 reasons.
MAX_CABINET_REASONS: Final[int] = 5
#: Cabinet ids listed in a situation's `cabinet_alerts` (ward and rollup), the first in order.
MAX_LISTED_CABINETS: Final[int] = 20
#: The largest encoded situation published. The codec refuses 1 MiB; a ward driven to every cap
#: (processors/state.py) stays far under this (tests/unit/test_bounded_ward.py), so a situation
#: over it means a cap is missing: it is refused (`situation_failed`), never sent.
SITUATION_BUDGET_BYTES: Final[int] = 64 * 1024
SITUATION_SCHEMA: Final[str] = "org.cityops.SituationEvent"


class SituationTooLargeError(ValueError):
    """An encoded situation above SITUATION_BUDGET_BYTES."""


def encode_situation(situation: Mapping[str, Any]) -> bytes:
    """The situation as the SituationEvent record to send, within the byte budget."""
    value = encode(SITUATION_SCHEMA, situation)
    if len(value) > SITUATION_BUDGET_BYTES:
        raise SituationTooLargeError(
            f"situation of {situation.get('scope_code')} is {len(value)} bytes encoded, over "
            f"its budget of {SITUATION_BUDGET_BYTES}")
    return value


@dataclass(frozen=True, slots=True)
class WardAssetCounts:
    """Registered assets of one ward (the denominators of lamp and container ratios)."""

    lamps_total: int
    containers_total: int


@dataclass(frozen=True, slots=True)
class ResponseTotals:
    """Sums (ms) and counts behind the mean response times, so rollups stay exact."""

    dispatch_ms_sum: int = 0
    dispatch_count: int = 0
    on_scene_ms_sum: int = 0
    on_scene_count: int = 0

    def __add__(self, other: ResponseTotals) -> ResponseTotals:
        return ResponseTotals(
            self.dispatch_ms_sum + other.dispatch_ms_sum,
            self.dispatch_count + other.dispatch_count,
            self.on_scene_ms_sum + other.on_scene_ms_sum,
            self.on_scene_count + other.on_scene_count,
        )

    @property
    def mean_dispatch_seconds(self) -> float | None:
        if not self.dispatch_count:
            return None
        return self.dispatch_ms_sum / self.dispatch_count / 1000.0

    @property
    def mean_on_scene_seconds(self) -> float | None:
        if not self.on_scene_count:
            return None
        return self.on_scene_ms_sum / self.on_scene_count / 1000.0

    def to_dict(self) -> dict[str, int]:
        """JSON-able form, e.g. to travel next to a ward situation to the rollup agent."""
        return {
            "dispatch_ms_sum": self.dispatch_ms_sum,
            "dispatch_count": self.dispatch_count,
            "on_scene_ms_sum": self.on_scene_ms_sum,
            "on_scene_count": self.on_scene_count,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResponseTotals:
        return cls(
            int(data["dispatch_ms_sum"]),
            int(data["dispatch_count"]),
            int(data["on_scene_ms_sum"]),
            int(data["on_scene_count"]),
        )


def asset_counts_by_ward(assets: Iterable[Mapping[str, Any]]) -> dict[str, WardAssetCounts]:
    """Lamps and waste sites (containers and TPS) registered in each ward: the denominators
    of its shares."""
    lamps: dict[str, int] = {}
    containers: dict[str, int] = {}
    for asset in assets:
        ward = str(asset["ward_code"])
        if asset["asset_kind"] == "LAMP":
            lamps[ward] = lamps.get(ward, 0) + 1
        elif asset["asset_kind"] in ("WASTE_CONTAINER", "TPS"):
            containers[ward] = containers.get(ward, 0) + 1
    return {code: WardAssetCounts(lamps.get(code, 0), containers.get(code, 0))
            for code in set(lamps) | set(containers)}


def response_totals(state: WardState) -> ResponseTotals:
    """Response-time sums and counts of the incidents the ward state still holds."""
    return ResponseTotals(
        state.dispatch_ms_sum, state.dispatch_count, state.on_scene_ms_sum, state.on_scene_count
    )


def totals_from_situation(situation: Mapping[str, Any]) -> ResponseTotals:
    """Sums behind a situation's means, rebuilt as mean x count rounded to the millisecond.

    Exact: the means were computed from integer millisecond sums, and the float error of
    mean x count stays far below half a millisecond for any realistic sum.
    """
    parts: list[int] = []
    for mean_key, count_key in (
        ("mean_dispatch_seconds", "dispatch_count"),
        ("mean_on_scene_seconds", "on_scene_count"),
    ):
        mean = situation.get(mean_key)
        count = int(situation.get(count_key) or 0)
        if mean is not None and count <= 0:
            raise ValueError(
                f"situation {situation.get('scope_code')}: {mean_key} without {count_key}, "
                "so it can't be weighted"
            )
        parts += [round(mean * count * 1000) if mean is not None else 0, count]
    return ResponseTotals(*parts)


# ---------------------------------------------------------------------------------------------
# Text helpers: exact integer arithmetic so a reason never shows a rounded-up share.


def _plural(count: int, word: str) -> str:
    return word if count == 1 else f"{word}s"


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    if secs or not parts:
        parts.append(f"{secs} s")
    return " ".join(parts)


def _percent(part: int, whole: int) -> str:
    """Share as a percentage truncated to one decimal ("12%", "5.6%")."""
    tenths = part * 1000 // whole
    whole_pct, tenth = divmod(tenths, 10)
    return f"{whole_pct}%" if tenth == 0 else f"{whole_pct}.{tenth}%"


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_LISTED_IDS])
    hidden = len(ids) - _LISTED_IDS
    return f"{shown}, +{hidden} more" if hidden > 0 else shown


def _category_label(category: str) -> str:
    return category.lower().replace("_", " ")


def _ordered(reasons: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Worst level first, then alphabetical, so the order is stable between emissions."""
    return sorted(reasons, key=lambda pair: (-level_rank(pair[0]), pair[1]))


def _check_kind(kind: str) -> None:
    if kind not in SITUATION_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SITUATION_KINDS)}, got {kind!r}")


# ---------------------------------------------------------------------------------------------
# Kelurahan


@dataclass(slots=True)
class _Figures:
    """Everything one evaluation derives from a state, shared by fields and reasons."""

    as_of: int
    window_start: int
    open_by_category: dict[str, int]
    open_by_severity: dict[str, int]
    open_total: int
    new_incidents: int
    new_lamp_faults: int
    overflow_reports: int
    cabinet_faults: dict[str, int]
    cabinet_alerts: list[str]
    full: list[str]
    fire_risk: list[str]
    overdue: list[str]


def _figures(state: WardState, thresholds: Thresholds, now: datetime) -> _Figures:
    t = thresholds
    now_ms = to_ms(now)
    watermark = state.watermark
    as_of = now_ms if watermark is None or watermark < now_ms else watermark
    window_start = as_of - as_of % t.window_ms
    window = state.windows.get(window_start)

    by_category: dict[str, int] = {}
    by_severity: dict[str, int] = {}
    for (severity, category), count in state.open_by_key.items():
        by_category[category] = by_category.get(category, 0) + count
        by_severity[severity] = by_severity.get(severity, 0) + count

    fault_cutoff = as_of - t.cabinet_window_ms
    cabinet_faults: dict[str, int] = {}
    for cabinet, faults in state.cabinets.items():
        recent = sum(1 for at in faults.values() if at >= fault_cutoff)
        if recent:
            cabinet_faults[cabinet] = recent
    cabinet_alerts = sorted(
        cabinet for cabinet, count in cabinet_faults.items() if count >= t.cabinet_fault_count
    )

    full: list[str] = []
    fire_risk: list[str] = []
    overdue: list[str] = []
    overdue_cutoff = as_of - t.overdue_ms
    fire_report_cutoff = as_of - t.fire_risk_report_ms
    for container_id, rec in state.containers.items():
        fill = rec.effective_fill()
        if fill is not None and fill >= t.full_level:
            full.append(container_id)
            if rec.full_since and rec.full_since[0] <= overdue_cutoff:
                overdue.append(container_id)
        if (rec.temperature is not None and rec.temperature >= t.fire_temperature_celsius) or (
            rec.fire_report_at is not None and rec.fire_report_at >= fire_report_cutoff
        ):
            fire_risk.append(container_id)

    return _Figures(
        as_of=as_of,
        window_start=window_start,
        open_by_category=dict(sorted(by_category.items())),
        open_by_severity=dict(sorted(by_severity.items())),
        open_total=sum(by_category.values()),
        new_incidents=sum(window.incidents.values()) if window is not None else 0,
        new_lamp_faults=window.lamp_faults if window is not None else 0,
        overflow_reports=window.overflow_reports if window is not None else 0,
        cabinet_faults=cabinet_faults,
        cabinet_alerts=cabinet_alerts,
        full=sorted(full),
        fire_risk=sorted(fire_risk),
        overdue=sorted(overdue),
    )


def _burst_count(state: WardState, category: str, first: int, last: int) -> int:
    return sum(
        window.incidents.get(category, 0)
        for start, window in state.windows.items()
        if first <= start <= last
    )


def _reasons(
    state: WardState, figures: _Figures, registry: WardAssetCounts, thresholds: Thresholds
) -> list[tuple[str, str]]:
    t = thresholds
    found: list[tuple[str, str]] = []

    def add(level: str, text: str) -> None:
        if level_rank(level) > 0:
            found.append((level, text))

    count = figures.open_total
    add(t.open_incidents.level_for(count), f"{count} open {_plural(count, 'incident')}")

    for severity, level in t.open_incident_severity_levels.items():
        categories = sorted(
            {cat for (sev, cat), n in state.open_by_key.items() if sev == severity and n > 0}
        )
        count = figures.open_by_severity.get(severity, 0)
        if count:
            add(
                level,
                f"{count} open {severity} {_plural(count, 'incident')} ({', '.join(categories)})",
            )

    for rule in t.category_bursts:
        windows = t.windows_for(rule.lookback_seconds)
        first = figures.window_start - (windows - 1) * t.window_ms
        count = _burst_count(state, rule.category, first, figures.window_start)
        add(
            rule.steps.level_for(count),
            f"{count} {_category_label(rule.category)} {_plural(count, 'report')} "
            f"in {_duration(windows * t.window_seconds)}",
        )

    out, total = state.lamps_out, registry.lamps_total
    if total > 0:
        add(
            t.lamps_out.level_for(out, total),
            f"{_percent(out, total)} of lamps out ({out} of {total})",
        )

    for cabinet in figures.cabinet_alerts[:MAX_CABINET_REASONS]:
        count = figures.cabinet_faults[cabinet]
        add(
            t.cabinet_alert_level,
            f"cabinet {cabinet}: {count} lamp faults in "
            f"{_duration(t.cabinet_window_seconds)} ({CABINET_HINT})",
        )
    hidden = len(figures.cabinet_alerts) - MAX_CABINET_REASONS
    if hidden > 0:
        add(t.cabinet_alert_level, f"and {hidden} more {_plural(hidden, 'cabinet')} with "
            f"{t.cabinet_fault_count} or more lamp faults ({CABINET_HINT})")

    count, total = len(figures.full), registry.containers_total
    level = max_level(
        (t.containers_full_count.level_for(count), t.containers_full_ratio.level_for(count, total))
    )
    share = f" ({_percent(count, total)} of {total})" if total > 0 else ""
    add(level, f"{count} {_plural(count, 'container')} full{share}")

    if figures.fire_risk:
        count = len(figures.fire_risk)
        add(
            t.fire_risk_level,
            f"{count} {_plural(count, 'container')} at fire risk ({_ids(figures.fire_risk)})",
        )
    if figures.overdue:
        count = len(figures.overdue)
        add(
            t.overdue_level,
            f"{count} full {_plural(count, 'container')} overdue for collection "
            f"({_ids(figures.overdue)})",
        )
    return _ordered(found)


def ward_reasons(
    state: WardState, registry: WardAssetCounts, thresholds: Thresholds, now: datetime
) -> list[tuple[str, str]]:
    """(level, reason) pairs of every rule that fired, worst first then alphabetical."""
    return _reasons(state, _figures(state, thresholds, now), registry, thresholds)


def summarize_ward(
    state: WardState,
    ward: Mapping[str, Any],
    registry: WardAssetCounts,
    thresholds: Thresholds,
    now: datetime,
    kind: str,
    sequence: int,
    caused_by_event_id: str | None,
) -> dict[str, Any]:
    """SituationEvent dict (scope KELURAHAN) for one ward at `now` (tz-aware)."""
    _check_kind(kind)
    figures = _figures(state, thresholds, now)
    reasons = _reasons(state, figures, registry, thresholds)
    lamps_total, lamps_out = registry.lamps_total, state.lamps_out
    totals = response_totals(state)
    return {
        "scope": "KELURAHAN",
        "scope_code": ward["kelurahan_code"],
        "scope_name": ward["kelurahan_name"],
        "kecamatan_code": ward["kecamatan_code"],
        "kecamatan_name": ward["kecamatan_name"],
        "kind": kind,
        "level": max_level(level for level, _ in reasons),
        "reasons": [text for _, text in reasons],
        "emitted_at": from_ms(to_ms(now)),
        # the newest event folded, whether or not an input still holds the watermark behind it
        "last_event_at": None if state.frontier is None else from_ms(state.frontier),
        "caused_by_event_id": caused_by_event_id,
        "sequence": sequence,
        "open_incidents": figures.open_total,
        "open_incidents_by_category": figures.open_by_category,
        "open_incidents_by_severity": figures.open_by_severity,
        "new_incidents_in_window": figures.new_incidents,
        "window_start": from_ms(figures.window_start),
        "window_end": from_ms(figures.window_start + thresholds.window_ms),
        "lamps_total": lamps_total,
        "lamps_out": lamps_out,
        "lamps_working_ratio": _working_ratio(lamps_out, lamps_total),
        "cabinet_alerts": figures.cabinet_alerts[:MAX_LISTED_CABINETS],
        "new_lamp_faults_in_window": figures.new_lamp_faults,
        "containers_total": registry.containers_total,
        "containers_full": len(figures.full),
        "containers_fire_risk": len(figures.fire_risk),
        "containers_overdue": len(figures.overdue),
        "overflow_reports_in_window": figures.overflow_reports,
        "mean_dispatch_seconds": totals.mean_dispatch_seconds,
        "mean_on_scene_seconds": totals.mean_on_scene_seconds,
        "dispatch_count": totals.dispatch_count,
        "on_scene_count": totals.on_scene_count,
        "events_folded": 0,
        # the command center's part, added by processors.operations.annotate in the ward step
        **empty_fields(),
    }


def _working_ratio(out: int, total: int) -> float | None:
    """Share of registered lamps working; lamps reported but not registered can't push it
    below zero."""
    if total <= 0:
        return None
    return max(total - out, 0) / total


# ---------------------------------------------------------------------------------------------
# Rollups


def _sum_maps(maps: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for mapping in maps:
        for key, count in mapping.items():
            total[key] = total.get(key, 0) + count
    return {key: count for key, count in sorted(total.items()) if count}


def _member_reason(member: Mapping[str, Any]) -> str:
    text = f"Kelurahan {member['scope_name']}: {member['level']}"
    reasons = member.get("reasons") or []
    return f"{text} ({reasons[0]})" if reasons else text


def rollup(
    scope: str,
    code: str,
    name: str,
    ward_situations: Sequence[Mapping[str, Any]],
    now: datetime,
    sequence: int,
    *,
    totals_by_ward: Mapping[str, ResponseTotals] | None = None,
    kind: str = "CHANGE",
    caused_by_event_id: str | None = None,
    max_reasons: int = 5,
) -> dict[str, Any]:
    """SituationEvent dict for a KECAMATAN or the CITY from its kelurahan situations.

    Mean response times are weighted by the members' incident counts (averaging means would
    weight a ward with one incident like a ward with fifty): from `totals_by_ward` (kelurahan
    code -> ResponseTotals) where given, else from each member's mean and count fields.
    Windowed counts add up only the members whose window is the newest among them: an older
    window is a stale count, not a current one.
    """
    _check_kind(kind)
    if scope not in ROLLUP_SCOPES:
        raise ValueError(f"scope must be one of {', '.join(ROLLUP_SCOPES)}, got {scope!r}")
    totals = ResponseTotals()
    for member in ward_situations:
        member_totals = (totals_by_ward or {}).get(member["scope_code"])
        if member_totals is None:
            member_totals = totals_from_situation(member)
        totals = totals + member_totals

    emitted_at = from_ms(to_ms(now))
    if ward_situations:
        current = max(ward_situations, key=lambda member: member["window_start"])
        window_start, window_end = current["window_start"], current["window_end"]
    else:
        window_start = window_end = emitted_at
    in_window = [m for m in ward_situations if m["window_start"] == window_start]

    lamps_total = sum(m["lamps_total"] for m in ward_situations)
    lamps_out = sum(m["lamps_out"] for m in ward_situations)
    last_events = [m["last_event_at"] for m in ward_situations if m["last_event_at"] is not None]

    raised = sorted(
        (m for m in ward_situations if level_rank(m["level"]) > 0),
        key=lambda m: (-level_rank(m["level"]), _member_reason(m)),
    )
    reasons = [_member_reason(m) for m in raised[:max_reasons]]
    hidden = len(raised) - max_reasons
    if hidden > 0:
        reasons.append(f"{hidden} more kelurahan above NORMAL")  # Indonesian: no plural -s

    return {
        "scope": scope,
        "scope_code": code,
        "scope_name": name,
        "kecamatan_code": code if scope == "KECAMATAN" else None,
        "kecamatan_name": name if scope == "KECAMATAN" else None,
        "kind": kind,
        "level": max_level(m["level"] for m in ward_situations),
        "reasons": reasons,
        "emitted_at": emitted_at,
        "last_event_at": max(last_events) if last_events else None,
        "caused_by_event_id": caused_by_event_id,
        "sequence": sequence,
        "open_incidents": sum(m["open_incidents"] for m in ward_situations),
        "open_incidents_by_category": _sum_maps(
            m["open_incidents_by_category"] for m in ward_situations
        ),
        "open_incidents_by_severity": _sum_maps(
            m["open_incidents_by_severity"] for m in ward_situations
        ),
        "new_incidents_in_window": sum(m["new_incidents_in_window"] for m in in_window),
        "window_start": window_start,
        "window_end": window_end,
        "lamps_total": lamps_total,
        "lamps_out": lamps_out,
        "lamps_working_ratio": _working_ratio(lamps_out, lamps_total),
        "cabinet_alerts": sorted(
            {c for m in ward_situations for c in m["cabinet_alerts"]})[:MAX_LISTED_CABINETS],
        "new_lamp_faults_in_window": sum(m["new_lamp_faults_in_window"] for m in in_window),
        "containers_total": sum(m["containers_total"] for m in ward_situations),
        "containers_full": sum(m["containers_full"] for m in ward_situations),
        "containers_fire_risk": sum(m["containers_fire_risk"] for m in ward_situations),
        "containers_overdue": sum(m["containers_overdue"] for m in ward_situations),
        "overflow_reports_in_window": sum(m["overflow_reports_in_window"] for m in in_window),
        "mean_dispatch_seconds": totals.mean_dispatch_seconds,
        "mean_on_scene_seconds": totals.mean_on_scene_seconds,
        "dispatch_count": totals.dispatch_count,
        "on_scene_count": totals.on_scene_count,
        "events_folded": 0,
        **empty_fields(),
        "sla_overdue": sum(int(m.get("sla_overdue") or 0) for m in ward_situations),
    }


def rollup_states(
    scope: str,
    code: str,
    name: str,
    members: Iterable[tuple[WardState, Mapping[str, Any], WardAssetCounts]],
    thresholds: Thresholds,
    now: datetime,
    sequence: int,
    *,
    kind: str = "CHANGE",
    caused_by_event_id: str | None = None,
) -> dict[str, Any]:
    """Rollup straight from ward states (state, Ward record, asset counts), for a worker that
    holds every member's state locally."""
    situations = []
    totals: dict[str, ResponseTotals] = {}
    for state, ward, registry in members:
        situations.append(
            summarize_ward(state, ward, registry, thresholds, now, "SNAPSHOT", 0, None)
        )
        totals[ward["kelurahan_code"]] = response_totals(state)
    return rollup(
        scope,
        code,
        name,
        situations,
        now,
        sequence,
        totals_by_ward=totals,
        kind=kind,
        caused_by_event_id=caused_by_event_id,
        max_reasons=thresholds.rollup_max_reasons,
    )


def situation_changed(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> bool:
    """True when level, reasons or any count differ (bookkeeping fields are ignored), so a
    situation is emitted only when an operator would see something new."""
    if previous is None:
        return True
    keys = (previous.keys() | current.keys()) - NOT_COMPARED
    return any(previous.get(key) != current.get(key) for key in keys)
