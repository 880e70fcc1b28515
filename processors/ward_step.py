"""A ward's stateful step, pure: fold events, evaluate once per batch, snapshot for the table.

This is everything that decides what a ward's situation is and when it is published; the Faust
wiring (`streams/ward_aggregator.py`) only loads and stores entries, schedules the steps and
sends what they return. Its shape is Bytewax's `StatefulLogic`:

- `fold` (on item) applies one enriched event to the ward's state and remembers that the ward
  has a change not yet evaluated;
- `flush` (at the end of a processed batch) evaluates such a ward once, at its event-time
  watermark, and returns the CHANGE to publish, carrying the last event that moved the ward and
  how many events it folds. Evaluating once per batch instead of once per event is how Kafka
  Streams' record cache forwards a KTable's updates once per commit interval: the latency bound
  is the batch window, and the situation after every batch is the one a from-scratch
  evaluation of every applied event gives (tests/unit/test_ward_step.py);
- a failing evaluation or encoding (`encode_situation`: over its byte budget) raises out of
  `flush` or `tick` with the entry's situation and sequence unchanged, so the caller can
  dead-letter it for that ward and carry on with the others;
- `tick` (the clock) re-evaluates at wall-clock time, so windows and horizons roll forward when
  no event comes, and gives the periodic SNAPSHOT;
- `WardEntry.to_table` / `from_table` are the snapshot: the change not yet evaluated travels
  with the state, so a worker that recovers the ward from the changelog still publishes it.

Sequence numbers: a CHANGE from `flush` takes the next number, which is stored with the state.
A `tick` runs outside stream iteration, where the worker may not write its table, so whatever it
publishes repeats the current number, and consumers keep the latest record among equal
sequences. The table value is written once per commit, so after a SIGKILL or a rebalance the
changelog may hold a lower number than the situations already published: a ward taken over
continues from the higher of the two (`resume`), so its sequence never goes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from processors import operations
from processors.operations import CaseBook
from processors.situation import (
    WardAssetCounts,
    encode_situation,
    situation_changed,
    summarize_ward,
)
from processors.state import ApplyResult, EventKind, WardState, apply, from_ms, to_ms
from processors.state import release as state_release
from processors.thresholds import Thresholds


def jsonable(situation: Mapping[str, Any]) -> dict[str, Any]:
    """The situation with datetimes as epoch ms, so it can sit in a JSON table value (the
    cases and timelines nested in it included)."""
    return {key: _plain(value) for key, value in situation.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@dataclass
class WardEntry:
    """One ward's state, its last published situation and sequence, and its pending change."""

    state: WardState
    situation: dict[str, Any] | None = None
    """The last published situation (jsonable), what the next one is compared with."""
    sequence: int = 0
    pending_event_id: str | None = None
    """The last event folded since the ward was last evaluated (None: nothing pending)."""
    pending_events: int = 0
    """How many events changed the state since the ward was last evaluated."""
    pending_ingested_at: int | None = None
    """Epoch ms at which the last of them was ingested (for the latency metric)."""
    book: CaseBook = field(default_factory=CaseBook)
    """Operator actions on the ward (processors/operations.py)."""
    released: bool = False
    """The upstream hold let the watermark move since the last evaluation (`release`); not
    stored: a recovered ward is evaluated at its next event or tick anyway."""

    def to_table(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "state": self.state.to_dict(),
            "situation": self.situation,
            "sequence": self.sequence,
        }
        if not self.book.is_empty():
            value["ops"] = self.book.to_dict()
        if self.pending_events:
            value["pending"] = [self.pending_event_id, self.pending_events,
                                self.pending_ingested_at]
        return value

    @classmethod
    def from_table(cls, value: Mapping[str, Any]) -> WardEntry:
        pending = value.get("pending") or [None, 0, None]
        return cls(
            state=WardState.from_dict(value["state"]),
            situation=value.get("situation"),
            sequence=int(value.get("sequence", 0)),
            pending_event_id=pending[0],
            pending_events=int(pending[1]),
            pending_ingested_at=pending[2],
            book=CaseBook.from_dict(value["ops"]) if value.get("ops") else CaseBook(),
        )


@dataclass(frozen=True)
class Publication:
    """A situation to send, with what the metrics need to know about it."""

    code: str
    situation: dict[str, Any]
    """The SituationEvent record (datetimes as datetimes)."""
    kind: str
    ingested_at: datetime | None
    value: bytes
    """The record encoded, within `SITUATION_BUDGET_BYTES`."""


def resume(entry: WardEntry, published_sequence: int,
           published: Mapping[str, Any] | None = None) -> None:
    """Continue a ward loaded from the table from the highest sequence already published
    for it (read from the situations topic), never from a lower one (issue 12, hole 7).

    `published`, the situation that carried that sequence, becomes what the next evaluation is
    compared with: a change its previous owner folded and published but never committed is then
    not published a second time under a new number."""
    if published_sequence > entry.sequence:
        entry.sequence = published_sequence
        if published is not None and published.get("sequence") == published_sequence:
            entry.situation = jsonable(published)


