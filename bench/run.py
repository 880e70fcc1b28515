"""One benchmark run, every figure from the same run: machine, codec, ceiling, pipeline drain,
memory, latency at fixed loads and scale-out. See bench/__main__.py for the command line.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from bench import ceiling, codec_bench, footprint, latency, verify
from bench.feed import DEFAULT_SPAN, BatchSender, Encoded, Feed, FeedStats, encode_all, utc_now_ms
from bench.harness import (
    ROOT,
    LagProbe,
    Namespace,
    Worker,
    broker_pid,
    machine,
)
from bench.pipeline import DrainResult, drain
from cityops.simulator import SimEvent
from topics import catalog
from topics.event_types import SHARED_INPUT_TOPICS

MIB = 1024 * 1024


@dataclass
class Config:
    bootstrap: str = "127.0.0.1:9092"
    events: int = 1_000_000
    long: bool = False
    smoke: bool = False
    span: timedelta = DEFAULT_SPAN
    loads: tuple[int, ...] = (1_000, 5_000, 10_000)
    load_seconds: float = 30.0
    scale_events: int = 300_000
    verify: bool = False
    skip: frozenset[str] = frozenset()
    #: How long a drain may take; None: an hour, or 2 ms per event when that is longer (a
    #: 10M-event drain at ~2,400 events/s took more than the hour that used to be fixed).
    drain_timeout_s: float | None = None
    work_dir: Path = field(default_factory=lambda: ROOT / "var" / "bench")
    command: str = ""
    worker_root: Path | None = None
    """Run the workers from another checkout (a before/after comparison); None: this one."""

    def timeout_for(self, events: int) -> float:
        if self.drain_timeout_s is not None:
            return self.drain_timeout_s
        return max(3600.0, events * 0.002)

    @classmethod
    def smoke_config(cls, bootstrap: str) -> Config:
        return cls(bootstrap=bootstrap, events=3_000, smoke=True, span=timedelta(minutes=20),
                   loads=(200,), load_seconds=4.0, scale_events=2_000, verify=True,
                   drain_timeout_s=300.0)


class Run:
    def __init__(self, config: Config, log: Callable[[str], None] = print) -> None:
        self.config = config
        self.log = log
        self.run_id = uuid.uuid4().hex[:8]
        self.feed = Feed()
        self.namespaces: list[tuple[Namespace, list[str]]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="cityops-bench-"))
        config.work_dir.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Any] = {
            "command": config.command,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "mode": "smoke" if config.smoke else ("long" if config.long else "default"),
            "machine": machine(),
            "broker": "Apache Kafka 4.1.1, single node on this machine (cityops broker)",
            "broker_pid_start": broker_pid(),
            "worker_root": str(config.worker_root or ROOT),
        }

    # -- helpers -------------------------------------------------------------------------------

    def namespace(self, label: str) -> Namespace:
        ns = Namespace.fresh(self.config.bootstrap, f"bench-{self.run_id}-{label}")
        self.namespaces.append((ns, []))
        self.log(f"  namespace {ns.prefix} (topics, wards, assets)")
        ns.setup()
        return ns

    def worker(self, ns: Namespace, app_id: str, index: int = 0) -> Worker:
        for entry in self.namespaces:
            if entry[0] == ns and app_id not in entry[1]:
                entry[1].append(app_id)
        return Worker(ns, app_id, self.config.work_dir / f"{app_id}-{index}.log",
                      self.tmp / f"{app_id}-{index}", root=self.config.worker_root)

    def input_topics(self, ns: Namespace) -> list[str]:
        return [ns.name(spec) for spec in SHARED_INPUT_TOPICS]

    def lag_topics(self, ns: Namespace) -> list[str]:
        return [*self.input_topics(ns), ns.name(catalog.INCIDENTS_ENRICHED),
                ns.name(catalog.LIGHTING_ENRICHED), ns.name(catalog.WASTE_ENRICHED)]

    def preload(self, ns: Namespace, records: list[Encoded]) -> dict[str, Any]:
        started = time.monotonic()
        sent = asyncio.run(BatchSender(ns.bootstrap, self.input_topics(ns)).send_all(
            iter(records)))
        seconds = time.monotonic() - started
        self.log(f"  preloaded {sent} events in {seconds:.1f}s")
        return {"events": sent, "seconds": round(seconds, 1)}

    def teardown(self) -> None:
        for ns, app_ids in self.namespaces:
            try:
                deleted = ns.teardown(app_ids)
                self.log(f"  deleted {len(deleted)} topics of {ns.prefix}")
            except Exception as error:  # never hide the figures behind a cleanup failure
                self.log(f"  cleanup of {ns.prefix} failed: {error}")
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- phases --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        try:
            self._run()
        finally:
            self.log("cleanup")
            self.teardown()
            self.results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
            self.results["namespaces"] = [ns.prefix for ns, _ in self.namespaces]
            self.results["broker_pid_end"] = broker_pid()
            self.results["broker_restarted_during_run"] = (
                self.results["broker_pid_start"] != self.results["broker_pid_end"])
        return self.results

    def _run(self) -> None:
        config = self.config
        started = time.monotonic()
        events = config.events
        self.log(f"generating {events} SYNTHETIC events over the last {config.span}")
        stats = FeedStats()
        # the decoded events are kept only to check the state (--verify): 10M of them would not fit
        keep: list[SimEvent] | None = [] if config.verify else None
        end = utc_now_ms() - timedelta(seconds=5)
        t0 = time.monotonic()
        records = list(encode_all(self.feed.events(events, end, config.span), stats, keep))
        self.results["feed"] = {**stats.as_dict(), "span": str(config.span),
                                "generate_encode_s": round(time.monotonic() - t0, 1)}
        self.log(f"  {stats.as_dict()}")

        if "codec" not in config.skip:
            self.log("codec")
            # the first 50k events of the same feed (same rate, so the same mix)
            sample = list(itertools.islice(self.feed.events(events, end, config.span), 50_000))
            self.results["codec"] = codec_bench.measure(sample)
            self.log(f"  {self.results['codec']}")

        ns = self.namespace("main")
        if "memory" not in config.skip:
            self.log("memory: idle worker (0 events)")
            idle = self.worker(ns, f"bench-{self.run_id}-idle")
            idle.start()
            ready_s = idle.wait_ready()
            time.sleep(2.0)
            rss0 = idle.usage().rss_bytes
            idle.stop()
            self.results["memory"] = {"rss_0_mib": round(rss0 / MIB, 1),
                                      "idle_ready_s": round(ready_s, 1)}
            self.log(f"  RSS at 0 events: {rss0 / MIB:.1f} MiB")

        self.log("preload")
        self.results["preload"] = self.preload(ns, records)

        if "ceiling" not in config.skip:
            self.log("ceiling: aiokafka passthrough")
            batch = asyncio.run(ceiling.passthrough(
                ns.bootstrap, self.input_topics(ns), self._passthrough_topics(ns, "batch"),
                events, group=f"{ns.prefix}passthrough-batch"))
            self.results["ceiling"] = batch.as_dict()
            self.log(f"  {self.results['ceiling']}")
            self.log("reference: aiokafka passthrough, one send() per record")
            try:
                single = asyncio.run(ceiling.passthrough(
                    ns.bootstrap, self.input_topics(ns), self._passthrough_topics(ns, "single"),
                    events, group=f"{ns.prefix}passthrough-single", per_message=True))
            except Exception as error:  # a reference figure: not worth losing the run for
                self.results["passthrough_per_message_error"] = f"{type(error).__name__}: {error}"
                self.log(f"  failed (shared broker restarted?): {error}")
            else:
                self.results["passthrough_per_message"] = single.as_dict()
                self.log(f"  {self.results['passthrough_per_message']}")

        app_id = f"bench-{self.run_id}-main"
        worker = self.worker(ns, app_id)
        try:
            self.log("pipeline: one worker drains the input")
            probe = LagProbe(ns.bootstrap, app_id, self.lag_topics(ns))
            try:
                result = drain([worker], events, probe, broker_pid(), config.timeout_for(events),
                               self.log)
            finally:
                probe.close()
            self.results["pipeline"] = result.as_dict()
            self.log(f"  {events} events in {result.seconds:.1f}s: "
                     f"{result.events_per_s:.0f} events/s")
            self._memory_figures(result)
            if "footprint" not in config.skip:
                self.log("footprint: bytes per event and per ward on the broker")
                try:
                    self.results["footprint"] = footprint.measure(
                        ns, app_id, events, result.seconds, len(self.feed.wards))
                except Exception as error:  # a figure, not worth losing the run for
                    self.results["footprint_error"] = f"{type(error).__name__}: {error}"
                self.log(f"  {self.results.get('footprint')}")
            if "ceiling" in self.results:
                self.results["ratio_pipeline_to_ceiling"] = round(
                    result.events_per_s / self.results["ceiling"]["events_per_s"], 5)
            if config.verify:
                self.log("verify: worker state against an independent fold")
                assert keep is not None
                problems = verify.check(
                    ns.bootstrap, f"{app_id}-ward_state-changelog", ns.name(catalog.SITUATIONS),
                    keep, self.feed.wards, self.feed.assets)
                self.results["verify"] = {"ok": not problems, "problems": problems[:20]}
                self.log(f"  {'state correct' if not problems else problems[:5]}")
            if "latency" not in config.skip:
                self._latency(ns, worker)
                self.results.setdefault("memory", {})["rss_after_latency_mib"] = round(
                    worker.usage().rss_bytes / MIB, 1)
        finally:
            worker.stop()
        if "scale" not in config.skip:
            self._scale_out(records[: config.scale_events])
        self.results["total_s"] = round(time.monotonic() - started, 1)

    def _memory_figures(self, result: DrainResult) -> None:
        memory = self.results.setdefault("memory", {})
        memory["rss_at_ready_mib"] = round(result.rss_start[0] / MIB, 1)
        memory["rss_end_mib"] = round(result.rss_end[0] / MIB, 1)
        memory["rss_max_mib"] = round(result.rss_max[0] / MIB, 1)
        for mark in (1_000_000, 10_000_000):
            if result.events >= mark:
                at = result.rss_at(mark)
                if at is not None:
                    memory[f"rss_{mark // 1_000_000}m_mib"] = round(at[0] / MIB, 1)
        quarter = [result.rss_at(result.events * q // 4) for q in (1, 2, 3, 4)]
        memory["rss_quarters_mib"] = [None if q is None else round(q[0] / MIB, 1)
                                      for q in quarter]

    def _passthrough_topics(self, ns: Namespace, label: str) -> list[str]:
        names = [f"{ns.prefix}bench.passthrough-{label}.{spec.name}"
                 for spec in SHARED_INPUT_TOPICS]
        admin = KafkaAdminClient(bootstrap_servers=ns.bootstrap, client_id="cityops-bench")
        try:
            admin.create_topics([NewTopic(name, catalog.WARD_PARTITIONS, 1) for name in names])
        finally:
            admin.close()
        return names

    def _latency(self, ns: Namespace, worker: Worker) -> None:
        config = self.config
        levels = []
        for index, rate in enumerate(config.loads):
            self.log(f"latency at {rate} events/s for {config.load_seconds:.0f}s")
            result = latency.run_level(
                ns.bootstrap, self.input_topics(ns), ns.name(catalog.SITUATIONS), self.feed,
                rate, config.load_seconds, wait_s=120.0, seed=1000 + index)
            levels.append(result.as_dict())
            self.log(f"  {result.as_dict()}")
            if not worker.running:
                raise RuntimeError(f"worker died during the latency run: {worker.log_tail()}")
        self.results["latency"] = levels

    def _scale_out(self, records: list[Encoded]) -> None:
        count = len(records)
        scale: dict[str, Any] = {"events": count, "partitions": {
            "input_topics": catalog.WARD_PARTITIONS, "enriched_topics": catalog.WARD_PARTITIONS,
            "ward_state_table": catalog.WARD_PARTITIONS}}
        for workers in (1, 2):
            self.log(f"scale-out: {workers} worker(s), {count} events")
            ns = self.namespace(f"scale{workers}")
            app_id = f"bench-{self.run_id}-scale{workers}"
            group = [self.worker(ns, app_id, i) for i in range(workers)]
            probe = LagProbe(ns.bootstrap, app_id, self.lag_topics(ns))
            def load(ns: Namespace = ns) -> None:
                self.preload(ns, records)

            try:
                result = drain(group, count, probe, broker_pid(), self.config.timeout_for(count),
                               self.log, load=load)
            finally:
                probe.close()
                for worker in group:
                    worker.stop()
            scale[f"workers_{workers}"] = {
                "events_per_s": round(result.events_per_s),
                "seconds": round(result.seconds, 2),
                "worker_cpu_s": [round(c, 1) for c in result.cpu_s],
                "broker_cpu_s": None if result.broker_cpu_s is None else round(
                    result.broker_cpu_s, 1),
            }
            self.log(f"  {scale[f'workers_{workers}']}")
        one, two = scale["workers_1"]["events_per_s"], scale["workers_2"]["events_per_s"]
        scale["speedup"] = round(two / one, 2) if one else None
        self.results["scale_out"] = scale


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
