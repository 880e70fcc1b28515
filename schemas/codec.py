"""Avro single-object encoding for every record the pipeline reads or writes.

Wire format (Avro specification, "Single-object encoding"): the two marker bytes ``C3 01``, the
8-byte little-endian CRC-64-AVRO (Rabin) fingerprint of the writer schema's Parsing Canonical
Form, then the Avro binary body. Following the specification to the byte is what lets partners
use any Avro library (Java's ``BinaryMessageEncoder``/``Decoder`` and the Rust, Go and C#
equivalents speak this format) without a schema registry.

The decoder is built for hostile bytes (partners' topics are read raw): fastavro alone accepts
trailing garbage, decodes an enum index of -1 as the last symbol and raises a zoo of built-in
exceptions. Here every payload either becomes a record whose re-encoding reproduces the body byte
for byte, or raises :class:`CodecError` with a bounded ``reason`` that the dead-letter writer and
the metrics can use as they are.

Canonical bytes are proved without re-encoding: after fastavro's read, a check compiled once per
schema (:mod:`schemas.canonical`) walks the body and refuses every encoding the reader accepts
but a spec-following writer never produces (over-long varints, enum and union indexes outside
their range, booleans other than 0/1, negative or split array/map blocks, repeated map keys,
ints wider than 32 bits, signalling-NaN floats); the read position must equal the length. That
module's docstring lists each case with the reasoning, and ``tests/unit/test_canonical.py``
compares its verdicts with the re-encode's on generated and mutated bodies. A schema using
something the check does not cover keeps the re-encode.

Decoded records are plain dicts: enums are their symbol ``str``, ``timestamp-millis`` values are
UTC-aware ``datetime`` objects, and ``uuid`` strings stay the ``str`` that was sent (checked for
RFC 4122 form, never converted to ``uuid.UUID``).

Speed (one core, the simulator's event mix, about 100 bytes a partner record): encode ~85,000
records/s, of which validation is half (``python -m bench run``). A partner decode costs about
1.5x fastavro's reader alone, of which the compiled canonical-bytes check is a fifth of what the
re-encode cost (8.8 against 17.0 µs of CPU per record before, with the reader at 5.7;
``python -m bench codec``, 2026-12-02). For records the worker builds or reads back itself the
two fast paths skip the producer-side validation and the partner checks:
``encode(..., validate=False)`` and ``decode(..., trusted=True)`` (1.1x the reader).
BENCHMARKS.md has the current figures.

Typical use::

    from schemas.codec import CodecError, decode, encode

    payload = encode("IncidentEvent", record)
    decoded = decode(payload, expected="org.cityops.IncidentEvent")
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple
from uuid import UUID

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import (
    fingerprint,
    load_schema,
    parse_schema,
    to_parsing_canonical_form,
)
from fastavro.validation import ValidationError, ValidationErrorData
from fastavro.validation import validate as avro_validate

from core.rejections import CODEC_REASONS, CodecReason, Rejection
from schemas.canonical import CanonicalCheck, NonCanonicalError, compile_check

__all__ = [
    "AVRO_DIR",
    "CODEC_REASONS",
    "DEFAULT_MAX_BYTES",
    "HEADER_SIZE",
    "SINGLE_OBJECT_MARKER",
    "CodecError",
    "CodecReason",
    "DecodedRecord",
    "SchemaCatalog",
    "SchemaCatalogError",
    "SchemaVersion",
    "SingleObjectCodec",
    "UnknownSchemaError",
    "decode",
    "default_catalog",
    "default_codec",
    "encode",
    "validate",
]

AVRO_DIR: Final[Path] = Path(__file__).resolve().parent / "avro"
"""Current schemas, one file per named type, called ``<full name>.avsc``."""

HISTORY_DIRNAME: Final[str] = "history"
"""Sub-folder of :data:`AVRO_DIR` with every older published version, ``<full name>.v<N>.avsc``."""

SINGLE_OBJECT_MARKER: Final[bytes] = b"\xc3\x01"
HEADER_SIZE: Final[int] = len(SINGLE_OBJECT_MARKER) + 8

DEFAULT_MAX_BYTES: Final[int] = 1 << 20
"""Largest payload accepted, header included.

