"""Place a WGS84 point in its kelurahan using the simplified boundary polygons.

Pure Python on purpose: 43 polygons with about 4,300 vertices do not justify a native geometry
dependency in the worker, and a precomputed grid makes a lookup a few list indexings.

Metric approximation: coordinates are projected once with an equirectangular projection
centred on the middle latitude of all polygons (``x = dlon * R * cos(lat_mid)``,
``y = dlat * R``, R = 6,371,008.8 m, the IUGG mean Earth radius). Cilegon spans about 0.2 deg
of latitude near 6 deg S, so the scale error against a true local projection stays below
0.05 %: far below the error of the simplified polygons themselves.

Data facts that shape the behaviour (measured on ``cilegon_kelurahan_boundaries.geojson``):

* neighbouring simplified polygons overlap slightly (up to about 4,600 m2); a point in an
  overlap goes to the ward that comes first in the records given (the ward table is sorted by
  kelurahan code, so: the lowest code);
* they also leave small gaps (up to about 1,900 m2) between each other; a point in a gap, or
  just off the coast, goes to the nearest boundary within ``tolerance_m`` and is reported with
  method ``NEAREST_BOUNDARY`` so consumers can tell it from a clean hit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

EARTH_RADIUS_M: Final = 6_371_008.8
METRES_PER_DEGREE: Final = EARTH_RADIUS_M * math.pi / 180.0
DEFAULT_TOLERANCE_M: Final = 250.0
DEFAULT_CELL_M: Final = 100.0

LocateMethod = Literal["POINT_IN_POLYGON", "NEAREST_BOUNDARY"]
"""The two ``org.cityops.WardResolution`` symbols a coordinate lookup can produce."""

_PURE_OUTSIDE: Final = -1
_MIXED: Final = -2

Ring = list[tuple[float, float]]
"""A closed ring in (lon, lat) order, as GeoJSON stores it."""
PolygonRings = list[Ring]
"""Outer ring first, then holes."""


@dataclass(frozen=True, slots=True)
class Location:
    """Result of a lookup: the ward, how it was found, and how far the point was outside."""

    ward_code: str
    method: LocateMethod
    distance_m: float
    """0.0 for POINT_IN_POLYGON; the distance to the nearest boundary for NEAREST_BOUNDARY."""


def _polygons_of(geometry: Mapping[str, Any]) -> list[PolygonRings]:
    kind = geometry.get("type")
    coords: Any = geometry.get("coordinates") or []
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon":
        polygons = list(coords)
    else:
        raise ValueError(f"geometry type {kind!r} is not Polygon or MultiPolygon")
    out: list[PolygonRings] = []
    for polygon in polygons:
        rings: PolygonRings = []
        for ring in polygon:
            points = [(float(p[0]), float(p[1])) for p in ring]
            if len(points) >= 2 and points[0] == points[-1]:
                points.pop()  # GeoJSON repeats the first vertex; edges are rebuilt cyclically
            if len(points) >= 3:
                rings.append(points)
        if rings:
            out.append(rings)
    return out


def segment_distance(px: float, py: float, x1: float, y1: float, x2: float, y2: float) -> float:
    """Metres from a point to a segment, in a planar (metric) projection."""
    dx = x2 - x1
    dy = y2 - y1
    length2 = dx * dx + dy * dy
    if length2 == 0.0:
        return math.hypot(px - x1, py - y1)
    t = ((px - x1) * dx + (py - y1) * dy) / length2
    if t <= 0.0:
        return math.hypot(px - x1, py - y1)
    if t >= 1.0:
        return math.hypot(px - x2, py - y2)
    return math.hypot(px - (x1 + t * dx), py - (y1 + t * dy))


class _WardShape:
    """One ward's rings in metric coordinates, with edges bucketed by horizontal band.

    Ray casting only needs the edges whose y-range contains the point's y; bucketing them by
    band cuts the edges tested per polygon from ~100 to a handful.
    """

    __slots__ = ("area_m2", "band_h", "bands", "edges", "max_x", "max_y", "min_x", "min_y")

    def __init__(self, rings_xy: list[list[tuple[float, float]]], ring_is_hole: list[bool]):
        self.edges: list[tuple[float, float, float, float]] = []
        area = 0.0
        for ring, is_hole in zip(rings_xy, ring_is_hole, strict=True):
            signed = 0.0
            n = len(ring)
            for i in range(n):
                x1, y1 = ring[i]
                x2, y2 = ring[(i + 1) % n]
                signed += x1 * y2 - x2 * y1
                self.edges.append((x1, y1, x2, y2))
            area += -abs(signed) / 2.0 if is_hole else abs(signed) / 2.0
        self.area_m2 = area
        xs = [c for e in self.edges for c in (e[0], e[2])]
        ys = [c for e in self.edges for c in (e[1], e[3])]
        self.min_x, self.max_x = min(xs), max(xs)
        self.min_y, self.max_y = min(ys), max(ys)
        n_bands = max(1, len(self.edges) // 4)
        self.band_h = max((self.max_y - self.min_y) / n_bands, 1e-9)
        self.bands: list[list[tuple[float, float, float, float]]] = [[] for _ in range(n_bands)]
        for x1, y1, x2, y2 in self.edges:
            if y1 == y2:
                continue  # a horizontal edge never crosses a horizontal ray
            lo = min(n_bands - 1, int((min(y1, y2) - self.min_y) / self.band_h))
            hi = min(n_bands - 1, int((max(y1, y2) - self.min_y) / self.band_h))
            entry = (y1, y2, x1, (x2 - x1) / (y2 - y1))
            for b in range(lo, hi + 1):
                self.bands[b].append(entry)

    def contains(self, x: float, y: float) -> bool:
        """Even-odd ray casting over every ring at once.

        Parity over all rings of a MultiPolygon is correct because its parts do not overlap,
        and it treats holes for free.
        """
        if not (self.min_x <= x <= self.max_x and self.min_y <= y <= self.max_y):
            return False
        band = int((y - self.min_y) / self.band_h)
        bands = self.bands
        if band >= len(bands):
            band = len(bands) - 1
        inside = False
        for y1, y2, x1, dxdy in bands[band]:
            if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * dxdy:
                inside = not inside
        return inside

    def bbox_intersects(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        return not (self.max_x < x0 or self.min_x > x1 or self.max_y < y0 or self.min_y > y1)


class WardLocator:
    """Point-in-polygon with a uniform-grid index, plus nearest boundary within a tolerance.

    The grid (``cell_m`` square cells over the polygons' bounding box grown by the tolerance)
    classifies each cell once: inside exactly one ward with no boundary crossing it (answer is
    one list lookup), outside every ward with no boundary crossing it (only the nearest-boundary
    search runs), or mixed (ray casting against the wards whose bounding box touches the cell).
    """

    __slots__ = (
        "_cell_candidates",
        "_cell_kind",
        "_cell_m",
        "_cell_near_edges",
        "_city_bounds",
        "_codes",
        "_gx0",
        "_gx1",
        "_gy0",
        "_gy1",
        "_index",
        "_inside",
        "_kx",
        "_ky",
        "_lat0",
        "_lon0",
        "_ncols",
        "_nrows",
        "_shapes",
        "_tolerance_m",
        "_ward_bounds_deg",
    )

    def __init__(
        self,
        geometries: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        tolerance_m: float = DEFAULT_TOLERANCE_M,
        cell_m: float = DEFAULT_CELL_M,
    ) -> None:
        """Build the index from ``(ward_code, GeoJSON Polygon/MultiPolygon geometry)`` pairs.

        Order matters only for points inside overlapping polygons: the earlier ward wins.
        """
        if not math.isfinite(tolerance_m) or tolerance_m < 0.0:
            raise ValueError(f"tolerance_m={tolerance_m!r} must be a finite number >= 0")
        if not math.isfinite(cell_m) or cell_m <= 0.0:
            raise ValueError(f"cell_m={cell_m!r} must be a finite number > 0")
        parsed: list[tuple[str, list[PolygonRings]]] = []
        seen: set[str] = set()
        for code, geometry in geometries:
            if code in seen:
                raise ValueError(f"ward {code!r} appears twice")
            seen.add(code)
            polygons = _polygons_of(geometry)
            if not polygons:
                raise ValueError(f"ward {code!r} has an empty geometry")
            parsed.append((code, polygons))
        if not parsed:
            raise ValueError("no ward geometries given")

        all_lons = [p[0] for _, polys in parsed for poly in polys for ring in poly for p in ring]
        all_lats = [p[1] for _, polys in parsed for poly in polys for ring in poly for p in ring]
        self._city_bounds = (min(all_lats), min(all_lons), max(all_lats), max(all_lons))
        self._lat0 = min(all_lats)
        self._lon0 = min(all_lons)
        lat_mid = (min(all_lats) + max(all_lats)) / 2.0
        self._ky = METRES_PER_DEGREE
        self._kx = METRES_PER_DEGREE * math.cos(math.radians(lat_mid))
        self._tolerance_m = float(tolerance_m)
        self._cell_m = float(cell_m)

        self._codes: list[str] = []
        self._shapes: list[_WardShape] = []
        self._ward_bounds_deg: list[tuple[float, float, float, float]] = []
        for code, polygons in parsed:
            rings_xy: list[list[tuple[float, float]]] = []
            is_hole: list[bool] = []
            for polygon in polygons:
                for i, ring in enumerate(polygon):
                    rings_xy.append([self._project(lat, lon) for lon, lat in ring])
                    is_hole.append(i > 0)
            lons = [p[0] for poly in polygons for ring in poly for p in ring]
            lats = [p[1] for poly in polygons for ring in poly for p in ring]
            self._codes.append(code)
            self._shapes.append(_WardShape(rings_xy, is_hole))
            self._ward_bounds_deg.append((min(lats), min(lons), max(lats), max(lons)))
        self._index = {code: i for i, code in enumerate(self._codes)}
        self._inside = [Location(code, "POINT_IN_POLYGON", 0.0) for code in self._codes]
        self._build_grid()

    @classmethod
    def from_ward_records(
        cls,
        records: Iterable[Mapping[str, Any]],
        *,
        tolerance_m: float = DEFAULT_TOLERANCE_M,
        cell_m: float = DEFAULT_CELL_M,
    ) -> WardLocator:
        """Build from ``org.cityops.Ward`` dicts; wards without ``boundary_geojson`` are skipped
        (they can still be resolved by code, just not by coordinates)."""
        geometries: list[tuple[str, Mapping[str, Any]]] = []
        for record in records:
            boundary = record.get("boundary_geojson")
            if boundary:
                geometries.append((str(record["kelurahan_code"]), json.loads(boundary)))
        return cls(geometries, tolerance_m=tolerance_m, cell_m=cell_m)

    # ------------------------------------------------------------------ building

    def _project(self, lat: float, lon: float) -> tuple[float, float]:
        return ((lon - self._lon0) * self._kx, (lat - self._lat0) * self._ky)

    def _build_grid(self) -> None:
        tol = self._tolerance_m
        c = self._cell_m
        max_x = max(s.max_x for s in self._shapes)
        max_y = max(s.max_y for s in self._shapes)
        min_x = min(s.min_x for s in self._shapes)
        min_y = min(s.min_y for s in self._shapes)
        # One extra cell of margin so a point exactly tolerance away is still on the grid.
        self._gx0 = min_x - tol - c
        self._gy0 = min_y - tol - c
        self._ncols = math.ceil((max_x + tol + c - self._gx0) / c)
        self._nrows = math.ceil((max_y + tol + c - self._gy0) / c)
        self._gx1 = self._gx0 + self._ncols * c
        self._gy1 = self._gy0 + self._nrows * c
        n_cells = self._ncols * self._nrows

        crossed = bytearray(n_cells)
        near: list[list[tuple[int, float, float, float, float]]] = [[] for _ in range(n_cells)]
        for w, shape in enumerate(self._shapes):
            for x1, y1, x2, y2 in shape.edges:
                # Conservative: every cell the edge's bounding box touches counts as crossed.
                c0, r0 = self._cell_of(min(x1, x2), min(y1, y2))
                c1, r1 = self._cell_of(max(x1, x2), max(y1, y2))
                for r in range(r0, r1 + 1):
                    base = r * self._ncols
                    for col in range(c0, c1 + 1):
                        crossed[base + col] = 1
                c0, r0 = self._cell_of(min(x1, x2) - tol, min(y1, y2) - tol)
                c1, r1 = self._cell_of(max(x1, x2) + tol, max(y1, y2) + tol)
                entry = (w, x1, y1, x2, y2)
                for r in range(r0, r1 + 1):
                    base = r * self._ncols
                    for col in range(c0, c1 + 1):
                        near[base + col].append(entry)

        kinds: list[int] = [_PURE_OUTSIDE] * n_cells
        candidates: list[tuple[int, ...]] = [()] * n_cells
        for r in range(self._nrows):
            y0 = self._gy0 + r * c
            for col in range(self._ncols):
                x0 = self._gx0 + col * c
                cell = r * self._ncols + col
                cands = tuple(
                    w
                    for w, s in enumerate(self._shapes)
                    if s.bbox_intersects(x0, y0, x0 + c, y0 + c)
                )
                if not cands:
                    continue
                if crossed[cell]:
                    kinds[cell] = _MIXED
                    candidates[cell] = cands
                else:
                    # No boundary crosses the cell, so its centre speaks for all of it.
                    hit = self._first_containing(cands, x0 + c / 2.0, y0 + c / 2.0)
                    kinds[cell] = _PURE_OUTSIDE if hit is None else hit
        self._cell_kind = kinds
        self._cell_candidates = candidates
        self._cell_near_edges: list[tuple[tuple[int, float, float, float, float], ...]] = [
            tuple(edges) for edges in near
        ]

    def _cell_of(self, x: float, y: float) -> tuple[int, int]:
        col = int((x - self._gx0) // self._cell_m)
        row = int((y - self._gy0) // self._cell_m)
        return (min(max(col, 0), self._ncols - 1), min(max(row, 0), self._nrows - 1))

    def _first_containing(self, candidates: Iterable[int], x: float, y: float) -> int | None:
        shapes = self._shapes
        for w in candidates:
            if shapes[w].contains(x, y):
                return w
        return None

    # ------------------------------------------------------------------ queries

    def locate(self, lat: float, lon: float) -> Location | None:
        """The ward containing the point, else the nearest one within the tolerance, else None.

        Non-finite input returns None rather than raising: validation reports it with a
        better message before this is called.
        """
        x = (lon - self._lon0) * self._kx
        y = (lat - self._lat0) * self._ky
        if not (self._gx0 <= x < self._gx1 and self._gy0 <= y < self._gy1):
            return None  # also catches NaN and infinities
        cell = int((y - self._gy0) // self._cell_m) * self._ncols + int(
            (x - self._gx0) // self._cell_m
        )
        kind = self._cell_kind[cell]
        if kind >= 0:
            return self._inside[kind]
        if kind == _MIXED:
            shapes = self._shapes
            for w in self._cell_candidates[cell]:
                if shapes[w].contains(x, y):
                    return self._inside[w]
        return self._nearest(cell, x, y)

    def _nearest(self, cell: int, x: float, y: float) -> Location | None:
        best_d = math.inf
        best_w = -1
        for w, x1, y1, x2, y2 in self._cell_near_edges[cell]:
            d = segment_distance(x, y, x1, y1, x2, y2)
            # Strict "<" keeps the earlier ward on exact ties, matching the overlap rule.
            if d < best_d or (d == best_d and w < best_w):
                best_d = d
                best_w = w
        if best_w < 0 or best_d > self._tolerance_m:
            return None
        return Location(self._codes[best_w], "NEAREST_BOUNDARY", best_d)

    def city_bounds(self) -> tuple[float, float, float, float]:
        """``(min_lat, min_lon, max_lat, max_lon)`` over every polygon vertex, in degrees."""
        return self._city_bounds

    def ward_bounds(self, ward_code: str) -> tuple[float, float, float, float]:
        """``(min_lat, min_lon, max_lat, max_lon)`` of one ward's polygons, in degrees."""
        return self._ward_bounds_deg[self._index[ward_code]]

    def area_m2(self, ward_code: str) -> float:
        """Area of one ward's simplified polygons under the equirectangular approximation.

        DERIVED from simplified polygons, not an official area; fit for weighting only.
        """
        return self._shapes[self._index[ward_code]].area_m2

    @property
    def ward_codes(self) -> tuple[str, ...]:
        return tuple(self._codes)

    @property
    def tolerance_m(self) -> float:
        return self._tolerance_m

    def distance_m(self, lat1: float, lon1: float, lat2: float, lon2: float) -> float:
        """Distance under the same equirectangular approximation the locator uses."""
        x1, y1 = self._project(lat1, lon1)
        x2, y2 = self._project(lat2, lon2)
        return math.hypot(x2 - x1, y2 - y1)
