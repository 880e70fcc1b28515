"""The compiled canonical-bytes check (schemas/canonical.py) against the re-encode it replaces.

The oracle is the codec's previous proof, kept as ``canonical_check="reencode"``: decode with
fastavro, re-encode the record, compare the bytes. The compiled check is deliberately stricter in
one place, an ``int`` holding more than 32 bits (fastavro's writer writes any 64-bit value for an
``int``, so the re-encode let it through; no spec-following writer produces it), so the oracle
also runs fastavro's validation on what the re-encode accepted. Every other verdict, reason and
message included, must be the same.

Bodies come from a lenient writer that produces, on request, each encoding fastavro's reader
accepts and a spec-following writer never emits (over-long varints, negative enum and union
indexes, booleans other than 0/1, negative and split array/map blocks, repeated map keys,
signalling NaN floats, ints past 32 bits), and from random byte mutations of canonical bodies.
``CITYOPS_PROPERTY_EXAMPLES=20000`` runs the property tests deeper than the default 400
examples each. The records are SYNTHETIC.
"""

from __future__ import annotations

import functools
import json
import os
import re
import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_writer
from fastavro.schema import parse_schema
from fastavro.validation import validate as avro_validate
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas.canonical import NonCanonicalError, compile_check
from schemas.codec import (
    HEADER_SIZE,
    CodecError,
    SchemaCatalog,
    SchemaVersion,
    SingleObjectCodec,
    _named_schemas_of,
    default_catalog,
)

pytestmark = pytest.mark.unit

BIG_ENUM = [f"S{i:02d}" for i in range(70)]
"""More symbols than one varint byte holds (index 64 and up take two bytes)."""

EVERYTHING: dict[str, Any] = {
    "type": "record",
    "name": "org.test.Everything",
    "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "ratio", "type": "float"},
        {"name": "value", "type": "double"},
        {"name": "blob", "type": "bytes"},
        {"name": "text", "type": "string"},
        {"name": "tag", "type": {"type": "fixed", "name": "org.test.Tag", "size": 3}},
        {"name": "colour", "type": {"type": "enum", "name": "org.test.Colour",
                                    "symbols": ["RED", "GREEN", "BLUE"]}},
        {"name": "many", "type": {"type": "enum", "name": "org.test.Many", "symbols": BIG_ENUM}},
        {"name": "maybe_int", "type": ["null", "int"]},
        {"name": "maybe_text", "type": ["string", "null"]},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "numbers", "type": {"type": "array", "items": "long"}},
        {"name": "switches", "type": {"type": "map", "values": "boolean"}},
        {"name": "nested", "type": {"type": "array", "items": {
            "type": "map", "values": ["null", "string"]}}},
        {"name": "inner", "type": {"type": "record", "name": "org.test.Inner", "fields": [
            {"name": "flags", "type": {"type": "array", "items": "boolean"}},
            {"name": "colour", "type": "org.test.Colour"},
        ]}},
        {"name": "maybe_inner", "type": ["null", "org.test.Inner"]},
        {"name": "maybe_numbers", "type": [{"type": "array", "items": "int"}, "null"]},
        {"name": "maybe_at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
    ],
}
"""A SYNTHETIC test type with every construct the compiled check covers."""

UNCOVERED: dict[str, Any] = {
    "type": "record",
    "name": "org.test.Uncovered",
    "fields": [{"name": "either", "type": ["null", "int", "string"]}],
}
"""A union fastavro's writer resolves by the value's type: left to the re-encode."""


@pytest.fixture(scope="module")
def codecs(tmp_path_factory: pytest.TempPathFactory) -> tuple[SingleObjectCodec, SingleObjectCodec]:
    """(compiled check, re-encode) over a catalog of EVERYTHING and UNCOVERED."""
    directory: Path = tmp_path_factory.mktemp("avro")
    for schema in (EVERYTHING, UNCOVERED):
        (directory / f"{schema['name']}.avsc").write_text(json.dumps(schema), encoding="utf-8")
    catalog = SchemaCatalog(directory)
    return (SingleObjectCodec(catalog),
            SingleObjectCodec(catalog, canonical_check="reencode"))


def verdict(codec: SingleObjectCodec, payload: bytes) -> tuple[str, str]:
    """("ok", "") or the rejection's (reason, message)."""
    try:
        codec.decode(payload)
    except CodecError as error:
        return error.reason, error.message
    return "ok", ""


