"""RT reports judged as they arrive: VALID, NEEDS_REVIEW (with every reason) or REJECTED.

The checks are split the way the worker is (docs/smart-village.md):

* `screen_report` needs only the report, the RT registry and the clock. What it refuses cannot
  be used at all and is dead-lettered (`Rejection`): personal data (a 16-digit NIK-like number)
  in the note or the reporter id, a blank id, a negative count, a malformed or future period, a
  period older than the accepted window, an unknown RT, counts that contradict each other.
* `KelurahanReports.judge` needs what the other RTs of the kelurahan sent before: a duplicate
  (same `report_id` and `revision`) or an older revision changes nothing; a higher revision or
  a second report for the same RT and month replaces the current one (never added to it);
  residents must follow from last month's report (continuity) and the RT must not stand far
  from the other RTs of its RW, or else of its kelurahan (outlier). A failed check makes the
  report NEEDS_REVIEW, with the reason in plain words; the report is kept (it is the RT's
  latest word and the base of next month's continuity) but only VALID reports are counted.
* `indicators` and `rollup` turn the current report of each RT into monthly figures.

Everything here is pure: state goes in and comes out as plain JSON-able values, so the worker
keeps it in a Faust table and the tests drive it directly.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal

from core.rejections import Rejection
from core.vocabulary import CITY_CODE
from processors.personal_data import NIK_DIGITS, WITHHELD, contains_nik, nik_fields
from processors.thresholds import NeighbourhoodRules
from schemas.codec import CodecError, decode, encode

Verdict = Literal["VALID", "NEEDS_REVIEW", "REJECTED"]
Outcome = Literal["judged", "duplicate", "superseded"]

WIB: Final = timezone(timedelta(hours=7), "WIB")
"""Cilegon's time zone: a month starts and ends at midnight WIB, not UTC."""

COUNT_FIELDS: Final[tuple[str, ...]] = (
    "households", "residents", "working_age", "labour_force", "unemployed", "births", "deaths",
    "moved_in", "moved_out", "social_aid_households",
)
PERIOD_PATTERN: Final = re.compile(r"(?P<year>[0-9]{4})-(?P<month>0[1-9]|1[0-2])")
RT_CODE_PATTERN: Final = re.compile(r"[0-9]{2}\.[0-9]{2}\.[0-9]{2}\.[0-9]{4}\.[0-9]{3}\.[0-9]{3}")
TEXT_FIELDS: Final[tuple[str, ...]] = ("report_id", "reporter_id", "rt_code", "period", "note")
"""Every field of an RT report a person types: each goes through the personal-data screen."""
MAD_SCALE: Final = 1.4826
"""Makes the median absolute deviation estimate a standard deviation for normal data."""

COPY_FIELDS: Final[tuple[str, ...]] = (
    "households", "residents", "working_age", "labour_force", "unemployed", "births", "deaths",
    "moved_in", "moved_out",
)
"""Counts RTs' reports share when they were copied from one (copied_report)."""
COPY_MIN_OTHERS: Final = 2
"""Identical reports of other RTs of the RW that make one a copy: two RTs may match by chance
(small RTs with no births, deaths or moves), a third is a pattern."""
STORED_FIELDS: Final[tuple[str, ...]] = (
    "report_id", "revision", "households", "residents", "working_age", "labour_force",
    "unemployed", "births", "deaths", "moved_in", "moved_out",
)


# -- periods ------------------------------------------------------------------------------------


def month_index(period: str) -> int:
    """Months since year 0 of a YYYY-MM period (so periods subtract); ValueError if malformed."""
    match = PERIOD_PATTERN.fullmatch(period)
    if match is None:
        raise ValueError(f"period {period!r} is not YYYY-MM")
    return int(match["year"]) * 12 + int(match["month"]) - 1


def period_of(index: int) -> str:
    year, month = divmod(index, 12)
    return f"{year:04d}-{month + 1:02d}"


def current_month(now: datetime) -> int:
    """The month index of `now` in Cilegon (WIB)."""
    local = now.astimezone(WIB)
    return local.year * 12 + local.month - 1


def rw_code(rt_code: str) -> str:
    """The RW of an RT code: `<kelurahan code>.<RW>`."""
    return rt_code.rsplit(".", 1)[0]


# -- the stateless screen ----------------------------------------------------------------------


