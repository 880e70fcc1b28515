"""The foundation on the real broker: topics match the catalog, bytes survive a round trip."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas.codec import decode, encode
from tests.conftest import ROOT
from topics import catalog
from topics.admin import admin_client, create_topics, describe_topics
from topics.catalog import TopicCatalog

pytestmark = pytest.mark.integration

#: The catalog as this test session deploys it (its CITYOPS_TOPIC_PREFIX, tests/conftest.py).
CATALOG = TopicCatalog.from_env().specs()
INCIDENTS = TopicCatalog.from_env().spec(catalog.INCIDENTS)


def test_broker_status_reports_running(broker: str) -> None:
    result = subprocess.run([sys.executable, "-m", "cityops.cli", "broker", "status"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout.startswith("running (pid ")


def test_second_start_is_a_no_op(broker: str) -> None:
    result = subprocess.run([sys.executable, "-m", "cityops.cli", "broker", "start"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout.strip() == f"already running on {broker}"


def test_start_from_another_checkout_uses_the_broker_that_answers(
        broker: str, tmp_path: Path) -> None:
    """Another var directory (another checkout) on the same port: nothing is launched."""
    env = {**os.environ, "CITYOPS_VAR_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "cityops.cli", "broker", "start"], cwd=ROOT,
                            env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"a broker this checkout did not start already answers on {broker}; using it "
        "(`cityops broker stop` here will not stop it; set CITYOPS_KAFKA_PORT for a broker of "
        "this checkout's own)")
    assert not (tmp_path / "kafka" / "broker.pid").exists()


def test_topic_creation_is_idempotent_and_matches_catalog(catalog_topics: str) -> None:
    admin = admin_client(catalog_topics)
    try:
        again = create_topics(admin)
        assert again == [(spec.name, "exists") for spec in CATALOG]
        checks = describe_topics(admin)
        assert [(c.name, c.exists, c.partitions, c.config_mismatches) for c in checks] == [
            (spec.name, True, spec.partitions, {}) for spec in CATALOG
        ]
    finally:
        admin.close()


def test_topics_describe_command_exits_zero_when_broker_matches(catalog_topics: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cityops.cli", "topics", "describe", "--bootstrap", catalog_topics],
        cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" yes ") == len(CATALOG)


def test_events_read_back_byte_exact_and_decode_to_the_same_values(catalog_topics: str) -> None:
    incident_id = f"it-{uuid.uuid4().hex[:8]}"
    records = [
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime(2026, 11, 23, 8, 0, i, tzinfo=UTC),
            "incident_id": incident_id,
            "source_system": "POLICE",
            "category": "TRAFFIC_ACCIDENT",
            "severity": "MODERATE",
            "status": status,
            "ward_code": "36.72.01.1001",
            "latitude": None,
            "longitude": None,
            "rw": "003",
            "rt": "007",
            "description": "Tabrakan motor",
        }
        for i, status in enumerate(["REPORTED", "DISPATCHED", "ON_SCENE"])
    ]
    payloads = [encode(INCIDENTS.value_schema, record) for record in records]
    producer = KafkaProducer(bootstrap_servers=catalog_topics, acks="all")
    metadata = [
        producer.send(INCIDENTS.name, key=incident_id.encode(), value=payload).get(timeout=30)
        for payload in payloads
    ]
    producer.close()
    assert len({m.partition for m in metadata}) == 1  # one key, one partition, order kept

    consumer = KafkaConsumer(bootstrap_servers=catalog_topics, enable_auto_commit=False)
    tp = TopicPartition(INCIDENTS.name, metadata[0].partition)
    consumer.assign([tp])
    consumer.seek(tp, metadata[0].offset)
    received: list[bytes] = []
    while len(received) < len(payloads):
        for batch in consumer.poll(timeout_ms=1000).values():
            received.extend(r.value for r in batch if r.key == incident_id.encode())
    consumer.close()
    assert received[: len(payloads)] == payloads
    assert [decode(p, expected=INCIDENTS.value_schema).record for p in received[:3]] == records
