"""The personal-data screen: one rule for every field people type into (issue 23).

RT heads, operators and partners' dispatchers all type free text and identifiers, and any of
them may type a NIK (Nomor Induk Kependudukan, the 16-digit national id), on purpose or not.
UU 27/2022 (PDP) makes the city answer for every copy, so a NIK must not reach a topic, a
state table, a log or a metric. A pattern over ASCII digits is not enough: a phone keyboard
gives fullwidth or Arabic-Indic digits, people group digits with two spaces, " - ", slashes,
commas, no-break spaces or line breaks, and an id may hide the 16 digits among letters. So the
screen reads text the way a person reads digits:

1. every character is NFKC-normalised on its own (fullwidth, circled and superscript digits
   become ASCII digits) and any other Unicode decimal digit (Arabic-Indic, Devanagari, Thai...)
   becomes its ASCII value;
2. format characters (zero-width spaces and joiners, bidi marks, soft hyphens) are skipped, so
   they can neither split nor hide a run;
3. a *run* is digits separated by at most `MAX_GAP` separator units, a separator being any
   character that is neither a letter nor a digit (space, punctuation, symbol, control, line
   break), a whole stretch of white space counting as one unit;
4. a run of 16 digits or more is NIK-shaped, wherever it stands (alone, inside a longer number,
   inside an id between letters).

Some public codes are not personal data although they hold 16 digits: a canonical UUID
(8-4-4-4-12 hex, the ids apps generate), an RT code (`36.72.01.1001.003.007`, exactly that
dotted 2.2.2.4.3.3 shape, the registry's and every RT report's key) and any code the caller
names as known. Each is masked as a whole token before the search, so digits next to it do not
join it. The limits are stated in docs/smart-village.md: a NIK spelled in words, with letters
between its digits, or typed in exactly the RT-code or UUID shape is not recognised, and 16
digits of harmless numbers in a row ("08.00-12.00, 13.00-16.00") are refused too.

Everything here is pure; `contains_nik`, `nik_fields` and `redact_nik` are the entry points,
`clean_text` is the free-text character rule (controls and format characters out).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Container, Iterable, Mapping
from functools import lru_cache
from typing import Any, Final

NIK_DIGITS: Final = 16
"""Digits of a NIK; a run of at least this many is refused."""
MAX_GAP: Final = 3
"""Separator units allowed between two digits of one run (" - " is three, a stretch of white
space of any length one)."""
REDACTED: Final = "[NIK withheld]"
"""What `redact_nik` puts in place of a NIK-shaped run."""
WITHHELD: Final = "[withheld]"
"""What a record shows in place of a field the screen refused (never the value)."""

_UUID: Final = re.compile(
    r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
    r"[0-9A-Fa-f]{12}(?![0-9A-Fa-f])")
_CODE_TOKEN: Final = re.compile(r"(?<![0-9.])[0-9]++(?:\.[0-9]++)+")
"""A dotted code (an RT code is one): checked against the caller's known codes. Starts only
where a digit run starts and never gives digits back (possessive): on a megabyte of digits a
backtracking `[0-9]+` took minutes (found by the hostile corpus)."""
_RT_CODE: Final = re.compile(r"[0-9]{2}\.[0-9]{2}\.[0-9]{2}\.[0-9]{4}\.[0-9]{3}\.[0-9]{3}")
_NON_ASCII: Final = re.compile(r"[^\x00-\x7f]")
_ASCII_DIGITS: Final = re.compile(rb"[0-9]")
_RUN: Final = re.compile(rf"[0-9](?:(?:\s++|[^\w\s]|_){{0,{MAX_GAP}}}[0-9]){{{NIK_DIGITS - 1},}}")
"""A run on folded text: a digit, then digits each after at most MAX_GAP separator units (a
stretch of white space is one unit: possessive, so a long one cannot make the search
backtrack; the unit kinds do not overlap)."""
_DROPPED_TEXT_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


@lru_cache(maxsize=4096)
def _fold(char: str) -> str:
    """One character as the screen reads it: "" for a format character, ASCII digits for any
    decimal digit, else its NFKC form."""
    if char.isascii():
        return char
    category = unicodedata.category(char)
    if category == "Cf":
        return ""
    if category == "Nd":
        return str(unicodedata.decimal(char))
    folded = unicodedata.normalize("NFKC", char)
    return "".join(str(unicodedata.decimal(c)) if unicodedata.category(c) == "Nd" else c
                   for c in folded)


def fold_digits(text: str) -> str:
    """`text` with every digit in ASCII and format characters removed (for tests and for
    checking an output the way the screen reads an input)."""
    return "".join(_fold(char) for char in text)


def _masked(text: str, known: Container[str]) -> str:
    """`text` with canonical UUIDs and known codes replaced by letters of the same length, so
    their digits neither count nor join a neighbouring run."""
    text = _UUID.sub(lambda m: "u" * len(m.group()), text)
    return _CODE_TOKEN.sub(
        lambda m: "c" * len(m.group())
        if m.group() in known or _RT_CODE.fullmatch(m.group()) else m.group(), text)


def _fold_text(text: str) -> str:
    return text if text.isascii() else _NON_ASCII.sub(lambda m: _fold(m.group()), text)


def nik_spans(text: str, known: Container[str] = ()) -> list[tuple[int, int]]:
    """(start, end) in `text` of every NIK-shaped run, in order."""
    masked = _masked(text, known)
    if masked.isascii():
        return [match.span() for match in _RUN.finditer(masked)]
    pieces: list[str] = []
    where: list[int] = []
    for index, char in enumerate(masked):
        folded = _fold(char)
        pieces.append(folded)
        where.extend([index] * len(folded))
    return [(where[match.start()], where[match.end() - 1] + 1)
            for match in _RUN.finditer("".join(pieces))]


def contains_nik(text: str | bytes | None, known: Container[str] = ()) -> bool:
    """True when `text` holds a NIK-shaped run (bytes are read as UTF-8, bad bytes as
    separators)."""
    if text is None:
        return False
    if isinstance(text, bytes):
        if text.isascii() and len(_ASCII_DIGITS.findall(text)) < NIK_DIGITS:
            return False  # the common case of a large record: no per-character work
        text = text.decode("utf-8", errors="replace")
    return _RUN.search(_fold_text(_masked(text, known))) is not None


def nik_fields(record: Mapping[str, Any], names: Iterable[str],
               known: Container[str] = ()) -> list[str]:
    """The names among `names` whose string value in `record` holds a NIK-shaped run."""
    return [name for name in names
            if isinstance(record.get(name), str) and contains_nik(record[name], known)]


def redact_nik(text: str, known: Container[str] = ()) -> tuple[str, int]:
    """`text` with each NIK-shaped run replaced by `REDACTED`, and how many were."""
    spans = nik_spans(text, known)
    if not spans:
        return text, 0
    pieces, at = [], 0
    for start, end in spans:
        pieces.append(text[at:start])
        pieces.append(REDACTED)
        at = end
    pieces.append(text[at:])
    return "".join(pieces), len(spans)


def clean_text(text: str) -> str:
    """Free text people typed, without the characters that act instead of reading: controls
    (NUL, ESC, DEL, C1), format characters (bidi overrides, zero-width), surrogates,
    private-use and unassigned code points; tabs and line breaks become spaces. Letters of any
    script and emoji stay."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char in "\t\n\r\x0b\x0c\u2028\u2029\x85":
            out.append(" ")
        elif unicodedata.category(char) not in _DROPPED_TEXT_CATEGORIES:
            out.append(char)
    return "".join(out)


def screen_note(text: str) -> tuple[str, str | None]:
    """A note someone typed (an operator's, a reviewer's), as it may be stored: `clean_text`
    applied, and the reason it must be refused instead (a NIK-shaped run; the message never
    quotes the text), else None. The board and the worker call this one function, so what one
    accepts the other does."""
    cleaned = clean_text(text)
    if contains_nik(cleaned):
        return cleaned, (f"the text holds a {NIK_DIGITS}-digit number shaped like a NIK; "
                         "personal data must not be written (text not stored)")
    return cleaned, None
