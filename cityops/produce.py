"""What ``cityops produce`` and ``cityops simulate`` do: partner events into the input topics.

``produce`` is the partners' path: JSON in (files, stdin or ``--json`` arguments), Avro out.
A batch is all-or-nothing on validation: every record is converted and checked against the
schema before the first one is sent, because a half-sent batch would leave the partner
guessing which records to retry. Delivery itself cannot be all-or-nothing (Kafka has no
cross-topic transaction here); a delivery error names the records that failed, and resending
the whole batch is safe because the pipeline counts each ``event_id`` once.

``simulate`` streams the SYNTHETIC city feed (:mod:`cityops.simulator`), optionally with a
named scenario (:mod:`cityops.scenarios`), either in real time or as fast as possible with
event times laid out in the past so the pipeline's "not in the future, not older than 7 days"
rule accepts all of them.

The sending side is injectable (``sender_factory``) so unit tests run without a broker; the
default is :class:`cityops.producer.PartnerProducer` (acks=all, idempotent).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol, TextIO

from cityops.simulator import (
    DEFAULT_INCIDENTS_PER_HOUR,
    INCIDENT_SCHEMA,
    LIGHTING_SCHEMA,
    WASTE_SCHEMA,
    CitySimulator,
    PointSampler,
    SimEvent,
    truncate_ms,
)
from core.vocabulary import ASSET_REGISTRY_SEED, MAX_EVENT_AGE
from schemas.codec import CodecError, default_catalog, validate

EXIT_OK: Final = 0
EXIT_DELIVERY: Final = 1
EXIT_INVALID: Final = 2

EVENT_TYPES: Final[Mapping[str, str]] = {
    "incident": INCIDENT_SCHEMA,
    "lighting": LIGHTING_SCHEMA,
    "waste": WASTE_SCHEMA,
}
"""``--type`` values and the Avro record each stands for."""
TYPE_FIELD: Final = "type"
"""Optional member of a JSON object naming its event type; removed before validation."""

MAX_LISTED_RECORDS: Final = 20
"""Up to this many records, the summary lists each record's partition and offset."""
MAX_LISTED_ERRORS: Final = 20
DELIVERY_TIMEOUT_S: Final = 60.0

AGE_MARGIN: Final = timedelta(hours=1)
"""Fast mode keeps every event at least this much younger than the pipeline's 7-day limit."""
FAST_END_MARGIN: Final = timedelta(seconds=1)
PROGRESS_EVERY_S: Final = 0.5


# ----------------------------------------------------------------------------------------------
# Sending side (injectable).
# ----------------------------------------------------------------------------------------------


class Sender(Protocol):
    """What produce/simulate need from a producer; :class:`PartnerProducer` fits.

    ``send`` returns a kafka-python-like future: ``get(timeout)`` gives the record metadata
    (``topic``, ``partition``, ``offset``) or raises, ``add_errback(fn)`` calls ``fn(exc)`` on
    failure.
    """

    def send(self, schema: str, record: Mapping[str, Any]) -> Any: ...

    def flush(self, timeout_s: float = 60.0) -> None: ...

    def close(self) -> None: ...


SenderFactory = Callable[[str], Sender]


def partner_sender(bootstrap: str, client_id: str) -> Sender:
    """The real producer (imported here so the module loads without a broker library)."""
    from cityops.producer import PartnerProducer

    return PartnerProducer(bootstrap, client_id=client_id)


def _delivery_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the broker did not take it", as opposed to a bug."""
    from kafka.errors import KafkaError

    return (KafkaError, OSError)


def _topic_name(schema: str) -> str:
    from cityops.producer import topic_for

    return topic_for(schema).name


# ----------------------------------------------------------------------------------------------
# JSON input.
# ----------------------------------------------------------------------------------------------


class InputError(Exception):
    """Input that cannot be read as JSON objects; the message says where."""


@dataclass(frozen=True, slots=True)
class JsonItem:
    """One JSON value read from the input and where it came from (for messages)."""

    where: str
    value: Any


def _no_constants(name: str) -> Any:
    # NaN and Infinity are not JSON; Python accepts them by default, the Avro doubles would
    # carry them, and the pipeline would reject the event later with a vaguer message.
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_no_constants)


def parse_json_text(text: str, label: str) -> list[JsonItem]:
    """Objects from a JSON array, a single JSON value, or JSON Lines (one value per line).

    Whole-document parsing is tried first so a pretty-printed object works; JSON Lines is the
    fallback when the document holds several values.
    """
    if not text.strip():
        return []
    try:
        document = _loads(text)
    except ValueError as whole_error:
        items: list[JsonItem] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(JsonItem(f"{label} line {number}", _loads(line)))
            except ValueError as error:
                if not items:
                    raise InputError(f"{label}: not JSON: {whole_error}") from None
                raise InputError(f"{label} line {number}: not JSON: {error}") from None
        return items
    if isinstance(document, list):
        return [JsonItem(f"{label}[{i}]", value) for i, value in enumerate(document)]
    return [JsonItem(label, document)]