def screen_report(report: Mapping[str, Any], registry: Mapping[str, Mapping[str, Any]],
                  rules: NeighbourhoodRules, now: datetime) -> Mapping[str, Any]:
    """The registry record of the report's RT; raises `Rejection` if the report is unusable.

    Personal data is checked first, in every field a person types (`TEXT_FIELDS`, through
    `processors.personal_data`): its message names the fields, never their values, so no
    later rule can quote them either, and the dead letter withholds the original bytes
    (`processors.dead_letters.WITHHELD_REASONS`).
    """
    carrying = nik_fields(report, TEXT_FIELDS, registry)
    if carrying:
        raise Rejection("VALIDATE", "personal_data",
                        f"{', '.join(carrying)} {'holds' if len(carrying) == 1 else 'hold'} a "
                        f"{NIK_DIGITS}-digit number shaped like a NIK (in any digits, with any "
                        "separators); personal data must not enter the pipeline (value not "
                        "copied)")
    for name in ("report_id", "reporter_id", "rt_code"):
        if not str(report[name]).strip():
            raise Rejection("VALIDATE", "blank_id", f"{name} is blank")
    if report["revision"] < 1:
        raise Rejection("VALIDATE", "out_of_range",
                        f"revision is {report['revision']}; the first submission is 1")
    negative = [name for name in COUNT_FIELDS if report[name] < 0]
    if negative:
        raise Rejection("VALIDATE", "out_of_range", f"negative count: {', '.join(negative)}")
    over = [f"{name} {report[name]} is above {limit}" for name, limit in bounds(rules)
            if report[name] > limit]
    if over:
        raise Rejection("VALIDATE", "out_of_range",
                        f"more than one RT can hold: {'; '.join(over)} (the city-wide maximum "
                        "per RT)")
    period = report["period"]
    try:
        month = month_index(period)
    except ValueError as error:
        raise Rejection("VALIDATE", "out_of_range", str(error)) from None
    this_month = current_month(now)
    if month > this_month:
        raise Rejection("VALIDATE", "future_period",
                        f"period {period} is after the current month {period_of(this_month)}")
    if this_month - month > rules.max_period_age_months:
        raise Rejection("VALIDATE", "too_old",
                        f"period {period} is more than {rules.max_period_age_months} months "
                        f"before {period_of(this_month)}")
    rt = registry.get(report["rt_code"])
    if rt is None:
        code = report["rt_code"]
        shape = "" if RT_CODE_PATTERN.fullmatch(code) else " (expected kk.kk.kk.kkkk.RW.RT)"
        raise Rejection("ENRICH", "unknown_rt", f"RT {code[:40]!r} is not in the registry{shape}")
    problems = inconsistencies(report)
    if problems:
        raise Rejection("VALIDATE", "inconsistent_counts", "; ".join(problems))
    return rt


def bounds(rules: NeighbourhoodRules) -> list[tuple[str, int]]:
    """(count, city-wide maximum per RT): residents and households by their own bound, a
    month's births, deaths and moves by the residents' (none can exceed what an RT holds)."""
    return [("residents", rules.max_rt_residents), ("households", rules.max_rt_households),
            *((name, rules.max_rt_residents)
              for name in ("births", "deaths", "moved_in", "moved_out"))]


def inconsistencies(report: Mapping[str, Any]) -> list[str]:
    """Every broken order among the counts: unemployed <= labour force <= working-age <=
    residents, households <= residents, households on social aid <= households."""
    chain = (("unemployed", "labour_force"), ("labour_force", "working_age"),
             ("working_age", "residents"), ("households", "residents"),
             ("social_aid_households", "households"))
    return [f"{low} ({report[low]}) is more than {high} ({report[high]})"
            for low, high in chain if report[low] > report[high]]


# -- the stateful judgement ---------------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    """What one report did to its kelurahan's reports."""

    outcome: Outcome
    verdict: Verdict | None = None
    codes: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()


REVIEW_CODES: Final[tuple[str, ...]] = (
    "continuity", "large_moves", "household_size_bound", "copied_report",
    "outlier_unemployment_rate", "outlier_household_size", "second_report",
)
"""Every reason a report needs review, in a fixed order (a bounded metric label)."""


