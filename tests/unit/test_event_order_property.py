"""Event-time order across partitions (issue 26), on the test driver: the same events give the
same situations, windowed counts and reasons included, whether the ward stage gets them in
event-time order (the oracle) or as a worker drains a backlog of them: the input partitions
fetched in chunks of random size in random order, through the hop's merge (lowest event time
first, a bounded idle wait), and the enriched topics read in random chunks in random order with
each ward's watermark held to the channels' marks (`TopologyTestDriver.drain`). The feed is
`cityops simulate --rate 20 --duration D --scenario flood --seed 7` (the command's own feed,
SYNTHETIC), which holds no late event: nothing may be counted `late` or `expired`."""

from __future__ import annotations

import io
import random
import zlib
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityops.simulate import run_simulate
from processors.event_order import LIVE, UNKNOWN, PartitionMerge, WatermarkHolds
from processors.situation import NOT_COMPARED
from streams.test_driver import PartnerRecord, TopologyTestDriver
from tests.pipeline_scenario import REGISTRY, WARDS, Sent, day_sla_thresholds
from tests.unit.test_produce import FakeSender
from topics.event_types import topic_for

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 21, 40, 13, tzinfo=UTC)
CIBEBER = {"36.72.01.1001", "36.72.01.1002", "36.72.01.1003", "36.72.01.1004",
           "36.72.01.1005", "36.72.01.1006"}


def simulated(duration_s: int) -> list[Sent]:
    sender = FakeSender()
    code = run_simulate("unused:9092", 7, 20.0, duration_s, None, "flood", False, False,
                        sender_factory=lambda bootstrap: sender, out=io.StringIO(),
                        err=io.StringIO(), wall_clock=lambda: NOW)
    assert code == 0
    return [Sent(schema, record) for schema, record in sender.sent]


FEED = simulated(900)


def record(item: Sent) -> PartnerRecord:
    return item.kind, item.value, item.key, item.source


def partitions(sent: list[Sent]) -> dict[tuple[str, int], list[PartnerRecord]]:
    """Each record on its input topic's partition by key, in send order (a backlog on the
    broker keeps each partition's order)."""
    out: dict[tuple[str, int], list[PartnerRecord]] = defaultdict(list)
    for item in sent:
        assert item.schema is not None
        spec = topic_for(item.schema, item.record)
        out[(spec.name, zlib.crc32(item.key) % spec.partitions)].append(record(item))
    return out


def final_situations(driver: TopologyTestDriver) -> dict[str, dict[str, Any]]:
    latest = {s["scope_code"]: s for s in driver.outputs.situations}
    return {code: {k: v for k, v in s.items() if k not in NOT_COMPARED}
            for code, s in latest.items()}


def late_or_expired(driver: TopologyTestDriver) -> int:
    return sum(count for (_, status), count in driver.outputs.aggregated.items()
               if status in ("late", "expired"))


def oracle(sent: list[Sent]) -> TopologyTestDriver:
    """The ward stage fed in event-time order (one batch: the situation its end shows is the
    one a from-scratch evaluation of every event gives, tests/unit/test_ward_step.py)."""
    driver = TopologyTestDriver(WARDS, REGISTRY, thresholds=day_sla_thresholds(), batch=10**9)
    for item in sorted(sent, key=lambda s: s.record["occurred_at"]):
        driver.pipe(item.kind, item.value, key=item.key, now=NOW, source=item.source)
    driver.end_batch(NOW)
    return driver


ORACLE = oracle(FEED)


def test_the_oracle_reads_the_flood_and_holds_no_late_event() -> None:
    situations = final_situations(ORACLE)
    assert {code: [r for r in situations[code]["reasons"] if "flood" in r]
            for code in sorted(CIBEBER)} == {code: ["6 flood reports in 20 min"]
                                             for code in sorted(CIBEBER)}
    assert late_or_expired(ORACLE) == 0
    assert len(FEED) == 18_114


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), fetch_max=st.sampled_from([20, 300, 3_000]),
       read_max=st.sampled_from([20, 300, 3_000]), idle_s=st.sampled_from([0.0, 0.05, 1e9]))
def test_a_drained_backlog_gives_the_oracles_situations(seed: int, fetch_max: int,
                                                        read_max: int, idle_s: float) -> None:
    driver = TopologyTestDriver(WARDS, REGISTRY, thresholds=day_sla_thresholds())
    driver.drain(partitions(FEED), now=NOW, rng=random.Random(seed), fetch_max=fetch_max,
                 read_max=read_max, idle_s=idle_s)
    assert (late_or_expired(driver), driver.outputs.dead_letters) == (0, [])
    assert final_situations(driver) == final_situations(ORACLE)


def test_without_the_holds_a_drain_counts_late_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same drain with every mark LIVE (the ward's watermark is the newest event it saw,
    as before issue 26): the interleaving makes events late and changes the counts, so the
    test above is not passing by luck."""
    driver = TopologyTestDriver(WARDS, REGISTRY, thresholds=day_sla_thresholds())
    monkeypatch.setattr(PartitionMerge, "marks",
                        staticmethod(lambda clocks, low: [LIVE] * len(clocks)))
    driver.drain(partitions(FEED), now=NOW, rng=random.Random(1), fetch_max=2_000,
                 read_max=3_000, idle_s=0.0)
    assert late_or_expired(driver) > 0


def test_merge_releases_lowest_head_first_and_waits_for_a_lagging_partition() -> None:
    merge: PartitionMerge[str, str] = PartitionMerge(idle_s=1.0, hold_max_s=60.0)
    merge.assign(["a", "b"], 0.0)
    merge.add("a", 10, 0, "a10", 0.0)
    merge.add("a", 30, 1, "a30", 0.0)
    merge.fetched("a", False, 0.0)
    merge.fetched("b", False, 0.0)
    assert merge.release(0.1) == []  # b has lag and delivered nothing: wait
    assert merge.low_watermark(0.1) == UNKNOWN
    merge.add("b", 20, 0, "b20", 0.2)
    merge.fetched("b", True, 0.2)
    assert [item for _, _, _, item in merge.release(0.2)] == ["a10", "b20", "a30"]
    # b caught up: held 1 s at its last (what it gets next may be below a's head)
    assert merge.low_watermark(0.2) == 20
    merge.fetched("a", True, 0.3)
    assert merge.low_watermark(5.0) == LIVE
    merge.add("a", 40, 2, "a40", 5.0)
    merge.fetched("b", False, 5.0)
    assert [item for _, _, _, item in merge.release(5.0)] == []  # b may deliver below 40
    assert [item for _, _, _, item in merge.release(6.1)] == ["a40"]  # waited idle_s
    assert merge.first_offsets() == {}
    assert PartitionMerge.marks([40], merge.low_watermark(6.1)) == [20]


def test_holds_take_the_lowest_channel_and_forget_a_stopped_hop() -> None:
    holds: WatermarkHolds[str] = WatermarkHolds(expiry_s=30.0)
    unread = {"incident": True, "lighting": False}
    holds.seen("lighting", "h1", 500, 0.0)
    holds.seen("incident", "h1", 200, 0.0)
    assert holds.hold(["incident", "lighting"], unread.__getitem__, 1.0) == 200
    unread["incident"] = False  # read to its end: bounded by h1's highest mark
    assert holds.hold(["incident", "lighting"], unread.__getitem__, 1.0) == 500
    holds.seen("incident", "h2", 100, 0.0)
    unread["incident"] = True
    assert holds.hold(["incident", "lighting"], unread.__getitem__, 1.0) == 100
    assert holds.hold(["incident", "lighting"], unread.__getitem__, 31.0) is None