def fold(entry: WardEntry, kind: EventKind | str, enriched: Mapping[str, Any],
         thresholds: Thresholds, hold: int | None = None) -> ApplyResult:
    """Apply one enriched event to the ward's state, remembering the change for `flush`;
    `hold` is the upstream low watermark (`processors.state.apply`)."""
    result = apply(entry.state, kind, enriched, thresholds, hold)
    if result.changed:
        entry.pending_event_id = enriched["event"]["event_id"]
        entry.pending_events += 1
        ingested: datetime = enriched["ingested_at"]
        entry.pending_ingested_at = int(ingested.timestamp() * 1000)
    return result


def release(entry: WardEntry, hold: int | None, thresholds: Thresholds) -> bool:
    """Move the ward's watermark as far as the upstream hold now allows (`state.release`);
    when it moved, the next `flush` evaluates the ward at its new watermark."""
    if state_release(entry.state, hold, thresholds):
        entry.released = True
        return True
    return False


def fold_action(entry: WardEntry, action: Mapping[str, Any], thresholds: Thresholds) -> bool:
    """Fold one operator action (a decoded OperatorAction) into the ward, remembering the change
    for `flush`; False for a replayed action. Raises a Rejection for an action that cannot
    apply (the caller dead-letters it; nothing changed)."""
    if not operations.fold_action(entry.book, action):
        return False
    operations.forget_pruned(entry.book, entry.state, thresholds.closed_incident_horizon_ms)
    entry.pending_event_id = action["action_id"]
    entry.pending_events += 1
    entry.pending_ingested_at = to_ms(action["occurred_at"])
    return True


def flush(entry: WardEntry, ward: Mapping[str, Any], assets: WardAssetCounts,
          thresholds: Thresholds, now: datetime) -> Publication | None:
    """The CHANGE to publish for everything folded since the last evaluation, if an operator
    would see something new; evaluated at the ward's watermark, so a replay gives the same
    situation. Nothing pending: None."""
    if not entry.pending_events and not entry.released:
        return None
    as_of = from_ms(entry.state.watermark) if entry.state.watermark is not None else now
    ingested = (from_ms(entry.pending_ingested_at) if entry.pending_ingested_at is not None
                else None)
    try:
        return _evaluate(entry, ward, assets, thresholds, as_of, now, "CHANGE",
                         entry.pending_event_id, entry.pending_events, ingested)
    finally:  # a failed evaluation is reported once, not again with every later batch
        entry.pending_event_id, entry.pending_events, entry.pending_ingested_at = None, 0, None
        entry.released = False


def tick(entry: WardEntry, ward: Mapping[str, Any], assets: WardAssetCounts,
         thresholds: Thresholds, now: datetime) -> Publication | None:
    """Re-evaluate at wall-clock time: a CHANGE when time moved a window or horizon, else the
    periodic SNAPSHOT; both repeat the current sequence. A ward never published: None."""
    if entry.sequence == 0:
        return None
    return _evaluate(entry, ward, assets, thresholds, now, now, "SNAPSHOT", None, 0, None)


def _evaluate(entry: WardEntry, ward: Mapping[str, Any], assets: WardAssetCounts,
              thresholds: Thresholds, as_of: datetime, now: datetime, kind: str,
              caused_by: str | None, events_folded: int,
              ingested_at: datetime | None) -> Publication | None:
    sequence = entry.sequence + 1 if kind == "CHANGE" else entry.sequence
    situation = summarize_ward(entry.state, ward, assets, thresholds, as_of, kind, sequence,
                               caused_by)
    situation["events_folded"] = events_folded
    situation["emitted_at"] = from_ms(int(now.timestamp() * 1000))
    # SLA clocks run on the wall clock (a promise to people), not on the ward's event time:
    # the later of the two, as the situation's own evaluation time is.
    watermark = entry.state.watermark
    clock_ms = max(to_ms(now), to_ms(as_of), watermark if watermark is not None else 0)
    operations.annotate(situation, entry.state, entry.book, thresholds.sla, clock_ms)
    comparable = jsonable(situation)
    changed = situation_changed(entry.situation, comparable)
    if not changed and kind == "CHANGE":
        return None
    if changed:
        situation["kind"] = comparable["kind"] = "CHANGE"
    # Encoded before the entry moves on: a situation that cannot be encoded (or is over its
    # budget) raises here, and the ward keeps its last good situation and sequence.
    value = encode_situation(situation)
    entry.sequence = sequence
    entry.situation = comparable
    return Publication(str(ward["kelurahan_code"]), situation, situation["kind"], ingested_at,
                       value)
