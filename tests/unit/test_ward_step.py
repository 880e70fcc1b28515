"""The pure ward step: one evaluation per batch, the same situation whatever the batching.

Events and thresholds are the synthetic ones of the state property tests (two real kelurahan,
small pools of ids), so lifecycles, duplicates and windows collide often.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.operations import CaseBook, annotate
from processors.situation import situation_changed, summarize_ward
from processors.state import WardState, apply, from_ms, to_ms
from processors.thresholds import Thresholds
from processors.ward_step import WardEntry, flush, fold, jsonable, tick
from tests.unit.test_state_property import (
    NEVER_LATE,
    OFTEN_LATE,
    REGISTRY,
    T0,
    WARDS,
    Event,
    _scenario,
    incident_report,
)

pytestmark = pytest.mark.unit

NOW = T0 + timedelta(hours=1)
GROGOL = "36.72.06.1002"


def _flood(n: int, minute: int) -> Event:
    return incident_report(GROGOL, n, T0 + timedelta(minutes=minute), severity="SEVERE")


def _from_scratch(applied: list[Event], ward: str, thresholds: Thresholds) -> dict[str, Any]:
    state = WardState()
    for kind, enriched in applied:
        apply(state, kind, enriched, thresholds)
    assert state.watermark is not None
    situation = summarize_ward(state, WARDS[ward], REGISTRY, thresholds,
                               from_ms(state.watermark), "CHANGE", 1, None)
    # the command center's part: SLA clocks on the wall clock (NOW), no operator action
    annotate(situation, state, CaseBook(), thresholds.sla, max(to_ms(NOW), state.watermark))
    return jsonable(situation)


def test_a_batch_of_three_reports_is_one_change_that_folds_three() -> None:
    entry = WardEntry(WardState())
    events = [_flood(1, 0), _flood(2, 1), _flood(3, 2)]
    for kind, enriched in events:
        assert fold(entry, kind, enriched, NEVER_LATE).changed
    published = flush(entry, WARDS[GROGOL], REGISTRY, NEVER_LATE, NOW)
    assert published is not None
    situation = published.situation
    assert (published.kind, situation["sequence"], situation["events_folded"],
            situation["caused_by_event_id"], situation["open_incidents"], situation["level"]) == (
        "CHANGE", 1, 3, "00000000-0000-4000-8000-000000000003", 3, "ALERT")
    assert flush(entry, WARDS[GROGOL], REGISTRY, NEVER_LATE, NOW) is None


def test_batches_of_one_keep_one_change_per_event() -> None:
    entry = WardEntry(WardState())
    sequences = []
    for kind, enriched in [_flood(1, 0), _flood(2, 1), _flood(3, 2)]:
        fold(entry, kind, enriched, NEVER_LATE)
        published = flush(entry, WARDS[GROGOL], REGISTRY, NEVER_LATE, NOW)
        assert published is not None
        sequences.append((published.situation["sequence"], published.situation["events_folded"],
                          published.situation["open_incidents"]))
    assert sequences == [(1, 1, 1), (2, 1, 2), (3, 1, 3)]


def test_a_replayed_batch_publishes_nothing_new() -> None:
    entry = WardEntry(WardState())
    events = [_flood(1, 0), _flood(2, 1)]
    for kind, enriched in events:
        fold(entry, kind, enriched, NEVER_LATE)
    assert flush(entry, WARDS[GROGOL], REGISTRY, NEVER_LATE, NOW) is not None
    for kind, enriched in events:
        assert fold(entry, kind, enriched, NEVER_LATE).status == "duplicate"
    assert (flush(entry, WARDS[GROGOL], REGISTRY, NEVER_LATE, NOW), entry.sequence) == (None, 1)


def test_a_change_folded_but_not_evaluated_survives_the_table() -> None:
    entry = WardEntry(WardState())
    kind, enriched = _flood(1, 0)
    fold(entry, kind, enriched, NEVER_LATE)
    recovered = WardEntry.from_table(json.loads(json.dumps(entry.to_table())))
    published = flush(recovered, WARDS[GROGOL], REGISTRY, NEVER_LATE, NOW)
    assert published is not None
    assert (published.situation["sequence"], published.situation["events_folded"],
            published.situation["caused_by_event_id"], published.ingested_at) == (
        1, 1, "00000000-0000-4000-8000-000000000001", T0)
    assert "pending" not in recovered.to_table()


def test_a_tick_repeats_the_sequence_and_never_publishes_an_unseen_ward() -> None:
    entry = WardEntry(WardState())
    assert tick(entry, WARDS[GROGOL], REGISTRY, NEVER_LATE, NOW) is None
    kind, enriched = _flood(1, 0)
    fold(entry, kind, enriched, NEVER_LATE)
    flush(entry, WARDS[GROGOL], REGISTRY, NEVER_LATE, T0)
    published = tick(entry, WARDS[GROGOL], REGISTRY, NEVER_LATE, T0 + timedelta(seconds=1))
    assert published is not None
    assert (published.kind, published.situation["sequence"],
            published.situation["events_folded"]) == ("SNAPSHOT", 1, 0)


@settings(max_examples=300, deadline=None)
@given(scenario=_scenario(span_steps=30), data=st.data(), often_late=st.booleans())
def test_the_situation_after_every_batch_is_the_from_scratch_one_for_any_batching(
    scenario: tuple[list[Event], list[Event], list[bool]], data: st.DataObject,
    often_late: bool,
) -> None:
    order, _, restarts = scenario
    thresholds = OFTEN_LATE if often_late else NEVER_LATE
    cuts = data.draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))
    entries = {ward: WardEntry(WardState()) for ward in WARDS}
    applied: dict[str, list[Event]] = {ward: [] for ward in WARDS}
    published = {ward: 0 for ward in WARDS}
    for index, (kind, enriched) in enumerate(order):
        ward = enriched["ward_code"]
        fold(entries[ward], kind, enriched, thresholds)
        applied[ward].append((kind, enriched))
        if restarts[index]:  # a new owner recovers the ward from its changelog value
            entries[ward] = WardEntry.from_table(json.loads(json.dumps(entries[ward].to_table())))
        if not (cuts[index] or index == len(order) - 1):
            continue
        for code, entry in entries.items():
            before = entry.sequence
            if flush(entry, WARDS[code], REGISTRY, thresholds, NOW) is not None:
                published[code] += 1
            assert entry.sequence == before + (1 if entry.sequence != before else 0)
            assert entry.pending_events == 0
            if applied[code]:
                assert entry.situation is not None
                expected = _from_scratch(applied[code], code, thresholds)
                assert not situation_changed(expected, entry.situation), (expected,
                                                                          entry.situation)
    assert {code: entry.sequence for code, entry in entries.items()} == published
