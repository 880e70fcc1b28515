"""Ward location: centroids, gaps, sea, overlaps, holes, and the index against brute force."""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from typing import Any

import pytest

from core.reference_data import BOUNDARIES_GEOJSON, load_ward_records
from processors.geo import METRES_PER_DEGREE, Location, WardLocator

pytestmark = pytest.mark.unit

RECORDS = load_ward_records()
LOCATOR = WardLocator.from_ward_records(RECORDS)

# Measured facts of the simplified polygons (cross-checked with shapely while writing these):
GAP_POINT = (-6.004398391104635, 106.06187152387079)  # largest gap between polygons, 1,888 m2
OVERLAP_POINT = (-5.973797629613792, 106.01931113768623)  # Rawa Arum (06.1003) and Gerem (06.1004)
OFF_GEREM_COAST = (-5.96, 105.998)  # in the water, 75 m off Gerem's simplified coastline
SUNDA_STRAIT = (-5.95, 105.95)  # open water inside the city bounding box
FAR_AWAY = (-6.2, 106.8)  # Jakarta


def test_every_ward_centroid_from_the_csv_locates_to_its_own_ward() -> None:
    # No exception: all 43 CSV centroids fall inside their own simplified polygon.
    results = {
        r["kelurahan_code"]: LOCATOR.locate(r["centroid_lat"], r["centroid_lon"]) for r in RECORDS
    }
    assert results == {
        r["kelurahan_code"]: Location(r["kelurahan_code"], "POINT_IN_POLYGON", 0.0) for r in RECORDS
    }


def test_point_in_a_gap_between_polygons_resolves_to_the_nearest_boundary() -> None:
    location = LOCATOR.locate(*GAP_POINT)
    assert location is not None
    assert (location.ward_code, location.method, round(location.distance_m, 3)) == (
        "36.72.05.1003",
        "NEAREST_BOUNDARY",
        2.699,
    )


def test_point_just_off_the_coast_resolves_within_tolerance_only() -> None:
    location = LOCATOR.locate(*OFF_GEREM_COAST)
    assert location is not None
    assert (location.ward_code, location.method, round(location.distance_m, 3)) == (
        "36.72.06.1004",
        "NEAREST_BOUNDARY",
        74.937,
    )
    strict = WardLocator.from_ward_records(RECORDS, tolerance_m=50.0)
    assert strict.locate(*OFF_GEREM_COAST) is None
    assert strict.tolerance_m == 50.0


def test_zero_tolerance_leaves_gap_points_unresolved() -> None:
    assert WardLocator.from_ward_records(RECORDS, tolerance_m=0.0).locate(*GAP_POINT) is None


def test_open_water_and_far_away_points_are_none() -> None:
    assert LOCATOR.locate(*SUNDA_STRAIT) is None
    assert LOCATOR.locate(*FAR_AWAY) is None
    assert LOCATOR.locate(0.0, 0.0) is None


@pytest.mark.parametrize(
    ("lat", "lon"),
    [(math.nan, 106.0), (-6.0, math.nan), (math.inf, 106.0), (-6.0, -math.inf)],
)
def test_non_finite_coordinates_are_none(lat: float, lon: float) -> None:
    assert LOCATOR.locate(lat, lon) is None


def test_overlap_goes_to_the_ward_given_first() -> None:
    assert LOCATOR.locate(*OVERLAP_POINT) == Location("36.72.06.1003", "POINT_IN_POLYGON", 0.0)
    reversed_locator = WardLocator.from_ward_records(list(reversed(RECORDS)))
    assert reversed_locator.locate(*OVERLAP_POINT) == Location(
        "36.72.06.1004", "POINT_IN_POLYGON", 0.0
    )


def test_city_bounds_are_the_extremes_of_all_vertices() -> None:
    assert LOCATOR.city_bounds() == (
        -6.0806397559999255,
        105.92171186200005,
        -5.876093655999966,
        106.08816900100004,
    )


