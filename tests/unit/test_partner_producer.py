"""cityops/producer.py: which failed sends mean the kafka-python producer must be replaced.

Replacing it fails every send it has not confirmed, so only errors that wedge kafka-python 3's
idempotent producer may trigger it; the behaviour on a real outage is
tests/integration/test_partner_producer_outage.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumberError,
    TopicAuthorizationFailedError,
    UnknownProducerIdError,
)
from kafka.producer.future import FutureProduceResult

from cityops.producer import PartnerProducer, wedges_the_producer
from topics.catalog import CatalogSettings, TopicCatalog

pytestmark = pytest.mark.unit


def test_expiry_connection_and_sequence_errors_wedge_the_producer() -> None:
    errors = [KafkaTimeoutError("Expiring 1 record(s): 4000 ms has passed since batch creation"),
              KafkaConnectionError(), NotLeaderForPartitionError(),
              OutOfOrderSequenceNumberError(), UnknownProducerIdError()]
    assert [wedges_the_producer(error) for error in errors] == [True] * 5


def test_errors_of_one_record_leave_the_producer_alone() -> None:
    errors = [TopicAuthorizationFailedError(), MessageSizeTooLargeError(), ValueError("bug")]
    assert [wedges_the_producer(error) for error in errors] == [False] * 3


class _FakeKafkaProducer:
    """Stands in for kafka-python's producer: records (topic, key) and returns a future."""

    def __init__(self, **settings: Any) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes) -> FutureProduceResult:
        self.sent.append((topic, key))
        return FutureProduceResult(TopicPartition(topic, 0))


def test_send_routes_an_incident_to_its_sources_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cityops.producer.KafkaProducer", _FakeKafkaProducer)
    producer = PartnerProducer("unused:9092", topics=TopicCatalog(CatalogSettings("p.")))
    for source in ("POLICE", "CALL_CENTER_112", "CITIZEN_APP", "FIRE_SERVICE"):
        producer.send("IncidentEvent", {
            "event_id": "0b6f3c1e-4a53-4c4e-9d2b-5f1f1e0c2a11",
            "occurred_at": datetime(2026, 11, 23, 8, 15, tzinfo=UTC),
            "incident_id": f"{source}-1", "source_system": source, "category": "FLOOD",
            "severity": "SEVERE", "status": "REPORTED", "ward_code": "36.72.01.1001",
            "latitude": None, "longitude": None, "rw": None, "rt": None, "description": "",
        })
    client = producer._producer
    assert isinstance(client, _FakeKafkaProducer)
    assert client.sent == [
        ("p.city.incidents.police.v1", b"POLICE-1"),
        ("p.city.incidents.112.v1", b"CALL_CENTER_112-1"),
        ("p.city.incidents.citizen.v1", b"CITIZEN_APP-1"),
        ("p.city.incidents.v1", b"FIRE_SERVICE-1"),
    ]
    assert producer.summary.by_topic == {
        "p.city.incidents.police.v1": 1, "p.city.incidents.112.v1": 1,
        "p.city.incidents.citizen.v1": 1, "p.city.incidents.v1": 1,
    }
