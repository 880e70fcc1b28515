"""What ``cityops simulate`` does: the SYNTHETIC city feed into the input topics.

It streams :mod:`cityops.simulator`'s feed, optionally with a named scenario
(:mod:`cityops.scenarios`), either in real time or as fast as possible with event times laid
out in the past so the pipeline's "not in the future, not older than 7 days" rule accepts all
of them. It sends through the same injectable sending side as ``cityops produce``.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TextIO

from cityops.produce import (
    EXIT_DELIVERY,
    EXIT_INVALID,
    EXIT_OK,
    SenderFactory,
    broker_errors,
    counts_text,
    open_sender,
    topic_name,
)
from cityops.simulator import (
    DEFAULT_INCIDENTS_PER_HOUR,
    CitySimulator,
    PointSampler,
    SimEvent,
    truncate_ms,
)
from core.vocabulary import ASSET_REGISTRY_SEED, MAX_EVENT_AGE

AGE_MARGIN: Final = timedelta(hours=1)
"""Fast mode keeps every event at least this much younger than the pipeline's 7-day limit."""
FAST_END_MARGIN: Final = timedelta(seconds=1)
PROGRESS_EVERY_S: Final = 0.5

def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class FeedPlan:
    """Where the simulated clock starts and stops, and where the scenario sits."""

    sim_start: datetime
    end: datetime | None
    """Background events at or after this time are not generated (None: no time limit)."""
    scenario_start: datetime | None


def plan_feed(
    now: datetime,
    rate_per_s: float,
    duration_s: float | None,
    count: int | None,
    realtime: bool,
    scenario_span: timedelta | None,
    scenario_delay_s: float,
) -> FeedPlan:
    """Lay the feed out in time.

    Real time: the clock starts now and the scenario ``scenario_delay_s`` later, so a viewer
    sees the calm city first. As fast as possible: the feed ends now and starts early enough
    for ``count`` events (mean span plus four standard deviations of a Poisson process) or
    ``duration_s``; the scenario ends just before now, because the situation rules look back
    from the worker's clock and a burst replayed long ago would fall outside their lookback.
    """
    if realtime:
        end = now + timedelta(seconds=duration_s) if duration_s is not None else None
        scenario_start = (
            now + timedelta(seconds=scenario_delay_s) if scenario_span is not None else None
        )
        return FeedPlan(now, end, scenario_start)
    if duration_s is not None:
        span_s = duration_s
    elif count is not None:
        span_s = (count + 4.0 * math.sqrt(count)) / rate_per_s
    else:
        raise ValueError("as fast as possible needs a count or a duration")
    sim_start = now - timedelta(seconds=span_s)
    scenario_start = None
    if scenario_span is not None:
        scenario_start = now - FAST_END_MARGIN - scenario_span
    return FeedPlan(truncate_ms(sim_start), now,
                    None if scenario_start is None else truncate_ms(scenario_start))


def _asset_id(event: SimEvent) -> str | None:
    record = event.record
    value = record.get("lamp_id") or record.get("container_id")
    return None if value is None else str(value)


def merge_feed(
    background: Iterator[SimEvent],
    scenario: Sequence[SimEvent],
    *,
    count: int | None,
    end: datetime | None,
    taken_assets: frozenset[str] = frozenset(),
    taken_from: datetime | None = None,
) -> Iterator[tuple[SimEvent, bool]]:
    """Background and scenario events in event-time order, as ``(event, is_scenario)``.

    The background stops after ``count`` of its events or at ``end``; scenario events are
    finite and stop only at ``end``. From ``taken_from`` on, background reports about the
    scenario's lamps and containers are dropped: a routine "OK" from the simulator, which knows
    nothing of the injected power loss, would otherwise undo the scenario.
    """
    emitted = 0

    def next_background() -> SimEvent | None:
        nonlocal emitted
        if count is not None and emitted >= count:
            return None
        for event in background:
            if end is not None and event.at >= end:
                return None
            if (
                taken_assets
                and taken_from is not None
                and event.at >= taken_from
                and _asset_id(event) in taken_assets
            ):
                continue
            emitted += 1
            return event
        return None

    pending = next_background()
    index = 0
    while True:
        upcoming = scenario[index] if index < len(scenario) else None
        if upcoming is not None and end is not None and upcoming.at >= end:
            upcoming = None
        if pending is None and upcoming is None:
            return
        if upcoming is not None and (pending is None or upcoming.at < pending.at):
            index += 1
            yield upcoming, True
        else:
            assert pending is not None
            yield pending, False
            pending = next_background()


@dataclass(slots=True)
class FeedStats:
    by_type: Counter[str] = field(default_factory=Counter)
    by_topic: Counter[str] = field(default_factory=Counter)
    scenario_events: int = 0
    failures: int = 0
    first_failure: str | None = None
    first_at: datetime | None = None
    last_at: datetime | None = None

    @property
    def sent(self) -> int:
        return sum(self.by_type.values())

    def failed(self, error: Any) -> None:
        self.failures += 1
        if self.first_failure is None:
            self.first_failure = f"{type(error).__name__}: {error}"


