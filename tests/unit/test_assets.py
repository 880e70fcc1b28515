"""Synthetic asset registry: determinism, exact counts, ids, and every asset in its own ward."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import load_schema
from fastavro.validation import validate

from cityops.assets import _allocate, _cabinet_sizes, generate_asset_registry
from core.reference_data import load_ward_records
from processors.geo import Location, WardLocator

pytestmark = pytest.mark.unit

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "avro"
WARDS = load_ward_records()
LOCATOR = WardLocator.from_ward_records(WARDS)
#: The seed the pinned values below were computed with (the registry default was 3672 then).
PINNED_SEED = 3672
REGISTRY = generate_asset_registry(WARDS, seed=PINNED_SEED)


def _of(kind: str, registry: list[dict[str, Any]] = REGISTRY) -> list[dict[str, Any]]:
    return [a for a in registry if a["asset_kind"] == kind]


def test_same_seed_gives_an_identical_registry() -> None:
    assert generate_asset_registry(WARDS, seed=PINNED_SEED) == REGISTRY
    assert generate_asset_registry(list(reversed(WARDS)), seed=PINNED_SEED) == REGISTRY


def test_different_seed_gives_a_different_registry_with_the_same_counts() -> None:
    other = generate_asset_registry(WARDS, seed=1)
    assert other != REGISTRY
    assert [a["asset_id"] for a in other] == [a["asset_id"] for a in REGISTRY]
    assert [(a["latitude"], a["longitude"]) for a in other] != [
        (a["latitude"], a["longitude"]) for a in REGISTRY
    ]


def test_first_lamp_is_pinned_for_a_seed() -> None:
    assert REGISTRY[0] == {
        "asset_id": "PJU-00001",
        "asset_kind": "LAMP",
        "ward_code": "36.72.01.1001",
        "location_name": "Ruas PJU 01 Cibeber (synthetic)",
        "latitude": -6.028068,
        "longitude": 106.071177,
        "cabinet_id": "CAB-36.72.01.1001-01",
        "lamp_wattage_w": 150,
        "container_capacity_l": None,
        "synthetic": True,
    }


def test_counts_are_exact() -> None:
    assert Counter(a["asset_kind"] for a in REGISTRY) == {
        "LAMP": 5700,
        "WASTE_CONTAINER": 430,
        "TPS": 50,
    }
    assert len({a["asset_id"] for a in REGISTRY}) == 6180


def test_ids_are_sequential_per_kind() -> None:
    assert [a["asset_id"] for a in _of("LAMP")] == [f"PJU-{n:05d}" for n in range(1, 5701)]
    assert [a["asset_id"] for a in _of("WASTE_CONTAINER")] == [f"WC-{n:04d}" for n in range(1, 431)]
    assert [a["asset_id"] for a in _of("TPS")] == [f"TPS-{n:03d}" for n in range(1, 51)]


def test_every_asset_locates_into_its_own_ward() -> None:
    wrong = [
        a["asset_id"]
        for a in REGISTRY
        if LOCATOR.locate(a["latitude"], a["longitude"])
        != Location(a["ward_code"], "POINT_IN_POLYGON", 0.0)
    ]
    assert wrong == []


def test_everything_is_marked_synthetic_and_fits_the_asset_schema() -> None:
    schema = load_schema(str(SCHEMA_DIR / "org.cityops.Asset.avsc"))
    assert [a["asset_id"] for a in REGISTRY if a["synthetic"] is not True] == []
    assert [a["asset_id"] for a in REGISTRY if not a["location_name"].endswith("(synthetic)")] == []
    assert all(validate(a, schema, strict=True) for a in REGISTRY)


def test_lamps_are_spread_by_area_over_all_43_kelurahan() -> None:
    per_ward = Counter(a["ward_code"] for a in _of("LAMP"))
    assert len(per_ward) == 43
    assert per_ward["36.72.06.1004"] == 413  # Gerem, the largest polygon
    assert per_ward["36.72.02.1004"] == 31  # Ketileng, the smallest


def test_cabinets_group_20_to_40_lamps_of_one_stretch() -> None:
    lamps = _of("LAMP")
    per_cabinet = Counter(a["cabinet_id"] for a in lamps)
    assert (len(per_cabinet), min(per_cabinet.values()), max(per_cabinet.values())) == (191, 24, 39)
    bad_ids = [
        c for c in per_cabinet if not re.fullmatch(r"CAB-36\.72\.0[1-8]\.10\d\d-\d\d", str(c))
    ]
    assert bad_ids == []
    assert [
        a["asset_id"] for a in lamps if not a["cabinet_id"].startswith(f"CAB-{a['ward_code']}-")
    ] == []
    names = {(a["cabinet_id"], a["location_name"], a["lamp_wattage_w"]) for a in lamps}
    assert len(names) == 191  # one road name and one wattage per cabinet


def test_lamps_along_a_stretch_stand_40_m_apart() -> None:
    lamps = _of("LAMP")
    gaps = [
        LOCATOR.distance_m(p["latitude"], p["longitude"], q["latitude"], q["longitude"])
        for p, q in itertools.pairwise(lamps)
        if p["cabinet_id"] == q["cabinet_id"]
    ]
    assert (len(gaps), sum(39.8 <= g <= 40.2 for g in gaps)) == (5509, 5509)


def test_wattages_and_capacities_are_typical_values() -> None:
    assert Counter(a["lamp_wattage_w"] for a in _of("LAMP")) == {
        60: 2399,
        90: 1681,
        120: 1006,
        150: 614,
    }
    assert Counter(a["container_capacity_l"] for a in _of("WASTE_CONTAINER")) == {
        660: 220,
        1100: 210,
    }
    assert Counter(a["container_capacity_l"] for a in _of("TPS")) == {6000: 24, 10000: 26}
    assert {
        (a["lamp_wattage_w"], a["cabinet_id"]) for a in REGISTRY if a["asset_kind"] != "LAMP"
    } == {(None, None)}


def test_every_kelurahan_has_a_tps_and_the_largest_have_two() -> None:
    per_ward = Counter(a["ward_code"] for a in _of("TPS"))
    assert len(per_ward) == 43
    assert sorted(c for c, n in per_ward.items() if n == 2) == [
        "36.72.03.1002",
        "36.72.03.1003",
        "36.72.03.1004",
        "36.72.04.1004",
        "36.72.04.1005",
        "36.72.06.1004",
        "36.72.08.1001",
    ]


def test_container_count_does_not_move_lamps() -> None:
    fewer = generate_asset_registry(WARDS, seed=PINNED_SEED, waste_containers=43, tps=0)
    assert _of("LAMP", fewer) == _of("LAMP")
    assert Counter(a["asset_kind"] for a in fewer) == {"LAMP": 5700, "WASTE_CONTAINER": 43}


def test_small_registry_for_tests() -> None:
    small = generate_asset_registry(WARDS, lamps=100, waste_containers=0, tps=0)
    per_cabinet = Counter(a["cabinet_id"] for a in small)
    assert (len(small), sum(per_cabinet.values())) == (100, 100)
    assert max(per_cabinet.values()) <= 40


def test_allocation_and_cabinet_split_helpers() -> None:
    assert _allocate(10, [1.0, 1.0, 1.0]) == [4, 3, 3]
    assert _allocate(5, [1.0, 3.0], minimum=2) == [2, 3]
    assert _cabinet_sizes(0, (20, 40)) == []
    assert _cabinet_sizes(10, (20, 40)) == [10]
    assert _cabinet_sizes(44, (20, 40)) == [22, 22]
    assert _cabinet_sizes(59, (20, 40)) == [30, 29]
    assert _cabinet_sizes(413, (20, 40)) == [30] * 7 + [29] * 7
    with pytest.raises(ValueError, match="less than minimum"):
        _allocate(1, [1.0, 1.0], minimum=1)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="cabinet_size"):
        generate_asset_registry(WARDS, cabinet_size=(40, 20))
    with pytest.raises(ValueError, match="must not be negative"):
        generate_asset_registry(WARDS, lamps=-1)
