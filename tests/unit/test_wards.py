"""Ward and kecamatan reference data: counts, spot checks against the CSV, schema fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import load_schema
from fastavro.validation import validate

from core.reference_data import (
    BOUNDARIES_GEOJSON,
    CityInfo,
    KecamatanInfo,
    load_city,
    load_kecamatan,
    load_ward_records,
)

pytestmark = pytest.mark.unit

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "avro"


def _geometry_of(code: str) -> dict[str, Any]:
    collection = json.loads(BOUNDARIES_GEOJSON.read_text(encoding="utf-8"))
    for feature in collection["features"]:
        if feature["properties"]["kelurahan_code"] == code:
            geometry: dict[str, Any] = feature["geometry"]
            return geometry
    raise AssertionError(f"no feature {code}")


def test_43_wards_sorted_unique_codes() -> None:
    records = load_ward_records()
    codes = [r["kelurahan_code"] for r in records]
    assert len(records) == 43
    assert codes == sorted(set(codes))
    assert codes[0] == "36.72.01.1001"
    assert codes[-1] == "36.72.08.1007"


def test_ward_record_keys_are_exactly_the_schema_fields() -> None:
    schema = json.loads((SCHEMA_DIR / "org.cityops.Ward.avsc").read_text(encoding="utf-8"))
    expected = [f["name"] for f in schema["fields"]]
    assert all(list(r) == expected for r in load_ward_records())


def test_every_ward_record_validates_against_ward_avsc() -> None:
    schema = load_schema(str(SCHEMA_DIR / "org.cityops.Ward.avsc"))
    assert all(validate(r, schema, strict=True) for r in load_ward_records())


def test_spot_check_kepuh_field_by_field() -> None:
    # CSV row: 36.72.04.1005,Kepuh,36.72.04,Ciwandan,,,-6.037354,105.960318,42446,  (no BPS code)
    record = {r["kelurahan_code"]: r for r in load_ward_records()}["36.72.04.1005"]
    assert record["kelurahan_code"] == "36.72.04.1005"
    assert record["kelurahan_name"] == "Kepuh"
    assert record["kecamatan_code"] == "36.72.04"
    assert record["kecamatan_name"] == "Ciwandan"
    assert record["centroid_lat"] == -6.037354
    assert record["centroid_lon"] == 105.960318
    assert record["postal_code"] == "42446"
    assert record["bps_code"] is None
    assert record["population"] is None
    assert record["area_km2"] is None
    assert record["boundary_geojson"] == json.dumps(
        _geometry_of("36.72.04.1005"), separators=(",", ":")
    )
    geometry = json.loads(record["boundary_geojson"])
    assert geometry["type"] == "MultiPolygon"
    assert [[len(ring) for ring in polygon] for polygon in geometry["coordinates"]] == [[135]]


def test_spot_check_grogol_keeps_the_kemendagri_spelling() -> None:
    # CSV row: 36.72.06.1002,Grogol,36.72.06,Gerogol,,,-5.9728,106.033893,42436,3672022008
    record = {r["kelurahan_code"]: r for r in load_ward_records()}["36.72.06.1002"]
    assert record == {
        "kelurahan_code": "36.72.06.1002",
        "kelurahan_name": "Grogol",
        "kecamatan_code": "36.72.06",
        "kecamatan_name": "Gerogol",
        "centroid_lat": -5.9728,
        "centroid_lon": 106.033893,
        "postal_code": "42436",
        "bps_code": "3672022008",
        "population": None,
        "area_km2": None,
        "boundary_geojson": json.dumps(_geometry_of("36.72.06.1002"), separators=(",", ":")),
    }
    assert " " not in record["boundary_geojson"]


def test_no_ward_has_an_invented_population_or_area() -> None:
    records = load_ward_records()
    assert [r for r in records if r["population"] is not None or r["area_km2"] is not None] == []


def test_only_kepuh_and_gerem_lack_a_bps_code() -> None:
    missing = [r["kelurahan_name"] for r in load_ward_records() if r["bps_code"] is None]
    assert missing == ["Kepuh", "Gerem"]


def test_eight_kecamatan_with_codes_names_and_counts() -> None:
    kecamatan = load_kecamatan()
    assert [(k.code, k.name, k.kelurahan_count) for k in kecamatan] == [
        ("36.72.01", "Cibeber", 6),
        ("36.72.02", "Cilegon", 5),
        ("36.72.03", "Pulomerak", 4),
        ("36.72.04", "Ciwandan", 6),
        ("36.72.05", "Jombang", 5),
        ("36.72.06", "Gerogol", 4),
        ("36.72.07", "Purwakarta", 6),
        ("36.72.08", "Citangkil", 7),
    ]


def test_kecamatan_counts_match_the_ward_table() -> None:
    records = load_ward_records()
    counts = {k.code: sum(r["kecamatan_code"] == k.code for r in records) for k in load_kecamatan()}
    assert counts == {k.code: k.kelurahan_count for k in load_kecamatan()}
    names = {(r["kecamatan_code"], r["kecamatan_name"]) for r in records}
    assert names == {(k.code, k.name) for k in load_kecamatan()}


def test_one_kecamatan_record_in_full() -> None:
    assert load_kecamatan()[5] == KecamatanInfo(
        code="36.72.06",
        name="Gerogol",
        bps_code="3672022",
        kelurahan_count=4,
        centroid_lat=-5.971218,
        centroid_lon=106.01947,
        population=None,
        area_km2=None,
        area_km2_derived=23.8,
    )


def test_city_record_carries_the_official_figures() -> None:
    assert load_city() == CityInfo(
        code="36.72",
        name="Kota Cilegon",
        bps_code="3672",
        kelurahan_count=43,
        centroid_lat=-5.998896,
        centroid_lon=106.018492,
        population=480378,
        area_km2=162.578,
        area_km2_derived=163.22,
    )
