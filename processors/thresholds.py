"""Operator-editable thresholds that turn per-ward state into situation levels.

The numbers are project defaults chosen to make a command-center screen useful out of the
box; they are not city policy.  Every key is documented in docs/rules.md.  Parsing is pure
(`Thresholds.from_mapping`) so a bad file fails with the name of the bad key before any
worker starts; `Thresholds.load` is the only function here that touches the file system.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

RULE_LEVELS: Final[tuple[str, ...]] = ("WATCH", "ALERT", "CRITICAL")

INCIDENT_CATEGORIES: Final[tuple[str, ...]] = (
    "TRAFFIC_ACCIDENT",
    "FIRE",
    "FLOOD",
    "CRIME",
    "PUBLIC_ORDER",
    "MEDICAL",
    "INFRASTRUCTURE_DAMAGE",
    "OTHER",
)
SEVERITIES: Final[tuple[str, ...]] = ("EXTREME", "SEVERE", "MODERATE", "MINOR")

DEFAULT_THRESHOLDS_PATH: Final[Path] = (
    Path(__file__).resolve().parent.parent / "cityops" / "thresholds.default.json"
)


class ThresholdsError(ValueError):
    """A thresholds file or mapping is invalid; the message names the offending key."""


@dataclass(frozen=True, slots=True)
class LevelSteps:
    """Count thresholds for WATCH/ALERT/CRITICAL; None disables that step."""

    watch: int | None = None
    alert: int | None = None
    critical: int | None = None

    def level_for(self, count: int) -> str:
        """Highest level whose threshold `count` reaches (NORMAL when none)."""
        if self.critical is not None and count >= self.critical:
            return "CRITICAL"
        if self.alert is not None and count >= self.alert:
            return "ALERT"
        if self.watch is not None and count >= self.watch:
            return "WATCH"
        return "NORMAL"


@dataclass(frozen=True, slots=True)
class RatioSteps:
    """Share thresholds (0..1) plus a minimum count, so small wards don't flap on one asset."""

    watch_ratio: float | None = None
    alert_ratio: float | None = None
    critical_ratio: float | None = None
    min_count: int = 1

    def level_for(self, count: int, total: int) -> str:
        """Level for `count` out of `total`; NORMAL when total is 0 or count below min_count."""
        if total <= 0 or count < self.min_count:
            return "NORMAL"
        # Division (not ratio * total) is exact for decimal thresholds such as 3/60 >= 0.05.
        share = count / total
        if self.critical_ratio is not None and share >= self.critical_ratio:
            return "CRITICAL"
        if self.alert_ratio is not None and share >= self.alert_ratio:
            return "ALERT"
        if self.watch_ratio is not None and share >= self.watch_ratio:
            return "WATCH"
        return "NORMAL"


@dataclass(frozen=True, slots=True)
class BurstRule:
    """New incidents of one category within a lookback (summed over tumbling windows)."""

    category: str
    lookback_seconds: int
    steps: LevelSteps


def _default_bursts() -> tuple[BurstRule, ...]:
    return (
        BurstRule("FIRE", 1800, LevelSteps(None, 2, 4)),
        BurstRule("FLOOD", 1200, LevelSteps(2, 3, 6)),
        BurstRule("TRAFFIC_ACCIDENT", 3600, LevelSteps(3, 5, None)),
    )


def _default_severity_levels() -> dict[str, str]:
    return {"EXTREME": "CRITICAL", "SEVERE": "ALERT"}


