"""The ward agent's liveness watch (streams/liveness.py), with stand-ins for the app's
consumer and the group's committed offsets: it stops the worker only when records wait after
the committed offsets and nothing was applied for the whole window."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from streams.liveness import WardLiveness
from streams.runtime import taskdump

pytestmark = pytest.mark.unit

TP = TopicPartition("city.lighting.enriched.v1", 0)


class Clock:
    now = 1000.0


def watch(monkeypatch: pytest.MonkeyPatch, end: int, committed: int, applied: list[int],
          rebalancing: bool = False) -> tuple[WardLiveness, list[int], Any]:
    consumer = SimpleNamespace(assignment=lambda: {TP}, highwater=lambda tp: end)
    stalls = SimpleNamespace(count=0)
    metrics = SimpleNamespace(ward_agent_stalls=SimpleNamespace(
        inc=lambda: setattr(stalls, "count", stalls.count + 1)))
    app = SimpleNamespace(consumer=consumer, rebalancing=rebalancing)
    context = SimpleNamespace(app=app, metrics=metrics)
    killed: list[int] = []
    monkeypatch.setattr(time, "monotonic", lambda: Clock.now)
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append(sig))
    monkeypatch.setattr(taskdump, "dump", lambda: None)
    w = WardLiveness(context, lambda: applied[0], [TP.topic],  # type: ignore[arg-type]
                     stall_s=90.0)

    async def fake_committed(partitions: list[Any]) -> dict[Any, int]:
        return {TP: committed}

    w.committed = fake_committed  # type: ignore[method-assign]
    return w, killed, stalls


def run_checks(w: WardLiveness, seconds: list[float]) -> None:
    async def scenario() -> None:
        for t in seconds:
            Clock.now = 1000.0 + t
            await w.check()
    asyncio.run(scenario())


def test_nothing_applied_for_the_window_while_records_wait_stops_the_worker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    w, killed, stalls = watch(monkeypatch, end=357, committed=240, applied=[5])
    run_checks(w, [0, 30, 60, 89])
    assert (killed, w.fired) == ([], False)
    run_checks(w, [91, 101])
    assert (killed, w.fired, stalls.count) == ([signal.SIGTERM], True, 1)
    assert os.getpid() > 0


def test_no_waiting_records_is_an_idle_city_not_a_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    w, killed, _ = watch(monkeypatch, end=242, committed=240, applied=[5])  # 2: markers
    run_checks(w, [0, 100, 200, 300])
    assert (killed, w.fired) == ([], False)


def test_progress_restarts_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    applied = [5]
    w, killed, _ = watch(monkeypatch, end=357, committed=240, applied=applied)
    run_checks(w, [0, 80])
    applied[0] = 6
    run_checks(w, [85, 170])
    assert killed == []
    run_checks(w, [176])
    assert killed == [signal.SIGTERM]


def test_a_rebalance_is_not_a_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    w, killed, _ = watch(monkeypatch, end=357, committed=240, applied=[5], rebalancing=True)
    run_checks(w, [0, 100, 200])
    assert killed == []
