"""The monthly report's figures equal an independent computation from the topics (issue 21,
part 3), on SQLite and on a real PostgreSQL server: the SYNTHETIC history goes to real topics,
the sink fills the store, the report is computed from the store; the test reads the same topics
back and computes every figure itself, in its own code, from the records.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest

from bench.history_feed import build, publish, read_topics, sink_into
from processors.operations import kpi
from processors.thresholds import SlaRules
from schemas.codec import decode
from streams.history_store import HistoryStore
from streams.history_web import WIB, HistoryApi
from tests.integration.test_history_sink import sink_topics
from topics import catalog

pytestmark = pytest.mark.integration
__all__ = ["sink_topics"]  # the fixture, imported to be used here

RANK = {"NORMAL": 1, "WATCH": 2, "ALERT": 3, "CRITICAL": 4}


def _records(bootstrap: str, spec: Any) -> list[dict[str, Any]]:
    return [decode(value).record for _, _, _, value in
            read_topics(bootstrap, [spec])[spec.name] if value is not None]


def _month(moment: datetime) -> str:
    return moment.astimezone(WIB).strftime("%Y-%m")


def _in_month(moment: datetime, month: str) -> bool:
    return _month(moment) == month


def _figure(samples: list[tuple[float, float]]) -> dict[str, Any]:
    figure = kpi(samples)
    return {"count": figure.count, "within": figure.within,
            "share_within": figure.share_within, "median_s": figure.median_s,
            "p90_s": figure.p90_s}


def independent_report(bootstrap: str, month: str, kecamatan: str | None,
                       rules: SlaRules) -> dict[str, Any]:
    """Every figure of the report, from the topics' records."""
    inside = (lambda code: True) if kecamatan is None else (
        lambda code: code.startswith(kecamatan + "."))
    events = _records(bootstrap, catalog.INCIDENTS_ENRICHED)
    actions = _records(bootstrap, catalog.OPERATOR_ACTIONS)
    situations = _records(bootstrap, catalog.SITUATIONS)
    indicators = _records(bootstrap, catalog.NEIGHBOURHOOD_INDICATORS)

    # cases: one per (ward, source, incident id)
    cases: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in sorted(events, key=lambda r: r["event"]["occurred_at"]):
        event = record["event"]
        key = (record["ward_code"], event["source_system"], event["incident_id"])
        case = cases.setdefault(key, {"ward": key[0], "category": event["category"],
                                      "first": event["occurred_at"], "reported": None,
                                      "dispatched": [], "on_scene": None, "agency": None})
        if event["status"] == "REPORTED" and case["reported"] is None:
            case["reported"] = event["occurred_at"]
        if event["status"] in ("DISPATCHED", "ON_SCENE"):
            case["dispatched"].append(event["occurred_at"])
        if event["status"] == "ON_SCENE" and case["on_scene"] is None:
            case["on_scene"] = event["occurred_at"]
    for action in sorted(actions, key=lambda a: a["occurred_at"]):
        target = cases.get((action["ward_code"], action["incident_source"] or "",
                            action["incident_id"] or ""))
        if target is not None and action["action"] == "ASSIGN":
            target["agency"] = action["agency"]
            target["dispatched"].append(action["occurred_at"])
    clocks: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: {"dispatch": [], "on_scene": []})
    counts: dict[str, int] = defaultdict(int)
    incidents: dict[tuple[str, str], int] = defaultdict(int)
    for case in cases.values():
        reported = case["reported"] or case["first"]
        if not _in_month(reported, month) or not inside(case["ward"]):
            continue
        agency = case["agency"] or "UNASSIGNED"
        counts[agency] += 1
        incidents[(case["ward"], case["category"])] += 1
        for clock, done in (("dispatch", min(case["dispatched"], default=None)),
                            ("on_scene", case["on_scene"])):
            limit = rules.limit_seconds(clock, case["category"], case["agency"])
            if done is not None and limit is not None:
                clocks[agency][clock].append(
                    (max(0.0, (done - reported).total_seconds()), float(limit)))
    sla = [{"agency": a, "cases": counts[a], "dispatch": _figure(clocks[a]["dispatch"]),
            "on_scene": _figure(clocks[a]["on_scene"]), "acknowledge": None}
           for a in sorted(counts)]

    # acknowledgements: per ward, raised episodes from the situations in topic order
    episodes: dict[str, list[list[Any]]] = defaultdict(list)
    for s in situations:
        if s["scope"] != "KELURAHAN":
            continue
        runs = episodes[s["scope_code"]]
        is_open = bool(runs) and runs[-1][1] is None
        if RANK.get(s["level"], 0) >= 3:
            if not is_open:
                runs.append([s["emitted_at"], None, s["level"]])
            elif RANK[s["level"]] > RANK[runs[-1][2]]:
                runs[-1][2] = s["level"]
        elif is_open:
            runs[-1][1] = s["emitted_at"]
    waited: list[tuple[float, float]] = []
    used: set[tuple[str, datetime]] = set()
    for action in sorted(actions, key=lambda a: a["occurred_at"]):
        if action["action"] != "ACKNOWLEDGE":
            continue
        at, ward = action["occurred_at"], action["ward_code"]
        for start, end, level in episodes.get(ward, []):
            if start <= at and (end is None or at < end):
                if (ward, start) not in used:
                    used.add((ward, start))
                    if _in_month(at, month) and inside(ward):
                        waited.append(((at - start).total_seconds(),
                                       float(rules.acknowledge_seconds[level])))
                break
    sla.append({"agency": "COMMAND_CENTER", "cases": None, "dispatch": None, "on_scene": None,
                "acknowledge": _figure(waited)})

    # lamps out / bins full: each day's highest per kelurahan, summed per day
    daily: dict[tuple[str, str], tuple[int, int]] = {}
    for s in situations:
        if s["scope"] != "KELURAHAN" or not _in_month(s["emitted_at"], month) \
                or not inside(s["scope_code"]):
            continue
        day_key = (s["emitted_at"].astimezone(WIB).strftime("%Y-%m-%d"), s["scope_code"])
        lamps, bins = daily.get(day_key, (0, 0))
        daily[day_key] = (max(lamps, s["lamps_out"]), max(bins, s["containers_full"]))
    per_day: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (day, _), (lamps, bins) in daily.items():
        per_day[day][0] += lamps
        per_day[day][1] += bins

    # unemployment: the last indicator per key (topic order) for the month and the one before
    year, number = map(int, month.split("-"))
    before = f"{year - (number == 1):04d}-{(number - 2) % 12 + 1:02d}"
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for record in sorted(indicators, key=lambda r: r["computed_at"]):
        last[(record["scope_code"], record["period"])] = record
    unemployment = []
    for (code, period), record in sorted(last.items()):
        if period != month or record["scope_level"] not in ("RW", "KELURAHAN") \
                or not inside(code):
            continue
        earlier = last.get((code, before))
        rate = record["unemployment_rate"]
        old = earlier["unemployment_rate"] if earlier else None
        unemployment.append((code, rate, old, None if rate is None or old is None
                             else round((rate - old) * 100, 4), record["withheld"],
                             earlier["withheld"] if earlier else None,
                             record["unemployed"]))
    return {
        "sla": sla,
        "incidents": [{"kelurahan_code": w, "category": c, "incidents": n}
                      for (w, c), n in sorted(incidents.items())],
        "per_day": [{"day": d, "lamps_out": v[0], "containers_full": v[1]}
                    for d, v in sorted(per_day.items())],
        "unemployment": unemployment,
    }


