"""A deterministic, SYNTHETIC city feed: partner events as the pipeline would receive them.

Everything here is generated. The asset registry is synthetic (:mod:`cityops.assets`), and so
is every rate, share, delay and schedule below: they are assumptions chosen to give a
command-center screen a plausible rhythm, not measurements of Cilegon. The only real inputs
are the 43 kelurahan and their boundaries. The module constants that shape the feed are
marked SYNTHETIC so nobody quotes them as facts.

Purity: no wall clock, no I/O, no global random state. A :class:`CitySimulator` is a function
of its arguments; two calls of :meth:`CitySimulator.events` yield the identical sequence, so a
test (or an operator replaying a demo) can reproduce any run from its seed and start time.

How time works. Events form a Poisson process of ``rate_per_s`` events per simulated second:
the clock advances by an exponential gap before each event, and the event's ``occurred_at``
is the clock. Things that happen on their own schedule (an incident's next lifecycle step,
a lamp fault and its repair, a container collection, an overflow complaint) wait in a queue;
when the clock passes their due time they take the next tick, so the event stream stays in
event-time order and keeps the requested rate. Ticks with nothing due carry routine sensor
reports (lamp status and energy, container fill levels). Scheduled processes run in
simulated time, not per event, so the background stays calm (mostly NORMAL wards) whatever
the rate; at very low rates scheduled events queue up and go out a little late.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, NamedTuple

from processors.geo import WardLocator

INCIDENT_SCHEMA: Final = "org.cityops.IncidentEvent"
LIGHTING_SCHEMA: Final = "org.cityops.LightingEvent"
WASTE_SCHEMA: Final = "org.cityops.WasteEvent"

WIB: Final = timezone(timedelta(hours=7), "WIB")
"""Western Indonesia Time (UTC+7, no daylight saving): the clock the city's rhythm follows."""

MAIN_ROAD_WARDS: Final[tuple[str, ...]] = (
    "36.72.05.1002",  # Jombang Wetan
    "36.72.05.1003",  # Masigit
    "36.72.07.1003",  # Kebon Dalem
    "36.72.07.1002",  # Kotabumi
    "36.72.06.1002",  # Grogol
    "36.72.06.1004",  # Gerem
    "36.72.03.1003",  # Mekarsari
    "36.72.03.1001",  # Tamansari
)
"""SYNTHETIC stand-in for the Jalan Raya Cilegon / Jalan Raya Merak corridor.

The real road alignment was not available, so this is the chain of adjacent kelurahan crossed
by a straight line from the centroid of Jombang Wetan (city centre) to the centroid of
Tamansari (the Merak side), computed with :class:`~processors.geo.WardLocator` on the
simplified polygons (tests/unit/test_simulator.py recomputes it). Only Gerem is attested on the
arterial Merak-Cilegon road (news of a jam "di Gerem, Kecamatan Grogol", suara.com, 29 Apr
2022); the other kelurahan are an approximation, in order from the centre to Merak.
"""

# --- incidents: every number is a SYNTHETIC assumption ---------------------------------------

DEFAULT_INCIDENTS_PER_HOUR: Final = 6.0
"""SYNTHETIC city-wide mean of new incidents per hour: enough to see activity in a demo, few
enough that most wards stay NORMAL (in a two-day run about 97 % of ward snapshots were NORMAL
under the default thresholds, the rest mostly an open SEVERE incident)."""

INCIDENT_HOURLY_FACTOR: Final[tuple[float, ...]] = (
    0.6, 0.5, 0.4, 0.35, 0.4, 0.6,   # 00-05 WIB: quiet, some night traffic and crime
    1.2, 1.6, 1.4, 1.1, 1.1, 1.1,    # 06-11: morning commute
    1.1, 1.1, 1.1, 1.2, 1.5, 1.6,    # 12-17: afternoon commute
    1.3, 1.1, 1.0, 1.0, 0.9, 0.75,   # 18-23: evening
)
"""SYNTHETIC relative incident rate by local hour (mean 1.0)."""

CATEGORY_WEIGHTS: Final[Mapping[str, float]] = {
    "TRAFFIC_ACCIDENT": 3.0,
    "CRIME": 1.5,
    "FIRE": 0.6,
    "FLOOD": 0.4,
    "PUBLIC_ORDER": 1.0,
    "MEDICAL": 2.0,
    "INFRASTRUCTURE_DAMAGE": 1.0,
    "OTHER": 0.5,
}
"""SYNTHETIC base mix of incident categories."""

COMMUTE_HOURS: Final = frozenset({6, 7, 8, 16, 17, 18})
NIGHT_HOURS: Final = frozenset({22, 23, 0, 1, 2})
CRIME_NIGHT_HOURS: Final = frozenset({20, 21, 22, 23, 0, 1, 2, 3, 4})
TRAFFIC_COMMUTE_FACTOR: Final = 2.5
TRAFFIC_NIGHT_FACTOR: Final = 1.8
CRIME_NIGHT_FACTOR: Final = 2.5
"""SYNTHETIC: more traffic accidents at commute hours and at night on the main road, more
crime at night."""
MAIN_ROAD_SHARE_PEAK: Final = 0.7
MAIN_ROAD_SHARE_OTHER: Final = 0.4
"""SYNTHETIC share of traffic accidents on :data:`MAIN_ROAD_WARDS` at commute/night hours and
at other hours."""

