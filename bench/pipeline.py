"""The pipeline figure: real `cityops worker` processes draining pre-loaded input.

A drain is complete when every event sent was consumed, every one was applied to ward state
(or dead-lettered), and the workers' consumer group has no lag left on the input and enriched
topics, i.e. the offsets of all of it are committed, which at-least-once only does after the
state changes are in the changelog. Progress is read from the workers' /metrics endpoint once a
second, which also gives the resident memory and CPU time along the way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.harness import Counters, LagProbe, Worker, process_usage


@dataclass
class Sample:
    """One look at the workers during a drain."""

    t: float
    consumed: float
    aggregated: float
    rejected: float
    rss_bytes: list[int]
    cpu_s: list[float]


@dataclass
class DrainResult:
    events: int
    workers: int
    ready_s: float
    seconds: float
    """From the moment every worker was ready to the drain being complete (lag 0)."""
    processed_s: float
    """From ready to the counters reaching the events sent (before the last offset commit)."""
    steady_events_per_s: float
    """Aggregation rate between 10 % and 90 % of the events."""
    cpu_s: list[float]
    rss_start: list[int]
    rss_end: list[int]
    rss_max: list[int]
    broker_cpu_s: float | None
    counters: Counters
    samples: list[Sample] = field(default_factory=list)
    broker_restarted: bool = False
    """The broker's process changed during the drain (someone restarted the shared broker)."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def rss_at(self, events: int) -> list[int] | None:
        """Each worker's RSS at the first sample with at least `events` aggregated."""
        for sample in self.samples:
            if sample.aggregated >= events:
                return sample.rss_bytes
        return None

    def as_dict(self) -> dict[str, Any]:
        mib = 1024 * 1024
        return {
            "events": self.events,
            "workers": self.workers,
            "ready_s": round(self.ready_s, 1),
            "seconds": round(self.seconds, 2),
            "processed_s": round(self.processed_s, 2),
            "events_per_s": round(self.events_per_s),
            "events_per_s_per_worker": round(self.events_per_s / self.workers),
            "steady_events_per_s": round(self.steady_events_per_s),
            "worker_cpu_s": [round(c, 1) for c in self.cpu_s],
            "worker_cpu_us_per_event": round(sum(self.cpu_s) / max(1, self.events) * 1e6, 1),
            "broker_cpu_s": None if self.broker_cpu_s is None else round(self.broker_cpu_s, 1),
            "broker_restarted": self.broker_restarted,
            "rss_start_mib": [round(r / mib, 1) for r in self.rss_start],
            "rss_end_mib": [round(r / mib, 1) for r in self.rss_end],
            "rss_max_mib": [round(r / mib, 1) for r in self.rss_max],
            "counters": {"consumed": self.counters.consumed,
                         "enriched": self.counters.enriched,
                         "rejected": self.counters.rejected,
                         "aggregated": self.counters.aggregated,
                         "outcomes": self.counters.outcomes},
            "rss_curve_mib": [
                [int(s.aggregated), round(sum(s.rss_bytes) / mib, 1)]
                for s in _thin(self.samples, 12)
            ],
        }


def _thin(samples: Sequence[Sample], count: int) -> list[Sample]:
    if len(samples) <= count:
        return list(samples)
    step = (len(samples) - 1) / (count - 1)
    return [samples[round(i * step)] for i in range(count)]


