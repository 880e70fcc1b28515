"""cityops/producer.py: which failed sends mean the kafka-python producer must be replaced.

Replacing it fails every send it has not confirmed, so only errors that wedge kafka-python 3's
idempotent producer may trigger it; the behaviour on a real outage is
tests/integration/test_partner_producer_outage.py.
"""

from __future__ import annotations

import pytest
from kafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumberError,
    TopicAuthorizationFailedError,
    UnknownProducerIdError,
)

from cityops.producer import wedges_the_producer

pytestmark = pytest.mark.unit


def test_expiry_connection_and_sequence_errors_wedge_the_producer() -> None:
    errors = [KafkaTimeoutError("Expiring 1 record(s): 4000 ms has passed since batch creation"),
              KafkaConnectionError(), NotLeaderForPartitionError(),
              OutOfOrderSequenceNumberError(), UnknownProducerIdError()]
    assert [wedges_the_producer(error) for error in errors] == [True] * 5


def test_errors_of_one_record_leave_the_producer_alone() -> None:
    errors = [TopicAuthorizationFailedError(), MessageSizeTooLargeError(), ValueError("bug")]
    assert [wedges_the_producer(error) for error in errors] == [False] * 3