def oracle(reencode: SingleObjectCodec, payload: bytes) -> str:
    """The re-encode's verdict, plus fastavro's validation of what it accepted (int range)."""
    try:
        decoded = reencode.decode(payload)
    except CodecError as error:
        return error.reason
    schema = reencode.catalog.current(decoded.full_name).reading_schema
    if not avro_validate(decoded.record, schema, raise_errors=False):
        return "non_canonical"
    return "ok"


ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def same_verdict(codecs: tuple[SingleObjectCodec, SingleObjectCodec], payload: bytes) -> None:
    compiled, reencode = codecs
    new_reason, new_message = verdict(compiled, payload)
    old_reason = oracle(reencode, payload)
    event(f"{new_reason}: {new_message.rpartition(': ')[2].partition(' (at')[0]}"
          if new_reason == "non_canonical" else new_reason)
    assert new_reason == old_reason, (payload.hex(), new_message)
    if old_reason not in ("ok", "non_canonical"):
        # Everything before the canonical check is shared: the same message too (fastavro's
        # EOFError names its stream object, whose address differs).
        old_message = verdict(reencode, payload)[1]
        assert ADDRESS.sub("", new_message) == ADDRESS.sub("", old_message)


# ------------------------------------------------------------------------------------------------
# A lenient writer: every byte string fastavro's reader accepts for a record, on request.
# ------------------------------------------------------------------------------------------------

Draw = Callable[[st.SearchStrategy[Any]], Any]