def wait_group_stable(bootstrap: str, group: str, members: int, timeout_s: float = 180.0) -> None:
    """Until the consumer group has `members` members and no rebalance under way."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="cityops-bench")
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            described = admin.describe_groups([group]).get(group, {})
            if (described.get("group_state") == "Stable"
                    and len(described.get("members") or []) == members):
                return
            time.sleep(0.5)
        raise TimeoutError(f"group {group} not stable with {members} members")
    finally:
        admin.close()


def drain(workers: Sequence[Worker], expected: int, lag: LagProbe,
          broker_pid: int | None, timeout_s: float,
          log: Callable[[str], None] = print, poll_s: float = 1.0,
          load: Callable[[], object] | None = None) -> DrainResult:
    """Start the (already created, not started) workers, wait until ready, time the drain.

    Without `load` the input is already there and the clock starts when every worker is
    ready. With `load` (scale-out) the workers first settle into one stable group on empty
    topics, so no worker starts alone; the clock starts when `load()` starts sending.
    """
    for worker in workers:
        worker.start()
    started = time.monotonic()
    for worker in workers:
        worker.wait_ready()
    if load is not None:
        wait_group_stable(lag.bootstrap, lag.group, len(workers))
        time.sleep(2.0)  # let every agent settle on its partitions
    ready_at = time.monotonic()
    if load is not None:
        load()
    broker_cpu0 = process_usage(broker_pid).cpu_s if broker_pid else None
    usage0 = [w.usage() for w in workers]
    samples: list[Sample] = []
    processed_at: float | None = None
    done_at: float | None = None
    last_log = 0.0
    total = Counters()
    while True:
        now = time.monotonic()
        if now - ready_at > timeout_s:
            raise TimeoutError(f"drain of {expected} events not complete in {timeout_s:.0f}s: "
                               f"{total}")
        for worker in workers:
            if not worker.running:
                raise RuntimeError(f"worker {worker.app_id} died: {worker.log_tail()}")
        total = Counters()
        for worker in workers:
            total = total + worker.counters()
        usages = [w.usage() for w in workers]
        samples.append(Sample(now - ready_at, total.consumed, total.aggregated, total.rejected,
                              [u.rss_bytes for u in usages], [u.cpu_s for u in usages]))
        if now - last_log > 10:
            last_log = now
            # RSS in the progress line too: a drain that fails late keeps its memory curve.
            log(f"    {now - ready_at:6.1f}s consumed {int(total.consumed)} aggregated "
                f"{int(total.aggregated)} rejected {int(total.rejected)} of {expected}; "
                f"RSS {sum(u.rss_bytes for u in usages) / 2**20:.1f} MiB")
        complete = (total.consumed >= expected
                    and total.aggregated + total.rejected >= expected)
        if complete and processed_at is None:
            processed_at = now
        if complete and _lag_or_none(lag) == 0:
            done_at = time.monotonic()
            break
        time.sleep(poll_s if not complete else 0.2)
    usage1 = [w.usage() for w in workers]
    broker_cpu: float | None = None
    broker_restarted = False
    if broker_pid and broker_cpu0 is not None:
        try:
            broker_cpu = process_usage(broker_pid).cpu_s - broker_cpu0
        except OSError:  # another user of the shared broker restarted it meanwhile
            broker_restarted = True
    assert processed_at is not None
    return DrainResult(
        events=expected, workers=len(workers), ready_s=ready_at - started,
        seconds=done_at - ready_at, processed_s=processed_at - ready_at,
        steady_events_per_s=_steady_rate(samples, expected),
        cpu_s=[b.cpu_s - a.cpu_s for a, b in zip(usage0, usage1, strict=True)],
        rss_start=[u.rss_bytes for u in usage0], rss_end=[u.rss_bytes for u in usage1],
        rss_max=[max(s.rss_bytes[i] for s in samples) for i in range(len(workers))],
        broker_cpu_s=broker_cpu, counters=total, samples=samples,
        broker_restarted=broker_restarted,
    )


def _lag_or_none(lag: LagProbe) -> int | None:
    """The group's lag, or None while the shared broker is briefly unreachable (other users
    restart it): the drain then simply goes on being polled."""
    try:
        return lag.lag()
    except Exception:
        return None


def _steady_rate(samples: Sequence[Sample], expected: int) -> float:
    """Aggregated events per second between 10 % and 90 % of the drain."""
    low = next((s for s in samples if s.aggregated >= expected * 0.1), None)
    high = next((s for s in samples if s.aggregated >= expected * 0.9), None)
    if low is None or high is None or high.t <= low.t:
        return 0.0
    return (high.aggregated - low.aggregated) / (high.t - low.t)
