"""RT reports: every rule with its exact verdict and reason, revisions and duplicates counted
once, indicators equal to an independent recomputation, and the registry."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cityops.neighbourhoods import (
    RegistryError,
    generate_registry,
    read_registry_csv,
    write_registry_csv,
)
from core.reference_data import load_ward_records
from core.rejections import Rejection
from processors.dead_letters import SourceRecord, dead_letter
from processors.neighbourhood import (
    Judgement,
    KelurahanReports,
    indicator,
    kelurahan_indicators,
    rollup,
    screen_report,
    tally,
)
from processors.thresholds import NeighbourhoodRules, Thresholds, ThresholdsError

pytestmark = pytest.mark.unit

RULES = NeighbourhoodRules()
NOW = datetime(2025, 9, 10, 3, 0, tzinfo=UTC)  # 10:00 WIB, 10 September 2025
KEL = "36.72.01.1001"
RW1 = [f"{KEL}.001.{rt:03d}" for rt in range(1, 7)]
RW2 = [f"{KEL}.002.{rt:03d}" for rt in range(1, 4)]
REGISTRY = {code: {"rt_code": code, "kelurahan_code": KEL, "kecamatan_code": "36.72.01",
                   "rw": code.split(".")[-2], "rt": code.split(".")[-1], "synthetic": True}
            for code in RW1 + RW2}


def report(rt: str = RW1[0], period: str = "2025-08", report_id: str = "R1", revision: int = 1,
           **counts: Any) -> dict[str, Any]:
    base = {"households": 40, "residents": 150, "working_age": 110, "labour_force": 70,
            "unemployed": 5, "births": 0, "deaths": 0, "moved_in": 0, "moved_out": 0,
            "social_aid_households": 6}
    return {"report_id": report_id, "revision": revision, "period": period, "rt_code": rt,
            "reporter_id": "KRT-0001", "submitted_at": NOW, "note": None, **base, **counts}


def rejected(record: dict[str, Any]) -> tuple[str, str, str]:
    with pytest.raises(Rejection) as caught:
        screen_report(record, REGISTRY, RULES, NOW)
    return caught.value.stage, caught.value.reason, caught.value.message


# -- REJECTED (dead letter) -------------------------------------------------------------------


def test_a_clean_report_passes_the_screen_and_gets_its_rt() -> None:
    assert screen_report(report(), REGISTRY, RULES, NOW) == REGISTRY[RW1[0]]


@pytest.mark.parametrize("note", ["KTP 3672010101010001 hilang", "nik: 3672 0101 0101 0001",
                                  "3672-0101-0101-0001"])
def test_a_nik_in_the_note_is_rejected_and_the_message_does_not_quote_it(note: str) -> None:
    assert rejected(report(note=note)) == (
        "VALIDATE", "personal_data",
        "note holds a 16-digit number shaped like a NIK (in any digits, with any separators); "
        "personal data must not enter the pipeline (value not copied)")


def test_numbers_that_are_not_16_digits_are_not_a_nik() -> None:
    for note in ("RT 003 RW 007, 150 warga", "telp 081234567890", f"lihat {RW1[0]}",
                 "id 0f3c1b2a-1234-4567-8901-234567890123"):
        assert screen_report(report(note=note), REGISTRY, RULES, NOW) == REGISTRY[RW1[0]]


def test_a_longer_number_holds_a_nik_and_is_rejected() -> None:
    assert rejected(report(note="12345678901234567"))[1] == "personal_data"


@pytest.mark.parametrize("name", ["reporter_id", "report_id", "rt_code", "period"])
def test_a_nik_in_any_identifier_is_rejected_naming_the_field(name: str) -> None:
    assert rejected(report() | {name: "RPT-3672010101010001"}) == (
        "VALIDATE", "personal_data",
        f"{name} holds a 16-digit number shaped like a NIK (in any digits, with any "
        "separators); personal data must not enter the pipeline (value not copied)")


def test_every_field_holding_a_nik_is_named() -> None:
    assert rejected(report(note="3672010101010001") | {"reporter_id": "3672010101010001"}
                    )[2].startswith("reporter_id, note hold a 16-digit number")


def test_the_dead_letter_of_personal_data_withholds_value_and_headers() -> None:
    source = SourceRecord("city.neighbourhood.reports.v1", 2, 41, 1_000, RW1[0].encode(),
                          b"...3672010101010001...", (("trace", b"3672010101010001"),))
    letter = dead_letter(source, stage="VALIDATE", reason="personal_data", message="m",
                         error_class="Rejection", worker_id="w", now=NOW)
    assert (letter["original_value"], letter["original_headers"], letter["original_key"],
            letter["original_offset"], letter["error_message"]) == (
        None, [], RW1[0].encode(), 41,
        "m [original value and headers withheld: they carry personal data]")
    assert "3672010101010001" not in repr(letter)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"period": "2025-10"}, ("VALIDATE", "future_period",
                             "period 2025-10 is after the current month 2025-09")),
    ({"period": "2025-05"}, ("VALIDATE", "too_old",
                             "period 2025-05 is more than 3 months before 2025-09")),
    ({"period": "2025-8"}, ("VALIDATE", "out_of_range", "period '2025-8' is not YYYY-MM")),
    ({"rt_code": "36.72.01.1001.009.001"}, (
        "ENRICH", "unknown_rt", "RT '36.72.01.1001.009.001' is not in the registry")),
    ({"rt_code": "RT 3"}, (
        "ENRICH", "unknown_rt",
        "RT 'RT 3' is not in the registry (expected kk.kk.kk.kkkk.RW.RT)")),
    ({"report_id": " "}, ("VALIDATE", "blank_id", "report_id is blank")),
    ({"revision": 0}, ("VALIDATE", "out_of_range",
                       "revision is 0; the first submission is 1")),
    ({"births": -1, "deaths": -2}, ("VALIDATE", "out_of_range",
                                    "negative count: births, deaths")),
    ({"unemployed": 80}, ("VALIDATE", "inconsistent_counts",
                          "unemployed (80) is more than labour_force (70)")),
    ({"labour_force": 150, "working_age": 110, "residents": 105}, (
        "VALIDATE", "inconsistent_counts",
        "labour_force (150) is more than working_age (110); working_age (110) is more than "
        "residents (105)")),
    ({"households": 160}, ("VALIDATE", "inconsistent_counts",
                           "households (160) is more than residents (150)")),
    ({"social_aid_households": 41}, ("VALIDATE", "inconsistent_counts",
                                     "social_aid_households (41) is more than households (40)")),
])
def test_unusable_reports_are_rejected_with_the_rule(changes: dict[str, Any],
                                                     expected: tuple[str, str, str]) -> None:
    assert rejected(report(**changes)) == expected


def test_the_month_is_cilegon_s_month() -> None:
    # 30 September 18:00 UTC is 1 October 01:00 WIB: October is the current month in Cilegon.
    late = datetime(2025, 9, 30, 18, 0, tzinfo=UTC)
    assert screen_report(report(period="2025-10"), REGISTRY, RULES, late) == REGISTRY[RW1[0]]


# -- VALID / NEEDS_REVIEW ---------------------------------------------------------------------


def test_first_report_is_valid() -> None:
    reports = KelurahanReports()
    assert reports.judge(report(), RULES) == Judgement("judged", "VALID")


def test_duplicate_is_counted_once_and_older_revision_is_ignored() -> None:
    reports = KelurahanReports()
    reports.judge(report(revision=2, residents=151), RULES)
    assert reports.judge(report(revision=2, residents=151), RULES) == Judgement("duplicate")
    assert reports.judge(report(revision=1), RULES) == Judgement("superseded")
    assert reports.current(RW1[0], "2025-08")["residents"] == 151  # type: ignore[index]
    assert tally([RW1[0]], reports, "2025-08").residents == 151


def test_a_revision_replaces_and_is_never_added() -> None:
    reports = KelurahanReports()
    reports.judge(report(residents=150, unemployed=5), RULES)
    assert reports.judge(report(revision=2, residents=152, unemployed=7), RULES) == Judgement(
        "judged", "VALID")
    counts = tally([RW1[0]], reports, "2025-08")
    assert (counts.rt_reported, counts.residents, counts.unemployed) == (1, 152, 7)


def test_a_second_report_id_for_the_same_month_replaces_and_needs_review() -> None:
    reports = KelurahanReports()
    reports.judge(report(report_id="R1"), RULES)
    assert reports.judge(report(report_id="R2", residents=149), RULES) == Judgement(
        "judged", "NEEDS_REVIEW", ("second_report",),
        ("a second report for this RT and 2025-08 (report R1 came first); it replaces the "
         "first",))
    assert tally([RW1[0]], reports, "2025-08").rt_reported == 1


def test_continuity_within_tolerance_is_valid_beyond_needs_review() -> None:
    reports = KelurahanReports()
    reports.judge(report(period="2025-07", report_id="J", residents=150), RULES)
    # 150 + 2 - 1 + 4 - 0 = 155; allowed max(5, ceil(0.02 * 155) = 4) = 5: 160 passes
    assert reports.judge(report(report_id="A", residents=160, births=2, deaths=1, moved_in=4),
                         RULES) == Judgement("judged", "VALID")
    reports.judge(report(period="2025-06", report_id="U", rt=RW1[1], residents=150), RULES)
    reports.judge(report(period="2025-07", report_id="V", rt=RW1[1], residents=150), RULES)
    assert reports.judge(report(report_id="W", rt=RW1[1], residents=161, births=2, deaths=1,
                                moved_in=4), RULES) == Judgement(
        "judged", "NEEDS_REVIEW", ("continuity",),
        ("residents 161 do not follow from last month: 150 + 2 births - 1 deaths + 4 moved in "
         "- 0 moved out = 155 (allowed difference 5)",))


def test_continuity_relative_tolerance_for_a_large_rt() -> None:
    reports = KelurahanReports()
    reports.judge(report(period="2025-07", report_id="J", households=200, residents=600,
                         working_age=400), RULES)
    # expected 600, allowed ceil(0.02 * 600) = 12
    assert reports.judge(report(households=200, residents=612, working_age=400),
                         RULES).verdict == "VALID"
    assert reports.judge(report(revision=2, households=200, residents=613, working_age=400),
                         RULES).codes == ("continuity",)


def _peers(reports: KelurahanReports, unemployed: list[int]) -> None:
    for index, count in enumerate(unemployed, start=1):
        assert reports.judge(report(rt=RW1[index], report_id=f"P{index}", unemployed=count),
                             RULES).verdict == "VALID"


def test_outlier_unemployment_rate_against_the_rw() -> None:
    reports = KelurahanReports()
    _peers(reports, [5, 6, 7, 5])  # rates 7.1 %, 8.6 %, 10.0 %, 7.1 %: median 7.9 %
    # MAD = median(0.7, 0.7, 2.1, 0.7 points) = 0.71 points -> scale 1.06 points, floor 2 points
    assert reports.judge(report(unemployed=30), RULES) == Judgement(
        "judged", "NEEDS_REVIEW", ("outlier_unemployment_rate",),
        ("unemployment rate 42.9% is far from the other RTs of the RW (median 7.9% over 4 "
         "RTs, robust z +17.5, limit 3.5)",))
    assert reports.judge(report(revision=2, unemployed=10), RULES).verdict == "VALID"


def test_outlier_household_size_against_the_kelurahan_when_the_rw_is_small() -> None:
    reports = KelurahanReports()
    for index, code in enumerate(RW1[:4]):  # working ages apart: not copies of each other
        reports.judge(report(rt=code, report_id=f"K{index}", working_age=110 + index), RULES)
    # RW2 has no other RT yet: the 4 RTs of RW1 are the peers (150 / 40 = 3.75 each, MAD 0)
    assert reports.judge(report(rt=RW2[0], report_id="X", households=20), RULES) == Judgement(
        "judged", "NEEDS_REVIEW", ("outlier_household_size",),
        ("residents per household 7.50 is far from the other RTs of the kelurahan (median "
         "3.75 over 4 RTs, robust z +15.0, limit 3.5)",))


def test_no_outlier_test_with_too_few_peers() -> None:
    reports = KelurahanReports()
    _peers(reports, [5, 6, 7])
    assert reports.judge(report(unemployed=60), RULES) == Judgement("judged", "VALID")


def test_needs_review_reports_are_not_peers_and_not_counted() -> None:
    reports = KelurahanReports()
    _peers(reports, [5, 6, 7, 5])
    reports.judge(report(unemployed=30), RULES)
    counts = tally(RW1, reports, "2025-08")
    assert counts == tally(RW1[1:5], reports, "2025-08") + tally([RW1[0], RW1[5]], reports,
                                                                 "2025-08")
    assert (counts.rt_registered, counts.rt_reported, counts.rt_valid, counts.rt_needs_review,
            counts.unemployed) == (6, 5, 4, 1, 23)


def test_prune_keeps_the_window_and_one_month_more() -> None:
    reports = KelurahanReports()
    for period in ("2025-04", "2025-05", "2025-08"):
        reports.judge(report(period=period, report_id=period), RULES)
    reports.prune(2025 * 12 + 8, RULES)  # September 2025: window June..September, plus May
    assert (sorted(reports.rts[RW1[0]]), sorted(reports.seen[RW1[0]])) == (
        ["2025-05", "2025-08"], ["2025-05", "2025-08"])
    assert KelurahanReports.from_json(reports.to_json()) == reports


# -- indicators -------------------------------------------------------------------------------


def test_indicators_equal_an_independent_recomputation() -> None:
    reports = KelurahanReports()
    _peers(reports, [5, 6, 7, 5])
    reports.judge(report(unemployed=30), RULES)  # NEEDS_REVIEW
    reports.judge(report(rt=RW2[0], report_id="Z", residents=120, labour_force=60,
                         unemployed=9), RULES)
    reports.judge(report(rt=RW2[0], report_id="Z", revision=2, residents=121, labour_force=61,
                         unemployed=9), RULES)
    reports.judge(report(rt=RW2[0], report_id="Z", revision=2, residents=121, labour_force=61,
                         unemployed=9), RULES)  # duplicate
    out = kelurahan_indicators(KEL, list(REGISTRY.values()), reports, "2025-08", NOW)
    # by hand: RW1 VALID = RT 2..5 (150 residents, 70 labour force each; 5+6+7+5 unemployed)
    rw1 = {"residents": 600, "labour_force": 280, "unemployed": 23, "rt_registered": 6,
           "rt_reported": 5, "rt_valid": 4, "rt_needs_review": 1}
    rw2 = {"residents": 121, "labour_force": 61, "unemployed": 9, "rt_registered": 3,
           "rt_reported": 1, "rt_valid": 1, "rt_needs_review": 0}
    whole = {key: rw1[key] + rw2[key] for key in rw1}
    expected = [(f"{KEL}.001", "RW", rw1, 23 / 280, 5 / 6, 1 / 5),
                (f"{KEL}.002", "RW", rw2, 9 / 61, 1 / 3, 0.0),
                (KEL, "KELURAHAN", whole, 32 / 341, 6 / 9, 1 / 6)]
    assert out == [
        {"scope_code": scope, "scope_level": level, "period": "2025-08", **counts,
         "unemployment_rate": rate, "completeness": complete, "review_share": review,
         "computed_at": NOW, "synthetic": True, "withheld": None}
        for scope, level, counts, rate, complete, review in expected]
    city = rollup("36.72", "CITY", "2025-08", [out[2], out[2] | {"synthetic": False}], NOW)
    assert (city["residents"], city["unemployment_rate"], city["completeness"]) == (
        1442, 64 / 682, 12 / 18)


def test_an_empty_scope_has_no_rate() -> None:
    from processors.neighbourhood import Tally

    assert indicator("x", "RW", "2025-08", Tally(rt_registered=3), NOW, True) | {} == {
        "scope_code": "x", "scope_level": "RW", "period": "2025-08", "rt_registered": 3,
        "rt_reported": 0, "rt_valid": 0, "rt_needs_review": 0, "residents": 0,
        "labour_force": 0, "unemployed": 0, "unemployment_rate": None, "completeness": 0.0,
        "review_share": None, "computed_at": NOW, "synthetic": True, "withheld": None}


# -- small cells (issue 24, part 5) -------------------------------------------------------------

RW3 = [f"{KEL}.003.{rt:03d}" for rt in range(1, 3)]
SMALL_REGISTRY = [*REGISTRY.values(),
                  *({"rt_code": code, "kelurahan_code": KEL, "kecamatan_code": "36.72.01",
                     "rw": "003", "rt": code.split(".")[-1], "synthetic": True} for code in RW3)]


def _small(labour_forces: dict[str, tuple[int, int]]) -> list[tuple[Any, ...]]:
    """Each RW's first RT reports (labour force, unemployed); the indicators' observable part."""
    reports = KelurahanReports()
    for rt, (labour_force, unemployed) in labour_forces.items():
        judged = reports.judge(report(rt=rt, report_id=rt, residents=labour_force + 20,
                                      working_age=labour_force + 5, labour_force=labour_force,
                                      unemployed=unemployed), RULES)
        assert judged.verdict == "VALID"
    return [(r["scope_code"][-3:], r["labour_force"], r["unemployed"], r["unemployment_rate"],
             r["withheld"])
            for r in kelurahan_indicators(KEL, SMALL_REGISTRY, reports, "2025-08", NOW, RULES)]


def test_a_small_labour_force_is_withheld_and_its_smallest_neighbour_too() -> None:
    # RW 003 has 9 workers (below min_labour_force 10): its count and rate are withheld; alone
    # it could be derived as kelurahan minus RW 001 and 002, so the published RW with the
    # smallest labour force (002, 60) is withheld as its complement. The kelurahan sums all.
    assert _small({RW1[0]: (70, 5), RW2[0]: (60, 4), RW3[0]: (9, 3)}) == [
        ("001", 70, 5, 5 / 70, None),
        ("002", 60, None, None, "COMPLEMENTARY"),
        ("003", 9, None, None, "SMALL_LABOUR_FORCE"),
        ("001", 139, 12, 12 / 139, None),  # the kelurahan 36.72.01.1001
    ]


def test_one_or_two_unemployed_are_withheld_and_zero_is_published() -> None:
    # RW 001 has 2 unemployed (max_small_count 2) and RW 002 has 1: two primary cells, no
    # complement needed (only their sum, 3, can be derived); RW 003 with none is published.
    assert _small({RW1[0]: (70, 2), RW2[0]: (60, 1), RW3[0]: (40, 0)}) == [
        ("001", 70, None, None, "SMALL_COUNT"),
        ("002", 60, None, None, "SMALL_COUNT"),
        ("003", 40, 0, 0.0, None),
        ("001", 170, 3, 3 / 170, None),
    ]


def test_rw_without_data_is_no_complement_and_thresholds_are_configurable() -> None:
    # only RW 001 has VALID data: nothing else can be withheld (docs: the limitation), and an
    # RW without a VALID report has nothing to withhold.
    reports = KelurahanReports()
    reports.judge(report(unemployed=1), RULES)
    out = kelurahan_indicators(KEL, SMALL_REGISTRY, reports, "2025-08", NOW, RULES)
    assert [(r["scope_code"][-3:], r["unemployed"], r["withheld"]) for r in out] == [
        ("001", None, "SMALL_COUNT"), ("002", 0, None), ("003", 0, None), ("001", 1, None)]
    loose = NeighbourhoodRules(min_labour_force=1, max_small_count=0)
    out = kelurahan_indicators(KEL, SMALL_REGISTRY, reports, "2025-08", NOW, loose)
    assert [r["withheld"] for r in out] == [None, None, None, None]
    assert Thresholds.from_mapping(
        {"neighbourhood": {"min_labour_force": 20, "max_small_count": 4}}
    ).neighbourhood == NeighbourhoodRules(min_labour_force=20, max_small_count=4)


# -- thresholds and registry ------------------------------------------------------------------


def test_thresholds_section_parses_and_refuses_unknown_keys() -> None:
    parsed = Thresholds.from_mapping({"neighbourhood": {"outlier_z": 3, "outlier_min_peers": 6}})
    assert parsed.neighbourhood == NeighbourhoodRules(outlier_z=3.0, outlier_min_peers=6)
    with pytest.raises(ThresholdsError, match=r"neighbourhood.z: unknown key"):
        Thresholds.from_mapping({"neighbourhood": {"z": 3}})
    with pytest.raises(ThresholdsError, match=r"neighbourhood.outlier_z: expected a number > 0"):
        Thresholds.from_mapping({"neighbourhood": {"outlier_z": 0}})


def test_synthetic_registry_covers_every_kelurahan_and_is_flagged() -> None:
    wards = load_ward_records()
    registry = generate_registry(wards)
    assert len(registry) == 3407
    assert len({r["rt_code"].rsplit(".", 1)[0] for r in registry}) == 628
    assert {r["kelurahan_code"] for r in registry} == {w["kelurahan_code"] for w in wards}
    assert all(r["synthetic"] is True for r in registry)
    assert registry[0] == {"rt_code": "36.72.01.1001.001.001", "kelurahan_code": KEL,
                           "kecamatan_code": "36.72.01", "rw": "001", "rt": "001",
                           "synthetic": True}


def test_a_real_registry_loads_from_csv_with_the_same_columns(tmp_path: Path) -> None:
    wards = load_ward_records()
    registry = generate_registry(wards)[:5]
    path = tmp_path / "registry.csv"
    write_registry_csv(registry, path)
    assert read_registry_csv(path, wards) == registry
    real = tmp_path / "real.csv"
    real.write_text("rt_code,kelurahan_code,kecamatan_code,rw,rt\n"
                    f"{KEL}.004.002,{KEL},36.72.01,4,2\n", encoding="utf-8")
    assert read_registry_csv(real, wards) == [
        {"rt_code": f"{KEL}.004.002", "kelurahan_code": KEL, "kecamatan_code": "36.72.01",
         "rw": "004", "rt": "002", "synthetic": False}]
    with real.open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow([f"{KEL}.004.003", KEL, "36.72.02", "4", "3"])
    with pytest.raises(RegistryError, match=r"real.csv:3: kelurahan 36.72.01.1001 / kecamatan "
                       r"36.72.02 is not a ward of the city"):
        read_registry_csv(real, wards)


def test_bytes_in_verdict_out_and_the_rejected_verdict_never_carries_the_note() -> None:
    from processors.neighbourhood import read_report, rejected_validation, validation
    from schemas.codec import decode, encode

    sent = report(note="KTP 3672010101010001")
    value = encode("org.cityops.RtReport", sent)
    decoded = read_report(value, "t", "org.cityops.RtReport")
    with pytest.raises(Rejection) as caught:
        screen_report(decoded, REGISTRY, RULES, NOW)
    verdict = rejected_validation(decoded, REGISTRY[RW1[0]], caught.value, NOW)
    assert verdict == {
        "rt_code": RW1[0], "kelurahan_code": KEL, "rw": "001", "period": "2025-08",
        "report_id": "R1", "revision": 1, "verdict": "REJECTED",
        "reason_codes": ["personal_data"],
        "reasons": ["note holds a 16-digit number shaped like a NIK (in any digits, with any "
                    "separators); personal data must not enter the pipeline (value not copied)"],
        "residents": None, "labour_force": None, "unemployed": None, "validated_at": NOW,
        "synthetic": True}
    payload = encode("org.cityops.RtValidation", verdict)
    assert b"3672010101010001" not in payload
    assert decode(payload).record == verdict
    valid = validation(report(), REGISTRY[RW1[0]], "VALID", [], [], NOW)
    assert (valid["verdict"], valid["residents"], valid["unemployed"]) == ("VALID", 150, 5)


def test_screened_reports_are_read_without_the_partner_checks() -> None:
    from processors.neighbourhood import read_report
    from schemas.codec import CodecError, encode

    value = encode("org.cityops.RtReport", report())
    assert value[10:14] == b"\x04R1\x02"  # report_id "R1", then revision 1 (zig-zag 02)
    padded = value[:13] + b"\x82\x00" + value[14:]  # the same revision, over-long
    with pytest.raises(CodecError) as caught:
        read_report(padded, "t", "org.cityops.RtReport")
    assert caught.value.reason == "non_canonical"
    # The second hop reads what the first already checked (workers write the screened topic).
    assert read_report(padded, "t", "org.cityops.RtReport", trusted=True) == report()
    with pytest.raises(CodecError) as trailing:
        read_report(value + b"\x00", "t", "org.cityops.RtReport", trusted=True)
    assert trailing.value.reason == "trailing_bytes"


# -- bounds, copies, moves and the reviewed base (issue 23) ----------------------------------


@pytest.mark.parametrize(("changes", "message"), [
    ({"households": 400, "residents": 10**9, "working_age": 110},
     "more than one RT can hold: residents 1000000000 is above 2000 (the city-wide maximum "
     "per RT)"),
    ({"households": 2**31 - 1, "residents": 2**31 - 1},
     "more than one RT can hold: residents 2147483647 is above 2000; households 2147483647 is "
     "above 500 (the city-wide maximum per RT)"),
    ({"moved_in": 5000}, "more than one RT can hold: moved_in 5000 is above 2000 (the "
     "city-wide maximum per RT)"),
])
def test_counts_above_what_an_rt_holds_are_rejected(changes: dict[str, int],
                                                    message: str) -> None:
    assert rejected(report() | changes) == ("VALIDATE", "out_of_range", message)


def test_a_jump_stays_under_review_until_reviewed_and_is_not_a_base() -> None:
    reports = KelurahanReports()
    reports.judge(report(period="2025-06", report_id="A"), RULES)
    jumped = reports.judge(report(period="2025-07", report_id="B", households=400,
                                  residents=1500, working_age=1100), RULES)
    assert jumped.codes == ("continuity",)
    # the month after, the same 1,500: still compared with June's 150, not with July's jump
    assert reports.judge(report(period="2025-08", report_id="C", households=400,
                                residents=1500, working_age=1100), RULES) == Judgement(
        "judged", "NEEDS_REVIEW", ("continuity",),
        ("residents 1500 do not follow from the last VALID or reviewed report (2025-06): 150 "
         "+ 0 births - 0 deaths + 0 moved in - 0 moved out = 150 (allowed difference 5)",))


def test_a_large_move_needs_review_and_does_not_launder_a_jump() -> None:
    reports = KelurahanReports()
    reports.judge(report(period="2025-07", report_id="A"), RULES)
    # 150 + 1,350 moved in = 1,500: continuous, but 1,350 is more than max(10, 15) allow
    assert reports.judge(report(report_id="B", households=400, residents=1500,
                                working_age=1100, moved_in=1350), RULES) == Judgement(
        "judged", "NEEDS_REVIEW", ("large_moves",),
        ("moved in 1350 in one month: more than the 15 an RT of 150 residents allows without "
         "review",))


def test_more_residents_per_household_than_a_household_holds_needs_review() -> None:
    assert KelurahanReports().judge(report(households=10, social_aid_households=2), RULES
                                    ) == Judgement(
        "judged", "NEEDS_REVIEW", ("household_size_bound",),
        ("15.0 residents per household, more than 10",))


def test_identical_reports_of_an_rw_are_flagged_from_the_third() -> None:
    reports = KelurahanReports()
    verdicts = [reports.judge(report(rt=code, report_id=code), RULES) for code in RW1]
    assert [v.codes for v in verdicts] == [(), ()] + [("copied_report",)] * 4
    assert verdicts[2].reasons == (
        "every count equals the reports of 2 other RTs of the RW for 2025-08 (001, 002): "
        "copied?",)
    # another RW's identical report is not a copy of these
    assert reports.judge(report(rt=RW2[0], report_id="Z"), RULES).verdict == "VALID"


def test_report_ids_per_rt_and_month_are_capped() -> None:
    reports = KelurahanReports()
    for n in range(RULES.max_report_ids_per_rt_month):
        reports.judge(report(report_id=f"R{n}"), RULES)
    with pytest.raises(Rejection) as caught:
        reports.judge(report(report_id="one-more"), RULES)
    assert (caught.value.reason, caught.value.message) == (
        "too_many_reports", "the RT already sent 10 report ids for 2025-08, the most kept; "
        "send a new revision of one of them instead")
    assert reports.judge(report(report_id="R3", revision=2), RULES).outcome == "judged"
    assert len(reports.seen[RW1[0]]) == 10


# -- reviews (issue 23, part 3) ---------------------------------------------------------------


def _jumped() -> KelurahanReports:
    reports = KelurahanReports()
    reports.judge(report(period="2025-07", report_id="A"), RULES)
    assert reports.judge(report(report_id="B", households=60, residents=230,
                                working_age=170), RULES).codes == ("continuity",)
    return reports


def decision(kind: str, **more: Any) -> dict[str, Any]:
    return {"rt_code": RW1[0], "period": "2025-08", "report_id": "B", "revision": 1,
            "decision": kind, "reviewer_id": "sinta", **more}


def test_an_accepted_report_counts_and_becomes_the_next_month_s_base() -> None:
    reports = _jumped()
    assert reports.review(decision("ACCEPT"), RULES) == Judgement(
        "judged", "VALID", ("review_accepted",), ("accepted by sinta after review",))
    assert tally([RW1[0]], reports, "2025-08").residents == 230
    assert reports.judge(report(period="2025-09", report_id="C", households=60,
                                residents=230, working_age=170), RULES).verdict == "VALID"
    with pytest.raises(Rejection, match="not waiting for review"):
        reports.review(decision("REJECT"), RULES)


def test_a_rejected_report_is_not_counted_and_not_a_base() -> None:
    reports = _jumped()
    assert reports.review(decision("REJECT"), RULES).verdict == "REJECTED"
    assert tally([RW1[0]], reports, "2025-08") == tally([RW1[1]], reports, "2025-08")
    assert reports.judge(report(period="2025-09", report_id="C"), RULES).verdict == "VALID"


def test_a_correction_is_a_new_revision_by_the_reviewer() -> None:
    reports = _jumped()
    counts = report(residents=152)
    assert reports.review(decision("CORRECT", counts=counts), RULES) == Judgement(
        "judged", "VALID", ("review_corrected",),
        ("corrected by sinta after review (revision 2)",))
    stored = reports.current(RW1[0], "2025-08")
    assert stored is not None
    assert (stored["revision"], stored["residents"], stored["reviewed_by"]) == (2, 152, "sinta")
    # the RT head's late revision 2 of the same report is an older word now
    assert reports.judge(report(report_id="B", revision=2), RULES).outcome == "duplicate"
    with pytest.raises(Rejection) as caught:
        reports.review(decision("CORRECT", revision=2, counts=report(unemployed=500)), RULES)
    assert caught.value.reason == "stale_review"


def test_a_decision_on_figures_the_reviewer_did_not_see_is_stale() -> None:
    reports = _jumped()
    reports.judge(report(report_id="B", revision=2, households=60, residents=231,
                         working_age=170), RULES)
    with pytest.raises(Rejection) as caught:
        reports.review(decision("ACCEPT"), RULES)
    assert (caught.value.reason, caught.value.message) == (
        "stale_review", f"RT {RW1[0]} has no report 'B' revision 1 for 2025-08 as its current one")
    with pytest.raises(Rejection, match="more than labour_force"):
        reports.review(decision("CORRECT", revision=2, counts=report(unemployed=500)), RULES)
