"""The history store's queries on SQLite and on a real PostgreSQL server (issue 21): the board at
a past moment equals the situations read in order up to it, a kelurahan's timeline, cases with
their clocks and outcome, the case search, retention and its audit.

The records are the SYNTHETIC history of bench/history_feed.py (the worker's own code over the
simulated city), stored at the positions they would have on one partition per topic; the sink
on the real broker is tested in test_history_sink.py and the board in tests/e2e.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bench.history_feed import HistoryFeed, board_at, build
from cityops.rt_simulator import previous_month
from processors.history_rows import (
    INCIDENT_EVENTS,
    INDICATORS,
    OPERATOR_ACTIONS,
    SITUATIONS,
    Position,
    row_of,
)
from processors.state import to_ms
from processors.thresholds import SlaRules
from schemas.codec import decode
from streams.history_store import DAY_MS, HistoryError, HistoryStore, fold_cases, retention_days
from streams.history_web import HistoryApi, QueryError
from streams.web import situation_json

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SITUATIONS_TOPIC = "city.situations.v1"


@pytest.fixture(scope="module")
def feed() -> HistoryFeed:
    return build(NOW - timedelta(hours=3), 2.0, rt_month=previous_month(NOW))


def _positions(feed: HistoryFeed) -> Iterator[tuple[str, int, int, bytes]]:
    offsets: dict[str, int] = {}
    for spec, _, value in feed.records:
        offset = offsets.get(spec.name, 0)
        offsets[spec.name] = offset + 1
        yield spec.name, 0, offset, value


@pytest.fixture
def store(history_url: str, feed: HistoryFeed) -> HistoryStore:
    store = HistoryStore(history_url)
    store.create_tables()
    rows = []
    for topic, partition, offset, value in _positions(feed):
        decoded = decode(value)
        rows.append(row_of(decoded.full_name, decoded.record,
                           Position(topic, partition, offset)))
    assert store.write(rows) == len(rows)
    assert store.write(rows) == 0  # the replay: every key is there already
    return store


def test_the_board_at_a_moment_equals_the_situations_read_up_to_it(
        store: HistoryStore, feed: HistoryFeed) -> None:
    situations = [p for p in _positions(feed) if p[0] == SITUATIONS_TOPIC]
    assert feed.start is not None and feed.end is not None
    moments = [feed.start + timedelta(minutes=m) for m in (0, 1, 7, 33, 61, 90, 119)]
    moments += [feed.end + timedelta(hours=1)]
    non_empty = 0
    for moment in moments:
        expected = {code: situation_json(record) for code, record in
                    board_at(situations, to_ms(moment)).items()}
        found = {s["scope_code"]: s for s in store.situations_at(to_ms(moment))}
        assert found == expected, moment
        non_empty += bool(found)
    assert non_empty >= 6


def test_the_api_serves_the_board_body_at_a_moment(store: HistoryStore, feed: HistoryFeed
                                                   ) -> None:
    assert feed.start is not None
    moment = feed.start + timedelta(minutes=45)
    body = HistoryApi(store).situations_at(moment)
    expected = board_at([p for p in _positions(feed) if p[0] == SITUATIONS_TOPIC],
                        to_ms(moment))
    assert body["at"] == situation_json({"t": moment})["t"]
    assert body["history"] is True and body["ready"] is True
    assert [s["scope_code"] for s in body["kelurahan"]] == [
        s["scope_code"] for s in sorted(
            expected.values(), key=lambda s: (-_rank(s["level"]), s["scope_code"]))]


def _rank(level: str) -> int:
    return {"CRITICAL": 4, "ALERT": 3, "WATCH": 2, "NORMAL": 1}.get(level, 0)


def test_a_timeline_lists_each_level_change_with_its_reasons(
        store: HistoryStore, feed: HistoryFeed) -> None:
    assert feed.end is not None
    situations = [decode(v).record for t, _, _, v in _positions(feed) if t == SITUATIONS_TOPIC]
    busiest = max({s["scope_code"] for s in situations},
                  key=lambda code: len({s["level"] for s in situations
                                        if s["scope_code"] == code}))
    mine = sorted((s for s in situations if s["scope_code"] == busiest),
                  key=lambda s: s["sequence"])  # stable: topic order within a sequence
    expected, previous = [], None
    for s in mine:
        if s["level"] != previous:
            expected.append((to_ms(s["emitted_at"]), s["sequence"], s["level"], s["reasons"]))
            previous = s["level"]
    found = store.level_changes(busiest, 0, to_ms(feed.end))
    assert [(c["at_ms"], c["sequence"], c["level"], c["reasons"]) for c in found] == expected
    assert len(expected) >= 2
    # a period starting later opens with the level it started with
    middle = expected[1][0] + 1
    later = store.level_changes(busiest, middle, to_ms(feed.end))
    assert later[0]["opening"] is True and later[0]["level"] == expected[1][2]
    assert [c["level"] for c in later[1:]] == [e[2] for e in expected[2:]]


def test_cases_carry_their_clocks_assignment_and_outcome(store: HistoryStore,
                                                        feed: HistoryFeed) -> None:
    events = [decode(v).record for t, _, _, v in _positions(feed)
              if t == "city.incidents.enriched.v1"]
    actions = [a for a in (decode(v).record for t, _, _, v in _positions(feed)
                           if t == "city.operator.actions.v1") if a["incident_id"] is not None]
    cases = store.cases()
    assert len(cases) == len({(e["ward_code"], e["event"]["source_system"],
                               e["event"]["incident_id"]) for e in events}) > 0
    by_key = {(c["ward_code"], c["source_system"], c["incident_id"]): c for c in cases}
    for action in actions:
        case = by_key[(action["ward_code"], action["incident_source"], action["incident_id"])]
        if action["action"] == "ASSIGN":
            assert case["assigned_agency"] == action["agency"]
        if action["action"] == "CLOSE":
            assert case["closed_by"] == "sari"
            assert case["outcome"] in ("CLOSED", "RESOLVED", "CANCELLED")
    for event in events:
        key = (event["ward_code"], event["event"]["source_system"], event["event"]["incident_id"])
        case = by_key[key]
        if event["event"]["status"] == "REPORTED":
            assert case["reported_at_ms"] <= to_ms(event["event"]["occurred_at"])
        if event["event"]["status"] == "RESOLVED":
            assert case["outcome"] == "RESOLVED"
            assert case["resolved_at_ms"] <= to_ms(event["event"]["occurred_at"])


def test_the_case_search_filters_by_kelurahan_agency_category_and_period(
        store: HistoryStore) -> None:
    api = HistoryApi(store)
    every = store.cases()
    closed = [c for c in every if c["outcome"] != "OPEN"]
    assert api.cases({})["count"] == len(closed) > 0
    assert api.cases({"outcome": "all"})["count"] == len(every)
    sample = next(c for c in every if c["assigned_agency"] is not None)
    query = {"kelurahan": sample["ward_code"], "agency": sample["assigned_agency"],
             "category": sample["category"], "outcome": "all"}
    found = api.cases(query)["cases"]
    assert sample["incident_id"] in {c["incident_id"] for c in found}
    assert all((c["ward_code"], c["assigned_agency"], c["category"])
               == (query["kelurahan"], query["agency"], query["category"]) for c in found)
    assert api.cases({"from": "2030-01-01", "outcome": "all"})["count"] == 0
    rules = SlaRules()
    for case in api.cases({"outcome": "all"})["cases"]:
        limit = rules.limit_seconds("dispatch", case["category"], case["assigned_agency"])
        taken = case["dispatched_after_s"]
        assert case["sla"]["dispatch"] == {
            "limit_s": limit, "within": None if taken is None else taken <= limit}
    with pytest.raises(QueryError, match="agency must be one of"):
        api.cases({"agency": "NAVY"})
    with pytest.raises(QueryError, match="from must be YYYY-MM-DD"):
        api.cases({"from": "yesterday"})


def test_purge_deletes_what_is_past_its_retention_blanks_old_notes_and_audits_itself(
        store: HistoryStore, feed: HistoryFeed) -> None:
    notes = store.query("SELECT COUNT(*) FROM operator_actions WHERE text IS NOT NULL")[0][0]
    situations = store.count(SITUATIONS)
    assert notes > 0
    assert feed.end is not None
    # 91 days on: notes (90 days) are blanked, everything else is kept
    later = to_ms(feed.end) + 91 * DAY_MS
    audit = store.purge(later)
    by_table = {row["table_name"]: row for row in audit}
    assert by_table["operator_actions.text"]["rows_purged"] == notes
    assert by_table["situations"]["rows_purged"] == 0
    assert store.query("SELECT COUNT(*) FROM operator_actions WHERE text IS NOT NULL")[0][0] == 0
    assert store.count(OPERATOR_ACTIONS) > 0
    stored = store.query("SELECT table_name, rows_purged, cutoff_ms, purged_at_ms FROM purges")
    assert sorted(stored) == sorted((r["table_name"], r["rows_purged"], r["cutoff_ms"], later)
                                    for r in audit)
    # with situations kept 30 days, a purge 31 days on deletes them all
    audit = store.purge(to_ms(feed.end) + 31 * DAY_MS, retention={"situations": 30})
    assert {r["table_name"]: r["rows_purged"] for r in audit}["situations"] == situations
    assert store.count(SITUATIONS) == 0
    assert store.count(INCIDENT_EVENTS) > 0


def test_every_table_has_a_retention_setting_and_the_environment_overrides_it() -> None:
    days = retention_days({})
    assert days == {"situations": 400, "incident_events": 400, "operator_actions": 1825,
                    "rt_validations": 1825, "indicators": 3650, "rejected_records": 30,
                    "purges": 3650, "notes": 90}
    assert retention_days({"CITYOPS_HISTORY_RETENTION": "notes=30, situations=60"})[
        "notes"] == 30
    with pytest.raises(HistoryError, match="is not TABLE=DAYS"):
        retention_days({"CITYOPS_HISTORY_RETENTION": "cases=5"})


def test_fold_cases_takes_first_stage_times_and_counts_an_assignment_as_dispatch() -> None:
    events: list[tuple[Any, ...]] = [
        ("W", "K", "CALL_CENTER_112", "I-1", "FLOOD", "SEVERE", "REPORTED", "003", 1_000),
        ("W", "K", "CALL_CENTER_112", "I-1", "FLOOD", "SEVERE", "REPORTED", "003", 1_500),
        ("W", "K", "CALL_CENTER_112", "I-1", "FLOOD", "SEVERE", "ON_SCENE", "003", 9_000),
        ("W", "K", "CALL_CENTER_112", "I-1", "FLOOD", "SEVERE", "RESOLVED", "003", 20_000),
    ]
    actions = [("W", "CALL_CENTER_112", "I-1", "ASSIGN", "BPBD", "rina", 4_000)]
    (case,) = fold_cases(events, actions)
    assert json.loads(json.dumps(case)) == {
        "ward_code": "W", "kecamatan_code": "K", "source_system": "CALL_CENTER_112",
        "incident_id": "I-1", "category": "FLOOD", "severity": "SEVERE", "rw": "003",
        "reported_at_ms": 1_000, "first_seen_ms": 1_000, "dispatched_at_ms": 4_000,
        "on_scene_at_ms": 9_000, "resolved_at_ms": 20_000, "status": "RESOLVED",
        "assigned_agency": "BPBD", "assigned_at_ms": 4_000, "escalated_at_ms": None,
        "closed_by": None, "closed_at_ms": None, "outcome": "RESOLVED"}


def test_a_store_is_bound_to_the_kafka_cluster_it_was_filled_from(history_url: str) -> None:
    """Rows are keyed by offsets, which start again on another cluster: refused, with why."""
    store = HistoryStore(history_url)
    store.create_tables()
    store.create_tables()  # idempotent
    store.bind_cluster("cluster-a")
    store.bind_cluster("cluster-a")
    with pytest.raises(HistoryError, match="was filled from Kafka cluster cluster-a, not "
                       "cluster-b"):
        store.bind_cluster("cluster-b")


# The indicators table as the version before the small-cell suppression created it.
V1_INDICATORS = (
    "CREATE TABLE indicators (src_topic TEXT NOT NULL, src_partition INTEGER NOT NULL, "
    "src_offset BIGINT NOT NULL, scope_code TEXT NOT NULL, scope_level TEXT NOT NULL, "
    "period TEXT NOT NULL, rt_registered INTEGER NOT NULL, rt_reported INTEGER NOT NULL, "
    "rt_valid INTEGER NOT NULL, rt_needs_review INTEGER NOT NULL, residents BIGINT NOT NULL, "
    "labour_force BIGINT NOT NULL, unemployed BIGINT NOT NULL, "
    "unemployment_rate DOUBLE PRECISION, completeness DOUBLE PRECISION NOT NULL, "
    "review_share DOUBLE PRECISION, computed_at_ms BIGINT NOT NULL, "
    "synthetic INTEGER NOT NULL, PRIMARY KEY (src_topic, src_partition, src_offset))")


def test_an_indicators_table_of_the_previous_version_takes_withheld_cells(
        history_url: str) -> None:
    """A table created before small cells (unemployed NOT NULL, no withheld) is migrated on
    start with its rows kept, then stores a withheld RW with a null count."""
    store = HistoryStore(history_url)
    with store.transaction() as cursor:
        cursor.execute(V1_INDICATORS)
        cursor.execute(store._sql(
            "INSERT INTO indicators VALUES (?, 0, 0, '36.72.01.1001', 'KELURAHAN', "
            "'2026-10', 9, 9, 9, 0, 1400, 700, 52, ?, 1.0, 0.0, 1, 1)"),
            ("city.neighbourhood.indicators.v1", 52 / 700))
    store.create_tables()
    store.create_tables()  # idempotent once migrated
    withheld = {"scope_code": "36.72.01.1001.004", "scope_level": "RW", "period": "2026-10",
                "rt_registered": 3, "rt_reported": 3, "rt_valid": 3, "rt_needs_review": 0,
                "residents": 400, "labour_force": 180, "unemployed": None,
                "unemployment_rate": None, "completeness": 1.0, "review_share": 0.0,
                "computed_at": datetime(2026, 11, 1, tzinfo=UTC), "synthetic": True,
                "withheld": "SMALL_COUNT"}
    assert store.write([row_of("org.cityops.NeighbourhoodIndicator", withheld,
                               Position("city.neighbourhood.indicators.v1", 0, 1))]) == 1
    assert store.query("SELECT scope_code, labour_force, unemployed, unemployment_rate, "
                       "withheld FROM indicators ORDER BY src_offset") == [
        ("36.72.01.1001", 700, 52, 52 / 700, None),
        ("36.72.01.1001.004", 180, None, None, "SMALL_COUNT")]
    assert store.count(INDICATORS) == 2