@dataclass
class KelurahanReports:
    """The current report of every RT of one kelurahan per month, and the (report_id,
    revision) pairs seen; bounded by `prune` to the accepted window plus one month."""

    #: rt_code -> period -> the stored report (STORED_FIELDS + "verdict").
    rts: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: rt_code -> report_id -> [highest revision seen, month index of its period].
    seen: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"rts": self.rts, "seen": self.seen}

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> KelurahanReports:
        if not value:
            return cls()
        return cls(rts={rt: dict(periods) for rt, periods in value["rts"].items()},
                   seen={rt: {rid: list(pair) for rid, pair in ids.items()}
                         for rt, ids in value["seen"].items()})

    def current(self, rt_code: str, period: str) -> dict[str, Any] | None:
        return self.rts.get(rt_code, {}).get(period)

    def judge(self, report: Mapping[str, Any], rules: NeighbourhoodRules) -> Judgement:
        """Judge a screened report and, unless it is a duplicate or an older revision, make it
        the RT's current report for its month."""
        rt_code, period = report["rt_code"], report["period"]
        month = month_index(period)
        report_id, revision = report["report_id"], report["revision"]
        seen = self.seen.setdefault(rt_code, {})
        earlier = seen.get(report_id)
        if earlier is not None and revision == earlier[0]:
            return Judgement("duplicate")
        if earlier is not None and revision < earlier[0]:
            return Judgement("superseded")
        if earlier is None:
            ids = sum(1 for pair in seen.values() if pair[1] == month)
            if ids >= rules.max_report_ids_per_rt_month:
                raise Rejection("VALIDATE", "too_many_reports",
                                f"the RT already sent {ids} report ids for {period}, the most "
                                "kept; send a new revision of one of them instead")
        seen[report_id] = [revision, month]
        codes: list[str] = []
        reasons: list[str] = []
        replaced = self.current(rt_code, period)
        if replaced is not None and replaced["report_id"] != report_id:
            codes.append("second_report")
            reasons.append(f"a second report for this RT and {period} (report "
                           f"{replaced['report_id']} came first); it replaces the first")
        base = self.base(rt_code, month, rules)
        if base is not None:
            since = None if base[1] == period_of(month - 1) else base[1]
            reason = continuity(base[0], report, rules, since, base[2])
            if reason is not None:
                codes.append("continuity")
                reasons.append(reason)
        for code, reason in plausibility(report, base[0] if base else None, rules):
            codes.append(code)
            reasons.append(reason)
        copied = self._copied(report)
        if copied:
            codes.append("copied_report")
            reasons.append(f"every count equals the reports of {len(copied)} other RTs of the "
                           f"RW for {period} ({', '.join(c.rsplit('.', 1)[1] for c in copied)})"
                           ": copied?")
        for code, reason in self._outliers(report, rules):
            codes.append(code)
            reasons.append(reason)
        verdict: Verdict = "NEEDS_REVIEW" if codes else "VALID"
        stored = {name: report[name] for name in STORED_FIELDS}
        stored["verdict"] = verdict
        self.rts.setdefault(rt_code, {})[period] = stored
        return Judgement("judged", verdict, tuple(codes), tuple(reasons))

    def review(self, decision: Mapping[str, Any], rules: NeighbourhoodRules) -> Judgement:
        """Apply a reviewer's decision on a NEEDS_REVIEW report (issue 23, part 3): ACCEPT
        makes it VALID (a base for the next month's continuity from now on), REJECT takes it
        out (not counted, not a base), CORRECT replaces it by a new revision with the
        reviewer's counts, VALID. The decision names the report it was taken on (id and
        revision); one on another report, or on one that is not waiting for review, is a
        `stale_review` rejection, so a decision can never apply to figures the reviewer did not
        see. Pure: the caller checks the reviewer's role and kelurahan."""
        rt_code, period = decision["rt_code"], decision["period"]
        stored = self.current(rt_code, period)
        reviewer = decision["reviewer_id"]
        if (stored is None or stored["report_id"] != decision["report_id"]
                or stored["revision"] != decision["revision"]):
            raise Rejection("VALIDATE", "stale_review",
                            f"RT {rt_code} has no report {decision['report_id']!r} revision "
                            f"{decision['revision']} for {period} as its current one")
        if stored["verdict"] != "NEEDS_REVIEW":
            raise Rejection("VALIDATE", "stale_review",
                            f"the report is {stored['verdict']}, not waiting for review")
        kind = decision["decision"]
        if kind == "ACCEPT":
            stored.update(verdict="VALID", reviewed_by=reviewer)
            return Judgement("judged", "VALID", ("review_accepted",),
                             (f"accepted by {reviewer} after review",))
        if kind == "REJECT":
            stored.update(verdict="REJECTED", reviewed_by=reviewer)
            return Judgement("judged", "REJECTED", ("review_rejected",),
                             (f"rejected by {reviewer} after review",))
        if kind != "CORRECT":
            raise Rejection("VALIDATE", "out_of_range", f"unknown review decision {kind!r}")
        corrected = {**stored, **{name: decision["counts"][name] for name in COUNT_FIELDS}}
        problems = inconsistencies(corrected) + [
            f"{name} {corrected[name]} is above {limit}" for name, limit in bounds(rules)
            if corrected[name] > limit]
        if any(corrected[name] < 0 for name in COUNT_FIELDS):
            problems.append("a negative count")
        if problems:
            raise Rejection("VALIDATE", "inconsistent_counts", "; ".join(problems))
        revision = stored["revision"] + 1
        stored.clear()
        stored.update({name: corrected[name] for name in STORED_FIELDS},
                      revision=revision, verdict="VALID", reviewed_by=reviewer)
        self.seen.setdefault(rt_code, {})[stored["report_id"]] = [revision, month_index(period)]
        return Judgement("judged", "VALID", ("review_corrected",),
                         (f"corrected by {reviewer} after review (revision {revision})",))

    def base(self, rt_code: str, month: int, rules: NeighbourhoodRules
             ) -> tuple[dict[str, Any], str, dict[str, int]] | None:
        """The report continuity starts from: the RT's latest earlier month whose report is
        trusted (VALID, or accepted or corrected by a reviewer: `review`), within the kept
        window (a report a reviewer rejected is skipped); with
        its period and the flows of the months between (from their untrusted reports). A
        NEEDS_REVIEW report is never a base, so a jump cannot become next month's normal
        before someone looked at it."""
        periods = self.rts.get(rt_code, {})
        between = {"births": 0, "deaths": 0, "moved_in": 0, "moved_out": 0}
        for back in range(1, rules.max_period_age_months + 2):
            stored = periods.get(period_of(month - back))
            if stored is None:
                continue
            if stored["verdict"] == "VALID":
                return stored, period_of(month - back), between
            if stored["verdict"] == "NEEDS_REVIEW":
                for name in between:
                    between[name] += stored[name]
        return None

    def _copied(self, report: Mapping[str, Any]) -> list[str]:
        """The other RTs of the same RW whose current report of the month has every count of
        this one, when there are at least COPY_MIN_OTHERS (an RW filling in its RTs' forms
        from one), else []."""
        rt_code, period = report["rt_code"], report["period"]
        rw = rw_code(rt_code)
        counts = tuple(report[name] for name in COPY_FIELDS)
        same = [code for code, periods in sorted(self.rts.items())
                if code != rt_code and rw_code(code) == rw and period in periods
                and tuple(periods[period][name] for name in COPY_FIELDS) == counts]
        return same if len(same) >= COPY_MIN_OTHERS else []

    def _peers(self, report: Mapping[str, Any], min_peers: int
               ) -> tuple[str, list[dict[str, Any]]]:
        """The other RTs' VALID reports of the month: of the same RW if there are enough,
        else of the kelurahan; ("", []) when neither has enough."""
        rt_code, period = report["rt_code"], report["period"]
        rw = rw_code(rt_code)
        others = [(code, periods[period]) for code, periods in self.rts.items()
                  if code != rt_code and period in periods
                  and periods[period]["verdict"] == "VALID"]
        same_rw = [stored for code, stored in others if rw_code(code) == rw]
        if len(same_rw) >= min_peers:
            return "RW", same_rw
        if len(others) >= min_peers:
            return "kelurahan", [stored for _, stored in others]
        return "", []

    def _outliers(self, report: Mapping[str, Any], rules: NeighbourhoodRules
                  ) -> list[tuple[str, str]]:
        scope, peers = self._peers(report, rules.outlier_min_peers)
        if not peers:
            return []
        found = []
        tests = (("outlier_unemployment_rate", "unemployment rate", unemployment_rate,
                  rules.outlier_rate_floor, True),
                 ("outlier_household_size", "residents per household", household_size,
                  rules.outlier_household_size_floor, False))
        for code, label, measure, floor, percent in tests:
            value = measure(report)
            values = [v for v in (measure(peer) for peer in peers) if v is not None]
            if value is None or len(values) < rules.outlier_min_peers:
                continue
            score = robust_z(value, values, floor)
            if abs(score) > rules.outlier_z:
                middle = statistics.median(values)
                shown = (f"{value:.1%}", f"{middle:.1%}") if percent else (
                    f"{value:.2f}", f"{middle:.2f}")
                found.append((code, f"{label} {shown[0]} is far from the other RTs of the "
                              f"{scope} (median {shown[1]} over {len(values)} RTs, robust "
                              f"z {score:+.1f}, limit {rules.outlier_z})"))
        return found

    def prune(self, this_month: int, rules: NeighbourhoodRules) -> None:
        """Forget months no report may still name: older than the accepted window, keeping one
        more month as the base of the oldest acceptable month's continuity check."""
        oldest = this_month - rules.max_period_age_months - 1
        for rt_code in list(self.rts):
            periods = {p: r for p, r in self.rts[rt_code].items() if month_index(p) >= oldest}
            if periods:
                self.rts[rt_code] = periods
            else:
                del self.rts[rt_code]
        for rt_code in list(self.seen):
            ids = {rid: pair for rid, pair in self.seen[rt_code].items() if pair[1] >= oldest}
            if ids:
                self.seen[rt_code] = ids
            else:
                del self.seen[rt_code]


