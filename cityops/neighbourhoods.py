"""SYNTHETIC neighbourhood registry: every RW and RT of the 43 kelurahan of Kota Cilegon.

No public list of Cilegon's RW and RT (or their count per kelurahan) was found in
`shared/data`, so `cityops neighbourhoods load` publishes a generated one. Every record carries
``synthetic=True``. Only the scale is chosen to be plausible; nothing else is a fact:

* RW per kelurahan: drawn uniformly from 8 to 20 (SYNTHETIC ASSUMPTION);
* RT per RW: drawn uniformly from 3 to 8 (SYNTHETIC ASSUMPTION).

With the default seed that gives 628 RW and 3,407 RT, "a few thousand RT" as issue 13 asks:
about 141 residents per RT for the city's 480,378 residents
(core/data/cilegon_kecamatan.csv), which is the order of size of an RT.

A real register loads from a CSV with the columns of `CSV_COLUMNS` (the same as the Avro
record): `cityops neighbourhoods load --csv FILE`; its rows are taken as they are
(``synthetic`` defaults to false) after the same checks the generator's output passes.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

NEIGHBOURHOOD_REGISTRY_SEED: Final = 13
RW_PER_KELURAHAN: Final = (8, 20)
RT_PER_RW: Final = (3, 8)
CSV_COLUMNS: Final = ("rt_code", "kelurahan_code", "kecamatan_code", "rw", "rt", "synthetic")


class RegistryError(ValueError):
    """A registry row is malformed or names an unknown kelurahan; the message says which."""


def rt_code(kelurahan_code: str, rw: int | str, rt: int | str) -> str:
    """`<kelurahan code>.<RW, 3 digits>.<RT, 3 digits>`, e.g. 36.72.01.1001.003.007."""
    return f"{kelurahan_code}.{int(rw):03d}.{int(rt):03d}"


def generate_registry(ward_records: Sequence[Mapping[str, Any]],
                      seed: int = NEIGHBOURHOOD_REGISTRY_SEED) -> list[dict[str, Any]]:
    """A SYNTHETIC `org.cityops.Neighbourhood` list in kelurahan, RW, RT order;
    deterministic for a seed."""
    rng = random.Random(f"{seed}:neighbourhoods")
    registry = []
    for ward in sorted(ward_records, key=lambda w: str(w["kelurahan_code"])):
        code = str(ward["kelurahan_code"])
        for rw in range(1, rng.randint(*RW_PER_KELURAHAN) + 1):
            for rt in range(1, rng.randint(*RT_PER_RW) + 1):
                registry.append({
                    "rt_code": rt_code(code, rw, rt), "kelurahan_code": code,
                    "kecamatan_code": str(ward["kecamatan_code"]), "rw": f"{rw:03d}",
                    "rt": f"{rt:03d}", "synthetic": True,
                })
    return registry


def read_registry_csv(path: Path, ward_records: Sequence[Mapping[str, Any]]
                      ) -> list[dict[str, Any]]:
    """A registry from a CSV with `CSV_COLUMNS` (a real one: `synthetic` may be blank).

    Each row's rt_code must be the one its kelurahan, RW and RT make, and its kelurahan and
    kecamatan must be a ward of the city: a registry that disagrees with the wards would leave
    RTs whose reports are never placed.
    """
    kecamatan_of = {str(w["kelurahan_code"]): str(w["kecamatan_code"]) for w in ward_records}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(CSV_COLUMNS) - {"synthetic"} - set(reader.fieldnames or ())
        if missing:
            raise RegistryError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        rows = list(reader)
    registry = []
    for line, row in enumerate(rows, start=2):
        code = row["kelurahan_code"].strip()
        if kecamatan_of.get(code) != row["kecamatan_code"].strip():
            raise RegistryError(f"{path}:{line}: kelurahan {code} / kecamatan "
                                f"{row['kecamatan_code']} is not a ward of the city")
        try:
            expected = rt_code(code, row["rw"], row["rt"])
        except ValueError:
            raise RegistryError(f"{path}:{line}: rw and rt must be numbers") from None
        if row["rt_code"].strip() != expected:
            raise RegistryError(f"{path}:{line}: rt_code {row['rt_code']} should be {expected}")
        registry.append({
            "rt_code": expected, "kelurahan_code": code, "kecamatan_code": kecamatan_of[code],
            "rw": expected.split(".")[-2], "rt": expected.split(".")[-1],
            "synthetic": (row.get("synthetic") or "").strip().lower() in ("true", "1", "yes"),
        })
    if len({r["rt_code"] for r in registry}) != len(registry):
        raise RegistryError(f"{path}: an rt_code appears twice")
    return registry


def write_registry_csv(registry: Sequence[Mapping[str, Any]], path: Path) -> None:
    """The CSV form `read_registry_csv` reads (to hand the synthetic registry to a kelurahan
    office as a template to correct)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for record in registry:
            writer.writerow({name: str(record[name]).lower() if name == "synthetic"
                             else record[name] for name in CSV_COLUMNS})
