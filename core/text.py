"""Partner text is data, never control: the character rules every layer shares.

Partners write identifiers and free text that end up in ward state, situation reasons, dead
letters and, eventually, an operator's terminal. Two rules, defined once here so the worker
(which refuses bad identifiers) and the command line (which prints partner text) cannot
disagree about what a dangerous character is:

- **Identifiers** (incident, lamp, cabinet, container ids, RW, RT) may hold only letters, marks,
  digits, punctuation and symbols (Unicode categories L*, M*, N*, P*, S*) and the ASCII space.
  That excludes control characters (C0, DEL, C1: the ANSI/OSC escapes that clear a screen or
  set a window title), format characters (bidi overrides that reorder what an operator reads,
  zero-width characters that make two different ids look identical), line and paragraph
  separators, other spaces, surrogates, private-use and unassigned code points.
- **Free text** (descriptions, reasons, names) keeps any Unicode, but whatever is printed on a
  terminal goes through :func:`terminal_safe`, which turns every character that could act on
  the terminal (categories Cc, Cf, Zl, Zp, Cs) into a visible escape such as ``\\x1b``.
"""

from __future__ import annotations

import unicodedata
from typing import Final

_ID_CATEGORY_INITIALS: Final = frozenset("LMNPS")
"""First letter of the Unicode general categories an identifier may use (plus U+0020)."""

_TERMINAL_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
"""Characters a terminal may act on (controls, escapes, bidi and zero-width format characters,
line breaks) or cannot show (lone surrogates)."""


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def forbidden_id_characters(value: str) -> list[str]:
    """The characters of `value` outside the identifier character set, escaped (``\\x1b``),
    in order of appearance, each once; empty when the identifier is acceptable."""
    if value.isascii() and value.isprintable():  # the common case: no per-character lookup
        return []
    found: dict[str, None] = {}
    for char in value:
        if char != " " and unicodedata.category(char)[0] not in _ID_CATEGORY_INITIALS:
            found.setdefault(_escape(char), None)
    return list(found)


def terminal_safe(text: str) -> str:
    """`text` with every character a terminal could act on shown as a visible escape.

    Letters of any script, emoji and ordinary spaces are kept; ESC, CSI, BEL, DEL, bidi
    overrides, zero-width characters, line breaks and tabs become ``\\x1b``, ``\\u202e`` and so
    on, so partner text can neither move the cursor, recolour, retitle or clear the screen,
    nor hide or reorder what follows it. Apply it to each piece of partner text before it is
    laid out, never to the program's own colour codes.
    """
    if text.isprintable():  # no Cc, Cf, Zl, Zp or Cs in it (nor other non-printables)
        return text
    return "".join(
        _escape(char) if unicodedata.category(char) in _TERMINAL_UNSAFE_CATEGORIES else char
        for char in text
    )
