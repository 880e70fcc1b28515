"""The topic catalog's promises: versioned names, compaction where the latest value is truth."""

from __future__ import annotations

import re

import pytest

from schemas.codec import default_catalog
from topics.catalog import CATALOG, WARD_PARTITIONS, Role

pytestmark = pytest.mark.unit


def test_every_topic_name_is_versioned_and_unique() -> None:
    names = [spec.name for spec in CATALOG]
    assert len(set(names)) == len(names) == 15
    assert all(re.fullmatch(r"city(\.[a-z]+)+\.v[0-9]+", name) for name in names)


def test_reference_and_situation_topics_are_compacted_and_others_delete() -> None:
    compacted = {spec.name for spec in CATALOG if spec.compacted}
    assert compacted == {"city.reference.wards.v1", "city.reference.assets.v1",
                         "city.situations.v1", "city.reference.neighbourhoods.v1",
                         "city.neighbourhood.indicators.v1"}
    assert all(spec.config["cleanup.policy"] == "delete" for spec in CATALOG
               if not spec.compacted)


def test_ward_keyed_topics_share_the_partition_count_of_the_state_table() -> None:
    ward_keyed = [spec for spec in CATALOG if spec.role in (Role.INPUT, Role.ENRICHED)]
    assert [spec.partitions for spec in ward_keyed] == [WARD_PARTITIONS] * 8


def test_every_value_schema_is_a_shipped_record() -> None:
    names = set(default_catalog().record_names())
    assert {spec.value_schema for spec in CATALOG} <= names
