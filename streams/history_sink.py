"""The history sink (issue 21): Kafka topics into the history store, at least once, no doubles.

A plain kafka-python consumer in its own group (`<app id>-history`), not a Faust agent and not
aiokafka: the loop is poll -> decode -> one database transaction -> commit the offsets of that
batch, all synchronous, with nothing to overlap (docs/history.md says why, and why not a Kafka
Connect JDBC sink). The order is what makes a kill -9 harmless:

- the offsets of a batch are committed only after its transaction committed, so a kill before
  the database commit re-reads the batch (nothing lost), and
- every row is keyed by its record's topic, partition and offset (`INSERT ... ON CONFLICT DO
  NOTHING`), so a kill between the database commit and the offset commit re-reads a batch the
  store already holds and writes nothing twice.

The topics are read with `isolation.level=read_committed`, like the workers read theirs. A
record the sink cannot decode is stored in `rejected_records` with its position and reason
(the worker has already dead-lettered anything a partner sent; this is the sink's own record
that it skipped something), and the batch goes on.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata

from core.connection import kafka_python_security
from processors.history_rows import REJECTED, Position, Table, rejected_row, row_of
from schemas.codec import CodecError, decode
from streams.history_store import HistoryStore
from topics.catalog import (
    INCIDENTS_ENRICHED,
    NEIGHBOURHOOD_INDICATORS,
    OPERATOR_ACTIONS,
    RT_VALIDATIONS,
    SITUATIONS,
    TopicCatalog,
    TopicSpec,
)

log = logging.getLogger(__name__)

#: The topics the store keeps, each read whole from its first record.
SINK_TOPICS: Final[tuple[TopicSpec, ...]] = (SITUATIONS, INCIDENTS_ENRICHED, OPERATOR_ACTIONS,
                                             RT_VALIDATIONS, NEIGHBOURHOOD_INDICATORS)
#: Written by workers only (docs/security.md): read without the partner checks, like the worker
#: reads its enriched topics. Operator actions are checked in full (the topic is not the
#: board's alone).
WORKER_SCHEMAS: Final = frozenset(spec.value_schema for spec in SINK_TOPICS
                                  if spec is not OPERATOR_ACTIONS)
#: Records per poll, and so at most per transaction.
MAX_BATCH: Final = 2_000
BATCH_VARIABLE: Final = "CITYOPS_HISTORY_BATCH"
SESSION_VARIABLE: Final = "CITYOPS_SESSION_TIMEOUT_S"
PURGE_VARIABLE: Final = "CITYOPS_HISTORY_PURGE_INTERVAL_S"
#: How often the sink applies the retention settings (UU 27/2022): at start, then hourly.
PURGE_INTERVAL_S: Final = 3600.0


def group_id(app_id: str | None = None) -> str:
    return f"{app_id or os.environ.get('CITYOPS_APP_ID', 'cityops')}-history"


@dataclass
class SinkStats:
    """What one run of the sink did; printed when it stops and read by the bench."""

    batches: int = 0
    records: int = 0
    inserted: int = 0
    rejected: int = 0
    per_table: dict[str, int] = field(default_factory=dict)


def batch_rows(records: Iterable[Any], schemas: Mapping[str, str], now_ms: int
               ) -> tuple[list[tuple[Table, dict[str, Any]]], int]:
    """The rows of one polled batch (kafka-python ConsumerRecords) and how many were rejected."""
    rows: list[tuple[Table, dict[str, Any]]] = []
    rejected = 0
    for record in records:
        at = Position(record.topic, record.partition, record.offset)
        schema = schemas[record.topic]
        if record.value is None:
            # A tombstone on a compacted topic: nothing to keep, but said so.
            rows.append((REJECTED, rejected_row(at, "tombstone (no value)", now_ms)))
            rejected += 1
            continue
        try:
            decoded = decode(record.value, expected=schema,
                             trusted=schema in WORKER_SCHEMAS).record
            rows.append(row_of(schema, decoded, at))
        except (CodecError, KeyError, TypeError, ValueError) as error:
            rows.append((REJECTED, rejected_row(at, f"{type(error).__name__}: {error}",
                                                now_ms)))
            rejected += 1
    return rows, rejected


class HistorySink:
    """One sink process: its consumer, its store and its loop."""

    def __init__(self, bootstrap: str, store: HistoryStore, app_id: str | None = None,
                 catalog: TopicCatalog | None = None, max_batch: int = MAX_BATCH,
                 purge_interval_s: float | None = None) -> None:
        self.store = store
        self.purge_interval_s = purge_interval_s
        self._purged_at: float | None = None
        self.catalog = catalog or TopicCatalog.from_env()
        self.schemas = {self.catalog.name(spec): spec.value_schema for spec in SINK_TOPICS}
        self.group = group_id(app_id)
        self.consumer = KafkaConsumer(
            *self.schemas, bootstrap_servers=bootstrap, group_id=self.group,
            client_id="cityops-history", enable_auto_commit=False,
            auto_offset_reset="earliest", isolation_level="read_committed",
            max_poll_records=max_batch,
            # As the workers' (README): how long the group waits for a killed sink before its
            # successor gets the partitions (kafka-python's own default is 45 s).
            session_timeout_ms=int(1000 * float(os.environ.get(SESSION_VARIABLE, "10"))),
            heartbeat_interval_ms=1000, **kafka_python_security())
        self.stats = SinkStats()
        self._stop = False

    def stop(self, *_: Any) -> None:
        self._stop = True

    def step(self, timeout_ms: int = 500) -> int:
        """One poll, one transaction, one offset commit. Returns the records handled."""
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        if not polled:
            return 0
        records = [record for batch in polled.values() for record in batch]
        rows, rejected = batch_rows(records, self.schemas, int(time.time() * 1000))
        inserted = self.store.write(rows)
        offsets = {TopicPartition(tp.topic, tp.partition):
                   OffsetAndMetadata(batch[-1].offset + 1, "", -1)
                   for tp, batch in polled.items()}
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as error:
            # The group rebalanced while the batch was written: its new owner reads it again
            # and finds every row stored (the position key), so nothing is lost or doubled.
            log.warning("history sink: offsets not committed (%s); the batch's new owner "
                        "will skip what is stored", error)
        self.stats.batches += 1
        self.stats.records += len(records)
        self.stats.inserted += inserted
        self.stats.rejected += rejected
        for table, _ in rows:
            self.stats.per_table[table.name] = self.stats.per_table.get(table.name, 0) + 1
        return len(records)

    def purge_when_due(self) -> None:
        """Apply the retention settings (`HistoryStore.purge`, itself audited) at the first
        loop and every `purge_interval_s` after; None or 0 never."""
        if not self.purge_interval_s:
            return
        now = time.monotonic()
        if self._purged_at is not None and now - self._purged_at < self.purge_interval_s:
            return
        self._purged_at = now
        for row in self.store.purge(int(time.time() * 1000)):
            if row["rows_purged"]:
                log.info("retention: %s %d (%s)", row["table_name"], row["rows_purged"],
                         row["what"])

    def lag(self) -> int:
        """Records on the assigned partitions not stored yet (0 when caught up)."""
        assigned = self.consumer.assignment()
        if not assigned:
            return -1
        ends = self.consumer.end_offsets(list(assigned))
        return sum(max(0, ends[tp] - self.consumer.position(tp)) for tp in assigned)

    def run(self, idle_exit_s: float | None = None,
            on_batch: Callable[[SinkStats], None] | None = None) -> SinkStats:
        """Until stopped (SIGTERM/SIGINT), or, with `idle_exit_s`, until caught up and idle
        that long."""
        idle_since = time.monotonic()
        while not self._stop:
            self.purge_when_due()
            handled = self.step()
            if handled:
                idle_since = time.monotonic()
                if on_batch is not None:
                    on_batch(self.stats)
            elif idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s \
                    and self.lag() == 0:
                break
        return self.stats

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def run_sink(bootstrap: str, url: str | None = None, app_id: str | None = None,
             idle_exit_s: float | None = None) -> SinkStats:
    """`cityops history sink`: create the tables, then store until SIGTERM or Ctrl-C."""
    store = HistoryStore.from_env(url)
    store.create_tables()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="cityops-history",
                             **kafka_python_security())
    try:
        store.bind_cluster(str(admin.describe_cluster()["cluster_id"]))
    finally:
        admin.close()
    sink = HistorySink(bootstrap, store, app_id,
                       max_batch=int(os.environ.get(BATCH_VARIABLE, MAX_BATCH)),
                       purge_interval_s=float(os.environ.get(PURGE_VARIABLE, PURGE_INTERVAL_S)))
    signal.signal(signal.SIGTERM, sink.stop)
    log.info("history sink: group %s, store %s", sink.group, store.describe())
    try:
        return sink.run(idle_exit_s=idle_exit_s)
    finally:
        sink.close()