1 MiB is Kafka's default ``message.max.bytes`` (less 12 bytes of record overhead), so with a
default broker nothing larger arrives as one record anyway; rejecting it before decoding keeps a
worker's memory bounded.
"""

_MESSAGE_VALUE_LIMIT: Final[int] = 60
_UUID_TEXT: Final[re.Pattern[str]] = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_HISTORY_FILE: Final[re.Pattern[str]] = re.compile(r"(?P<name>.+)\.v(?P<version>[1-9][0-9]*)\.avsc")
_PRIMITIVES: Final[frozenset[str]] = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)


class CodecError(Rejection):
    """A payload that cannot be encoded or decoded: a :class:`Rejection` of stage DECODE whose
    ``reason`` is one of :data:`CODEC_REASONS`.

    The reason is checked at construction so a typo fails in tests instead of opening a new
    metric series in production; the message names the field and the rule for the dead letter.
    """

    __slots__ = ()

    def __init__(self, reason: CodecReason, message: str) -> None:
        if reason not in CODEC_REASONS:
            raise ValueError(f"CodecError.reason={reason!r} is not one of {CODEC_REASONS}")
        super().__init__("DECODE", reason, message)
        self.reason: CodecReason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        # The default pickling keeps only ``args`` (the message); keep the reason as well when
        # an error crosses a process boundary.
        return (type(self), (self.reason, self.message))

    def __repr__(self) -> str:
        return f"CodecError(reason={self.reason!r}, message={self.message!r})"


class UnknownSchemaError(LookupError):
    """A caller named a type the catalog does not have: a programming error, not bad data."""


class SchemaCatalogError(Exception):
    """The schema files themselves are inconsistent; raised while loading, never per message."""


class DecodedRecord(NamedTuple):
    """A decoded payload, already resolved to the current reader schema of its type.

    A named tuple rather than a frozen dataclass: built once per message, and a frozen
    dataclass's ``__init__`` cost more than the canonical-bytes check.
    """

    full_name: str
    writer_version: int
    record: dict[str, Any]


@dataclass(frozen=True, slots=True, eq=False)
class SchemaVersion:
    """One published version of a named type, parsed once.

    ``writer_schema`` is what encoding uses (logical types included). ``reading_schema`` is
    the same schema without the ``uuid`` logical type, so ids decode to the ``str`` that was sent
    (fastavro would turn them into ``uuid.UUID`` and re-encode an upper-case id in lower case,
    which the canonical-bytes check would then reject although RFC 4122 allows it).
    """

    full_name: str
    version: int
    is_current: bool
    fingerprint: bytes
    canonical_form: str
    writer_schema: dict[str, Any]
    reading_schema: dict[str, Any]
    source: Path

    @property
    def short_name(self) -> str:
        return self.full_name.rpartition(".")[2]

    @property
    def header(self) -> bytes:
        return SINGLE_OBJECT_MARKER + self.fingerprint


def _strip_for_reading(node: Any) -> Any:
    """Copy a parsed schema minus fastavro's private keys and the ``uuid`` logical type."""
    if isinstance(node, dict):
        return {
            key: _strip_for_reading(value)
            for key, value in node.items()
            if not key.startswith("__") and not (key == "logicalType" and value == "uuid")
        }
    if isinstance(node, list):
        return [_strip_for_reading(item) for item in node]
    return node


def _min_encoded_size(schema: Any, named: Mapping[str, Any], visiting: frozenset[str]) -> int:
    """Fewest bytes a value of ``schema`` can encode to (0 for null, empty records, ...)."""
    if isinstance(schema, list):
        return 1
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return {"null": 0, "float": 4, "double": 8}.get(schema, 1)
        if schema in visiting:
            return 1  # a recursive reference is only reachable through a union or a collection
        return _min_encoded_size(named[schema], named, visiting | {schema})
    kind = schema["type"]
    if kind == "record" or kind == "error":
        inner = visiting | {schema["name"]}
        return sum(_min_encoded_size(f["type"], named, inner) for f in schema["fields"])
    if kind == "fixed":
        return int(schema["size"])
    if kind in ("enum", "array", "map"):
        return 1
    return _min_encoded_size(kind, named, visiting)


def _check_no_amplification(schema: Any, named: Mapping[str, Any], where: str) -> None:
    """Refuse schemas whose arrays could decode an unbounded count of items from no bytes.

    An array block declares its count up front; as long as every item costs at least one byte, a
    count larger than the payload runs out of bytes after at most ``len(payload)`` items, so
    decoding work and memory stay proportional to the (size-capped) payload. Map entries always
    cost a key, so only arrays need the check.
    """
    seen: set[int] = set()

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch)
        elif isinstance(node, dict) and id(node) not in seen:
            seen.add(id(node))
            kind = node.get("type")
            if kind == "array":
                if _min_encoded_size(node["items"], named, frozenset()) == 0:
                    raise SchemaCatalogError(
                        f"{where}: array items can encode to zero bytes, so a tiny payload could "
                        "declare billions of them; give the item type at least one field"
                    )
                walk(node["items"])
            elif kind == "map":
                walk(node["values"])
            elif kind in ("record", "error"):
                for field in node["fields"]:
                    walk(field["type"])

    walk(schema)


