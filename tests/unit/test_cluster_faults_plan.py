"""The pure parts of the cluster fault run (bench/chaos.py --cluster): which broker is killed
first, and the deployment settings a namespace hands to its commands and workers."""

from __future__ import annotations

import pytest

from bench.chaos import CLUSTER_SETTINGS, most_leading_node
from bench.harness import Namespace

pytestmark = pytest.mark.unit


def test_the_broker_leading_the_most_input_partitions_is_killed_first() -> None:
    assert most_leading_node({1: 5, 2: 7, 3: 6}) == 2


def test_on_a_tie_the_lowest_node_id_is_chosen() -> None:
    assert most_leading_node({1: 6, 2: 6, 3: 6}) == 1
    assert most_leading_node({1: 4, 2: 7, 3: 7}) == 2


def test_a_cluster_namespace_gives_its_commands_and_workers_the_cluster_profile() -> None:
    namespace = Namespace.fresh("127.0.0.1:41092", "chaoscluster", parent_prefix="t.",
                                settings=CLUSTER_SETTINGS)
    assert namespace.env == {
        "CITYOPS_CATALOG_PROFILE": "cluster", "CITYOPS_WARD_PARTITIONS": "6",
        "CITYOPS_WORKERS": "2", "CITYOPS_TOPIC_PREFIX": namespace.prefix}
    assert namespace.prefix.startswith("t.chaoscluster-")


def test_a_plain_namespace_only_sets_its_prefix() -> None:
    namespace = Namespace.fresh("127.0.0.1:9092", "chaos", parent_prefix="")
    assert namespace.env == {"CITYOPS_TOPIC_PREFIX": namespace.prefix}