def continuity(previous: Mapping[str, Any], report: Mapping[str, Any],
               rules: NeighbourhoodRules, since: str | None = None,
               between: Mapping[str, int] | None = None) -> str | None:
    """Why residents do not follow from the base report, or None when they do.

    Expected = the base's residents + births - deaths + moved in - moved out (this month's
    flows, plus `between`: those of the untrusted months after the base of `since`, None when
    the base is last month's); allowed
    difference = max(continuity_abs_tolerance, ceil(continuity_rel_tolerance x expected)).
    """
    flows = {name: report[name] + (between or {}).get(name, 0)
             for name in ("births", "deaths", "moved_in", "moved_out")}
    expected = (previous["residents"] + flows["births"] - flows["deaths"]
                + flows["moved_in"] - flows["moved_out"])
    allowed = max(rules.continuity_abs_tolerance,
                  math.ceil(rules.continuity_rel_tolerance * max(expected, 0)))
    if abs(report["residents"] - expected) <= allowed:
        return None
    origin = "last month" if since is None else f"the last VALID or reviewed report ({since})"
    return (f"residents {report['residents']} do not follow from {origin}: "
            f"{previous['residents']} + {flows['births']} births - {flows['deaths']} deaths "
            f"+ {flows['moved_in']} moved in - {flows['moved_out']} moved out = {expected} "
            f"(allowed difference {allowed})")