def _named_schemas_of(parsed: dict[str, Any]) -> dict[str, Any]:
    named: dict[str, Any] = parsed.get("__named_schemas", {})
    return named


def _make_version(
    parsed: dict[str, Any], version: int, is_current: bool, source: Path
) -> SchemaVersion:
    full_name = parsed.get("name")
    if not isinstance(full_name, str):
        raise SchemaCatalogError(f"{source}: top-level schema must be a named type")
    canonical = to_parsing_canonical_form(parsed)
    reading = parse_schema(_strip_for_reading(parsed))
    if not isinstance(reading, dict):  # pragma: no cover - a named type parses to a dict
        raise SchemaCatalogError(f"{source}: reading copy is not a named type")
    if to_parsing_canonical_form(reading) != canonical:  # pragma: no cover - fastavro invariant
        raise SchemaCatalogError(f"{source}: reading copy changed the canonical form")
    _check_no_amplification(parsed, _named_schemas_of(parsed), str(source))
    return SchemaVersion(
        full_name=full_name,
        version=version,
        is_current=is_current,
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
        canonical_form=canonical,
        writer_schema=parsed,
        reading_schema=reading,
        source=source,
    )


class SchemaCatalog:
    """Every current schema and every archived version, parsed once and indexed by fingerprint.

    Current schemas are loaded with ``fastavro.schema.load_schema``, which pulls named types
    from sibling files (``EnrichedIncidentEvent`` -> ``org.cityops.IncidentEvent.avsc``); the
    fingerprint is therefore of the fully expanded schema, as the specification requires.

    Archived versions live in ``history/<full name>.v<N>.avsc`` and must be self-contained
    (every named type inline): a published writer schema must never change because a type it
    references evolved later. The current version of a type is one more than its newest archived
    version (1 when nothing is archived).
    """

    def __init__(self, avro_dir: Path = AVRO_DIR) -> None:
        self._dir = avro_dir
        self._current: dict[str, SchemaVersion] = {}
        self._versions: dict[str, list[SchemaVersion]] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        self._aliases: dict[str, str] = {}

        current_files = sorted(avro_dir.glob("*.avsc"))
        if not current_files:
            raise SchemaCatalogError(f"no *.avsc files in {avro_dir}")
        archived = self._load_history(avro_dir / HISTORY_DIRNAME)
        for path in current_files:
            parsed = load_schema(str(path))
            if not isinstance(parsed, dict) or parsed.get("name") != path.stem:
                raise SchemaCatalogError(f"{path}: file name must be '<full name>.avsc'")
            older = archived.pop(path.stem, {})
            version = max(older, default=0) + 1
            entry = _make_version(parsed, version, True, path)
            self._current[entry.full_name] = entry
            self._versions[entry.full_name] = [
                *(older[number] for number in sorted(older)),
                entry,
            ]
        if archived:
            raise SchemaCatalogError(
                f"archived versions without a current schema: {', '.join(sorted(archived))}"
            )
        for versions in self._versions.values():
            for entry in versions:
                clash = self._by_fingerprint.get(entry.fingerprint)
                if clash is not None:
                    raise SchemaCatalogError(
                        f"{entry.source} and {clash.source} have the same fingerprint "
                        f"{entry.fingerprint.hex()}: identical parsing canonical forms"
                    )
                self._by_fingerprint[entry.fingerprint] = entry
        short_names: dict[str, list[str]] = {}
        for full_name in self._current:
            self._aliases[full_name] = full_name
            short_names.setdefault(full_name.rpartition(".")[2], []).append(full_name)
        for short, owners in short_names.items():
            if len(owners) == 1:
                self._aliases.setdefault(short, owners[0])

    @staticmethod
    def _load_history(history_dir: Path) -> dict[str, dict[int, SchemaVersion]]:
        archived: dict[str, dict[int, SchemaVersion]] = {}
        if not history_dir.is_dir():
            return archived
        for path in sorted(history_dir.glob("*.avsc")):
            match = _HISTORY_FILE.fullmatch(path.name)
            if match is None:
                raise SchemaCatalogError(f"{path}: archived files are '<full name>.v<N>.avsc'")
            try:
                parsed = parse_schema(json.loads(path.read_text(encoding="utf-8")))
            except Exception as exc:
                raise SchemaCatalogError(
                    f"{path}: cannot parse ({exc}); archived schemas must be self-contained"
                ) from exc
            if not isinstance(parsed, dict) or parsed.get("name") != match["name"]:
                raise SchemaCatalogError(f"{path}: declares a different full name")
            version = int(match["version"])
            entry = _make_version(parsed, version, False, path)
            archived.setdefault(entry.full_name, {})[version] = entry
        return archived

    @property
    def directory(self) -> Path:
        return self._dir

    def full_name(self, name: str) -> str:
        """Full name for a full or unambiguous short name ("IncidentEvent")."""
        try:
            return self._aliases[name]
        except KeyError:
            raise UnknownSchemaError(
                f"unknown Avro type {name!r}; known: {', '.join(sorted(self._current))}"
            ) from None

    def names(self) -> tuple[str, ...]:
        """Full names of every current type, sorted."""
        return tuple(sorted(self._current))

    def record_names(self) -> tuple[str, ...]:
        """Full names of the current types that are records (what can travel as a message)."""
        return tuple(
            name
            for name in self.names()
            if self._current[name].writer_schema.get("type") == "record"
        )

    def current(self, name: str) -> SchemaVersion:
        return self._current[self.full_name(name)]

    def versions(self, name: str) -> tuple[SchemaVersion, ...]:
        """Every published version of the type, oldest first, current last."""
        return tuple(self._versions[self.full_name(name)])

    def version(self, name: str, version: int) -> SchemaVersion:
        for entry in self._versions[self.full_name(name)]:
            if entry.version == version:
                return entry
        raise UnknownSchemaError(f"{self.full_name(name)} has no version {version}")

    def by_fingerprint(self, fingerprint_bytes: bytes) -> SchemaVersion | None:
        return self._by_fingerprint.get(fingerprint_bytes)

    def all_versions(self) -> tuple[SchemaVersion, ...]:
        return tuple(self._by_fingerprint.values())


