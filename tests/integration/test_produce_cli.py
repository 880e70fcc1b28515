"""`cityops produce` on the real broker: bad records refused by field, good ones arrive intact."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest

from bench.harness import Namespace
from tests.conftest import CITYOPS, ROOT
from tests.namespace import NamespacePlan
from topics.catalog import INCIDENTS_112

pytestmark = pytest.mark.integration

PLAN = NamespacePlan.new("produce")

VALID = {
    "type": "incident", "event_id": "0b6f3c1e-4a53-4c4e-9d2b-5f1f1e0c2a11",
    "occurred_at": "2026-11-23T08:15:00Z", "incident_id": "112-2026-004211",
    "source_system": "CALL_CENTER_112", "category": "FLOOD", "severity": "SEVERE",
    "status": "REPORTED", "ward_code": "36.72.01.1001", "rw": "003", "rt": "007",
    "description": "Banjir setinggi lutut",
}


@pytest.fixture(scope="module")
def namespace(broker: str) -> Namespace:
    return PLAN.create(broker)


def _produce(namespace: Namespace,
             records: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CITYOPS, "produce", "--bootstrap", namespace.bootstrap],
        input="\n".join(json.dumps(r) for r in records), cwd=ROOT, capture_output=True,
        text=True, timeout=120, check=False,
        env={**os.environ, "CITYOPS_TOPIC_PREFIX": namespace.prefix},
    )


@pytest.mark.parametrize(("change", "message"), [
    ({"incident_id": None}, "IncidentEvent.incident_id"),
    ({"severity": "HUGE"}, "IncidentEvent.severity: 'HUGE' is not one of EXTREME, SEVERE, "
                           "MODERATE, MINOR, UNKNOWN"),
    ({"latitude": "minus six"}, "IncidentEvent.latitude"),
    ({"occurred_at": "yesterday"}, "occurred_at"),
    ({"event_id": "not-a-uuid"}, "IncidentEvent.event_id"),
    ({"colour": "red"}, "colour"),
])
def test_each_violation_is_refused_with_the_field_and_nothing_is_sent(
    namespace: Namespace, change: dict[str, Any], message: str
) -> None:
    bad = {key: value for key, value in {**VALID, **change}.items() if value is not None}
    result = _produce(namespace, [VALID, bad])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "record 1" in result.stderr
    assert message in result.stderr
    assert "nothing sent" in result.stderr
    assert namespace.read(INCIDENTS_112, timeout_s=5) == []


def test_accepted_events_arrive_and_decode_to_what_was_given(namespace: Namespace) -> None:
    result = _produce(namespace, [VALID])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == f"sent 1 of 1 records: {PLAN.name(INCIDENTS_112)} 1"
    [record] = namespace.read(INCIDENTS_112)
    expected: dict[str, Any] = {key: value for key, value in VALID.items() if key != "type"}
    expected["occurred_at"] = datetime(2026, 11, 23, 8, 15, tzinfo=UTC)
    expected.update({"latitude": None, "longitude": None})
    assert record == expected


def test_deeply_nested_json_is_one_line_and_exit_2(namespace: Namespace) -> None:
    """Issue 12, hole 8: was a RecursionError traceback and exit 1 (the delivery-failure code)."""
    result = subprocess.run(
        [*CITYOPS, "produce", "--bootstrap", namespace.bootstrap],
        input="[" * 200_000 + "]" * 200_000, cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False, env={**os.environ, "CITYOPS_TOPIC_PREFIX": namespace.prefix},
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        2, "", "<stdin>: not JSON: nested 200000 levels deep (at most 32); nothing sent\n")