def plausibility(report: Mapping[str, Any], base: Mapping[str, Any] | None,
                 rules: NeighbourhoodRules) -> list[tuple[str, str]]:
    """(code, reason) of each bound a plausible-looking report breaks: more moved in or out in
    one month than the RT's base (else the report itself) allows, and more residents per
    household than a household holds."""
    found = []
    residents = (base or report)["residents"]
    allowed = max(rules.moves_abs_tolerance, math.ceil(rules.moves_rel_tolerance * residents))
    large = [f"{name.replace('_', ' ')} {report[name]}" for name in ("moved_in", "moved_out")
             if report[name] > allowed]
    if large:
        found.append(("large_moves", f"{' and '.join(large)} in one month: more than the "
                      f"{allowed} an RT of {residents} residents allows without review"))
    size = household_size(report)
    if size is not None and size > rules.max_household_size:
        found.append(("household_size_bound",
                      f"{size:.1f} residents per household, more than "
                      f"{rules.max_household_size:g}"))
    return found


def unemployment_rate(report: Mapping[str, Any]) -> float | None:
    labour_force: int = report["labour_force"]
    return report["unemployed"] / labour_force if labour_force > 0 else None


def household_size(report: Mapping[str, Any]) -> float | None:
    households: int = report["households"]
    return report["residents"] / households if households > 0 else None