# ----------------------------------------------------------------------------------------------
# Checks fastavro's validation does not make, compiled once per schema into closures.
# ----------------------------------------------------------------------------------------------

_Check = Callable[[Any, str], None]


def _violation(path: str, rule: str) -> CodecError:
    return CodecError("schema_violation", f"{path}: {rule}")


def _short_repr(value: Any) -> str:
    text = repr(value)
    if len(text) > _MESSAGE_VALUE_LIMIT:
        return text[: _MESSAGE_VALUE_LIMIT - 3] + "..."
    return text


def _check_uuid(datum: Any, path: str) -> None:
    if isinstance(datum, str) and _UUID_TEXT.fullmatch(datum) is None:
        raise _violation(
            path, f"{_short_repr(datum)} is not a UUID (RFC 4122 text, 8-4-4-4-12 hex digits)"
        )


def _check_aware(datum: Any, path: str) -> None:
    # fastavro turns a naive datetime into epoch millis with the host's local time zone, so the
    # same record would encode differently on a host set to Asia/Jakarta: refuse it instead.
    if isinstance(datum, datetime) and datum.utcoffset() is None:
        raise _violation(
            path, f"{datum.isoformat()} is a naive datetime; give it a time zone (UTC)"
        )


def _accepts(schema: Any, named: Mapping[str, Any], datum: Any) -> bool:
    """Cheap guess of the union branch fastavro will pick, to run that branch's extra checks."""
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return schema == "string" and isinstance(datum, str)
        return _accepts(named[schema], named, datum)
    kind = schema["type"]
    if kind in ("record", "error", "map"):
        return isinstance(datum, Mapping)
    if kind == "array":
        return isinstance(datum, Sequence) and not isinstance(datum, str | bytes)
    logical = schema.get("logicalType")
    if logical == "uuid":
        return isinstance(datum, str | UUID)
    if logical == "timestamp-millis":
        return isinstance(datum, datetime | int)
    return False