def test_ward_codes_keep_record_order() -> None:
    assert LOCATOR.ward_codes == tuple(r["kelurahan_code"] for r in RECORDS)


def test_derived_areas_agree_with_the_geojson_property() -> None:
    # The GeoJSON's area_km2_from_simplified_polygon is also an equirectangular shoelace (with
    # its own reference latitude), so the two agree to about a thousandth of a km2.
    collection = json.loads(BOUNDARIES_GEOJSON.read_text(encoding="utf-8"))
    off = [
        f["properties"]["kelurahan_code"]
        for f in collection["features"]
        if abs(
            LOCATOR.area_m2(f["properties"]["kelurahan_code"]) / 1e6
            - f["properties"]["area_km2_from_simplified_polygon"]
        )
        > 0.0015
    ]
    assert off == []
    assert round(sum(LOCATOR.area_m2(c) for c in LOCATOR.ward_codes) / 1e6, 1) == 163.2


# --------------------------------------------------------------------- synthetic geometries

SQUARE_WITH_HOLE: dict[str, Any] = {
    "type": "Polygon",
    "coordinates": [
        [[0.0, 0.0], [0.01, 0.0], [0.01, 0.01], [0.0, 0.01], [0.0, 0.0]],
        [[0.004, 0.004], [0.006, 0.004], [0.006, 0.006], [0.004, 0.006], [0.004, 0.004]],
    ],
}
TWO_ISLANDS: dict[str, Any] = {
    "type": "MultiPolygon",
    "coordinates": [
        [[[0.02, 0.0], [0.03, 0.0], [0.03, 0.01], [0.02, 0.01], [0.02, 0.0]]],
        [[[0.05, 0.0], [0.06, 0.0], [0.06, 0.01], [0.05, 0.01], [0.05, 0.0]]],
    ],
}


def _synthetic(tolerance_m: float = 250.0) -> WardLocator:
    return WardLocator([("A", SQUARE_WITH_HOLE), ("B", TWO_ISLANDS)], tolerance_m=tolerance_m)


def test_a_hole_is_not_inside_its_polygon() -> None:
    locator = _synthetic(tolerance_m=50.0)
    assert locator.locate(0.0025, 0.0025) == Location("A", "POINT_IN_POLYGON", 0.0)
    assert locator.locate(0.005, 0.005) is None  # hole centre: 111 m from the hole's edge
    near_edge = locator.locate(0.005, 0.0041)  # 0.0001 deg inside the hole
    assert near_edge is not None
    assert (near_edge.ward_code, near_edge.method) == ("A", "NEAREST_BOUNDARY")
    assert near_edge.distance_m == pytest.approx(
        0.0001 * METRES_PER_DEGREE * math.cos(math.radians(0.005)), abs=1e-6
    )


def test_every_part_of_a_multipolygon_counts() -> None:
    locator = _synthetic()
    assert locator.locate(0.005, 0.025) == Location("B", "POINT_IN_POLYGON", 0.0)
    assert locator.locate(0.005, 0.055) == Location("B", "POINT_IN_POLYGON", 0.0)
    between = locator.locate(0.005, 0.04)  # 0.01 deg = 1.1 km from both islands
    assert between is None


def test_nearest_boundary_picks_the_closer_ward() -> None:
    locator = _synthetic()
    location = locator.locate(0.005, 0.0115)  # 0.0015 deg (167 m) from A, 0.0085 deg from B
    assert location is not None
    assert (location.ward_code, location.method) == ("A", "NEAREST_BOUNDARY")
    assert location.distance_m == pytest.approx(
        0.0015 * METRES_PER_DEGREE * math.cos(math.radians(0.005)), abs=1e-6
    )