def run_simulate(
    bootstrap: str,
    seed: int | None,
    rate_per_s: float,
    duration_s: float | None,
    count: int | None,
    scenario: str | None,
    realtime: bool,
    progress: bool,
    *,
    registry_seed: int = ASSET_REGISTRY_SEED,
    incidents_per_hour: float = DEFAULT_INCIDENTS_PER_HOUR,
    scenario_delay_s: float = 10.0,
    sender_factory: SenderFactory | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    wall_clock: Callable[[], datetime] = _utc_now,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """``cityops simulate``: exit 0 when every event was delivered, 1 on a delivery error, 2 on
    bad arguments. Ctrl-C stops the feed, flushes and prints the summary (exit 0).

    A send the producer refuses (the broker unreachable) ends a fast feed, whose point is a
    complete data set; a realtime feed (what ``cityops demo`` runs) counts the event as not
    delivered and goes on, so the live view recovers when the broker does.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    from cityops.assets import generate_asset_registry
    from cityops.scenarios import SCENARIOS
    from core.reference_data import load_ward_records

    problem = _check_simulate_args(rate_per_s, duration_s, count, realtime, scenario)
    if problem is not None:
        print(problem, file=err)
        return EXIT_INVALID
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)

    wards = load_ward_records()
    assets = generate_asset_registry(wards, seed=registry_seed)
    points = PointSampler(wards)
    now = truncate_ms(wall_clock().astimezone(UTC))
    chosen = SCENARIOS[scenario] if scenario is not None else None
    span = None
    if chosen is not None:
        probe = chosen.events(wards, assets, seed, now, points=points)
        span = (probe[-1].at - now) if probe else timedelta(0)
    plan = plan_feed(now, rate_per_s, duration_s, count, realtime, span, scenario_delay_s)
    if not realtime:
        oldest = plan.sim_start if plan.scenario_start is None else min(
            plan.sim_start, plan.scenario_start
        )
        if now - oldest > MAX_EVENT_AGE - AGE_MARGIN:
            print(
                f"the feed would start {(now - oldest) / timedelta(days=1):.1f} days before "
                f"now; the pipeline rejects events older than {MAX_EVENT_AGE.days} days: lower "
                "--count or --duration, or raise --rate",
                file=err,
            )
            return EXIT_INVALID
    injected: list[SimEvent] = []
    if chosen is not None and plan.scenario_start is not None:
        injected = chosen.events(wards, assets, seed, plan.scenario_start, points=points)
    taken = frozenset(a for a in (_asset_id(e) for e in injected) if a is not None)
    simulator = CitySimulator(
        wards, assets, seed, plan.sim_start, rate_per_s,
        incidents_per_hour=incidents_per_hour, points=points,
    )
    feed = merge_feed(
        simulator.events(), injected, count=count, end=plan.end,
        taken_assets=taken, taken_from=plan.scenario_start,
    )

    delivery_errors = broker_errors()
    sender = open_sender(bootstrap, "cityops-simulator", sender_factory, err)
    if sender is None:
        return EXIT_DELIVERY

    stats = FeedStats()
    started = monotonic()
    last_progress = started
    interrupted = False
    try:
        for event, from_scenario in feed:
            if realtime:
                delay = started + (event.at - plan.sim_start).total_seconds() - monotonic()
                if delay > 0:
                    sleep(delay)
            try:
                future = sender.send(event.schema, event.record)
            except delivery_errors as error:
                stats.failed(error)
                if realtime:  # a live feed outlives a broker outage: count it, go on
                    continue
                break
            future.add_errback(stats.failed)
            stats.by_type[event.schema.rpartition(".")[2]] += 1
            stats.by_topic[topic_name(event.schema, event.record)] += 1
            stats.scenario_events += from_scenario
            stats.first_at = stats.first_at or event.at
            stats.last_at = event.at
            if progress and monotonic() - last_progress >= PROGRESS_EVERY_S:
                last_progress = monotonic()
                _progress_line(stats, last_progress - started, err)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        try:
            sender.flush()
            sender.close()
        except delivery_errors as error:
            stats.failed(error)
    elapsed = monotonic() - started
    if progress:
        print(file=err)
    _summary(stats, elapsed, seed, registry_seed, chosen, interrupted, out)
    if stats.failures:
        noun = "event" if stats.failures == 1 else "events"
        print(f"{stats.failures} {noun} not delivered; first error: {stats.first_failure}",
              file=err)
        return EXIT_DELIVERY
    return EXIT_OK


def _check_simulate_args(
    rate_per_s: float,
    duration_s: float | None,
    count: int | None,
    realtime: bool,
    scenario: str | None,
) -> str | None:
    from cityops.scenarios import SCENARIOS

    if not (math.isfinite(rate_per_s) and rate_per_s > 0.0):
        return f"--rate must be a number > 0, got {rate_per_s}"
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0.0):
        return f"--duration must be a number of seconds > 0, got {duration_s}"
    if count is not None and count < 0:
        return f"--count must be >= 0, got {count}"
    if not realtime and duration_s is None and count is None:
        return "as fast as possible needs --count or --duration (or use --realtime)"
    if scenario is not None and scenario not in SCENARIOS:
        return f"--scenario {scenario!r} is not one of {', '.join(SCENARIOS)}"
    return None


def _progress_line(stats: FeedStats, elapsed_s: float, err: TextIO) -> None:
    rate = stats.sent / elapsed_s if elapsed_s > 0 else 0.0
    at = stats.last_at.isoformat(timespec="seconds") if stats.last_at else "-"
    err.write(
        f"\rsent {stats.sent} ({counts_text(stats.by_type)}) at {rate:.1f} events/s, "
        f"event time {at}   "
    )
    err.flush()


def _summary(
    stats: FeedStats,
    elapsed_s: float,
    seed: int,
    registry_seed: int,
    scenario: Any,
    interrupted: bool,
    out: TextIO,
) -> None:
    rate = stats.sent / elapsed_s if elapsed_s > 0 else 0.0
    stopped = " (stopped by Ctrl-C)" if interrupted else ""
    print(
        f"simulated {stats.sent} events in {elapsed_s:.1f} s ({rate:.1f} events/s){stopped}; "
        f"seed {seed}, registry seed {registry_seed}",
        file=out,
    )
    print(f"  by type: {counts_text(stats.by_type) or 'none'}", file=out)
    print(f"  by topic: {counts_text(stats.by_topic) or 'none'}", file=out)
    if stats.first_at is not None and stats.last_at is not None:
        print(
            f"  event time: {stats.first_at.isoformat()} .. {stats.last_at.isoformat()}",
            file=out,
        )
    if scenario is not None:
        expected = ", ".join(
            f"{code} >= {level}" for code, level in sorted(scenario.expected_wards.items())
        )
        print(
            f"  scenario {scenario.name}: {stats.scenario_events} events; expected: {expected}",
            file=out,
        )


def run_simulate_rt_month(
    bootstrap: str,
    seed: int | None,
    period: str | None,
    kelurahan: Sequence[str] = (),
    *,
    registry_seed: int | None = None,
    json_out: str | None = None,
    sender_factory: SenderFactory | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    wall_clock: Callable[[], datetime] = _utc_now,
) -> int:
    """``cityops simulate --rt-month``: one SYNTHETIC month of RT reports (and its clean base
    month) for the synthetic registry, with the mistakes of :mod:`cityops.rt_simulator`; sent,
    or with ``json_out`` written as JSON Lines for ``cityops produce --type rt_report``.

    Prints the verdict counts the worker must give, so an operator can compare them with the
    validations topic. Exit codes as ``cityops simulate``.
    """
    import json

    from cityops.neighbourhoods import NEIGHBOURHOOD_REGISTRY_SEED, generate_registry
    from cityops.rt_simulator import RT_REPORT_SCHEMA, previous_month, simulate_month
    from core.reference_data import load_ward_records
    from processors.neighbourhood import PERIOD_PATTERN

    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if period is not None and PERIOD_PATTERN.fullmatch(period) is None:
        print(f"--rt-month must be YYYY-MM, got {period!r}", file=err)
        return EXIT_INVALID
    period = period or previous_month(wall_clock())
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    registry = generate_registry(load_ward_records(),
                                 NEIGHBOURHOOD_REGISTRY_SEED if registry_seed is None
                                 else registry_seed)
    try:
        month = simulate_month(registry, period, seed=seed, kelurahan=kelurahan or None,
                               submitted_by=wall_clock())
    except ValueError as error:
        print(f"cityops simulate: {error}", file=err)
        return EXIT_INVALID
    if json_out is not None:
        with open(json_out, "w", encoding="utf-8") as handle:
            for line in month.json_lines():
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    else:
        sender = open_sender(bootstrap, "cityops-rt-simulator", sender_factory, err)
        if sender is None:
            return EXIT_DELIVERY
        stats = FeedStats()
        try:
            for report in month.reports:
                future = sender.send(RT_REPORT_SCHEMA, report.record)
                future.add_errback(stats.failed)
                stats.by_type["RtReport"] += 1
        except broker_errors() as error:
            stats.failed(error)
        finally:
            try:
                sender.flush()
                sender.close()
            except broker_errors() as error:
                stats.failed(error)
        if stats.failures:
            print(f"{stats.failures} RT reports not delivered; first error: "
                  f"{stats.first_failure}", file=err)
            return EXIT_DELIVERY
    where = json_out if json_out is not None else "sent"
    print(f"SYNTHETIC RT reports: {len(month.reports)} submissions for {len(month.rt_codes)} RT "
          f"({month.base_period} clean, {month.period} with mistakes); seed {seed}; {where}",
          file=out)
    mistakes = ", ".join(f"{kind} {len(codes)}" for kind, codes in sorted(month.mistakes.items()))
    print(f"  mistakes in {month.period}: {mistakes}", file=out)
    for label in (month.base_period, month.period):
        counts = month.verdict_counts(label)
        print(f"  expected verdicts {label}: " + ", ".join(
            f"{verdict} {count}" for verdict, count in counts.items()), file=out)
    return EXIT_OK