class _CheckCompiler:
    """Builds the per-schema check; ``strict`` adds what only producers get wrong.

    Strict (encode/validate): unknown fields (fastavro silently drops them, so a typo in a field
    name would lose data), required fields that are missing, naive datetimes, UUID text. Decode
    only re-checks UUID text: the binary decoder already guarantees the rest.
    """

    def __init__(self, named: Mapping[str, Any], *, strict: bool) -> None:
        self._named = named
        self._strict = strict
        self._records: dict[str, _Check | None] = {}
        self._compiling: set[str] = set()

    def compile(self, schema: Any) -> _Check | None:
        if isinstance(schema, list):
            return self._union(schema)
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return None
            return self.compile(self._named[schema])
        kind = schema["type"]
        if kind in ("record", "error"):
            return self._record(schema)
        if kind == "array":
            return self._array(schema["items"])
        if kind == "map":
            return self._map(schema["values"])
        logical = schema.get("logicalType")
        if logical == "uuid" and kind == "string":
            return _check_uuid
        if logical == "timestamp-millis" and kind == "long" and self._strict:
            return _check_aware
        return None

    def _record(self, schema: dict[str, Any]) -> _Check | None:
        name: str = schema["name"]
        if name in self._records:
            return self._records[name]
        if name in self._compiling:
            # Recursive reference: look the finished check up at call time.
            return lambda datum, path: self._call_record(name, datum, path)
        self._compiling.add(name)
        fields: list[tuple[str, _Check]] = []
        for field in schema["fields"]:
            check = self.compile(field["type"])
            if check is not None:
                fields.append((field["name"], check))
        allowed = frozenset(f["name"] for f in schema["fields"])
        required = tuple(f["name"] for f in schema["fields"] if "default" not in f)
        strict = self._strict
        self._compiling.discard(name)
        if not strict and not fields:
            self._records[name] = None
            return None

        def check_record(datum: Any, path: str) -> None:
            # ``type(...) is dict`` first: decoded records are dicts, and the ABC check costs
            # more than the rest of this function on a decoded event.
            if type(datum) is not dict and not isinstance(datum, Mapping):
                return  # fastavro's validation reports the wrong type
            if strict:
                unknown = datum.keys() - allowed
                if unknown:
                    listed = ", ".join(sorted(_short_repr(key) for key in unknown))
                    raise _violation(path, f"unknown field(s) {listed} (not in the schema)")
                for field_name in required:
                    if field_name not in datum:
                        raise _violation(f"{path}.{field_name}", "required field is missing")
            for field_name, field_check in fields:
                if field_name in datum:
                    field_check(datum[field_name], f"{path}.{field_name}")

        self._records[name] = check_record
        return check_record

    def _call_record(self, name: str, datum: Any, path: str) -> None:
        check = self._records.get(name)
        if check is not None:
            check(datum, path)

    def _union(self, branches: list[Any]) -> _Check | None:
        candidates = [
            (branch, check) for branch in branches if (check := self.compile(branch)) is not None
        ]
        if not candidates:
            return None
        named = self._named

        def check_union(datum: Any, path: str) -> None:
            if datum is None:
                return
            for branch, check in candidates:
                if _accepts(branch, named, datum):
                    check(datum, path)
                    return

        return check_union

    def _array(self, items: Any) -> _Check | None:
        check = self.compile(items)
        if check is None:
            return None

        def check_array(datum: Any, path: str) -> None:
            if isinstance(datum, Sequence) and not isinstance(datum, str | bytes):
                for index, item in enumerate(datum):
                    check(item, f"{path}[{index}]")

        return check_array

    def _map(self, values: Any) -> _Check | None:
        check = self.compile(values)
        if check is None:
            return None

        def check_map(datum: Any, path: str) -> None:
            if isinstance(datum, Mapping):
                for key, value in datum.items():
                    check(value, f"{path}[{key!r}]")

        return check_map


# ----------------------------------------------------------------------------------------------
# Turning fastavro's validation errors into one line that names the field and the rule.
# ----------------------------------------------------------------------------------------------


def _short_type_name(name: str) -> str:
    return name.rpartition(".")[2]


def _type_label(schema: Any) -> str:
    if isinstance(schema, list):
        return " or ".join(_type_label(branch) for branch in schema)
    if isinstance(schema, str):
        return _short_type_name(schema)
    logical = schema.get("logicalType")
    if isinstance(logical, str):
        return logical
    kind = schema["type"]
    if kind in ("record", "error", "enum", "fixed"):
        return f"{kind} {_short_type_name(schema['name'])}"
    if kind == "array":
        return f"array of {_type_label(schema['items'])}"
    if kind == "map":
        return f"map of {_type_label(schema['values'])}"
    return str(kind)


def _python_type_label(datum: Any) -> str:
    return "null" if datum is None else type(datum).__name__


def _field_path(raw_field: str, top: str) -> str:
    # fastavro names a field "<record full name>.<field>"; our names carry no dots of their own,
    # so the last two parts are "Record.field".
    if not raw_field:
        return top
    parts = raw_field.split(".")
    return ".".join(parts[-2:])


_INT_RANGES: Final[dict[str, tuple[int, int]]] = {
    "int": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
}