def read_inputs(sources: Sequence[str], json_args: Sequence[str], stdin: TextIO) -> list[JsonItem]:
    """Every JSON value from the files (``-`` = stdin), then the ``--json`` arguments; stdin
    alone when neither is given."""
    items: list[JsonItem] = []
    for source in sources:
        if source == "-":
            items += parse_json_text(stdin.read(), "<stdin>")
            continue
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"{source}: cannot read: {error}") from None
        items += parse_json_text(text, source)
    for number, text in enumerate(json_args, start=1):
        items += parse_json_text(text, f"--json #{number}")
    if not sources and not json_args:
        items += parse_json_text(stdin.read(), "<stdin>")
    return items


# ----------------------------------------------------------------------------------------------
# JSON object -> Avro record.
# ----------------------------------------------------------------------------------------------


class RecordError(Exception):
    """One record that cannot become a valid Avro record; the message names field and rule."""


def resolve_event_type(name: str) -> str:
    """Full Avro name for ``incident``/``lighting``/``waste`` (or a short or full Avro name)."""
    lowered = name.strip().lower()
    if lowered in EVENT_TYPES:
        return EVENT_TYPES[lowered]
    for full in EVENT_TYPES.values():
        if name in (full, full.rpartition(".")[2]):
            return full
    raise ValueError(f"{name!r} is not one of {', '.join(EVENT_TYPES)}")


def _is_timestamp(schema: Any) -> bool:
    if isinstance(schema, list):
        return any(_is_timestamp(branch) for branch in schema)
    return isinstance(schema, dict) and schema.get("logicalType") == "timestamp-millis"


def parse_timestamp(value: Any) -> Any:
    """ISO-8601 text with a time zone, or integer epoch milliseconds -> aware UTC datetime.

    Anything else is returned unchanged so schema validation reports its type. A time without
    a zone is refused: a partner in WIB would otherwise be off by seven hours.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        try:
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)
        except OverflowError:
            raise ValueError(f"{value} epoch milliseconds is out of range") from None
    if isinstance(value, float):
        raise ValueError(f"{value!r}: epoch milliseconds must be an integer")
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is not an ISO-8601 time (e.g. 2026-03-01T10:15:00Z) "
                "nor epoch milliseconds"
            ) from None
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(
                f"{value!r} has no time zone; add Z (UTC) or an offset such as +07:00"
            )
        return moment.astimezone(UTC)
    return value



def _fields(schema: str) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = default_catalog().current(schema).writer_schema["fields"]
    return fields


def to_record(value: Any, event_type: str | None) -> tuple[str, dict[str, Any]]:
    """(Avro full name, record) for one JSON value, converted but not yet validated.

    The event type comes from the object's ``type`` member, else from ``event_type``; when both
    are given they must agree. Timestamps are parsed, absent optional fields get their schema
    default. ``event_id`` is never invented: it is the partner's retry key, and an id made up
    here would turn every retry into a new event.
    """
    if not isinstance(value, dict):
        kind = "array" if isinstance(value, list) else type(value).__name__
        raise RecordError(f"expected a JSON object, got {kind}")
    obj = dict(value)
    named = obj.pop(TYPE_FIELD, None)
    schema: str | None = None
    if named is not None:
        if not isinstance(named, str):
            raise RecordError(f"{TYPE_FIELD}: {named!r} is not one of {', '.join(EVENT_TYPES)}")
        try:
            schema = resolve_event_type(named)
        except ValueError as error:
            raise RecordError(f"{TYPE_FIELD}: {error}") from None
    if event_type is not None:
        given = resolve_event_type(event_type)
        if schema is not None and schema != given:
            raise RecordError(
                f"{TYPE_FIELD}: {named!r} contradicts --type {event_type}"
            )
        schema = given
    if schema is None:
        raise RecordError(f"no event type: pass --type or give a {TYPE_FIELD!r} member")
    short = schema.rpartition(".")[2]
    for spec in _fields(schema):
        name = spec["name"]
        if name in obj:
            if _is_timestamp(spec["type"]):
                try:
                    obj[name] = parse_timestamp(obj[name])
                except ValueError as error:
                    raise RecordError(f"{short}.{name}: {error}") from None
        elif "default" in spec:
            obj[name] = spec["default"]
    return schema, obj


@dataclass(slots=True)
class Prepared:
    """Every record converted and validated, or the reasons why not (nothing is sent then)."""

    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def prepare(items: Sequence[JsonItem], event_type: str | None) -> Prepared:
    """Convert and validate every item; error lines read ``record <i> (<where>): <rule>``."""
    out = Prepared()
    for index, item in enumerate(items):
        try:
            schema, record = to_record(item.value, event_type)
            validate(schema, record)
        except RecordError as error:
            out.errors.append(f"record {index} ({item.where}): {error}")
            continue
        except CodecError as error:
            out.errors.append(f"record {index} ({item.where}): {error.message}")
            continue
        out.records.append((schema, record))
    return out


# ----------------------------------------------------------------------------------------------
# produce
# ----------------------------------------------------------------------------------------------


def _print_errors(errors: Sequence[str], err: TextIO) -> None:
    for line in errors[:MAX_LISTED_ERRORS]:
        print(line, file=err)
    hidden = len(errors) - MAX_LISTED_ERRORS
    if hidden > 0:
        print(f"... and {hidden} more", file=err)


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counter.items()))


def run_produce(
    bootstrap: str,
    event_type: str | None,
    sources: list[str],
    json_args: list[str],
    stdin: TextIO,
    *,
    sender_factory: SenderFactory | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    delivery_timeout_s: float = DELIVERY_TIMEOUT_S,
) -> int:
    """``cityops produce``: exit 0 when every record was delivered, 2 when the input is invalid
    (nothing sent), 1 when the broker did not take every record."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if event_type is not None:
        try:
            resolve_event_type(event_type)
        except ValueError as error:
            print(f"--type: {error}", file=err)
            return EXIT_INVALID
    try:
        items = read_inputs(sources, json_args, stdin)
    except InputError as error:
        print(f"{error}; nothing sent", file=err)
        return EXIT_INVALID
    if not items:
        print("no records in the input; nothing sent", file=err)
        return EXIT_INVALID
    prepared = prepare(items, event_type)
    if prepared.errors:
        _print_errors(prepared.errors, err)
        print(
            f"nothing sent: {len(prepared.errors)} of {len(items)} records are invalid",
            file=err,
        )
        return EXIT_INVALID
    return _deliver(bootstrap, prepared.records, sender_factory, out, err, delivery_timeout_s)