SEVERITY_WEIGHTS: Final[Mapping[str, Mapping[str, float]]] = {
    "TRAFFIC_ACCIDENT": {"MINOR": 45, "MODERATE": 40, "SEVERE": 13, "EXTREME": 2},
    "FIRE": {"MINOR": 20, "MODERATE": 45, "SEVERE": 28, "EXTREME": 7},
    "FLOOD": {"MINOR": 40, "MODERATE": 40, "SEVERE": 17, "EXTREME": 3},
    "CRIME": {"MINOR": 50, "MODERATE": 38, "SEVERE": 11, "EXTREME": 1},
    "PUBLIC_ORDER": {"MINOR": 65, "MODERATE": 30, "SEVERE": 5},
    "MEDICAL": {"MINOR": 30, "MODERATE": 45, "SEVERE": 20, "EXTREME": 5},
    "INFRASTRUCTURE_DAMAGE": {"MINOR": 60, "MODERATE": 33, "SEVERE": 7},
    "OTHER": {"MINOR": 60, "MODERATE": 20, "UNKNOWN": 20},
}
"""SYNTHETIC severity mix per category (OASIS CAP 1.2 scale)."""

SOURCE_WEIGHTS: Final[Mapping[str, Mapping[str, float]]] = {
    "TRAFFIC_ACCIDENT": {"POLICE": 4, "CALL_CENTER_112": 3, "CCTV": 2, "CITIZEN_APP": 1},
    "CRIME": {"POLICE": 5, "CALL_CENTER_112": 3, "CITIZEN_APP": 2},
    "FIRE": {"FIRE_SERVICE": 5, "CALL_CENTER_112": 4, "CITIZEN_APP": 1},
    "FLOOD": {"CITIZEN_APP": 5, "CALL_CENTER_112": 4, "OTHER": 1},
    "PUBLIC_ORDER": {"CITIZEN_APP": 4, "POLICE": 3, "CCTV": 2, "CALL_CENTER_112": 1},
    "MEDICAL": {"CALL_CENTER_112": 8, "CITIZEN_APP": 2},
    "INFRASTRUCTURE_DAMAGE": {"CITIZEN_APP": 6, "CALL_CENTER_112": 2, "OTHER": 2},
    "OTHER": {"CITIZEN_APP": 5, "OTHER": 5},
}
"""SYNTHETIC: which partner reports which kind of incident."""

COORDINATES_ONLY_SOURCES: Final = frozenset({"CITIZEN_APP", "CCTV"})
"""Partners that know a position but no kelurahan code: the pipeline must resolve the ward."""

SOURCE_PREFIX: Final[Mapping[str, str]] = {
    "POLICE": "POL",
    "CALL_CENTER_112": "112",
    "CITIZEN_APP": "APP",
    "CCTV": "CCTV",
    "FIRE_SERVICE": "DMK",
    "OTHER": "OTH",
}

DISPATCH_DELAY_MIN: Final = (2.0, 4.0)
ON_SCENE_DELAY_MIN: Final = (4.0, 8.0)
RESOLVE_DELAY_MIN: Final = (15.0, 45.0)
CANCEL_DELAY_MIN: Final = (1.0, 9.0)
"""SYNTHETIC lifecycle delays, (minimum, mean of the exponential excess), in minutes."""
CANCEL_SHARE: Final = 0.08
"""SYNTHETIC share of incidents that end CANCELLED (false alarm, duplicate call)."""
CANCEL_BEFORE_DISPATCH_SHARE: Final = 0.6

RW_MAX: Final = 12
RT_MAX: Final = 15
"""SYNTHETIC RW/RT numbering ("003"/"007"): no RW/RT list for Cilegon was found."""

DESCRIPTIONS: Final[Mapping[str, str]] = {
    "TRAFFIC_ACCIDENT": "Traffic accident",
    "CRIME": "Crime report",
    "FIRE": "Fire",
    "FLOOD": "Flooding",
    "PUBLIC_ORDER": "Public order disturbance",
    "MEDICAL": "Medical emergency",
    "INFRASTRUCTURE_DAMAGE": "Damaged public infrastructure",
    "OTHER": "Other report",
}
STATUS_NOTES: Final[Mapping[str, str]] = {
    "REPORTED": "reported",
    "DISPATCHED": "unit dispatched",
    "ON_SCENE": "unit on scene",
    "RESOLVED": "resolved",
    "CANCELLED": "cancelled",
}

# --- street lighting (PJU): SYNTHETIC ---------------------------------------------------------

