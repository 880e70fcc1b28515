"""The history sink on the real broker, into SQLite and a real PostgreSQL server (issue 21):
everything the topics hold is stored once, through SIGKILLs of the sink mid-run.

The oracle is the topics themselves, read back with a plain consumer (bench/history_feed.py):
the store must hold exactly one row per record (keyed by topic, partition and offset), with
the record's own content.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.history_feed import build, publish, read_topics, sink_into
from cityops.rt_simulator import previous_month
from processors.history_rows import (
    INCIDENT_EVENTS,
    INDICATORS,
    OPERATOR_ACTIONS,
    REJECTED,
    RT_VALIDATIONS,
    SCHEMA_TABLES,
    SITUATIONS,
    Position,
    row_of,
)
from schemas.codec import decode
from streams.history_sink import SINK_TOPICS, HistorySink
from streams.history_store import HistoryStore
from streams.web import situation_json
from tests.conftest import CITYOPS, ROOT
from topics import catalog

pytestmark = pytest.mark.integration

TABLE_OF_TOPIC = {spec.name: SCHEMA_TABLES[spec.value_schema]
                  for spec in (catalog.SITUATIONS, catalog.INCIDENTS_ENRICHED,
                               catalog.OPERATOR_ACTIONS, catalog.RT_VALIDATIONS,
                               catalog.NEIGHBOURHOOD_INDICATORS)}


def _expected_rows(oracle: dict[str, list[tuple[str, int, int, bytes | None]]]
                   ) -> dict[str, list[dict[str, Any]]]:
    """Each table's rows as the topics say they must be."""
    expected: dict[str, list[dict[str, Any]]] = {}
    for declared, records in oracle.items():
        table = TABLE_OF_TOPIC[declared]
        rows = expected.setdefault(table.name, [])
        for topic, partition, offset, value in records:
            assert value is not None
            record = decode(value).record
            rows.append(row_of(record_schema(record, table.name), record,
                               Position(topic, partition, offset))[1])
    return expected


def record_schema(record: dict[str, Any], table: str) -> str:
    return next(schema for schema, t in SCHEMA_TABLES.items() if t.name == table)


def _stored_rows(store: HistoryStore, table_name: str) -> list[dict[str, Any]]:
    table = next(t for t in SCHEMA_TABLES.values() if t.name == table_name)
    names = table.column_names
    return [dict(zip(names, row, strict=True)) for row in store.query(
        f"SELECT {', '.join(names)} FROM {table.name}")]


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["src_topic"], row["src_partition"], row["src_offset"])


def _assert_store_equals_topics(store: HistoryStore, bootstrap: str) -> dict[str, int]:
    expected = _expected_rows(read_topics(bootstrap))
    counts = {}
    for table_name, rows in expected.items():
        stored = _stored_rows(store, table_name)
        keys = Counter(_key(row) for row in stored)
        assert [k for k, n in keys.items() if n > 1] == [], f"{table_name}: doubled rows"
        assert sorted(stored, key=_key) == sorted(rows, key=_key), table_name
        counts[table_name] = len(stored)
    assert store.count(REJECTED) == 0
    return counts