def test_synthetic_area_subtracts_holes() -> None:
    locator = _synthetic()
    k = METRES_PER_DEGREE * METRES_PER_DEGREE * math.cos(math.radians(0.005))
    assert locator.area_m2("A") == pytest.approx((0.0001 - 0.000004) * k, rel=1e-9)
    assert locator.area_m2("B") == pytest.approx(0.0002 * k, rel=1e-9)
    assert locator.ward_bounds("B") == (0.0, 0.02, 0.01, 0.06)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        WardLocator([("A", SQUARE_WITH_HOLE), ("A", TWO_ISLANDS)])
    with pytest.raises(ValueError, match="is not Polygon or MultiPolygon"):
        WardLocator([("A", {"type": "Point", "coordinates": [0.0, 0.0]})])
    with pytest.raises(ValueError, match="no ward geometries given"):
        WardLocator([])
    with pytest.raises(ValueError, match=r"tolerance_m=-1\.0"):
        WardLocator([("A", SQUARE_WITH_HOLE)], tolerance_m=-1.0)


def test_records_without_boundary_are_skipped() -> None:
    records = [dict(RECORDS[0]), {**RECORDS[1], "boundary_geojson": None}]
    assert WardLocator.from_ward_records(records).ward_codes == (RECORDS[0]["kelurahan_code"],)


# --------------------------------------------------------------------- index vs brute force


_EDGES_BY_WARD = [
    (
        record["kelurahan_code"],
        [
            (x1, y1, x2, y2)
            for polygon in json.loads(record["boundary_geojson"])["coordinates"]
            for ring in polygon
            for (x1, y1), (x2, y2) in itertools.pairwise(ring)
        ],
    )
    for record in RECORDS
]


def _brute_force(lat: float, lon: float, tolerance_m: float) -> tuple[str, str] | None:
    """Reference answer: ray casting over every ring in order, else the distance to every edge."""
    for code, edges in _EDGES_BY_WARD:
        inside = False
        for x1, y1, x2, y2 in edges:
            if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
                inside = not inside
        if inside:
            return (code, "POINT_IN_POLYGON")
    min_lat, _, max_lat, _ = LOCATOR.city_bounds()
    kx = METRES_PER_DEGREE * math.cos(math.radians((min_lat + max_lat) / 2))
    ky = METRES_PER_DEGREE
    best_d, best_code = math.inf, ""
    for code, edges in _EDGES_BY_WARD:
        for x1, y1, x2, y2 in edges:
            ax, ay = (x1 - lon) * kx, (y1 - lat) * ky
            bx, by = (x2 - lon) * kx, (y2 - lat) * ky
            dx, dy = bx - ax, by - ay
            t = max(0.0, min(1.0, -(ax * dx + ay * dy) / (dx * dx + dy * dy)))
            d = math.hypot(ax + t * dx, ay + t * dy)
            if d < best_d:
                best_d, best_code = d, code
    return (best_code, "NEAREST_BOUNDARY") if best_d <= tolerance_m else None


def test_indexed_lookup_agrees_with_brute_force_on_2000_random_points() -> None:
    rng = random.Random(20250601)
    min_lat, min_lon, max_lat, max_lon = LOCATOR.city_bounds()
    disagreements = []
    for _ in range(2000):
        lat = rng.uniform(min_lat - 0.01, max_lat + 0.01)
        lon = rng.uniform(min_lon - 0.01, max_lon + 0.01)
        got = LOCATOR.locate(lat, lon)
        expected = _brute_force(lat, lon, LOCATOR.tolerance_m)
        if (None if got is None else (got.ward_code, got.method)) != expected:
            disagreements.append((lat, lon, got, expected))
    assert disagreements == []


def test_more_than_50k_lookups_per_second() -> None:
    rng = random.Random(7)
    min_lat, min_lon, max_lat, max_lon = LOCATOR.city_bounds()
    points = [(rng.uniform(min_lat, max_lat), rng.uniform(min_lon, max_lon)) for _ in range(50_000)]
    locate = LOCATOR.locate
    started = time.perf_counter()
    for lat, lon in points:
        locate(lat, lon)
    elapsed = time.perf_counter() - started
    assert len(points) / elapsed > 50_000
