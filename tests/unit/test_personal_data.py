"""The personal-data screen (issue 23): NIKs in every spelling and position are found, public
codes are not, and through the topology test driver no output of an RT report, an operator
action or an incident holds the 16 digits in any spelling."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from core.reference_data import load_ward_records
from processors.enrich import data_quality, enrich_incident
from processors.neighbourhood import REVIEW_SCHEMA
from processors.personal_data import (
    REDACTED,
    WITHHELD,
    clean_text,
    contains_nik,
    fold_digits,
    nik_fields,
    redact_nik,
    screen_note,
)
from schemas.codec import encode
from streams.test_driver import TopologyTestDriver
from tests.unit.test_enrich import NOW as ENRICH_NOW
from tests.unit.test_enrich import REF, RULES, incident
from tests.unit.test_neighbourhood import KEL, REGISTRY, RW1, report

pytestmark = pytest.mark.unit

NOW = datetime(2025, 9, 10, 3, 0, tzinfo=UTC)
WARDS = load_ward_records()
SCHEMA = "org.cityops.RtReport"
NIK = "3672010101010001"
#: Digit zero of scripts a phone keyboard or a copy-paste can bring (ASCII first).
ZEROS = (0x30, 0xFF10, 0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0x1D7CE)
SEPARATORS = ("", " ", "  ", "   ", " - ", "-", ".", "/", ",", ", ", "\n", "\r\n", "\t",
              "\u00a0", "\u2009", "\u202f", "\u200b", "\u200e", "\u00ad", "_", "|", ":")
FIELDS = ("note", "report_id", "reporter_id", "rt_code", "period")
RT_CODE_SHAPE = re.compile(r"[0-9]{2}\.[0-9]{2}\.[0-9]{2}\.[0-9]{4}\.[0-9]{3}\.[0-9]{3}")


@st.composite
def spelled_niks(draw: st.DrawFn) -> tuple[str, str]:
    """(the 16 digits, one way a person could type them)."""
    digits = draw(st.text("0123456789", min_size=16, max_size=16))
    zero = draw(st.sampled_from(ZEROS))
    mixed = draw(st.booleans())
    out = []
    for index, digit in enumerate(digits):
        base = draw(st.sampled_from(ZEROS)) if mixed else zero
        out.append(chr(base + int(digit)))
        if index < 15:
            out.append(draw(st.sampled_from(SEPARATORS)))
    spelled = "".join(out)
    # the one spelling the screen lets pass on purpose: exactly an RT code's dotted shape
    assume(RT_CODE_SHAPE.fullmatch(spelled) is None)
    return digits, spelled


POSITIONS = ("{}", "NIK {} mohon dicek", "RPT-{}-A", "x{}y", "{}\n", "KTP:{}")


def output_values(driver: TopologyTestDriver) -> list[str]:
    """Every string and byte string the driver wrote, one value at a time (bytes read as
    UTF-8), so a NIK can be looked for in each."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, bytes):
            found.append(value.decode("utf-8", errors="replace"))
        elif isinstance(value, str):
            found.append(value)

    outputs = driver.outputs
    walk([outputs.validations, outputs.dead_letters, outputs.indicators, outputs.enriched,
          outputs.situations, outputs.rt_screened])
    return found


def spelled_anywhere(digits: str, values: list[str]) -> bool:
    """True when any value holds the 16 digits in any spelling: digits folded to ASCII and
    everything that is not a digit dropped."""
    return any(digits in re.sub(r"[^0-9]", "", fold_digits(value)) for value in values)


@pytest.mark.parametrize("text", [
    NIK, "3672 0101 0101 0001", "3672  0101  0101  0001", "3672 - 0101 - 0101 - 0001",
    "3672/0101/0101/0001", "3672,0101,0101,0001", "3672\n0101\n0101\n0001",
    "3672\u00a00101\u00a00101\u00a00001", "\uff13\uff16\uff17\uff12" + NIK[4:],
    "".join(chr(0x0660 + int(d)) for d in NIK), f"RPT{NIK}X", f"1{NIK}9",
    "36\u200b72010101010001", "3672_0101_0101_0001"])
def test_every_spelling_of_a_nik_is_found(text: str) -> None:
    assert contains_nik(text) and contains_nik(text.encode())


@pytest.mark.parametrize("text", [
    "36.72.01.1001.003.007", "0f3c1b2a-1234-4567-8901-234567890123", "telp 081234567890",
    "RT 003 RW 007, 150 warga", "3672 .... 0101 0101 0001", "KK 3672 0101 dan 0101 0001"])
def test_public_codes_and_shorter_or_word_separated_numbers_are_not(text: str) -> None:
    assert not contains_nik(text)


def test_redaction_and_the_note_screen() -> None:
    assert redact_nik("nik \uff13672 0101 0101 0001 hilang") == (f"nik {REDACTED} hilang", 1)
    assert clean_text("a\x1b[2Jb\u202ec\u200bd\x00e\nf") == "a[2Jbcde f"
    assert screen_note("ok\x1b") == ("ok", None)
    assert screen_note(f"warga {NIK}")[1] == (
        "the text holds a 16-digit number shaped like a NIK; personal data must not be "
        "written (text not stored)")
    assert nik_fields({"a": NIK, "b": "x", "c": 3}, ("a", "b", "c")) == ["a"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nik=spelled_niks(), field=st.sampled_from(FIELDS), position=st.sampled_from(POSITIONS),
       keyed_by_field=st.booleans())
