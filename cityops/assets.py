"""SYNTHETIC asset registry: street lamps (PJU), waste containers and TPS of Kota Cilegon.

No public asset list for Cilegon was found, so the simulator and the tests use a generated
one. Every record carries ``synthetic=True`` and every location name ends in "(synthetic)".
Only the totals are anchored in ``shared/docs/domain-research.md``; everything else (where the
assets stand, how they are grouped, their wattage and capacity) is made up, within values that
are typical for the kind of asset.

Counts and their basis:

* lamps = 5,700: "about 5,700 PJU" run by Dishub (megatrust.co.id, Sep 2021, in
  domain-research.md). Spread over the 43 kelurahan in proportion to the area of their
  simplified polygons (a DERIVED weight; no per-kelurahan lamp count exists).
* TPS = 50: a SYNTHETIC ASSUMPTION derived from domain-research.md: TPSA Bagendung takes
  about 500 m3/day and DLH hauls with arm-roll trucks (18-22 of them); assuming the usual
  10 m3 arm-roll container (the size is not in the research), that is about 50 container loads
  a day, i.e. about 50 TPS if each is emptied once a day. Every kelurahan gets at least one;
  the rest go to the largest.
* waste containers (660 L / 1,100 L bins) = 430: a SYNTHETIC ASSUMPTION (ten communal bins
  per kelurahan on average, spread by area); domain-research.md gives no bin count.

Lamps are laid along synthetic road stretches at the 40 m pole spacing the domain research
reports for new PJU; one stretch is fed by one control cabinet of about 20-40 lamps (the brief's
grouping; note that the 693 PLN connection points of 2026 would suggest smaller groups, so the
size is a parameter).

Every position is sampled inside the kelurahan's simplified polygon and checked with the same
:class:`~processors.geo.WardLocator` the pipeline uses, so an asset's coordinates always
resolve (POINT_IN_POLYGON) to its own ``ward_code``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, Final

from core.vocabulary import ASSET_REGISTRY_SEED
from processors.geo import METRES_PER_DEGREE, WardLocator

DEFAULT_LAMPS: Final = 5700
DEFAULT_WASTE_CONTAINERS: Final = 430
DEFAULT_TPS: Final = 50
DEFAULT_CABINET_SIZE: Final = (20, 40)
DEFAULT_LAMP_SPACING_M: Final = 40.0

LAMP_WATTAGES_W: Final = (60, 90, 120, 150)
"""Typical PJU LED ratings; a stretch uses one rating."""
LAMP_WATTAGE_WEIGHTS: Final = (4, 3, 2, 1)
"""SYNTHETIC: more small residential lights than large arterial ones."""
BIN_CAPACITIES_L: Final = (660, 1100)
"""Standard wheeled communal bins (EN 840 sizes)."""
TPS_CAPACITIES_L: Final = (6000, 10000)
"""6 m3 TPS containers and 10 m3 arm-roll containers."""

_COORD_DECIMALS: Final = 6
"""About 0.1 m: finer than any real GPS fix, coarse enough to keep the records short."""
_MAX_SAMPLE_ATTEMPTS: Final = 100_000
_MAX_TURNS: Final = 24


def _allocate(total: int, weights: Sequence[float], minimum: int = 0) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder), each >= ``minimum``.

    Largest remainder keeps the sum exact, which a per-ward ``round`` would not.
    """
    n = len(weights)
    rest = total - minimum * n
    if rest < 0:
        raise ValueError(f"total={total} is less than minimum={minimum} for each of {n} wards")
    weight_sum = sum(weights)
    quotas = [rest * w / weight_sum for w in weights]
    counts = [int(q) for q in quotas]
    leftover = rest - sum(counts)
    by_remainder = sorted(range(n), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[:leftover]:
        counts[i] += 1
    return [minimum + c for c in counts]


def _cabinet_sizes(n_lamps: int, size_range: tuple[int, int]) -> list[int]:
    """Split a ward's lamps into cabinets as even as possible within ``size_range``.

    A ward with fewer lamps than the minimum still gets one (small) cabinet.
    """
    if n_lamps <= 0:
        return []
    low, high = size_range
    k = max(1, round(n_lamps / ((low + high) / 2)))
    while math.ceil(n_lamps / k) > high:
        k += 1
    while k > 1 and n_lamps // k < low:
        k -= 1
    base, extra = divmod(n_lamps, k)
    return [base + 1 if i < extra else base for i in range(k)]


class _Placer:
    """Samples positions that the locator puts inside a given ward."""

    def __init__(self, locator: WardLocator) -> None:
        self._locator = locator

    def fits(self, code: str, lat: float, lon: float) -> bool:
        location = self._locator.locate(lat, lon)
        return (
            location is not None
            and location.method == "POINT_IN_POLYGON"
            and location.ward_code == code
        )

    def random_point(self, rng: random.Random, code: str) -> tuple[float, float]:
        min_lat, min_lon, max_lat, max_lon = self._locator.ward_bounds(code)
        for _ in range(_MAX_SAMPLE_ATTEMPTS):
            lat = round(rng.uniform(min_lat, max_lat), _COORD_DECIMALS)
            lon = round(rng.uniform(min_lon, max_lon), _COORD_DECIMALS)
            if self.fits(code, lat, lon):
                return (lat, lon)
        raise RuntimeError(f"could not place a point inside ward {code}")

    def road(
        self, rng: random.Random, code: str, n: int, spacing_m: float
    ) -> list[tuple[float, float]]:
        """``n`` points ``spacing_m`` apart along a wandering line inside the ward.

        When the next step would leave the ward the line turns; after too many turns it jumps
        to a fresh point (a side street of the same stretch).
        """
        lat, lon = self.random_point(rng, code)
        points = [(lat, lon)]
        bearing = rng.uniform(0.0, 2.0 * math.pi)
        turns = 0
        while len(points) < n:
            bearing += rng.uniform(-0.15, 0.15)  # gentle curvature
            dlat = spacing_m * math.cos(bearing) / METRES_PER_DEGREE
            dlon = spacing_m * math.sin(bearing) / (METRES_PER_DEGREE * math.cos(math.radians(lat)))
            nlat = round(lat + dlat, _COORD_DECIMALS)
            nlon = round(lon + dlon, _COORD_DECIMALS)
            if self.fits(code, nlat, nlon):
                lat, lon = nlat, nlon
                points.append((lat, lon))
                turns = 0
                continue
            turns += 1
            bearing = rng.uniform(0.0, 2.0 * math.pi)
            if turns > _MAX_TURNS:
                lat, lon = self.random_point(rng, code)
                points.append((lat, lon))
                turns = 0
        return points


def _asset(
    asset_id: str,
    kind: str,
    ward_code: str,
    location_name: str,
    point: tuple[float, float],
    *,
    cabinet_id: str | None = None,
    wattage: int | None = None,
    capacity: int | None = None,
) -> dict[str, Any]:
    return {
        "asset_id": asset_id,
        "asset_kind": kind,
        "ward_code": ward_code,
        "location_name": location_name,
        "latitude": point[0],
        "longitude": point[1],
        "cabinet_id": cabinet_id,
        "lamp_wattage_w": wattage,
        "container_capacity_l": capacity,
        "synthetic": True,
    }


def generate_asset_registry(
    ward_records: Sequence[Mapping[str, Any]],
    seed: int = ASSET_REGISTRY_SEED,
    lamps: int = DEFAULT_LAMPS,
    waste_containers: int = DEFAULT_WASTE_CONTAINERS,
    tps: int = DEFAULT_TPS,
    *,
    cabinet_size: tuple[int, int] = DEFAULT_CABINET_SIZE,
    lamp_spacing_m: float = DEFAULT_LAMP_SPACING_M,
) -> list[dict[str, Any]]:
    """A SYNTHETIC ``org.cityops.Asset`` list: lamps, then waste containers, then TPS.

    Deterministic for a seed. Each asset kind draws from its own random stream, so changing the
    number of containers does not move a single lamp. Ids: ``PJU-00001``, ``WC-0001``,
    ``TPS-001``, numbered in kelurahan-code order; cabinets ``CAB-<kelurahan code>-07``.
    """
    low, high = cabinet_size
    if not 1 <= low <= high:
        raise ValueError(f"cabinet_size={cabinet_size!r} must satisfy 1 <= low <= high")
    if min(lamps, waste_containers, tps) < 0:
        raise ValueError("asset counts must not be negative")
    wards = sorted(ward_records, key=lambda w: str(w["kelurahan_code"]))
    locator = WardLocator.from_ward_records(wards)
    codes = [str(w["kelurahan_code"]) for w in wards]
    missing = [c for c in codes if c not in locator.ward_codes]
    if missing:
        raise ValueError(f"wards without boundary_geojson cannot hold assets: {missing}")
    names = {str(w["kelurahan_code"]): str(w["kelurahan_name"]) for w in wards}
    areas = [locator.area_m2(c) for c in codes]
    placer = _Placer(locator)
    registry: list[dict[str, Any]] = []

    rng = random.Random(f"{seed}:lamps")
    number = 0
    for code, n_lamps in zip(codes, _allocate(lamps, areas), strict=True):
        for stretch, size in enumerate(_cabinet_sizes(n_lamps, cabinet_size), start=1):
            cabinet_id = f"CAB-{code}-{stretch:02d}"
            road_name = f"Ruas PJU {stretch:02d} {names[code]} (synthetic)"
            wattage = rng.choices(LAMP_WATTAGES_W, weights=LAMP_WATTAGE_WEIGHTS)[0]
            for point in placer.road(rng, code, size, lamp_spacing_m):
                number += 1
                registry.append(
                    _asset(
                        f"PJU-{number:05d}",
                        "LAMP",
                        code,
                        road_name,
                        point,
                        cabinet_id=cabinet_id,
                        wattage=wattage,
                    )
                )

    rng = random.Random(f"{seed}:containers")
    number = 0
    for code, n_bins in zip(codes, _allocate(waste_containers, areas), strict=True):
        for site in range(1, n_bins + 1):
            number += 1
            registry.append(
                _asset(
                    f"WC-{number:04d}",
                    "WASTE_CONTAINER",
                    code,
                    f"Bin site {site:02d} {names[code]} (synthetic)",
                    placer.random_point(rng, code),
                    capacity=rng.choice(BIN_CAPACITIES_L),
                )
            )

    rng = random.Random(f"{seed}:tps")
    number = 0
    minimum = 1 if tps >= len(codes) else 0
    for code, n_tps in zip(codes, _allocate(tps, areas, minimum=minimum), strict=True):
        for site in range(1, n_tps + 1):
            number += 1
            registry.append(
                _asset(
                    f"TPS-{number:03d}",
                    "TPS",
                    code,
                    f"TPS {site:02d} {names[code]} (synthetic)",
                    placer.random_point(rng, code),
                    capacity=rng.choice(TPS_CAPACITIES_L),
                )
            )
    return registry