LAMP_MTBF_HOURS: Final = 1440.0
"""SYNTHETIC mean time between faults of one lamp (60 days)."""
LAMP_REPAIR_HOURS: Final = (2.0, 8.0)
"""SYNTHETIC repair delay (minimum, mean excess), in hours."""
INITIAL_FAULT_SHARE: Final = 0.005
"""SYNTHETIC share of lamps already faulty when the simulation starts (about the steady state
of the two numbers above); the real Cilegon figure of 2,876 of 5,700 not working (2021) is NOT
used, it would put every ward on ALERT."""
FAULT_STATUS_WEIGHTS: Final[Mapping[str, float]] = {
    "DEFECTIVE_LAMP": 50,
    "BROKEN_LANTERN": 20,
    "COLUMN_ISSUE": 10,
    "NO_POWER": 20,
}
"""SYNTHETIC mix of FIWARE Streetlight statuses (plus NO_POWER) for single-lamp faults."""
ENERGY_READING_SHARE: Final = 0.35
"""SYNTHETIC share of night-time routine lamp reports that are energy readings."""
DIMMED_LEVEL: Final = 0.6
"""SYNTHETIC dimming after midnight (the city's solar PJU are remote-dimmable, per the domain
research; the schedule itself is made up)."""
MAX_ENERGY_INTERVAL_H: Final = 1.0
"""The first energy reading of a run covers at most this much time."""

# --- waste: SYNTHETIC -------------------------------------------------------------------------

CONTAINER_FILL_PER_HOUR: Final = (0.008, 0.018)
TPS_FILL_PER_HOUR: Final = (0.010, 0.018)
"""SYNTHETIC fill rates (fraction of capacity per hour), drawn per site: even the 48 h gap
over Sunday leaves an ordinary site below 0.9, so the background does not fill wards."""
HOTSPOT_SHARE: Final = 0.04
HOTSPOT_FILL_PER_HOUR: Final = (0.03, 0.045)
"""SYNTHETIC: a few sites (markets, busy streets) fill within a day and draw complaints."""
FILL_AFTER_COLLECTION: Final = 0.02
CONTAINER_COLLECTION_WINDOW_H: Final = (6.0, 11.0)
TPS_COLLECTION_WINDOW_H: Final = (5.0, 9.0)
"""SYNTHETIC local collection slots; each site gets a fixed minute in the window. DLH collects
Monday to Saturday (domain research), so nothing is collected on Sunday."""
WASTE_DENSITY_KG_PER_L: Final = 0.15
"""SYNTHETIC bulk density of uncollected mixed waste, for collected_weight_kg."""
OVERFLOW_LEVEL: Final = 0.95
OVERFLOW_COMPLAINT_DELAY_H: Final = 1.0
"""SYNTHETIC: citizens complain on average an hour after a site passes 95 % full."""
FIRE_RISK_PER_DAY: Final = 0.5
FIRE_RISK_TEMPERATURE_C: Final = (62.0, 85.0)
"""SYNTHETIC: a hot container somewhere in the city every other day."""
AMBIENT_MEAN_C: Final = 28.0
AMBIENT_SWING_C: Final = 4.0
"""SYNTHETIC container temperature: warm all year, warmest mid-afternoon."""

# --- routine report mix: SYNTHETIC ------------------------------------------------------------

ROUTINE_LIGHTING_SHARE: Final = 0.55
"""SYNTHETIC share of routine ticks that are lamp reports (the rest: container readings)."""
LIGHTING_CABINET_SHARE: Final = 0.7
LIGHTING_WARD_SHARE: Final = 0.2
LIGHTING_COORDINATES_SHARE: Final = 0.4
WASTE_WARD_SHARE: Final = 0.3
WASTE_COORDINATES_SHARE: Final = 0.5
"""SYNTHETIC: how often partners fill the optional location fields."""

_COORD_DECIMALS: Final = 6
_MAX_SAMPLE_ATTEMPTS: Final = 100_000


class SimEvent(NamedTuple):
    """One partner event: the Avro full name, the record (exactly the schema's fields) and its
    event time (equal to ``record["occurred_at"]``)."""

    schema: str
    record: dict[str, Any]
    at: datetime


