"""A SYNTHETIC month of RT reports with human mistakes at known rates, and what each must get.

Issue 13, part 6. Every RT of the registry (or of the chosen kelurahan) reports a clean
*base month*, then the *month* itself, in which some RT heads make the mistakes people make:

======================  ==========================================  ===========================
mistake (`Mistake`)     what is sent                                expected
======================  ==========================================  ===========================
``swapped_fields``      labour force and unemployed swapped          REJECTED inconsistent_counts
``missing_digit``       residents typed with one digit left out      REJECTED inconsistent_counts
``nik_in_note``         a 16-digit NIK-shaped number in the note     REJECTED personal_data
                        (exactly one report; SYNTHETIC digits)
``duplicate``           the same report (id and revision) twice      VALID once, the copy: no
                                                                    verdict (counted once)
``late_correction``     revision 1 with unemployed off by one, then  VALID, VALID; only
                        revision 2 with the right count, sent last   revision 2 is counted
``residents_jump``      residents far from last month + flows        NEEDS_REVIEW continuity
``not_reported``        nothing                                      lowers completeness
======================  ==========================================  ===========================

The expected verdict of every report is derived from what was injected, never by running the
validator, so a test can check the validator against it. That only works if a clean report
can never be flagged, whatever order the reports arrive in; the generator guarantees it:

* continuity: a clean month's residents are exactly last month's + births - deaths + moved in
  - moved out;
* outliers: within a kelurahan every report that can be VALID has an unemployment rate within
  `RATE_BAND` (+-3 points) of the kelurahan's rate and residents per household within
  `HOUSEHOLD_SIZE_BAND`; two values in a band narrower than `outlier_z` x the floor of the
  robust scale (3.5 x 2 points = 7 points; 3.5 x 0.25 = 0.875 residents per household) can
  never be more than `outlier_z` robust z apart, whatever the peers and the arrival order;
* the mistakes that stay in the pipeline (jump, late correction) keep the same bands, so they
  fail only the check they were made for.

**Calibration** (`TARGET_UNEMPLOYMENT_RATE`, `TARGET_PARTICIPATION_RATE`): BPS Kota Cilegon's
open unemployment rate of August 2025 (7.41 %) and labour force participation rate of 2023
(62.70 %), the figures issue 13 quotes; the working-age share (`WORKING_AGE_SHARE`, 69.4 %)
follows from them and the city's 480,378 residents (15,480 unemployed / 7.41 % = 208,900 in
the labour force; / 62.70 % = 333,200 aged 15+). Residents per RT are the city's population
over the registry's RTs. Everything else (spread between kelurahan, household size, monthly
births and moves, mistake rates) is a SYNTHETIC assumption, and so is every report.

Pure: no clock, no I/O, no global random state; the same arguments give the same month.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, cast

from processors.neighbourhood import current_month, month_index, period_of
from processors.thresholds import NeighbourhoodRules

RT_REPORT_SCHEMA: Final = "org.cityops.RtReport"

TARGET_UNEMPLOYMENT_RATE: Final = 0.0741
"""BPS Kota Cilegon, open unemployment rate (tingkat pengangguran terbuka), August 2025."""
TARGET_PARTICIPATION_RATE: Final = 0.6270
"""BPS Kota Cilegon, labour force participation rate (TPAK), 2023."""
WORKING_AGE_SHARE: Final = 0.694
"""Residents aged 15+ over all residents, derived from the two BPS figures above, the 15,480
unemployed of August 2025 and the 480,378 residents (core/data): 333,200 / 480,378."""
CITY_RESIDENTS: Final = 480_378

# -- SYNTHETIC assumptions ---------------------------------------------------------------------

KELURAHAN_RATE_FACTOR: Final = (0.55, 1.6)
"""SYNTHETIC: a kelurahan's unemployment rate is the city's times a factor drawn from this
range (then all are rescaled so the city lands on the target): the map needs contrast."""
RT_RATE_SPREAD: Final = 0.02
"""SYNTHETIC: an RT's target rate is its kelurahan's +- this much."""
RATE_BAND: Final = 0.03
"""Every report that may be VALID has a rate within this of its kelurahan's (after rounding to
whole people): 6 points wide, under the 7 points the outlier test needs to fire."""
HOUSEHOLD_SIZE_BAND: Final = (3.45, 4.05)
"""SYNTHETIC residents per household; 0.6 wide, under the 0.875 the outlier test needs."""
RESIDENTS_PER_RT_FACTOR: Final = (0.7, 1.3)
MIN_RESIDENTS: Final = 60
"""At least 17 in the labour force, so the rate band always holds a whole number."""
WORKING_AGE_SPREAD: Final = 0.03
PARTICIPATION_SPREAD: Final = 0.025
SOCIAL_AID_SHARE: Final = (0.08, 0.30)
BIRTHS: Final = ((0, 1, 2), (70, 25, 5))
DEATHS: Final = ((0, 1), (85, 15))
MOVES: Final = ((0, 1, 2, 3), (55, 25, 13, 7))
"""SYNTHETIC monthly flows per RT (values, weights)."""

Mistake = Literal["clean", "swapped_fields", "missing_digit", "nik_in_note", "duplicate",
                  "late_correction", "residents_jump", "not_reported"]

MISTAKE_RATES: Final[Mapping[str, float]] = {
    "swapped_fields": 0.01,
    "missing_digit": 0.01,
    "duplicate": 0.01,
    "late_correction": 0.01,
    "residents_jump": 0.005,
    "not_reported": 0.04,
}
"""SYNTHETIC share of the month's RTs making each mistake; every kind happens at least once
(`max(1, round(rate x RTs))`), and exactly one note carries a NIK."""

BENIGN_NOTES: Final[tuple[str, ...]] = (
    "Kerja bakti membersihkan selokan hari Minggu.",
    "Dua keluarga baru menempati rumah kontrakan di gang 3.",
    "Posyandu bulan ini diikuti 14 balita.",
    "Lampu jalan di ujung gang mati sejak tanggal 12.",
    "Warga pindah ke Serang, sudah lapor ke kelurahan.",
)
"""SYNTHETIC notes RT heads write; none holds 16 digits in a row."""
NOTE_SHARE: Final = 0.15


@dataclass(frozen=True)
class Expected:
    """What the pipeline must do with one submission, from what was injected into it."""

    mistake: Mistake
    verdict: Literal["VALID", "NEEDS_REVIEW", "REJECTED"] | None
    """None: a duplicate, which publishes no verdict of its own."""
    reason_codes: tuple[str, ...] = ()
    dead_letter: tuple[str, str] | None = None
    """(stage, reason) of its dead letter, if it gets one."""
    counted: bool = False
    """True when it is the RT's current report for the month once everything has arrived."""