def robust_z(value: float, values: Sequence[float], floor: float) -> float:
    """(value - median) / max(1.4826 x MAD, floor): the modified z-score with a floor."""
    middle = statistics.median(values)
    mad = statistics.median(abs(v - middle) for v in values)
    return (value - middle) / max(MAD_SCALE * mad, floor)


# -- indicators -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """The additive part of an indicator: sums over the current report of each RT."""

    rt_registered: int = 0
    rt_reported: int = 0
    rt_valid: int = 0
    rt_needs_review: int = 0
    residents: int = 0
    labour_force: int = 0
    unemployed: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(*(a + b for a, b in zip(vars(self).values(), vars(other).values(),
                                              strict=True)))


def tally(rt_codes: Iterable[str], reports: KelurahanReports, period: str) -> Tally:
    """Sums over the registered `rt_codes` of one scope: each RT counts once, with its current
    report (the latest revision), and only a VALID report adds people."""
    total = Tally()
    for rt_code in rt_codes:
        stored = reports.current(rt_code, period)
        one = Tally(rt_registered=1)
        if stored is not None and stored["verdict"] == "VALID":
            one = Tally(1, 1, 1, 0, stored["residents"], stored["labour_force"],
                        stored["unemployed"])
        elif stored is not None and stored["verdict"] == "NEEDS_REVIEW":
            one = Tally(1, 1, 0, 1)
        total = total + one
    return total


SmallCellRule = Literal["SMALL_LABOUR_FORCE", "SMALL_COUNT", "COMPLEMENTARY"]


def small_cell(counts: Tally, rules: NeighbourhoodRules) -> SmallCellRule | None:
    """The primary small-cell rule an RW's counts break, if any (docs/smart-village.md, 'Small
    cells'): a labour force of 1 to `min_labour_force` - 1, or 1 to `max_small_count`
    unemployed, would point at a household (UU 27/2022). No labour force (no VALID report)
    has nothing to withhold, and 0 unemployed in a large enough RW singles no one out."""
    if 0 < counts.labour_force < rules.min_labour_force:
        return "SMALL_LABOUR_FORCE"
    if 1 <= counts.unemployed <= rules.max_small_count:
        return "SMALL_COUNT"
    return None


def indicator(scope_code: str, level: str, period: str, counts: Tally, now: datetime,
              synthetic: bool, withheld: SmallCellRule | None = None) -> dict[str, Any]:
    """An `org.cityops.NeighbourhoodIndicator` from a scope's tally; a `withheld` cell carries
    null for unemployed and the rate (never a false number) and names the rule."""
    return {
        "scope_code": scope_code, "scope_level": level, "period": period,
        **vars(counts),
        "unemployed": None if withheld else counts.unemployed,
        "unemployment_rate": (counts.unemployed / counts.labour_force
                              if counts.labour_force and not withheld else None),
        "completeness": (counts.rt_reported / counts.rt_registered
                         if counts.rt_registered else 0.0),
        "review_share": (counts.rt_needs_review / counts.rt_reported
                         if counts.rt_reported else None),
        "computed_at": now, "synthetic": synthetic, "withheld": withheld,
    }


def withheld_rws(by_rw: Mapping[str, Tally], rules: NeighbourhoodRules
                 ) -> dict[str, SmallCellRule]:
    """The RWs of one kelurahan whose unemployed count is withheld, with the rule. When exactly
    one RW breaks a primary rule, the kelurahan total minus the other RWs would give it away,
    so the published RW with data and the smallest labour force (then the lowest code) is
    withheld too (COMPLEMENTARY); with two or more withheld only their sum can be derived."""
    out: dict[str, SmallCellRule] = {}
    for code, counts in by_rw.items():
        rule = small_cell(counts, rules)
        if rule is not None:
            out[code] = rule
    if len(out) == 1:
        others = [(counts.labour_force, code) for code, counts in by_rw.items()
                  if code not in out and counts.labour_force > 0]
        if others:
            out[min(others)[1]] = "COMPLEMENTARY"
    return out


