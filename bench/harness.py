"""What every benchmark, chaos run and broker test needs: a private topic namespace, worker
processes, their metrics, resident memory and CPU time, records read back, consumer-group lag.

The benchmark shares the broker with tests and other runs, so everything it creates lives under
its own `CITYOPS_TOPIC_PREFIX` and app ids, and is deleted at the end (1M events leave several
hundred MB per topic set on the broker's disk).
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from cityops.producer import PartnerProducer
from core.vocabulary import ASSET_REGISTRY_SEED
from schemas.codec import decode
from topics import catalog
from topics.catalog import CatalogSettings, TopicCatalog, TopicSpec

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CITYOPS = [PYTHON, "-m", "cityops.cli"]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Namespace:
    """A private copy of the catalog's topics on the shared broker: the one helper the
    benchmarks, the chaos runs and the tests use to get topics, reference data, workers and
    records of their own."""

    bootstrap: str
    prefix: str

    @classmethod
    def fresh(cls, bootstrap: str, label: str, parent_prefix: str | None = None) -> Namespace:
        """A new namespace, nested in `parent_prefix` (default: this process's own
        CITYOPS_TOPIC_PREFIX, so a test's namespaces stay inside the test session's)."""
        parent = TopicCatalog.from_env().prefix if parent_prefix is None else parent_prefix
        return cls(bootstrap, f"{parent}{label}-{uuid.uuid4().hex[:8]}.")

    @classmethod
    def create(cls, bootstrap: str, label: str) -> Namespace:
        """`fresh` and `setup` in one step."""
        namespace = cls.fresh(bootstrap, label)
        namespace.setup()
        return namespace

    def name(self, spec: TopicSpec) -> str:
        """The namespace's name for a declared topic."""
        return self.prefix + spec.name

    @property
    def env(self) -> dict[str, str]:
        return {"CITYOPS_TOPIC_PREFIX": self.prefix}

    def cityops(self, *args: str, timeout_s: float = 300.0) -> str:
        result = subprocess.run(
            [*CITYOPS, *args, "--bootstrap", self.bootstrap], cwd=ROOT,
            env={**os.environ, **self.env}, capture_output=True, text=True,
            timeout=timeout_s, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"cityops {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def setup(self, asset_seed: int = ASSET_REGISTRY_SEED) -> None:
        """Topics, the 43 kelurahan and the SYNTHETIC asset registry, as an operator would
        create them."""
        self.cityops("topics", "create")
        self.cityops("wards", "load")
        self.cityops("assets", "load", "--seed", str(asset_seed))

    def teardown(self, app_ids: Iterable[str] = ()) -> list[str]:
        """Delete the namespace's topics, the workers' internal topics and consumer groups."""
        app_ids = list(app_ids)
        prefixes = (self.prefix, *(f"{app_id}-" for app_id in app_ids))
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="cityops-bench")
        try:
            doomed = [t for t in admin.list_topics() if t.startswith(prefixes)]
            if doomed:
                admin.delete_topics(doomed, timeout_ms=60_000)
            try:
                groups = {_group_id(g) for g in admin.list_groups()}
                stale = [g for g in groups if g in app_ids or g.startswith(self.prefix)]
                if stale:
                    admin.delete_groups(stale)
            except Exception:  # a group still shutting down: a harmless leftover
                pass
            return doomed
        finally:
            admin.close()

    # -- records in and out ------------------------------------------------------------------

    def producer(self) -> PartnerProducer:
        """A partner producer (validate, encode, key by the catalog) aimed at this namespace."""
        return PartnerProducer(self.bootstrap,
                               topics=TopicCatalog(CatalogSettings(self.prefix)))

    def send(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Partner events (schema short name, record), validated and encoded as a partner's
        producer does, onto this namespace's input topics."""
        with self.producer() as producer:
            for schema, record in events:
                producer.send(schema, record)

    def send_raw(self, spec: TopicSpec, key: bytes | None, value: bytes | None) -> None:
        with self.producer() as producer:
            producer.send_raw(self.name(spec), key, value)

    def read(self, spec: TopicSpec, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Every record now on one of this namespace's topics, decoded, in partition order."""
        return [decode(record.value, expected=spec.value_schema).record
                for record in read_records(self.bootstrap, self.name(spec), timeout_s)]

    def read_situations(self) -> list[dict[str, Any]]:
        return self.read(catalog.SITUATIONS)

    def records(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Every SituationEvent on the topic, by (scope code, sequence)."""
        return {(value["scope_code"], value["sequence"]): value
                for value in self.read(catalog.SITUATIONS)}

    def worker(self, app_id: str, log_path: Path, data_dir: Path, **env: str) -> Worker:
        """A worker as the tests that assert exact situation sequences run it: each ward
        evaluated after every event (a ward batch of 1, the per-event sequence), no periodic
        snapshot, rollups every 0.5 s, warnings only in its log."""
        settings = {"CITYOPS_WARD_BATCH": "1", "CITYOPS_SNAPSHOT_INTERVAL_S": "0",
                    "CITYOPS_ROLLUP_INTERVAL_S": "0.5", **env}
        return Worker(self, app_id, log_path, data_dir, extra_env=settings, loglevel="warning")


def read_records(bootstrap: str, topic: str, timeout_s: float = 120.0) -> list[ConsumerRecord]:
    """Every committed record of `topic` up to the (last stable) end offsets seen now, in
    partition then offset order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed",  # what downstream readers see
                             max_partition_fetch_bytes=4 * 1024 * 1024,
                             fetch_max_bytes=64 * 1024 * 1024)
    try:
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: dict[int, list[ConsumerRecord]] = defaultdict(list)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} did not reach the end offsets")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records[tp.partition].extend(r for r in batch if r.offset < ends[tp])
        return [r for p in sorted(records) for r in records[p]]
    finally:
        consumer.close()


def _group_id(group: Any) -> str:
    if isinstance(group, dict):
        return str(group.get("group_id") or group.get("group") or "")
    return str(group[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], object], timeout_s: float = 60.0,
               what: str = "condition") -> None:
    """Poll `predicate` every 0.5 s until it is true; AssertionError naming `what` after
    `timeout_s`: what every broker test waits with."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not reached in {timeout_s:.0f}s")


@dataclass
class ProcessUsage:
    """CPU seconds (user + system) and resident memory of one process, read from /proc."""

    cpu_s: float
    rss_bytes: int


def process_usage(pid: int) -> ProcessUsage:
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name (which may contain spaces) start after the last ")".
    fields = stat[stat.rindex(")") + 2:].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return ProcessUsage(cpu_s, rss)


def broker_pid() -> int | None:
    """The local broker's pid (cityops/broker.py keeps it in var/kafka/broker.pid)."""
    try:
        pid = int((ROOT / "var" / "kafka" / "broker.pid").read_text().strip())
        Path(f"/proc/{pid}/stat").read_text()
        return pid
    except (OSError, ValueError):
        return None