def uvarint(value: int, pad: int = 0) -> bytes:
    """LEB128 of a non-negative ``value``, with ``pad`` redundant bytes (over-long) if asked."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value == 0 and pad == 0:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)
        if value == 0:
            out.extend(b"\x80" * (pad - 1) + b"\x00")
            return bytes(out)


def zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63) if value < 0 else value << 1


ODDITIES = ("varint_pad", "negative_length", "boolean", "int_range", "timestamp_range",
            "float_bits", "enum_alias", "union_alias", "block_negative", "block_split",
            "map_repeat")
"""Each way a body can decode and still not be canonical (or not decode at all)."""


class Lenient:
    """Writes one record per the schema, drawing each choice a lenient reader would accept.

    Only the ``enabled`` oddities are ever taken, each where it applies with chance ``bias``:
    the property tests draw both, so bodies are canonical, or broken by one kind of oddity in
    one or several places, or by several kinds.
    """

    def __init__(self, draw: Draw, named: Mapping[str, Any], enabled: frozenset[str],
                 bias: float) -> None:
        self.draw = draw
        self.named = named
        self.enabled = enabled
        self.bias = bias

    def odd(self, kind: str) -> bool:
        return kind in self.enabled and bool(self.draw(st.floats(0, 1)) < self.bias)

    def varint(self, value: int) -> bytes:
        pad = self.draw(st.integers(1, 3)) if self.odd("varint_pad") else 0
        return uvarint(zigzag(value) & ((1 << 64) - 1), pad)

    def length(self, size: int) -> bytes:
        return self.varint(-size if size and self.odd("negative_length") else size)

    def write(self, schema: Any) -> bytes:
        if isinstance(schema, str) and schema in self.named:
            schema = self.named[schema]
        if isinstance(schema, list):
            index = self.draw(st.integers(0, len(schema) - 1))
            written = index - len(schema) if self.odd("union_alias") else index
            return self.varint(written) + self.write(schema[index])
        kind = schema if isinstance(schema, str) else schema["type"]
        draw = self.draw
        if kind == "null":
            return b""
        if kind == "boolean":
            return bytes([draw(st.integers(0, 255)) if self.odd("boolean")
                          else draw(st.integers(0, 1))])
        if kind in ("int", "long"):
            if isinstance(schema, dict) and schema.get("logicalType") == "timestamp-millis":
                if self.odd("timestamp_range"):  # outside year 1..9999
                    return self.varint(draw(st.one_of(st.integers(-(2**63), -62135596800001),
                                                      st.integers(253402300800000, 2**63 - 1))))
                return self.varint(draw(st.integers(-62135596800000, 253402300799999)))
            if kind == "int" and self.odd("int_range"):  # a long's value in an int
                return self.varint(draw(st.one_of(st.integers(-(2**63), -(2**31) - 1),
                                                  st.integers(2**31, 2**63 - 1))))
            bits = 63 if kind == "long" else 31
            return self.varint(draw(st.integers(-(2**bits), 2**bits - 1)))
        if kind == "float":
            if self.odd("float_bits"):  # signalling and quiet NaNs with payloads, any bits
                return bytes(draw(st.one_of(
                    st.builds(lambda sign, fraction: struct.pack(
                        "<I", sign << 31 | 0x7F800000 | fraction),
                        st.integers(0, 1), st.integers(1, (1 << 23) - 1)),
                    st.binary(min_size=4, max_size=4))))
            return struct.pack("<f", draw(st.floats(width=32)))
        if kind == "double":
            return bytes(draw(st.binary(min_size=8, max_size=8)))
        if kind in ("bytes", "string"):
            if kind == "string":
                text: str = draw(st.text(max_size=80))
                data = text.encode("utf-8", "surrogatepass")
            else:
                data = bytes(draw(st.binary(max_size=80)))
            return self.length(len(data)) + data
        if kind == "fixed":
            return bytes(draw(st.binary(min_size=schema["size"], max_size=schema["size"])))
        if kind == "enum":
            count = len(schema["symbols"])
            index = draw(st.integers(0, count - 1))
            return self.varint(index - count if self.odd("enum_alias") else index)
        if kind in ("array", "map"):
            return self.blocks(schema)
        if kind == "record":
            return b"".join(self.write(field["type"]) for field in schema["fields"])
        return self.write(kind)  # {"type": "long"} and the like

    def blocks(self, schema: Any) -> bytes:
        count = draw_count = self.draw(st.integers(0, 4))
        if schema["type"] == "array":
            entries = [self.write(schema["items"]) for _ in range(count)]
        else:
            keys = ["a", "b", "c", "dd", "é"]
            if self.odd("map_repeat"):
                chosen = self.draw(st.lists(st.sampled_from(keys), min_size=count,
                                            max_size=count))
            else:
                chosen = keys[:count]
            entries = [self.length(len(key.encode())) + key.encode()
                       + self.write(schema["values"]) for key in chosen]
        # Split the entries into blocks: one block is canonical, more when asked.
        sizes: list[int] = []
        while draw_count:
            size = self.draw(st.integers(1, draw_count)) if self.odd("block_split") else draw_count
            sizes.append(size)
            draw_count -= size
        body = b""
        for size in sizes:
            block, entries = b"".join(entries[:size]), entries[size:]
            if self.odd("block_negative"):  # negative count, then the block's size in bytes
                body += self.varint(-size) + self.varint(len(block)) + block
            else:
                body += self.varint(size) + block
        return body + self.varint(0)


def lenient_payload(version: SchemaVersion, draw: Draw, enabled: frozenset[str],
                    bias: float) -> bytes:
    named = _named_schemas_of(version.reading_schema)
    return version.header + Lenient(draw, named, enabled, bias).write(version.reading_schema)


def everything_payload(codec: SingleObjectCodec, draw: Draw, enabled: frozenset[str],
                       bias: float) -> bytes:
    return lenient_payload(codec.catalog.current("org.test.Everything"), draw, enabled, bias)


# ------------------------------------------------------------------------------------------------
# Property tests: the compiled check and the re-encode agree.
# ------------------------------------------------------------------------------------------------

PROPERTY = settings(max_examples=int(os.environ.get("CITYOPS_PROPERTY_EXAMPLES", "400")),
                    deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


ENABLED = st.one_of(
    st.builds(lambda kind: frozenset({kind}), st.sampled_from(ODDITIES)),  # one kind alone
    st.frozensets(st.sampled_from(ODDITIES)),  # any mix, or none (canonical)
)
BIAS = st.sampled_from([0.05, 0.3, 1.0])


@PROPERTY
@given(data=st.data(), enabled=ENABLED, bias=BIAS)
def test_lenient_bodies_get_the_reencode_verdict(
    codecs: tuple[SingleObjectCodec, SingleObjectCodec], data: st.DataObject,
    enabled: frozenset[str], bias: float,
) -> None:
    same_verdict(codecs, everything_payload(codecs[0], data.draw, enabled, bias))


@PROPERTY
@given(data=st.data(), cuts=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 3),
                                               st.binary(max_size=3)), min_size=1, max_size=4))
def test_mutated_canonical_bodies_get_the_reencode_verdict(
    codecs: tuple[SingleObjectCodec, SingleObjectCodec], data: st.DataObject,
    cuts: list[tuple[int, int, bytes]],
) -> None:
    payload = bytearray(everything_payload(codecs[0], data.draw, frozenset(), 0.0))
    for at, remove, insert in cuts:
        at = HEADER_SIZE + at % (len(payload) - HEADER_SIZE + 1)
        payload[at:at + remove] = insert
    same_verdict(codecs, bytes(payload))


@functools.cache
def default_codecs() -> tuple[SingleObjectCodec, SingleObjectCodec]:
    """(compiled check, re-encode) over the project's catalog."""
    catalog = default_catalog()
    return SingleObjectCodec(catalog), SingleObjectCodec(catalog, canonical_check="reencode")


