"""Smart village on the real broker (issue 13): the SYNTHETIC registry published, a real worker,
a simulated month of RT reports with injected mistakes for two kelurahan, and then exactly
the expected verdict of every report, the expected indicators per RW, kelurahan, kecamatan and
city (recomputed here from the VALID reports), the expected dead letters, a NIK that appears in
no byte of any topic downstream of the input, and the board's unemployment layer in headless
Chromium showing all of it, partner text as text.

The expected verdicts come from the simulator's record of what it injected
(`cityops.rt_simulator`), not from the validator; the rule-by-rule checks without a broker are
in tests/unit/test_rt_simulator.py (through streams/test_driver.py).
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from bench.harness import Namespace, Worker, read_records, wait_until
from cityops.neighbourhoods import generate_registry
from cityops.rt_simulator import RT_REPORT_SCHEMA, SimulatedMonth, previous_month, simulate_month
from core import accounts
from core.reference_data import load_ward_records
from core.vocabulary import CITY_CODE
from processors.neighbourhood import WIB
from processors.personal_data import WITHHELD, fold_digits
from schemas.codec import encode
from tests.e2e.test_board import CHROMIUM, UPDATE_TIMEOUT_MS, browser, signed_in_page
from tests.integration.test_web_api import BoardAccess, BoardSession, board_access, get_json
from tests.unit.test_rt_simulator import expected_indicators, published
from topics import catalog

pytestmark = pytest.mark.e2e

__all__ = ["browser"]  # the Chromium fixture, shared with the situation layer's test

SEED = 2025
#: Cibeber (kecamatan Cibeber, 64 RT) and Jombang Wetan (kecamatan Jombang, 94 RT).
KELURAHAN = ("36.72.01.1001", "36.72.05.1002")
REGISTRY = generate_registry(load_ward_records())
HOSTILE_ID = '<img src=x onerror="window.__pwned=1">'
CLASSES = ((0.05, "1"), (0.075, "2"), (0.10, "3"), (0.125, "4"), (float("inf"), "5"))


def rate_class(rate: float | None) -> str:
    """The colour class village.js gives a rate (its CLASSES)."""
    return "none" if rate is None else next(c for limit, c in CLASSES if rate < limit)


def pct(ratio: float | None) -> str:
    return "\u2013" if ratio is None else f"{round(ratio * 1000) / 10:.1f}%"


@pytest.fixture(scope="module")
def namespace(broker: str) -> Iterator[Namespace]:
    namespace = Namespace.create(broker, "village")
    namespace.cityops("neighbourhoods", "load")
    yield namespace


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> BoardAccess:
    return board_access(tmp_path_factory.mktemp("village-access"))


@pytest.fixture(scope="module")
def worker(namespace: Namespace, tmp_path_factory: pytest.TempPathFactory,
           artifacts_dir: Path, access: BoardAccess) -> Iterator[Worker]:
    app_id = f"village-{uuid.uuid4().hex[:8]}"
    try:
        with namespace.worker(app_id, artifacts_dir / "village-worker.log",
                              tmp_path_factory.mktemp("village-worker"), **access.env
                              ) as process:
            wait_until(lambda: get_json(process.web_port, "/api/neighbourhoods",
                                        access.token)[0] == 200)
            yield process
    finally:  # the shared broker keeps nothing of this module (the NIK input included)
        namespace.teardown([app_id])


@pytest.fixture(scope="module")
def month(namespace: Namespace, worker: Worker) -> SimulatedMonth:
    """The month, sent as the RT heads' app would send it."""
    now = datetime.now(UTC)
    simulated = simulate_month(REGISTRY, previous_month(now), seed=SEED, kelurahan=KELURAHAN,
                               submitted_by=now)
    namespace.send([("RtReport", report.record) for report in simulated.reports])
    return simulated


def verdicts(namespace: Namespace) -> list[tuple[Any, ...]]:
    return sorted((v["rt_code"], v["period"], v["report_id"], v["revision"], v["verdict"],
                   tuple(v["reason_codes"])) for v in namespace.read(catalog.RT_VALIDATIONS))