def test_report_figures_equal_an_independent_computation_from_the_topics(
        sink_topics: str, history_url: str) -> None:
    # two hours inside one WIB month, and the RT month before it and the one before that
    start = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    month = _month(start)
    feed = build(start, 2.0, seed=33, rt_month=month)
    publish(sink_topics, feed)
    store = sink_into(sink_topics, history_url)
    rules = SlaRules()
    api = HistoryApi(store, lambda: rules)
    checked_unemployment = 0
    for kecamatan in (None, "36.72.01"):
        report = api.report({"month": month, **({"kecamatan": kecamatan} if kecamatan else {})})
        expected = independent_report(sink_topics, month, kecamatan, rules)
        assert report["sla"] == expected["sla"]
        assert report["incidents"] == expected["incidents"]
        assert report["assets"]["per_day"] == expected["per_day"]
        assert [(r["scope_code"], r["unemployment_rate"], r["previous_rate"],
                 r["change_points"], r["withheld"], r["previous_withheld"], r["unemployed"])
                for r in report["unemployment"]] == expected["unemployment"]
        # a small cell reads withheld with no rate and no count, never 0 (docs/smart-village.md)
        assert all(row[1] is None and row[6] is None
                   for row in expected["unemployment"] if row[4] is not None)
        checked_unemployment += len(expected["unemployment"])
        ack = report["sla"][-1]["acknowledge"]
        assert ack["count"] > 0 or kecamatan is not None
    city = api.report({"month": month})
    assert sum(r["cases"] for r in city["sla"][:-1]) > 0
    assert any(r["dispatch"]["count"] for r in city["sla"][:-1])
    assert checked_unemployment > 0
    assert any(r["change_points"] is not None for r in city["unemployment"])
    # the CSV download holds the same figures
    name, text = api.report_csv({"month": month, "section": "incidents"})
    assert name == f"cityops-incidents-{month}-36.72.csv"
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["kelurahan_code", "category", "incidents"]
    assert [[r["kelurahan_code"], r["category"], str(r["incidents"])]
            for r in city["incidents"]] == rows[1:]


def test_a_month_with_nothing_stored_reports_zeros(history_url: str) -> None:
    store = HistoryStore(history_url)
    store.create_tables()
    report = HistoryApi(store).report({"month": "2020-01"})
    assert report["sla"] == [{"agency": "COMMAND_CENTER", "cases": None, "dispatch": None,
                              "on_scene": None, "acknowledge": {
                                  "count": 0, "within": 0, "share_within": None,
                                  "median_s": None, "p90_s": None}}]
    assert (report["incidents"], report["assets"]["per_day"], report["unemployment"]) == (
        [], [], [])
