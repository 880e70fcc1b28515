"""Chaos on the real broker, CI size: 5,000 records, 3 SIGKILLs of the worker, 1 broker restart;
then the same with two workers in the group, so that every kill is also a rebalance.

The harness is bench/chaos.py (the full size is `bench/chaos.py --events 50000`, see
docs/reliability.md). Records are sent at a steady pace for about 75 s, and the kills and the
broker restart fall at random moments of that sending, one in each quarter. Afterwards every
topic is read back and compared with bench/reference_model.py, computed from the records the
input topics really hold: no valid record may be missing from the enriched topics or dead-
lettered, every hostile record must be dead-lettered with its reason, and the ward state in the
changelog and the last situation of every ward and rollup must equal the reference exactly, and
no key's situation sequence may go back in the order the situations topic holds them.
Replays (a record processed again after a kill) are allowed and counted: the ward state
deduplicates them, which is what "no double count" checks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import ChaosConfig, run_chaos

pytestmark = pytest.mark.e2e

EVENTS = 5000
SENDING_S = 75.0
#: The scenario's hostile records (2 %), as sent: every one dead-lettered with its reason.
DEAD_LETTERS_BY_REASON = {
    "not_finite": 20, "not_single_object": 20, "truncated": 20, "unknown_asset": 20,
    "unknown_ward": 20,
}


@pytest.mark.timeout(900)
def test_no_event_lost_or_double_counted_through_kills_and_a_broker_restart(
    broker: str, artifacts_dir: Path
) -> None:
    report = run_chaos(ChaosConfig(
        bootstrap=broker, events=EVENTS, kills=3, broker_restarts=1, seed=11,
        rate=EVENTS / SENDING_S, artifacts=artifacts_dir, timeout_s=300.0, label="chaosci",
    ))
    (artifacts_dir / "chaos-ci-report.json").write_text(report.to_json())
    f = report.figures
    assert report.problems == []
    assert (f["kills"], f["broker_restarts"], f["worker_starts"], f["unplanned_exits"]) == (
        3, 1, 4, [])
    assert (f["lost_events"], f["double_counted_events"], f["enriched_missing"]) == (0, 0, 0)
    assert (f["ward_situation_mismatches"], f["rollup_mismatches"]) == (0, 0)
    assert f["sequence_regressions"] == 0  # per key, in partition order (issue 12, hole 7)
    assert f["dead_lettered_by_reason"] == DEAD_LETTERS_BY_REASON
    assert f["wards_compared"] == f["wards_with_events"] == 43
    assert sum(f["input_records"].values()) >= EVENTS  # more if a "maybe written" was resent


@pytest.mark.timeout(900)
def test_two_workers_rebalancing_through_kills_and_a_broker_restart_lose_nothing(
    broker: str, artifacts_dir: Path
) -> None:
    report = run_chaos(ChaosConfig(
        bootstrap=broker, events=EVENTS, kills=4, broker_restarts=1, seed=12, workers=2,
        rate=EVENTS / SENDING_S, artifacts=artifacts_dir, timeout_s=300.0, label="chaosci2",
    ))
    (artifacts_dir / "chaos-ci-2workers-report.json").write_text(report.to_json())
    f = report.figures
    assert report.problems == []
    # a worker that stopped itself for a stalled ward agent (status 75, streams/liveness.py)
    # was restarted as a supervisor would: allowed, and counted in liveness_restarts
    assert (f["workers"], f["kills"], f["broker_restarts"], f["worker_starts"],
            f["unplanned_exits"]) == (2, 4, 1, 6 + f["liveness_restarts"], [])
    assert (f["lost_events"], f["double_counted_events"], f["enriched_missing"]) == (0, 0, 0)
    assert (f["ward_situation_mismatches"], f["rollup_mismatches"]) == (0, 0)
    assert f["sequence_regressions"] == 0  # per key, in partition order (issue 12, hole 7)
    assert f["dead_lettered_by_reason"] == DEAD_LETTERS_BY_REASON
    assert f["wards_compared"] == f["wards_with_events"] == 43
