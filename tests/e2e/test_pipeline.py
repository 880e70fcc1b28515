"""The whole pipeline on the real broker: every event type's path from partner bytes to a
situation, the dead letters, the city rollup, the clock's snapshots and the metrics.

The records are tests/pipeline_scenario.py's (floods, a cabinet's lamps, full containers, an
incident placed by its coordinates, garbage and an unknown ward), all sent at once. The rules
they show (each situation per event, levels and reasons, placement, rejections) are asserted
without a broker in tests/unit/test_test_driver.py; here the worker must end where the driver
ends on the same records, and what only a worker does is checked: delivery through Kafka, the
leader's rollup, the clock tick (which must not write the table) and the metrics over HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.harness import Namespace, Worker, wait_until
from processors.situation import NOT_COMPARED
from tests.integration.test_web_api import sla_thresholds
from tests.namespace import NamespacePlan
from tests.pipeline_scenario import (
    CABINET_WARD,
    COORDINATE_WARD,
    FLOOD_WARD,
    WASTE_WARD,
    scenario,
    through_driver,
    window_base,
)
from topics.catalog import DEAD_LETTERS, INCIDENTS_112, LIGHTING

pytestmark = pytest.mark.e2e

WARDS = (FLOOD_WARD, CABINET_WARD, WASTE_WARD, COORDINATE_WARD)
#: This module's own topic namespace, so exact counts see only the events sent here.
PLAN = NamespacePlan.new("pipeline")
_topic = PLAN.name


@pytest.fixture(scope="module")
def namespace(broker: str) -> Namespace:
    return PLAN.create(broker)


@pytest.fixture(scope="module")
def worker(namespace: Namespace, tmp_path_factory: pytest.TempPathFactory,
           artifacts_dir: Path) -> Iterator[Worker]:
    # A 2 s clock: the snapshots come during the test. The events lie 10-15 min in the past:
    # SLA clocks of a day keep the expected reasons exact.
    thresholds = sla_thresholds(tmp_path_factory.mktemp("thresholds"))
    with namespace.worker(f"e2e-{uuid.uuid4().hex[:8]}", artifacts_dir / "e2e-worker.log",
                          tmp_path_factory.mktemp("worker"), CITYOPS_SNAPSHOT_INTERVAL_S="2",
                          CITYOPS_THRESHOLDS=str(thresholds)) as process:
        yield process


def _compared(situation: dict[str, Any]) -> dict[str, Any]:
    """What an operator sees of a situation (bookkeeping such as sequence, kind and emission
    time left out: they depend on how the worker batched the events)."""
    return {k: v for k, v in situation.items() if k not in NOT_COMPARED}


def _changes(situations: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    """A ward's situations from its event batches: the first record of each sequence number
    (the clock's records repeat the number after it)."""
    seen: dict[int, dict[str, Any]] = {}
    for s in situations:
        if s["scope_code"] == code:
            seen.setdefault(s["sequence"], s)
    return [seen[n] for n in sorted(seen)]


def test_every_event_type_reaches_its_situation_and_the_dead_letters_and_metrics(
    worker: Worker, namespace: Namespace
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    sent = scenario(window_base(now))
    driver = through_driver(sent, now)
    expected = {code: _compared(driver.situations_of(code)[-1]) for code in WARDS}
    with namespace.producer() as producer:
        for item in sent:
            if item.schema is None:
                producer.send_raw(_topic(LIGHTING), item.key, item.value)
            else:
                producer.send(item.schema, item.record)

    def latest() -> dict[str, dict[str, Any]]:
        situations = namespace.read_situations()
        return {code: _compared(changes[-1]) for code in WARDS
                if (changes := _changes(situations, code))}

    wait_until(lambda: latest() == expected, 90, "every ward where the driver ends")
    situations = namespace.read_situations()
    for code in WARDS:  # one CHANGE per batch that changed what an operator sees
        sequences = [s["sequence"] for s in _changes(situations, code)]
        assert sequences == list(range(1, len(sequences) + 1)), code
        # CHANGEs of event batches; one with no event folded is time's: a ward's watermark held
        # while a hop had lag and released after it (issue 26) takes a sequence of its own
        from_batches = [s for s in _changes(situations, code) if s["events_folded"]]
        assert len(from_batches) <= len(driver.situations_of(code)), code

    # the leader's rollup of the four wards
    def city() -> tuple[Any, ...]:
        last = [s for s in namespace.read_situations() if s["scope"] == "CITY"]
        return () if not last else (last[-1]["level"], last[-1]["open_incidents"],
                                    last[-1]["lamps_out"], last[-1]["containers_full"])

    wait_until(lambda: city() == ("ALERT", 4, 3, 3), 60, "the city rollup")

    # the clock: a snapshot repeats the sequence of the ward's last change (it may be preceded
    # by a CHANGE under that number when wall-clock time moved a window), and the worker runs
    def snapshot() -> dict[str, Any] | None:
        return next((s for s in namespace.read_situations()
                     if s["scope_code"] == COORDINATE_WARD and s["kind"] == "SNAPSHOT"), None)

    wait_until(lambda: snapshot() is not None, 60, "a snapshot of the coordinate ward")
    tick = snapshot()
    assert tick is not None
    coordinate = [s for s in namespace.read_situations() if s["scope_code"] == COORDINATE_WARD]
    before_tick = coordinate[:coordinate.index(tick)]
    assert (tick["sequence"], tick["open_incidents"]) == (
        max(s["sequence"] for s in before_tick), 1)
    assert {s["sequence"] for s in coordinate if s["events_folded"]} == {1}
    assert worker.running and worker.starts == 1

    # dead letters: the records the driver rejects, as it rejects them
    dead = namespace.read(DEAD_LETTERS)

    def envelope(d: dict[str, Any], topic: str) -> tuple[Any, ...]:
        return (topic, d["stage"], d["reason"], d["error_class"], d["original_key"],
                d["original_value"])

    deployed = {spec.name: _topic(spec) for spec in (INCIDENTS_112, LIGHTING)}
    assert sorted(envelope(d, d["original_topic"]) for d in dead) == sorted(
        envelope(d, deployed[d["original_topic"]]) for d in driver.outputs.dead_letters)
    assert len(dead) == 2

    # metrics scraped over HTTP from the worker
    assert worker.metric("cityops_events_consumed_total", topic=_topic(INCIDENTS_112)) == 6.0
    assert worker.metric("cityops_events_consumed_total", topic=_topic(LIGHTING)) == 4.0
    assert worker.metric("cityops_events_rejected_total", topic=_topic(INCIDENTS_112),
                         stage="ENRICH", reason="unknown_ward") == 1.0
    assert worker.metric("cityops_events_rejected_total", topic=_topic(LIGHTING),
                         stage="DECODE", reason="not_single_object") == 1.0
    assert worker.metric("cityops_events_enriched_total", topic=_topic(INCIDENTS_112),
                         ward_resolution="POINT_IN_POLYGON") == 1.0
    assert worker.metric("cityops_events_enriched_total", topic=_topic(LIGHTING),
                         ward_resolution="ASSET_REGISTRY") == 3.0
    assert worker.metric("cityops_incident_dispatch_seconds_sum", kecamatan="Cibeber") == 300.0
    assert worker.metric("cityops_incident_dispatch_seconds_count", kecamatan="Cibeber") == 1.0
    wait_until(lambda: worker.metric("cityops_ward_situation_level",
                                    kelurahan_code=FLOOD_WARD) == 2.0)
    assert worker.metric("cityops_lamps_out", kecamatan="Pulomerak") == 3.0
    assert worker.metric("cityops_open_incidents", kecamatan="Cibeber", category="FLOOD") == 3.0
