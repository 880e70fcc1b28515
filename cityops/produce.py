"""What ``cityops produce`` does: a partner's JSON events into the input topics.

``produce`` is the partners' path: JSON in (files, stdin or ``--json`` arguments), Avro out.
A batch is all-or-nothing on validation: every record is converted and checked against the
schema before the first one is sent, because a half-sent batch would leave the partner
guessing which records to retry. Delivery itself cannot be all-or-nothing (Kafka has no
cross-topic transaction here); a delivery error names the records that failed, and resending
the whole batch is safe because the pipeline counts each ``event_id`` once.

``cityops simulate`` (:mod:`cityops.simulate`) sends through the same sending side. That side
is injectable (``sender_factory``) so unit tests run without a broker; the default is
:class:`cityops.producer.PartnerProducer` (acks=all, idempotent).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol, TextIO

import topics.event_types
from core.text import terminal_safe
from schemas.codec import CodecError, default_catalog, validate
from topics.catalog import TopicCatalog, by_schema

EXIT_OK: Final = 0
EXIT_DELIVERY: Final = 1
EXIT_INVALID: Final = 2

EVENT_TYPES: Final[Mapping[str, str]] = {
    kind: spec.value_schema for kind, spec in topics.event_types.PARTNER_KINDS
}
"""``--type`` values and the Avro record each stands for (from the event-type catalog)."""
TYPE_FIELD: Final = "type"
"""Optional member of a JSON object naming its event type; removed before validation."""

MAX_LISTED_RECORDS: Final = 20
"""Up to this many records, the summary lists each record's partition and offset."""
MAX_LISTED_ERRORS: Final = 20
DELIVERY_TIMEOUT_S: Final = 60.0
MAX_JSON_DEPTH: Final = 32
"""Deepest nesting of arrays and objects accepted. An event is one flat object (two levels with
an enclosing array); Python's JSON parser would recurse once per level and end in a
RecursionError traceback near 1,000, so anything this deep is refused as invalid input."""



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


def open_sender(bootstrap: str, client_id: str, sender_factory: SenderFactory | None,
                err: TextIO) -> Sender | None:
    """The injected sender or the real producer; None (said on `err`) when Kafka is
    unreachable, so the caller sends nothing and exits with EXIT_DELIVERY."""
    try:
        return (sender_factory(bootstrap) if sender_factory is not None
                else partner_sender(bootstrap, client_id))
    except broker_errors() as error:
        print(f"cannot reach Kafka at {bootstrap}: {error}; nothing sent", file=err)
        return None


def broker_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the broker did not take it", as opposed to a bug."""
    from kafka.errors import KafkaError

    return (KafkaError, OSError)


def topic_name(schema: str, record: Mapping[str, Any] | None = None) -> str:
    """The deployed input topic of a record of an event type (CITYOPS_TOPIC_PREFIX applied):
    its source's own topic for an incident, the type's shared topic without a record."""
    spec = by_schema(schema) if record is None else topics.event_types.topic_for(schema, record)
    return TopicCatalog.from_env().name(spec)


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


_JSON_STRING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_JSON_BRACKET: Final = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in `text` outside string literals, without parsing it
    (so without recursion): checked before the parser sees the text."""
    depth = deepest = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _loads(text: str) -> Any:
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested {depth} levels deep (at most {MAX_JSON_DEPTH})")
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
    """Full Avro name of a ``--type`` (``incident``, ``rt_report``, ...) or a short or full
    Avro name."""
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
    #: The input index of each entry of `errors` (the gateway names them per record).
    error_indexes: list[int] = field(default_factory=list)


def prepare(items: Sequence[JsonItem], event_type: str | None) -> Prepared:
    """Convert and validate every item; error lines read ``record <i> (<where>): <rule>``."""
    out = Prepared()
    for index, item in enumerate(items):
        try:
            schema, record = to_record(item.value, event_type)
            validate(schema, record)
        except RecordError as error:
            out.errors.append(f"record {index} ({item.where}): {error}")
            out.error_indexes.append(index)
            continue
        except CodecError as error:
            out.errors.append(f"record {index} ({item.where}): {error.message}")
            out.error_indexes.append(index)
            continue
        out.records.append((schema, record))
    return out


# ----------------------------------------------------------------------------------------------
# produce
# ----------------------------------------------------------------------------------------------


def _print_errors(errors: Sequence[str], err: TextIO) -> None:
    # the lines quote partner input: escaped, so a record cannot write to the terminal
    for line in errors[:MAX_LISTED_ERRORS]:
        print(terminal_safe(line), file=err)
    hidden = len(errors) - MAX_LISTED_ERRORS
    if hidden > 0:
        print(f"... and {hidden} more", file=err)


def counts_text(counter: Mapping[str, int]) -> str:
    """"incident 3, waste 1": a summary line's counts, by name."""
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
            print(f"--type: {terminal_safe(str(error))}", file=err)
            return EXIT_INVALID
    try:
        items = read_inputs(sources, json_args, stdin)
    except InputError as error:
        print(f"{terminal_safe(str(error))}; nothing sent", file=err)
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
    delivery_errors = broker_errors()
    sender = open_sender(bootstrap, "cityops-produce", sender_factory, err)
    if sender is None:
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
    print(f"sent {delivered} of {len(records)} records: {counts_text(by_topic) or 'none'}",
          file=out)
    if failures:
        _print_errors(failures, err)
        print(
            f"{len(records) - delivered} records not confirmed; resending the whole batch is "
            "safe (the pipeline counts each event_id once)",
            file=err,
        )
        return EXIT_DELIVERY
    return EXIT_OK
