"""A partner producer outlives a broker outage longer than its delivery timeout.

kafka-python 3's idempotent producer wedges once a batch expired: its later sends neither
complete nor fail, even after the broker is back. `PartnerProducer` replaces it and fails the
sends it had not confirmed, so every send ends confirmed or failed (and reported), and sending
resumes when the broker returns. Restarts the broker it talks to, like tests/e2e/test_chaos.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka.errors import KafkaError

from bench.chaos import broker_restart
from cityops.producer import PartnerProducer

pytestmark = pytest.mark.integration

RATE_PER_S = 50
OUTAGE_S = 8.0
DELIVERY_TIMEOUT_MS = 4000


def _incident(number: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()), "occurred_at": datetime.now(UTC),
        "incident_id": f"OUTAGE-{number}", "source_system": "POLICE", "category": "FLOOD",
        "severity": "MODERATE", "status": "REPORTED", "ward_code": "36.72.01.1001",
        "latitude": None, "longitude": None, "rw": None, "rt": None,
        "description": "outage test",
    }


@pytest.mark.timeout(300)
def test_sends_resume_after_an_outage_longer_than_the_delivery_timeout(
    catalog_topics: str,
) -> None:
    producer = PartnerProducer(catalog_topics, delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
                               request_timeout_ms=2000)
    assert producer.send("IncidentEvent", _incident(0)).get(timeout=30).offset >= 0
    sends: list[tuple[float, Any]] = []
    raised: list[BaseException] = []
    back_at: list[float] = []
    stop = threading.Event()

    def feed() -> None:
        number = 1
        while not stop.is_set():
            try:
                sends.append((time.monotonic(), producer.send("IncidentEvent",
                                                              _incident(number))))
            except KafkaError as error:  # a new producer while the broker is still down
                raised.append(error)
            number += 1
            time.sleep(1 / RATE_PER_S)

    sender = threading.Thread(target=feed, daemon=True)
    sender.start()
    try:
        time.sleep(2.0)
        broker_restart(down_s=OUTAGE_S)
        back_at.append(time.monotonic())
        time.sleep(10.0)
    finally:
        stop.set()
        sender.join(timeout=120)
    producer.flush(60)

    assert not sender.is_alive()
    assert [at for at, future in sends if not future.is_done] == []  # nothing left hanging
    failed = [future.exception for _, future in sends if future.failed()]
    assert failed, "the outage outlasted the delivery timeout: some sends must fail"
    # The expiry that wedged the producer, then its unconfirmed sends: batches the forced close
    # aborted (IllegalStateError) and the rest, failed by PartnerProducer (KafkaTimeoutError).
    assert any("has passed since batch creation" in str(error) for error in failed)
    assert {type(error).__name__ for error in failed} <= {"KafkaTimeoutError",
                                                           "IllegalStateError"}
    assert producer.summary.producer_replacements == 1
    # Every send made once the broker answered again was confirmed.
    assert [future.exception for at, future in sends
            if at > back_at[0] + 1.0 and not future.succeeded()] == []
    assert sum(1 for at, _ in sends if at > back_at[0] + 1.0) > 5 * RATE_PER_S
    producer.close()
