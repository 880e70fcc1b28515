"""The three-node cluster on the real jars: one broker SIGKILLed, nothing acknowledged is lost.

Starts its own cluster (`cityops broker start --nodes 3`) on free ports in a private var
directory, so the shared single broker of the other tests is never touched. The catalog's
cluster profile creates the topics (RF 3, min ISR 2); an `acks=all` producer writes before and
while one node is down; a consumer reads every record back; the node restarts and rejoins the
ISR of every partition; `cityops broker stop` leaves no process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.harness import free_base_port
from bench.harness import process_alive as alive
from tests.conftest import ROOT
from topics import catalog
from topics.admin import admin_client, describe_topics
from topics.catalog import TopicCatalog

pytestmark = pytest.mark.integration

NODES = 3


class Cluster:
    def __init__(self, var_dir: Path, base: int, prefix: str) -> None:
        self.var_dir = var_dir
        self.base = base
        self.bootstrap = ",".join(f"127.0.0.1:{base + 2 * i}" for i in range(NODES))
        self.env = {**os.environ, "CITYOPS_VAR_DIR": str(var_dir),
                    "CITYOPS_CATALOG_PROFILE": "cluster", "CITYOPS_TOPIC_PREFIX": prefix,
                    "CITYOPS_WARD_PARTITIONS": "6", "CITYOPS_WORKERS": "2"}
        self.catalog = TopicCatalog.from_env(self.env)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cityops.cli", *args], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=300,
                              check=False)

    def broker(self, action: str) -> subprocess.CompletedProcess[str]:
        return self.cli("broker", action, "--nodes", str(NODES), "--port", str(self.base))

    def pid(self, node_id: int) -> int:
        return int((self.var_dir / "kafka-cluster" / f"node-{node_id}" / "broker.pid")
                   .read_text())

    def isr(self) -> dict[tuple[str, int], tuple[tuple[int, ...], tuple[int, ...]]]:
        """(topic, partition) -> (replicas, ISR) of every catalog topic."""
        admin = admin_client(self.bootstrap)
        try:
            return {(check.name, p.partition): (tuple(sorted(p.replicas)), tuple(sorted(p.isr)))
                    for check in describe_topics(admin, self.catalog.specs())
                    for p in check.replicas}
        finally:
            admin.close()

    def wait_isr(self, expected: tuple[int, ...], timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            seen = {isr for _, isr in self.isr().values()}
            if seen == {expected} or time.monotonic() > deadline:
                assert seen == {expected}
                return
            time.sleep(1.0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("cluster-var"), free_base_port(NODES),
                      f"cluster-{os.getpid()}.")
    started = running.broker("start")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield running
    finally:
        running.broker("stop")


def send(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=20,
                             request_timeout_ms=15000)
    try:
        for value in values:
            producer.send(topic, key=value, value=value).get(timeout=60)
    finally:
        producer.close()


def read_all(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        values: list[bytes] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                values.extend(record.value for record in batch)
        return values
    finally:
        consumer.close()


def test_one_node_lost_keeps_acks_all_writes_and_reads_then_it_rejoins_the_isr(
        cluster: Cluster) -> None:
    status = cluster.broker("status")
    assert (status.returncode, status.stdout.splitlines()[0]) == (
        0, f"running (3/3 nodes, {cluster.bootstrap})")
    created = cluster.cli("topics", "create", "--bootstrap", cluster.bootstrap)
    assert created.returncode == 0, created.stderr
    described = cluster.cli("topics", "describe", "--bootstrap", cluster.bootstrap)
    assert described.returncode == 0, described.stdout + described.stderr
    # every topic: replication factor 3 of 3, no under-replicated partition, settings as declared
    assert [line.split()[-3:] for line in described.stdout.splitlines()[1:]] == [
        ["3/3", "0", "ok"]] * len(catalog.CATALOG)
    cluster.wait_isr((1, 2, 3))
    incidents = cluster.catalog.spec(catalog.INCIDENTS)
    before = [f"before-{i}".encode() for i in range(60)]
    send(cluster.bootstrap, incidents.name, before)

    os.kill(cluster.pid(2), signal.SIGKILL)
    during = [f"during-{i}".encode() for i in range(60)]
    send(cluster.bootstrap, incidents.name, during)  # min ISR 2: two copies are enough
    assert sorted(read_all(cluster.bootstrap, incidents.name, incidents.partitions)) == sorted(
        before + during)
    cluster.wait_isr((1, 3))
    degraded = cluster.cli("topics", "describe", "--bootstrap", cluster.bootstrap)
    assert degraded.returncode == 1
    assert degraded.stdout.count("under-replicated: ") == sum(
        spec.partitions for spec in cluster.catalog)
    status = cluster.broker("status")
    assert (status.returncode, status.stdout.splitlines()[0], status.stdout.splitlines()[2]) == (
        1, f"degraded (2/3 nodes, {cluster.bootstrap})",
        f"node 2 127.0.0.1:{cluster.base + 2}: stopped")

    restarted = cluster.broker("start")
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.startswith("started node 2 (pid ")
    cluster.wait_isr((1, 2, 3))
    healthy = cluster.cli("topics", "describe", "--bootstrap", cluster.bootstrap)
    assert (healthy.returncode, healthy.stdout.count("under-replicated")) == (0, 0)
    assert sorted(read_all(f"127.0.0.1:{cluster.base + 2}", incidents.name,
                           incidents.partitions)) == sorted(before + during)


def test_stop_ends_every_node_and_removes_their_pid_files(cluster: Cluster) -> None:
    pids = [cluster.pid(n) for n in (1, 2, 3)]
    stopped = cluster.broker("stop")
    assert stopped.stdout.strip() == "; ".join(f"stopped (pid {pid})" for pid in pids)
    assert list((cluster.var_dir / "kafka-cluster").glob("node-*/broker.pid")) == []
    assert [alive(pid) for pid in pids] == [False] * 3
    assert cluster.broker("status").stdout.splitlines()[0] == (
        f"stopped (0/3 nodes, {cluster.bootstrap})")
