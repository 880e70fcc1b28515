"""Hostile input on every partner topic, through the Kafka client to a real worker: every
record consumed once, each bad one dead-lettered once at its own offset (the 1 MiB ones too:
their dead letters fit on the broker), every valid one and every partner retry enriched, each
event folded once, the metrics counting it all, and the worker never crashing or skipping one.

The rules (which dead letter each record gets, what a valid one becomes) are asserted without a
broker in tests/unit/test_driver_hostile_input.py, on the same corpus (tests/hostile_corpus.py)
through streams/test_driver.py; here the worker must judge every record exactly as that driver
does, so the unit tests speak for the worker.

The worker runs in its own topic namespace (bench.harness.Namespace) so the exact counts below
are not disturbed by other tests sharing the broker and the session's topics.

Invariants checked, per input topic, both from the worker's metrics and from the topics:
    consumed = enriched + dead-lettered
and per enriched topic:
    records = applied + late + duplicate + expired (+ dead-lettered at the ward stage)
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer

from bench.harness import Namespace, Worker, read_records, wait_until
from schemas.codec import decode
from tests.hostile_corpus import (
    ENRICHED,
    ENRICHED_GARBAGE,
    KINDS,
    SPEC,
    WARD,
    Builder,
    Item,
    interleave,
    letters_by_item,
    through_driver,
)
from topics import catalog

pytestmark = pytest.mark.e2e

WORKER_ID = "hostile-worker-1"


@pytest.fixture(scope="module")
def namespace(broker: str) -> Iterator[Namespace]:
    ns = Namespace.fresh(broker, "hostile")
    ns.setup()
    yield ns
    ns.teardown()


@pytest.fixture(scope="module")
def worker(namespace: Namespace, artifacts_dir: Path) -> Iterator[Worker]:
    log = artifacts_dir / "hostile-worker.log"
    log.unlink(missing_ok=True)
    process = Worker(namespace, f"hostile-{uuid.uuid4().hex[:8]}", log, worker_id=WORKER_ID,
                     loglevel="warning", extra_env={"CITYOPS_SNAPSHOT_INTERVAL_S": "0",
                                                    "CITYOPS_ROLLUP_INTERVAL_S": "1.0"}).start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
        namespace.teardown([process.app_id])


def _send(bootstrap: str, ns: Namespace, items: list[Item]) -> dict[str, tuple[int, int]]:
    """Send in order (gzip: lets the >1 MiB payloads through the broker's size limit);
    returns item name -> (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             compression_type="gzip", max_request_size=8 * 1024 * 1024,
                             linger_ms=5)
    futures = [(item.name, producer.send(ns.name(SPEC[item.kind]), key=item.key, value=item.value,
                                         headers=list(item.headers)))
               for item in items]
    producer.flush(timeout=120)
    placed = {}
    for name, future in futures:
        meta = future.get(timeout=60)
        placed[name] = (meta.partition, meta.offset)
    producer.close()
    return placed


def _send_enriched_garbage(bootstrap: str, topic: str) -> tuple[int, int]:
    """ENRICHED_GARBAGE on an enriched topic, keyed by WARD, as a foreign writer could put it
    there; returns (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        meta = producer.send(topic, key=WARD.encode(), value=ENRICHED_GARBAGE).get(timeout=60)
    finally:
        producer.close()
    return meta.partition, meta.offset


def test_hostile_corpus_is_dead_lettered_and_valid_events_keep_flowing(
    worker: Worker, namespace: Namespace
) -> None:
    bootstrap = namespace.bootstrap
    started = datetime.now(UTC)
    items, retries = interleave(Builder(started))
    hostile = [i for i in items if i.reason is not None]
    valid = [i for i in items if i.reason is None]
    # What the worker must give: the same records through the worker's code, in process.
    driver = through_driver(items, started)
    judged = letters_by_item(items, driver)
    placed = _send(bootstrap, namespace, items)
    garbage_topic = namespace.name(catalog.INCIDENTS_ENRICHED)
    garbage = _send_enriched_garbage(bootstrap, garbage_topic)

    sent = Counter(item.kind for item in items)

    def consumed_all() -> bool:
        return all(worker.metric_sum("cityops_events_consumed_total",
                                     topic=namespace.name(SPEC[kind])) == count
                   for kind, count in sent.items())

    wait_until(consumed_all, 180, "every input record consumed")

    def aggregated_all() -> bool:
        return worker.metric_sum("cityops_events_aggregated_total") == len(valid)

    wait_until(aggregated_all, 120, "every enriched record applied to the ward state")
    wait_until(lambda: worker.metric_sum("cityops_events_rejected_total",
                                         topic=garbage_topic) == 1, 60,
               "the ward stage's dead letter")
    assert worker.running, worker.log_tail()

    # -- dead-letter topic: each hostile record exactly once, at its own offset, judged (stage,
    # reason, error class) and enveloped (key, bytes, headers as cut) as the driver does
    dead = [decode(r.value, expected=catalog.DEAD_LETTERS.value_schema).record
            for r in read_records(bootstrap, namespace.name(catalog.DEAD_LETTERS))]
    by_place = {(d["original_topic"], d["original_partition"], d["original_offset"]): d
                for d in dead}
    assert len(by_place) == len(dead) == len(hostile) + 1

    def envelope(letter: dict[str, object]) -> tuple[object, ...]:
        return (letter["stage"], letter["reason"], letter["error_class"],
                letter["original_key"], letter["original_value"], letter["original_headers"])

    got, want = {}, {}
    for name, topic, (partition, offset) in [
            *((i.name, namespace.name(SPEC[i.kind]), placed[i.name]) for i in hostile),
            ("enriched:garbage", garbage_topic, garbage)]:
        letter = by_place[(topic, partition, offset)]
        assert letter["worker_id"] == WORKER_ID
        assert started <= letter["rejected_at"] <= datetime.now(UTC)
        assert letter["error_message"] and len(letter["error_message"]) <= 1000
        got[name], want[name] = envelope(letter), envelope(judged[name])
    assert got == want

    # -- enriched topics: every valid send (retries included) and nothing else
    for kind in KINDS:
        records = [decode(r.value, expected=ENRICHED[kind].value_schema).record
                   for r in read_records(bootstrap, namespace.name(ENRICHED[kind]))
                   if r.value != ENRICHED_GARBAGE]
        assert sorted(r["event"]["event_id"] for r in records) == sorted(
            str(i.event_id) for i in valid if i.kind == kind)

    # -- the invariant, from the topics: input = enriched + dead-lettered
    for kind in KINDS:
        inputs = len(read_records(bootstrap, namespace.name(SPEC[kind])))
        enriched = sum(1 for r in read_records(bootstrap, namespace.name(ENRICHED[kind]))
                       if r.value != ENRICHED_GARBAGE)
        rejected = sum(1 for d in dead if d["original_topic"] == namespace.name(SPEC[kind]))
        assert (inputs, enriched + rejected) == (sent[kind], sent[kind])

    # -- and from the metrics: what the driver's outputs hold, counted by the worker
    for kind in KINDS:
        topic = namespace.name(SPEC[kind])
        reasons = Counter((d["stage"], d["reason"]) for d in driver.outputs.dead_letters
                          if d["original_topic"] == SPEC[kind].name)
        for (stage, reason), count in reasons.items():
            assert worker.metric_sum("cityops_events_rejected_total", topic=topic,
                                     stage=stage, reason=reason) == count, reason
        assert worker.metric_sum("cityops_events_corrected_total", topic=topic,
                                 reason="ward_code_mismatch") == driver.outputs.corrected[
            (SPEC[kind].name, "ward_code_mismatch")]
        assert (worker.metric_sum("cityops_events_consumed_total", topic=topic),
                worker.metric_sum("cityops_events_enriched_total", topic=topic),
                worker.metric_sum("cityops_events_rejected_total", topic=topic)) == (
            sent[kind], sum(1 for i in valid if i.kind == kind), reasons.total())
        # ward stage: every enriched record applied once; the retries counted as duplicates
        outcomes = {outcome: worker.metric_sum("cityops_events_aggregated_total",
                                               topic=namespace.name(ENRICHED[kind]),
                                               outcome=outcome)
                    for outcome in ("applied", "late", "duplicate", "expired")}
        assert outcomes == {outcome: driver.outputs.aggregated[(ENRICHED[kind].name, outcome)]
                            for outcome in outcomes}
        assert outcomes["duplicate"] == sum(1 for i in retries if i.kind == kind)
    assert worker.metric_sum("cityops_events_rejected_total", stage="PROCESS") == 0

    # -- the worker never crashed, restarted an agent or skipped an event
    log = worker.log_tail(200_000)
    assert worker.running and worker.starts == 1
    for sign in ("Traceback", "Crashed", "crashed", "MessageSizeTooLarge"):
        assert sign not in log, log[-3000:]
