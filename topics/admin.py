"""Creates the catalog's topics and compares the broker's view with the catalog.

Uses kafka-python's admin client (the partner-side client), so topic management needs no
running worker. Creation is idempotent: an existing topic is reported, never recreated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from core.connection import kafka_python_security
from topics.catalog import TopicCatalog, TopicSpec

TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class PartitionReplicas:
    """Where one partition's copies are: its leader (-1: none, the partition is offline), the
    brokers assigned a replica, and those in sync (the ones an `acks=all` write waits for)."""

    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)

    def describe(self) -> str:
        return (f"p{self.partition} leader {self.leader} isr "
                f"{','.join(map(str, self.isr)) or '-'} of {','.join(map(str, self.replicas))}")


@dataclass(frozen=True)
class TopicCheck:
    """How one catalog topic looks on the broker."""

    name: str
    exists: bool
    partitions: int | None
    expected_partitions: int
    config_mismatches: dict[str, tuple[str, str | None]]
    expected_replication_factor: int = 1
    replicas: tuple[PartitionReplicas, ...] = ()

    @property
    def replication_factor(self) -> int | None:
        """The smallest replica count of its partitions (None when it does not exist)."""
        return min((len(p.replicas) for p in self.replicas), default=None)

    @property
    def under_replicated(self) -> tuple[PartitionReplicas, ...]:
        """Partitions with a replica out of sync: one more broker lost and they stop taking
        `acks=all` writes (or, offline, are unreadable)."""
        return tuple(p for p in self.replicas if p.under_replicated or p.leader < 0)

    @property
    def ok(self) -> bool:
        return (self.exists and self.partitions == self.expected_partitions
                and not self.config_mismatches
                and self.replication_factor == self.expected_replication_factor
                and not self.under_replicated)


def admin_client(bootstrap: str, **security: str) -> KafkaAdminClient:
    """`security` overrides the CITYOPS_SASL_* environment (core.connection)."""

    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="cityops-admin",
                            **{**kafka_python_security(), **security})


def create_topics(
    admin: KafkaAdminClient,
    specs: Iterable[TopicSpec] | None = None,
    replication_factor: int | None = None,
) -> list[tuple[str, str]]:
    """Create missing topics; returns (name, "created" | "exists") per topic.

    `specs` are deployed specs (`TopicCatalog.specs()`); by default the whole catalog as the
    environment's `CITYOPS_TOPIC_PREFIX` names it.
    """
    specs = TopicCatalog.from_env().specs() if specs is None else specs
    new = [
        NewTopic(
            spec.name, spec.partitions, replication_factor or spec.replication_factor,
            topic_configs=dict(spec.config),
        )
        for spec in specs
    ]
    response = admin.create_topics(new, raise_errors=False, wait_for_metadata=True)
    results: list[tuple[str, str]] = []
    for topic in response["topics"]:
        code = topic["error_code"]
        if code == 0:
            results.append((topic["name"], "created"))
        elif code == TOPIC_ALREADY_EXISTS:
            results.append((topic["name"], "exists"))
        else:
            raise RuntimeError(f"creating {topic['name']} failed: {topic['error_message']}")
    return results


def partition_replicas(admin: KafkaAdminClient, names: Sequence[str]
                       ) -> dict[str, tuple[PartitionReplicas, ...]]:
    """Leader, replicas and ISR of every partition of `names` (existing topics), by topic:
    what `describe` reports and what a fault run asks before and after it kills a broker."""
    return {
        topic["name"]: tuple(sorted(
            (PartitionReplicas(p["partition_index"], p["leader_id"], tuple(p["replica_nodes"]),
                               tuple(p["isr_nodes"]))
             for p in topic["partitions"]), key=lambda p: p.partition))
        for topic in admin.describe_topics(list(names))
    }


def describe_topics(admin: KafkaAdminClient,
                    specs: Iterable[TopicSpec] | None = None) -> list[TopicCheck]:
    """Partitions and catalog-managed settings of each topic, against the catalog."""
    specs = list(TopicCatalog.from_env().specs() if specs is None else specs)
    existing = set(admin.list_topics())
    present = [spec for spec in specs if spec.name in existing]
    partitions: dict[str, int] = {}
    replicas: dict[str, tuple[PartitionReplicas, ...]] = {}
    configs: dict[str, dict[str, str]] = {}
    if present:
        replicas = partition_replicas(admin, [spec.name for spec in present])
        partitions = {name: len(parts) for name, parts in replicas.items()}
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, spec.name) for spec in present]
        )
        for name, values in described["topic"].items():
            configs[name] = {key: value["value"] for key, value in values.items()}
    checks = []
    for spec in specs:
        actual = configs.get(spec.name, {})
        mismatches = {
            key: (want, actual.get(key))
            for key, want in spec.config.items()
            if spec.name in existing and actual.get(key) != want
        }
        checks.append(TopicCheck(spec.name, spec.name in existing, partitions.get(spec.name),
                                 spec.partitions, mismatches, spec.replication_factor,
                                 replicas.get(spec.name, ())))
    return checks
