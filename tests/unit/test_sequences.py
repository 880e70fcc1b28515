"""Sequences never go back (issue 12, hole 7): a ward taken over continues from the highest
sequence already published for it, and the chaos checker finds any key whose sequence fell.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import pytest

from bench.chaos import regression_records, sequence_regressions
from processors.state import WardState
from processors.thresholds import Thresholds
from processors.ward_step import WardEntry, flush, fold, resume
from tests.unit.test_state_property import REGISTRY, T0, WARDS, Event, incident_report

pytestmark = pytest.mark.unit

GROGOL = "36.72.06.1002"


def _report(n: int) -> Event:
    return incident_report(GROGOL, n, T0 + timedelta(minutes=n), category="FIRE",
                           event_id=f"7a1c2e3f-0000-4000-8000-{n:012d}")


def _committed_at(sequence: int) -> WardEntry:
    """A ward as its changelog holds it after a kill: sequence `sequence`, one report folded."""
    entry = WardEntry(WardState(), sequence=sequence)
    kind, enriched = _report(1)
    fold(entry, kind, enriched, Thresholds())
    return WardEntry.from_table(json.loads(json.dumps(entry.to_table())))


def test_a_recovered_ward_continues_after_the_highest_published_sequence() -> None:
    entry = _committed_at(42)
    resume(entry, 63)  # the dead owner had published up to 63 after its last commit
    published = flush(entry, WARDS[GROGOL], REGISTRY, Thresholds(), T0)
    assert published is not None
    assert (published.situation["sequence"], entry.sequence) == (64, 64)


def test_a_published_sequence_below_the_table_one_changes_nothing() -> None:
    entry = _committed_at(42)
    resume(entry, 10)
    published = flush(entry, WARDS[GROGOL], REGISTRY, Thresholds(), T0)
    assert published is not None
    assert published.situation["sequence"] == 43


def test_the_chaos_checker_reports_every_key_whose_sequence_fell() -> None:
    records = [(b"36.72.01.1001", 62), (b"36.72.01", 5), (b"36.72.01.1001", 63),
               (b"36.72.01.1001", 42), (b"36.72.01.1001", 42), (b"36.72.01", 5),
               (b"36.72.01.1001", 43), (b"36.72.01", 4)]
    assert sequence_regressions(records) == ["36.72.01.1001: 63 -> 42", "36.72.01: 5 -> 4"]


def test_a_change_already_published_by_the_previous_owner_is_not_published_again() -> None:
    published_by_dead_owner = _committed_at(0)
    first = flush(published_by_dead_owner, WARDS[GROGOL], REGISTRY, Thresholds(), T0)
    assert first is not None and first.situation["sequence"] == 1
    entry = _committed_at(0)  # the changelog kept the fold but not the evaluation
    resume(entry, 1, first.situation)
    assert (flush(entry, WARDS[GROGOL], REGISTRY, Thresholds(), T0), entry.sequence) == (None, 1)


@dataclass(frozen=True)
class _Record:
    """The fields of a consumer record that the regression report reads."""

    key: bytes
    value: bytes
    partition: int
    offset: int


def _published(sequence: int, minutes: int) -> bytes:
    """The encoded situation a ward committed at `sequence - 1` publishes `minutes` in."""
    entry = _committed_at(sequence - 1)
    published = flush(entry, WARDS[GROGOL], REGISTRY, Thresholds(), T0 + timedelta(minutes=minutes))
    assert published is not None and published.situation["sequence"] == sequence
    return published.value


def test_a_regression_report_tells_a_resent_copy_from_a_reused_sequence() -> None:
    first, second = _published(1, 1), _published(2, 2)
    reused = _published(1, 3)  # a new evaluation under an already used sequence number
    key = GROGOL.encode()
    records = [_Record(key, value, 2, offset)
               for offset, value in enumerate([first, second, first, second, reused])]
    found = regression_records(records)
    assert [(f["before"]["offset"], f["after"]["offset"], f["after"]["sequence"],
             f["after_repeats_an_earlier_record"]) for f in found] == [
        (1, 2, 1, True), (3, 4, 1, False)]
    assert {f["key"] for f in found} == {GROGOL}
