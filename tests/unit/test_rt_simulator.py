"""The SYNTHETIC RT-report month: deterministic, calibrated to BPS' city figures, mistakes at
known rates, and expected verdicts (derived from the injection) that the real rules give
report by report through the topology test driver, in any arrival order; indicators equal an
independent recomputation from the VALID reports."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cityops.neighbourhoods import generate_registry
from cityops.produce import prepare, read_inputs
from cityops.rt_simulator import (
    MISTAKE_RATES,
    RT_REPORT_SCHEMA,
    SimulatedMonth,
    SimulatedReport,
    previous_month,
    simulate_month,
)
from cityops.simulate import run_simulate_rt_month
from core.reference_data import load_ward_records
from core.vocabulary import CITY_CODE
from processors.personal_data import contains_nik
from schemas.codec import encode
from streams.test_driver import TopologyTestDriver
from tests.unit.test_produce import FakeSender
from topics import catalog
from topics.catalog import TopicCatalog

pytestmark = pytest.mark.unit

WARDS = load_ward_records()
REGISTRY = generate_registry(WARDS)
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # 10:00 WIB, 2 December 2026
PERIOD = "2026-11"
SEED = 7
#: Cibeber (64 RT) and Jombang Wetan (94 RT): two kecamatan.
KELURAHAN = ("36.72.01.1001", "36.72.05.1002")
QUARTER = ("36.72.01", "36.72.02", "36.72.03")
COUNT_FIELDS = ("rt_registered", "rt_reported", "rt_valid", "rt_needs_review", "residents",
                "labour_force", "unemployed")


@pytest.fixture(scope="module")
def city() -> SimulatedMonth:
    return simulate_month(REGISTRY, PERIOD, seed=SEED)


def outcome(driver: TopologyTestDriver, report: SimulatedReport) -> tuple[Any, ...]:
    """What the driver published for one submission: its verdict and reason codes, and its
    dead letter's (stage, reason); (None, (), None) when it published nothing (a duplicate)."""
    validations, letters = len(driver.outputs.validations), len(driver.outputs.dead_letters)
    driver.pipe_rt_report(encode(RT_REPORT_SCHEMA, report.record), now=NOW,
                          key=report.record["rt_code"].encode())
    new = driver.outputs.validations[validations:]
    dead = driver.outputs.dead_letters[letters:]
    assert len(new) <= 1 and len(dead) <= 1
    verdict = (new[0]["verdict"], tuple(new[0]["reason_codes"])) if new else (None, ())
    letter = (dead[0]["stage"], dead[0]["reason"]) if dead else None
    return (*verdict, letter)


def expected(report: SimulatedReport) -> tuple[Any, ...]:
    return (report.expected.verdict, report.expected.reason_codes, report.expected.dead_letter)


def expected_indicators(month: SimulatedMonth, registry: Sequence[Mapping[str, Any]]
                        ) -> dict[str, dict[str, Any]]:
    """Every indicator the pipeline must publish, recomputed here without the processors:
    RWs and kelurahan fed, their kecamatan and the city, for both months, summing the VALID
    reports the simulator says are counted."""
    fed = {rt["kelurahan_code"] for rt in registry if rt["rt_code"] in set(month.rt_codes)}
    current = month.counted()
    scopes: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for rt in registry:
        kelurahan, rw = rt["kelurahan_code"], f"{rt['kelurahan_code']}.{rt['rw']}"
        members = [(CITY_CODE, "CITY"), (rt["kecamatan_code"], "KECAMATAN")]
        if kelurahan in fed:
            members += [(kelurahan, "KELURAHAN"), (rw, "RW")]
        for scope in members:
            scopes.setdefault(scope, []).append(rt)
    kecamatan_fed = {rt["kecamatan_code"] for rt in registry if rt["kelurahan_code"] in fed}
    out = {}
    for period in (month.base_period, month.period):
        for (code, level), rts in scopes.items():
            if level == "KECAMATAN" and code not in kecamatan_fed:
                continue
            counts = dict.fromkeys(COUNT_FIELDS, 0)
            for rt in rts:
                counts["rt_registered"] += 1
                report = current.get((rt["rt_code"], period))
                if report is None:
                    continue
                counts["rt_reported"] += 1
                if report.expected.verdict == "VALID":
                    counts["rt_valid"] += 1
                    for name in ("residents", "labour_force", "unemployed"):
                        counts[name] += report.record[name]
                else:
                    counts["rt_needs_review"] += 1
            out[f"{code}|{period}"] = {
                "scope_level": level, **counts,
                "unemployment_rate": (counts["unemployed"] / counts["labour_force"]
                                      if counts["labour_force"] else None),
                "completeness": counts["rt_reported"] / counts["rt_registered"],
                "review_share": (counts["rt_needs_review"] / counts["rt_reported"]
                                 if counts["rt_reported"] else None),
                "withheld": None,
            }
    _withhold_small_cells(out)
    return out


