"""Named, SYNTHETIC scenarios injected into the simulated feed, with the levels they should cause.

A scenario is a finite, deterministic list of partner events (same record shapes as
:mod:`cityops.simulator`) plus ``expected_wards``: the minimum situation level each targeted
kelurahan should reach under ``cityops/thresholds.default.json``. The targets are fixed (a
kecamatan, a cabinet, four kelurahan, the main-road corridor) so the expectation can be stated
up front; the choice of targets is synthetic, not a claim about where floods or outages happen.

Timing is chosen so the expectation holds both when the scenario runs in real time and when
the whole feed is replayed as fast as possible with the scenario ending just before "now":
the situation rules look back from ``max(now, watermark)``, so every burst that a rule must
see lies within that rule's lookback from the scenario's last event (FLOOD 20 min, lamp faults
in one cabinet 10 min, TRAFFIC_ACCIDENT 60 min), and the levels that must outlast the
scenario come from state that does not expire (open incidents, lamps out, full containers).

Event counts (asset registry seed 7; the ids and cabinets of the registry do not depend on
its seed): flood 108, cabinet-power-loss 36, holiday-waste-surge 116, night-accidents 160.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from cityops.simulator import (
    INCIDENT_SCHEMA,
    LIGHTING_SCHEMA,
    MAIN_ROAD_WARDS,
    RT_MAX,
    RW_MAX,
    SOURCE_PREFIX,
    WASTE_SCHEMA,
    PointSampler,
    SimEvent,
    incident_record,
    lighting_record,
    new_event_id,
    require_aware_utc,
    waste_record,
)

FLOOD_KECAMATAN: Final = "36.72.01"
"""Kecamatan Cibeber. SYNTHETIC choice of target."""
FLOOD_WARDS: Final[tuple[str, ...]] = (
    "36.72.01.1001",  # Cibeber
    "36.72.01.1002",  # Kedaleman
    "36.72.01.1003",  # Bulakan
    "36.72.01.1004",  # Cikerai
    "36.72.01.1005",  # Karang Asem
    "36.72.01.1006",  # Kalitimbang
)
"""The six kelurahan of Kecamatan Cibeber (Kemendagri codes, as in cityops/data)."""
FLOOD_INCIDENTS_PER_WARD: Final = 6
FLOOD_REPORT_SPREAD_S: Final = 360.0

POWER_LOSS_CABINET: Final = "CAB-36.72.07.1004-01"
"""First control cabinet of Kelurahan Purwakarta: 36 of the ward's 72 synthetic lamps."""
POWER_LOSS_WARD: Final = "36.72.07.1004"
POWER_LOSS_SPREAD_S: Final = 180.0

SURGE_WARDS: Final[tuple[str, ...]] = (
    "36.72.02.1001",  # Bagendung (11 sites)
    "36.72.06.1002",  # Grogol (11 sites)
    "36.72.07.1002",  # Kotabumi (12 sites)
    "36.72.07.1006",  # Pabean (13 sites)
)
"""SYNTHETIC choice: kelurahan with at least 10 waste sites, so the full-container COUNT rule
(ALERT at 10) fires whatever the ratio rule's denominator."""
SURGE_MIN_SITES: Final = 10

ACCIDENTS_PER_WARD: Final = 6
ACCIDENT_WARD_STAGGER_S: Final = 120.0
ACCIDENT_REPORT_SPREAD_S: Final = 600.0

_Builder = Callable[["ScenarioContext"], list[SimEvent]]


