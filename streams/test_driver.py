"""The whole topology without a broker: raw bytes in; enriched records, situations and dead
letters out, through the same code the worker runs (as Kafka Streams' `TopologyTestDriver`).

Each piped record takes both hops the worker gives it: `processors.records.enrich_record`
(partner bytes to the enriched record and its bytes, as the enrich agents do), then
`processors.records.read_enriched` and `processors.ward_step.fold` (as the ward agent does).
`pipe_action` is an operator action on its topic (issue 14), folded as the ward agent folds it.
`end_batch` is the end of a ward agent batch (`ward_step.flush`), `tick` the clock
(`ward_step.tick`); with `batch=1` every pipe ends its batch, the per-event sequence.
`pipe_enriched` puts a record straight on an enriched topic (what a writer other than a worker
could put there). Besides the records, `Outputs` counts what the worker's metrics count where
a rule decides the number (fold outcomes, data-quality corrections). What is not here is what
needs Kafka: partitions, offsets and commits, rebalances, the changelog, the leader's rollups
and the metrics' wiring; those stay with the tests on the real broker, which also check that
a worker judges a corpus exactly as this driver does (tests/e2e/test_hostile_input.py,
tests/e2e/test_pipeline.py).

RT reports (issue 13) take the neighbourhood agents' two hops (`pipe_rt_report`): the screen
(`processors.neighbourhood.screen_report`: dead letter and REJECTED verdict) and the judgement
of the kelurahan's reports (`KelurahanReports.judge`, its state round-tripped through JSON as
the `neighbourhood_state` table stores it), then the kelurahan's and its RWs' indicators;
`neighbourhood_rollups` is the leader's kecamatan and city rollup.
"""

from __future__ import annotations

import json
import math
import random
import zlib
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.rejections import Rejection, rejection_of
from processors import ward_step
from processors.dead_letters import letter_for, source_record, ward_source
from processors.enrich import EnrichmentRules, ReferenceData, data_quality
from processors.event_order import PartitionMerge, WatermarkHolds
from processors.neighbourhood import (
    KelurahanReports,
    current_month,
    kelurahan_indicators,
    read_report,
    read_review,
    rejected_validation,
    review_validation,
    rollups,
    screen_report,
    screened_bytes,
    validation,
)
from processors.records import enrich_record, read_action, read_enriched
from processors.situation import WardAssetCounts, asset_counts_by_ward
from processors.state import WardState, to_ms
from processors.thresholds import Thresholds
from processors.ward_step import WardEntry
from topics import catalog
from topics.event_types import EVENT_TYPES, EventType, by_kind

DRIVER_ID = "test-driver"
SITUATIONS_TOPIC = catalog.SITUATIONS.name

PartnerRecord = tuple[str, bytes | None, bytes | None, str | None]
"""(kind, value, key, source) of one partner record, as `pipe` takes it."""


@dataclass
class Outputs:
    """Everything the topology wrote, in order, and what the worker counts in its metrics
    where a rule decides the count (tests assert the rule here, the metric's wiring on the
    broker)."""

    enriched: list[dict[str, Any]] = field(default_factory=list)
    situations: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    validations: list[dict[str, Any]] = field(default_factory=list)
    indicators: list[dict[str, Any]] = field(default_factory=list)
    rt_screened: list[bytes] = field(default_factory=list)
    """What the screen agent writes to the screened RT report topic, as bytes."""
    aggregated: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(enriched topic, fold outcome) -> events, as `cityops_events_aggregated_total`."""
    corrected: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(input topic, data-quality reason) -> events, as `cityops_events_corrected_total`."""


