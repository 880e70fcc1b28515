"""The monthly reports a city is asked for (issue 21, part 3), from the history store's rows.

Pure: the store (`streams/history_store.py`) reads the rows, this module computes, the web layer
(`streams/history_web.py`) serves JSON, CSV and the printable page. A month is a calendar month
in WIB (the command center's clock); a scope is the whole city or one kecamatan.

What each figure is, from what the records hold:

- **SLA per agency**: every case reported in the month, grouped by the agency it was assigned
  to ("unassigned" when none); for dispatch and on scene, the time from the report to the
  stage (dispatch counts an assignment, as the SLA clock does) against the limit of the
  worker's SLA rules for the case's category and agency. Acknowledgement belongs to the
  command center, not an agency: each raised episode of a kelurahan (its level reaching ALERT
  or CRITICAL from below) acknowledged in the month is one sample, from the first situation
  at that level to the ACKNOWLEDGE action, against the limit for the episode's highest level.
  Share within SLA, median and 90th percentile by nearest rank (`processors.operations.kpi`).
- **Incidents per category per kelurahan**: cases reported in the month.
- **Street lights out and bins full over time**: per WIB day and kelurahan, the highest
  `lamps_out` and `containers_full` any situation of that day reported; the scope's figure of a
  day is the sum over its kelurahan.
- **Unemployment month over month**: per RW and kelurahan, the latest indicator of the month and
  of the month before (the newest `computed_at`, then the later record), the rate of each and
  the change in percentage points.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from core.vocabulary import level_rank
from processors.operations import kpi
from processors.state import from_ms, to_ms
from processors.thresholds import SlaRules

WIB: Final = timezone(timedelta(hours=7), "WIB")
MONTH: Final = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
COMMAND_CENTER: Final = "COMMAND_CENTER"
UNASSIGNED: Final = "UNASSIGNED"
RAISED: Final = level_rank("ALERT")


class ReportError(ValueError):
    """A report parameter is malformed; the message says which."""


def month_bounds(month: str) -> tuple[int, int]:
    """Epoch ms of the month's first instant and of the next month's, in WIB."""
    found = MONTH.fullmatch(month)
    if found is None:
        raise ReportError("month must be YYYY-MM")
    year, number = int(found[1]), int(found[2])
    start = datetime(year, number, 1, tzinfo=WIB)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=WIB)
    return to_ms(start), to_ms(end)


def previous_month(month: str) -> str:
    start, _ = month_bounds(month)
    before = from_ms(start - 1).astimezone(WIB)
    return f"{before.year:04d}-{before.month:02d}"


def in_scope(code: str | None, kecamatan: str | None) -> bool:
    """A kelurahan, RW or kecamatan code inside the chosen kecamatan (None: the whole city)."""
    return kecamatan is None or (code is not None and (code == kecamatan
                                                       or code.startswith(kecamatan + ".")))


def _kpi_json(samples: Sequence[tuple[float, float]]) -> dict[str, Any]:
    figure = kpi(samples)
    return {"count": figure.count, "within": figure.within, "share_within": figure.share_within,
            "median_s": figure.median_s, "p90_s": figure.p90_s}


def acknowledge_samples(situations: Iterable[Sequence[Any]], acknowledgements:
                        Iterable[Sequence[Any]], rules: SlaRules
                        ) -> dict[str, list[tuple[int, float, float]]]:
    """Per kelurahan: (acknowledged at ms, seconds waited, limit) of each raised episode.

    `situations` are (ward, emitted_at_ms, level) in sequence order, `acknowledgements`
    (ward, occurred_at_ms) in time order. An episode starts at the first situation at ALERT or
    above after one below, ends at the first situation below; its first acknowledgement
    inside it is its sample."""
    episodes: dict[str, list[list[Any]]] = defaultdict(list)
    for ward, emitted, level in situations:
        runs = episodes[ward]
        raised = level_rank(level) >= RAISED
        open_run = runs[-1] if runs and runs[-1][1] is None else None
        if raised and open_run is None:
            runs.append([emitted, None, level])
        elif raised and open_run is not None and level_rank(level) > level_rank(open_run[2]):
            open_run[2] = level
        elif not raised and open_run is not None:
            open_run[1] = emitted
    samples: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    taken: set[tuple[str, int]] = set()
    for ward, at in acknowledgements:
        for start, end, level in episodes.get(ward, ()):
            if start <= at and (end is None or at < end) and (ward, start) not in taken:
                limit = rules.acknowledge_seconds.get(level)
                if limit is not None:
                    taken.add((ward, start))
                    samples[ward].append((at, (at - start) / 1000, float(limit)))
                break
    return samples


def sla_report(cases: Iterable[Mapping[str, Any]], acknowledged: Mapping[str, Sequence[
        tuple[int, float, float]]], rules: SlaRules, month: str, kecamatan: str | None
               ) -> list[dict[str, Any]]:
    """One row per agency (and the command center's acknowledgement row)."""
    start, end = month_bounds(month)
    clocks: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: {"dispatch": [], "on_scene": []})
    counts: dict[str, int] = defaultdict(int)
    for case in cases:
        reported = case["reported_at_ms"]
        if reported is None or not start <= reported < end \
                or not in_scope(case["ward_code"], kecamatan):
            continue
        agency = case["assigned_agency"] or UNASSIGNED
        counts[agency] += 1
        for clock, column in (("dispatch", "dispatched_at_ms"), ("on_scene", "on_scene_at_ms")):
            done = case[column]
            limit = rules.limit_seconds(clock, case["category"], case["assigned_agency"])
            if done is not None and limit is not None:
                clocks[agency][clock].append((max(0, done - reported) / 1000, float(limit)))
    rows = [{"agency": agency, "cases": counts[agency],
             "dispatch": _kpi_json(clocks[agency]["dispatch"]),
             "on_scene": _kpi_json(clocks[agency]["on_scene"]),
             "acknowledge": None} for agency in sorted(counts)]
    ack = [(waited, limit) for ward, samples in acknowledged.items() if in_scope(ward, kecamatan)
           for at, waited, limit in samples if start <= at < end]
    rows.append({"agency": COMMAND_CENTER, "cases": None, "dispatch": None, "on_scene": None,
                 "acknowledge": _kpi_json(ack)})
    return rows