def _deliver(
    bootstrap: str,
    records: Sequence[tuple[str, dict[str, Any]]],
    sender_factory: SenderFactory | None,
    out: TextIO,
    err: TextIO,
    timeout_s: float,
) -> int:
    delivery_errors = _delivery_errors()
    try:
        sender = (
            sender_factory(bootstrap)
            if sender_factory is not None
            else partner_sender(bootstrap, "cityops-produce")
        )
    except delivery_errors as error:
        print(f"cannot reach Kafka at {bootstrap}: {error}; nothing sent", file=err)
        return EXIT_DELIVERY
    failures: list[str] = []
    by_topic: Counter[str] = Counter()
    placed: list[str] = []
    try:
        futures: list[tuple[int, Any]] = []
        for index, (schema, record) in enumerate(records):
            try:
                futures.append((index, sender.send(schema, record)))
            except delivery_errors as error:
                failures.append(f"record {index}: not sent: {type(error).__name__}: {error}")
        try:
            sender.flush(timeout_s)
        except delivery_errors as error:
            failures.append(f"flush: {type(error).__name__}: {error}")
        for index, future in futures:
            try:
                metadata = future.get(timeout=timeout_s)
            except delivery_errors as error:
                failures.append(f"record {index}: not delivered: {type(error).__name__}: {error}")
                continue
            by_topic[metadata.topic] += 1
            placed.append(
                f"record {index}: {metadata.topic} partition {metadata.partition} "
                f"offset {metadata.offset}"
            )
    finally:
        try:
            sender.close()
        except delivery_errors as error:
            failures.append(f"close: {type(error).__name__}: {error}")
    if len(records) <= MAX_LISTED_RECORDS:
        for line in placed:
            print(line, file=out)
    delivered = sum(by_topic.values())
    print(f"sent {delivered} of {len(records)} records: {_counts(by_topic) or 'none'}", file=out)
    if failures:
        _print_errors(failures, err)
        print(
            f"{len(records) - delivered} records not confirmed; resending the whole batch is "
            "safe (the pipeline counts each event_id once)",
            file=err,
        )
        return EXIT_DELIVERY
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# simulate
# ----------------------------------------------------------------------------------------------


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

    delivery_errors = _delivery_errors()
    try:
        sender = (
            sender_factory(bootstrap)
            if sender_factory is not None
            else partner_sender(bootstrap, "cityops-simulator")
        )
    except delivery_errors as error:
        print(f"cannot reach Kafka at {bootstrap}: {error}; nothing sent", file=err)
        return EXIT_DELIVERY

    stats = FeedStats()
    topics = {schema: _topic_name(schema) for schema in EVENT_TYPES.values()}
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
            stats.by_topic[topics[event.schema]] += 1
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
        f"\rsent {stats.sent} ({_counts(stats.by_type)}) at {rate:.1f} events/s, "
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
    print(f"  by type: {_counts(stats.by_type) or 'none'}", file=out)
    print(f"  by topic: {_counts(stats.by_topic) or 'none'}", file=out)
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