@dataclass(frozen=True)
class SimulatedReport:
    record: dict[str, Any]
    expected: Expected


@dataclass(frozen=True)
class SimulatedMonth:
    """The submissions in send order (base month first) and where the mistakes went."""

    base_period: str
    period: str
    reports: tuple[SimulatedReport, ...]
    rt_codes: tuple[str, ...]
    """The RTs fed (the registry's, or those of the chosen kelurahan)."""
    mistakes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Mistake -> the RT codes that made it in `period`."""
    nik: str = ""
    """The SYNTHETIC NIK-shaped number put in one note: it must appear nowhere downstream."""

    def counted(self) -> dict[tuple[str, str], SimulatedReport]:
        """(RT code, period) -> the submission the indicators must count (VALID) or show as
        needing review: the last one judged, per RT and month."""
        return {(r.record["rt_code"], r.record["period"]): r
                for r in self.reports if r.expected.counted}

    def verdict_counts(self, period: str | None = None) -> dict[str, int]:
        """Published verdicts per kind for `period` (default: the month)."""
        wanted = period or self.period
        counts = {"VALID": 0, "NEEDS_REVIEW": 0, "REJECTED": 0}
        for report in self.reports:
            if report.record["period"] == wanted and report.expected.verdict is not None:
                counts[report.expected.verdict] += 1
        return counts

    def json_lines(self) -> list[dict[str, Any]]:
        """The submissions as `cityops produce --type rt_report` reads them (ISO times)."""
        return [{**r.record, "submitted_at": r.record["submitted_at"].isoformat()}
                for r in self.reports]


@dataclass
class _Rt:
    """One RT's true state while the month is generated."""

    code: str
    rate: float  # the kelurahan's unemployment rate: the band's centre
    working_age_share: float
    participation: float
    aid_share: float
    households: int = 0
    residents: int = 0


def previous_month(now: datetime) -> str:
    """The month RT heads report at `now`: the one that ended last (WIB)."""
    return period_of(current_month(now) - 1)