MESSAGE_TYPES = [version for version in default_catalog().all_versions()
                 if version.writer_schema.get("type") == "record"]


@PROPERTY
@given(data=st.data(), version=st.sampled_from(MESSAGE_TYPES), enabled=ENABLED, bias=BIAS)
def test_lenient_bodies_of_every_catalog_type_get_the_reencode_verdict(
    data: st.DataObject, version: SchemaVersion, enabled: frozenset[str], bias: float
) -> None:
    same_verdict(default_codecs(), lenient_payload(version, data.draw, enabled, bias))


# ------------------------------------------------------------------------------------------------
# One test per lenient read: the exact rejection.
# ------------------------------------------------------------------------------------------------

FLAG_AT = HEADER_SIZE
"""The first field of EVERYTHING, ``flag``, starts right after the header."""


def canonical_everything(codec: SingleObjectCodec, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "flag": True, "small": -3, "big": 2**40, "ratio": 0.5, "value": -1.25, "blob": b"\x00",
        "text": "Cibeber", "tag": b"abc", "colour": "BLUE", "many": "S69", "maybe_int": 7,
        "maybe_text": None, "at": datetime(2026, 12, 2, 8, 0, tzinfo=UTC),
        "numbers": [1, -1], "switches": {"on": True}, "nested": [{"k": "v"}, {}],
        "inner": {"flags": [False], "colour": "RED"},
        "maybe_inner": {"flags": [], "colour": "GREEN"}, "maybe_numbers": None, "maybe_at": None,
    }
    record.update(changes)
    return record


def body_of(codec: SingleObjectCodec, record: Mapping[str, Any]) -> bytes:
    version = codec.catalog.current("org.test.Everything")
    out = BytesIO()
    schemaless_writer(out, version.reading_schema, dict(record))
    return out.getvalue()


def header(codec: SingleObjectCodec) -> bytes:
    return codec.catalog.current("org.test.Everything").header


def rejection(codec: SingleObjectCodec, payload: bytes | bytearray) -> tuple[str, str]:
    with pytest.raises(CodecError) as caught:
        codec.decode(payload)
    return caught.value.reason, caught.value.message


PREFIX = "Everything (version 1): body is not the canonical encoding of the record it decodes to: "


def test_canonical_everything_decodes_to_its_record(
    codecs: tuple[SingleObjectCodec, SingleObjectCodec]
) -> None:
    compiled, _ = codecs
    record = canonical_everything(compiled)
    decoded = compiled.decode(header(compiled) + body_of(compiled, record)).record
    assert decoded == {**record, "ratio": 0.5}


def test_boolean_byte_two_is_non_canonical(
    codecs: tuple[SingleObjectCodec, SingleObjectCodec]
) -> None:
    compiled, reencode = codecs
    body = b"\x02" + body_of(compiled, canonical_everything(compiled))[1:]
    assert rejection(compiled, header(compiled) + body) == (
        "non_canonical", PREFIX + "Everything.flag: boolean byte is neither 00 nor 01 (at byte 10)")
    assert verdict(reencode, header(compiled) + body)[0] == "non_canonical"