def _withhold_small_cells(out: dict[str, dict[str, Any]]) -> None:
    """docs/smart-village.md, 'Small cells', with the default thresholds (labour force 1-9,
    or 1-2 unemployed; one withheld RW in a kelurahan takes its smallest published neighbour
    with data along)."""
    by_kelurahan: dict[tuple[str, str], list[str]] = {}
    for key, value in out.items():
        if value["scope_level"] == "RW":
            code, period = key.split("|")
            by_kelurahan.setdefault((code.rsplit(".", 1)[0], period), []).append(key)
    for keys in by_kelurahan.values():
        rule = {}
        for key in keys:
            value = out[key]
            if 0 < value["labour_force"] < 10:
                rule[key] = "SMALL_LABOUR_FORCE"
            elif 1 <= value["unemployed"] <= 2:
                rule[key] = "SMALL_COUNT"
        if len(rule) == 1:
            rest = sorted((out[key]["labour_force"], key) for key in keys
                          if key not in rule and out[key]["labour_force"] > 0)
            if rest:
                rule[rest[0][1]] = "COMPLEMENTARY"
        for key, name in rule.items():
            out[key].update(unemployed=None, unemployment_rate=None, withheld=name)


def published(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last indicator per key, in the shape of `expected_indicators`."""
    latest = {f"{r['scope_code']}|{r['period']}": r for r in records}
    return {key: {"scope_level": r["scope_level"], **{n: r[n] for n in COUNT_FIELDS},
                  **{n: r[n] for n in ("unemployment_rate", "completeness", "review_share",
                                       "withheld")}}
            for key, r in latest.items()}


def test_the_same_seed_gives_the_same_month_and_another_seed_another() -> None:
    first = simulate_month(REGISTRY, PERIOD, seed=SEED, kelurahan=KELURAHAN)
    again = simulate_month(REGISTRY, PERIOD, seed=SEED, kelurahan=KELURAHAN)
    other = simulate_month(REGISTRY, PERIOD, seed=SEED + 1, kelurahan=KELURAHAN)
    assert first == again
    assert [r.record for r in first.reports] != [r.record for r in other.reports]


def test_city_total_lands_on_bps_unemployment_and_participation(city: SimulatedMonth) -> None:
    valid = [r.record for (_, period), r in city.counted().items()
             if period == PERIOD and r.expected.verdict == "VALID"]
    unemployed = sum(r["unemployed"] for r in valid)
    labour_force = sum(r["labour_force"] for r in valid)
    working_age = sum(r["working_age"] for r in valid)
    # BPS Kota Cilegon: 7.41 % open unemployment (August 2025), 62.70 % participation (2023)
    assert (round(100 * unemployed / labour_force, 2),
            round(100 * labour_force / working_age, 2)) == (7.41, 62.71)
    assert (len(city.rt_codes), sum(r["residents"] for r in valid)) == (3407, 449_770)


def test_every_mistake_at_its_known_rate_on_distinct_rts(city: SimulatedMonth) -> None:
    wanted = {kind: max(1, round(rate * 3407)) for kind, rate in MISTAKE_RATES.items()}
    assert {kind: len(codes) for kind, codes in city.mistakes.items()} == {
        **wanted, "nik_in_note": 1}
    assert wanted == {"swapped_fields": 34, "missing_digit": 34, "duplicate": 34,
                      "late_correction": 34, "residents_jump": 17, "not_reported": 136}
    victims = [code for codes in city.mistakes.values() for code in codes]
    assert len(victims) == len(set(victims))
    reported = {r.record["rt_code"] for r in city.reports if r.record["period"] == PERIOD}
    assert reported == set(city.rt_codes) - set(city.mistakes["not_reported"])
    assert city.verdict_counts(city.base_period) == {"VALID": 3407, "NEEDS_REVIEW": 0,
                                                     "REJECTED": 0}
    assert city.verdict_counts() == {"VALID": 3219, "NEEDS_REVIEW": 17, "REJECTED": 69}


def test_the_injected_mistakes_look_like_what_they_are(city: SimulatedMonth) -> None:
    by_rt: dict[str, list[dict[str, Any]]] = {}
    for report in city.reports:
        if report.record["period"] == PERIOD:
            by_rt.setdefault(report.record["rt_code"], []).append(report.record)
    for code in city.mistakes["swapped_fields"]:
        (record,) = by_rt[code]
        assert record["unemployed"] > record["labour_force"]
    for code in city.mistakes["missing_digit"]:
        (record,) = by_rt[code]
        assert record["residents"] < record["working_age"]
    for code in city.mistakes["duplicate"]:
        first, second = by_rt[code]
        assert first == second
    for code in city.mistakes["late_correction"]:
        first, second = by_rt[code]
        assert (first["report_id"], first["revision"], second["revision"]) == (
            second["report_id"], 1, 2)
        assert abs(first["unemployed"] - second["unemployed"]) == 1
    nik_notes = [r.record["note"] for r in city.reports
                 if r.record["note"] is not None and contains_nik(r.record["note"])]
    assert nik_notes == [f"Warga baru pindahan, NIK {city.nik}, belum lapor RW."]
    assert (len(city.nik), city.nik[:4]) == (16, "3672")


def test_the_rules_give_exactly_the_expected_verdict_of_every_report() -> None:
    # a third of the city (1,130 RT of kecamatan Cibeber, Cilegon, Pulomerak): the whole city takes
    # 15 s here and checks nothing more
    city = simulate_month(REGISTRY, PERIOD, seed=SEED, kelurahan=[
        w["kelurahan_code"] for w in WARDS if w["kecamatan_code"] in QUARTER])
    assert {kind: len(codes) for kind, codes in city.mistakes.items()} == {
        "duplicate": 11, "late_correction": 11, "missing_digit": 11, "nik_in_note": 1,
        "not_reported": 45, "residents_jump": 6, "swapped_fields": 11}
    driver = TopologyTestDriver(WARDS, [], neighbourhoods=REGISTRY, batch=10_000)
    got = [outcome(driver, report) for report in city.reports]
    assert got == [expected(report) for report in city.reports]
    # the NIK's note is nowhere: not in a verdict, not in a dead letter
    assert city.nik not in repr(driver.outputs.validations + driver.outputs.dead_letters)
    (letter,) = [d for d in driver.outputs.dead_letters if d["reason"] == "personal_data"]
    assert (letter["original_value"], letter["original_headers"]) == (None, [])


def test_arrival_order_across_rts_changes_no_verdict() -> None:
    """Kafka keeps order per RT (the key), not across RTs: any interleaving gives the same."""
    month = simulate_month(REGISTRY, PERIOD, seed=SEED, kelurahan=KELURAHAN)
    queues: dict[str, list[SimulatedReport]] = {}
    for report in month.reports:
        queues.setdefault(report.record["rt_code"], []).append(report)
    rng = random.Random(1)
    interleaved: list[SimulatedReport] = []
    while queues:
        code = rng.choice(sorted(queues))
        interleaved.append(queues[code].pop(0))
        if not queues[code]:
            del queues[code]
    driver = TopologyTestDriver(WARDS, [], neighbourhoods=REGISTRY)
    assert [outcome(driver, r) for r in interleaved] == [expected(r) for r in interleaved]


def test_indicators_equal_an_independent_recomputation_from_the_valid_reports() -> None:
    month = simulate_month(REGISTRY, PERIOD, seed=SEED, kelurahan=KELURAHAN)
    driver = TopologyTestDriver(WARDS, [], neighbourhoods=REGISTRY)
    for report in month.reports:
        driver.pipe_rt_report(encode(RT_REPORT_SCHEMA, report.record), now=NOW)
    driver.neighbourhood_rollups(NOW)
    want = expected_indicators(month, REGISTRY)
    assert published(driver.outputs.indicators) == want
    city = want[f"{CITY_CODE}|{PERIOD}"]
    assert (city["rt_registered"], city["rt_reported"], city["rt_valid"],
            city["rt_needs_review"]) == (3407, 147, 146, 1)


def test_no_report_is_submitted_after_the_clock_and_a_correction_comes_after_its_first(
) -> None:
    month = simulate_month(REGISTRY, PERIOD, seed=SEED, kelurahan=KELURAHAN[:1],
                           submitted_by=NOW)
    unsqueezed = simulate_month(REGISTRY, PERIOD, seed=SEED, kelurahan=KELURAHAN[:1])
    times = [r.record["submitted_at"] for r in month.reports]
    assert (min(times), max(times) < NOW) == (datetime(2026, 11, 1, 5, 8, tzinfo=UTC), True)
    assert [r.record["submitted_at"] for r in unsqueezed.reports if r.record["period"] ==
            "2026-10"] == [r.record["submitted_at"] for r in month.reports
                           if r.record["period"] == "2026-10"]
    (code,) = month.mistakes["late_correction"]
    first, second = [r.record for r in month.reports
                     if r.record["rt_code"] == code and r.record["period"] == PERIOD]
    assert datetime(2026, 12, 1, 1, tzinfo=UTC) <= first["submitted_at"] < second[
        "submitted_at"] < NOW
    assert [{**r.record, "submitted_at": None} for r in month.reports] == [
        {**r.record, "submitted_at": None} for r in unsqueezed.reports]


def test_reports_are_for_last_month_and_valid_partner_json() -> None:
    assert previous_month(NOW) == PERIOD
    assert previous_month(datetime(2026, 11, 30, 17, 30, tzinfo=UTC)) == PERIOD  # 1 Dec WIB
    month = simulate_month(REGISTRY, PERIOD, seed=SEED, kelurahan=KELURAHAN[:1])
    lines = "\n".join(json.dumps(line) for line in month.json_lines())
    prepared = prepare(read_inputs(["-"], [], io.StringIO(lines)), "rt_report")
    assert (len(prepared.records), prepared.errors) == (len(month.reports), [])


def test_cityops_simulate_rt_month_sends_the_month_and_prints_the_expected_verdicts() -> None:
    sender = FakeSender()
    out, err = io.StringIO(), io.StringIO()
    code = run_simulate_rt_month("unused:9092", SEED, None, KELURAHAN[:1],
                                 sender_factory=lambda bootstrap: sender, out=out, err=err,
                                 wall_clock=lambda: NOW)
    month = simulate_month(REGISTRY, PERIOD, seed=SEED, kelurahan=KELURAHAN[:1],
                           submitted_by=NOW)
    assert (code, err.getvalue(), sender.closed) == (0, "", True)
    assert sender.sent == [("org.cityops.RtReport", r.record) for r in month.reports]
    assert set(sender.offsets) == {TopicCatalog.from_env().name(catalog.RT_REPORTS)}
    counts = month.verdict_counts()
    assert out.getvalue().splitlines()[-1] == (
        f"  expected verdicts {PERIOD}: VALID {counts['VALID']}, NEEDS_REVIEW "
        f"{counts['NEEDS_REVIEW']}, REJECTED {counts['REJECTED']}")


def test_cityops_simulate_rt_month_writes_json_for_produce_and_refuses_a_bad_month(
        tmp_path: Path) -> None:
    target = tmp_path / "month.jsonl"
    code = run_simulate_rt_month("unused:9092", SEED, PERIOD, KELURAHAN[:1],
                                 json_out=str(target), out=io.StringIO(), err=io.StringIO(),
                                 wall_clock=lambda: NOW)
    month = simulate_month(REGISTRY, PERIOD, seed=SEED, kelurahan=KELURAHAN[:1],
                           submitted_by=NOW)
    assert (code, target.read_text().splitlines()) == (
        0, [json.dumps(line) for line in month.json_lines()])
    err = io.StringIO()
    assert run_simulate_rt_month("unused:9092", SEED, "2026-13", (), out=io.StringIO(),
                                 err=err) == 2
    assert err.getvalue() == "--rt-month must be YYYY-MM, got '2026-13'\n"


def test_the_driver_withholds_small_rw_cells_and_the_totals_keep_them() -> None:
    """Issue 24, part 5, through the worker's code: RW 001 with 1 unemployed (SMALL_COUNT) and
    RW 002 (COMPLEMENTARY) of Cibeber are withheld; Cibeber, its kecamatan and the city sum
    both (docs/smart-village.md, 'Small cells')."""
    driver = TopologyTestDriver(WARDS, [], neighbourhoods=REGISTRY, batch=10)
    counts = {"households": 40, "residents": 150, "working_age": 110, "labour_force": 70,
              "births": 0, "deaths": 0, "moved_in": 0, "moved_out": 0,
              "social_aid_households": 6, "reporter_id": "KRT-0001", "submitted_at": NOW,
              "note": None, "period": PERIOD, "revision": 1}
    for rt, unemployed in (("36.72.01.1001.001.001", 1), ("36.72.01.1001.002.001", 5)):
        record = counts | {"rt_code": rt, "report_id": rt, "unemployed": unemployed}
        driver.pipe_rt_report(encode(RT_REPORT_SCHEMA, record), now=NOW, key=rt.encode())
    driver.neighbourhood_rollups(NOW)
    got = {key: (r["labour_force"], r["unemployed"], r["unemployment_rate"], r["withheld"])
           for key, r in driver.latest_indicators().items() if r["rt_valid"]}
    assert got == {
        "36.72.01.1001.001|2026-11": (70, None, None, "SMALL_COUNT"),
        "36.72.01.1001.002|2026-11": (70, None, None, "COMPLEMENTARY"),
        "36.72.01.1001|2026-11": (140, 6, 6 / 140, None),
        "36.72.01|2026-11": (140, 6, 6 / 140, None),
        f"{CITY_CODE}|2026-11": (140, 6, 6 / 140, None),
    }
