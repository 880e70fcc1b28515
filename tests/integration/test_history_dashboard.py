"""The Grafana history dashboard's SQL on a real PostgreSQL server (issue 21, part 3): every
panel's query runs as Grafana would send it (its `$__from`/`$__to` replaced by the range in
epoch ms) on a store holding the SYNTHETIC history, and gives the monthly report's figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.history_feed import build
from cityops.rt_simulator import previous_month
from processors import reports
from processors.history_rows import INDICATORS, Position, row_of
from processors.thresholds import SlaRules
from schemas.codec import decode
from streams.history_store import HistoryStore
from streams.history_web import WIB
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "history.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "history.yml"
START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
MONTH = START.astimezone(WIB).strftime("%Y-%m")


def panels() -> dict[int, dict[str, Any]]:
    board = json.loads(DASHBOARD.read_text())
    return {panel["id"]: panel for panel in board["panels"]}


@pytest.fixture
def postgres_store(postgres: str, tmp_path: Path) -> Iterator[HistoryStore]:
    import uuid

    import psycopg

    name = f"history_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    store = HistoryStore(f"{postgres}/{name}")
    store.create_tables()
    feed = build(START, 2.0, seed=33, rt_month=previous_month(START + timedelta(days=20)))
    offsets: dict[str, int] = {}
    rows = []
    for spec, _, value in feed.records:
        offset = offsets.get(spec.name, 0)
        offsets[spec.name] = offset + 1
        decoded = decode(value)
        rows.append(row_of(decoded.full_name, decoded.record, Position(spec.name, 0, offset)))
    store.write(rows)
    yield store
    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run_panel(store: HistoryStore, panel: dict[str, Any], start_ms: int, end_ms: int
              ) -> list[tuple[Any, ...]]:
    [target] = panel["targets"]
    sql = target["rawSql"].replace("$__from", str(start_ms)).replace("$__to", str(end_ms))
    return store.query(sql)


def test_the_data_source_and_every_panel_use_the_history_store() -> None:
    import yaml

    [source] = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert (source["uid"], source["type"], source["url"], source["user"]) == (
        "cityops-history", "grafana-postgresql-datasource", "postgres:5432", "grafana")
    assert source["jsonData"]["database"] == "cityops"
    for panel in panels().values():
        assert panel["datasource"] == {"type": "grafana-postgresql-datasource",
                                       "uid": "cityops-history"}
        assert [t["datasource"] for t in panel["targets"]] == [panel["datasource"]]


def test_every_panel_gives_the_reports_figures(postgres_store: HistoryStore) -> None:
    start, end = reports.month_bounds(MONTH)
    report = postgres_store.monthly_report(MONTH, None, SlaRules())
    found = panels()
    lamps = run_panel(postgres_store, found[1], start, end)
    bins = run_panel(postgres_store, found[2], start, end)
    days = [r["day"] for r in report["assets"]["per_day"]]
    assert len(days) >= 1
    assert [(t.astimezone(WIB).strftime("%Y-%m-%d"), int(n)) for t, n in lamps] == [
        (r["day"], r["lamps_out"]) for r in report["assets"]["per_day"]]
    assert [(t.astimezone(WIB).strftime("%Y-%m-%d"), int(n)) for t, n in bins] == [
        (r["day"], r["containers_full"]) for r in report["assets"]["per_day"]]

    incidents = run_panel(postgres_store, found[3], start, end)
    assert [(w, c, int(n)) for w, c, n in incidents] == [
        (r["kelurahan_code"], r["category"], r["incidents"]) for r in report["incidents"]]
    assert incidents

    dispatch = run_panel(postgres_store, found[4], start, end)
    expected = [(r["agency"], r["dispatch"]["count"], r["dispatch"]["median_s"],
                 r["dispatch"]["p90_s"]) for r in report["sla"]
                if r["dispatch"] is not None and r["dispatch"]["count"]]
    assert [(a, int(n), float(m), float(p)) for a, n, m, p in dispatch] == expected
    assert expected

    changes = run_panel(postgres_store, found[5], start, end)
    wards = {code for (code,) in postgres_store.query(
        "SELECT DISTINCT scope_code FROM situations WHERE scope = 'KELURAHAN'")}
    expected_changes = sum(
        1 for code in wards for c in postgres_store.level_changes(code, start, end - 1)
        if not c["opening"])
    assert len(changes) == min(500, expected_changes) > 0

    unemployment = run_panel(postgres_store, found[6], start, end)
    names = INDICATORS.column_names
    latest = reports.latest_indicators(dict(zip(names, row, strict=True)) for row in
                                       postgres_store.query(
                                           f"SELECT {', '.join(names)} FROM indicators"))
    assert sorted((p, c, r) for p, c, r, *_ in unemployment) == sorted(
        (period, code, row["unemployment_rate"]) for (code, period), row in latest.items()
        if row["scope_level"] == "KELURAHAN")
    assert unemployment