def test_over_long_int_varint_is_non_canonical(
    codecs: tuple[SingleObjectCodec, SingleObjectCodec]
) -> None:
    compiled, _ = codecs
    body = body_of(compiled, canonical_everything(compiled))
    # small = -3 is zig-zag 5: one byte, here padded to 85 80 00.
    assert body[1] == 5
    payload = header(compiled) + body[:1] + b"\x85\x80\x00" + body[2:]
    assert rejection(compiled, payload) == (
        "non_canonical",
        PREFIX + "Everything.small: over-long varint (ends in a 00 byte) (at byte 13)")


def test_int_beyond_32_bits_is_non_canonical_although_the_reencode_let_it_through(
    codecs: tuple[SingleObjectCodec, SingleObjectCodec]
) -> None:
    compiled, reencode = codecs
    body = body_of(compiled, canonical_everything(compiled))
    payload = header(compiled) + body[:1] + uvarint(zigzag(2**31)) + body[2:]
    assert verdict(reencode, payload) == ("ok", "")  # the hole this closes
    assert rejection(compiled, payload) == (
        "non_canonical", PREFIX + "Everything.small: varint outside the int range (at byte 15)")


def test_long_varint_past_ten_bytes_is_non_canonical(
    codecs: tuple[SingleObjectCodec, SingleObjectCodec]
) -> None:
    compiled, reencode = codecs
    body = body_of(compiled, canonical_everything(compiled))
    # big = 2**40 sits at body[2:8]; eleven bytes wrap around in fastavro's 64-bit shift.
    assert body[2:8] == uvarint(zigzag(2**40))
    payload = header(compiled) + body[:2] + b"\xff" * 10 + b"\x01" + body[8:]
    assert verdict(reencode, payload)[0] == "non_canonical"
    assert rejection(compiled, payload) == (
        "non_canonical", PREFIX + "Everything.big: varint longer than 10 bytes (at byte 22)")
    ten = header(compiled) + body[:2] + b"\xff" * 9 + b"\x02" + body[8:]
    assert rejection(compiled, ten) == (
        "non_canonical", PREFIX + "Everything.big: varint outside the long range (at byte 21)")


def test_signalling_nan_float_is_non_canonical(
    codecs: tuple[SingleObjectCodec, SingleObjectCodec]
) -> None:
    compiled, reencode = codecs
    body = body_of(compiled, canonical_everything(compiled))
    assert body[8:12] == struct.pack("<f", 0.5)
    snan = header(compiled) + body[:8] + bytes.fromhex("0100807f") + body[12:]
    assert verdict(reencode, snan)[0] == "non_canonical"
    assert rejection(compiled, snan) == (
        "non_canonical", PREFIX + "Everything.ratio: float is a signalling NaN (at byte 18)")
    quiet = header(compiled) + body[:8] + bytes.fromhex("0100c07f") + body[12:]
    assert verdict(compiled, quiet) == verdict(reencode, quiet) == ("ok", "")


def find(body: bytes, needle: bytes) -> int:
    at = body.find(needle)
    assert at >= 0 and body.find(needle, at + 1) < 0, "needle must be unique"
    return at


def test_enum_index_minus_one_is_non_canonical_in_small_and_large_enums(
    codecs: tuple[SingleObjectCodec, SingleObjectCodec]
) -> None:
    compiled, _ = codecs
    body = body_of(compiled, canonical_everything(compiled, text="X" * 5))
    at = find(body, b"\x0aXXXXX" + b"abc") + 9  # colour follows text and tag
    assert body[at:at + 3] == b"\x04" + uvarint(zigzag(69))  # BLUE, S69
    minus_one = header(compiled) + body[:at] + b"\x01" + body[at + 1:]
    assert rejection(compiled, minus_one) == (
        "non_canonical", PREFIX + f"Everything.colour: enum index outside 0..2 (at byte {at + 10})")
    many = header(compiled) + body[:at + 1] + b"\x01" + body[at + 3:]
    assert rejection(compiled, many) == (
        "non_canonical",
        PREFIX + f"Everything.many: enum index outside 0..69 (at byte {at + 11})")


def test_union_index_minus_one_is_non_canonical(
    codecs: tuple[SingleObjectCodec, SingleObjectCodec]
) -> None:
    compiled, _ = codecs
    body = body_of(compiled, canonical_everything(compiled, text="X" * 5))
    at = find(body, b"\x0aXXXXX" + b"abc") + 12  # maybe_int: index 1, value 7
    assert body[at:at + 2] == b"\x02\x0e"
    # -1 reads as the last branch, int: the same record, other bytes.
    payload = header(compiled) + body[:at] + b"\x01" + body[at + 1:]
    assert rejection(compiled, payload) == (
        "non_canonical",
        PREFIX + f"Everything.maybe_int: union index is not 0 or 1 (at byte {at + 10})")


