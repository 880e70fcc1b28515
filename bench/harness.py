"""What every benchmark step needs: a private topic namespace, worker processes, their metrics,
resident memory and CPU time, and consumer-group lag.

The benchmark shares the broker with tests and other runs, so everything it creates lives under
its own `CITYOPS_TOPIC_PREFIX` and app ids, and is deleted at the end (1M events leave several
hundred MB per topic set on the broker's disk).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from core.vocabulary import ASSET_REGISTRY_SEED
from topics.catalog import TopicSpec

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CITYOPS = [PYTHON, "-m", "cityops.cli"]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Namespace:
    """A private copy of the catalog's topics on the shared broker."""

    bootstrap: str
    prefix: str

    @classmethod
    def fresh(cls, bootstrap: str, label: str) -> Namespace:
        return cls(bootstrap, f"{label}-{uuid.uuid4().hex[:8]}.")

    def name(self, spec: TopicSpec) -> str:
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


def _group_id(group: Any) -> str:
    if isinstance(group, dict):
        return str(group.get("group_id") or group.get("group") or "")
    return str(group[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
    """One `cityops worker` child process in a namespace, with production settings except
    its ports, data directory and the ones passed in `extra_env`."""

    def __init__(self, namespace: Namespace, app_id: str, log_path: Path, data_dir: Path,
                 extra_env: Mapping[str, str] | None = None,
                 root: Path | None = None) -> None:
        self.root = root or ROOT
        self.namespace = namespace
        self.app_id = app_id
        self.log_path = log_path
        self.data_dir = data_dir
        self.extra_env = dict(extra_env or {})
        self.metrics_port = free_port()
        self.web_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ, "PYTHONUNBUFFERED": "1", **self.namespace.env,
            "CITYOPS_DATA_DIR": str(self.data_dir), "CITYOPS_WORKER_ID": self.app_id,
            **self.extra_env,
        }
        if self.root != ROOT:  # another checkout's worker (before/after comparisons)
            env["PYTHONPATH"] = str(self.root)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*CITYOPS, "worker", "--bootstrap", self.namespace.bootstrap, "--app-id",
                 self.app_id, "--metrics-port", str(self.metrics_port), "--web-port",
                 str(self.web_port), "--loglevel", "info"],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def usage(self) -> ProcessUsage:
        return process_usage(self.pid)

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=10) as response:
            text = response.read().decode()
        return [(s.name, dict(s.labels), float(s.value))
                for family in text_string_to_metric_families(text) for s in family.samples]

    def counters(self) -> Counters:
        totals = Counters()
        for name, _labels, value in self.samples():
            if name == "cityops_events_consumed_total":
                totals.consumed += value
            elif name == "cityops_events_enriched_total":
                totals.enriched += value
            elif name == "cityops_events_rejected_total":
                totals.rejected += value
            elif name == "cityops_events_aggregated_total":
                totals.aggregated += value
                totals.outcomes[_labels.get("outcome", "?")] = (
                    totals.outcomes.get(_labels.get("outcome", "?"), 0.0) + value)
            elif name == "cityops_worker_ready":
                totals.ready = value == 1.0
        return totals

    def wait_ready(self, timeout_s: float = 180.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if not self.running:
                raise RuntimeError(f"worker {self.app_id} exited; log: {self.log_tail()}")
            try:
                if self.counters().ready:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"worker {self.app_id} not ready in {timeout_s:.0f}s: "
                           f"{self.log_tail()}")

    def stop(self, timeout_s: float = 60.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

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
        committed = self.admin.list_group_offsets({self.group: None}).get(self.group, {})
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
