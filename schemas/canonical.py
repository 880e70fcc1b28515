"""Proof that an Avro body is the one canonical encoding of the record it decodes to, without
re-encoding the record.

Why: fastavro's reader is lenient. Several byte strings decode to the same record, and only one
of them is what a spec-following writer produces for it. Accepting the others would let two
payloads mean one record (a dedupe key or a signature over the bytes would no longer identify
it) and would hide partners whose encoders are broken. The codec used to prove canonical bytes
by re-encoding every decoded record and comparing, which cost about as much as the read itself.
This module proves the same property by walking the bytes once, with checks compiled per schema
into one straight-line Python function, at a fraction of that cost.

What the re-encode comparison catches, and the check that replaces it here (fastavro 1.13; the
property test in ``tests/unit/test_canonical.py`` compares both verdicts on generated and mutated
bodies):

========================================  ========================================================
lenient read                              check
========================================  ========================================================
over-long varint (``82 00`` for 1), in    every varint is minimal: a multi-byte varint never ends
any int, long, length, count or index     in ``00``
varint past 64 bits (fastavro's C shift   at most 10 bytes, the 10th at most ``01``
wraps)
``int`` holding more than 32 bits         at most 5 bytes, the 5th at most ``0f`` (in a plain
(fastavro reads and writes any long;      ``int`` field fastavro's writer re-encodes it
a spec writer never produces it)          unchanged, so the re-encode let it through; only in a
                                          union did it fail; this check refuses it everywhere)
boolean byte other than 0 or 1            the byte is ``00`` or ``01``
enum index -k (Python indexing: the       index in ``0..n-1``
k-th symbol from the end)
union index -k (same)                     index is one of the branches' indexes
negative string/bytes length              length is non-negative (fastavro raises anyway)
array/map block with a negative count     count is non-negative
and a byte size
array/map split into several blocks       one block of all items then ``00`` (or ``00`` alone)
map with a repeated key (the last wins)   keys are distinct
float that is a signalling NaN (the       the float's bits are not a signalling NaN
float->double->float trip quiets it)
bytes left after the record               read position equals the length (the codec's
                                          ``trailing_bytes`` check, before this one)
========================================  ========================================================

What needs no check: UTF-8 (the codec asks fastavro for a strict decode, and a strict UTF-8
decode is one-to-one, so the string re-encodes to the same bytes), doubles (the bits go through
unchanged), fixed, ``timestamp-millis`` (integer arithmetic both ways; values outside the
datetime range already fail to decode) and the ``uuid`` logical type (the codec reads ids as
plain strings). The check runs only after fastavro read the body to its last byte, so it leans
on the reader for those and for lengths or indexes past the end; after a fastavro upgrade the
property tests are what re-verifies the pair.

Where the proof does not hold, :func:`compile_check` returns None and the codec keeps the
re-encode for that schema: unions other than ``null`` plus one branch (fastavro's writer picks a
branch by the value's type, which may not be the branch that was read), other logical types
(``decimal`` has redundant sign bytes, ``date`` and the time types were not analysed),
arrays of items that encode to no bytes, and recursive types. (Repeated enum symbols, where the
writer would pick the first, cannot occur: fastavro refuses such schemas.)
``tests/unit/test_canonical.py`` asserts that every schema of the catalog gets the compiled
check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["CanonicalCheck", "NonCanonicalError", "compile_check"]

CanonicalCheck = Callable[[bytes, int], int]
"""``check(data, start)``: returns where the body starting at ``start`` ends, or raises
:class:`NonCanonicalError`."""

_PRIMITIVES: Final[frozenset[str]] = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
_PROVEN_LOGICAL: Final[frozenset[tuple[str, str]]] = frozenset(
    {("long", "timestamp-millis"), ("string", "uuid")}
)
"""(base type, logical type) pairs whose decode and re-encode are exact inverses."""


class NonCanonicalError(ValueError):
    """The body is not the canonical encoding: ``where`` is the field path, ``offset`` the byte
    position in the payload, ``rule`` the broken rule, for a dead letter that says what is
    wrong."""

    def __init__(self, offset: int, where: str, rule: str) -> None:
        super().__init__(f"{where}: {rule} (at byte {offset})")
        self.offset = offset
        self.where = where
        self.rule = rule


class _UnsupportedError(Exception):
    """The schema uses something the compiled check does not prove: keep the re-encode."""


def _uvarint(data: bytes, pos: int, first: int, where: str, max_shift: int,
             last_max: int) -> tuple[int, int]:
    """Rest of a multi-byte varint whose first byte ``first`` (>= 0x80) was read at ``pos - 1``:
    the raw (still zig-zag) value and the position after it. Refuses over-long forms and values
    wider than ``max_shift + 7`` bits (10 bytes for a long, 5 for an int), whose last byte may
    then hold at most ``last_max``."""
    value = first & 0x7F
    shift = 7
    while True:
        byte = data[pos]
        pos += 1
        if byte < 0x80:
            break
        value |= (byte & 0x7F) << shift
        shift += 7
        if shift > max_shift:
            raise NonCanonicalError(pos, where, f"varint longer than {max_shift // 7 + 1} bytes")
    if byte == 0:
        raise NonCanonicalError(pos - 1, where, "over-long varint (ends in a 00 byte)")
    if shift == max_shift and byte > last_max:
        kind = "int" if max_shift == 28 else "long"
        raise NonCanonicalError(pos - 1, where, f"varint outside the {kind} range")
    return value | (byte << shift), pos


def _long(data: bytes, pos: int, first: int, where: str) -> tuple[int, int]:
    return _uvarint(data, pos, first, where, 63, 0x01)


def _int(data: bytes, pos: int, first: int, where: str) -> tuple[int, int]:
    return _uvarint(data, pos, first, where, 28, 0x0F)


def _skip_long(data: bytes, pos: int, where: str) -> int:
    """Position after the multi-byte long starting at ``pos``, if it is minimal."""
    return _uvarint(data, pos + 1, data[pos], where, 63, 0x01)[1]


def _skip_int(data: bytes, pos: int, where: str) -> int:
    """Position after the multi-byte int starting at ``pos``, if minimal and within 32 bits."""
    return _uvarint(data, pos + 1, data[pos], where, 28, 0x0F)[1]


def _skip_sized(data: bytes, pos: int, where: str) -> int:
    """Position after the string or bytes starting at ``pos`` whose length is negative or takes
    more than one byte (the generated code inlines the one-byte, non-negative case)."""
    first = data[pos]
    if first & 1:
        raise NonCanonicalError(pos, where, "negative length")
    size, pos = _uvarint(data, pos + 1, first, where, 63, 0x01)
    return pos + (size >> 1)


def _fail(pos: int, where: str, rule: str) -> NonCanonicalError:
    return NonCanonicalError(pos, where, rule)


class _Compiler:
    """Writes the source of one check function: straight-line code per field, loops only for
    arrays and maps. One function instead of a closure per field because the call per field
    would cost more than the checks themselves."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self._named = named
        self._lines: list[str] = []
        self._paths: list[str] = []
        self._depth = 0
        self._visiting: list[str] = []

    def _path(self, where: str) -> str:
        """Index of ``where`` in the path table (the generated code names paths by index)."""
        self._paths.append(where)
        return f"W[{len(self._paths) - 1}]"

    def _emit(self, indent: int, line: str) -> None:
        self._lines.append("    " * indent + line)

    def build(self, schema: Any, top: str) -> CanonicalCheck:
        self._emit(1, "try:")
        self._node(schema, top, 2)
        self._emit(1, "except IndexError:")
        self._emit(2, "raise FAIL(len(d), W0, 'body ends before the record does') from None")
        self._emit(1, "return p")
        source = "def check(d, p):\n" + "\n".join(self._lines) + "\n"
        namespace: dict[str, Any] = {
            "W": tuple(self._paths),
            "W0": top,
            "LONG": _long,
            "INT": _int,
            "SKIP_LONG": _skip_long,
            "SKIP_INT": _skip_int,
            "SKIP_SIZED": _skip_sized,
            "FAIL": _fail,
        }
        # The generated source holds no schema text: field paths travel in the W tuple, sizes
        # and counts are formatted from int(), so a schema cannot inject code.
        exec(compile(source, f"<canonical check {top}>", "exec"), namespace)
        check: CanonicalCheck = namespace["check"]
        return check

    def _resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return self._named[schema]
        return schema

    def _node(self, schema: Any, where: str, indent: int) -> None:
        schema = self._resolve(schema)
        if isinstance(schema, list):
            self._union(schema, where, indent)
            return
        if isinstance(schema, str):
            self._primitive(schema, where, indent)
            return
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical is not None and (kind, logical) not in _PROVEN_LOGICAL:
            raise _UnsupportedError(f"{where}: logical type {logical!r} on {kind!r}")
        if isinstance(kind, str) and kind in _PRIMITIVES:
            self._primitive(kind, where, indent)
        elif kind in ("record", "error"):
            name = schema["name"]
            if name in self._visiting:
                raise _UnsupportedError(f"{where}: recursive type {name}")
            self._visiting.append(name)
            for field in schema["fields"]:
                self._node(field["type"], f"{where}.{field['name']}", indent)
            self._visiting.pop()
        elif kind == "enum":
            self._enum(schema["symbols"], where, indent)
        elif kind == "fixed":
            self._emit(indent, f"p += {int(schema['size'])}")
        elif kind == "array":
            self._block(schema["items"], None, where, indent)
        elif kind == "map":
            self._block(None, schema["values"], where, indent)
        else:
            self._node(kind, where, indent)

    def _primitive(self, kind: str, where: str, indent: int) -> None:
        emit = self._emit
        if kind == "null":
            return
        if kind == "boolean":
            w = self._path(where)
            emit(indent, "if d[p] > 1:")
            emit(indent + 1, f"raise FAIL(p, {w}, 'boolean byte is neither 00 nor 01')")
            emit(indent, "p += 1")
        elif kind in ("int", "long"):
            w = self._path(where)
            emit(indent, "if d[p] > 127:")
            emit(indent + 1, f"p = SKIP_{kind.upper()}(d, p, {w})")
            emit(indent, "else:")
            emit(indent + 1, "p += 1")
        elif kind == "double":
            emit(indent, "p += 8")
        elif kind == "float":
            # Bits 23-30 all ones, a non-zero fraction, the quiet bit (22) clear: a signalling
            # NaN, which fastavro's float -> double -> float trip turns into a quiet one.
            w = self._path(where)
            emit(indent, "if d[p + 3] & 0x7F == 0x7F and d[p + 2] & 0xC0 == 0x80 and "
                         "(d[p + 2] & 0x3F or d[p + 1] or d[p]):")
            emit(indent + 1, f"raise FAIL(p, {w}, 'float is a signalling NaN')")
            emit(indent, "p += 4")
        else:  # string, bytes: a one-byte non-negative length inline, anything else called
            w = self._path(where)
            emit(indent, "n = d[p]")
            emit(indent, "if n & 0x81:")
            emit(indent + 1, f"p = SKIP_SIZED(d, p, {w})")
            emit(indent, "else:")
            emit(indent + 1, "p += 1 + (n >> 1)")

    def _length(self, where: str, indent: int, what: str) -> None:
        """Reads a non-negative long into ``n`` (a string length or a block count)."""
        w = self._path(where)
        emit = self._emit
        emit(indent, "n = d[p]")
        emit(indent, "p += 1")
        emit(indent, "if n > 127:")
        emit(indent + 1, f"n, p = LONG(d, p, n, {w})")
        emit(indent, "if n & 1:")
        emit(indent + 1, f"raise FAIL(p - 1, {w}, 'negative {what}')")
        emit(indent, "n >>= 1")

    def _enum(self, symbols: list[str], where: str, indent: int) -> None:
        w = self._path(where)
        limit = 2 * len(symbols)
        rule = f"'enum index outside 0..{len(symbols) - 1}'"
        if limit <= 128:
            # Every valid index fits one byte: one comparison also refuses longer varints.
            self._emit(indent, f"if d[p] >= {limit} or d[p] & 1:")
            self._emit(indent + 1, f"raise FAIL(p, {w}, {rule})")
            self._emit(indent, "p += 1")
            return
        self._emit(indent, "b = d[p]")
        self._emit(indent, "p += 1")
        self._emit(indent, "if b > 127:")
        self._emit(indent + 1, f"b, p = INT(d, p, b, {w})")
        self._emit(indent, f"if b >= {limit} or b & 1:")
        self._emit(indent + 1, f"raise FAIL(p - 1, {w}, {rule})")

    def _union(self, branches: list[Any], where: str, indent: int) -> None:
        kinds = [self._resolve(branch) for branch in branches]
        nulls = [i for i, kind in enumerate(kinds) if kind == "null" or kind == {"type": "null"}]
        if len(branches) != 2 or len(nulls) != 1:
            # fastavro's writer picks the first branch the value validates against, which need
            # not be the branch that was read ([int, long], [double, int], two records, ...).
            raise _UnsupportedError(f"{where}: union other than null plus one branch")
        other = 1 - nulls[0]
        w = self._path(where)
        self._emit(indent, "b = d[p]")
        self._emit(indent, "p += 1")
        self._emit(indent, f"if b == {2 * other}:")
        mark = len(self._lines)
        self._node(branches[other], where, indent + 1)
        if len(self._lines) == mark:
            self._emit(indent + 1, "pass")
        self._emit(indent, f"elif b != {2 * nulls[0]}:")
        self._emit(indent + 1, f"raise FAIL(p - 1, {w}, 'union index is not 0 or 1')")

    def _block(self, items: Any, values: Any, where: str, indent: int) -> None:
        """An array (``items``) or a map (``values``): one block of every entry, then 00."""
        depth = self._depth
        self._depth += 1
        emit = self._emit
        w = self._path(where)
        self._length(where, indent, "block count")
        # Every entry costs at least one byte (checked below), so a count above the bytes left
        # is refused before looping: work stays proportional to the payload.
        emit(indent, "if n > len(d) - p:")
        emit(indent + 1, f"raise FAIL(p, {w}, 'block count exceeds the bytes left')")
        emit(indent, "if n:")
        emit(indent + 1, f"c{depth} = n")
        if values is not None:
            emit(indent + 1, f"k{depth} = set()")
        emit(indent + 1, f"for _ in range(c{depth}):")
        if values is not None:
            self._length(f"{where} key", indent + 2, "length")
            emit(indent + 2, f"k{depth}.add(d[p:p + n])")
            emit(indent + 2, "p += n")
            self._node(values, f"{where}[]", indent + 2)
        else:
            mark = len(self._lines)
            self._node(items, f"{where}[]", indent + 2)
            if len(self._lines) == mark:
                raise _UnsupportedError(f"{where}: array items that encode to no bytes")
        if values is not None:
            emit(indent + 1, f"if len(k{depth}) != c{depth}:")
            emit(indent + 2, f"raise FAIL(p, {w}, 'map repeats a key')")
        emit(indent + 1, "if d[p]:")
        emit(indent + 2, f"raise FAIL(p, {w}, 'block not followed by the 00 end marker (one "
                         "block of every entry is canonical)')")
        emit(indent + 1, "p += 1")
        self._depth -= 1


def compile_check(schema: Any, named: Mapping[str, Any], top: str) -> CanonicalCheck | None:
    """The compiled check for a parsed schema (fastavro's ``parse_schema`` output, with
    ``named`` its named types), or None when some part of it is not covered (see the module
    docstring): the caller then proves canonical bytes by re-encoding. ``top`` names the type
    in error messages."""
    try:
        return _Compiler(named).build(schema, top)
    except _UnsupportedError:
        return None
