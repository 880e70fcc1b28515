"""A private set of the catalog's topics on the shared local broker, for tests that assert
exact counts: every worker reading it sees only the events the test sent."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from cityops.producer import PartnerProducer
from schemas.codec import decode, encode
from tests.conftest import CITYOPS, ROOT, WorkerProcess
from topics import catalog
from topics.catalog import TopicCatalog, TopicSpec, by_schema

#: The test session's own prefix (tests/conftest.py); every namespace nests inside it.
SESSION_PREFIX = TopicCatalog.from_env().prefix


@dataclass(frozen=True)
class NamespacePlan:
    """A namespace named at import time, so a test module's constants can name its topics;
    `create` makes it real on the broker (in a module-scoped fixture)."""

    label: str
    prefix: str

    @classmethod
    def new(cls, label: str) -> NamespacePlan:
        return cls(label, f"{SESSION_PREFIX}{label}-{uuid.uuid4().hex[:6]}.")

    def topic(self, spec: TopicSpec) -> str:
        return self.prefix + spec.name

    def create(self, bootstrap: str) -> Namespace:
        return Namespace.create(bootstrap, self.label, prefix=self.prefix)


@dataclass(frozen=True)
class Namespace:
    """A topic prefix of its own (nested in the session's), with wards and assets loaded."""

    bootstrap: str
    prefix: str

    @classmethod
    def create(cls, bootstrap: str, name: str, prefix: str | None = None) -> Namespace:
        prefix = prefix or f"{SESSION_PREFIX}{name}-{uuid.uuid4().hex[:6]}."
        env = {**os.environ, "CITYOPS_TOPIC_PREFIX": prefix}
        for command in (["topics", "create"], ["wards", "load"], ["assets", "load"]):
            result = subprocess.run([*CITYOPS, *command, "--bootstrap", bootstrap], cwd=ROOT,
                                    env=env, capture_output=True, text=True, timeout=300,
                                    check=False)
            if result.returncode != 0:
                pytest.fail(f"cityops {' '.join(command)} failed: {result.stdout}{result.stderr}")
        return cls(bootstrap, prefix)

    def topic(self, spec: TopicSpec) -> str:
        return self.prefix + spec.name

    def send(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Partner events (schema short name, record), validated and encoded as a partner's
        producer does, onto this namespace's input topics."""
        with PartnerProducer(self.bootstrap) as producer:
            for schema, record in events:
                spec = by_schema(schema)
                key = str(record[str(spec.key_field)]).encode()
                producer.send_raw(self.topic(spec), key, encode(spec.value_schema, record))

    def producer(self) -> NamespacedProducer:
        return NamespacedProducer(self)

    def send_raw(self, spec: TopicSpec, key: bytes | None, value: bytes | None) -> None:
        with PartnerProducer(self.bootstrap) as producer:
            producer.send_raw(self.topic(spec), key, value)

    def worker(self, app_id: str, log_path: Path, data_dir: Path, **env: str) -> WorkerProcess:
        settings = {"CITYOPS_SNAPSHOT_INTERVAL_S": "0", "CITYOPS_ROLLUP_INTERVAL_S": "0.5",
                    "CITYOPS_DATA_DIR": str(data_dir), **env}
        return WorkerProcess(self.bootstrap, app_id, log_path,
                             CITYOPS_TOPIC_PREFIX=self.prefix, **settings)

    def read(self, spec: TopicSpec, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Every record now on one of this namespace's topics, decoded, in partition order."""
        topic = self.topic(spec)
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp]
                                                  for tp in partitions):
            for batch in consumer.poll(timeout_ms=500).values():
                found.extend(decode(r.value, expected=spec.value_schema).record for r in batch)
        consumer.close()
        return found

    def read_situations(self) -> list[dict[str, Any]]:
        return self.read(catalog.SITUATIONS)

    def records(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Every SituationEvent on the topic, by (scope code, sequence)."""
        return {(value["scope_code"], value["sequence"]): value
                for value in self.read(catalog.SITUATIONS)}


class NamespacedProducer:
    """PartnerProducer's `send` (validate, encode, key by the catalog), aimed at a namespace."""

    def __init__(self, namespace: Namespace) -> None:
        self._namespace = namespace
        self._producer = PartnerProducer(namespace.bootstrap)

    def send(self, schema: str, record: dict[str, Any]) -> None:
        spec = by_schema(schema)
        key = str(record[str(spec.key_field)]).encode()
        self._producer.send_raw(self._namespace.topic(spec), key,
                                encode(spec.value_schema, record))

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self._producer.send_raw(topic, key, value)

    def __enter__(self) -> NamespacedProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._producer.close()