class Worker:
    """One `cityops worker` child process in a namespace, restartable under the same app id:
    production settings except its ports, data directory and `extra_env`."""

    def __init__(self, namespace: Namespace, app_id: str, log_path: Path,
                 data_dir: Path | None = None, extra_env: Mapping[str, str] | None = None,
                 root: Path | None = None, loglevel: str = "info",
                 worker_id: str | None = None, command: Sequence[str] | None = None) -> None:
        self.root = root or ROOT
        self.namespace = namespace
        self.app_id = app_id
        self.worker_id = worker_id or app_id
        self.log_path = log_path
        self.data_dir = data_dir
        self.extra_env = dict(extra_env or {})
        self.loglevel = loglevel
        self.command = list(command or CITYOPS)
        self.metrics_port = free_port()
        self.web_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Worker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ, "PYTHONUNBUFFERED": "1", **self.namespace.env,
            "CITYOPS_WORKER_ID": self.worker_id,
            **({"CITYOPS_DATA_DIR": str(self.data_dir)} if self.data_dir else {}),
            **self.extra_env,
        }
        if self.root != ROOT:  # another checkout's worker (before/after comparisons)
            env["PYTHONPATH"] = str(self.root)
        with self.log_path.open("ab") as log:
            if self.starts:
                log.write(f"\n===== start {self.starts + 1} at "
                          f"{datetime.now(UTC).isoformat()}\n".encode())
                log.flush()
            self.process = subprocess.Popen(
                [*self.command, "worker", "--bootstrap", self.namespace.bootstrap, "--app-id",
                 self.app_id, "--metrics-port", str(self.metrics_port), "--web-port",
                 str(self.web_port), "--loglevel", self.loglevel],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def usage(self) -> ProcessUsage:
        return process_usage(self.pid)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=10) as response:
            text: str = response.read().decode()
            return text

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        from prometheus_client.parser import text_string_to_metric_families

        return [(s.name, dict(s.labels), float(s.value))
                for family in text_string_to_metric_families(self.metrics_text())
                for s in family.samples]

    def metric(self, name: str, **labels: str) -> float | None:
        """The first sample of `name` whose labels include `labels`; None when there is none."""
        for sample, have, value in self.samples():
            if sample == name and all(have.get(k) == v for k, v in labels.items()):
                return value
        return None

    def metric_sum(self, name: str, **labels: str) -> float:
        """Sum of every sample of `name` whose labels include `labels` (0 when none)."""
        return sum(value for sample, have, value in self.samples()
                   if sample == name and all(have.get(k) == v for k, v in labels.items()))

    def counters(self) -> Counters:
        totals = Counters()
        for name, labels, value in self.samples():
            if name == "cityops_events_consumed_total":
                totals.consumed += value
            elif name == "cityops_events_enriched_total":
                totals.enriched += value
            elif name == "cityops_events_rejected_total":
                totals.rejected += value
            elif name == "cityops_events_aggregated_total":
                totals.aggregated += value
                outcome = labels.get("outcome", "?")
                totals.outcomes[outcome] = totals.outcomes.get(outcome, 0.0) + value
            elif name == "cityops_worker_ready":
                totals.ready = value == 1.0
        return totals

    def wait_ready(self, timeout_s: float = 180.0) -> float:
        """Seconds until the worker reports ready (reference data read, agents running)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if not self.running:
                raise RuntimeError(f"worker {self.app_id} exited with {self.exit_code()}; "
                                   f"log: {self.log_tail()}")
            try:
                if self.metric_sum("cityops_worker_ready") == 1.0:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"worker {self.app_id} not ready in {timeout_s:.0f}s; "
                           f"log: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed or committed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_s: float = 60.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Worker:
        """Started and ready; stopped again if it never gets ready."""
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Counters:
    """Sums over labels of the worker counters a drain is judged by."""

    consumed: float = 0.0
    enriched: float = 0.0
    rejected: float = 0.0
    aggregated: float = 0.0
    ready: bool = False
    outcomes: dict[str, float] = field(default_factory=dict)

    def __add__(self, other: Counters) -> Counters:
        outcomes = dict(self.outcomes)
        for key, value in other.outcomes.items():
            outcomes[key] = outcomes.get(key, 0.0) + value
        return Counters(self.consumed + other.consumed, self.enriched + other.enriched,
                        self.rejected + other.rejected, self.aggregated + other.aggregated,
                        self.ready and other.ready, outcomes)


def committed_by_app(admin: KafkaAdminClient, app_id: str) -> dict[TopicPartition, Any]:
    """What the worker app `app_id` committed: partner topics in its batch hop's group, the
    rest in its Faust group (a partner topic the Faust group read before the hop existed counts
    with the higher of the two)."""
    from streams.runtime.batch_hop import hop_group

    found: dict[TopicPartition, Any] = {}
    for group in (app_id, hop_group(app_id)):
        for tp, meta in admin.list_group_offsets({group: None}).get(group, {}).items():
            if meta is None or meta.offset < 0:
                continue
            if tp not in found or found[tp].offset < meta.offset:
                found[tp] = meta
    return found


def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             client_id="cityops-bench")
    try:
        partitions = [TopicPartition(t, p) for t in topics
                      for p in sorted(consumer.partitions_for_topic(t) or [])]
        ends: dict[TopicPartition, int] = consumer.end_offsets(partitions)
        return ends
    finally:
        consumer.close()


class LagProbe:
    """Consumer-group lag (end offset minus committed offset) on a fixed set of topics."""

    def __init__(self, bootstrap: str, group: str, topics: Sequence[str]) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.topics = list(topics)
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="cityops-bench")
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      client_id="cityops-bench")
        self.partitions = [TopicPartition(t, p) for t in self.topics
                           for p in sorted(self.consumer.partitions_for_topic(t) or [])]

    def lag(self) -> int:
        ends: dict[TopicPartition, int] = self.consumer.end_offsets(self.partitions)
        committed = committed_by_app(self.admin, self.group)
        total = 0
        for tp, end in ends.items():
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            total += max(0, end - done)
        return total

    def close(self) -> None:
        self.admin.close()
        self.consumer.close()


def machine() -> dict[str, Any]:
    """Cores, RAM, CPU model, kernel, Python, load: where the figures come from."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
