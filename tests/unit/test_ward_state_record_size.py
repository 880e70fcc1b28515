"""A very busy ward's state stays within one changelog record by forgetting old event ids."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from processors.state import WardState
from streams import ward_aggregator
from streams.metrics import WorkerMetrics
from streams.ward_aggregator import OwnedWard, WardAggregator

pytestmark = pytest.mark.unit

BUCKET_MS = 600_000


def busy_ward(ids_per_bucket: int, buckets: int) -> OwnedWard:
    state = WardState()
    for bucket in range(buckets):
        for n in range(ids_per_bucket):
            state.seen[f"{bucket:08d}-0000-4000-8000-{n:012d}"] = bucket * BUCKET_MS
    state.watermark = buckets * BUCKET_MS
    return OwnedWard(state=state, situation=None, sequence=1, partition=0)


def test_state_over_the_target_loses_its_oldest_buckets_and_counts_them(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    entry = busy_ward(ids_per_bucket=1_000, buckets=10)
    full_size = len(json.dumps(entry.to_table()))
    # A target that holds a little more than 7 of the 10 buckets.
    target = full_size * 73 // 100
    monkeypatch.setattr(ward_aggregator, "STATE_TARGET_BYTES", target)
    aggregator = SimpleNamespace(metrics=WorkerMetrics())
    with caplog.at_level(logging.WARNING, logger="streams.ward_aggregator"):
        WardAggregator._fit(aggregator, "36.72.06.1002", entry)  # type: ignore[arg-type]
    assert len(json.dumps(entry.to_table())) <= target
    assert sorted(set(entry.state.seen.values())) == [b * BUCKET_MS for b in range(3, 10)]
    evicted = aggregator.metrics.registry.get_sample_value(
        "cityops_dedupe_ids_evicted_total", {"kelurahan_code": "36.72.06.1002"})
    assert evicted == 3_000
    assert "evicted its 3000 oldest event ids (7000 remembered)" in caplog.text


def test_state_under_the_target_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = busy_ward(ids_per_bucket=100, buckets=3)
    monkeypatch.setattr(ward_aggregator, "STATE_TARGET_BYTES", len(json.dumps(entry.to_table())))
    aggregator = SimpleNamespace(metrics=WorkerMetrics())
    WardAggregator._fit(aggregator, "36.72.06.1002", entry)  # type: ignore[arg-type]
    assert len(entry.state.seen) == 300