def test_a_simulated_month_gets_exactly_the_expected_verdicts_indicators_and_dead_letters(
        namespace: Namespace, worker: Worker, month: SimulatedMonth) -> None:
    want = sorted((r.record["rt_code"], r.record["period"], r.record["report_id"],
                   r.record["revision"], r.expected.verdict, r.expected.reason_codes)
                  for r in month.reports if r.expected.verdict is not None)
    wait_until(lambda: len(namespace.read(catalog.RT_VALIDATIONS)) >= len(want), 240,
               "every report judged")
    assert verdicts(namespace) == want
    assert month.verdict_counts() == {"VALID": 148, "NEEDS_REVIEW": 1, "REJECTED": 5}

    letters = namespace.read(catalog.DEAD_LETTERS)
    assert sorted((d["original_key"].decode(), d["stage"], d["reason"]) for d in letters) == sorted(
        (r.record["rt_code"], *r.expected.dead_letter)
        for r in month.reports if r.expected.dead_letter is not None)
    (withheld,) = [d for d in letters if d["reason"] == "personal_data"]
    assert (withheld["original_value"], withheld["original_headers"]) == (None, [])

    expected = expected_indicators(month, REGISTRY)
    wait_until(lambda: published(namespace.read(catalog.NEIGHBOURHOOD_INDICATORS)) == expected,
               120, "indicators equal the recomputation")
    city = expected[f"{CITY_CODE}|{month.period}"]
    assert (city["rt_registered"], city["rt_reported"], city["rt_valid"],
            city["rt_needs_review"]) == (3407, 147, 146, 1)

    # the NIK: in the partner's input topic only, in no byte of anything downstream
    nik = month.nik.encode()
    admin = KafkaAdminClient(bootstrap_servers=namespace.bootstrap)
    try:
        topics = sorted(t for t in admin.list_topics()
                        if t.startswith((namespace.prefix, f"{worker.app_id}-")))
    finally:
        admin.close()
    source = namespace.name(catalog.RT_REPORTS)
    assert source in topics and len(topics) > 10
    carrying = {topic for topic in topics for record in read_records(namespace.bootstrap, topic)
                if nik in (record.key or b"") + (record.value or b"")
                + b"".join(k.encode() + (v or b"") for k, v in record.headers)}
    assert carrying == {source}