@dataclass(frozen=True, slots=True)
class NeighbourhoodRules:
    """Tolerances of the RT-report checks (docs/smart-village.md); project defaults, not policy.

    The continuity tolerance is the larger of an absolute and a relative allowance, because an
    RT head counts people by hand: a few residents of drift is normal in a 40-household RT,
    and 2 % of residents in a large one. The outlier test is a robust z-score (distance to the
    peers' median over 1.4826 x their median absolute deviation, Iglewicz and Hoaglin's
    modified z-score), so one wrong peer cannot hide or create an outlier the way a mean and a
    standard deviation would; the floors keep a group of identical peers (MAD 0) from flagging
    every small difference.
    """

    max_period_age_months: int = 3
    """A report for a month more than this many months before the current one is too old."""
    continuity_abs_tolerance: int = 5
    continuity_rel_tolerance: float = 0.02
    outlier_min_peers: int = 4
    """Peers (other RTs with a VALID report for the month) needed before the outlier test runs;
    below it at RW level the kelurahan's RTs are the peers, below it there too, no test."""
    outlier_z: float = 3.5
    outlier_rate_floor: float = 0.02
    """Smallest scale of the unemployment-rate test (2 percentage points)."""
    outlier_household_size_floor: float = 0.25
    """Smallest scale of the residents-per-household test."""
    # Bounds (issue 23): what one RT can hold. Project assumptions, not a regulation: the
    # SYNTHETIC registry's RTs hold 60-260 residents in 15-75 households.
    max_rt_residents: int = 2_000
    """City-wide maximum residents of one RT; above it a report is REJECTED (out_of_range)."""
    max_rt_households: int = 500
    """City-wide maximum households of one RT; above it a report is REJECTED (out_of_range)."""
    max_household_size: float = 10.0
    """Residents per household above this need review (household_size_bound)."""
    moves_abs_tolerance: int = 10
    moves_rel_tolerance: float = 0.10
    """moved_in or moved_out above max(moves_abs_tolerance, ceil(moves_rel_tolerance x the
    RT's base residents)) in one month needs review (large_moves): a large flow must not make
    a jump look continuous."""
    max_report_ids_per_rt_month: int = 10
    """Distinct report ids kept per RT and month; one more is dead-lettered
    (too_many_reports), so no RT head can grow the state."""
    # Small cells (issue 24, part 5; UU 27/2022): an RW whose counts would point at a household.
    min_labour_force: int = 10
    """An RW indicator whose labour force is 1 to this minus 1 is published with unemployed and
    the rate withheld (SMALL_LABOUR_FORCE): in a handful of workers one unemployed person is
    a known neighbour."""
    max_small_count: int = 2
    """An RW indicator with 1 to this many unemployed is withheld (SMALL_COUNT): one or two
    unemployed in an RW is, in practice, one household."""


_NEIGHBOURHOOD_INT_KEYS: Final = ("max_period_age_months", "continuity_abs_tolerance",
                                  "outlier_min_peers", "max_rt_residents", "max_rt_households",
                                  "moves_abs_tolerance", "max_report_ids_per_rt_month",
                                  "min_labour_force", "max_small_count")
_NEIGHBOURHOOD_FLOAT_KEYS: Final = ("continuity_rel_tolerance", "outlier_z", "outlier_rate_floor",
                                    "outlier_household_size_floor", "max_household_size",
                                    "moves_rel_tolerance")


def _parse_neighbourhood(value: object) -> NeighbourhoodRules:
    section = _section(value, "neighbourhood",
                       _NEIGHBOURHOOD_INT_KEYS + _NEIGHBOURHOOD_FLOAT_KEYS)
    values: dict[str, Any] = {}
    for name in _NEIGHBOURHOOD_INT_KEYS:
        if name in section:
            values[name] = _int(section[name], f"neighbourhood.{name}", minimum=1)
    for name in _NEIGHBOURHOOD_FLOAT_KEYS:
        if name in section:
            number = _number(section[name], f"neighbourhood.{name}")
            if number <= 0:
                raise ThresholdsError(f"neighbourhood.{name}: expected a number > 0, got {number}")
            values[name] = number
    return NeighbourhoodRules(**values)


def _neighbourhood_mapping(rules: NeighbourhoodRules) -> dict[str, Any]:
    return {name: getattr(rules, name)
            for name in _NEIGHBOURHOOD_INT_KEYS + _NEIGHBOURHOOD_FLOAT_KEYS}


#: Agencies a case can be assigned to (the Agency enum of OperatorAction, UNKNOWN aside).
AGENCIES: Final[tuple[str, ...]] = ("POLRES", "DAMKAR", "BPBD", "DISHUB", "DLH", "DINKES")
#: The SLA clocks of an incident, in lifecycle order.
SLA_CLOCKS: Final[tuple[str, ...]] = ("dispatch", "on_scene", "resolve")
_SLA_TIME_KEYS: Final[tuple[str, ...]] = tuple(f"{clock}_seconds" for clock in SLA_CLOCKS)


