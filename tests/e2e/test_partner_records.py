"""Records as non-Python partners write them, on the real broker (issue 17).

- Valid events from the official Java producer with every accepted compression are processed.
- A Java partner's aborted transaction is never counted; its committed one is, once, and the
  consumer group's commit reaches the end of the partition (transaction markers are offsets
  holding no record).
- A record batch the client cannot parse is dead-lettered whole and the partition moves past
  it: a CRC mismatch, an unknown codec and a corrupt gzip payload (made by editing the batch a
  Java partner wrote in the broker's log segment, the only way to get them past the broker), and
  a header name that is not UTF-8 (sent as is, as librdkafka could).
- With two workers in one group, such a record is dead-lettered once and both stay up.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from bench.harness import Namespace, Worker, committed_by_app, wait_until
from core.paths import var_dir
from schemas.codec import encode
from tests import log_surgery
from tests.crafted import NOT_UTF8, send_non_utf8_header
from tests.namespace import NamespacePlan
from tests.partner_java import JavaRecord, java_send
from topics.catalog import DEAD_LETTERS, INCIDENTS, INCIDENTS_ENRICHED

pytestmark = pytest.mark.e2e

WARD = "36.72.01.1001"
PLAN = NamespacePlan.new("partner")
TWO = NamespacePlan.new("partner2")


def incident(label: str) -> tuple[str, bytes]:
    """A valid incident; returns (its event_id, its value bytes as the project encodes them)."""
    event_id = str(uuid.uuid4())
    record = {
        "event_id": event_id, "occurred_at": datetime.now(UTC) - timedelta(seconds=30),
        "incident_id": label, "source_system": "CALL_CENTER_112", "category": "FIRE",
        "severity": "MINOR", "status": "REPORTED", "ward_code": WARD, "latitude": None,
        "longitude": None, "rw": None, "rt": None, "description": "partner record test",
    }
    return event_id, encode("org.cityops.IncidentEvent", record)


def valid(partition: int, label: str) -> tuple[str, JavaRecord]:
    event_id, value = incident(label)
    return event_id, JavaRecord(partition, label.encode(), value)


def enriched_ids(ns: Namespace) -> list[str]:
    return [r["event"]["event_id"] for r in ns.read(INCIDENTS_ENRICHED)]


def end_offsets(ns: Namespace) -> dict[int, int]:
    topic = ns.name(INCIDENTS)
    consumer = KafkaConsumer(bootstrap_servers=ns.bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(6)])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        consumer.close()


def committed_offsets(ns: Namespace, app_id: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=ns.bootstrap)
    try:
        found = committed_by_app(admin, app_id)
    finally:
        admin.close()
    topic = ns.name(INCIDENTS)
    return {tp.partition: meta.offset for tp, meta in found.items() if tp.topic == topic}


def metric_sum(workers: list[Worker], name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for worker in workers:
        for family in text_string_to_metric_families(worker.metrics_text()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    total += sample.value
    return total


# -- one worker: poison written before it starts, then compressions and transactions --------

@dataclass(frozen=True)
class Poison:
    case: str
    partition: int
    offset: int
    kind: str
    error_class: str
    raw: bytes  # the batch as the broker serves it (bytes 16.. for the header case)
    around: tuple[str, str]  # event ids of the valid records before and after it


CASES = {  # case -> (partition, compression the Java partner used, kind, error class)
    "crc": (2, "none", "crc_mismatch", "CorruptRecordException"),
    "codec": (3, "none", "unsupported_codec", "UnsupportedCodecError"),
    "gzip_payload": (4, "gzip", "malformed", "BadGzipFile"),
    "header": (5, "none", "invalid_utf8", "UnicodeDecodeError"),
}


def _write_poison(ns: Namespace, case: str) -> Poison:
    partition, compression, kind, error_class = CASES[case]
    topic = ns.name(INCIDENTS)
    before_id, before = valid(partition, f"{case}-before")
    after_id, after = valid(partition, f"{case}-after")
    java_send(ns.bootstrap, topic, [before], compression)
    if case == "header":
        sent, offset = send_non_utf8_header(ns.bootstrap, topic, partition, b"poison-key",
                                            b"poison-value")
        raw = sent[16:]
    else:
        _, value = incident(f"{case}-POISON")
        java_send(ns.bootstrap, topic, [JavaRecord(partition, b"poison-key", value)],
                  compression)
        directory = log_surgery.partition_dir(var_dir() / "kafka" / "data", topic, partition)
        if not directory.is_dir():
            pytest.skip(f"the broker's log is not on this machine's {directory}")
        batch = log_surgery.batch_at(directory, 1)
        change = {
            "crc": log_surgery.replace_once(b"POISON", b"P0ISON"),
            "codec": log_surgery.set_codec(5),
            "gzip_payload": log_surgery.break_gzip_trailer,
        }[case]
        raw = log_surgery.rewrite(batch, change, fix_crc=case != "crc")
        offset = batch.base_offset
    java_send(ns.bootstrap, topic, [after], compression)
    assert offset == 1
    return Poison(case, partition, offset, kind, error_class, raw, (before_id, after_id))


@pytest.fixture(scope="module")
def ns(broker: str) -> Namespace:
    return PLAN.create(broker)


@pytest.fixture(scope="module")
def poisons(ns: Namespace) -> dict[str, Poison]:
    return {case: _write_poison(ns, case) for case in CASES}


@pytest.fixture(scope="module")
def worker(ns: Namespace, poisons: dict[str, Poison], tmp_path_factory: pytest.TempPathFactory,
           artifacts_dir: Path) -> Iterator[Worker]:
    log = artifacts_dir / "partner-records-worker.log"
    log.unlink(missing_ok=True)
    with ns.worker(f"partner-{uuid.uuid4().hex[:8]}", log,
                   tmp_path_factory.mktemp("partner-worker")) as process:
        yield process


def _dead_letters(ns: Namespace) -> list[dict[str, Any]]:
    return [d for d in ns.read(DEAD_LETTERS) if d["original_topic"] == ns.name(INCIDENTS)]


@pytest.mark.parametrize("case", list(CASES))
def test_an_unparseable_batch_is_dead_lettered_and_the_partition_moves_on(
    case: str, worker: Worker, ns: Namespace, poisons: dict[str, Poison]
) -> None:
    poison = poisons[case]
    wait_until(lambda: set(poison.around) <= set(enriched_ids(ns)), 60,
         "the valid records around the poison enriched")
    wait_until(lambda: any(d["original_partition"] == poison.partition for d in _dead_letters(ns)),
         30, "the dead letter")
    dead = [d for d in _dead_letters(ns) if d["original_partition"] == poison.partition]
    assert len(dead) == 1
    letter = dead[0]
    assert (letter["original_offset"], letter["stage"], letter["reason"],
            letter["error_class"], letter["original_key"], letter["original_headers"]) == (
        poison.offset, "DECODE", "unparseable_record", poison.error_class, None, [])
    assert letter["error_message"].startswith(
        f"record batch at offset 1 of {ns.name(INCIDENTS)}[{poison.partition}] cannot be "
        f"parsed ({poison.kind}): {poison.error_class}: ")
    stored = letter["original_value"]
    if case == "header":
        assert stored[16:] == poison.raw and NOT_UTF8 in stored
    else:
        assert stored[:8] == (1).to_bytes(8, "big") and stored[16:] == poison.raw[16:]
    assert enriched_ids(ns).count(poison.around[0]) == 1
    assert enriched_ids(ns).count(poison.around[1]) == 1
    assert worker.metric("cityops_unparseable_batches_total", topic=ns.name(INCIDENTS),
                         kind=poison.kind) == 1.0
    assert worker.process is not None and worker.process.poll() is None
    wait_until(lambda: committed_offsets(ns, worker.app_id).get(poison.partition) == 3, 30,
         "the commit past the poison")


def test_every_accepted_compression_from_a_java_partner_is_processed(
    worker: Worker, ns: Namespace
) -> None:
    sent: list[str] = []
    for compression in ("none", "gzip", "lz4", "snappy", "zstd"):
        records = [valid(0, f"{compression}-{i}") for i in range(3)]
        java_send(ns.bootstrap, ns.name(INCIDENTS), [r for _, r in records], compression)
        sent.extend(event_id for event_id, _ in records)
    wait_until(lambda: set(sent) <= set(enriched_ids(ns)), 60, "every compressed event enriched")
    ids = enriched_ids(ns)
    assert sorted(i for i in ids if i in set(sent)) == sorted(sent)
    assert not [d for d in _dead_letters(ns) if d["original_partition"] == 0]
    assert worker.process is not None and worker.process.poll() is None


def test_an_aborted_transaction_is_never_counted(worker: Worker, ns: Namespace) -> None:
    topic = ns.name(INCIDENTS)
    committed = [valid(1, f"txn-committed-{i}") for i in range(3)]
    aborted = [valid(1, f"txn-aborted-{i}") for i in range(2)]
    plain = [valid(1, f"txn-plain-{i}") for i in range(2)]
    java_send(ns.bootstrap, topic, [r for _, r in committed], "lz4", mode="commit")
    java_send(ns.bootstrap, topic, [r for _, r in aborted], "lz4", mode="abort")
    java_send(ns.bootstrap, topic, [r for _, r in plain], "lz4")
    expected = sorted(event_id for event_id, _ in committed + plain)
    # offsets: 3 committed, marker, 2 aborted, marker, 2 plain
    assert end_offsets(ns)[1] == 9
    wait_until(lambda: committed_offsets(ns, worker.app_id).get(1) == 9, 60,
         "the commit at the end of the partition")
    time.sleep(8)  # longer than a hole may last (runtime.offsets.HEAL_AFTER_S): no replay
    aborted_ids = {event_id for event_id, _ in aborted}
    ids = [i for i in enriched_ids(ns) if i in set(expected) | aborted_ids]
    assert sorted(ids) == expected
    assert worker.metric("cityops_events_consumed_total", topic=topic) is not None
    assert not [d for d in _dead_letters(ns) if d["original_partition"] == 1]
    assert committed_offsets(ns, worker.app_id)[1] == 9


def test_one_worker_consumed_exactly_what_it_should(
    worker: Worker, ns: Namespace, poisons: dict[str, Poison]
) -> None:
    """After the tests above: every valid record consumed once (no replay), poison not."""
    # 2 valid per poison case, 15 compressed, 3 committed + 2 plain
    wait_until(lambda: worker.metric("cityops_events_consumed_total",
                               topic=ns.name(INCIDENTS)) == 2 * len(CASES) + 15 + 5, 30,
         "consumed count")
    assert worker.metric("cityops_events_rejected_total", topic=ns.name(INCIDENTS),
                         stage="DECODE", reason="unparseable_record") == len(CASES)
    assert committed_offsets(ns, worker.app_id) == end_offsets(ns)


# -- two workers: a poison record does not bounce between them ------------------------------

@pytest.fixture(scope="module")
def ns2(broker: str) -> Namespace:
    return TWO.create(broker)


@pytest.fixture(scope="module")
def two_workers(ns2: Namespace, tmp_path_factory: pytest.TempPathFactory,
                artifacts_dir: Path) -> Iterator[list[Worker]]:
    app_id = f"partner2-{uuid.uuid4().hex[:8]}"
    workers = []
    try:
        for n in (1, 2):
            log = artifacts_dir / f"partner-records-worker-{n}.log"
            log.unlink(missing_ok=True)
            worker = ns2.worker(app_id, log, tmp_path_factory.mktemp(f"partner2-{n}")).start()
            workers.append(worker)
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def _group_is_stable(ns: Namespace, app_id: str) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=ns.bootstrap)
    try:
        group = admin.describe_groups([app_id])[app_id]
    finally:
        admin.close()
    return bool(group["group_state"] == "Stable" and len(group["members"]) == 2)


def test_with_two_workers_a_poison_record_is_dead_lettered_once(
    two_workers: list[Worker], ns2: Namespace
) -> None:
    app_id = two_workers[0].app_id
    wait_until(lambda: _group_is_stable(ns2, app_id), 60, "both workers in a stable group")
    time.sleep(3)  # both through their first assignment
    topic = ns2.name(INCIDENTS)
    before = [valid(p, f"two-before-{p}") for p in range(6)]
    after = [valid(p, f"two-after-{p}") for p in range(6)]
    java_send(ns2.bootstrap, topic, [r for _, r in before], "zstd")
    poisoned = {p: send_non_utf8_header(ns2.bootstrap, topic, p, b"poison", b"v")[1]
                for p in (0, 3)}
    java_send(ns2.bootstrap, topic, [r for _, r in after], "snappy")
    expected = sorted(event_id for event_id, _ in before + after)

    wait_until(lambda: sorted(r["event"]["event_id"] for r in ns2.read(INCIDENTS_ENRICHED))
         == expected, 90, "every valid record enriched")
    wait_until(lambda: committed_offsets(ns2, app_id) == end_offsets(ns2), 60,
         "commits at the end of every partition")
    time.sleep(8)  # longer than a hole may last: nothing is read again
    dead = [(d["original_partition"], d["original_offset"], d["reason"])
            for d in ns2.read(DEAD_LETTERS)]
    assert sorted(dead) == [(p, o, "unparseable_record") for p, o in sorted(poisoned.items())]
    assert sorted(r["event"]["event_id"] for r in ns2.read(INCIDENTS_ENRICHED)) == expected
    assert metric_sum(two_workers, "cityops_unparseable_batches_total", topic=topic,
                      kind="invalid_utf8") == 2
    assert metric_sum(two_workers, "cityops_events_consumed_total", topic=topic) == 12
    assert all(w.process is not None and w.process.poll() is None for w in two_workers)
    assert committed_offsets(ns2, app_id) == end_offsets(ns2)
