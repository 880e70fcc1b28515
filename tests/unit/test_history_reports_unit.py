"""The pure parts of the history store (issue 21): months in WIB, scopes, acknowledgement
episodes, the rows of a record, and the time parameter of the board's history routes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from processors import reports
from processors.history_rows import Position, indicator_row, record_json, situation_row
from processors.neighbourhood import Tally, indicator
from processors.state import to_ms
from processors.thresholds import SlaRules
from streams.history_web import QueryError, day_start, parse_time

pytestmark = pytest.mark.unit


def test_months_are_calendar_months_in_wib() -> None:
    start, end = reports.month_bounds("2026-11")
    assert start == to_ms(datetime(2026, 10, 31, 17, 0, tzinfo=UTC))
    assert end == to_ms(datetime(2026, 11, 30, 17, 0, tzinfo=UTC))
    assert reports.month_bounds("2026-12")[1] == to_ms(datetime(2026, 12, 31, 17, tzinfo=UTC))
    assert (reports.previous_month("2026-01"), reports.previous_month("2026-11")) == (
        "2025-12", "2026-10")
    with pytest.raises(reports.ReportError, match="month must be YYYY-MM"):
        reports.month_bounds("2026-13")


def test_a_scope_is_the_city_or_one_kecamatan_and_what_lies_inside_it() -> None:
    assert reports.in_scope("36.72.01.1001.003", None)
    assert reports.in_scope("36.72.01.1001", "36.72.01")
    assert reports.in_scope("36.72.01", "36.72.01")
    assert not reports.in_scope("36.72.010.1001", "36.72.01")
    assert not reports.in_scope(None, "36.72.01")


def test_each_raised_episode_gives_one_acknowledgement_sample_against_its_highest_level(
) -> None:
    rules = SlaRules()
    situations = [("W", 0, "NORMAL"), ("W", 1_000, "ALERT"), ("W", 5_000, "CRITICAL"),
                  ("W", 9_000, "NORMAL"), ("W", 20_000, "ALERT"), ("V", 0, "WATCH")]
    acknowledgements = [("W", 7_000), ("W", 8_000), ("W", 9_500), ("W", 30_000), ("V", 10)]
    samples = reports.acknowledge_samples(situations, acknowledgements, rules)
    assert dict(samples) == {"W": [
        (7_000, 6.0, float(rules.acknowledge_seconds["CRITICAL"])),
        (30_000, 10.0, float(rules.acknowledge_seconds["ALERT"]))]}


def test_a_situation_row_keeps_the_record_as_the_board_serves_it() -> None:
    emitted = datetime(2026, 11, 23, 8, 15, 0, 5000, tzinfo=UTC)
    record: dict[str, Any] = {
              "scope": "KELURAHAN", "scope_code": "36.72.01.1001", "scope_name": "Cibeber",
              "kecamatan_code": "36.72.01", "kind": "CHANGE", "level": "ALERT",
              "reasons": ["3 flood reports in 20 min"],
              "emitted_at": emitted,
              "sequence": 4, "events_folded": 2, "caused_by_event_id": "e-1",
              "open_incidents": 3, "new_incidents_in_window": 3, "lamps_total": 10,
              "lamps_out": 1, "containers_total": 4, "containers_full": 2,
              "containers_fire_risk": 0, "containers_overdue": 0,
              "mean_dispatch_seconds": None, "mean_on_scene_seconds": None, "sla_overdue": 0,
              "acknowledged_by": None, "acknowledged_at": None}
    row = situation_row(record, Position("city.situations.v1", 2, 41))
    assert (row["src_topic"], row["src_partition"], row["src_offset"]) == (
        "city.situations.v1", 2, 41)
    assert row["emitted_at_ms"] == to_ms(emitted)
    assert json.loads(row["reasons"]) == ["3 flood reports in 20 min"]
    body = json.loads(row["body"])
    assert list(body) == list(record)
    assert body["emitted_at"] == "2026-11-23T08:15:00.005Z"
    assert record_json({"t": None}) == '{"t":null}'


def test_the_moment_is_epoch_ms_or_iso_and_a_time_without_zone_is_wib() -> None:
    now = datetime(2026, 11, 23, 9, tzinfo=UTC)
    assert parse_time(None, now) == now
    assert parse_time("1700000000000", now) == datetime.fromtimestamp(1_700_000_000, UTC)
    assert parse_time("2026-11-23T14:05", now) == datetime(2026, 11, 23, 7, 5, tzinfo=UTC)
    assert parse_time("2026-11-23T07:05:00Z", now) == datetime(2026, 11, 23, 7, 5, tzinfo=UTC)
    with pytest.raises(QueryError, match="at must be ISO 8601"):
        parse_time("yesterday", now)
    assert day_start("2026-11-01", "from") == to_ms(datetime(2026, 10, 31, 17, tzinfo=UTC))


def test_a_withheld_cell_is_a_withheld_row_and_report_line_never_a_zero() -> None:
    # docs/smart-village.md, "Small cells": the row keeps unemployed and the rate null and the
    # rule; the month over month line and its CSV say withheld, with no change computed
    at = datetime(2026, 11, 1, tzinfo=UTC)
    records = [indicator("36.72.01.1001.004", "RW", "2026-10", Tally(3, 3, 3, 0, 150, 70, 5),
                         at, True),
               indicator("36.72.01.1001.004", "RW", "2026-11", Tally(3, 3, 3, 0, 150, 70, 1),
                         at, True, "SMALL_COUNT")]
    rows = [indicator_row(r, Position("city.neighbourhood.indicators.v1", 0, n))
            for n, r in enumerate(records)]
    assert [(r["unemployed"], r["unemployment_rate"], r["withheld"]) for r in rows] == [
        (5, 5 / 70, None), (None, None, "SMALL_COUNT")]
    (line,) = reports.unemployment_report(rows, "2026-11", None)
    assert line == {"scope_code": "36.72.01.1001.004", "scope_level": "RW", "month": "2026-11",
                    "unemployment_rate": None, "unemployed": None, "labour_force": 70,
                    "completeness": 1.0, "previous_rate": 5 / 70, "withheld": "SMALL_COUNT",
                    "previous_withheld": None, "change_points": None, "synthetic": True}
    header, csv = reports.csv_rows({"unemployment": [line]}, "unemployment")
    assert dict(zip(header, csv[0], strict=True)) | {} == {
        "scope_code": "36.72.01.1001.004", "scope_level": "RW", "month": "2026-11",
        "unemployment_rate": None, "previous_rate": 5 / 70, "change_points": None,
        "unemployed": None, "labour_force": 70, "completeness": 1.0, "synthetic": True,
        "withheld": "SMALL_COUNT", "previous_withheld": None}