def kelurahan_indicators(kelurahan_code: str, registered: Sequence[Mapping[str, Any]],
                         reports: KelurahanReports, period: str, now: datetime,
                         rules: NeighbourhoodRules | None = None) -> list[dict[str, Any]]:
    """The indicators of every RW of the kelurahan, then of the kelurahan, for `period`;
    `registered` is the kelurahan's RT records from the registry. Small RW cells are withheld
    (`withheld_rws`); the kelurahan sums every VALID report, withheld RWs included."""
    rules = rules or NeighbourhoodRules()
    by_rw: dict[str, list[str]] = {}
    for rt in registered:
        by_rw.setdefault(rw_code(rt["rt_code"]), []).append(rt["rt_code"])
    synthetic = any(rt["synthetic"] for rt in registered)
    counts = {rw: tally(by_rw[rw], reports, period) for rw in sorted(by_rw)}
    withheld = withheld_rws(counts, rules)
    out = [indicator(rw, "RW", period, one, now, synthetic, withheld.get(rw))
           for rw, one in counts.items()]
    whole = sum(counts.values(), Tally())
    out.append(indicator(kelurahan_code, "KELURAHAN", period, whole, now, synthetic))
    return out


def tally_of(record: Mapping[str, Any]) -> Tally:
    """The tally inside a published indicator (to roll kelurahan up to kecamatan and city)."""
    return Tally(*(int(record[name]) for name in vars(Tally())))


def rollup(scope_code: str, level: str, period: str, parts: Iterable[Mapping[str, Any]],
           now: datetime, unindicated_rts: int = 0) -> dict[str, Any]:
    """A kecamatan or city indicator from its kelurahan indicators: counts are summed and the
    rates recomputed from the sums (never averaged). `unindicated_rts` are the registered RTs
    of its kelurahan that have no indicator for the month (none reported): they count in the
    completeness denominator."""
    records = list(parts)
    total = sum((tally_of(part) for part in records), Tally(rt_registered=unindicated_rts))
    return indicator(scope_code, level, period, total, now,
                     any(part["synthetic"] for part in records))


def rollups(kelurahan_records: Iterable[Mapping[str, Any]], registered: Mapping[str, int],
            kecamatan_of: Mapping[str, str], now: datetime) -> list[dict[str, Any]]:
    """The city and kecamatan indicators of every period that has kelurahan indicators, from
    the latest kelurahan ones. `registered` counts the registry's RTs per kelurahan and
    `kecamatan_of` places each kelurahan: a kelurahan without an indicator for a period (no RT
    reported) still counts its RTs as registered, so completeness is over the whole registry.
    The worker's leader publishes the ones whose counts changed; the test driver all of them."""
    by_period: dict[str, list[Mapping[str, Any]]] = {}
    for record in kelurahan_records:
        if record["scope_level"] == "KELURAHAN":
            by_period.setdefault(record["period"], []).append(record)
    out = []
    for period, parts in sorted(by_period.items()):
        indicated = {part["scope_code"] for part in parts}
        scopes: dict[tuple[str, str], list[Mapping[str, Any]]] = {(CITY_CODE, "CITY"): parts}
        for part in parts:
            kecamatan = kecamatan_of.get(part["scope_code"], "")
            scopes.setdefault((kecamatan, "KECAMATAN"), []).append(part)
        for (scope, level), members in scopes.items():
            missing = sum(count for code, count in registered.items()
                          if code not in indicated
                          and (level == "CITY" or kecamatan_of.get(code) == scope))
            out.append(rollup(scope, level, period, members, now, missing))
    return out


# -- one record through each hop (shared by the worker and the tests) ---------------------------


def read_report(value: bytes | None, topic: str, schema: str, *, trusted: bool = False
                ) -> dict[str, Any]:
    """An RT report decoded (a `CodecError`, stage DECODE, when it cannot be).

    `trusted` is for the second hop, which reads the screened topic: only workers write it, and
    only bytes this function already decoded with every partner check, so the canonical-bytes
    and UUID checks are skipped there (the codec's structural checks stay)."""
    if value is None:
        raise CodecError("undecodable", f"{topic}: record has no value (tombstone)")
    return decode(value, expected=schema, trusted=trusted).record


def screened_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """The record the screen passes on (the enriched topic's), never the partner's bytes: the
    decoded report without its note, which no later hop reads and no record carries."""
    return {**report, "note": None}


def screened_bytes(report: Mapping[str, Any], schema: str) -> bytes:
    """`screened_report` encoded for the screened topic (the judge hop reads it back)."""
    return encode(schema, screened_report(report), validate=False)