def simulate_month(registry: Sequence[Mapping[str, Any]], period: str, *, seed: int,
                   kelurahan: Iterable[str] | None = None,
                   rates: Mapping[str, float] = MISTAKE_RATES,
                   rules: NeighbourhoodRules | None = None,
                   submitted_by: datetime | None = None) -> SimulatedMonth:
    """A clean base month (`period` - 1) and `period` with mistakes, for the registry's RTs
    (only those of `kelurahan` when given); deterministic for the arguments.

    `rules` are the thresholds the jump must clear (the continuity tolerance). Reports are
    submitted in the days after their month ends (a late correction nine days after the
    first); `submitted_by` (the wall clock) squeezes those times so none lies after it.
    """
    rules = rules or NeighbourhoodRules()
    rng = random.Random(f"{seed}:rt-reports:{period}")
    chosen = None if kelurahan is None else set(kelurahan)
    rows = sorted((r for r in registry if chosen is None or r["kelurahan_code"] in chosen),
                  key=lambda r: str(r["rt_code"]))
    if not rows:
        raise ValueError("no RT to simulate (unknown kelurahan?)")
    base_period = period_of(month_index(period) - 1)
    per_rt = CITY_RESIDENTS / len(registry)
    rts = _profiles(rows, rng, per_rt)
    reporter = {rt.code: f"KRT-{uuid.UUID(int=rng.getrandbits(128)).hex[:10]}" for rt in rts}

    base: list[SimulatedReport] = []
    for rt in rts:
        record = _report(rt, base_period, reporter[rt.code], rng, _flows(rng), first=True)
        base.append(SimulatedReport(record, Expected("clean", "VALID", counted=True)))
    rng.shuffle(base)

    victims = _victims([rt.code for rt in rts], rates, rng)
    kind_of = {code: kind for kind, codes in victims.items() for code in codes}
    month: list[SimulatedReport] = []
    late: list[SimulatedReport] = []
    nik = ""
    for rt in rts:
        kind = cast(Mistake, kind_of.get(rt.code, "clean"))
        if kind == "not_reported":
            continue
        flows = _flows(rng)
        if kind == "residents_jump":
            record = _jump(rt, period, reporter[rt.code], rng, flows, rules)
            month.append(SimulatedReport(record, Expected(kind, "NEEDS_REVIEW", ("continuity",),
                                                          counted=True)))
            continue
        record = _report(rt, period, reporter[rt.code], rng, flows)
        if kind == "clean":
            month.append(SimulatedReport(record, Expected(kind, "VALID", counted=True)))
        elif kind == "swapped_fields":
            wrong = {**record, "labour_force": record["unemployed"],
                     "unemployed": record["labour_force"]}
            assert wrong["unemployed"] > wrong["labour_force"], rt.code
            month.append(SimulatedReport(wrong, _rejected(kind, "VALIDATE",
                                                          "inconsistent_counts")))
        elif kind == "missing_digit":
            wrong = {**record, "residents": _drop_digit(record["residents"],
                                                        record["working_age"], rng)}
            month.append(SimulatedReport(wrong, _rejected(kind, "VALIDATE",
                                                          "inconsistent_counts")))
        elif kind == "nik_in_note":
            nik = "3672" + "".join(str(rng.randrange(10)) for _ in range(12))
            wrong = {**record, "note": f"Warga baru pindahan, NIK {nik}, belum lapor RW."}
            month.append(SimulatedReport(wrong, _rejected(kind, "VALIDATE", "personal_data")))
        elif kind == "duplicate":
            month.append(SimulatedReport(record, Expected(kind, "VALID", counted=True)))
            month.append(SimulatedReport(dict(record), Expected(kind, None)))
        elif kind == "late_correction":
            month.append(SimulatedReport(_off_by_one(record, rt),
                                         Expected(kind, "VALID", counted=False)))
            late.append(SimulatedReport({**record, "revision": 2,
                                         "submitted_at": record["submitted_at"]
                                         + timedelta(days=9)},
                                        Expected(kind, "VALID", counted=True)))
    _shuffle_keeping_duplicates(month, rng)
    reports = base + month + late
    if submitted_by is not None:
        reports = [SimulatedReport(_squeezed(r.record, submitted_by), r.expected)
                   for r in reports]
    return SimulatedMonth(
        base_period, period, tuple(reports), tuple(rt.code for rt in rts),
        {kind: tuple(sorted(codes)) for kind, codes in victims.items()}, nik)


