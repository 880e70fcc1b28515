"""The partner-side producer: validate against the Avro schema, then send with acks=all.

Partners (police, 112, lighting, waste, sensors) integrate through this module or the
`cityops produce` command. A record is validated before anything is sent, so a schema error is
the partner's immediate error and never reaches the city's topics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer

from cityops.security import kafka_python_security
from schemas.codec import encode
from topics.catalog import CATALOG, TopicSpec

#: Which field of each event type is the Kafka key (keeps one asset's events in order).
KEY_FIELDS: dict[str, str] = {
    "org.cityops.IncidentEvent": "incident_id",
    "org.cityops.LightingEvent": "lamp_id",
    "org.cityops.WasteEvent": "container_id",
    "org.cityops.Ward": "kelurahan_code",
    "org.cityops.Asset": "asset_id",
}


def topic_for(schema: str) -> TopicSpec:
    full = schema if "." in schema else f"org.cityops.{schema}"
    for spec in CATALOG:
        if spec.value_schema == full and spec.role in ("input", "reference"):
            return spec
    raise KeyError(f"no input or reference topic carries {schema}")


@dataclass
class SendSummary:
    sent: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)


class PartnerProducer:
    """Thin wrapper over kafka-python's producer with the city's delivery settings."""

    def __init__(self, bootstrap: str, **client_config: Any) -> None:
        settings: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "acks": "all",
            "retries": 10,
            "linger_ms": 5,
            "enable_idempotence": True,
            "client_id": "cityops-partner",
        }
        settings.update(kafka_python_security())
        settings.update(client_config)
        self._producer = KafkaProducer(**settings)
        self.summary = SendSummary()

    def send(self, schema: str, record: Mapping[str, Any]) -> Any:
        """Validate and send one record; returns kafka-python's future."""
        spec = topic_for(schema)
        value = encode(spec.value_schema, record)
        key = str(record[KEY_FIELDS[spec.value_schema]]).encode()
        future = self._producer.send(spec.name, key=key, value=value)
        self.summary.sent += 1
        self.summary.by_topic[spec.name] = self.summary.by_topic.get(spec.name, 0) + 1
        return future

    def send_many(self, schema: str, records: Iterable[Mapping[str, Any]]) -> int:
        count = 0
        for record in records:
            self.send(schema, record)
            count += 1
        return count

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None) -> Any:
        """Send bytes as they are: for tests of hostile input, never for partners."""
        return self._producer.send(topic, key=key, value=value)

    def flush(self, timeout_s: float = 60.0) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()

    def __enter__(self) -> PartnerProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