def incidents_report(cases: Iterable[Mapping[str, Any]], month: str, kecamatan: str | None
                     ) -> list[dict[str, Any]]:
    """Cases reported in the month per kelurahan and category, kelurahan then category."""
    start, end = month_bounds(month)
    counted: dict[tuple[str, str], int] = defaultdict(int)
    for case in cases:
        reported = case["reported_at_ms"]
        if reported is not None and start <= reported < end \
                and in_scope(case["ward_code"], kecamatan):
            counted[(case["ward_code"], case["category"])] += 1
    return [{"kelurahan_code": ward, "category": category, "incidents": n}
            for (ward, category), n in sorted(counted.items())]


def _day(millis: int) -> str:
    return from_ms(millis).astimezone(WIB).strftime("%Y-%m-%d")


def assets_report(situations: Iterable[Sequence[Any]], month: str, kecamatan: str | None
                  ) -> dict[str, list[dict[str, Any]]]:
    """From kelurahan situation rows (ward, emitted_at_ms, lamps_out, containers_full): the
    daily highest per kelurahan, and the daily sum of those over the scope."""
    start, end = month_bounds(month)
    daily: dict[tuple[str, str], list[int]] = {}
    for ward, emitted, lamps_out, containers_full in situations:
        if not start <= emitted < end or not in_scope(ward, kecamatan):
            continue
        key = (_day(emitted), ward)
        held = daily.setdefault(key, [lamps_out, containers_full])
        held[0], held[1] = max(held[0], lamps_out), max(held[1], containers_full)
    per_ward: list[dict[str, Any]] = [
        {"day": day, "kelurahan_code": ward, "lamps_out_max": v[0], "containers_full_max": v[1]}
        for (day, ward), v in sorted(daily.items())]
    totals: dict[str, list[int]] = {}
    for (day, _), (lamps, containers) in sorted(daily.items()):
        total = totals.setdefault(day, [0, 0])
        total[0] += lamps
        total[1] += containers
    return {"per_kelurahan": per_ward,
            "per_day": [{"day": day, "lamps_out": v[0], "containers_full": v[1]}
                        for day, v in sorted(totals.items())]}