def _sink(url: str, bootstrap: str, app_id: str, log: Path, *extra: str
          ) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CITYOPS_HISTORY_BATCH": "100",
           "CITYOPS_SESSION_TIMEOUT_S": "6", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([*CITYOPS, "history", "sink", "--url", url, "--bootstrap",
                             bootstrap, "--app-id", app_id, *extra], cwd=ROOT, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


@pytest.fixture
def sink_topics(catalog_topics: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The sink's topics in a namespace of this test's own: each test's oracle is then its
    own feed only."""
    from topics.admin import admin_client, create_topics
    from topics.catalog import TopicCatalog

    monkeypatch.setenv("CITYOPS_TOPIC_PREFIX", f"{os.environ['CITYOPS_TOPIC_PREFIX']}"
                       f"h{uuid.uuid4().hex[:6]}.")
    admin = admin_client(catalog_topics)
    try:
        create_topics(admin, TopicCatalog.from_env().specs(SINK_TOPICS))
    finally:
        admin.close()
    return catalog_topics


def _rows(store: HistoryStore) -> int:
    try:
        return store.count(SITUATIONS)
    except Exception:  # the tables are created by the sink's first seconds
        return 0


def test_sink_killed_mid_run_stores_every_record_once(
        sink_topics: str, history_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    feed = build(now - timedelta(hours=3), 2.0, rt_month=previous_month(now))
    publish(sink_topics, feed)
    store = HistoryStore(history_url)
    app_id = f"test-history-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "sink.log"
    total = len(feed.records)
    kills = 0
    # Kill at growing fill levels: each restart must continue from the committed offsets.
    for target in (0.15, 0.4, 0.7):
        process = _sink(history_url, sink_topics, app_id, log)
        deadline = time.monotonic() + 120
        while _rows(store) < target * feed.count(catalog.SITUATIONS):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        kills += 1
    final = _sink(history_url, sink_topics, app_id, log, "--idle-exit", "3")
    assert final.wait(timeout=300) == 0, log.read_text()
    counts = _assert_store_equals_topics(store, sink_topics)
    assert kills == 3
    assert sum(counts.values()) == total
    assert counts[SITUATIONS.name] == feed.count(catalog.SITUATIONS)
    assert counts[INCIDENT_EVENTS.name] == feed.count(catalog.INCIDENTS_ENRICHED) > 0
    assert counts[OPERATOR_ACTIONS.name] == feed.count(catalog.OPERATOR_ACTIONS) > 0
    assert counts[RT_VALIDATIONS.name] == feed.count(catalog.RT_VALIDATIONS) > 0
    assert counts[INDICATORS.name] == feed.count(catalog.NEIGHBOURHOOD_INDICATORS) > 0


def test_two_sinks_of_one_group_share_the_work_and_survive_one_killed(
        sink_topics: str, history_url: str, tmp_path: Path) -> None:
    """More than one sink per deployment is safe: the group shares the partitions, and when
    one is killed mid-run the other takes its partitions over from the committed offsets."""
    now = datetime.now(UTC).replace(microsecond=0)
    feed = build(now - timedelta(hours=3), 1.5, seed=11)
    publish(sink_topics, feed)
    store = HistoryStore(history_url)
    app_id = f"test-history-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "sinks.log"
    # idle exit after the session timeout, so the survivor gets the dead one's partitions first
    survivor = _sink(history_url, sink_topics, app_id, log, "--idle-exit", "12")
    doomed = _sink(history_url, sink_topics, app_id, log)
    deadline = time.monotonic() + 120
    while _rows(store) < 0.3 * feed.count(catalog.SITUATIONS):
        assert doomed.poll() is None and survivor.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    assert survivor.wait(timeout=300) == 0, log.read_text()
    counts = _assert_store_equals_topics(store, sink_topics)
    assert sum(counts.values()) == len(feed.records)


def test_a_crash_between_the_database_commit_and_the_offset_commit_doubles_nothing(
        sink_topics: str, history_url: str) -> None:
    """The window the kill test may miss, made certain: the transaction committed, the
    offsets did not; the next sink of the group reads the batch again and inserts nothing."""
    now = datetime.now(UTC).replace(microsecond=0)
    feed = build(now - timedelta(hours=2), 0.25, seed=5)
    publish(sink_topics, feed)
    store = HistoryStore(history_url)
    store.create_tables()
    app_id = f"test-history-{uuid.uuid4().hex[:8]}"
    first = HistorySink(sink_topics, store, app_id, max_batch=50)

    def crash(*_: Any, **__: Any) -> None:
        raise RuntimeError("killed before the offsets were committed")

    first.consumer.commit = crash
    with pytest.raises(RuntimeError, match="killed before"):
        while first.step() == 0:
            pass
    stored_before = sum(store.count(table) for table in (SITUATIONS, INCIDENT_EVENTS,
                                                          OPERATOR_ACTIONS))
    assert stored_before > 0
    first.consumer.close(autocommit=False)
    second = HistorySink(sink_topics, store, app_id, max_batch=50)
    second.run(idle_exit_s=2.0)
    second.close()
    assert second.stats.records - second.stats.inserted == stored_before
    _assert_store_equals_topics(store, sink_topics)


def test_situation_rows_keep_the_whole_record(sink_topics: str, history_url: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    feed = build(now - timedelta(hours=2), 0.1, seed=7)
    publish(sink_topics, feed)
    store = sink_into(sink_topics, history_url)
    bodies = [json.loads(body) for (body,) in store.query("SELECT body FROM situations")]
    topic_records = [decode(value).record for _, _, _, value in
                     read_topics(sink_topics, [catalog.SITUATIONS])[catalog.SITUATIONS.name]
                     if value is not None]
    assert len(bodies) == len(topic_records) > 0
    assert sorted(b["emitted_at"] for b in bodies) == sorted(
        situation_json(r)["emitted_at"] for r in topic_records)
    assert {b["scope_code"] for b in bodies} == {r["scope_code"] for r in topic_records}


def test_the_sink_purges_old_operator_notes_and_audits_the_purge(
        sink_topics: str, history_url: str) -> None:
    """UU 27/2022: a note past its retention (90 days) loses its text when the sink applies
    the retention settings; the action stays in the audit record, the purge is recorded."""
    from bench.history_feed import HistoryFeed, _action

    now = datetime.now(UTC).replace(microsecond=0)
    feed = HistoryFeed(records=[
        (catalog.OPERATOR_ACTIONS, b"36.72.01.1001", _action(
            now - timedelta(days=days), "NOTE", "36.72.01.1001", None, None, None,
            f"SYNTHETIC note {days} days old: pelapor 0812-0000-0000", "rina", "OPERATOR"))
        for days in (120, 91, 10)])
    publish(sink_topics, feed)
    # stores the three, and purges again within the idle time
    store = sink_into(sink_topics, history_url, purge_interval_s=0.5)
    texts = sorted(store.query("SELECT occurred_at_ms, text FROM operator_actions"))
    assert [text for _, text in texts] == [
        None, None, "SYNTHETIC note 10 days old: pelapor 0812-0000-0000"]
    purged = store.query("SELECT table_name, rows_purged, what FROM purges "
                         "WHERE table_name = 'operator_actions.text' AND rows_purged > 0")
    assert purged == [("operator_actions.text", 2, "operator note text older than 90 days")]