def situation_with(block: bytes) -> bytes:
    """A SituationEvent whose ``reasons`` array (from byte 37 of the payload) is ``block``."""
    from tests.unit.test_codec import SITUATION_HEADER, situation_body

    return SITUATION_HEADER + situation_body(block)


def test_negative_block_count_names_the_field() -> None:
    block = uvarint(zigzag(-1)) + uvarint(zigzag(2)) + b"\x02a" + b"\x00"
    with pytest.raises(CodecError) as caught:
        default_codecs()[0].decode(situation_with(block))
    assert (caught.value.reason, caught.value.message) == (
        "non_canonical",
        "SituationEvent (version 4): body is not the canonical encoding of the record it decodes "
        "to: SituationEvent.reasons: negative block count (at byte 37)")


def test_array_in_two_blocks_is_non_canonical() -> None:
    block = b"\x02\x02a" + b"\x02\x02b" + b"\x00"  # [a] [b] instead of [a, b]
    compiled, reencode = default_codecs()
    assert compiled.decode(situation_with(b"\x04\x02a\x02b\x00")).record["reasons"] == ["a", "b"]
    assert verdict(reencode, situation_with(block))[0] == "non_canonical"
    assert rejection(compiled, situation_with(block)) == (
        "non_canonical",
        "SituationEvent (version 4): body is not the canonical encoding of the record it decodes "
        "to: SituationEvent.reasons: block not followed by the 00 end marker (one block of "
        "every entry is canonical) (at byte 40)")


def test_map_with_a_repeated_key_is_non_canonical(
    codecs: tuple[SingleObjectCodec, SingleObjectCodec]
) -> None:
    compiled, reencode = codecs
    body = body_of(compiled, canonical_everything(compiled))
    at = find(body, b"\x02\x04on\x01\x00")  # switches: {"on": True}
    twice = b"\x04" + b"\x04on\x00" + b"\x04on\x01" + b"\x00"  # on=False, then on=True
    payload = header(compiled) + body[:at] + twice + body[at + 6:]
    assert compiled.decode(header(compiled) + body).record["switches"] == {"on": True}
    assert verdict(reencode, payload)[0] == "non_canonical"
    assert rejection(compiled, payload) == (
        "non_canonical",
        PREFIX + f"Everything.switches: map repeats a key (at byte {at + 10 + len(twice) - 1})")


def test_over_long_zero_terminator_is_non_canonical() -> None:
    compiled, _ = default_codecs()
    assert rejection(compiled, situation_with(b"\x02\x02a\x80\x00")) == (
        "non_canonical",
        "SituationEvent (version 4): body is not the canonical encoding of the record it decodes "
        "to: SituationEvent.reasons: block not followed by the 00 end marker (one block of "
        "every entry is canonical) (at byte 40)")


def test_string_length_over_long_is_non_canonical() -> None:
    compiled, _ = default_codecs()
    assert rejection(compiled, situation_with(b"\x02\x82\x00a\x00")) == (
        "non_canonical",
        "SituationEvent (version 4): body is not the canonical encoding of the record it decodes "
        "to: SituationEvent.reasons[]: over-long varint (ends in a 00 byte) (at byte 39)")


# ------------------------------------------------------------------------------------------------
# Coverage: which schemas get the compiled check, and the fallback.
# ------------------------------------------------------------------------------------------------


def test_every_catalog_schema_gets_the_compiled_check() -> None:
    uncovered = [
        f"{version.full_name} v{version.version}"
        for version in default_catalog().all_versions()
        if compile_check(version.reading_schema, _named_schemas_of(version.reading_schema),
                         version.short_name) is None
    ]
    assert uncovered == []


def test_union_of_three_branches_keeps_the_reencode(
    codecs: tuple[SingleObjectCodec, SingleObjectCodec]
) -> None:
    compiled, _ = codecs
    version = compiled.catalog.current("org.test.Uncovered")
    assert compile_check(version.reading_schema, _named_schemas_of(version.reading_schema),
                         version.short_name) is None
    # [null, int, string] with index -1 (string): still caught, by the re-encode.
    assert rejection(compiled, version.header + b"\x01\x02a") == (
        "non_canonical",
        "Uncovered (version 1): body is not the canonical encoding of the record it decodes to "
        "(e.g. enum index -1, negative block count, over-long varint)")
    assert compiled.decode(version.header + b"\x04\x02a").record == {"either": "a"}