class TopologyTestDriver:
    """A worker's processing of one ward set, in memory and in call order."""

    def __init__(self, wards: Iterable[Mapping[str, Any]], assets: Iterable[Mapping[str, Any]],
                 thresholds: Thresholds | None = None, rules: EnrichmentRules | None = None,
                 batch: int = 1, neighbourhoods: Iterable[Mapping[str, Any]] = ()) -> None:
        asset_list = list(assets)
        self.reference = ReferenceData.build(wards, asset_list)
        self.thresholds = thresholds or Thresholds()
        self.rules = rules or EnrichmentRules()
        self.batch = batch
        self.entries: dict[str, WardEntry] = {}
        self.outputs = Outputs()
        self._in_batch = 0
        self._offsets: dict[str, int] = {}
        self._counts = asset_counts_by_ward(asset_list)
        self.neighbourhoods = {str(rt["rt_code"]): dict(rt) for rt in neighbourhoods}
        self._registered: dict[str, list[dict[str, Any]]] = {}
        for rt in self.neighbourhoods.values():
            self._registered.setdefault(rt["kelurahan_code"], []).append(rt)
        #: kelurahan code -> its KelurahanReports as JSON (what the worker's table holds).
        self.neighbourhood_state: dict[str, Any] = {}
        self._rt_touched: set[tuple[str, str]] = set()
        self._rt_in_batch = 0

    def pipe(self, kind: str, value: bytes | None, *, now: datetime, key: bytes | None = None,
             headers: Iterable[tuple[str, bytes | None]] = (), source: str | None = None,
             ) -> None:
        """One partner record of event type `kind` ("incident", "lighting", "waste"), on the
        type's shared topic, or with `source` on that source's own topic (as the worker binds
        it: the record must name that source)."""
        enriched = self._enrich(kind, value, now=now, key=key, headers=headers, source=source)
        if enriched is None:
            return
        event_type, enriched_bytes, ward_key, _ = enriched
        self._fold(event_type, enriched_bytes, ward_key, now)
        self._in_batch += 1
        if self._in_batch >= self.batch:
            self.end_batch(now)

    def _enrich(self, kind: str, value: bytes | None, *, now: datetime, key: bytes | None,
                headers: Iterable[tuple[str, bytes | None]] = (), source: str | None = None,
                ) -> tuple[EventType, bytes, bytes, int] | None:
        """The first hop: (event type, enriched bytes, ward key, event time the ward folds it
        at), or None when the record went to the dead letters."""
        event_type = by_kind(kind)
        spec = event_type.shared_input if source is None else event_type.input_for_source(source)
        bound = event_type.binding(spec)
        topic = spec.name
        offset = self._offsets.get(topic, 0)
        self._offsets[topic] = offset + 1
        origin = source_record(topic, 0, offset, now.timestamp(), key, value, headers)
        try:
            enriched, enriched_bytes = enrich_record(
                value, topic, event_type.schema, event_type.enriched_schema,
                event_type.enricher, self.reference, self.rules, now, bound)
        except Rejection as error:
            self._dead(origin, error, error.stage, error.reason, now)
            return None
        except Exception as error:
            self._dead(origin, error, "PROCESS", "processing_error", now)
            return None
        self.outputs.enriched.append(enriched)
        for reason in data_quality(enriched):
            self.outputs.corrected[(topic, reason)] += 1
        clock = to_ms(min(enriched["event"]["occurred_at"], now))
        return event_type, enriched_bytes, enriched["ward_code"].encode(), clock

    def drain(self, partitions: Mapping[Any, Sequence[PartnerRecord]], *, now: datetime,
              rng: random.Random, fetch_max: int = 300, read_max: int = 300,
              idle_s: float = 0.05, ward_partitions: int = catalog.WARD_PARTITIONS) -> None:
        """A backlog drained the way a worker drains it (issue 26), through the rule both
        stages run (`processors.event_order`): the input partitions are fetched in chunks of
        random size in random order (as `getmany` interleaves them), enriched into the hop's
        `PartitionMerge` and released lowest event time first (a logical clock of 10 ms per
        step for its idle bound), each enriched record with its mark, onto a channel per
        (enriched topic, ward partition); the ward stage reads the channels in chunks of
        random size in random order (as Faust interleaves the enriched topics), folds each
        event with its partition's hold (`WatermarkHolds`) and ends each chunk as a batch
        (`release`, then `end_batch`). It ends as a worker is `HOLD_EXPIRY_S` after its
        drain: the hop's marks expired, every ward at the newest event time it folded."""
        inputs = {key: deque(records) for key, records in partitions.items()}
        merge: PartitionMerge[Hashable, tuple[EventType, bytes, bytes]] = PartitionMerge(
            idle_s, math.inf, buffer_max=10 ** 9)
        holds: WatermarkHolds[tuple[str, int]] = WatermarkHolds(math.inf)
        channels: dict[tuple[str, int], deque[tuple[EventType, bytes, bytes, int]]] = {}
        ward_channels = {p: [(et.enriched.name, p) for et in EVENT_TYPES]
                         for p in range(ward_partitions)}
        for channel_list in ward_channels.values():
            for channel in channel_list:
                channels[channel] = deque()
        moment = 0.0
        merge.assign(inputs, moment)

        def partition_of(ward_key: bytes) -> int:
            return zlib.crc32(ward_key) % ward_partitions

        def lagging(channel: tuple[str, int]) -> bool:
            return bool(channels[channel])

        while any(inputs.values()) or merge.buffered() or any(channels.values()):
            moment += 0.01
            waiting = [key for key, queue in inputs.items() if queue]
            if waiting and (rng.random() < 0.5 or not any(channels.values())):
                key = rng.choice(waiting)
                fetched = inputs[key]
                for _ in range(min(len(fetched), rng.randint(1, fetch_max))):
                    kind, value, record_key, source = fetched.popleft()
                    enriched = self._enrich(kind, value, now=now, key=record_key,
                                            source=source)
                    if enriched is not None:
                        merge.add(key, enriched[3], 0, enriched[:3], moment)
            for key, left in inputs.items():
                merge.fetched(key, not left, moment)
            released = merge.release(moment)
            marks = PartitionMerge.marks([clock for _, clock, _, _ in released],
                                         merge.low_watermark(moment))
            for mark, (_, _, _, (event_type, enriched_bytes, ward_key)) in zip(
                    marks, released, strict=True):
                channels[(event_type.enriched.name, partition_of(ward_key))].append(
                    (event_type, enriched_bytes, ward_key, mark))
            readable = [channel for channel, queue in channels.items() if queue]
            if not readable or (waiting and rng.random() < 0.5):
                continue
            channel = rng.choice(readable)
            unread = channels[channel]
            for _ in range(min(len(unread), rng.randint(1, read_max))):
                event_type, enriched_bytes, ward_key, mark = unread.popleft()
                holds.seen(channel, DRIVER_ID, mark, moment)
                hold = holds.hold(ward_channels[channel[1]], lagging, moment)
                self._fold(event_type, enriched_bytes, ward_key, now, hold)
            for code, entry in self.entries.items():
                ward_step.release(entry, holds.hold(
                    ward_channels[partition_of(code.encode())], lagging, moment), self.thresholds)
            self.end_batch(now)
        for entry in self.entries.values():
            ward_step.release(entry, None, self.thresholds)
        self.end_batch(now)

    def pipe_action(self, value: bytes | None, *, now: datetime) -> None:
        """One OperatorAction record on the actions topic (issue 14), folded as the ward agent
        folds it; one that cannot apply is a dead letter."""
        topic = catalog.OPERATOR_ACTIONS.name
        offset = self._offsets.get(topic, 0)
        self._offsets[topic] = offset + 1
        try:
            action = read_action(value, topic, self.reference.wards)
            entry = self.entries.setdefault(action["ward_code"], WardEntry(WardState()))
            ward_step.fold_action(entry, action, self.thresholds)
        except Exception as error:
            stage, reason = rejection_of(error)
            self._dead(source_record(topic, 0, offset, now.timestamp(), None, value, ()), error,
                       stage, reason, now)
            return
        self._in_batch += 1
        if self._in_batch >= self.batch:
            self.end_batch(now)

    def end_batch(self, now: datetime) -> None:
        """What the ward agent does after a batch: each ward it changed evaluated once."""
        self._in_batch = 0
        for code, entry in self.entries.items():
            self._step(ward_step.flush, code, entry, now)

    def tick(self, now: datetime) -> None:
        """The clock: every ward re-evaluated at `now` (SNAPSHOT, or CHANGE if time moved)."""
        self.end_batch(now)
        for code, entry in self.entries.items():
            self._step(ward_step.tick, code, entry, now)

    def _step(self, step: Callable[..., ward_step.Publication | None], code: str,
              entry: WardEntry, now: datetime) -> None:
        """One ward's flush or tick; a failure is the ward's dead letter, as in the worker."""
        try:
            self._publish(step(entry, self.reference.wards[code],
                               self._counts.get(code, WardAssetCounts(0, 0)),
                               self.thresholds, now))
        except Exception as error:
            self._dead(ward_source(SITUATIONS_TOPIC, 0, code), error, "PROCESS",
                       "situation_failed", now)

    def situations_of(self, code: str) -> list[dict[str, Any]]:
        return [s for s in self.outputs.situations if s["scope_code"] == code]

    # -- RT reports (issue 13) ---------------------------------------------------------------

    def pipe_rt_report(self, value: bytes | None, *, now: datetime, key: bytes | None = None,
                       headers: Iterable[tuple[str, bytes | None]] = ()) -> None:
        """One RT report on the RT report topic, through the screen and the judgement."""
        spec = catalog.RT_REPORTS
        offset = self._offsets.get(spec.name, 0)
        self._offsets[spec.name] = offset + 1
        origin = source_record(spec.name, 0, offset, now.timestamp(), key, value, headers)
        rules = self.thresholds.neighbourhood
        report: dict[str, Any] | None = None
        try:
            report = read_report(value, spec.name, spec.value_schema)
            rt = screen_report(report, self.neighbourhoods, rules, now)
        except Rejection as error:
            self._dead(origin, error, error.stage, error.reason, now)
            if report is not None:
                known = self.neighbourhoods.get(report["rt_code"])
                self.outputs.validations.append(rejected_validation(report, known, error, now))
            return
        except Exception as error:
            self._dead(origin, error, "PROCESS", "processing_error", now)
            return
        code: str = rt["kelurahan_code"]
        screened = screened_bytes(report, spec.value_schema)
        self.outputs.rt_screened.append(screened)
        origin = source_record(catalog.RT_REPORTS_BY_KELURAHAN.name, 0, offset, now.timestamp(),
                               code.encode(), screened, ())
        try:
            report = read_report(screened, catalog.RT_REPORTS_BY_KELURAHAN.name,
                                 spec.value_schema, trusted=True)
            reports = KelurahanReports.from_json(self.neighbourhood_state.get(code))
            judgement = reports.judge(report, rules)
            reports.prune(current_month(now), rules)
            self.neighbourhood_state[code] = json.loads(json.dumps(reports.to_json()))
        except Exception as error:  # as the judge agent: the report's dead letter
            stage, reason = rejection_of(error)
            self._dead(origin, error, stage, reason, now)
            return
        if judgement.verdict is None:
            return
        self.outputs.validations.append(validation(report, rt, judgement.verdict,
                                                   judgement.codes, judgement.reasons, now))
        self._rt_touched.add((code, report["period"]))
        self._rt_in_batch += 1
        if self._rt_in_batch >= self.batch:
            self.end_rt_batch(now)

    def pipe_rt_review(self, value: bytes | None, *, now: datetime) -> None:
        """One reviewer's decision on the reviews topic (issue 23), applied to the kelurahan's
        reports as the judge agent applies it: its verdict, then the indicators."""
        spec = catalog.RT_REVIEWS
        offset = self._offsets.get(spec.name, 0)
        self._offsets[spec.name] = offset + 1
        try:
            review = read_review(value, spec.name)
            code = review["kelurahan_code"]
            reports = KelurahanReports.from_json(self.neighbourhood_state.get(code))
            judgement = reports.review(review, self.thresholds.neighbourhood)
            self.neighbourhood_state[code] = json.loads(json.dumps(reports.to_json()))
        except Exception as error:
            stage, reason = rejection_of(error)
            self._dead(source_record(spec.name, 0, offset, now.timestamp(), None, value, ()),
                       error, stage, reason, now)
            return
        rt = self.neighbourhoods[review["rt_code"]]
        self.outputs.validations.append(review_validation(reports, review, rt, judgement, now))
        self._rt_touched.add((code, review["period"]))
        self.end_rt_batch(now)

    def end_rt_batch(self, now: datetime) -> None:
        """What the judge agent does after a batch: the indicators of each (kelurahan, month)
        it changed, its RWs first."""
        self._rt_in_batch = 0
        for code, period in sorted(self._rt_touched):
            reports = KelurahanReports.from_json(self.neighbourhood_state[code])
            self.outputs.indicators.extend(kelurahan_indicators(
                code, self._registered[code], reports, period, now, self.thresholds.neighbourhood))
        self._rt_touched.clear()

    def neighbourhood_rollups(self, now: datetime) -> None:
        """The leader's kecamatan and city indicators from the latest kelurahan ones (after
        the open batch's)."""
        self.end_rt_batch(now)
        registered = {code: len(rts) for code, rts in self._registered.items()}
        kecamatan_of = {code: rts[0]["kecamatan_code"] for code, rts in self._registered.items()}
        self.outputs.indicators.extend(
            rollups(self.latest_indicators().values(), registered, kecamatan_of, now))

    def latest_indicators(self) -> dict[str, dict[str, Any]]:
        """The compacted indicator topic as a reader sees it: the last one per key."""
        return {f"{r['scope_code']}|{r['period']}": r for r in self.outputs.indicators}

    def pipe_enriched(self, kind: str, value: bytes | None, *, now: datetime,
                      key: bytes | None = None) -> None:
        """One record on event type `kind`'s enriched topic as the ward agent reads it (only
        workers write there; a test uses this for what a broken or foreign writer could put
        there)."""
        self._fold(by_kind(kind), value, key, now)
        self._in_batch += 1
        if self._in_batch >= self.batch:
            self.end_batch(now)

    def _fold(self, event_type: EventType, enriched_bytes: bytes | None, key: bytes | None,
              now: datetime, hold: int | None = None) -> None:
        topic = event_type.enriched.name
        offset = self._offsets.get(topic, 0)
        self._offsets[topic] = offset + 1
        try:
            enriched = read_enriched(enriched_bytes, topic, event_type.enriched_schema)
            code: str = enriched["ward_code"]
            if code not in self.reference.wards:  # as the ward agent: the reference data rules
                raise LookupError(f"ward {code} vanished from the reference data")
            entry = self.entries.setdefault(code, WardEntry(WardState()))
            result = ward_step.fold(entry, event_type.kind, enriched, self.thresholds, hold)
        except Exception as error:
            source = source_record(topic, 0, offset, now.timestamp(), key, enriched_bytes, ())
            stage, reason = rejection_of(error)
            self._dead(source, error, stage, reason, now)
            return
        self.outputs.aggregated[(topic, result.status)] += 1

    def _publish(self, publication: ward_step.Publication | None) -> None:
        if publication is not None:
            self.outputs.situations.append(publication.situation)

    def _dead(self, source: Any, error: BaseException, stage: str, reason: str,
              now: datetime) -> None:
        self.outputs.dead_letters.append(letter_for(source, error, stage=stage, reason=reason,
                                                    worker_id=DRIVER_ID, now=now))
