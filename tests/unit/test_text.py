"""Partner text is data, never control (issue 12, hole 4): the identifier character set, the
terminal escaping, and the terminal board that uses it."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest

from cityops.watch import render
from core.text import forbidden_id_characters, terminal_safe

pytestmark = pytest.mark.unit

ESCAPES = "\x1b[2J\x1b[H\x1b[32mALL CLEAR\x1b[8m\x1b]0;cityops: ok\x07"
"""Clear the screen, home, green "ALL CLEAR", conceal the rest, set the window title."""


@pytest.mark.parametrize(("text", "shown"), [
    ("Banjir setinggi lutut", "Banjir setinggi lutut"),
    ("Kebakaran 🔥 di Jl. Ahmad Yani — RT 007", "Kebakaran 🔥 di Jl. Ahmad Yani — RT 007"),
    ("火事 Grogol", "火事 Grogol"),
    (f"cabinet {ESCAPES} out",
     "cabinet \\x1b[2J\\x1b[H\\x1b[32mALL CLEAR\\x1b[8m\\x1b]0;cityops: ok\\x07 out"),
    ("abc\u202edcba\u2066x\u2069", "abc\\u202edcba\\u2066x\\u2069"),
    ("PJU\u200b-0001\ufeff", "PJU\\u200b-0001\\ufeff"),
    ("line\nbreak\rtab\tdel\x7fcsi\x9b2J", "line\\x0abreak\\x0dtab\\x09del\\x7fcsi\\x9b2J"),
    ("sep\u2028par\u2029", "sep\\u2028par\\u2029"),
    ("lone \udc80 surrogate", "lone \\udc80 surrogate"),
    ("nbsp\u00a0kept", "nbsp\u00a0kept"),
])
def test_terminal_safe_escapes_exactly_what_a_terminal_acts_on(text: str, shown: str) -> None:
    assert terminal_safe(text) == shown


def test_no_code_point_a_terminal_acts_on_survives_terminal_safe() -> None:
    shown = terminal_safe("".join(chr(c) for c in range(0x110000)))
    assert {unicodedata.category(c) for c in shown} & {"Cc", "Cf", "Zl", "Zp", "Cs"} == set()


@pytest.mark.parametrize(("ident", "forbidden"), [
    ("PJU-00001", []),
    ("CAB-36.72.01.1001-01", []),
    ("POL 2025/0001 #A", []),
    ("事件-7é", []),
    ("INC\x1b[2J\x1b]0;x\x07", ["\\x1b", "\\x07"]),
    ("\u202eINC", ["\\u202e"]),
    ("WC-\u200b0001\u200b", ["\\u200b"]),
    ("a\u00a0b", ["\\xa0"]),
    ("a\u2028b\ue000c", ["\\u2028", "\\ue000"]),
    ("x\U000e0041", ["\\U000e0041"]),
])
def test_identifier_character_set(ident: str, forbidden: list[str]) -> None:
    assert forbidden_id_characters(ident) == forbidden


def _situation(**changes: Any) -> dict[str, Any]:
    situation: dict[str, Any] = {
        "scope": "KELURAHAN", "scope_code": "36.72.01.1001", "scope_name": "Cibeber",
        "level": "ALERT", "open_incidents": 0, "lamps_out": 3, "lamps_total": 72,
        "containers_full": 0, "reasons": [],
    }
    situation.update(changes)
    return situation


def test_watch_shows_partner_text_escaped_and_keeps_its_own_colours() -> None:
    row = _situation(reasons=[f"3 lamp faults under cabinet {ESCAPES} in 10 min",
                              "2 lamps out \u202e(RTL)"], scope_name="Ci\x1b[8mbeber")
    screen = render([row], colour=True, now=datetime(2026, 1, 1, tzinfo=UTC))
    last = screen.splitlines()[-1]
    assert last == (
        "kelurahan  Ci\\x1b[8mbeber         \x1b[31;1mALERT    \x1b[0m    0       3/72         0  "
        "3 lamp faults under cabinet \\x1b[2J\\x1b[H\\x1b[32mALL CLEAR\\x1b[8m\\x1b]0;cityops: "
        "ok\\x07 in 10 min; 2 lamps out \\u202e(RTL)"
    )
    assert [c for c in screen.replace("\x1b[31;1m", "").replace("\x1b[0m", "")
            if not c.isprintable() and c != "\n"] == []