@pytest.mark.parametrize("field_type", [
    {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2},
    {"type": "int", "logicalType": "date"},
    {"type": "long", "logicalType": "timestamp-micros"},
    ["int", "long"],
    {"type": "array", "items": "null"},
])
def test_constructs_without_a_proof_fall_back_to_the_reencode(field_type: Any) -> None:
    schema = parse_record({"type": "record", "name": "T", "fields": [
        {"name": "f", "type": field_type}]})
    assert compile_check(schema, _named_schemas_of(schema), "T") is None


def parse_record(schema: dict[str, Any]) -> dict[str, Any]:
    parsed = parse_schema(schema)
    assert isinstance(parsed, dict)
    return parsed


def test_recursive_type_falls_back_to_the_reencode() -> None:
    schema = parse_record({"type": "record", "name": "Node", "fields": [
        {"name": "next", "type": ["null", "Node"]}]})
    assert compile_check(schema, _named_schemas_of(schema), "Node") is None


def test_check_alone_refuses_a_cut_body_and_a_count_beyond_the_payload() -> None:
    version = default_catalog().current("SituationEvent")
    check = compile_check(version.reading_schema, _named_schemas_of(version.reading_schema),
                          "SituationEvent")
    assert check is not None
    good = situation_with(b"\x02\x02a\x00")
    assert check(good, HEADER_SIZE) == len(good)
    with pytest.raises(NonCanonicalError) as cut:
        check(good[:-3], HEADER_SIZE)
    assert str(cut.value) == (
        f"SituationEvent: body ends before the record does (at byte {len(good) - 3})")
    with pytest.raises(NonCanonicalError) as huge:
        check(situation_with(uvarint(zigzag(2**40)) + b"\x02a"), HEADER_SIZE)
    assert str(huge.value) == (
        "SituationEvent.reasons: block count exceeds the bytes left (at byte 43)")


def test_trusted_decode_skips_the_partner_checks() -> None:
    from tests.unit.test_codec import HEADER_V2, avro_str, incident_body

    # A UUID that is not RFC 4122 text and an enum index -1: both partner checks. On a trusted
    # (worker-written) topic neither runs; structural checks (trailing bytes) still do.
    payload = HEADER_V2 + incident_body(event_id=avro_str("not-a-uuid"), source_system=b"\x01")
    compiled, _ = default_codecs()
    assert rejection(compiled, payload)[0] == "non_canonical"
    record = compiled.decode(payload, trusted=True).record
    assert (record["event_id"], record["source_system"]) == ("not-a-uuid", "OTHER")
    assert rejection_trusted(compiled, payload + b"\x00") == "trailing_bytes"


def rejection_trusted(codec: SingleObjectCodec, payload: bytes) -> str:
    with pytest.raises(CodecError) as caught:
        codec.decode(payload, trusted=True)
    return caught.value.reason


def test_timestamps_at_the_datetime_limits_are_canonical() -> None:
    compiled, reencode = default_codecs()
    from tests.unit.test_codec import HEADER_V2, incident_body

    for moment in (datetime(1, 1, 1, tzinfo=UTC),
                   datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
                   datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)):
        millis = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        payload = HEADER_V2 + incident_body(occurred_at=uvarint(zigzag(millis)))
        assert verdict(compiled, payload) == verdict(reencode, payload) == ("ok", "")
        assert compiled.decode(payload).record["occurred_at"] == moment


def test_bytearray_and_memoryview_payloads_get_the_same_checks(
    codecs: tuple[SingleObjectCodec, SingleObjectCodec]
) -> None:
    compiled, _ = codecs
    record = canonical_everything(compiled)
    payload = header(compiled) + body_of(compiled, record)
    for view in (bytearray(payload), memoryview(payload)):
        assert compiled.decode(view).record == record  # map keys are hashed as bytes
    bad = bytearray(payload)
    bad[FLAG_AT] = 2
    assert rejection(compiled, bad)[0] == "non_canonical"