def _describe_validation_error(error: ValidationError, top: str) -> str:
    problems: list[ValidationErrorData] = [
        item for item in error.errors if isinstance(item, ValidationErrorData)
    ]
    if not problems:  # pragma: no cover - fastavro always attaches the data
        return f"{top}: {error}"
    field = problems[0].field
    same_field = [item for item in problems if item.field == field]
    datum = same_field[0].datum
    path = _field_path(field, top)
    schemas = [item.schema for item in same_field]
    if len(schemas) == 1 and isinstance(schemas[0], dict) and schemas[0].get("type") == "enum":
        symbols = ", ".join(schemas[0]["symbols"])
        return f"{path}: {_short_repr(datum)} is not one of {symbols}"
    labels = [_type_label(schema) for schema in schemas]
    if isinstance(datum, int) and not isinstance(datum, bool):
        for schema, label in zip(schemas, labels, strict=True):
            base = schema.get("type") if isinstance(schema, dict) else schema
            if base in _INT_RANGES:
                low, high = _INT_RANGES[base]
                return f"{path}: {datum} is out of range for {label} ({low}..{high})"
    ordered = [label for label in labels if label != "null"] + [
        label for label in labels if label == "null"
    ]
    return f"{path}: expected {' or '.join(ordered)}, got {_python_type_label(datum)}"


# ----------------------------------------------------------------------------------------------
# The codec.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class _WriterPlan:
    """What encoding one type needs, resolved once."""

    version: SchemaVersion
    header: bytes
    strict_check: _Check | None
    decode_check: _Check | None


@dataclass(frozen=True, slots=True, eq=False)
class _ReaderPlan:
    """What decoding one writer version needs: its schema, the current plan of its type and the
    compiled canonical-bytes check (None: the schema needs the re-encode, see
    :mod:`schemas.canonical`)."""

    writer: SchemaVersion
    current: _WriterPlan
    is_record: bool
    canonical: CanonicalCheck | None
    short_name: str
    label: str
    """``<short name> (version <N>)``, the start of every message about this version."""