def test_the_board_shows_the_unemployment_layer_and_a_kelurahan_s_rws_and_reviews(
        browser: Any, namespace: Namespace, worker: Worker, month: SimulatedMonth,
        artifacts_dir: Path, access: BoardAccess) -> None:
    assert CHROMIUM.exists()
    expected = expected_indicators(month, REGISTRY)
    wait_until(lambda: published(namespace.read(catalog.NEIGHBOURHOOD_INDICATORS)) == expected,
               240, "indicators published")
    base_url = f"http://127.0.0.1:{worker.web_port}"
    outside: list[str] = []
    errors: list[str] = []
    page = signed_in_page(browser, base_url, "vera", access.passwords["vera"],
                          {"width": 1600, "height": 1000})
    page.on("request", lambda request: None if request.url.startswith(base_url)
            else outside.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.wait_for_selector("#connection[data-state='live']", timeout=UPDATE_TIMEOUT_MS)
    page.click("#layers button[data-layer='unemployment']")
    page.wait_for_selector(f"#village[data-period='{month.period}']", timeout=UPDATE_TIMEOUT_MS)

    # the map: the two kelurahan coloured by their rate, the 41 others without a VALID report
    for code in KELURAHAN:
        indicator = expected[f"{code}|{month.period}"]
        path = page.locator(f"path.ward[data-code='{code}']")
        assert (path.get_attribute("data-unemployment"), path.get_attribute("data-rate"),
                path.get_attribute("data-completeness")) == (
            rate_class(indicator["unemployment_rate"]), pct(indicator["unemployment_rate"]),
            pct(indicator["completeness"]))
        item = page.locator(f"#village-list li[data-code='{code}'] .figs span")
        assert item.all_inner_texts() == [
            f"{pct(indicator['unemployment_rate'])} unemployed",
            f"{pct(indicator['completeness'])} ({indicator['rt_reported']}/"
            f"{indicator['rt_registered']} RT) reported",
            f"{indicator['rt_needs_review']} need review"]
    assert page.locator("path.ward[data-unemployment='none']").count() == 41
    city = expected[f"{CITY_CODE}|{month.period}"]
    assert page.locator("#village-city .figs span b").all_inner_texts() == [
        pct(city["unemployment_rate"]), f"{pct(city['completeness'])} (147/3407 RT)", "1"]
    assert page.locator("#village .synthetic").inner_text() == "SYNTHETIC"

    # click-through: the kelurahan of the RT whose residents jumped
    (jumped,) = month.mistakes["residents_jump"]
    code = jumped.rsplit(".", 2)[0]
    page.locator(f"path.ward[data-code='{code}']").click()
    page.wait_for_selector(f"#village-detail[data-code='{code}'] li[data-rt='{jumped}']",
                           timeout=UPDATE_TIMEOUT_MS)
    assert page.locator("#detail").is_hidden()  # the situation detail stays closed
    rows = page.locator("#village-detail table.rws tr[data-rw]")
    rws = sorted(key.split("|")[0] for key, value in expected.items()
                 if value["scope_level"] == "RW" and key.startswith(f"{code}.")
                 and key.endswith(month.period))
    assert [row.get_attribute("data-rw") for row in rows.all()] == [
        rw.rsplit(".", 1)[1] for rw in rws]
    for rw, row in zip(rws, rows.all(), strict=True):
        value = expected[f"{rw}|{month.period}"]
        assert row.locator("td").all_inner_texts() == [
            rw.rsplit(".", 1)[1],
            "withheld (small cell)" if value["withheld"] else pct(value["unemployment_rate"]),
            pct(value["completeness"]),
            f"{value['rt_reported']}/{value['rt_registered']}", str(value["rt_needs_review"])]
    (reason,) = page.locator(f"#village-detail li[data-rt='{jumped}'] .reasons li"
                             ).all_inner_texts()
    assert reason.startswith("residents ") and "do not follow from last month" in reason
    page.mouse.move(5, 5)
    page.screenshot(path=str(artifacts_dir / "board-unemployment-layer.png"))

    # the base month from the month picker: every RT of the two kelurahan reported
    page.select_option("#village-period", month.base_period)
    page.wait_for_selector(f"#village[data-period='{month.base_period}']",
                           timeout=UPDATE_TIMEOUT_MS)
    assert [page.locator(f"path.ward[data-code='{c}']").get_attribute("data-completeness")
            for c in KELURAHAN] == ["100.0%", "100.0%"]

    # partner text is text: a report id with markup, quoted by the reason of a second report
    page.select_option("#village-period", month.period)
    silent = next(rt for rt in month.mistakes["not_reported"] if rt.startswith(code))
    (last,) = [r.record for r in month.reports
               if r.record["rt_code"] == silent and r.record["period"] == month.base_period]
    first = {**last, "period": month.period, "report_id": HOSTILE_ID, "births": 0,
             "deaths": 0, "moved_in": 0, "moved_out": 0, "note": None}
    namespace.send([("RtReport", first), ("RtReport", {**first, "report_id": "R-2"})])
    page.wait_for_selector(f"#village-detail li[data-rt='{silent}'] .reasons li",
                           timeout=UPDATE_TIMEOUT_MS)
    assert page.locator(f"#village-detail li[data-rt='{silent}'] .reasons li").all_inner_texts(
    ) == [f"a second report for this RT and {month.period} (report {HOSTILE_ID} came first); "
          "it replaces the first"]
    assert (page.locator("#village img").count(), page.evaluate("window.__pwned")) == (0, None)
    page.close()
    assert (outside, errors) == ([], [])


def spell(digits: str, zero: int, separator: str) -> str:
    """The 16 digits in the script whose zero is `zero`, in groups of four."""
    return separator.join("".join(chr(zero + int(d)) for d in digits[i:i + 4])
                          for i in range(0, 16, 4))


def test_a_nik_in_any_field_and_any_spelling_reaches_no_topic_downstream(
        namespace: Namespace, worker: Worker, month: SimulatedMonth) -> None:
    """Issue 23: NIKs typed the ways the old pattern missed, in every field a person types,
    in the key and in a header: each report is REJECTED `personal_data` (or, with the NIK in a
    header only, rejected for its counts with value and headers withheld), and the 16 digits
    appear in no spelling in any topic of the namespace or the worker but the input."""
    silent = next(rt for rt in month.mistakes["not_reported"])
    (last,) = [r.record for r in month.reports
               if r.record["rt_code"] == silent and r.record["period"] == month.base_period]
    clean = {**last, "period": month.period, "births": 0, "deaths": 0, "moved_in": 0,
             "moved_out": 0, "note": None}
    niks = [f"36720{n}5507910{n:03d}" for n in range(1, 10)]
    sent: list[tuple[str, dict[str, Any], list[tuple[str, bytes]]]] = [
        (silent, clean | {"report_id": f"N1-{uuid.uuid4()}",
                          "note": f"NIK {spell(niks[0], 0x30, '  ')}"}, []),
        (silent, clean | {"report_id": f"N2-{uuid.uuid4()}",
                          "note": f"KTP {spell(niks[1], 0xFF10, ' - ')} hilang"}, []),
        (silent, clean | {"report_id": f"N3-{uuid.uuid4()}",
                          "note": spell(niks[2], 0x0660, "\u00a0")}, []),
        (silent, clean | {"report_id": f"RPT{niks[3]}X"}, []),
        (silent, clean | {"report_id": f"N5-{uuid.uuid4()}",
                          "reporter_id": spell(niks[4], 0x30, "/")}, []),
        (spell(niks[5], 0x30, "\n"), clean | {"rt_code": spell(niks[5], 0x30, "\n")}, []),
        (silent, clean | {"report_id": f"N7-{uuid.uuid4()}", "period": niks[6]}, []),
        # broken counts, the NIK only where the screen does not look: the key, a header
        (f"{silent} {spell(niks[7], 0x30, ',')}",
         clean | {"report_id": f"N8-{uuid.uuid4()}", "unemployed": 10_000}, []),
        (silent, clean | {"report_id": f"N9-{uuid.uuid4()}", "unemployed": 10_000},
         [("trace", spell(niks[8], 0x0966, " ").encode())]),
    ]
    topic = namespace.name(catalog.RT_REPORTS)
    producer = KafkaProducer(bootstrap_servers=namespace.bootstrap)
    try:
        for key, record, headers in sent:
            producer.send(topic, key=key.encode(), value=encode(RT_REPORT_SCHEMA, record),
                          headers=headers)
        producer.flush()
    finally:
        producer.close()

    def letters() -> list[dict[str, Any]]:
        return [d for d in namespace.read(catalog.DEAD_LETTERS) if d["original_topic"] == topic]

    def broken() -> list[dict[str, Any]]:
        return [d for d in letters() if d["reason"] == "inconsistent_counts"
                and (d["original_key"] is None or d["original_value"] is None)]
    wait_until(lambda: sum(1 for d in letters() if d["reason"] == "personal_data") >= 8, 120,
               "every NIK report dead-lettered")
    wait_until(lambda: len(broken()) == 2, 60, "broken counts too")
    # the key withheld (the value kept: it holds no NIK); the value and headers withheld
    assert sorted((d["original_key"] is None, d["original_value"] is None,
                   d["original_headers"]) for d in broken()) == [
        (False, True, []), (True, False, [])]
    withheld = [v for v in namespace.read(catalog.RT_VALIDATIONS) if WITHHELD in (
        v["rt_code"], v["report_id"], v["period"])]
    assert sorted((v["rt_code"] == WITHHELD, v["report_id"] == WITHHELD,
                   v["period"] == WITHHELD, v["verdict"]) for v in withheld) == [
        (False, False, True, "REJECTED"), (False, True, False, "REJECTED"),
        (True, False, False, "REJECTED")]

    admin = KafkaAdminClient(bootstrap_servers=namespace.bootstrap)
    try:
        topics = sorted(t for t in admin.list_topics()
                        if t.startswith((namespace.prefix, f"{worker.app_id}-")))
    finally:
        admin.close()

    def digits_of(data: bytes | None) -> str:
        return re.sub(r"[^0-9]", "", fold_digits((data or b"").decode("utf-8", "replace")))

    carrying = {(t, nik) for t in topics for record in read_records(namespace.bootstrap, t)
                for nik in niks
                if any(nik in digits_of(part) for part in (
                    record.key, record.value, *(v for _, v in record.headers)))}
    assert {t for t, _ in carrying} == {topic}
    assert {nik for _, nik in carrying} == set(niks)


def test_counts_beyond_an_rt_jumps_moves_copies_and_report_ids_on_the_broker(
        namespace: Namespace, worker: Worker, month: SimulatedMonth,
        access: BoardAccess) -> None:
    """Issue 23, the holes of part 2 and 3 on the real worker: a report of 10^9 or 2^31-1
    residents is REJECTED; residents x10 need review, and so does the same figure the month
    after (a report under review is no base); a large moved_in does not make a jump VALID; the
    third and later identical reports of an RW are flagged; an RT's 11th report id for a month
    is dead-lettered; and the indicators still equal a recomputation from the VALID verdicts."""
    this_month = datetime.now(UTC).astimezone(WIB).strftime("%Y-%m")
    # RTs that sent nothing for the month, past the first of each kelurahan (the board's test
    # and the NIK test use those)
    silent = [rt for rt in month.mistakes["not_reported"] if rt.startswith(KELURAHAN[1])][2:]
    base = {r.record["rt_code"]: r.record for r in month.reports
            if r.record["period"] == month.base_period}
    calm = {"births": 0, "deaths": 0, "moved_in": 0, "moved_out": 0, "note": None}
    jump, moved, capped = silent[:3]
    first = base[jump]
    ten = {"households": first["households"] * 10, "residents": first["residents"] * 10,
           "working_age": first["working_age"] * 10, "labour_force": first["labour_force"] * 10,
           "unemployed": first["unemployed"] * 10}
    huge = {"households": 400, "residents": 10**9, "working_age": 10**9,
            "labour_force": 10**9, "unemployed": 10**8}
    reports = [
        first | calm | huge | {"period": month.period, "report_id": "HUGE"},
        first | calm | {"period": month.period, "report_id": "MAXINT",
                        "residents": 2**31 - 1, "working_age": 2**31 - 1},
        first | calm | ten | {"period": month.period, "report_id": "X10"},
        first | calm | ten | {"period": this_month, "report_id": "X10-NEXT"},
        base[moved] | calm | {"period": month.period, "report_id": "MOVED",
                              "households": base[moved]["households"] * 10,
                              "residents": base[moved]["residents"] * 10,
                              "moved_in": base[moved]["residents"] * 9}]
    # eight RTs of one RW with one RW's figures, for this month
    rws: dict[str, list[str]] = {}
    for code in sorted(base):
        if code.startswith(KELURAHAN[0]):
            rws.setdefault(code.rsplit(".", 1)[0], []).append(code)
    rw = max(rws, key=lambda r: len(rws[r]))
    copied = rws[rw]
    model = base[copied[0]] | calm | {"period": this_month}
    reports += [model | {"rt_code": code, "report_id": f"COPY-{code}",
                         "reporter_id": base[code]["reporter_id"]} for code in copied]
    # eleven report ids for one RT and this month
    reports += [base[capped] | calm | {"period": this_month, "report_id": f"ID-{n}"}
                for n in range(11)]
    namespace.send([("RtReport", r) for r in reports])

    def verdict_of(report_id: str) -> dict[str, Any] | None:
        return next((v for v in namespace.read(catalog.RT_VALIDATIONS)
                     if v["report_id"] == report_id), None)
    wait_until(lambda: verdict_of("ID-9") is not None and verdict_of(f"COPY-{copied[-1]}")
               is not None, 120, "the reports judged")
    got = {rid: (v["verdict"], tuple(v["reason_codes"])) for rid in (
        "HUGE", "MAXINT", "X10", "X10-NEXT", "MOVED") if (v := verdict_of(rid)) is not None}
    assert got == {"HUGE": ("REJECTED", ("out_of_range",)),
                   "MAXINT": ("REJECTED", ("out_of_range",)),
                   "X10": ("NEEDS_REVIEW", ("continuity",)),
                   "X10-NEXT": ("NEEDS_REVIEW", ("continuity",)),
                   "MOVED": ("NEEDS_REVIEW", ("large_moves",))}
    copies = [verdict_of(f"COPY-{code}") for code in copied]
    # the RTs reach the judge in any order across input partitions: the first two judged
    # are not copies yet, every later one is
    flagged = ["copied_report" in (v or {})["reason_codes"] for v in copies]
    assert (len(copied) >= 3, flagged.count(False), flagged.count(True)) == (
        True, 2, len(copied) - 2)
    wait_until(lambda: any(d["reason"] == "too_many_reports"
                           for d in namespace.read(catalog.DEAD_LETTERS)), 60, "the 11th id")
    (too_many,) = [d for d in namespace.read(catalog.DEAD_LETTERS)
                   if d["reason"] == "too_many_reports"]
    assert too_many["error_message"] == (
        f"the RT already sent 10 report ids for {this_month}, the most kept; send a new "
        "revision of one of them instead")
    assert verdict_of("ID-10") is None

    # part 3: a kelurahan's staff reviews on the board; only then is a jump a base
    password = secrets.token_urlsafe(12)
    accounts.add_operator("sinta", "village_staff", password, access.accounts_file,
                          kelurahan=(KELURAHAN[1],))
    sinta = BoardSession(worker.web_port)
    assert sinta.sign_in("sinta", password)[0] == 200
    x10 = verdict_of("X10")
    assert x10 is not None
    path = f"/api/neighbourhoods/{KELURAHAN[1]}/reviews"
    seen = {"rt_code": jump, "period": month.period, "report_id": "X10", "revision": 1}
    other = f"/api/neighbourhoods/{KELURAHAN[0]}/reviews"
    assert sinta.json("POST", other, seen | {"decision": "accept"}) == (
        403, {"error": f"sinta may not review the RT reports of {KELURAHAN[0]}"})
    vera = BoardSession(worker.web_port)
    assert vera.sign_in("vera", access.passwords["vera"])[0] == 200
    assert vera.json("POST", path, seen | {"decision": "accept"})[0] == 403
    assert sinta.json("POST", path, seen | {"decision": "accept",
                                            "note": "blok baru, dicek 3672 0101 0101 0001"}
                      ) == (400, {"error": "the text holds a 16-digit number shaped like a "
                                           "NIK; personal data must not be written (text not "
                                           "stored)"})
    assert sinta.json("POST", path, seen | {"decision": "accept",
                                            "note": "perumahan baru, dicek"})[0] == 202
    fixed = {name: base[moved][name] for name in (
        "households", "residents", "working_age", "labour_force", "unemployed",
        "social_aid_households")} | {"births": 0, "deaths": 0, "moved_in": 0, "moved_out": 0}
    assert sinta.json("POST", path, {"rt_code": moved, "period": month.period,
                                     "report_id": "MOVED", "revision": 1,
                                     "decision": "correct", "counts": fixed})[0] == 202
    flagged_copy = next(v for v in copies if v and "copied_report" in v["reason_codes"])
    assert sinta.json("POST", f"/api/neighbourhoods/{KELURAHAN[0]}/reviews", {
        "rt_code": flagged_copy["rt_code"], "period": this_month,
        "report_id": flagged_copy["report_id"], "revision": 1, "decision": "reject"})[0] == 403

    def decided(report_id: str) -> list[tuple[Any, ...]]:
        return [(v["verdict"], v["revision"], tuple(v["reason_codes"]), tuple(v["reasons"]))
                for v in namespace.read(catalog.RT_VALIDATIONS)
                if v["report_id"] == report_id and v["reason_codes"][:1] in (
                    ["review_accepted"], ["review_corrected"], ["review_rejected"])]
    wait_until(lambda: decided("X10") and decided("MOVED"), 60, "the reviews applied")
    assert decided("X10") == [("VALID", 1, ("review_accepted",),
                               ("accepted by sinta after review",))]
    assert decided("MOVED") == [("VALID", 2, ("review_corrected",),
                                 ("corrected by sinta after review (revision 2)",))]
    # the month after the accepted jump, a new revision of the same figures: VALID now
    namespace.send([("RtReport", reports[3] | {"revision": 2})])
    wait_until(lambda: any(v["report_id"] == "X10-NEXT" and v["revision"] == 2
                           for v in namespace.read(catalog.RT_VALIDATIONS)), 60, "re-judged")
    (next_month,) = [v for v in namespace.read(catalog.RT_VALIDATIONS)
                     if v["report_id"] == "X10-NEXT" and v["revision"] == 2]
    assert (next_month["verdict"], next_month["reason_codes"]) == ("VALID", [])
    # the audit record: who decided what, on which revision
    assert sorted((r["reviewer_id"], r["reviewer_role"], r["rt_code"], r["report_id"],
                   r["revision"], r["decision"], r["note"])
                  for r in namespace.read(catalog.RT_REVIEWS)) == sorted([
        ("sinta", "VILLAGE_STAFF", jump, "X10", 1, "ACCEPT", "perumahan baru, dicek"),
        ("sinta", "VILLAGE_STAFF", moved, "MOVED", 1, "CORRECT", None)])

    # the indicators: recomputed here from the verdicts (the current report of each RT is
    # its last verdict that is not REJECTED, or nothing after a reviewer rejected it; only
    # VALID ones add people)
    def recomputed() -> dict[str, tuple[int, int, int, int]]:
        current: dict[tuple[str, str], dict[str, Any]] = {}
        for v in namespace.read(catalog.RT_VALIDATIONS):
            if v["kelurahan_code"] not in KELURAHAN:
                continue
            if "review_rejected" in v["reason_codes"]:
                current.pop((v["rt_code"], v["period"]), None)
            elif v["verdict"] != "REJECTED":
                current[(v["rt_code"], v["period"])] = v
        out: dict[str, list[int]] = {}
        for (_, period), v in current.items():
            sums = out.setdefault(f"{v['kelurahan_code']}|{period}", [0, 0, 0, 0])
            sums[0] += 1
            if v["verdict"] == "VALID":
                sums[1] += 1
                sums[2] += v["residents"]
                sums[3] += v["unemployed"]
        return {key: (a, b, c, d) for key, (a, b, c, d) in out.items()}

    def published_now() -> dict[str, tuple[int, int, int, int]]:
        latest = {f"{r['scope_code']}|{r['period']}": r
                  for r in namespace.read(catalog.NEIGHBOURHOOD_INDICATORS)
                  if r["scope_level"] == "KELURAHAN" and r["scope_code"] in KELURAHAN}
        return {key: (r["rt_reported"], r["rt_valid"], r["residents"], r["unemployed"])
                for key, r in latest.items()}
    wait_until(lambda: published_now() == recomputed(), 120,
               "indicators equal the recomputation from the verdicts")


def test_a_reviewer_accepts_a_report_on_the_board_and_the_decision_is_recorded(
        browser: Any, namespace: Namespace, worker: Worker, month: SimulatedMonth,
        access: BoardAccess) -> None:
    """Issue 23, part 4, in headless Chromium: the supervisor opens the kelurahan of the RT
    whose residents jumped, sees its reasons, accepts it with a note; the report leaves the
    list, the verdict names the reviewer and the reviews topic records the decision."""
    base_url = f"http://127.0.0.1:{worker.web_port}"
    errors: list[str] = []
    page = signed_in_page(browser, base_url, "sari", access.passwords["sari"],
                          {"width": 1600, "height": 1000})
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.wait_for_selector("#connection[data-state='live']", timeout=UPDATE_TIMEOUT_MS)
    page.click("#layers button[data-layer='unemployment']")
    # the latest month is this one (the test before reported for it): pick the month
    page.wait_for_selector("#village[data-period]", timeout=UPDATE_TIMEOUT_MS)
    page.select_option("#village-period", month.period)
    page.wait_for_selector(f"#village[data-period='{month.period}']", timeout=UPDATE_TIMEOUT_MS)
    (jumped,) = month.mistakes["residents_jump"]
    code = jumped.rsplit(".", 2)[0]
    page.locator(f"path.ward[data-code='{code}']").click()
    item = f"#village-detail[data-code='{code}'] li[data-rt='{jumped}']"
    page.wait_for_selector(f"{item} button[data-decision='accept']", timeout=UPDATE_TIMEOUT_MS)
    page.fill(f"{item} input.note", "dicek di lapangan")
    page.click(f"{item} button[data-decision='accept']")
    page.wait_for_selector(f"{item} .decision-status[data-failed='false']",
                           timeout=UPDATE_TIMEOUT_MS)
    page.wait_for_selector(item, state="detached", timeout=UPDATE_TIMEOUT_MS)
    page.close()
    assert errors == []
    accepted = [v for v in namespace.read(catalog.RT_VALIDATIONS)
                if v["rt_code"] == jumped and v["reason_codes"] == ["review_accepted"]]
    assert [(v["verdict"], v["reasons"]) for v in accepted] == [
        ("VALID", ["accepted by sari after review"])]
    assert [(r["reviewer_id"], r["reviewer_role"], r["decision"], r["note"])
            for r in namespace.read(catalog.RT_REVIEWS) if r["rt_code"] == jumped] == [
        ("sari", "SUPERVISOR", "ACCEPT", "dicek di lapangan")]


def test_small_rw_cells_are_withheld_on_the_topic_and_the_board(
        browser: Any, namespace: Namespace, worker: Worker, month: SimulatedMonth,
        access: BoardAccess) -> None:
    """Issue 24, part 5, on the real worker and in Chromium: in a kelurahan no other test
    feeds, RW 001 reports 1 unemployed (SMALL_COUNT) and RW 002 5 of 70 (published alone,
    it would give RW 001 away as the kelurahan total minus RW 002: COMPLEMENTARY). Both are
    published with unemployed and rate null and the rule named, the kelurahan sums both (6 of
    140), and the board's RW table says "withheld (small cell)", never 0 %."""
    other = min(rt["kelurahan_code"] for rt in REGISTRY if rt["kelurahan_code"] not in KELURAHAN)
    rts = {rt["rw"]: rt["rt_code"] for rt in sorted(REGISTRY, key=lambda r: r["rt_code"],
                                                    reverse=True)
           if rt["kelurahan_code"] == other}
    template = next(r.record for r in month.reports if r.expected.verdict == "VALID")
    counts = {"households": 40, "residents": 150, "working_age": 110, "labour_force": 70,
              "births": 0, "deaths": 0, "moved_in": 0, "moved_out": 0, "note": None}
    namespace.send([("RtReport", template | counts | {
        "rt_code": rts[rw], "period": month.period, "report_id": f"SMALL-{uuid.uuid4()}",
        "revision": 1, "unemployed": unemployed}) for rw, unemployed in (("001", 1), ("002", 5))])

    def cells() -> dict[str, tuple[Any, ...]]:
        latest = {r["scope_code"]: r for r in namespace.read(catalog.NEIGHBOURHOOD_INDICATORS)
                  if r["period"] == month.period and r["scope_code"].startswith(other)}
        return {code[len(other):]: (r["labour_force"], r["unemployed"], r["unemployment_rate"],
                                    r["withheld"])
                for code, r in latest.items() if r["rt_valid"] or r["scope_level"] != "RW"}
    wait_until(lambda: cells() == {
        ".001": (70, None, None, "SMALL_COUNT"), ".002": (70, None, None, "COMPLEMENTARY"),
        "": (140, 6, 6 / 140, None)}, 120, "small cells withheld, the kelurahan summed")

    status, body = get_json(worker.web_port, f"/api/neighbourhoods/{other}?period={month.period}",
                            access.token)
    assert status == 200
    assert [(rw["rw"], rw["unemployed"], rw["withheld"]) for rw in body["rws"][:3]] == [
        ("001", None, "SMALL_COUNT"), ("002", None, "COMPLEMENTARY"), ("003", 0, None)]

    base_url = f"http://127.0.0.1:{worker.web_port}"
    errors: list[str] = []
    page = signed_in_page(browser, base_url, "vera", access.passwords["vera"],
                          {"width": 1600, "height": 1000})
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.wait_for_selector("#connection[data-state='live']", timeout=UPDATE_TIMEOUT_MS)
    page.click("#layers button[data-layer='unemployment']")
    page.wait_for_selector("#village[data-period]", timeout=UPDATE_TIMEOUT_MS)
    page.select_option("#village-period", month.period)
    page.wait_for_selector(f"#village[data-period='{month.period}']", timeout=UPDATE_TIMEOUT_MS)
    page.locator(f"path.ward[data-code='{other}']").click()
    page.wait_for_selector(f"#village-detail[data-code='{other}'] tr[data-rw='002']",
                           timeout=UPDATE_TIMEOUT_MS)
    rows = page.locator(f"#village-detail[data-code='{other}'] table.rws tr[data-rw]")
    assert [(row.get_attribute("data-withheld"), row.locator("td").all_inner_texts()[:2])
            for row in rows.all()[:3]] == [
        ("SMALL_COUNT", ["001", "withheld (small cell)"]),
        ("COMPLEMENTARY", ["002", "withheld (small cell)"]),
        (None, ["003", pct(None)])]
    page.close()
    assert errors == []