def test_no_output_of_the_topology_holds_a_nik_sent_in_any_field(
        nik: tuple[str, str], field: str, position: str, keyed_by_field: bool) -> None:
    digits, spelled = nik
    driver = TopologyTestDriver(WARDS, [], neighbourhoods=REGISTRY.values())
    base = report()
    driver.pipe_rt_report(encode(SCHEMA, base), now=NOW, key=base["rt_code"].encode())
    sent = report(report_id="R2") | {field: position.format(spelled)}
    key = sent[field] if keyed_by_field else sent["rt_code"]
    driver.pipe_rt_report(encode(SCHEMA, sent), now=NOW, key=key.encode(),
                          headers=[("trace", spelled.encode())])
    assert [d["reason"] for d in driver.outputs.dead_letters] == ["personal_data"]
    assert driver.outputs.validations[-1]["verdict"] == "REJECTED"
    assert not spelled_anywhere(digits, output_values(driver))


def test_the_rejected_verdict_withholds_the_identifier_and_names_the_field() -> None:
    driver = TopologyTestDriver(WARDS, [], neighbourhoods=REGISTRY.values())
    sent = report(report_id=f"RPT-{NIK}")
    driver.pipe_rt_report(encode(SCHEMA, sent), now=NOW, key=sent["rt_code"].encode())
    (verdict,) = driver.outputs.validations
    (letter,) = driver.outputs.dead_letters
    assert (verdict["report_id"], verdict["rt_code"], verdict["reasons"]) == (
        WITHHELD, sent["rt_code"],
        ["report_id holds a 16-digit number shaped like a NIK (in any digits, with any "
         "separators); personal data must not enter the pipeline (value not copied)"])
    assert (letter["original_value"], letter["original_key"]) == (None, sent["rt_code"].encode())


def test_the_screened_topic_carries_the_screened_record_not_the_partner_s_bytes() -> None:
    driver = TopologyTestDriver(WARDS, [], neighbourhoods=REGISTRY.values())
    sent = report(note="Kerja bakti hari Minggu.")
    raw = encode(SCHEMA, sent)
    driver.pipe_rt_report(raw, now=NOW, key=sent["rt_code"].encode())
    (screened,) = driver.outputs.rt_screened
    assert screened == encode(SCHEMA, {**sent, "note": None}) and screened != raw
    assert driver.outputs.validations[0]["verdict"] == "VALID"


def test_a_nik_in_a_report_rejected_for_another_reason_is_withheld_there_too() -> None:
    # a key the screen does not read, on a report with broken counts
    driver = TopologyTestDriver(WARDS, [], neighbourhoods=REGISTRY.values())
    sent = report(unemployed=500)
    raw = encode(SCHEMA, sent)
    driver.pipe_rt_report(raw, now=NOW, key=f"KTP {NIK}".encode(), headers=[("x", b"fine")])
    driver.pipe_rt_report(raw, now=NOW, key=sent["rt_code"].encode(),
                          headers=[("trace", f"nik={NIK}".encode())])
    first, second = driver.outputs.dead_letters
    assert (first["reason"], first["original_key"], first["original_value"]) == (
        "inconsistent_counts", None, raw)
    assert first["error_message"].endswith("[original key withheld: it carries personal data]")
    assert (second["original_key"], second["original_value"], second["original_headers"]) == (
        sent["rt_code"].encode(), None, [])


def test_an_incident_description_keeps_the_incident_and_loses_the_nik() -> None:
    event = incident(description=f"korban NIK {NIK[:8]} {NIK[8:]} dibawa ke RS",
                     ward_code="36.72.01.1001")
    enriched = enrich_incident(event, REF, RULES, ENRICH_NOW)
    assert enriched["event"]["description"] == f"korban NIK {REDACTED} dibawa ke RS"
    assert data_quality(enriched) == ("personal_data_redacted",)


# -- reviews through the driver (issue 23, part 3) -------------------------------------------


def _review(**fields: Any) -> bytes:
    record = {"review_id": "0f3c1b2a-1234-4567-8901-234567890123", "decided_at": NOW,
              "reviewer_id": "sinta", "reviewer_role": "VILLAGE_STAFF",
              "kelurahan_code": KEL, "rt_code": RW1[0], "period": "2025-08",
              "report_id": "B", "revision": 1, "decision": "ACCEPT", "counts": None,
              "note": None} | fields
    return encode(REVIEW_SCHEMA, record)


def test_a_review_through_the_driver_publishes_the_verdict_and_the_indicators() -> None:
    driver = TopologyTestDriver(WARDS, [], neighbourhoods=REGISTRY.values())
    driver.pipe_rt_report(encode(SCHEMA, report(period="2025-07", report_id="A")), now=NOW)
    driver.pipe_rt_report(encode(SCHEMA, report(report_id="B", households=60, residents=230,
                                                working_age=170)), now=NOW)
    assert driver.outputs.validations[-1]["reason_codes"] == ["continuity"]
    driver.pipe_rt_review(_review(), now=NOW)
    verdict = driver.outputs.validations[-1]
    assert (verdict["verdict"], verdict["reason_codes"], verdict["reasons"],
            verdict["residents"]) == ("VALID", ["review_accepted"],
                                      ["accepted by sinta after review"], 230)
    kelurahan = driver.latest_indicators()[f"{KEL}|2025-08"]
    assert (kelurahan["rt_valid"], kelurahan["rt_needs_review"], kelurahan["residents"]) == (
        1, 0, 230)
    # a second decision on the same revision is stale; a viewer's and a NIK note are refused
    driver.pipe_rt_review(_review(decision="REJECT"), now=NOW)
    driver.pipe_rt_review(_review(reviewer_role="VIEWER"), now=NOW)
    driver.pipe_rt_review(_review(note=f"nik {NIK}"), now=NOW)
    assert [(d["reason"], d["original_value"] is None) for d in driver.outputs.dead_letters] == [
        ("stale_review", False), ("action_not_allowed", False), ("personal_data", True)]
