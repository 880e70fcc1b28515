"""Publishes reference data (wards, the synthetic asset registry) to the compacted topics.

Keyed by kelurahan code or asset id, so publishing again replaces rather than duplicates, and
workers pick changes up live.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from cityops.assets import generate_asset_registry
from cityops.neighbourhoods import NEIGHBOURHOOD_REGISTRY_SEED, generate_registry, read_registry_csv
from cityops.producer import PartnerProducer
from core.reference_data import load_ward_records
from core.vocabulary import ASSET_REGISTRY_SEED


def publish_wards(bootstrap: str) -> int:
    records = load_ward_records()
    with PartnerProducer(bootstrap, client_id="cityops-reference") as producer:
        producer.send_many("org.cityops.Ward", records)
    return len(records)


def publish_assets(bootstrap: str, seed: int = ASSET_REGISTRY_SEED) -> dict[str, int]:
    assets = generate_asset_registry(load_ward_records(), seed=seed)
    with PartnerProducer(bootstrap, client_id="cityops-reference") as producer:
        producer.send_many("org.cityops.Asset", assets)
    return dict(Counter(str(asset["asset_kind"]) for asset in assets))


def publish_neighbourhoods(bootstrap: str, csv_path: Path | None = None,
                           seed: int = NEIGHBOURHOOD_REGISTRY_SEED) -> tuple[int, int, bool]:
    """Publish the RT registry: the SYNTHETIC one, or a real one read from `csv_path`.
    Returns (RT count, RW count, whether any record is synthetic)."""
    wards = load_ward_records()
    registry = (generate_registry(wards, seed) if csv_path is None
                else read_registry_csv(csv_path, wards))
    with PartnerProducer(bootstrap, client_id="cityops-reference") as producer:
        producer.send_many("org.cityops.Neighbourhood", registry)
    rws = {record["rt_code"].rsplit(".", 1)[0] for record in registry}
    return len(registry), len(rws), any(record["synthetic"] for record in registry)