@dataclass(frozen=True, slots=True)
class SlaTimes:
    """Seconds from report to dispatch (an agency assigned, or the partner's DISPATCHED), to
    on-scene and to resolution; None leaves the clock to the next, less specific rule."""

    dispatch_seconds: int | None = None
    on_scene_seconds: int | None = None
    resolve_seconds: int | None = None

    def seconds(self, clock: str) -> int | None:
        value: int | None = getattr(self, f"{clock}_seconds")
        return value


def _default_acknowledge() -> dict[str, int]:
    return {"ALERT": 900, "CRITICAL": 300}


def _default_sla_categories() -> dict[str, SlaTimes]:
    return {
        "FIRE": SlaTimes(300, 900, None),
        "MEDICAL": SlaTimes(300, 1200, None),
        "TRAFFIC_ACCIDENT": SlaTimes(300, 1200, None),
        "FLOOD": SlaTimes(600, 3600, None),
    }


def _default_sla_agencies() -> dict[str, SlaTimes]:
    return {"DAMKAR": SlaTimes(None, 900, None), "DINKES": SlaTimes(None, 1200, None)}


@dataclass(frozen=True, slots=True)
class SlaRules:
    """The command center's own promises (issue 14): how long an ALERT or CRITICAL situation
    may wait for an acknowledgement, and an incident for dispatch, on-scene and resolution.

    A clock's limit is the assigned agency's, else the incident category's, else the default:
    an agency that promises a faster arrival is held to it whatever the category. Project
    defaults for a demo, not city policy (docs/rules.md, "SLA clocks").
    """

    acknowledge_seconds: dict[str, int] = field(default_factory=_default_acknowledge)
    default: SlaTimes = SlaTimes(900, 2700, 86_400)
    categories: dict[str, SlaTimes] = field(default_factory=_default_sla_categories)
    agencies: dict[str, SlaTimes] = field(default_factory=_default_sla_agencies)
    overdue_level: str = "ALERT"

    def limit_seconds(self, clock: str, category: str, agency: str | None) -> int | None:
        """The limit of `clock` for an incident of `category` assigned to `agency`."""
        for times in (self.agencies.get(agency) if agency else None,
                      self.categories.get(category), self.default):
            if times is not None:
                value = times.seconds(clock)
                if value is not None:
                    return value
        return None


def _parse_sla_times(value: object, key: str) -> SlaTimes:
    section = _section(value, key, _SLA_TIME_KEYS)
    return SlaTimes(**{name: _opt_int(section.get(name), f"{key}.{name}")
                       for name in _SLA_TIME_KEYS})


def _sla_times_mapping(times: SlaTimes) -> dict[str, int | None]:
    return {name: getattr(times, name) for name in _SLA_TIME_KEYS}


def _parse_sla(value: object) -> SlaRules:
    section = _section(value, "sla", ("acknowledge_seconds", "default", "categories",
                                      "agencies", "overdue_level"))
    defaults = SlaRules()
    values: dict[str, Any] = {}
    if "acknowledge_seconds" in section:
        ack = _section(section["acknowledge_seconds"], "sla.acknowledge_seconds",
                       ("ALERT", "CRITICAL"))
        values["acknowledge_seconds"] = {
            level: _int(ack[level], f"sla.acknowledge_seconds.{level}", minimum=1)
            for level in ("ALERT", "CRITICAL") if level in ack}
    if "default" in section:
        values["default"] = _parse_sla_times(section["default"], "sla.default")
    if "categories" in section:
        categories = _section(section["categories"], "sla.categories", INCIDENT_CATEGORIES)
        values["categories"] = {name: _parse_sla_times(body, f"sla.categories.{name}")
                                for name, body in categories.items()}
    if "agencies" in section:
        agencies = _section(section["agencies"], "sla.agencies", AGENCIES)
        values["agencies"] = {name: _parse_sla_times(body, f"sla.agencies.{name}")
                              for name, body in agencies.items()}
    if "overdue_level" in section:
        values["overdue_level"] = _level(section["overdue_level"], "sla.overdue_level")
    return SlaRules(**{**{name: getattr(defaults, name) for name in (
        "acknowledge_seconds", "default", "categories", "agencies", "overdue_level")}, **values})


