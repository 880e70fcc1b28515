"""Ward state and situations: the stateful half of the worker, as Faust wiring.

One agent reads the enriched topics (all keyed by kelurahan code, co-partitioned with the
`ward_state` table) in batches. What happens to a ward is decided by the pure step in
`processors/ward_step.py`: each event is folded into its ward's state, and at the end of the
batch every ward that changed is evaluated once, publishing a SituationEvent when what an
operator would see changed. This module only loads and stores wards, schedules the steps and
sends what they return. The state lives in a Faust table backed by a changelog topic, so a
restarted worker recovers it; because Faust is at-least-once, a replayed event is recognised by
its `event_id` inside that same state value and changes nothing.

A batch is what has arrived, up to `WorkerSettings.ward_batch` events, waiting at most
`ward_batch_within_s` (0.1 s by default): that window is the latency a situation may gain
(docs/runtime.md). The clock tick re-evaluates at wall-clock time so windows and horizons roll
forward when no event comes, and emits the periodic snapshot. The leader worker rolls ward
situations up to kecamatan and city.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from core.rejections import rejection_of
from core.vocabulary import CITY_CODE, CITY_NAME, level_rank
from processors import ward_step
from processors.dead_letters import ward_source
from processors.event_order import MARK_HEADER, WatermarkHolds, decode_mark
from processors.operations import acknowledge_clock, completed_clocks
from processors.records import read_action, read_enriched
from processors.situation import (
    ResponseTotals,
    WardAssetCounts,
    asset_counts_by_ward,
    encode_situation,
    rollup,
    situation_changed,
)
from processors.state import IncidentKey, WardState, evict_oldest_event_ids
from processors.thresholds import DEFAULT_THRESHOLDS_PATH, Thresholds
from processors.ward_step import WardEntry, jsonable
from schemas.codec import encode
from streams.context import STATE_RECORD_MAX_BYTES, WorkerContext
from streams.liveness import WardLiveness
from topics import catalog
from topics.event_types import EVENT_TYPES, EventType

log = logging.getLogger(__name__)

#: Longest a batch waits for this worker's copy of the situations topic to catch up after an
#: assignment (issue 12, hole 7): long enough for a normal catch-up (well under a second), short
#: enough that a stuck reader delays situations instead of stopping them.
CATCH_UP_TIMEOUT_S = 5.0
_RECEIPT_PARTITIONS = list(range(catalog.ACTION_RECEIPTS.partitions))
_PARTITIONER = DefaultPartitioner()


def receipt_partition(key: bytes) -> int:
    """The partition of an action's receipt (the producer's murmur2 of the action id; not
    cached like the ward partitions: every action id is new)."""
    return int(_PARTITIONER(key, _RECEIPT_PARTITIONS, _RECEIPT_PARTITIONS))

#: A hop whose low watermark was not read on a channel for this long (wall clock) no longer
#: holds the wards of that channel back (a stopped or killed worker's hop; docs/rules.md).
HOLD_EXPIRY_S = 15.0
#: How often owned wards move up to what the holds allow when no record comes (the hold of a
#: hop that went quiet expires; docs/rules.md).
RELEASE_INTERVAL_S = 1.0

#: A ward's serialised state is kept under this; above it the oldest dedupe ids are evicted.
STATE_TARGET_BYTES = 6 * 1024 * 1024
#: Rough JSON bytes per remembered event id ("<uuid>", ) and per other record, to decide
#: cheaply when a ward is big enough for its exact size to be worth measuring.
_ID_BYTES = 40
_RECORD_BYTES = 120


@dataclass
class OwnedWard(WardEntry):
    """A ward whose partition this worker processes, kept deserialised between batches."""

    partition: int = -1

    def to_table(self) -> dict[str, Any]:
        value = super().to_table()
        value["partition"] = self.partition
        return value

    @classmethod
    def from_table(cls, value: Mapping[str, Any]) -> OwnedWard:
        entry = WardEntry.from_table(value)
        return cls(**vars(entry), partition=int(value.get("partition", -1)))


class WardAggregator:
    def __init__(self, context: WorkerContext) -> None:
        self.context = context
        self.app = context.app
        self.metrics = context.metrics
        self.references = context.references
        self.situations_topic = context.topics.name(catalog.SITUATIONS)
        #: Enriched topic (deployed name) -> the event type it carries.
        self.types_by_topic: dict[str, EventType] = {
            context.topics.name(event_type.enriched): event_type for event_type in EVENT_TYPES
        }
        #: Every enriched topic is co-partitioned with the table: any one tells which wards
        #: this worker owns.
        self._ownership_topic = context.topics.name(EVENT_TYPES[0].enriched)
        #: Operator actions (issue 14): keyed and partitioned like the enriched topics, read by
        #: the same agent, so a ward's actions and events fold in one order.
        self.actions_topic = context.topics.name(catalog.OPERATOR_ACTIONS)
        #: Receipts of the batch's actions (issue 24), sent after its situations so the board
        #: that waits for one has the situation that shows the action on its way already.
        self.receipts_topic = context.topics.name(catalog.ACTION_RECEIPTS)
        self._receipts: list[tuple[bytes, bytes]] = []
        #: Events applied since the start (the liveness watch's sign of progress).
        self.applied_total = 0
        self.liveness = WardLiveness(context, lambda: self.applied_total, self.types_by_topic)
        self.table = self.app.Table(
            "ward_state", default=None, partitions=context.topics.ward_partitions,
            key_type=str, help="Per-kelurahan state, situation and sequence (JSON).",
            extra_topic_configs={"max.message.bytes": str(STATE_RECORD_MAX_BYTES),
                                 **context.settings.catalog.replication_configs},
        )
        self.owned: dict[str, OwnedWard] = {}
        self.thresholds_path = context.settings.thresholds_path or DEFAULT_THRESHOLDS_PATH
        self.thresholds = Thresholds.load(self.thresholds_path)
        self._thresholds_mtime = self._mtime()
        self._asset_counts: dict[str, WardAssetCounts] = {}
        self._asset_version = -1
        self._rollups: dict[str, dict[str, Any]] = {}
        # Wards changed since their state was last written to the table.
        self._dirty: set[str] = set()
        #: Held from a situation's evaluation (which takes its sequence number) until it is in
        #: the producer: the ward agent and the timers (release every second, clock, rollups)
        #: publish from concurrent tasks, and a send that waits (for metadata or room in the
        #: producer's batch) could otherwise be overtaken by a later sequence of the same scope
        #: (seen in the 2-worker chaos run: sequence 27 written after 28).
        self._publishing = asyncio.Lock()
        self._aggregated: dict[tuple[str, str], Any] = {}
        # Set at start and at every assignment: the situations view must be read to its end
        # before a ward taken over (or a rollup) publishes again (`_caught_up`).
        self._stale = True
        self._catch_up: asyncio.Future[None] | None = None
        #: The upstream hops' low watermarks per enriched (topic, partition) (issue 26).
        self.holds: WatermarkHolds[tuple[str, int]] = WatermarkHolds(HOLD_EXPIRY_S)
        #: The offset of the last record read per enriched (topic, partition).
        self._read: dict[tuple[str, int], int] = {}
        #: Each partition's hold as the batch began (computed once per batch: a hold from
        #: earlier marks is lower, never unsafe; `release` at the batch's end uses fresh ones).
        self._batch_holds: dict[int, int | None] = {}

    # -- wiring ------------------------------------------------------------------------------

    def wire(self) -> None:
        self.liveness.wire()
        enriched = [self.context.raw_topics[name]
                    for name in (*self.types_by_topic, self.actions_topic)]
        source = self.app.topic(
            *(topic.get_topic_name() for topic in enriched),
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
        )
        self.app.agent(source, name="cityops.ward_state")(self._agent)
        self.app.sensors.add(_FlushBeforeCommit(self))
        async def rollup_tick() -> None:
            # a wrapper without parameters: Faust passes the app to a timer that takes one,
            # which would have landed in `snapshot`
            await self.rollups()

        self.app.timer(self.context.settings.rollup_interval_s)(rollup_tick)
        self.app.timer(RELEASE_INTERVAL_S)(self.release_tick)
        if self.context.settings.snapshot_interval_s > 0:
            self.app.timer(self.context.settings.snapshot_interval_s)(self.clock_tick)

        @self.app.on_partitions_revoked.connect
        async def _forget(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            # Keep what was processed since the last commit, and have it on the broker before
            # the rebalance completes: the next owner recovers the table from the changelog.
            self.flush()
            await self.app.producer.flush()
            self.owned.clear()
            self.holds.forget(list(self._read))
            self._read.clear()

        @self.app.on_partitions_assigned.connect
        async def _catch_up(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            self._stale = True
            assigned = args[0] if args else kwargs.get("assigned", ())
            self.context.backlog.assigned(
                tp for tp in assigned if tp.topic in self.types_by_topic)

    async def _agent(self, stream: faust.StreamT[bytes]) -> None:
        await self.references.wait_ready()
        settings = self.context.settings
        # Faust acks a batch's events only after this body handled it, so their offsets are
        # committed only once the situations they caused were handed to the producer.
        batches = cast(faust.Stream[bytes], stream).take_events(
            settings.ward_batch, within=settings.ward_batch_within_s)
        async for events in batches:
            await self._caught_up()
            touched: dict[str, OwnedWard] = {}
            self._batch_holds.clear()
            for event in events:
                await self.process(event, touched)
            self.release(touched)
            await self.publish_changes(touched)
            await self.send_receipts()
            self.context.backlog.applied_events(len(events))
            self.applied_total += len(events)

    async def _caught_up(self) -> None:
        """After a start or an assignment, wait until this worker's copy of the situations
        topic holds everything published before it: a ward or rollup taken over then continues
        from the highest sequence its previous owner published (`ward_step.resume`), which the
        changelog, written once per commit, may not have (issue 12, hole 7)."""
        if self._stale:
            self._stale = False
            self._catch_up = asyncio.ensure_future(self.references.situations.caught_up())
        if self._catch_up is None or self._catch_up.done():
            return
        # Bounded: a reader that cannot catch up (a broker restart, a stuck fetch) must not stop
        # the wards. Past the bound the worker goes on from what it has read, as before hole 7
        # was closed, and says so; the catch-up keeps running for the next batch.
        try:
            await asyncio.wait_for(asyncio.shield(self._catch_up), CATCH_UP_TIMEOUT_S)
        except TimeoutError:
            self.metrics.catch_up_timeouts.inc()
            log.warning("situations topic not read to its end in %.0f s; a ward taken over now "
                        "may repeat sequence numbers its previous owner published",
                        CATCH_UP_TIMEOUT_S)

    # -- event-time order (issue 26) ------------------------------------------------------------

    def _mark(self, message: Any) -> None:
        """Remember the low watermark the record's hop sent with it, on its channel."""
        channel = (message.topic, message.partition)
        self._read[channel] = message.offset
        headers = message.headers
        if not headers:
            return
        items = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in items:
            if name == MARK_HEADER and value is not None:
                mark = decode_mark(value)
                if mark is not None:
                    self.holds.seen(channel, mark[0], mark[1], time.monotonic())
                return

    def _lagging(self, channel: tuple[str, int]) -> bool:
        """The channel still has records this worker has not read (the hold counts only
        those: a channel read to its end holds nothing back)."""
        try:
            end = self.app.consumer.highwater(TP(*channel))
        except Exception:  # not assigned (any more) or not fetched yet
            return False
        return end is not None and self._read.get(channel, -1) + 1 < end

    def hold(self, partition: int) -> int | None:
        """The event time the wards of `partition` may advance to (None: no bound)."""
        return self.holds.hold([(topic, partition) for topic in self.types_by_topic],
                               self._lagging, time.monotonic())

    def release(self, touched: dict[str, OwnedWard]) -> None:
        """Move each owned ward's watermark as far as its partition's hold now allows; a ward
        whose watermark moved is evaluated again."""
        holds: dict[int, int | None] = {}
        held = 0
        for code, entry in self.owned.items():
            if entry.partition not in holds:
                holds[entry.partition] = self.hold(entry.partition)
            if ward_step.release(entry, holds[entry.partition], self.thresholds):
                touched[code] = entry
                self._dirty.add(code)
            state = entry.state
            if state.frontier is not None and state.watermark is not None:
                held = max(held, state.frontier - state.watermark)
        self.metrics.ward_watermark_held.set(held / 1000)

    async def release_tick(self) -> None:
        """Wards held back by a hop that went quiet (a drain's last records) move up once its
        marks expire, without waiting for the next record or the snapshot tick; a ward taken
        over with a held watermark (recovered from the changelog) too, event or not."""
        await self._caught_up()
        self._adopt_stored_wards()
        released: dict[str, OwnedWard] = {}
        self.release(released)
        if released:
            await self.publish_changes(released)

    def _resumed(self, code: str, entry: OwnedWard) -> OwnedWard:
        ward_step.resume(entry, self.references.published_sequences.get(code, 0),
                         self.references.situations.values.get(code))
        return entry

    def flush(self) -> None:
        """Write each ward changed since the last flush once to the table and its changelog.

        Runs right before Faust computes the offsets to commit (`_FlushBeforeCommit`) and when
        partitions are revoked, instead of after every event: writing a ward's whole state per
        event was the largest single cost (20-45 % of a worker's CPU, growing with the state).
        Synchronous on purpose, so no event can be processed between this flush and the
        offset computation that follows it.
        """
        dirty, self._dirty = self._dirty, set()
        for code in dirty:
            entry = self.owned.get(code)
            if entry is None or entry.partition < 0:
                continue
            value = self._fit(code, entry)
            # What `table[code] = value` does, with the ward's own partition: Faust would take
            # it from the current event, and there is none (or one of another ward) here.
            self.table.data[code] = value
            self.table.send_changelog(entry.partition, code, value)

    def _fit(self, code: str, entry: OwnedWard) -> dict[str, Any]:
        """The ward's table value, kept under STATE_TARGET_BYTES by evicting old event ids.

        A record the changelog refuses would fail the commit again and again; a shorter dedupe
        memory for one very busy ward only risks counting a late partner retry twice, and
        `cityops_dedupe_ids_evicted_total` shows that it happened.
        """
        state = entry.state
        rough = (_ID_BYTES * len(state.seen) + _RECORD_BYTES * (
            len(state.incidents) + len(state.lamps) + len(state.containers) + len(state.cabinets)))
        value = entry.to_table()
        if rough < STATE_TARGET_BYTES // 2:
            return value
        size = len(json.dumps(value))
        while size > STATE_TARGET_BYTES:
            wanted = (size - STATE_TARGET_BYTES) // _ID_BYTES + 1
            evicted = evict_oldest_event_ids(state, wanted)
            if not evicted:
                log.error("ward %s: state is %d bytes without any event id left to evict; its "
                          "changelog write may be refused (limit %d)", code, size,
                          STATE_RECORD_MAX_BYTES)
                return value
            self.metrics.dedupe_evicted.labels(code).inc(evicted)
            log.warning("ward %s: state reached %d bytes; evicted its %d oldest event ids "
                        "(%d remembered)", code, size, evicted, len(state.seen))
            value = entry.to_table()
            size = len(json.dumps(value))
        return value

    # -- per event -----------------------------------------------------------------------------

    def asset_counts(self, ward_code: str) -> WardAssetCounts:
        assets = self.references.assets
        if self._asset_version != assets.version:
            self._asset_counts = asset_counts_by_ward(assets.values.values())
            self._asset_version = assets.version
        return self._asset_counts.get(ward_code, WardAssetCounts(0, 0))

    def _owned(self, ward_code: str, partition: int) -> OwnedWard:
        entry = self.owned.get(ward_code)
        if entry is None:
            stored = self.table.get(ward_code)
            entry = self._resumed(ward_code, OwnedWard.from_table(stored) if stored
                                  else OwnedWard(WardState(), partition=partition))
            entry.partition = partition
            self.owned[ward_code] = entry
        return entry

    async def process_action(self, event: faust.EventT[bytes],
                             touched: dict[str, OwnedWard]) -> None:
        """Fold one operator action into its ward; one that cannot apply (a role that may not
        take it, a missing target, an unknown ward) becomes a dead letter with the reason."""
        message = event.message
        action: dict[str, Any] | None = None
        try:
            wards = self.references.wards.values
            action = read_action(message.value, message.topic, wards)
            ward_code: str = action["ward_code"]
            ward = wards[ward_code]
            entry = self._owned(ward_code, message.partition)
            key = ((action["incident_source"], action["incident_id"])
                   if action["incident_source"] and action["incident_id"] else None)
            before = self._stopped_clocks(entry, key)
            was_acknowledged = entry.book.acknowledged()
            applied = ward_step.fold_action(entry, action, self.thresholds)
        except Exception as error:
            stage, reason = rejection_of(error)
            if reason == "processing_error":
                log.exception("operator action failed on %s@%d", message.topic, message.offset)
            await self.context.send_dead_letter(event, stage, reason, error)
            if action is not None:
                self._receipt(action, "REFUSED", reason, str(error), None)
            return
        self.metrics.operator_actions.labels(
            action["action"], "applied" if applied else "duplicate").inc()
        if applied:
            case = entry.book.cases.get(key) if key is not None else None
            self._receipt(action, "APPLIED", None, None,
                          case.version if case is not None else None)
        if entry.pending_events:
            touched[ward_code] = entry
        if applied:
            self._dirty.add(ward_code)
            self._observe_sla(ward, entry, key, before)
            sample = None if was_acknowledged else acknowledge_clock(entry.book,
                                                                     self.thresholds.sla)
            if sample is not None:
                self._observe_clock("acknowledge", str(ward["kecamatan_name"]), "none", *sample)

    def _receipt(self, action: Mapping[str, Any], outcome: str, reason: str | None,
                 message: str | None, case_version: int | None) -> None:
        """Remember the receipt of one action for `send_receipts`."""
        record = {"action_id": action["action_id"], "ward_code": action["ward_code"],
                  "outcome": outcome, "reason": reason, "message": message,
                  "case_version": case_version, "folded_at": datetime.now(UTC)}
        self._receipts.append((str(action["action_id"]).encode(),
                               encode(catalog.ACTION_RECEIPTS.value_schema, record)))

    async def send_receipts(self) -> None:
        """Send the receipts of the batch's actions (one topic partition per action id)."""
        receipts, self._receipts = self._receipts, []
        for key, value in receipts:
            await self.context.send_fast(self.receipts_topic, key, value,
                                         receipt_partition(key))

    def _stopped_clocks(self, entry: OwnedWard, key: IncidentKey | None) -> set[str]:
        """Names of the incident's SLA clocks already stopped (nothing for no incident)."""
        rec = entry.state.incidents.get(key) if key is not None else None
        if rec is None:
            return set()
        return {clock for clock, _, _ in completed_clocks(
            rec, entry.book.cases.get(key) if key else None, self.thresholds.sla)}

    def _observe_sla(self, ward: Mapping[str, Any], entry: OwnedWard, key: IncidentKey | None,
                     before: set[str]) -> None:
        """Observe each SLA clock the last fold stopped (the KPI samples)."""
        rec = entry.state.incidents.get(key) if key is not None else None
        if rec is None or key is None:
            return
        case = entry.book.cases.get(key)
        agency = (case.assigned_agency if case else None) or "none"
        kecamatan = str(ward["kecamatan_name"])
        for clock, seconds, limit in completed_clocks(rec, case, self.thresholds.sla):
            if clock not in before:
                self._observe_clock(clock, kecamatan, agency, seconds, limit)

    def _observe_clock(self, clock: str, kecamatan: str, agency: str, seconds: float,
                       limit: float) -> None:
        self.metrics.sla_seconds.labels(clock, kecamatan, agency).observe(seconds)
        self.metrics.sla_clocks.labels(
            clock, kecamatan, agency, "within" if seconds <= limit else "breached").inc()

    async def process(self, event: faust.EventT[bytes], touched: dict[str, OwnedWard]) -> None:
        """Fold one enriched event into its ward; a failure becomes a dead letter."""
        message = event.message
        topic = message.topic
        if topic == self.actions_topic:
            await self.process_action(event, touched)
            return
        incident_key: IncidentKey | None = None
        before: set[str] = set()
        self._mark(message)
        try:
            event_type = self.types_by_topic[topic]
            enriched = read_enriched(message.value, topic, event_type.enriched_schema)
            ward_code: str = enriched["ward_code"]
            ward = self.references.wards.values.get(ward_code)
            if ward is None:
                raise LookupError(f"ward {ward_code} vanished from the reference data")
            entry = self._owned(ward_code, message.partition)
            if event_type.kind == "incident":
                incident_key = (enriched["event"]["source_system"],
                                enriched["event"]["incident_id"])
                before = self._stopped_clocks(entry, incident_key)
            dispatch_before = (entry.state.dispatch_count, entry.state.dispatch_ms_sum)
            on_scene_before = (entry.state.on_scene_count, entry.state.on_scene_ms_sum)
            partition = message.partition
            if partition not in self._batch_holds:
                self._batch_holds[partition] = self.hold(partition)
            result = ward_step.fold(entry, event_type.kind, enriched, self.thresholds,
                                    self._batch_holds[partition])
        except Exception as error:
            stage, reason = rejection_of(error)
            if reason == "processing_error":
                log.exception("ward state update failed on %s@%d", topic, message.offset)
            await self.context.send_dead_letter(event, stage, reason, error)
            return
        counter = self._aggregated.get((topic, result.status))
        if counter is None:
            counter = self._aggregated[(topic, result.status)] = (
                self.metrics.aggregated.labels(topic, result.status))
        counter.inc()
        # A ward recovered with a change its previous owner folded but never evaluated is
        # published too, even if this event was a replayed duplicate.
        if entry.pending_events:
            touched[ward_code] = entry
        if not result.changed:
            return
        self._dirty.add(ward_code)
        self._observe_response_times(ward, entry.state, dispatch_before, on_scene_before)
        self._observe_sla(ward, entry, incident_key, before)

    async def publish_changes(self, touched: Mapping[str, OwnedWard]) -> None:
        """Evaluate each ward the batch changed once, and send what an operator would see."""
        now = datetime.now(UTC)
        wards = self.references.wards.values
        for code, entry in touched.items():
            if code in wards:
                self._dirty.add(code)  # its pending change is cleared (its sequence moves)
                await self._step(ward_step.flush, code, entry, wards[code], now)

    async def _step(self, step: Callable[..., ward_step.Publication | None], code: str,
                    entry: OwnedWard, ward: dict[str, Any], now: datetime) -> None:
        """One ward's `flush` or `tick`, sent; a failure stays this ward's (below)."""
        async with self._publishing:
            try:
                publication = step(entry, ward, self.asset_counts(code), self.thresholds, now)
            except Exception as error:
                failed: Exception | None = error
            else:
                failed = None
                await self.send_situation(publication, now)
        if failed is not None:
            await self._situation_failed("KELURAHAN", code, failed)

    async def _situation_failed(self, scope: str, code: str, error: Exception) -> None:
        """One scope's situation could not be evaluated or encoded (e.g. over its byte
        budget): a dead letter naming the scope and a metric; the scope keeps its last good
        situation and every other ward, and the clock, carry on (issue 12, hole 1)."""
        log.error("situation of %s %s failed: %r", scope, code, error)
        self.metrics.situation_failures.labels(scope).inc()
        await self.context.send_letter(
            ward_source(self.situations_topic, self.context.situation_partition(code), code),
            "PROCESS", "situation_failed", error)

    def _observe_response_times(self, ward: dict[str, Any], state: WardState,
                                dispatch_before: tuple[int, int],
                                on_scene_before: tuple[int, int]) -> None:
        kecamatan = ward["kecamatan_name"]
        if state.dispatch_count == dispatch_before[0] + 1:
            self.metrics.dispatch_time.labels(kecamatan).observe(
                (state.dispatch_ms_sum - dispatch_before[1]) / 1000)
        if state.on_scene_count == on_scene_before[0] + 1:
            self.metrics.on_scene_time.labels(kecamatan).observe(
                (state.on_scene_ms_sum - on_scene_before[1]) / 1000)

    async def send_situation(self, publication: ward_step.Publication | None,
                             now: datetime) -> None:
        if publication is None:
            return
        code = publication.code
        await self.context.send_fast(self.situations_topic, code.encode(), publication.value,
                                      self.context.situation_partition(code))
        self.metrics.situations.labels("KELURAHAN", publication.kind).inc()
        if publication.ingested_at is not None:
            self.metrics.ingest_to_situation.observe(
                max(0.0, (now - publication.ingested_at).total_seconds()))

    # -- timers ------------------------------------------------------------------------------

    async def clock_tick(self) -> None:
        """Re-evaluate owned wards at wall-clock time and emit the periodic snapshot."""
        await self._caught_up()
        now = datetime.now(UTC)
        self._adopt_stored_wards()
        released: dict[str, OwnedWard] = {}
        self.release(released)
        await self.publish_changes(released)
        wards = self.references.wards.values
        for code, entry in list(self.owned.items()):
            if code in wards:
                episode = (entry.book.raised_level, entry.book.raised_at)
                await self._step(ward_step.tick, code, entry, wards[code], now)
                if (entry.book.raised_level, entry.book.raised_at) != episode:
                    # time alone raised (an SLA clock) or calmed the ward: the episode the next
                    # acknowledgement is measured against must survive a restart
                    self._dirty.add(code)
        if self.app.is_leader():
            await self.rollups(snapshot=True)

    def _adopt_stored_wards(self) -> None:
        """Take over table entries of partitions this worker owns but saw no event for yet."""
        assignor = self.app.assignor
        owned_partitions = {
            tp.partition for tp in assignor.assigned_actives()
            if tp.topic == self._ownership_topic
        }
        for code, value in list(self.table.items()):
            if code in self.owned or not value:
                continue
            if int(value.get("partition", -1)) in owned_partitions:
                self.owned[code] = self._resumed(code, OwnedWard.from_table(value))

    async def rollups(self, snapshot: bool = False) -> None:
        """On the leader: kecamatan and city situations from the latest ward situations."""
        if not self.app.is_leader():
            self.metrics.leader.set(0)
            return
        self.metrics.leader.set(1)
        await self._caught_up()
        views = self.references
        wards = [s for s in views.situations.values.values() if s["scope"] == "KELURAHAN"]
        if not wards:
            return
        now = datetime.now(UTC)
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for situation in wards:
            groups[("KECAMATAN", situation["kecamatan_code"])].append(situation)
        groups[("CITY", CITY_CODE)] = wards
        names = {w["kecamatan_code"]: w["kecamatan_name"] for w in views.wards.values.values()}
        for (scope, code), members in sorted(groups.items()):
            name = CITY_NAME if scope == "CITY" else names.get(code, code)
            try:
                await self._emit_rollup(scope, code, name, members, now, snapshot)
            except Exception as error:
                await self._situation_failed(scope, code, error)
        self._set_gauges(wards)

    async def _emit_rollup(self, scope: str, code: str, name: str,
                           members: list[dict[str, Any]], now: datetime, snapshot: bool) -> None:
        async with self._publishing:  # sequence taken and record sent together (see __init__)
            await self._emit_rollup_locked(scope, code, name, members, now, snapshot)

    async def _emit_rollup_locked(self, scope: str, code: str, name: str,
                                  members: list[dict[str, Any]], now: datetime,
                                  snapshot: bool) -> None:
        # A leader that just took over (or took back) a rollup continues from the highest
        # sequence published for it by any leader, never from its own older one.
        published = self.references.published_sequences.get(code, 0)
        previous = self._rollups.get(code)
        if previous is None or previous["sequence"] < published:
            known = self.references.situations.values.get(code)
            previous = jsonable(known) if known else None
        sequence = max((previous or {}).get("sequence", 0), published) + 1
        totals = {m["scope_code"]: _totals(m) for m in members}
        situation = rollup(scope, code, name, members, now, sequence, totals_by_ward=totals,
                           kind="CHANGE", max_reasons=self.thresholds.rollup_max_reasons)
        situation.update(_counts(sum(totals.values(), ResponseTotals())))
        comparable = jsonable(situation)
        changed = situation_changed(previous, comparable)
        if not changed and not snapshot:
            return
        if not changed:
            situation["kind"] = comparable["kind"] = "SNAPSHOT"
        value = encode_situation(situation)  # before the rollup moves on: see ward_step
        self._rollups[code] = comparable
        await self.context.raw_topic(catalog.SITUATIONS).send(key=code.encode(), value=value)
        self.metrics.situations.labels(scope, situation["kind"]).inc()
        if scope == "KECAMATAN":
            self._set_kecamatan_gauges(situation)

    def _set_gauges(self, wards: list[dict[str, Any]]) -> None:
        for s in wards:
            self.metrics.ward_level.labels(s["scope_code"], s["scope_name"],
                                           s["kecamatan_name"]).set(level_rank(s["level"]))
            self.metrics.sla_overdue.labels(s["scope_code"], s["scope_name"],
                                            s["kecamatan_name"]).set(s.get("sla_overdue") or 0)

    def _set_kecamatan_gauges(self, s: dict[str, Any]) -> None:
        name = s["scope_name"]
        m = self.metrics
        m.kecamatan_level.labels(name).set(level_rank(s["level"]))
        for category in _CATEGORIES:
            m.open_incidents.labels(name, category).set(
                s["open_incidents_by_category"].get(category, 0))
        m.lamps_out.labels(name).set(s["lamps_out"])
        ratio = s["lamps_working_ratio"]
        m.lamps_working_ratio.labels(name).set(1.0 if ratio is None else ratio)
        m.containers_full.labels(name).set(s["containers_full"])

    async def reload_thresholds(self) -> None:
        """Re-read the thresholds file when it changed; a broken file keeps the old values."""
        mtime = self._mtime()
        if mtime == self._thresholds_mtime:
            return
        self._thresholds_mtime = mtime
        try:
            self.thresholds = Thresholds.load(self.thresholds_path)
        except Exception as error:
            log.error("thresholds file %s not reloaded: %s", self.thresholds_path, error)
            self.metrics.thresholds_reloads.labels("error").inc()
            return
        log.info("thresholds reloaded from %s", self.thresholds_path)
        self.metrics.thresholds_reloads.labels("ok").inc()

    def _mtime(self) -> float | None:
        try:
            return Path(self.thresholds_path).stat().st_mtime
        except OSError:
            return None


