"""Hostile input, the rules without a broker: the whole corpus of tests/hostile_corpus.py piped
through the topology (streams/test_driver.py), with exactly the dead letter each bad record
gets, exactly what the valid ones become, and what the ward stage does with them.

Moved here from tests/e2e/test_hostile_input.py (issue 17, part 5), which keeps what needs the
broker: the same corpus through the Kafka client to a real worker, delivered, counted and
judged as the driver judges it here.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from cityops.assets import generate_asset_registry
from core.reference_data import load_ward_records
from core.vocabulary import ASSET_REGISTRY_SEED
from processors.dead_letters import (
    MAX_MESSAGE_CHARS,
    MAX_ORIGINAL_BYTES,
    MAX_ORIGINAL_HEADERS_BYTES,
    MAX_ORIGINAL_KEY_BYTES,
)
from schemas.codec import encode
from streams.test_driver import DRIVER_ID, TopologyTestDriver
from tests.hostile_corpus import (
    ENRICHED,
    ENRICHED_GARBAGE,
    ESCAPES,
    INCIDENT,
    KINDS,
    LIGHTING,
    OTHER_WARD,
    SPEC,
    WARD,
    Builder,
    Item,
    interleave,
    key_of,
    letters_by_item,
    through_driver,
)
from topics import catalog

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
WARDS = load_ward_records()
REGISTRY = generate_asset_registry(WARDS, seed=ASSET_REGISTRY_SEED)


@dataclass(frozen=True)
class Run:
    """The corpus in send order, the partner retries in it, and the driver after it."""

    items: list[Item]
    retries: list[Item]
    driver: TopologyTestDriver

    @property
    def hostile(self) -> list[Item]:
        return [i for i in self.items if i.reason is not None]

    @property
    def valid(self) -> list[Item]:
        return [i for i in self.items if i.reason is None]


@pytest.fixture(scope="module")
def run() -> Run:
    items, retries = interleave(Builder(NOW))
    return Run(items, retries, through_driver(items, NOW))


def test_the_corpus_has_every_case_once() -> None:
    items, retries = interleave(Builder(NOW))
    names = [i.name for i in items]
    hostile = [i for i in items if i.reason is not None]
    assert (len(names), len(set(names)), len(hostile), len(retries)) == (
        283, 283, 135, 10)


def test_each_hostile_record_is_one_dead_letter_with_the_rule_it_breaks(run: Run) -> None:
    letters = letters_by_item(run.items, run.driver)
    assert len(letters) == len(run.driver.outputs.dead_letters) == len(run.hostile) + 1
    assert {name: (d["stage"], d["reason"]) for name, d in letters.items()} == {
        "enriched:garbage": ("DECODE", "not_single_object"),
        **{item.name: (item.stage, item.reason) for item in run.hostile}}


def test_a_dead_letter_keeps_what_was_sent_cut_to_its_limits(run: Run) -> None:
    letters = letters_by_item(run.items, run.driver)
    for item in run.hostile:
        letter = letters[item.name]
        assert (letter["worker_id"], letter["rejected_at"], letter["original_partition"]) == (
            DRIVER_ID, NOW, 0)
        assert letter["error_class"] and letter["error_message"], item.name
        assert len(letter["error_message"]) <= MAX_MESSAGE_CHARS
        if item.value is not None and len(item.value) > MAX_ORIGINAL_BYTES:
            assert letter["original_value"] == item.value[:MAX_ORIGINAL_BYTES]
            assert (f"[original value cut from {len(item.value)} to {MAX_ORIGINAL_BYTES} "
                    "bytes]") in letter["error_message"]
        else:
            assert letter["original_value"] == item.value, item.name
        if item.key is not None and len(item.key) > MAX_ORIGINAL_KEY_BYTES:
            assert letter["original_key"] == item.key[:MAX_ORIGINAL_KEY_BYTES]
            assert (f"[original key cut from {len(item.key)} to {MAX_ORIGINAL_KEY_BYTES} "
                    "bytes]") in letter["error_message"]
        else:
            assert letter["original_key"] == item.key
        if sum(len(v) for _, v in item.headers) < 1000:
            assert [(h["key"], h["value"]) for h in letter["original_headers"]] == list(
                item.headers)
        else:  # two 400 kB headers: both dropped, and the message says so
            assert letter["original_headers"] == []
            assert letter["error_message"].endswith(
                f"[2 original header(s) dropped above {MAX_ORIGINAL_HEADERS_BYTES} bytes]")


def test_every_valid_event_and_every_retry_is_enriched_into_its_ward(run: Run) -> None:
    enriched = run.driver.outputs.enriched
    assert sorted(r["event"]["event_id"] for r in enriched) == sorted(
        str(i.event_id) for i in run.valid)
    assert {r["ward_code"] for r in enriched} == {WARD}
    incidents = [r for r in enriched if "incident_id" in r["event"]]
    # the 760 kB description is normalised and cut, not rejected
    longest = max(incidents, key=lambda r: len(r["event"]["description"]))
    assert longest["event"]["description"] == ("flooded street " * 34)[:500].rstrip()
    # free text keeps its Unicode, escapes included (terminal output escapes it)
    assert [r["event"]["description"] for r in incidents
            if ESCAPES in r["event"]["description"]] == [f"banjir {ESCAPES} \u202eabc \U0001f30a"]
    # a lamp and a container named with another kelurahan: the registry's ward wins
    for kind in ("lighting", "waste"):
        of_kind = [r for r in enriched if ("lamp_id" if kind == "lighting" else "container_id")
                   in r["event"]]
        assert sorted(r["event"]["ward_code"] for r in of_kind
                      if r["ward_resolution"] == "ASSET_REGISTRY"
                      and r["event"]["ward_code"] is not None) == [OTHER_WARD]
    assert run.driver.outputs.corrected == Counter({
        (catalog.LIGHTING.name, "ward_code_mismatch"): 1,
        (catalog.WASTE.name, "ward_code_mismatch"): 1,
    })


def test_per_input_topic_every_record_is_enriched_or_dead_lettered(run: Run) -> None:
    enriched_per_kind = Counter(
        next(k for k, field in (("incidents", "incident_id"), ("lighting", "lamp_id"),
                                ("waste", "container_id")) if field in r["event"])
        for r in run.driver.outputs.enriched)
    dead_per_topic = Counter(d["original_topic"] for d in run.driver.outputs.dead_letters)
    sent = Counter(i.kind for i in run.items)
    assert {kind: enriched_per_kind[kind] + dead_per_topic[SPEC[kind].name]
            for kind in KINDS} == dict(sent)
    assert {kind: (enriched_per_kind[kind], dead_per_topic[SPEC[kind].name])
            for kind in KINDS} == {
        kind: (sum(1 for i in run.valid if i.kind == kind),
               sum(1 for i in run.hostile if i.kind == kind)) for kind in KINDS}


def test_the_ward_applies_each_event_once_and_a_retry_is_a_duplicate(run: Run) -> None:
    expected: Counter[tuple[str, str]] = Counter()
    for kind in KINDS:
        topic = ENRICHED[kind].name
        expected[(topic, "applied")] = len({i.event_id for i in run.valid if i.kind == kind})
        expected[(topic, "duplicate")] = sum(1 for i in run.retries if i.kind == kind)
    assert run.driver.outputs.aggregated == expected
    assert sum(expected.values()) == len(run.valid)
    assert [d for d in run.driver.outputs.dead_letters if d["stage"] == "PROCESS"] == []


def test_garbage_on_an_enriched_topic_is_the_ward_stage_s_dead_letter() -> None:
    """Only workers write the enriched topics; what another writer puts there is dead-lettered
    by the ward stage with its key, and nothing is folded."""
    driver = TopologyTestDriver(WARDS, REGISTRY, batch=1)
    driver.pipe_enriched("incident", ENRICHED_GARBAGE, key=WARD.encode(), now=NOW)
    assert [(d["original_topic"], d["original_offset"], d["stage"], d["reason"],
             d["original_key"], d["original_value"]) for d in driver.outputs.dead_letters] == [
        (catalog.INCIDENTS_ENRICHED.name, 0, "DECODE", "not_single_object", WARD.encode(),
         ENRICHED_GARBAGE)]
    assert (driver.outputs.aggregated, driver.outputs.situations, driver.entries) == (
        Counter(), [], {})


LATE_WARD = "36.72.02.1002"  # Ciwedus


def _lamp_fault(lamp: str, at: datetime, n: int) -> bytes:
    return encode(LIGHTING, {
        "event_id": str(uuid.UUID(int=0x1A7E + n)), "occurred_at": at, "lamp_id": lamp,
        "cabinet_id": None, "report_kind": "FAULT", "lamp_status": "NO_POWER",
        "power_state": "OFF", "dimming_level": None, "energy_kwh": None, "ward_code": None,
        "latitude": None, "longitude": None,
    })


def test_a_late_event_updates_latest_status_but_no_window() -> None:
    """docs/rules.md: an event whose window closed (end + grace <= the ward's watermark) still
    sets its lamp's latest status, is counted as late, and is not added to any window."""
    lamps = sorted(a["asset_id"] for a in REGISTRY
                   if a["ward_code"] == LATE_WARD and a["asset_kind"] == "LAMP")[:2]
    driver = TopologyTestDriver(WARDS, REGISTRY, batch=1)
    driver.pipe("lighting", _lamp_fault(lamps[0], NOW - timedelta(minutes=1), 0), now=NOW)
    driver.pipe("lighting", _lamp_fault(lamps[1], NOW - timedelta(minutes=30), 1), now=NOW)
    assert driver.outputs.aggregated == Counter({
        (catalog.LIGHTING_ENRICHED.name, "applied"): 1,
        (catalog.LIGHTING_ENRICHED.name, "late"): 1})
    situation = driver.situations_of(LATE_WARD)[-1]
    assert (situation["lamps_out"], situation["new_lamp_faults_in_window"],
            situation["last_event_at"]) == (2, 1, NOW - timedelta(minutes=1))


SOURCE_WARD = "36.72.05.1001"


def test_a_partner_can_neither_pose_as_another_source_nor_touch_its_incidents() -> None:
    """Issue 12, hole 2, with the e2e test's records: on its own topic the citizen app claims to
    be the police (dead-lettered VALIDATE/source_mismatch with its bytes, it never reaches the
    ward) and cancels a police incident by reusing its id (accepted by design as the citizen
    app's own, closed incident: the police incident stays open)."""
    b = Builder(NOW)
    police = b.incident(ward_code=SOURCE_WARD, category="OTHER", severity="MODERATE")
    posing = b.incident(ward_code=SOURCE_WARD, category="FIRE", severity="EXTREME")  # POLICE
    cancel = b.incident(ward_code=SOURCE_WARD, category="OTHER", severity="MODERATE",
                        incident_id=police["incident_id"], source_system="CITIZEN_APP",
                        status="CANCELLED")
    driver = TopologyTestDriver(WARDS, REGISTRY, batch=1_000)
    for record, source in ((police, "POLICE"), (posing, "CITIZEN_APP"),
                           (cancel, "CITIZEN_APP")):
        driver.pipe("incident", encode(INCIDENT, record), key=key_of(record, "incidents"),
                    now=NOW, source=source)
    driver.end_batch(NOW)
    citizen_topic = catalog.INCIDENTS_CITIZEN.name
    assert sorted((r["event"]["incident_id"], r["event"]["source_system"],
                   r["event"]["status"]) for r in driver.outputs.enriched) == [
        (police["incident_id"], "CITIZEN_APP", "CANCELLED"),
        (police["incident_id"], "POLICE", "REPORTED")]
    [letter] = driver.outputs.dead_letters
    assert (letter["original_topic"], letter["original_offset"], letter["stage"],
            letter["reason"], letter["error_message"], letter["original_value"]) == (
        citizen_topic, 0, "VALIDATE", "source_mismatch",
        f"source_system 'POLICE' on {citizen_topic}, which only CITIZEN_APP writes",
        encode(INCIDENT, posing))
    assert driver.outputs.aggregated == Counter(
        {(catalog.INCIDENTS_ENRICHED.name, "applied"): 2})
    [final] = driver.situations_of(SOURCE_WARD)
    # the police incident is still open; the EXTREME claim never reached the ward
    assert (final["level"], final["reasons"], final["open_incidents"],
            final["open_incidents_by_severity"], final["open_incidents_by_category"]) == (
        "NORMAL", [], 1, {"MODERATE": 1}, {"OTHER": 1})