def latest_indicators(indicators: Iterable[Mapping[str, Any]]
                      ) -> dict[tuple[str, str], Mapping[str, Any]]:
    """(scope code, period) -> its latest indicator: the newest `computed_at_ms`, then the
    later record (the compacted topic keeps the last one written)."""
    latest: dict[tuple[str, str], Mapping[str, Any]] = {}
    for row in indicators:
        key = (row["scope_code"], row["period"])
        held = latest.get(key)
        if held is None or (row["computed_at_ms"], row["src_partition"], row["src_offset"]) >= (
                held["computed_at_ms"], held["src_partition"], held["src_offset"]):
            latest[key] = row
    return latest


def unemployment_report(indicators: Iterable[Mapping[str, Any]], month: str,
                        kecamatan: str | None) -> list[dict[str, Any]]:
    """Per RW and kelurahan: the month's rate, the month before's, and the change in
    percentage points (None where either month has no rate). A small cell keeps its rate and
    count None and names its rule in `withheld` (`previous_withheld` for the month before),
    so a page or a CSV shows it withheld, never as 0 (docs/smart-village.md, 'Small cells')."""
    before = previous_month(month)
    latest = latest_indicators(indicators)
    rows = []
    for (code, period), row in sorted(latest.items()):
        if period != month or row["scope_level"] not in ("RW", "KELURAHAN") \
                or not in_scope(code, kecamatan):
            continue
        earlier = latest.get((code, before))
        rate = row["unemployment_rate"]
        previous_rate = earlier["unemployment_rate"] if earlier is not None else None
        rows.append({
            "scope_code": code, "scope_level": row["scope_level"], "month": month,
            "unemployment_rate": rate, "unemployed": row["unemployed"],
            "labour_force": row["labour_force"], "completeness": row["completeness"],
            "previous_rate": previous_rate,
            "withheld": row["withheld"],
            "previous_withheld": earlier["withheld"] if earlier is not None else None,
            "change_points": None if rate is None or previous_rate is None
            else round((rate - previous_rate) * 100, 4),
            "synthetic": bool(row["synthetic"]),
        })
    return rows


def csv_rows(report: Mapping[str, Any], section: str) -> tuple[list[str], list[list[Any]]]:
    """A section of the report as CSV header and rows."""
    if section == "sla":
        header = ["agency", "cases", "clock", "count", "within", "share_within", "median_s",
                  "p90_s"]
        rows = []
        for row in report["sla"]:
            for clock in ("acknowledge", "dispatch", "on_scene"):
                figure = row[clock]
                if figure is not None:
                    rows.append([row["agency"], row["cases"], clock, figure["count"],
                                 figure["within"], figure["share_within"], figure["median_s"],
                                 figure["p90_s"]])
        return header, rows
    if section == "incidents":
        return (["kelurahan_code", "category", "incidents"],
                [[r["kelurahan_code"], r["category"], r["incidents"]]
                 for r in report["incidents"]])
    if section == "assets":
        return (["day", "kelurahan_code", "lamps_out_max", "containers_full_max"],
                [[r["day"], r["kelurahan_code"], r["lamps_out_max"], r["containers_full_max"]]
                 for r in report["assets"]["per_kelurahan"]])
    if section == "unemployment":
        names = ["scope_code", "scope_level", "month", "unemployment_rate", "previous_rate",
                 "change_points", "unemployed", "labour_force", "completeness", "synthetic",
                 "withheld", "previous_withheld"]
        return names, [[r[name] for name in names] for r in report["unemployment"]]
    raise ReportError("section must be sla, incidents, assets or unemployment")