class SingleObjectCodec:
    """Encodes, validates and decodes single-object Avro against one :class:`SchemaCatalog`.

    Everything that depends only on the schemas (parsed schemas, headers, compiled checks) is
    computed in the constructor; per message the work is one fastavro read plus one pass of the
    compiled canonical-bytes check over the body, or one validation and one write.

    ``canonical_check="reencode"`` proves canonical bytes the previous way for every schema (a
    fastavro write of the decoded record, compared byte for byte): the oracle of the property
    tests and the "before" of ``python -m bench codec``.
    """

    def __init__(
        self,
        catalog: SchemaCatalog | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        canonical_check: Literal["compiled", "reencode"] = "compiled",
    ) -> None:
        if max_bytes < HEADER_SIZE:
            raise ValueError(
                f"max_bytes={max_bytes} leaves no room for the {HEADER_SIZE}-byte header"
            )
        self.catalog: SchemaCatalog = catalog if catalog is not None else default_catalog()
        self.max_bytes: int = max_bytes
        compiled = canonical_check == "compiled"
        self._writers: dict[str, _WriterPlan] = {}
        for name in self.catalog.names():
            current = self.catalog.current(name)
            named = _named_schemas_of(current.writer_schema)
            self._writers[name] = _WriterPlan(
                version=current,
                header=current.header,
                strict_check=_CheckCompiler(named, strict=True).compile(current.writer_schema),
                decode_check=_CheckCompiler(named, strict=False).compile(current.writer_schema),
            )
        self._readers: dict[bytes, _ReaderPlan] = {
            entry.fingerprint: _ReaderPlan(
                writer=entry,
                current=self._writers[entry.full_name],
                is_record=entry.writer_schema.get("type") == "record",
                canonical=compile_check(
                    entry.reading_schema, _named_schemas_of(entry.reading_schema),
                    entry.short_name,
                ) if compiled else None,
                short_name=entry.short_name,
                label=f"{entry.short_name} (version {entry.version})",
            )
            for entry in self.catalog.all_versions()
        }

    def canonical_check(self, fingerprint_bytes: bytes) -> CanonicalCheck | None:
        """The compiled canonical-bytes check of a writer version (None: that version is
        proved by re-encoding, or the codec was built with ``canonical_check="reencode"``);
        for benchmarks and tests."""
        return self._readers[fingerprint_bytes].canonical

    def _plan(self, name: str) -> _WriterPlan:
        plan = self._writers.get(name)
        if plan is None:
            plan = self._writers[self.catalog.full_name(name)]
        return plan

    # -- validation and encoding ---------------------------------------------------------------

    def validate(self, full_name: str, record: Mapping[str, Any]) -> None:
        """Raise :class:`CodecError` unless :meth:`encode` would accept ``record``.

        It encodes for real: some records pass every type check and still have no encoding (a
        ``str`` holding a lone surrogate has no UTF-8 form), and "valid" must mean "writable".
        """
        self.encode(full_name, record)

    def _validate(self, plan: _WriterPlan, record: Mapping[str, Any]) -> None:
        top = plan.version.short_name
        if plan.strict_check is not None:
            plan.strict_check(record, top)
        schema = plan.version.writer_schema
        try:
            # raise_errors=False first: with it fastavro does not build an exception for every
            # union branch it tries, which makes the common (valid) case several times faster.
            if avro_validate(record, schema, raise_errors=False):
                return
            avro_validate(record, schema, raise_errors=True)
        except ValidationError as exc:
            raise CodecError("schema_violation", _describe_validation_error(exc, top)) from None
        except Exception as exc:
            raise CodecError(
                "schema_violation", f"{top}: cannot be validated: {type(exc).__name__}: {exc}"
            ) from exc
        # fastavro said "invalid" without raising: keep the contract anyway.
        raise CodecError("schema_violation", f"{top}: does not match the schema")

    def encode(
        self, full_name: str, record: Mapping[str, Any], *, validate: bool = True
    ) -> bytes:
        """Validate ``record`` and return its single-object encoding with the current schema.

        ``validate=False`` skips the schema checks (about half the cost) for records the worker
        builds itself from an already decoded and checked record, such as an enriched event;
        the Avro writer still refuses values it cannot write. Never for outside input.
        """
        plan = self._plan(full_name)
        if validate:
            self._validate(plan, record)
        out = BytesIO()
        out.write(plan.header)
        try:
            schemaless_writer(out, plan.version.writer_schema, record)
        except Exception as exc:
            raise CodecError(
                "schema_violation",
                f"{plan.version.short_name}: cannot be encoded: {type(exc).__name__}: {exc}",
            ) from exc
        payload = out.getvalue()
        if len(payload) > self.max_bytes:
            raise CodecError(
                "oversized",
                f"{plan.version.short_name}: encodes to {len(payload)} bytes, above the "
                f"{self.max_bytes}-byte limit readers enforce",
            )
        return payload

    # -- decoding ------------------------------------------------------------------------------

    def decode(
        self,
        data: bytes | bytearray | memoryview,
        expected: str | None = None,
        *,
        trusted: bool = False,
    ) -> DecodedRecord:
        """Decode a single-object payload into a record of the current schema of its type.

        Raises :class:`CodecError` for every malformed payload, never another exception;
        :class:`UnknownSchemaError` only when ``expected`` names no known type.

        ``trusted=True`` skips the partner checks, the canonical-bytes proof and the UUID text
        check, for topics that only workers write, with records built from input that passed
        them (the enriched topics, the screened RT reports); the structural checks stay (size,
        marker, fingerprint, expected type, a body that decodes and ends where the payload
        does), so a damaged record is still a :class:`CodecError`, never a crash. Partner input
        is never trusted.
        """
        if type(data) is not bytes:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise CodecError(
                    "not_single_object", f"expected bytes, got {_python_type_label(data)}"
                )
            data = bytes(data)  # the checks slice and hash keys: one immutable copy
        size = len(data)
        if size > self.max_bytes:
            raise CodecError(
                "oversized", f"payload is {size} bytes, above the {self.max_bytes}-byte limit"
            )
        marker = data[:2]
        if marker != SINGLE_OBJECT_MARKER and marker != SINGLE_OBJECT_MARKER[: len(marker)]:
            raise CodecError(
                "not_single_object",
                f"payload starts with {marker.hex()}, not the single-object marker c301",
            )
        if size < HEADER_SIZE:
            raise CodecError(
                "truncated", f"payload is {size} bytes, shorter than the {HEADER_SIZE}-byte header"
            )
        fingerprint_bytes = bytes(data[2:HEADER_SIZE])
        reader = self._readers.get(fingerprint_bytes)
        if reader is None:
            raise CodecError(
                "unknown_fingerprint",
                f"no known schema has the fingerprint {fingerprint_bytes.hex()}",
            )
        writer = reader.writer
        if not reader.is_record:
            raise CodecError(
                "unexpected_schema",
                f"{writer.full_name} is not a record type; only records travel as messages",
            )
        if expected is not None and expected != writer.full_name:
            wanted = self.catalog.full_name(expected)
            if wanted != writer.full_name:
                raise CodecError(
                    "unexpected_schema",
                    f"expected {wanted}, got {writer.full_name} (version {writer.version})",
                )
        record = self._read_body(data, reader, trusted)
        if not writer.is_current:
            record = self._resolve(data, writer, reader.current.version)
        check = reader.current.decode_check
        if check is not None and not trusted:
            check(record, reader.short_name)
        return DecodedRecord(writer.full_name, writer.version, record)

    def _read_body(self, data: bytes, reader: _ReaderPlan, trusted: bool) -> dict[str, Any]:
        writer = reader.writer
        label = reader.label
        stream = BytesIO(data)
        stream.seek(HEADER_SIZE)
        try:
            # Strict UTF-8 named, not left to the default: the compiled canonical check does not
            # look at string bytes because this decode refuses every invalid sequence.
            record = schemaless_reader(
                stream, writer.reading_schema, None, handle_unicode_errors="strict"
            )
        except EOFError as exc:
            detail = f": {exc}" if str(exc) else ""
            raise CodecError(
                "truncated",
                f"{label}: body ends before the record does (a value or a declared "
                f"array/map/string length runs past the end){detail}",
            ) from None
        except MemoryError:
            raise CodecError(
                "oversized", f"{label}: declared lengths need more memory than available"
            ) from None
        except Exception as exc:
            raise CodecError(
                "undecodable", f"{label}: body does not decode: {type(exc).__name__}: {exc}"
            ) from None
        consumed = stream.tell()
        if consumed != len(data):
            raise CodecError(
                "trailing_bytes",
                f"{label}: {len(data) - consumed} byte(s) left after the record "
                f"(body is {consumed - HEADER_SIZE} of {len(data) - HEADER_SIZE} bytes)",
            )
        if not isinstance(record, dict):  # pragma: no cover - decode() only reads record types
            raise CodecError("undecodable", f"{label}: body is not a record")
        if trusted:
            return record
        # The decoder is lenient (enum index -1 reads as the last symbol, negative block counts,
        # over-long varints, booleans other than 0/1); only bytes that a spec-following writer
        # would produce for this record are accepted. The compiled check proves it by walking
        # the bytes once (schemas/canonical.py has what it checks and why that suffices).
        if reader.canonical is not None:
            try:
                end = reader.canonical(data, HEADER_SIZE)
            except NonCanonicalError as exc:
                raise CodecError(
                    "non_canonical",
                    f"{label}: body is not the canonical encoding of the record it decodes "
                    f"to: {exc}",
                ) from None
            if end != len(data):  # pragma: no cover - fastavro read the same bytes to the end
                raise CodecError(
                    "non_canonical", f"{label}: canonical check ended at byte {end} of {len(data)}"
                )
            return record
        # A schema the compiled check does not cover: re-encode and compare.
        again = BytesIO()
        try:
            schemaless_writer(again, writer.reading_schema, record)
        except Exception as exc:
            raise CodecError(
                "non_canonical", f"{label}: decoded record does not re-encode: {exc}"
            ) from None
        if again.getbuffer() != memoryview(data)[HEADER_SIZE:]:
            raise CodecError(
                "non_canonical",
                f"{label}: body is not the canonical encoding of the record it decodes to "
                "(e.g. enum index -1, negative block count, over-long varint)",
            )
        return record

    @staticmethod
    def _resolve(data: bytes, writer: SchemaVersion, reader: SchemaVersion) -> dict[str, Any]:
        stream = BytesIO(data)
        stream.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(stream, writer.reading_schema, reader.reading_schema)
        except Exception as exc:
            raise CodecError(
                "undecodable",
                f"{writer.short_name} version {writer.version} does not resolve to version "
                f"{reader.version}: {type(exc).__name__}: {exc}",
            ) from None
        if not isinstance(record, dict):  # pragma: no cover - records resolve to records
            raise CodecError("undecodable", f"{writer.short_name}: resolved body is not a record")
        return record


# ----------------------------------------------------------------------------------------------
# Module-level default: callers write ``from schemas.codec import encode, decode``.
# ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def default_catalog() -> SchemaCatalog:
    """The catalog of ``schemas/avro``, loaded on first use and then shared."""
    return SchemaCatalog(AVRO_DIR)


@lru_cache(maxsize=1)
def default_codec() -> SingleObjectCodec:
    """The codec over :func:`default_catalog` with the default size limit."""
    return SingleObjectCodec(default_catalog())


def encode(full_name: str, record: Mapping[str, Any], *, validate: bool = True) -> bytes:
    """Validate and encode ``record`` as the current version of ``full_name``."""
    return default_codec().encode(full_name, record, validate=validate)


def decode(
    data: bytes | bytearray | memoryview, expected: str | None = None, *, trusted: bool = False
) -> DecodedRecord:
    """Decode a single-object payload; ``expected`` rejects any other type."""
    return default_codec().decode(data, expected, trusted=trusted)


def validate(full_name: str, record: Mapping[str, Any]) -> None:
    """Raise :class:`CodecError` (``schema_violation``, ``oversized``) unless it would encode."""
    default_codec().validate(full_name, record)
