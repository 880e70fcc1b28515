"""A kelurahan busier than one default-sized Kafka record: its state still reaches the changelog
and a restarted worker recovers it whole (its dedupe memory included).

20,000 incident events for one ward within 90 minutes of event time (5,000 incidents, the ward's
cap, reported, dispatched, on scene and resolved) make a ward state of about 1.7 MB: over
Kafka's default 1 MB record limit, under the worker's own 6 MB target, so nothing is evicted
either.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from bench.chaos import group_lag
from bench.harness import Namespace, Worker
from tests.namespace import NamespacePlan
from topics.catalog import INCIDENTS as INCIDENT_INPUT
from topics.catalog import INCIDENTS_ENRICHED

pytestmark = pytest.mark.e2e

WARD = "36.72.04.1003"
INCIDENTS = 5_000  # processors.state.MAX_INCIDENTS: every one is held
STATUSES = ("REPORTED", "DISPATCHED", "ON_SCENE", "RESOLVED")
RETRIES = 300
KAFKA_DEFAULT_RECORD_BYTES = 1_048_588

PLAN = NamespacePlan.new("busy")


@pytest.fixture(scope="module")
def namespace(broker: str) -> Namespace:
    return PLAN.create(broker)


def _events() -> list[tuple[str, dict[str, Any]]]:
    start = datetime.now(UTC) - timedelta(minutes=90)
    events = []
    for n in range(INCIDENTS):
        reported = start + timedelta(milliseconds=n * 500)
        for step, status in enumerate(STATUSES):
            events.append(("IncidentEvent", {
                "event_id": str(uuid.UUID(int=(n * 4 + step) | (1 << 126), version=4)),
                "occurred_at": reported + timedelta(minutes=step * 5),
                "incident_id": f"busy-{n:05d}", "source_system": "POLICE",
                "category": "TRAFFIC_ACCIDENT", "severity": "MINOR", "status": status,
                "ward_code": WARD, "latitude": None, "longitude": None,
                "rw": None, "rt": None, "description": "",
            }))
    return events


def _folded(worker: Worker, *outcomes: str) -> float:
    return sum(worker.metric("cityops_events_aggregated_total", outcome=outcome) or 0.0
               for outcome in outcomes)


def _wait_for(worker: Worker, count: int, *outcomes: str,
              timeout_s: float = 240.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _folded(worker, *outcomes) == count:
            return
        time.sleep(0.5)
    raise AssertionError(f"{outcomes} never reached {count}: {_folded(worker, *outcomes)}")


def _wait_committed(namespace: Namespace, app_id: str, timeout_s: float = 60.0) -> None:
    """Until the group committed everything: the changelog then holds every applied event."""
    import time

    topics = [namespace.name(INCIDENT_INPUT), namespace.name(INCIDENTS_ENRICHED)]
    deadline = time.monotonic() + timeout_s
    while group_lag(namespace.bootstrap, app_id, topics) > 0:
        assert time.monotonic() < deadline, "the worker did not commit its input"
        time.sleep(0.5)


def _largest_changelog_value(bootstrap: str, app_id: str) -> int:
    topic = f"{app_id}-ward_state-changelog"
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             max_partition_fetch_bytes=16 * 1024 * 1024,
                             fetch_max_bytes=32 * 1024 * 1024)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions)
    largest = 0
    while any(consumer.position(tp) < ends[tp] for tp in partitions):
        for batch in consumer.poll(timeout_ms=1000).values():
            largest = max([largest, *(len(r.value or b"") for r in batch)])
    consumer.close()
    return largest


@pytest.fixture(scope="module")
def app_id() -> str:
    return f"busy-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def first_worker(namespace: Namespace, app_id: str, tmp_path: Path,
                 artifacts_dir: Path) -> Iterator[Worker]:
    worker = namespace.worker(app_id, artifacts_dir / "busy-ward-worker-1.log",
                              tmp_path / "w1").start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.kill()


def test_a_ward_state_over_one_megabyte_is_written_and_recovered(
        namespace: Namespace, app_id: str, first_worker: Worker, tmp_path: Path,
        artifacts_dir: Path) -> None:
    events = _events()
    namespace.send(events)
    # Folded into the state: "late" events (behind a closed window) update it too.
    _wait_for(first_worker, len(events), "applied", "late")
    _wait_committed(namespace, app_id)
    first_worker.kill()  # SIGKILL: only the changelog carries the state over

    largest = _largest_changelog_value(namespace.bootstrap, app_id)
    assert largest > KAFKA_DEFAULT_RECORD_BYTES

    second = namespace.worker(app_id, artifacts_dir / "busy-ward-worker-2.log",
                              tmp_path / "w2").start()
    try:
        second.wait_ready()
        # Partner retries of events the first worker applied: the recovered state knows them.
        namespace.send(events[-RETRIES:])
        _wait_for(second, RETRIES, "duplicate")
        assert _folded(second, "applied", "late", "expired") == 0
        assert second.metric("cityops_dedupe_ids_evicted_total", kelurahan_code=WARD) is None
    finally:
        second.stop()