@dataclass(slots=True)
class ScenarioContext:
    """What a scenario builder draws from: reference data, its own random stream, the start."""

    wards: Mapping[str, Mapping[str, Any]]
    assets: Sequence[Mapping[str, Any]]
    rng: random.Random
    start: datetime
    _points: PointSampler | None = None

    def at(self, offset_s: float) -> datetime:
        """``start`` plus an offset, truncated to the millisecond like every Avro timestamp."""
        return self.start + timedelta(milliseconds=int(offset_s * 1000.0))

    def point(self, ward_code: str) -> tuple[float, float]:
        if self._points is None:
            self._points = PointSampler(list(self.wards.values()))
        return self._points.point(self.rng, ward_code)

    def event_id(self) -> str:
        return new_event_id(self.rng)

    def incident_id(self, tag: str, source: str) -> str:
        return f"SCN-{tag}-{SOURCE_PREFIX[source]}-{self.rng.getrandbits(48):012x}"


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named situation to inject, and the minimum level each targeted ward should reach."""

    name: str
    description: str
    expected_wards: Mapping[str, str]
    build: _Builder = field(repr=False)

    def events(
        self,
        wards: Sequence[Mapping[str, Any]],
        assets: Sequence[Mapping[str, Any]],
        seed: int,
        start: datetime,
        *,
        points: PointSampler | None = None,
    ) -> list[SimEvent]:
        """The scenario's events from ``start`` (tz-aware), sorted by event time.

        Deterministic for (wards, assets, seed, start); a different start shifts every event by
        the same amount.
        """
        context = ScenarioContext(
            wards={str(w["kelurahan_code"]): w for w in wards},
            assets=assets,
            rng=random.Random(f"{seed}:scenario:{self.name}"),
            start=require_aware_utc(start),
            _points=points,
        )
        missing = sorted(code for code in self.expected_wards if code not in context.wards)
        if missing:
            raise ValueError(f"scenario {self.name}: wards not in the ward table: {missing}")
        events = self.build(context)
        events.sort(key=lambda event: event.at)
        return events


# --- builders ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    """The fixed parts of one scenario incident; each lifecycle step copies them."""

    incident_id: str
    source: str
    category: str
    severity: str
    ward_code: str | None
    latitude: float | None
    longitude: float | None
    rw: str | None
    rt: str | None
    text: str


def _call(context: ScenarioContext, tag: str, ward_code: str, source: str, category: str,
          severity: str, text: str) -> _Call:
    """Partners that only know a position (citizen app, CCTV) send coordinates; the police
    send the ward and a point; the 112 call center the ward with a SYNTHETIC RW/RT."""
    rng = context.rng
    call = _Call(context.incident_id(tag, source), source, category, severity,
                 None, None, None, None, None, text)
    if source in ("CITIZEN_APP", "CCTV", "POLICE"):
        call.latitude, call.longitude = context.point(ward_code)
    if source not in ("CITIZEN_APP", "CCTV"):
        call.ward_code = ward_code
    if source == "CALL_CENTER_112":
        call.rw = f"{rng.randint(1, RW_MAX):03d}"
        call.rt = f"{rng.randint(1, RT_MAX):03d}"
    return call


def _lifecycle(context: ScenarioContext, call: _Call,
               steps: Sequence[tuple[str, float]]) -> list[SimEvent]:
    out: list[SimEvent] = []
    for status, offset_s in steps:
        at = context.at(offset_s)
        record = incident_record(
            event_id=context.event_id(),
            occurred_at=at,
            incident_id=call.incident_id,
            source_system=call.source,
            category=call.category,
            severity=call.severity,
            status=status,
            ward_code=call.ward_code,
            latitude=call.latitude,
            longitude=call.longitude,
            rw=call.rw,
            rt=call.rt,
            description=f"{call.text}: {status.lower().replace('_', ' ')} (synthetic scenario)",
        )
        out.append(SimEvent(INCIDENT_SCHEMA, record, at))
    return out


def _build_flood(context: ScenarioContext) -> list[SimEvent]:
    """Six FLOOD reports per kelurahan within 6 min, the first EXTREME and the rest SEVERE; all
    dispatched within 3 min and on scene within 4 min more; none resolved (water stays)."""
    rng = context.rng
    events: list[SimEvent] = []
    for ward_code in FLOOD_WARDS:
        name = context.wards[ward_code]["kelurahan_name"]
        reports = sorted(rng.uniform(0.0, FLOOD_REPORT_SPREAD_S)
                         for _ in range(FLOOD_INCIDENTS_PER_WARD))
        for k, reported in enumerate(reports):
            source = "CITIZEN_APP" if k % 2 == 0 else "CALL_CENTER_112"
            severity = "EXTREME" if k == 0 else "SEVERE"
            call = _call(context, "FLOOD", ward_code, source, "FLOOD", severity,
                         f"Flooding in {name}")
            dispatched = reported + rng.uniform(60.0, 180.0)
            on_scene = dispatched + rng.uniform(120.0, 240.0)
            events += _lifecycle(context, call, [
                ("REPORTED", reported), ("DISPATCHED", dispatched), ("ON_SCENE", on_scene),
            ])
    return events


def _build_power_loss(context: ScenarioContext) -> list[SimEvent]:
    """Every lamp of one cabinet reports NO_POWER within 3 minutes (feed lost or cable stolen)."""
    rng = context.rng
    lamps = [a for a in context.assets
             if a["asset_kind"] == "LAMP" and a.get("cabinet_id") == POWER_LOSS_CABINET]
    if not lamps:
        raise ValueError(f"scenario cabinet-power-loss: no lamp on cabinet {POWER_LOSS_CABINET}")
    events: list[SimEvent] = []
    for lamp in lamps:
        at = context.at(rng.uniform(0.0, POWER_LOSS_SPREAD_S))
        record = lighting_record(
            event_id=context.event_id(),
            occurred_at=at,
            lamp_id=str(lamp["asset_id"]),
            cabinet_id=POWER_LOSS_CABINET,
            report_kind="FAULT",
            lamp_status="NO_POWER",
            power_state="OFF",
        )
        events.append(SimEvent(LIGHTING_SCHEMA, record, at))
    return events


def _build_waste_surge(context: ScenarioContext) -> list[SimEvent]:
    """Every site of four kelurahan reads 0.80-0.88 within 10 min, then 0.92-1.0 between 15 and
    25 min; citizens complain about half of the sites of each ward (rounded down) soon after."""
    rng = context.rng
    events: list[SimEvent] = []
    for ward_code in SURGE_WARDS:
        sites = [a for a in context.assets
                 if a["asset_kind"] in ("WASTE_CONTAINER", "TPS") and a["ward_code"] == ward_code]
        if len(sites) < SURGE_MIN_SITES:
            raise ValueError(
                f"scenario holiday-waste-surge: ward {ward_code} has {len(sites)} waste sites, "
                f"fewer than the {SURGE_MIN_SITES} its expectation relies on"
            )
        full_at: dict[str, float] = {}
        for site in sites:
            kind = "TPS" if site["asset_kind"] == "TPS" else "CONTAINER"
            for low_s, high_s, low_fill, high_fill in ((0.0, 600.0, 0.80, 0.88),
                                                        (900.0, 1500.0, 0.92, 1.0)):
                offset = rng.uniform(low_s, high_s)
                full_at[str(site["asset_id"])] = offset  # the second reading's time stays
                at = context.at(offset)
                temperature = round(rng.uniform(29.0, 33.0), 1) if kind == "CONTAINER" else None
                record = waste_record(
                    event_id=context.event_id(),
                    occurred_at=at,
                    container_id=str(site["asset_id"]),
                    site_kind=kind,
                    report_kind="FILL_LEVEL",
                    filling_level=round(rng.uniform(low_fill, high_fill), 3),
                    temperature_celsius=temperature,
                    ward_code=ward_code,
                )
                events.append(SimEvent(WASTE_SCHEMA, record, at))
        for site in rng.sample(sites, len(sites) // 2):
            at = context.at(full_at[str(site["asset_id"])] + rng.uniform(60.0, 300.0))
            record = waste_record(
                event_id=context.event_id(),
                occurred_at=at,
                container_id=str(site["asset_id"]),
                site_kind="TPS" if site["asset_kind"] == "TPS" else "CONTAINER",
                report_kind="OVERFLOW_COMPLAINT",
                latitude=site.get("latitude"),
                longitude=site.get("longitude"),
            )
            events.append(SimEvent(WASTE_SCHEMA, record, at))
    return events


def _build_night_accidents(context: ScenarioContext) -> list[SimEvent]:
    """Six TRAFFIC_ACCIDENT reports per corridor kelurahan within 10 min, moving from the city
    centre towards Merak at 2 min per kelurahan. Per kelurahan: three are resolved, two are
    still being cleared (one of them SEVERE), one is cancelled (a duplicate call)."""
    rng = context.rng
    sources = ("POLICE", "CCTV", "CALL_CENTER_112")
    events: list[SimEvent] = []
    for i, ward_code in enumerate(MAIN_ROAD_WARDS):
        name = context.wards[ward_code]["kelurahan_name"]
        begin = i * ACCIDENT_WARD_STAGGER_S
        reports = sorted(begin + rng.uniform(0.0, ACCIDENT_REPORT_SPREAD_S)
                         for _ in range(ACCIDENTS_PER_WARD))
        for k, reported in enumerate(reports):
            severity = "SEVERE" if k == 4 else ("MINOR" if k == 5 else "MODERATE")
            call = _call(context, "ROAD", ward_code, sources[k % 3], "TRAFFIC_ACCIDENT",
                         severity, f"Traffic accident on the main road in {name}")
            if k == 5:
                steps = [("REPORTED", reported),
                         ("CANCELLED", reported + rng.uniform(120.0, 240.0))]
            else:
                dispatched = reported + rng.uniform(120.0, 240.0)
                on_scene = dispatched + rng.uniform(180.0, 360.0)
                steps = [("REPORTED", reported), ("DISPATCHED", dispatched),
                         ("ON_SCENE", on_scene)]
                if k < 3:
                    steps.append(("RESOLVED", on_scene + rng.uniform(300.0, 600.0)))
            events += _lifecycle(context, call, steps)
    return events


SCENARIOS: Final[Mapping[str, Scenario]] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            name="flood",
            description=(
                "Flash flood in Kecamatan Cibeber: 6 FLOOD reports per kelurahan within 6 min "
                "(the first EXTREME, the others SEVERE), dispatched and on scene, none "
                "resolved. CRITICAL: an open EXTREME incident, and 6 FLOOD reports in 20 min."
            ),
            expected_wards=dict.fromkeys(FLOOD_WARDS, "CRITICAL"),
            build=_build_flood,
        ),
        Scenario(
            name="cabinet-power-loss",
            description=(
                f"Control cabinet {POWER_LOSS_CABINET} (Kelurahan Purwakarta) loses power: "
                "all 36 lamps report NO_POWER within 3 min. CRITICAL: 36 of the ward's 72 "
                "lamps out (50%); the cabinet rule (3 lamp faults in 10 min) gives ALERT."
            ),
            expected_wards={POWER_LOSS_WARD: "CRITICAL"},
            build=_build_power_loss,
        ),
        Scenario(
            name="holiday-waste-surge",
            description=(
                "Holiday waste surge in Bagendung, Grogol, Kotabumi and Pabean: every "
                "container and TPS goes above 0.9 within 25 min, citizens complain about half "
                "of them. ALERT: at least 10 full sites per kelurahan, all of its sites full."
            ),
            expected_wards=dict.fromkeys(SURGE_WARDS, "ALERT"),
            build=_build_waste_surge,
        ),
        Scenario(
            name="night-accidents",
            description=(
                "A bad night on the main road (SYNTHETIC corridor Jombang Wetan to Tamansari): "
                "6 traffic accidents per kelurahan within 10 min, moving towards Merak; three "
                "resolved, two still open (one SEVERE), one cancelled. ALERT: 6 traffic "
                "accident reports in 1 h, and an open SEVERE incident."
            ),
            expected_wards=dict.fromkeys(MAIN_ROAD_WARDS, "ALERT"),
            build=_build_night_accidents,
        ),
    )
}
"""Every scenario by name, in a fixed order (what ``--scenario`` accepts)."""


def scenario_names() -> tuple[str, ...]:
    return tuple(SCENARIOS)


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; KeyError names the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(
            f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}"
        ) from None