def _sla_mapping(rules: SlaRules) -> dict[str, Any]:
    return {
        "acknowledge_seconds": dict(rules.acknowledge_seconds),
        "default": _sla_times_mapping(rules.default),
        "categories": {name: _sla_times_mapping(t) for name, t in rules.categories.items()},
        "agencies": {name: _sla_times_mapping(t) for name, t in rules.agencies.items()},
        "overdue_level": rules.overdue_level,
    }


@dataclass(frozen=True, slots=True)
class Thresholds:
    """All tunables of state keeping and situation rules (project defaults, not city policy)."""

    window_seconds: int = 300
    grace_seconds: int = 60
    dedupe_horizon_seconds: int = 7_200
    closed_incident_horizon_seconds: int = 86_400
    stale_open_incident_seconds: int = 604_800
    open_incidents: LevelSteps = LevelSteps(3, 6, 12)
    open_incident_severity_levels: dict[str, str] = field(default_factory=_default_severity_levels)
    category_bursts: tuple[BurstRule, ...] = field(default_factory=_default_bursts)
    lamps_out: RatioSteps = RatioSteps(0.05, 0.10, 0.25, 3)
    cabinet_fault_count: int = 3
    cabinet_window_seconds: int = 600
    cabinet_alert_level: str = "ALERT"
    full_level: float = 0.9
    containers_full_count: LevelSteps = LevelSteps(3, 10, None)
    containers_full_ratio: RatioSteps = RatioSteps(0.3, 0.6, None, 2)
    fire_temperature_celsius: float = 60.0
    fire_risk_report_seconds: int = 7200
    fire_risk_level: str = "ALERT"
    overdue_seconds: int = 86_400
    overdue_level: str = "WATCH"
    rollup_max_reasons: int = 5
    neighbourhood: NeighbourhoodRules = NeighbourhoodRules()
    sla: SlaRules = field(default_factory=SlaRules)
    # Derived in __post_init__ so the per-event path does no arithmetic on seconds.
    window_ms: int = field(init=False, repr=False, compare=False)
    grace_ms: int = field(init=False, repr=False, compare=False)
    dedupe_horizon_ms: int = field(init=False, repr=False, compare=False)
    closed_incident_horizon_ms: int = field(init=False, repr=False, compare=False)
    stale_open_incident_ms: int = field(init=False, repr=False, compare=False)
    cabinet_window_ms: int = field(init=False, repr=False, compare=False)
    fire_risk_report_ms: int = field(init=False, repr=False, compare=False)
    overdue_ms: int = field(init=False, repr=False, compare=False)
    lookback_windows: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate(self)
        derived = {
            "window_ms": self.window_seconds * 1000,
            "grace_ms": self.grace_seconds * 1000,
            "dedupe_horizon_ms": self.dedupe_horizon_seconds * 1000,
            "closed_incident_horizon_ms": self.closed_incident_horizon_seconds * 1000,
            "stale_open_incident_ms": self.stale_open_incident_seconds * 1000,
            "cabinet_window_ms": self.cabinet_window_seconds * 1000,
            "fire_risk_report_ms": self.fire_risk_report_seconds * 1000,
            "overdue_ms": self.overdue_seconds * 1000,
            "lookback_windows": max(
                [1] + [self.windows_for(rule.lookback_seconds) for rule in self.category_bursts]
            ),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def windows_for(self, lookback_seconds: int) -> int:
        """How many tumbling windows (ending with the current one) a lookback sums."""
        return max(1, math.ceil(lookback_seconds / self.window_seconds))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Thresholds:
        """Parse a JSON-like mapping; missing keys keep their defaults, unknown keys fail."""
        return _parse(mapping)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_THRESHOLDS_PATH) -> Thresholds:
        """Read and parse a thresholds JSON file."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ThresholdsError(f"thresholds file {path}: {exc}") from exc
        if not isinstance(raw, Mapping):
            raise ThresholdsError(f"thresholds file {path}: top level must be a JSON object")
        try:
            return _parse(raw)
        except ThresholdsError as exc:
            raise ThresholdsError(f"thresholds file {path}: {exc}") from exc

    def to_mapping(self) -> dict[str, Any]:
        """The JSON form accepted by from_mapping (the default file is exactly this)."""
        return {
            "window_seconds": self.window_seconds,
            "grace_seconds": self.grace_seconds,
            "dedupe_horizon_seconds": self.dedupe_horizon_seconds,
            "closed_incident_horizon_seconds": self.closed_incident_horizon_seconds,
            "stale_open_incident_seconds": self.stale_open_incident_seconds,
            "open_incidents": _steps_mapping(self.open_incidents),
            "open_incident_severity_levels": dict(self.open_incident_severity_levels),
            "category_bursts": {
                rule.category: {"lookback_seconds": rule.lookback_seconds}
                | _steps_mapping(rule.steps)
                for rule in self.category_bursts
            },
            "lamps_out": _ratio_mapping(self.lamps_out),
            "cabinet_fault_count": self.cabinet_fault_count,
            "cabinet_window_seconds": self.cabinet_window_seconds,
            "cabinet_alert_level": self.cabinet_alert_level,
            "full_level": self.full_level,
            "containers_full_count": _steps_mapping(self.containers_full_count),
            "containers_full_ratio": _ratio_mapping(self.containers_full_ratio),
            "fire_temperature_celsius": self.fire_temperature_celsius,
            "fire_risk_report_seconds": self.fire_risk_report_seconds,
            "fire_risk_level": self.fire_risk_level,
            "overdue_seconds": self.overdue_seconds,
            "overdue_level": self.overdue_level,
            "rollup_max_reasons": self.rollup_max_reasons,
            "neighbourhood": _neighbourhood_mapping(self.neighbourhood),
            "sla": _sla_mapping(self.sla),
        }


def load(path: str | Path = DEFAULT_THRESHOLDS_PATH) -> Thresholds:
    """Module-level alias of Thresholds.load for callers that import functions."""
    return Thresholds.load(path)


def _steps_mapping(steps: LevelSteps) -> dict[str, Any]:
    return {"watch": steps.watch, "alert": steps.alert, "critical": steps.critical}


def _ratio_mapping(steps: RatioSteps) -> dict[str, Any]:
    return {
        "watch_ratio": steps.watch_ratio,
        "alert_ratio": steps.alert_ratio,
        "critical_ratio": steps.critical_ratio,
        "min_count": steps.min_count,
    }


# ---------------------------------------------------------------------------------------------
# Parsing: every helper takes the dotted key so errors say exactly what to fix.

_SCALAR_INT_KEYS: Final[tuple[str, ...]] = (
    "window_seconds",
    "grace_seconds",
    "dedupe_horizon_seconds",
    "closed_incident_horizon_seconds",
    "stale_open_incident_seconds",
    "cabinet_fault_count",
    "cabinet_window_seconds",
    "fire_risk_report_seconds",
    "overdue_seconds",
    "rollup_max_reasons",
)
_LEVEL_KEYS: Final[tuple[str, ...]] = ("cabinet_alert_level", "fire_risk_level", "overdue_level")


def _minimum(key: str) -> int:
    """Grace may be zero (windows close at their end); everything else must be positive."""
    return 0 if key == "grace_seconds" else 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: object, key: str, *, minimum: int) -> int:
    if not _is_int(value) or value < minimum:  # type: ignore[operator]
        raise ThresholdsError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return value  # type: ignore[return-value]


def _opt_int(value: object, key: str) -> int | None:
    if value is None:
        return None
    return _int(value, key, minimum=1)


def _number(value: object, key: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ThresholdsError(f"{key}: expected a finite number, got {value!r}")
    return float(value)


def _ratio(value: object, key: str) -> float:
    number = _number(value, key)
    if not 0.0 < number <= 1.0:
        raise ThresholdsError(f"{key}: expected a share in (0, 1], got {value!r}")
    return number


def _opt_ratio(value: object, key: str) -> float | None:
    return None if value is None else _ratio(value, key)


def _level(value: object, key: str) -> str:
    if value not in RULE_LEVELS:
        raise ThresholdsError(f"{key}: expected one of {', '.join(RULE_LEVELS)}, got {value!r}")
    return str(value)


def _section(value: object, key: str, known: Iterable[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ThresholdsError(f"{key}: expected an object, got {value!r}")
    allowed = set(known)
    for name in value:
        if name not in allowed:
            raise ThresholdsError(
                f"{key}.{name}: unknown key (known: {', '.join(sorted(allowed))})"
            )
    return value


def _parse_steps(value: object, key: str, default: LevelSteps) -> LevelSteps:
    section = _section(value, key, ("watch", "alert", "critical"))
    return LevelSteps(
        watch=_opt_int(section["watch"], f"{key}.watch") if "watch" in section else default.watch,
        alert=_opt_int(section["alert"], f"{key}.alert") if "alert" in section else default.alert,
        critical=(
            _opt_int(section["critical"], f"{key}.critical")
            if "critical" in section
            else default.critical
        ),
    )


def _parse_ratio_steps(value: object, key: str, default: RatioSteps) -> RatioSteps:
    section = _section(value, key, ("watch_ratio", "alert_ratio", "critical_ratio", "min_count"))

    def ratio(name: str, fallback: float | None) -> float | None:
        return _opt_ratio(section[name], f"{key}.{name}") if name in section else fallback

    return RatioSteps(
        watch_ratio=ratio("watch_ratio", default.watch_ratio),
        alert_ratio=ratio("alert_ratio", default.alert_ratio),
        critical_ratio=ratio("critical_ratio", default.critical_ratio),
        min_count=(
            _int(section["min_count"], f"{key}.min_count", minimum=1)
            if "min_count" in section
            else default.min_count
        ),
    )


def _parse_bursts(value: object) -> tuple[BurstRule, ...]:
    section = _section(value, "category_bursts", INCIDENT_CATEGORIES)
    rules = []
    for category in sorted(section):
        key = f"category_bursts.{category}"
        body = _section(section[category], key, ("lookback_seconds", "watch", "alert", "critical"))
        if "lookback_seconds" not in body:
            raise ThresholdsError(f"{key}.lookback_seconds: required")
        lookback = _int(body["lookback_seconds"], f"{key}.lookback_seconds", minimum=1)
        steps = _parse_steps(
            {name: body[name] for name in ("watch", "alert", "critical") if name in body},
            key,
            LevelSteps(),
        )
        rules.append(BurstRule(category, lookback, steps))
    return tuple(rules)


def _parse_severity_levels(value: object) -> dict[str, str]:
    section = _section(value, "open_incident_severity_levels", SEVERITIES)
    return {
        severity: _level(section[severity], f"open_incident_severity_levels.{severity}")
        for severity in SEVERITIES
        if severity in section
    }


def _parse(mapping: Mapping[str, Any]) -> Thresholds:
    for key in mapping:
        if not isinstance(key, str):
            raise ThresholdsError(f"{key!r}: keys must be strings")
        if key not in _KNOWN_KEYS and not key.startswith("_"):
            raise ThresholdsError(f"{key}: unknown key (known: {', '.join(sorted(_KNOWN_KEYS))})")
    defaults = Thresholds()
    values: dict[str, Any] = {}
    for key in _SCALAR_INT_KEYS:
        if key in mapping:
            values[key] = _int(mapping[key], key, minimum=_minimum(key))
    for key in _LEVEL_KEYS:
        if key in mapping:
            values[key] = _level(mapping[key], key)
    if "full_level" in mapping:
        values["full_level"] = _ratio(mapping["full_level"], "full_level")
    if "fire_temperature_celsius" in mapping:
        values["fire_temperature_celsius"] = _number(
            mapping["fire_temperature_celsius"], "fire_temperature_celsius"
        )
    for key in ("open_incidents", "containers_full_count"):
        if key in mapping:
            values[key] = _parse_steps(mapping[key], key, getattr(defaults, key))
    for key in ("lamps_out", "containers_full_ratio"):
        if key in mapping:
            values[key] = _parse_ratio_steps(mapping[key], key, getattr(defaults, key))
    if "category_bursts" in mapping:
        values["category_bursts"] = _parse_bursts(mapping["category_bursts"])
    if "open_incident_severity_levels" in mapping:
        values["open_incident_severity_levels"] = _parse_severity_levels(
            mapping["open_incident_severity_levels"]
        )
    if "neighbourhood" in mapping:
        values["neighbourhood"] = _parse_neighbourhood(mapping["neighbourhood"])
    if "sla" in mapping:
        values["sla"] = _parse_sla(mapping["sla"])
    return Thresholds(**values)


# ---------------------------------------------------------------------------------------------
# Validation of a constructed Thresholds (also guards values built in code, e.g. in tests).


def _check_steps(steps: LevelSteps, key: str) -> None:
    present = [
        (name, value)
        for name, value in (
            ("watch", steps.watch),
            ("alert", steps.alert),
            ("critical", steps.critical),
        )
        if value is not None
    ]
    for name, value in present:
        _int(value, f"{key}.{name}", minimum=1)
    for (low_name, low), (high_name, high) in itertools.pairwise(present):
        if low > high:
            raise ThresholdsError(
                f"{key}.{low_name}: {low} must not exceed {key}.{high_name} ({high})"
            )


def _check_ratio_steps(steps: RatioSteps, key: str) -> None:
    present = [
        (name, value)
        for name, value in (
            ("watch_ratio", steps.watch_ratio),
            ("alert_ratio", steps.alert_ratio),
            ("critical_ratio", steps.critical_ratio),
        )
        if value is not None
    ]
    for name, value in present:
        _ratio(value, f"{key}.{name}")
    for (low_name, low), (high_name, high) in itertools.pairwise(present):
        if low > high:
            raise ThresholdsError(
                f"{key}.{low_name}: {low} must not exceed {key}.{high_name} ({high})"
            )
    _int(steps.min_count, f"{key}.min_count", minimum=1)


def _validate(t: Thresholds) -> None:
    for key in _SCALAR_INT_KEYS:
        _int(getattr(t, key), key, minimum=_minimum(key))
    for key in _LEVEL_KEYS:
        _level(getattr(t, key), key)
    _ratio(t.full_level, "full_level")
    _number(t.fire_temperature_celsius, "fire_temperature_celsius")
    _check_steps(t.open_incidents, "open_incidents")
    _check_steps(t.containers_full_count, "containers_full_count")
    _check_ratio_steps(t.lamps_out, "lamps_out")
    _check_ratio_steps(t.containers_full_ratio, "containers_full_ratio")
    for severity, level in t.open_incident_severity_levels.items():
        if severity not in SEVERITIES:
            raise ThresholdsError(
                f"open_incident_severity_levels.{severity}: unknown severity "
                f"(known: {', '.join(SEVERITIES)})"
            )
        _level(level, f"open_incident_severity_levels.{severity}")
    seen: set[str] = set()
    longest = 0
    for rule in t.category_bursts:
        key = f"category_bursts.{rule.category}"
        if rule.category not in INCIDENT_CATEGORIES:
            raise ThresholdsError(
                f"{key}: unknown category (known: {', '.join(INCIDENT_CATEGORIES)})"
            )
        if rule.category in seen:
            raise ThresholdsError(f"{key}: duplicate rule")
        seen.add(rule.category)
        _int(rule.lookback_seconds, f"{key}.lookback_seconds", minimum=1)
        _check_steps(rule.steps, key)
        longest = max(longest, rule.lookback_seconds)
    # Window counts stay exact only while every event that can still be counted is also still
    # remembered for deduplication, and a closed incident outlives its counting window.
    needed = longest + t.window_seconds + t.grace_seconds
    if t.dedupe_horizon_seconds < needed:
        raise ThresholdsError(
            f"dedupe_horizon_seconds: {t.dedupe_horizon_seconds} is shorter than the longest "
            f"lookback + window_seconds + grace_seconds ({needed})"
        )
    if t.closed_incident_horizon_seconds < needed:
        raise ThresholdsError(
            f"closed_incident_horizon_seconds: {t.closed_incident_horizon_seconds} is shorter "
            f"than the longest lookback + window_seconds + grace_seconds ({needed})"
        )
    if t.stale_open_incident_seconds < t.closed_incident_horizon_seconds:
        raise ThresholdsError(
            f"stale_open_incident_seconds: {t.stale_open_incident_seconds} is shorter than "
            f"closed_incident_horizon_seconds ({t.closed_incident_horizon_seconds})"
        )


# Built last: constructing Thresholds() runs _validate, defined above.
_KNOWN_KEYS: Final[frozenset[str]] = frozenset(Thresholds().to_mapping())