def _rejected(kind: Mistake, stage: str, reason: str) -> Expected:
    return Expected(kind, "REJECTED", (reason,), (stage, reason))


def _profiles(rows: Sequence[Mapping[str, Any]], rng: random.Random, per_rt: float
              ) -> list[_Rt]:
    """Each RT's lasting traits; kelurahan rates rescaled so the city lands on the target."""
    factors: dict[str, float] = {}
    for row in rows:
        code = str(row["kelurahan_code"])
        if code not in factors:
            factors[code] = rng.uniform(*KELURAHAN_RATE_FACTOR)
    sizes = {str(row["rt_code"]): max(MIN_RESIDENTS, round(per_rt * rng.uniform(
        *RESIDENTS_PER_RT_FACTOR))) for row in rows}
    weight = {code: 0.0 for code in factors}
    for row in rows:
        weight[str(row["kelurahan_code"])] += sizes[str(row["rt_code"])]
    mean_factor = sum(factors[c] * w for c, w in weight.items()) / sum(weight.values())
    rts = []
    for row in rows:
        code = str(row["rt_code"])
        rate = TARGET_UNEMPLOYMENT_RATE * factors[str(row["kelurahan_code"])] / mean_factor
        rate = min(max(rate, RATE_BAND + 0.005), 0.5)
        rt = _Rt(code, rate,
                 WORKING_AGE_SHARE + rng.uniform(-WORKING_AGE_SPREAD, WORKING_AGE_SPREAD),
                 TARGET_PARTICIPATION_RATE + rng.uniform(-PARTICIPATION_SPREAD,
                                                         PARTICIPATION_SPREAD),
                 rng.uniform(*SOCIAL_AID_SHARE))
        rt.residents = sizes[code]
        rt.households = round(rt.residents / rng.uniform(*HOUSEHOLD_SIZE_BAND))
        rt.households = _fit_households(rt.residents, rt.households)
        rts.append(rt)
    return rts


def _flows(rng: random.Random) -> dict[str, int]:
    return {"births": rng.choices(*BIRTHS)[0], "deaths": rng.choices(*DEATHS)[0],
            "moved_in": rng.choices(*MOVES)[0], "moved_out": rng.choices(*MOVES)[0]}


def _fit_households(residents: int, households: int) -> int:
    """The household count nearest `households` whose size lies in HOUSEHOLD_SIZE_BAND."""
    low, high = HOUSEHOLD_SIZE_BAND
    fewest, most = math.ceil(residents / high), math.floor(residents / low)
    assert fewest <= most, residents
    return min(max(households, fewest), most)


def _labour(rt: _Rt, residents: int, rng: random.Random) -> dict[str, int]:
    """Working age, labour force and unemployed for `residents`, the rate in its band."""
    working_age = min(residents, round(residents * rt.working_age_share))
    labour_force = min(working_age, round(working_age * rt.participation))
    target = rt.rate + rng.uniform(-RT_RATE_SPREAD, RT_RATE_SPREAD)
    fewest = math.ceil((rt.rate - RATE_BAND) * labour_force)
    most = math.floor((rt.rate + RATE_BAND) * labour_force)
    assert 0 <= fewest <= most, (rt.code, labour_force)
    unemployed = min(max(round(target * labour_force), fewest), most)
    return {"working_age": working_age, "labour_force": labour_force, "unemployed": unemployed}


def _report(rt: _Rt, period: str, reporter_id: str, rng: random.Random,
            flows: Mapping[str, int], first: bool = False) -> dict[str, Any]:
    """A clean report; unless `first`, residents follow exactly from the RT's last report."""
    if not first:
        rt.residents += (flows["births"] - flows["deaths"] + flows["moved_in"]
                         - flows["moved_out"])
        rt.households = _fit_households(rt.residents, rt.households)
    return _record(rt, period, reporter_id, rng, flows)


def _jump(rt: _Rt, period: str, reporter_id: str, rng: random.Random,
          flows: Mapping[str, int], rules: NeighbourhoodRules) -> dict[str, Any]:
    """Residents far above last month + flows (a new housing block counted, or a typo that
    stays consistent): households grow with them so only continuity fails."""
    expected = (rt.residents + flows["births"] - flows["deaths"] + flows["moved_in"]
                - flows["moved_out"])
    allowed = max(rules.continuity_abs_tolerance,
                  math.ceil(rules.continuity_rel_tolerance * expected))
    rt.residents = expected + allowed + max(20, math.ceil(0.25 * expected))
    rt.households = _fit_households(rt.residents, round(rt.residents / 3.75))
    return _record(rt, period, reporter_id, rng, flows)


