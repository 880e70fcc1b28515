"""Publishes reference data (wards, the synthetic asset registry) to the compacted topics.

Keyed by kelurahan code or asset id, so publishing again replaces rather than duplicates, and
workers pick changes up live.
"""

from __future__ import annotations

from collections import Counter

from cityops.assets import generate_asset_registry
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
