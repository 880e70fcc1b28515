"""The board's smart-village layer without a worker: which reports stay to review, and the JSON
of /api/neighbourhoods and /api/neighbourhoods/{kelurahan}."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from core.reference_data import load_ward_records
from streams.neighbourhood_web import ReviewIndex, kelurahan_payload, overview_payload

pytestmark = pytest.mark.unit

AT = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
KEL = "36.72.01.1001"
WARDS = {w["kelurahan_code"]: w for w in load_ward_records()}


def verdict(rt: str, period: str, verdict: str, revision: int = 1,
            kelurahan: str | None = KEL) -> dict[str, Any]:
    return {"rt_code": rt, "kelurahan_code": kelurahan, "rw": rt.split(".")[-2],
            "period": period, "report_id": "R1", "revision": revision, "verdict": verdict,
            "reason_codes": ["continuity"] if verdict == "NEEDS_REVIEW" else [],
            "reasons": ["residents 165 do not follow"] if verdict == "NEEDS_REVIEW" else [],
            "residents": 165, "labour_force": 70, "unemployed": 5, "validated_at": AT,
            "synthetic": True}


def indicator(scope: str, level: str, period: str, unemployed: int = 5) -> dict[str, Any]:
    return {"scope_code": scope, "scope_level": level, "period": period, "rt_registered": 4,
            "rt_reported": 2, "rt_valid": 2, "rt_needs_review": 0, "residents": 300,
            "labour_force": 100, "unemployed": unemployed,
            "unemployment_rate": unemployed / 100, "completeness": 0.5, "review_share": 0.0,
            "computed_at": AT, "synthetic": True}


def test_a_review_stays_until_a_valid_correction_and_ignores_rejections_and_unknown_rts() -> None:
    index = ReviewIndex()
    rt = f"{KEL}.004.002"
    index.apply(verdict(rt, "2026-11", "NEEDS_REVIEW"))
    index.apply(verdict(rt, "2026-11", "REJECTED", revision=2))  # never replaced the report
    index.apply(verdict("99.99.99.9999.001.001", "2026-11", "NEEDS_REVIEW", kelurahan=None))
    assert [r["rt_code"] for r in index.of(KEL, "2026-11")] == [rt]
    (shown,) = index.of(KEL, "2026-11")
    assert (shown["validated_at"], shown["reasons"]) == (
        "2026-12-02T03:00:00.000Z", ["residents 165 do not follow"])
    index.apply(verdict(rt, "2026-11", "VALID", revision=3))
    assert (index.of(KEL, "2026-11"), index.reviews) == ([], {})


def test_the_review_index_keeps_the_last_six_months_only() -> None:
    index = ReviewIndex()
    for month in range(1, 13):
        index.apply(verdict(f"{KEL}.001.001", f"2026-{month:02d}", "NEEDS_REVIEW"))
    assert sorted(period for _, period in index.reviews) == [
        f"2026-{month:02d}" for month in range(7, 13)]


def test_overview_has_every_kelurahan_the_latest_month_by_default_and_the_city() -> None:
    indicators = {f"{s}|{p}": indicator(s, level, p) for s, level, p in (
        (KEL, "KELURAHAN", "2026-10"), (KEL, "KELURAHAN", "2026-11"),
        (f"{KEL}.001", "RW", "2026-11"), ("36.72", "CITY", "2026-11"))}
    body = overview_payload(indicators, WARDS, None)
    assert (body["period"], body["periods"], body["synthetic"]) == (
        "2026-11", ["2026-11", "2026-10"], True)
    assert (body["city"]["scope_code"], body["city"]["computed_at"]) == (
        "36.72", "2026-12-02T03:00:00.000Z")
    assert len(body["kelurahan"]) == 43
    cibeber = body["kelurahan"][0]
    assert (cibeber["kelurahan_name"], cibeber["indicator"]["unemployment_rate"]) == (
        "Cibeber", 0.05)
    assert all(k["indicator"] is None for k in body["kelurahan"][1:])
    assert overview_payload(indicators, WARDS, "2026-10")["city"] is None
    assert overview_payload(indicators, WARDS, "2020-01")["period"] == "2026-11"
    assert overview_payload({}, WARDS, None)["period"] is None


def test_kelurahan_detail_lists_its_rws_in_order_and_the_reports_to_review() -> None:
    indicators = {f"{s}|2026-11": indicator(s, level, "2026-11", n) for s, level, n in (
        (KEL, "KELURAHAN", 6), (f"{KEL}.002", "RW", 9), (f"{KEL}.001", "RW", 3),
        ("36.72.01.1002.001", "RW", 4))}
    index = ReviewIndex()
    index.apply(verdict(f"{KEL}.002.003", "2026-11", "NEEDS_REVIEW"))
    body = kelurahan_payload(KEL, indicators, WARDS, index, None)
    assert body is not None
    assert (body["kelurahan"]["kelurahan_name"], body["period"],
            body["indicator"]["unemployed"]) == ("Cibeber", "2026-11", 6)
    assert [(rw["rw"], rw["unemployed"]) for rw in body["rws"]] == [("001", 3), ("002", 9)]
    assert [r["rt_code"] for r in body["review"]] == [f"{KEL}.002.003"]
    assert kelurahan_payload("36.72.99.9999", indicators, WARDS, index, None) is None