def _shown(value: Any, limit: int) -> str:
    """A report's identifier as a verdict shows it: cut, and `WITHHELD` when it holds a NIK."""
    text = str(value)
    return WITHHELD if contains_nik(text) else text[:limit]


def validation(report: Mapping[str, Any], rt: Mapping[str, Any] | None, verdict: Verdict,
               codes: Sequence[str], reasons: Sequence[str], now: datetime) -> dict[str, Any]:
    """An `org.cityops.RtValidation`: never the note; no counts for a REJECTED report; an
    identifier the personal-data screen refused shows as `WITHHELD`."""
    counted = verdict != "REJECTED"
    return {
        "rt_code": _shown(report["rt_code"], 64),
        "kelurahan_code": None if rt is None else rt["kelurahan_code"],
        "rw": None if rt is None else rt["rw"],
        "period": _shown(report["period"], 16),
        "report_id": _shown(report["report_id"], 64),
        "revision": report["revision"], "verdict": verdict,
        "reason_codes": list(codes), "reasons": list(reasons),
        **{name: report[name] if counted else None
           for name in ("residents", "labour_force", "unemployed")},
        "validated_at": now, "synthetic": bool(rt is not None and rt["synthetic"]),
    }


def review_validation(reports: KelurahanReports, decision: Mapping[str, Any],
                      rt: Mapping[str, Any], judgement: Judgement, now: datetime
                      ) -> dict[str, Any]:
    """The verdict a reviewer's decision publishes: the report as it now stands (a correction's
    new revision), the decision as its reason code and the reviewer named in its reason."""
    stored = reports.current(decision["rt_code"], decision["period"])
    assert stored is not None and judgement.verdict is not None
    report = {**stored, "rt_code": decision["rt_code"], "period": decision["period"]}
    return validation(report, rt, judgement.verdict, judgement.codes, judgement.reasons, now)


REVIEW_SCHEMA: Final = "org.cityops.RtReview"
REVIEW_DECISIONS: Final[tuple[str, ...]] = ("ACCEPT", "CORRECT", "REJECT")


def may_review(role: str, scopes: Sequence[str], kelurahan_code: str) -> bool:
    """A supervisor reviews every kelurahan; a VILLAGE_STAFF account the kelurahan it is
    given (`core.accounts.Principal.kelurahan`); nobody else."""
    upper = role.upper()
    return upper == "SUPERVISOR" or (upper == "VILLAGE_STAFF" and kelurahan_code in scopes)


def read_review(value: bytes | None, topic: str) -> dict[str, Any]:
    """A reviewer's decision read from its topic, fully checked (the board writes it, but the
    topic is not the board's alone): a role that may not review, a decision outside
    REVIEW_DECISIONS, a correction without counts or a note with personal data is a
    Rejection. The reviewer's kelurahan scope is checked by the board, which knows it."""
    if value is None:
        raise CodecError("undecodable", f"{topic}: record has no value")
    review = decode(value, expected=REVIEW_SCHEMA).record
    if review["reviewer_role"].upper() not in ("SUPERVISOR", "VILLAGE_STAFF"):
        raise Rejection("VALIDATE", "action_not_allowed",
                        f"a {review['reviewer_role'].lower()} may not review RT reports")
    if review["decision"] not in REVIEW_DECISIONS:
        raise Rejection("VALIDATE", "out_of_range", f"unknown decision {review['decision']!r}")
    if review["decision"] == "CORRECT" and set(review["counts"] or ()) != set(COUNT_FIELDS):
        raise Rejection("VALIDATE", "missing_target",
                        f"CORRECT needs every count: {', '.join(COUNT_FIELDS)}")
    if nik_fields(review, ("note", "rt_code", "report_id", "period", "reviewer_id")):
        raise Rejection("VALIDATE", "personal_data",
                        "the review holds a 16-digit number shaped like a NIK (not copied)")
    return review


def rejected_validation(report: Mapping[str, Any], rt: Mapping[str, Any] | None,
                        error: Rejection, now: datetime) -> dict[str, Any]:
    """The REJECTED verdict of a screened-out report, for the officer: the rule as its code and
    the rejection's message (which never quotes the note) as its reason."""
    return validation(report, rt, "REJECTED", [error.reason], [error.message], now)