def new_event_id(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng``, so ids repeat exactly for a seed."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def truncate_ms(moment: datetime) -> datetime:
    """Drop sub-millisecond digits: Avro timestamp-millis keeps no more, so a record compares
    equal to itself after an encode/decode round trip."""
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def require_aware_utc(start: datetime) -> datetime:
    """``start`` in UTC, truncated to the millisecond; a naive datetime is refused because its
    meaning would depend on the host's time zone."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(f"start={start.isoformat()} is naive; pass a tz-aware datetime (UTC)")
    return truncate_ms(start.astimezone(UTC))


def _exp_minutes(rng: random.Random, spec: tuple[float, float]) -> float:
    """Seconds: a fixed minimum plus an exponential excess, both in minutes in ``spec``."""
    low, mean_excess = spec
    return 60.0 * (low + rng.expovariate(1.0 / mean_excess))


def _weighted(rng: random.Random, weights: Mapping[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


class PointSampler:
    """Random points that the pipeline's own locator places inside a given kelurahan.

    Checking with the same :class:`WardLocator` (POINT_IN_POLYGON, same ward) guarantees that
    a coordinates-only event resolves to the ward the simulator meant.
    """

    def __init__(self, ward_records: Sequence[Mapping[str, Any]]) -> None:
        self.locator = WardLocator.from_ward_records(
            sorted(ward_records, key=lambda w: str(w["kelurahan_code"]))
        )

    def point(self, rng: random.Random, ward_code: str) -> tuple[float, float]:
        min_lat, min_lon, max_lat, max_lon = self.locator.ward_bounds(ward_code)
        for _ in range(_MAX_SAMPLE_ATTEMPTS):
            lat = round(rng.uniform(min_lat, max_lat), _COORD_DECIMALS)
            lon = round(rng.uniform(min_lon, max_lon), _COORD_DECIMALS)
            location = self.locator.locate(lat, lon)
            if (
                location is not None
                and location.method == "POINT_IN_POLYGON"
                and location.ward_code == ward_code
            ):
                return (lat, lon)
        raise RuntimeError(f"could not sample a point inside ward {ward_code}")


def incident_record(
    *,
    event_id: str,
    occurred_at: datetime,
    incident_id: str,
    source_system: str,
    category: str,
    severity: str,
    status: str,
    ward_code: str | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    rw: str | None = None,
    rt: str | None = None,
    description: str = "",
) -> dict[str, Any]:
    """An ``org.cityops.IncidentEvent`` dict with every field, in schema order."""
    return {
        "event_id": event_id,
        "occurred_at": occurred_at,
        "incident_id": incident_id,
        "source_system": source_system,
        "category": category,
        "severity": severity,
        "status": status,
        "ward_code": ward_code,
        "latitude": latitude,
        "longitude": longitude,
        "rw": rw,
        "rt": rt,
        "description": description,
    }


def lighting_record(
    *,
    event_id: str,
    occurred_at: datetime,
    lamp_id: str,
    report_kind: str,
    lamp_status: str,
    power_state: str,
    cabinet_id: str | None = None,
    dimming_level: float | None = None,
    energy_kwh: float | None = None,
    ward_code: str | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
) -> dict[str, Any]:
    """An ``org.cityops.LightingEvent`` dict with every field, in schema order."""
    return {
        "event_id": event_id,
        "occurred_at": occurred_at,
        "lamp_id": lamp_id,
        "cabinet_id": cabinet_id,
        "report_kind": report_kind,
        "lamp_status": lamp_status,
        "power_state": power_state,
        "dimming_level": dimming_level,
        "energy_kwh": energy_kwh,
        "ward_code": ward_code,
        "latitude": latitude,
        "longitude": longitude,
    }


def waste_record(
    *,
    event_id: str,
    occurred_at: datetime,
    container_id: str,
    site_kind: str,
    report_kind: str,
    filling_level: float | None = None,
    temperature_celsius: float | None = None,
    collected_weight_kg: float | None = None,
    ward_code: str | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
) -> dict[str, Any]:
    """An ``org.cityops.WasteEvent`` dict with every field, in schema order."""
    return {
        "event_id": event_id,
        "occurred_at": occurred_at,
        "container_id": container_id,
        "site_kind": site_kind,
        "report_kind": report_kind,
        "filling_level": filling_level,
        "temperature_celsius": temperature_celsius,
        "collected_weight_kg": collected_weight_kg,
        "ward_code": ward_code,
        "latitude": latitude,
        "longitude": longitude,
    }


def lamp_schedule(local: datetime) -> tuple[str, float | None]:
    """(power_state, dimming_level) of a working lamp at a WIB time (SYNTHETIC schedule).

    Off 06:00-17:59, full brightness 18:00-23:59 and 05:00-05:59, dimmed (LOW) 00:00-04:59.
    """
    hour = local.hour
    if 6 <= hour < 18:
        return ("OFF", None)
    if hour < 5:
        return ("LOW", DIMMED_LEVEL)
    return ("ON", 1.0)


def dusk_before(local: datetime) -> datetime:
    """The most recent 18:00 WIB at or before ``local`` (when tonight's lamps came on)."""
    dusk = local.replace(hour=18, minute=0, second=0, microsecond=0)
    return dusk if dusk <= local else dusk - timedelta(days=1)


def ambient_celsius(local: datetime) -> float:
    """SYNTHETIC container temperature: a daily sine, coolest ~03:00, warmest ~15:00 WIB."""
    hours = local.hour + local.minute / 60.0
    return AMBIENT_MEAN_C + AMBIENT_SWING_C * math.sin(2.0 * math.pi * (hours - 9.0) / 24.0)


def collection_days_back(local: datetime, slot_h: float) -> datetime:
    """The last collection slot (Mon-Sat at ``slot_h`` WIB) at or before ``local``."""
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    for back in range(8):
        candidate = day - timedelta(days=back) + timedelta(hours=slot_h)
        if candidate.weekday() != 6 and candidate <= local:
            return candidate
    raise AssertionError("a Monday-Saturday slot exists in every 8-day span")  # pragma: no cover


def collection_after(local: datetime, slot_h: float) -> datetime:
    """The next collection slot (Mon-Sat at ``slot_h`` WIB) strictly after ``local``."""
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    for ahead in range(8):
        candidate = day + timedelta(days=ahead) + timedelta(hours=slot_h)
        if candidate.weekday() != 6 and candidate > local:
            return candidate
    raise AssertionError("a Monday-Saturday slot exists in every 8-day span")  # pragma: no cover


@dataclass(slots=True)
class _Site:
    """Fill model of one container or TPS: linear growth since the last collection."""

    asset: Mapping[str, Any]
    site_kind: str
    fill_per_hour: float
    slot_h: float
    collected_at: datetime
    collections: int = 0

    def fill(self, at: datetime) -> float:
        hours = (at - self.collected_at).total_seconds() / 3600.0
        return min(1.0, FILL_AFTER_COLLECTION + self.fill_per_hour * max(hours, 0.0))

    def time_at_fill(self, level: float) -> datetime:
        hours = (level - FILL_AFTER_COLLECTION) / self.fill_per_hour
        return self.collected_at + timedelta(hours=hours)


@dataclass(slots=True)
class _Incident:
    incident_id: str
    source: str
    category: str
    severity: str
    ward_code: str | None
    latitude: float | None
    longitude: float | None
    rw: str | None
    rt: str | None


_Action = Callable[[datetime], SimEvent | None]


class _Run:
    """The mutable state of one pass over the feed; :meth:`CitySimulator.events` makes a new
    one each time, which is what makes the simulator restartable and deterministic."""

    def __init__(self, sim: CitySimulator) -> None:
        self.sim = sim
        self.rng = random.Random(sim.seed)
        self.t = 0.0
        self.queue: list[tuple[float, int, _Action]] = []
        self.sequence = itertools.count()
        self.faulty: dict[str, str] = {}
        self.energy_at: dict[str, datetime] = {}
        self.sites: dict[str, _Site] = {}
        rng = self.rng
        start = sim.start
        start_local = start.astimezone(WIB)
        for lamp in sim.lamps:
            if rng.random() < INITIAL_FAULT_SHARE:
                lamp_id = str(lamp["asset_id"])
                self.faulty[lamp_id] = _weighted(rng, FAULT_STATUS_WEIGHTS)
                self._schedule_repair(lamp_id, 0.0)
        for asset in sim.sites:
            is_tps = asset["asset_kind"] == "TPS"
            low, high = TPS_FILL_PER_HOUR if is_tps else CONTAINER_FILL_PER_HOUR
            if rng.random() < HOTSPOT_SHARE:
                low, high = HOTSPOT_FILL_PER_HOUR
            window = TPS_COLLECTION_WINDOW_H if is_tps else CONTAINER_COLLECTION_WINDOW_H
            slot_h = round(rng.uniform(*window) * 60.0) / 60.0
            site = _Site(
                asset=asset,
                site_kind="TPS" if is_tps else "CONTAINER",
                fill_per_hour=rng.uniform(low, high),
                slot_h=slot_h,
                collected_at=collection_days_back(start_local, slot_h).astimezone(UTC),
            )
            self.sites[str(asset["asset_id"])] = site
            self._schedule_collection(site)
            self._schedule_overflow(site, start)
        self._schedule_incident_candidate()
        self._schedule_lamp_fault()
        self._schedule_fire_risk()

    # -- clock and queue -----------------------------------------------------------------------

    def at(self, t: float) -> datetime:
        return self.sim.start + timedelta(milliseconds=math.floor(t * 1000.0))

    def seconds(self, moment: datetime) -> float:
        return (moment - self.sim.start).total_seconds()

    def push(self, due: float, action: _Action) -> None:
        heapq.heappush(self.queue, (due, next(self.sequence), action))

    def next_event(self) -> SimEvent:
        self.t += self.rng.expovariate(self.sim.rate_per_s)
        now = self.at(self.t)
        while self.queue and self.queue[0][0] <= self.t:
            _, _, action = heapq.heappop(self.queue)
            event = action(now)
            if event is not None:
                return event
        if self.rng.random() < ROUTINE_LIGHTING_SHARE:
            return self.routine_lamp(now)
        return self.routine_site(now)

    # -- incidents -------------------------------------------------------------------------------

    def _max_incident_rate_per_s(self) -> float:
        return self.sim.incidents_per_hour * max(INCIDENT_HOURLY_FACTOR) / 3600.0

    def _schedule_incident_candidate(self) -> None:
        rate = self._max_incident_rate_per_s()
        if rate > 0.0:
            self.push(self.t + self.rng.expovariate(rate), self._incident_candidate)

    def _incident_candidate(self, now: datetime) -> SimEvent | None:
        """Thinning of a Poisson process at the peak rate down to the hour's rate."""
        self._schedule_incident_candidate()
        hour = now.astimezone(WIB).hour
        if self.rng.random() * max(INCIDENT_HOURLY_FACTOR) >= INCIDENT_HOURLY_FACTOR[hour]:
            return None
        return self._new_incident(now, hour)

    def _category_weights(self, hour: int) -> dict[str, float]:
        weights = dict(CATEGORY_WEIGHTS)
        if hour in COMMUTE_HOURS:
            weights["TRAFFIC_ACCIDENT"] *= TRAFFIC_COMMUTE_FACTOR
        elif hour in NIGHT_HOURS:
            weights["TRAFFIC_ACCIDENT"] *= TRAFFIC_NIGHT_FACTOR
        if hour in CRIME_NIGHT_HOURS:
            weights["CRIME"] *= CRIME_NIGHT_FACTOR
        return weights

    def _new_incident(self, now: datetime, hour: int) -> SimEvent:
        rng = self.rng
        sim = self.sim
        category = _weighted(rng, self._category_weights(hour))
        if category == "TRAFFIC_ACCIDENT" and sim.main_road_wards:
            peak = hour in COMMUTE_HOURS or hour in NIGHT_HOURS
            share = MAIN_ROAD_SHARE_PEAK if peak else MAIN_ROAD_SHARE_OTHER
            pool = sim.main_road_wards if rng.random() < share else sim.ward_codes
        else:
            pool = sim.ward_codes
        ward_code = rng.choice(pool)
        source = _weighted(rng, SOURCE_WEIGHTS[category])
        incident = _Incident(
            incident_id=f"SIM-{SOURCE_PREFIX[source]}-{rng.getrandbits(48):012x}",
            source=source,
            category=category,
            severity=_weighted(rng, SEVERITY_WEIGHTS[category]),
            ward_code=None,
            latitude=None,
            longitude=None,
            rw=None,
            rt=None,
        )
        locate_by_point = source in COORDINATES_ONLY_SOURCES or rng.random() < 0.4
        if locate_by_point:
            incident.latitude, incident.longitude = sim.points.point(rng, ward_code)
        if source not in COORDINATES_ONLY_SOURCES:
            incident.ward_code = ward_code
            if source != "FIRE_SERVICE" and rng.random() < 0.6:
                incident.rw = f"{rng.randint(1, RW_MAX):03d}"
                incident.rt = f"{rng.randint(1, RT_MAX):03d}"
        # Whether (and when) the incident is cancelled is decided at the report, as a
        # dispatcher's false alarm is a property of the call, not of the later steps.
        cancelled = rng.random() < CANCEL_SHARE
        early_cancel = cancelled and rng.random() < CANCEL_BEFORE_DISPATCH_SHARE
        delay = _exp_minutes(rng, CANCEL_DELAY_MIN if early_cancel else DISPATCH_DELAY_MIN)
        if early_cancel:
            self.push(self.t + delay, self._incident_step(incident, "CANCELLED", None))
        else:
            following = "CANCELLED" if cancelled else "ON_SCENE"
            self.push(self.t + delay, self._incident_step(incident, "DISPATCHED", following))
        return self._incident_event(incident, "REPORTED", now)

    def _incident_step(self, incident: _Incident, status: str, following: str | None) -> _Action:
        def step(now: datetime) -> SimEvent:
            rng = self.rng
            if following == "ON_SCENE":
                delay = _exp_minutes(rng, ON_SCENE_DELAY_MIN)
                self.push(self.t + delay, self._incident_step(incident, "ON_SCENE", "RESOLVED"))
            elif following == "RESOLVED":
                delay = _exp_minutes(rng, RESOLVE_DELAY_MIN)
                self.push(self.t + delay, self._incident_step(incident, "RESOLVED", None))
            elif following == "CANCELLED":
                delay = _exp_minutes(rng, CANCEL_DELAY_MIN)
                self.push(self.t + delay, self._incident_step(incident, "CANCELLED", None))
            return self._incident_event(incident, status, now)

        return step

    def _incident_event(self, incident: _Incident, status: str, now: datetime) -> SimEvent:
        record = incident_record(
            event_id=new_event_id(self.rng),
            occurred_at=now,
            incident_id=incident.incident_id,
            source_system=incident.source,
            category=incident.category,
            severity=incident.severity,
            status=status,
            ward_code=incident.ward_code,
            latitude=incident.latitude,
            longitude=incident.longitude,
            rw=incident.rw,
            rt=incident.rt,
            description=f"{DESCRIPTIONS[incident.category]}: {STATUS_NOTES[status]} (synthetic)",
        )
        return SimEvent(INCIDENT_SCHEMA, record, now)

    # -- street lighting -------------------------------------------------------------------------

    def _schedule_lamp_fault(self) -> None:
        if self.sim.lamps:
            rate = len(self.sim.lamps) / (LAMP_MTBF_HOURS * 3600.0)
            self.push(self.t + self.rng.expovariate(rate), self._lamp_fault)

    def _schedule_repair(self, lamp_id: str, after: float) -> None:
        low, mean_excess = LAMP_REPAIR_HOURS
        hours = low + self.rng.expovariate(1.0 / mean_excess)
        self.push(after + hours * 3600.0, self._lamp_repair(lamp_id))

    def _lamp_fault(self, now: datetime) -> SimEvent | None:
        self._schedule_lamp_fault()
        lamp = self.rng.choice(self.sim.lamps)
        lamp_id = str(lamp["asset_id"])
        if lamp_id in self.faulty:
            return None
        self.faulty[lamp_id] = _weighted(self.rng, FAULT_STATUS_WEIGHTS)
        self._schedule_repair(lamp_id, self.t)
        return self._fault_event(lamp, now)

    def _lamp_repair(self, lamp_id: str) -> _Action:
        def repair(now: datetime) -> SimEvent:
            self.faulty.pop(lamp_id, None)
            lamp = self.sim.asset_by_id[lamp_id]
            power, dimming = lamp_schedule(now.astimezone(WIB))
            return self._lamp_event(lamp, now, "STATUS", "OK", power, dimming, None)

        return repair

    def _fault_event(self, lamp: Mapping[str, Any], now: datetime) -> SimEvent:
        status = self.faulty[str(lamp["asset_id"])]
        power, _ = lamp_schedule(now.astimezone(WIB))
        # A column issue leaves the light working; every other fault puts it out.
        if status != "COLUMN_ISSUE":
            power = "OFF"
        dimming = None if power == "OFF" else lamp_schedule(now.astimezone(WIB))[1]
        return self._lamp_event(lamp, now, "FAULT", status, power, dimming, None)

    def routine_lamp(self, now: datetime) -> SimEvent:
        if not self.sim.lamps:
            return self.routine_site(now)
        rng = self.rng
        lamp = rng.choice(self.sim.lamps)
        lamp_id = str(lamp["asset_id"])
        if lamp_id in self.faulty:
            return self._fault_event(lamp, now)
        local = now.astimezone(WIB)
        power, dimming = lamp_schedule(local)
        if power != "OFF" and rng.random() < ENERGY_READING_SHARE:
            since = max(
                self.energy_at.get(lamp_id, now - timedelta(hours=MAX_ENERGY_INTERVAL_H)),
                dusk_before(local).astimezone(UTC),
                self.sim.start,
            )
            self.energy_at[lamp_id] = now
            hours = (now - since).total_seconds() / 3600.0
            wattage = float(lamp.get("lamp_wattage_w") or 0)
            kwh = round(wattage * (dimming or 0.0) * hours / 1000.0, 4)
            return self._lamp_event(lamp, now, "ENERGY_READING", "OK", power, dimming, kwh)
        return self._lamp_event(lamp, now, "STATUS", "OK", power, dimming, None)

    def _lamp_event(
        self,
        lamp: Mapping[str, Any],
        now: datetime,
        kind: str,
        status: str,
        power: str,
        dimming: float | None,
        kwh: float | None,
    ) -> SimEvent:
        rng = self.rng
        event_id = new_event_id(rng)
        with_cabinet = rng.random() < LIGHTING_CABINET_SHARE
        with_ward = rng.random() < LIGHTING_WARD_SHARE
        with_point = rng.random() < LIGHTING_COORDINATES_SHARE
        record = lighting_record(
            event_id=event_id,
            occurred_at=now,
            lamp_id=str(lamp["asset_id"]),
            cabinet_id=lamp.get("cabinet_id") if with_cabinet else None,
            report_kind=kind,
            lamp_status=status,
            power_state=power,
            dimming_level=dimming,
            energy_kwh=kwh,
            ward_code=str(lamp["ward_code"]) if with_ward else None,
            latitude=lamp.get("latitude") if with_point else None,
            longitude=lamp.get("longitude") if with_point else None,
        )
        return SimEvent(LIGHTING_SCHEMA, record, now)

    # -- waste -----------------------------------------------------------------------------------

    def _schedule_collection(self, site: _Site) -> None:
        local = site.collected_at.astimezone(WIB)
        due = collection_after(local, site.slot_h).astimezone(UTC)
        self.push(self.seconds(due), self._collect(site))

    def _schedule_overflow(self, site: _Site, now: datetime) -> None:
        """Plan the complaint about this fill cycle, if the site overflows before the truck."""
        crossing = max(site.time_at_fill(OVERFLOW_LEVEL), now)
        delay_h = self.rng.expovariate(1.0 / OVERFLOW_COMPLAINT_DELAY_H)
        due = crossing + timedelta(hours=delay_h)
        cycle = site.collections

        def complain(at: datetime) -> SimEvent | None:
            if site.collections != cycle:
                return None  # emptied before anyone complained
            return self._site_event(site, at, "OVERFLOW_COMPLAINT", citizen=True)

        self.push(self.seconds(due), complain)

    def _collect(self, site: _Site) -> _Action:
        def collect(now: datetime) -> SimEvent:
            fill = site.fill(now)
            capacity = float(site.asset.get("container_capacity_l") or 0)
            weight = round(fill * capacity * WASTE_DENSITY_KG_PER_L, 1)
            site.collected_at = now
            site.collections += 1
            self._schedule_collection(site)
            self._schedule_overflow(site, now)
            return self._site_event(site, now, "COLLECTION", weight=weight)

        return collect

    def _schedule_fire_risk(self) -> None:
        containers = self.sim.containers
        if containers:
            rate = FIRE_RISK_PER_DAY / 86_400.0
            self.push(self.t + self.rng.expovariate(rate), self._fire_risk)

    def _fire_risk(self, now: datetime) -> SimEvent:
        self._schedule_fire_risk()
        asset = self.rng.choice(self.sim.containers)
        site = self.sites[str(asset["asset_id"])]
        temperature = round(self.rng.uniform(*FIRE_RISK_TEMPERATURE_C), 1)
        return self._site_event(site, now, "FIRE_RISK", temperature=temperature)

    def routine_site(self, now: datetime) -> SimEvent:
        if not self.sim.sites:
            return self.routine_lamp(now)
        asset = self.rng.choice(self.sim.sites)
        site = self.sites[str(asset["asset_id"])]
        temperature = None
        if site.site_kind == "CONTAINER":
            noise = self.rng.gauss(0.0, 0.8)
            temperature = round(ambient_celsius(now.astimezone(WIB)) + noise, 1)
        return self._site_event(site, now, "FILL_LEVEL", temperature=temperature)

    def _site_event(
        self,
        site: _Site,
        now: datetime,
        kind: str,
        *,
        weight: float | None = None,
        temperature: float | None = None,
        citizen: bool = False,
    ) -> SimEvent:
        rng = self.rng
        asset = site.asset
        event_id = new_event_id(rng)
        if citizen:
            with_ward, with_point = False, True
        else:
            with_ward = rng.random() < WASTE_WARD_SHARE
            with_point = rng.random() < WASTE_COORDINATES_SHARE
        fill: float | None = None
        if kind == "FILL_LEVEL":
            fill = round(site.fill(now), 3 if site.site_kind == "CONTAINER" else 2)
        elif kind == "FIRE_RISK":
            fill = round(site.fill(now), 3)
        record = waste_record(
            event_id=event_id,
            occurred_at=now,
            container_id=str(asset["asset_id"]),
            site_kind=site.site_kind,
            report_kind=kind,
            filling_level=fill,
            temperature_celsius=temperature,
            collected_weight_kg=weight,
            ward_code=str(asset["ward_code"]) if with_ward else None,
            latitude=asset.get("latitude") if with_point else None,
            longitude=asset.get("longitude") if with_point else None,
        )
        return SimEvent(WASTE_SCHEMA, record, now)


class CitySimulator:
    """Infinite, deterministic feed of SYNTHETIC partner events over the wards and assets.

    ``wards`` are ``org.cityops.Ward`` dicts (with boundaries), ``assets`` the
    ``org.cityops.Asset`` registry (lamps, containers, TPS), ``start`` a tz-aware datetime
    (the simulated clock's origin; truncated to the millisecond) and ``rate_per_s`` the mean
    number of events per simulated second.
    """

    def __init__(
        self,
        wards: Sequence[Mapping[str, Any]],
        assets: Sequence[Mapping[str, Any]],
        seed: int,
        start: datetime,
        rate_per_s: float,
        *,
        incidents_per_hour: float = DEFAULT_INCIDENTS_PER_HOUR,
        main_road_wards: Sequence[str] = MAIN_ROAD_WARDS,
        points: PointSampler | None = None,
    ) -> None:
        if not (math.isfinite(rate_per_s) and rate_per_s > 0.0):
            raise ValueError(f"rate_per_s={rate_per_s!r} must be a finite number > 0")
        if not (math.isfinite(incidents_per_hour) and incidents_per_hour >= 0.0):
            raise ValueError(f"incidents_per_hour={incidents_per_hour!r} must be >= 0")
        if not wards:
            raise ValueError("no wards given")
        self.seed = seed
        self.start = require_aware_utc(start)
        self.rate_per_s = float(rate_per_s)
        self.incidents_per_hour = float(incidents_per_hour)
        ordered = sorted(wards, key=lambda w: str(w["kelurahan_code"]))
        self.ward_codes: list[str] = [str(w["kelurahan_code"]) for w in ordered]
        known = set(self.ward_codes)
        self.main_road_wards: list[str] = [c for c in main_road_wards if c in known]
        self.points = points if points is not None else PointSampler(ordered)
        self.lamps: list[Mapping[str, Any]] = [a for a in assets if a["asset_kind"] == "LAMP"]
        self.containers: list[Mapping[str, Any]] = [
            a for a in assets if a["asset_kind"] == "WASTE_CONTAINER"
        ]
        self.sites: list[Mapping[str, Any]] = [
            a for a in assets if a["asset_kind"] in ("WASTE_CONTAINER", "TPS")
        ]
        self.asset_by_id: dict[str, Mapping[str, Any]] = {str(a["asset_id"]): a for a in assets}
        if not self.lamps and not self.sites:
            raise ValueError("the asset registry has no lamps, containers or TPS")

    def events(self) -> Iterator[SimEvent]:
        """The feed from the start, forever; every call starts over with the same sequence."""
        run = _Run(self)
        while True:
            yield run.next_event()

    def take(self, n: int) -> list[SimEvent]:
        """The first ``n`` events of :meth:`events`."""
        return list(itertools.islice(self.events(), n))
