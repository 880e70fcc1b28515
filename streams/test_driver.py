"""The whole topology without a broker: raw bytes in; enriched records, situations and dead
letters out, through the same code the worker runs (as Kafka Streams' `TopologyTestDriver`).

Each piped record takes both hops the worker gives it: `processors.records.enrich_record`
(partner bytes to the enriched record and its bytes, as the enrich agents do), then
`processors.records.read_enriched` and `processors.ward_step.fold` (as the ward agent does).
`pipe_action` is an operator action on its topic (issue 14), folded as the ward agent folds it.
`end_batch` is the end of a ward agent batch (`ward_step.flush`), `tick` the clock
(`ward_step.tick`); with `batch=1` every pipe ends its batch, the per-event sequence. What is
not here is what needs Kafka: partitions, offsets and commits, rebalances, the changelog and
the leader's rollups; those stay with the tests on the real broker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.rejections import Rejection, rejection_of
from processors import ward_step
from processors.dead_letters import letter_for, source_record, ward_source
from processors.enrich import EnrichmentRules, ReferenceData
from processors.records import enrich_record, read_action, read_enriched
from processors.situation import WardAssetCounts, asset_counts_by_ward
from processors.state import WardState
from processors.thresholds import Thresholds
from processors.ward_step import WardEntry
from topics import catalog
from topics.event_types import EventType, by_kind

DRIVER_ID = "test-driver"
SITUATIONS_TOPIC = catalog.SITUATIONS.name


@dataclass
class Outputs:
    """Everything the topology wrote, in order."""

    enriched: list[dict[str, Any]] = field(default_factory=list)
    situations: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)


class TopologyTestDriver:
    """A worker's processing of one ward set, in memory and in call order."""

    def __init__(self, wards: Iterable[Mapping[str, Any]], assets: Iterable[Mapping[str, Any]],
                 thresholds: Thresholds | None = None, rules: EnrichmentRules | None = None,
                 batch: int = 1) -> None:
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

    def pipe(self, kind: str, value: bytes | None, *, now: datetime, key: bytes | None = None,
             headers: Iterable[tuple[str, bytes | None]] = (), source: str | None = None,
             ) -> None:
        """One partner record of event type `kind` ("incident", "lighting", "waste"), on the
        type's shared topic, or with `source` on that source's own topic (as the worker binds
        it: the record must name that source)."""
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
            return
        except Exception as error:
            self._dead(origin, error, "PROCESS", "processing_error", now)
            return
        self.outputs.enriched.append(enriched)
        self._fold(event_type, enriched_bytes, now)
        self._in_batch += 1
        if self._in_batch >= self.batch:
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

    def _fold(self, event_type: EventType, enriched_bytes: bytes, now: datetime) -> None:
        topic = event_type.enriched.name
        offset = self._offsets.get(topic, 0)
        self._offsets[topic] = offset + 1
        try:
            enriched = read_enriched(enriched_bytes, topic, event_type.enriched_schema)
            code: str = enriched["ward_code"]
            entry = self.entries.setdefault(code, WardEntry(WardState()))
            ward_step.fold(entry, event_type.kind, enriched, self.thresholds)
        except Exception as error:
            source = source_record(topic, 0, offset, now.timestamp(), None, enriched_bytes, ())
            stage, reason = rejection_of(error)
            self._dead(source, error, stage, reason, now)

    def _publish(self, publication: ward_step.Publication | None) -> None:
        if publication is not None:
            self.outputs.situations.append(publication.situation)

    def _dead(self, source: Any, error: BaseException, stage: str, reason: str,
              now: datetime) -> None:
        self.outputs.dead_letters.append(letter_for(source, error, stage=stage, reason=reason,
                                                    worker_id=DRIVER_ID, now=now))
