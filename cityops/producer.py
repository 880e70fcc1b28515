"""The partner-side producer: validate against the Avro schema, then send with acks=all.

Partners (police, 112, lighting, waste, sensors) integrate through this module or the
`cityops produce` command. A record is validated before anything is sent, so a schema error is
the partner's immediate error and never reaches the city's topics.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumberError,
    UnknownProducerIdError,
)

from core.connection import kafka_python_security
from schemas.codec import encode
from topics.catalog import TopicCatalog
from topics.event_types import topic_for

log = logging.getLogger(__name__)

@dataclass
class SendSummary:
    sent: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    #: Times the kafka-python producer was replaced after a failed delivery.
    producer_replacements: int = 0


def wedges_the_producer(error: BaseException) -> bool:
    """Whether a failed send leaves kafka-python 3's idempotent producer unusable.

    Once a batch failed with a timeout or a connection-level error (an outage longer than
    delivery_timeout_ms), every later send of that producer neither completes nor fails, even
    after the broker is back (reproduced on Kafka 4.1: docs/reliability.md). Authorization and
    record-size errors fail only their own records and leave the producer usable.
    """
    if isinstance(error, KafkaTimeoutError | OutOfOrderSequenceNumberError
                  | UnknownProducerIdError):
        return True
    return isinstance(error, KafkaError) and bool(getattr(error, "retriable", False))


class PartnerProducer:
    """Thin wrapper over kafka-python's producer with the city's delivery settings."""

    def __init__(self, bootstrap: str, *, topics: TopicCatalog | None = None,
                 **client_config: Any) -> None:
        #: How this deployment names the catalog's topics (CITYOPS_TOPIC_PREFIX by default).
        self.topics = topics if topics is not None else TopicCatalog.from_env()
        settings: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "acks": "all",
            "retries": 10,
            "linger_ms": 5,
            "enable_idempotence": True,
            "client_id": "cityops-partner",
            # kafka-python waits up to 30 s between reconnects; the Java client 1 s. After an
            # outage, sends should resume within seconds of the broker's return.
            "reconnect_backoff_max_ms": 2000,
        }
        settings.update(kafka_python_security())
        settings.update(client_config)
        self._settings = settings
        self._producer: KafkaProducer | None = KafkaProducer(**settings)
        self.summary = SendSummary()
        # Futures of the current producer not yet completed, so a replacement can fail them
        # instead of leaving them unresolved forever.
        self._pending: dict[int, Any] = {}
        self._ids = itertools.count()
        self._wedged_by: BaseException | None = None
        self._lock = threading.Lock()

    def _client(self) -> KafkaProducer:
        """The kafka-python producer, replaced first if a failed delivery wedged it."""
        if self._wedged_by is not None:
            self._replace()
        if self._producer is None:  # a replacement whose constructor failed: try again
            self._producer = KafkaProducer(**self._settings)
        return self._producer

    def _replace(self) -> None:
        """Fail the wedged producer's unconfirmed sends and drop it; the next send makes a
        new one. A failed send is "maybe written": the caller reports it, and resending it is
        safe because the pipeline counts each event_id once."""
        cause = self._wedged_by
        old, self._producer = self._producer, None
        with self._lock:
            pending, self._pending = self._pending, {}
            self._wedged_by = None
        if old is not None:  # close() alone stops at the wedged flush: force the sender down
            with contextlib.suppress(KafkaError):
                old.close(timeout=0)
            sender = getattr(old, "_sender", None)
            if sender is not None and sender.is_alive():
                sender.force_close()  # aborts its incomplete batches, failing their sends
                sender.join(2.0)
        error = KafkaTimeoutError(
            f"not confirmed: the producer was replaced after a failed delivery ({cause!r}); "
            "resending is safe")
        for future in pending.values():
            if not future.is_done:
                with contextlib.suppress(Exception):  # completed meanwhile
                    future.failure(error)
        self.summary.producer_replacements += 1
        log.warning("partner producer replaced after %r; %d unconfirmed sends failed",
                    cause, len(pending))

    def _track(self, future: Any) -> Any:
        key = next(self._ids)
        with self._lock:
            self._pending[key] = future

        def done(outcome: Any) -> None:
            with self._lock:
                self._pending.pop(key, None)
                if (isinstance(outcome, BaseException) and self._wedged_by is None
                        and wedges_the_producer(outcome)):
                    self._wedged_by = outcome

        future.add_both(done)
        return future

    def send(self, schema: str, record: Mapping[str, Any],
             headers: Sequence[tuple[str, bytes]] | None = None) -> Any:
        """Validate and send one record; returns kafka-python's future.

        The topic follows the record: an incident goes to its `source_system`'s own topic (the
        one its partner principal may write; a source without one uses the shared topic).
        `headers` travel as Kafka record headers (the gateway's pass-through headers).
        """
        spec = topic_for(schema, record)
        value = encode(spec.value_schema, record)
        assert spec.key_field is not None, spec.name
        key = str(record[spec.key_field]).encode()
        topic = self.topics.name(spec)
        extra = {"headers": list(headers)} if headers else {}
        future = self._track(self._client().send(topic, key=key, value=value, **extra))
        self.summary.sent += 1
        self.summary.by_topic[topic] = self.summary.by_topic.get(topic, 0) + 1
        return future

    def send_many(self, schema: str, records: Iterable[Mapping[str, Any]]) -> int:
        count = 0
        for record in records:
            self.send(schema, record)
            count += 1
        return count

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None) -> Any:
        """Send bytes as they are: the gateway's receipts and tests of hostile input, never
        partner records (they go through `send`, which validates)."""
        return self._track(self._client().send(topic, key=key, value=value))

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every send; a wedged producer is replaced instead (its sends fail)."""
        if self._wedged_by is not None:
            self._replace()
        deadline = time.monotonic() + timeout_s
        while self._producer is not None:
            try:  # in slices, so a send that fails meanwhile ends the wait, not the timeout
                self._producer.flush(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                return
            except KafkaTimeoutError:
                if self._wedged_by is not None:
                    self._replace()
                    return
                if time.monotonic() >= deadline:
                    raise

    def close(self) -> None:
        if self._producer is None:
            return
        self.flush()
        if self._producer is not None:
            self._producer.close()
            self._producer = None

    def __enter__(self) -> PartnerProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