SUBMISSION_SPAN: Final = timedelta(days=14)
"""SYNTHETIC: first submissions in the 4 days after the month, corrections up to 9 days later."""


def _month_end(period: str) -> datetime:
    """1 am UTC (8 am WIB) on the first day after `period`."""
    year, month = (int(part) for part in period.split("-"))
    return datetime(year + month // 12, month % 12 + 1, 1, 1, tzinfo=UTC)


def _squeezed(record: Mapping[str, Any], submitted_by: datetime) -> dict[str, Any]:
    """`record` with its submission time mapped from the month's SUBMISSION_SPAN into the time
    before `submitted_by` (order kept), when the span reaches past it."""
    start = _month_end(record["period"])
    end = min(start + SUBMISSION_SPAN, submitted_by - timedelta(minutes=1))
    if end >= start + SUBMISSION_SPAN or end <= start:
        return dict(record)
    offset = max(record["submitted_at"] - start, timedelta(0))
    return {**record, "submitted_at": start + offset * ((end - start) / SUBMISSION_SPAN)}


def _record(rt: _Rt, period: str, reporter_id: str, rng: random.Random,
            flows: Mapping[str, int]) -> dict[str, Any]:
    submitted = _month_end(period) + timedelta(minutes=rng.randrange(4 * 24 * 60))
    note = rng.choice(BENIGN_NOTES) if rng.random() < NOTE_SHARE else None
    return {
        "report_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "revision": 1, "period": period, "rt_code": rt.code, "reporter_id": reporter_id,
        "submitted_at": submitted, "households": rt.households, "residents": rt.residents,
        **_labour(rt, rt.residents, rng), **flows,
        "social_aid_households": round(rt.households * rt.aid_share), "note": note,
    }


def _victims(codes: Sequence[str], rates: Mapping[str, float], rng: random.Random
             ) -> dict[str, tuple[str, ...]]:
    """Distinct RTs for each mistake: max(1, round(rate x RTs)) each, one NIK note."""
    wanted = {kind: max(1, round(rate * len(codes))) for kind, rate in rates.items()}
    wanted["nik_in_note"] = 1
    if sum(wanted.values()) > len(codes):
        raise ValueError(f"{len(codes)} RTs are too few for one of each mistake")
    pool = list(codes)
    rng.shuffle(pool)
    victims: dict[str, tuple[str, ...]] = {}
    for kind in sorted(wanted):
        victims[kind], pool = tuple(pool[:wanted[kind]]), pool[wanted[kind]:]
    return victims


def _drop_digit(residents: int, working_age: int, rng: random.Random) -> int:
    """Residents with one digit left out, smaller than the working-age count (always true for
    two or more digits, since working age is about 70 % of residents)."""
    text = str(residents)
    assert len(text) >= 2, residents
    position = rng.randrange(len(text))
    dropped = int(text[:position] + text[position + 1:])
    assert dropped < working_age, (residents, working_age, dropped)
    return dropped


def _off_by_one(record: Mapping[str, Any], rt: _Rt) -> dict[str, Any]:
    """The first, slightly wrong revision: unemployed one off, still inside the rate band."""
    labour_force: int = record["labour_force"]
    for delta in (1, -1):
        unemployed = record["unemployed"] + delta
        if unemployed >= 0 and abs(unemployed / labour_force - rt.rate) <= RATE_BAND:
            return {**record, "unemployed": unemployed,
                    "submitted_at": record["submitted_at"] - timedelta(hours=1)}
    raise AssertionError(f"{rt.code}: no off-by-one unemployed count inside the band")


def _shuffle_keeping_duplicates(month: list[SimulatedReport], rng: random.Random) -> None:
    """Shuffle the month's submissions, each duplicate right after its original (a double
    click on "send")."""
    def is_copy(report: SimulatedReport) -> bool:
        return report.expected.mistake == "duplicate" and report.expected.verdict is None

    originals = [r for r in month if not is_copy(r)]
    copies = {r.record["report_id"]: r for r in month if is_copy(r)}
    rng.shuffle(originals)
    month[:] = [x for r in originals
                for x in ((r, copies[r.record["report_id"]])
                          if r.record["report_id"] in copies else (r,))]

