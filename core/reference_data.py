"""Ward (kelurahan) and kecamatan reference data of Kota Cilegon, read from ``cityops/data``.

The files are copies of ``shared/data`` (sources in ``core/data/SOURCES.md``). Values are
taken as they are: Kemendagri spelling is kept even where it differs between levels (the
kecamatan is "Gerogol" while its kelurahan is "Grogol"), and blank population/area stay None
because no official per-kelurahan or per-kecamatan figure was found. Nothing here is derived
except ``area_km2_derived`` on the kecamatan/city records, which the CSV itself marks as derived
from the simplified polygons and which is kept apart from the official ``area_km2``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from core.vocabulary import CITY_CODE

DATA_DIR: Final = Path(__file__).resolve().parent / "data"
WARDS_CSV: Final = DATA_DIR / "cilegon_wards.csv"
KECAMATAN_CSV: Final = DATA_DIR / "cilegon_kecamatan.csv"
BOUNDARIES_GEOJSON: Final = DATA_DIR / "cilegon_kelurahan_boundaries.geojson"

EXPECTED_KELURAHAN: Final = 43
EXPECTED_KECAMATAN: Final = 8


@dataclass(frozen=True, slots=True)
class KecamatanInfo:
    """One kecamatan (district) of the city."""

    code: str
    name: str
    """Kemendagri spelling, e.g. "Gerogol"."""
    bps_code: str | None
    kelurahan_count: int
    centroid_lat: float
    centroid_lon: float
    population: int | None
    """None: no official per-kecamatan population was found."""
    area_km2: float | None
    """None: no official per-kecamatan area was found."""
    area_km2_derived: float | None
    """DERIVED from the simplified polygons (equirectangular shoelace); not official."""


@dataclass(frozen=True, slots=True)
class CityInfo:
    """The city record (Kota Cilegon) with its official population and area."""

    code: str
    name: str
    bps_code: str | None
    kelurahan_count: int
    centroid_lat: float
    centroid_lon: float
    population: int | None
    """Official: 480,378 (cahyadsn/wilayah db/wilayah_penduduk.sql)."""
    area_km2: float | None
    """Official: 162.578 km2 (Kepmendagri 2025 + BIG, via cahyadsn/wilayah)."""
    area_km2_derived: float | None
    """DERIVED from the simplified polygons (163.22); not official."""


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _opt_int(value: str | None) -> int | None:
    text = _blank_to_none(value)
    return None if text is None else int(text)


def _opt_float(value: str | None) -> float | None:
    text = _blank_to_none(value)
    return None if text is None else float(text)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _load_geometries() -> dict[str, dict[str, Any]]:
    with BOUNDARIES_GEOJSON.open(encoding="utf-8") as handle:
        collection = json.load(handle)
    geometries: dict[str, dict[str, Any]] = {}
    for feature in collection["features"]:
        code = feature["properties"]["kelurahan_code"]
        if code in geometries:
            raise ValueError(f"{BOUNDARIES_GEOJSON.name}: kelurahan {code} appears twice")
        geometries[code] = feature["geometry"]
    return geometries


def load_ward_records() -> list[dict[str, Any]]:
    """The 43 kelurahan as ``org.cityops.Ward`` dicts, sorted by kelurahan code.

    ``boundary_geojson`` is the feature's geometry serialised compactly (no spaces), so the
    record stays small on the reference topic. Raises ValueError if the CSV and the GeoJSON do
    not describe the same set of kelurahan: a silent mismatch would leave a ward that can never
    be found by coordinates.
    """
    rows = _read_csv(WARDS_CSV)
    geometries = _load_geometries()
    records: list[dict[str, Any]] = []
    for row in rows:
        code = row["kelurahan_code"].strip()
        geometry = geometries.get(code)
        if geometry is None:
            raise ValueError(f"{BOUNDARIES_GEOJSON.name}: no boundary for kelurahan {code}")
        records.append(
            {
                "kelurahan_code": code,
                "kelurahan_name": row["kelurahan_name"].strip(),
                "kecamatan_code": row["kecamatan_code"].strip(),
                "kecamatan_name": row["kecamatan_name"].strip(),
                "centroid_lat": float(row["lat"]),
                "centroid_lon": float(row["lon"]),
                "postal_code": _blank_to_none(row["postal_code"]),
                "bps_code": _blank_to_none(row["bps_kelurahan_code"]),
                "population": _opt_int(row["population"]),
                "area_km2": _opt_float(row["area_km2"]),
                "boundary_geojson": json.dumps(geometry, separators=(",", ":")),
            }
        )
    extra = set(geometries) - {r["kelurahan_code"] for r in records}
    if extra:
        raise ValueError(f"{BOUNDARIES_GEOJSON.name}: boundaries without a ward row: {extra}")
    if len(records) != EXPECTED_KELURAHAN:
        raise ValueError(
            f"{WARDS_CSV.name}: {len(records)} kelurahan, {EXPECTED_KELURAHAN} expected"
        )
    records.sort(key=lambda r: str(r["kelurahan_code"]))
    return records


def _kecamatan_rows() -> tuple[dict[str, str], list[dict[str, str]]]:
    rows = _read_csv(KECAMATAN_CSV)
    cities = [r for r in rows if r["level"].strip() == "kota"]
    kecamatan = [r for r in rows if r["level"].strip() == "kecamatan"]
    if len(cities) != 1 or cities[0]["code"].strip() != CITY_CODE:
        raise ValueError(f"{KECAMATAN_CSV.name}: expected one city row with code {CITY_CODE}")
    if len(kecamatan) != EXPECTED_KECAMATAN:
        raise ValueError(
            f"{KECAMATAN_CSV.name}: {len(kecamatan)} kecamatan, {EXPECTED_KECAMATAN} expected"
        )
    return cities[0], kecamatan


def load_kecamatan() -> list[KecamatanInfo]:
    """The 8 kecamatan, sorted by code (the city row is :func:`load_city`)."""
    _, rows = _kecamatan_rows()
    out = [
        KecamatanInfo(
            code=r["code"].strip(),
            name=r["name"].strip(),
            bps_code=_blank_to_none(r["bps_code"]),
            kelurahan_count=int(r["n_kelurahan"]),
            centroid_lat=float(r["lat"]),
            centroid_lon=float(r["lon"]),
            population=_opt_int(r["population"]),
            area_km2=_opt_float(r["area_km2"]),
            area_km2_derived=_opt_float(r["area_km2_derived_from_simplified_polygon"]),
        )
        for r in rows
    ]
    out.sort(key=lambda k: k.code)
    return out


def load_city() -> CityInfo:
    """Kota Cilegon: code 36.72, official population 480,378 and area 162.578 km2."""
    r, _ = _kecamatan_rows()
    return CityInfo(
        code=r["code"].strip(),
        name=r["name"].strip(),
        bps_code=_blank_to_none(r["bps_code"]),
        kelurahan_count=int(r["n_kelurahan"]),
        centroid_lat=float(r["lat"]),
        centroid_lon=float(r["lon"]),
        population=_opt_int(r["population"]),
        area_km2=_opt_float(r["area_km2"]),
        area_km2_derived=_opt_float(r["area_km2_derived_from_simplified_polygon"]),
    )