class _FlushBeforeCommit(faust.Sensor):
    """Writes changed ward state to the changelog before any offset commit.

    Faust calls `on_commit_initiated` synchronously at the start of every commit
    (`Consumer.force_commit`), before it computes which offsets to commit; it then flushes the
    producer and only then commits. So every event whose offset gets committed has its ward
    state in the changelog first: at-least-once holds (docs/performance.md).
    """

    def __init__(self, aggregator: WardAggregator) -> None:
        super().__init__()
        self.aggregator = aggregator

    def on_commit_initiated(self, consumer: Any) -> Any:
        self.aggregator.flush()
        return None


_CATEGORIES = ("TRAFFIC_ACCIDENT", "FIRE", "FLOOD", "CRIME", "PUBLIC_ORDER", "MEDICAL",
               "INFRASTRUCTURE_DAMAGE", "OTHER")


def _counts(totals: ResponseTotals) -> dict[str, int]:
    return {"dispatch_count": totals.dispatch_count, "on_scene_count": totals.on_scene_count}


def _totals(situation: dict[str, Any]) -> ResponseTotals:
    """Sums behind a ward's mean response times, rebuilt from mean x count."""
    dispatch = situation.get("mean_dispatch_seconds")
    on_scene = situation.get("mean_on_scene_seconds")
    dispatch_count = int(situation.get("dispatch_count") or 0)
    on_scene_count = int(situation.get("on_scene_count") or 0)
    return ResponseTotals(
        round((dispatch or 0.0) * dispatch_count * 1000), dispatch_count,
        round((on_scene or 0.0) * on_scene_count * 1000), on_scene_count,
    )


