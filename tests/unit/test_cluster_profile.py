"""The cluster profile of the catalog and the three-node broker configuration, without a broker.

A replicated deployment is only as safe as its settings: RF 3 with min ISR 2 on every topic
(including Faust's changelog), the partition count of the shared topics taken from the
deployment and refused when a worker would idle, and three nodes whose ports and quorum
derive from one base port.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cityops.broker import BrokerConfig, BrokerError, Node, server_properties
from topics.admin import PartitionReplicas, TopicCheck
from topics.catalog import (
    INCIDENTS,
    INCIDENTS_ENRICHED,
    SITUATIONS,
    WARDS,
    CatalogError,
    CatalogSettings,
    Profile,
    TopicCatalog,
)

pytestmark = pytest.mark.unit

CLUSTER = {"CITYOPS_CATALOG_PROFILE": "cluster", "CITYOPS_WARD_PARTITIONS": "12",
           "CITYOPS_WORKERS": "4", "CITYOPS_TOPIC_PREFIX": "t."}


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_cluster_profile_replicates_every_topic_three_times_with_min_isr_two() -> None:
    catalog = TopicCatalog.from_env(CLUSTER)
    assert catalog.settings == CatalogSettings("t.", Profile.CLUSTER, 12, 4)
    assert {(spec.replication_factor, spec.config["min.insync.replicas"]) for spec in catalog
            } == {(3, "2")}
    assert catalog.settings.replication_configs == {"min.insync.replicas": "2"}


def test_partition_count_of_the_deployment_applies_to_input_and_enriched_topics_only() -> None:
    catalog = TopicCatalog.from_env(CLUSTER)
    assert [(spec.name, spec.partitions) for spec in catalog.specs(
        (INCIDENTS, INCIDENTS_ENRICHED, WARDS, SITUATIONS))] == [
        ("t.city.incidents.v1", 12), ("t.city.incidents.enriched.v1", 12),
        ("t.city.reference.wards.v1", 1), ("t.city.situations.v1", 3)]
    assert catalog.ward_partitions == 12


def test_single_profile_keeps_the_declared_topics_unchanged() -> None:
    catalog = TopicCatalog.from_env({})
    assert catalog.specs() == TopicCatalog().specs()
    assert [(s.replication_factor, s.partitions, s.config) for s in catalog.specs((INCIDENTS,))
            ] == [(1, 6, INCIDENTS.config)]
    assert catalog.settings.replication_configs == {}


def test_more_workers_than_partitions_is_refused_with_the_setting_to_change() -> None:
    with pytest.raises(CatalogError) as raised:
        CatalogSettings.from_env({"CITYOPS_WARD_PARTITIONS": "6", "CITYOPS_WORKERS": "8"})
    assert str(raised.value) == (
        "the ward-keyed topics have 6 partitions but the largest consumer group has 8 workers: "
        "2 would get no partition and idle; set CITYOPS_WARD_PARTITIONS to at least 8 (or run "
        "fewer workers)")


@pytest.mark.parametrize(("env", "message"), [
    ({"CITYOPS_CATALOG_PROFILE": "triple"},
     "CITYOPS_CATALOG_PROFILE='triple': expected one of single, cluster"),
    ({"CITYOPS_WARD_PARTITIONS": "six"}, "CITYOPS_WARD_PARTITIONS='six' is not a whole number"),
    ({"CITYOPS_WARD_PARTITIONS": "0"}, "CITYOPS_WARD_PARTITIONS must be at least 1, not 0"),
    ({"CITYOPS_WORKERS": "0"}, "CITYOPS_WORKERS must be at least 1, not 0"),
])
def test_unusable_deployment_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(CatalogError) as raised:
        CatalogSettings.from_env(env)
    assert str(raised.value) == message


def test_three_nodes_derive_ports_and_folders_from_the_base_port(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    monkeypatch.setenv("CITYOPS_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("CITYOPS_KAFKA_HEAP_MB", raising=False)
    monkeypatch.delenv("CITYOPS_KAFKA_CONTROLLER_PORT", raising=False)
    config = BrokerConfig.from_env(39092, nodes=3)
    assert config.heap_mb == 384
    assert config.node_list() == [
        Node(1, 39092, 39093, tmp_path / "kafka-cluster" / "node-1"),
        Node(2, 39094, 39095, tmp_path / "kafka-cluster" / "node-2"),
        Node(3, 39096, 39097, tmp_path / "kafka-cluster" / "node-3"),
    ]
    assert config.bootstrap == "127.0.0.1:39092,127.0.0.1:39094,127.0.0.1:39096"
    assert BrokerConfig.from_env(39092).node_list() == [
        Node(1, 39092, 39093, tmp_path / "kafka")]


def test_each_node_is_a_voter_of_one_quorum_and_kafkas_topics_replicate() -> None:
    config = BrokerConfig(port=39092, nodes=3)
    node = config.node_list()[1]
    props = properties(server_properties(config, Path("/d2"), node=node))
    assert {key: props[key] for key in (
        "node.id", "controller.quorum.voters", "listeners", "advertised.listeners",
        "default.replication.factor", "min.insync.replicas", "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr", "unclean.leader.election.enable", "log.dirs",
    )} == {
        "node.id": "2",
        "controller.quorum.voters": "1@127.0.0.1:39093,2@127.0.0.1:39095,3@127.0.0.1:39097",
        "listeners": "PLAINTEXT://127.0.0.1:39094,CONTROLLER://127.0.0.1:39095",
        "advertised.listeners": "PLAINTEXT://127.0.0.1:39094",
        "default.replication.factor": "3", "min.insync.replicas": "2",
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3", "transaction.state.log.min.isr": "2",
        "share.coordinator.state.topic.replication.factor": "3",
        "share.coordinator.state.topic.min.isr": "2",
        "unclean.leader.election.enable": "false", "log.dirs": "/d2",
    }
    # Static voters only: Kafka 4.1 refuses them mixed with controller.quorum.bootstrap.servers.
    assert "controller.quorum.bootstrap.servers" not in props


def test_the_single_node_has_no_cluster_settings() -> None:
    props = properties(server_properties(BrokerConfig(), Path("/d")))
    assert ("default.replication.factor" in props, props["controller.quorum.voters"],
            props["offsets.topic.replication.factor"]) == (False, "1@127.0.0.1:9093", "1")


def test_a_secured_cluster_is_refused() -> None:
    with pytest.raises(BrokerError) as raised:
        BrokerConfig.from_env(39092, secure=True, nodes=3)
    assert str(raised.value) == ("--secure runs on the single node only; start the cluster "
                                 "without it")


def test_describe_counts_an_out_of_sync_or_leaderless_partition_as_under_replicated() -> None:
    replicas = (PartitionReplicas(0, 1, (1, 2, 3), (1, 2, 3)),
                PartitionReplicas(1, 3, (2, 3, 1), (3, 1)),
                PartitionReplicas(2, -1, (1, 2, 3), ()))
    check = TopicCheck("t", True, 3, 3, {}, 3, replicas)
    assert (check.replication_factor, check.under_replicated, check.ok) == (
        3, replicas[1:], False)
    assert [p.describe() for p in check.under_replicated] == [
        "p1 leader 3 isr 3,1 of 2,3,1", "p2 leader -1 isr - of 1,2,3"]
    assert TopicCheck("t", True, 3, 3, {}, 3, replicas[:1]).ok is True


def test_the_workers_changelog_replicates_and_partitions_like_the_catalog() -> None:
    """Faust declares the ward table's changelog itself: in the cluster profile it must be as
    durable as the catalog's topics (RF 3 via `topic_replication_factor`, which Faust's
    `Topic.maybe_declare` falls back to, and min ISR 2) and co-partitioned with the enriched
    topics at the deployment's partition count."""
    from streams.context import STATE_RECORD_MAX_BYTES, WorkerContext
    from streams.settings import WorkerSettings
    from streams.ward_aggregator import WardAggregator

    settings = replace(WorkerSettings(), catalog=CatalogSettings("", Profile.CLUSTER, 12, 2))
    context = WorkerContext(settings)
    changelog = WardAggregator(context).table.changelog_topic
    assert (context.app.conf.topic_replication_factor, context.app.conf.topic_partitions,
            changelog.partitions, dict(changelog.config or {})) == (
        3, 12, 12, {"max.message.bytes": str(STATE_RECORD_MAX_BYTES),
                    "min.insync.replicas": "2"})


def test_a_new_cluster_id_never_reads_as_an_option() -> None:
    from cityops.broker import _new_cluster_id

    ids = [_new_cluster_id() for _ in range(2_000)]
    assert [i for i in ids if i.startswith("-") or len(i) != 22] == []
