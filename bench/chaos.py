#!/usr/bin/env python
"""Chaos run on the real broker: SIGKILL the worker and restart the broker while events flow,
then check that nothing was lost or counted twice.

    .venv/bin/python bench/chaos.py --events 50000   # full size: 5 kills, 1 broker restart
    .venv/bin/python bench/chaos.py --events 5000 --kills 3 --rate 66.7   # the CI size
    .venv/bin/python bench/chaos.py --events 20000 --kills 0 --broker-restarts 0 --preload \
        --processing-guarantee exactly_once            # throughput of one guarantee

It restarts the broker it talks to with `cityops broker stop/start`; see docs/reliability.md to
point it at a private broker instead of the shared one.

What a run does (docs/reliability.md explains why each step is there):

1. Creates its own topic namespace (`CITYOPS_TOPIC_PREFIX=chaos-<id>.`) on the broker and
   publishes the wards and the SYNTHETIC asset registry into it, so it never mixes with other
   runs or tests on the shared broker.
2. Generates a seeded SYNTHETIC event stream with closed-form outcomes: incidents with full or
   partial lifecycles, lamps toggling to known final statuses, containers filling and being
   collected, plus partner retries (byte-identical duplicates) and hostile records.
3. Sends it with an idempotent producer (acks=all) while a worker runs; at random moments the
   worker is SIGKILLed and restarted, and the broker is stopped and started once. A send that
   fails or times out is "maybe written" and is sent again (a duplicate at worst).
4. Waits until the worker's consumer group has no lag, then reads every topic back and compares
   the ward state (changelog), the last situation per ward and per rollup, the enriched and
   dead-letter topics with bench/reference_model.py, an independent calculation over the records
   actually found in the input topics.

The module is also the harness of tests/e2e/test_hostile_input.py and test_chaos.py: namespaces,
worker processes, topic readers and consumer-group lag.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/chaos.py`: make the project importable
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from collections.abc import Callable, Iterable, Mapping, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition  # noqa: E402
from kafka.errors import KafkaError  # noqa: E402

from bench.harness import (  # noqa: E402
    Namespace,
    Worker,
    committed_by_app,
    end_offsets,
    read_records,
)
from cityops.producer import PartnerProducer  # noqa: E402
from schemas.codec import decode, encode  # noqa: E402
from streams.liveness import EXIT_STALLED  # noqa: E402
from topics import catalog  # noqa: E402

PYTHON = sys.executable
CITYOPS = [PYTHON, "-m", "cityops.cli"]
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


# ------------------------------------------------------------------------------------------
# Harness: workers and topic readers are bench.harness's (shared with tests/e2e)


def chaos_worker(namespace: Namespace, app_id: str, log_path: Path, guarantee: str,
                 worker_id: str, data_dir: Path, session_timeout_s: float) -> Worker:
    """A worker as the chaos run starts (and restarts) it: no periodic snapshot, rollups every
    second. CITYOPS_CHAOS_WORKER_COMMAND runs an instrumented wrapper instead of `cityops`;
    CITYOPS_CHAOS_LOGLEVEL sets the log level (warning; info to debug a stall)."""
    command = os.environ.get("CITYOPS_CHAOS_WORKER_COMMAND", "").split() or None
    return Worker(namespace, app_id, log_path, data_dir, worker_id=worker_id, command=command,
                  loglevel=os.environ.get("CITYOPS_CHAOS_LOGLEVEL", "warning"),
                  extra_env={"CITYOPS_PROCESSING_GUARANTEE": guarantee,
                             "CITYOPS_SNAPSHOT_INTERVAL_S": "0",
                             "CITYOPS_ROLLUP_INTERVAL_S": "1.0",
                             "CITYOPS_SESSION_TIMEOUT_S": str(session_timeout_s)})


def group_lag(bootstrap: str, group: str, topics: Sequence[str]) -> int:
    """Records in `topics` not yet committed by consumer group `group` (uncommitted = all).

    Under exactly_once the worker's outputs end with transaction markers: an offset that is no
    record, so the committed offset stays one short of the end. A gap of a few offsets holding
    no record a read_committed consumer can see is therefore not lag.
    """
    ends = end_offsets(bootstrap, topics)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="cityops-chaos")
    try:
        committed = committed_by_app(admin, group)
    finally:
        admin.close()
    gaps: dict[TopicPartition, tuple[int, int]] = {}
    for tp, end in ends.items():
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else 0
        if done < end:
            gaps[tp] = (done, end)
    if gaps and all(end - done <= 3 for done, end in gaps.values()):
        return sum(_records_between(bootstrap, gaps).values())
    return sum(end - done for done, end in gaps.values())


def _records_between(bootstrap: str, gaps: Mapping[TopicPartition, tuple[int, int]]
                     ) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed")
    try:
        consumer.assign(list(gaps))
        for tp, (start, _) in gaps.items():
            consumer.seek(tp, start)
        found: dict[TopicPartition, int] = defaultdict(int)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(
                consumer.position(tp) < end for tp, (_, end) in gaps.items()):
            for tp, batch in consumer.poll(timeout_ms=300).items():
                found[tp] += sum(1 for r in batch if r.offset < gaps[tp][1])
        unread = {tp: end - consumer.position(tp) for tp, (_, end) in gaps.items()
                  if consumer.position(tp) < end}
        return {**found, **{tp: found[tp] + n for tp, n in unread.items()}}
    finally:
        consumer.close()


def wait_caught_up(bootstrap: str, group: str, topics: Sequence[str], timeout_s: float,
                   alive: Callable[[], None] | None = None, settle_s: float = 3.0) -> float:
    """Seconds until the group has no lag on `topics` (checked twice, `settle_s` apart)."""
    started = time.monotonic()
    clean = 0
    while time.monotonic() - started < timeout_s:
        if alive is not None:
            alive()
        try:
            lag = group_lag(bootstrap, group, topics)
        except (OSError, KafkaError):  # broker briefly unavailable: keep waiting
            lag = -1
        clean = clean + 1 if lag == 0 else 0
        if clean >= 2:
            return time.monotonic() - started - settle_s
        time.sleep(settle_s if lag == 0 else 1.0)
    raise TimeoutError(f"consumer group {group} still lagging after {timeout_s:.0f}s: "
                       f"{lag_by_partition(bootstrap, group, topics)}")


def lag_by_partition(bootstrap: str, group: str, topics: Sequence[str]) -> dict[str, str]:
    """'topic[p]' -> 'committed/end' for every partition that lags (to diagnose a stall)."""
    ends = end_offsets(bootstrap, topics)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="cityops-chaos")
    try:
        committed = committed_by_app(admin, group)
    finally:
        admin.close()
    out = {}
    for tp, end in sorted(ends.items()):
        meta = committed.get(tp)
        done = meta.offset if meta is not None else -1
        if done < end:
            out[f"{tp.topic}[{tp.partition}]"] = f"{done}/{end}"
    return out


def broker_restart(down_s: float = 0.0) -> float:
    """`cityops broker stop`, `down_s` seconds of outage, then `cityops broker start` (same
    data dir); seconds it took.

    On a shared broker another test session may start it again between the two (its `broker`
    fixture sees it stopped): then our start fails on the taken ports, and the broker that
    answers is the restarted one.
    """
    from cityops.broker import BrokerConfig, port_answers

    port = BrokerConfig.from_env().port
    started = time.monotonic()
    for action in ("stop", "start"):
        if action == "start":
            time.sleep(down_s)
            if port_answers(port):
                say("broker was started again by someone else meanwhile; using it")
                break
        result = subprocess.run([*CITYOPS, "broker", action], cwd=ROOT, capture_output=True,
                                text=True, timeout=300, check=False)
        if result.returncode != 0:
            if action == "start" and port_answers(port):
                say("broker was started again by someone else meanwhile; using it")
                break
            raise RuntimeError(f"cityops broker {action} failed: {result.stdout}{result.stderr}")
    return time.monotonic() - started


# ------------------------------------------------------------------------------------------
# The SYNTHETIC chaos scenario: events with closed-form outcomes


KIND_TOPIC = {"incident": catalog.INCIDENTS, "lighting": catalog.LIGHTING, "waste": catalog.WASTE}
KIND_ENRICHED = {"incident": catalog.INCIDENTS_ENRICHED, "lighting": catalog.LIGHTING_ENRICHED,
                 "waste": catalog.WASTE_ENRICHED}
KIND_SCHEMA = {"incident": "org.cityops.IncidentEvent", "lighting": "org.cityops.LightingEvent",
               "waste": "org.cityops.WasteEvent"}
CATEGORIES = ("TRAFFIC_ACCIDENT", "FIRE", "FLOOD", "CRIME", "PUBLIC_ORDER", "MEDICAL",
              "INFRASTRUCTURE_DAMAGE", "OTHER")
SEVERITIES = ("EXTREME", "SEVERE", "MODERATE", "MINOR")
LIFECYCLE = ("REPORTED", "DISPATCHED", "ON_SCENE")
LAMP_FAULTS = ("DEFECTIVE_LAMP", "COLUMN_ISSUE", "BROKEN_LANTERN", "NO_POWER")


@dataclass(frozen=True)
class Send:
    """One record the partner side sends. `reason` is set for a hostile record."""

    kind: str
    key: bytes
    value: bytes
    event_id: str | None = None
    stage: str | None = None
    reason: str | None = None


@dataclass
class Scenario:
    sends: list[Send]
    #: What the generator meant, per ward: open incidents by category, lamps out, containers
    #: full. tests/unit/test_reference_model.py checks the reference model agrees.
    intended: dict[str, dict[str, Any]]
    duplicates: int
    hostile: int


def generate(events: int, seed: int, registry: Sequence[Mapping[str, Any]],
             ward_codes: Sequence[str], now: datetime, hostile_share: float = 0.02,
             duplicate_share: float = 0.05) -> Scenario:
    """A SYNTHETIC, seeded event stream of `events` sends (unique + retries + hostile).

    Every entity's events have strictly increasing, distinct times, so "latest" never depends on
    a tie; all times fall in the 4 h before `now - 1 h`, well inside every horizon.
    tests/unit/test_reference_model.py checks `intended` against the reference model.
    """
    rng = random.Random(seed)
    hostile_n = round(events * hostile_share)
    duplicate_n = round(events * duplicate_share)
    unique_n = events - hostile_n - duplicate_n
    targets = {"incident": unique_n * 40 // 100, "lighting": unique_n * 35 // 100}
    targets["waste"] = unique_n - targets["incident"] - targets["lighting"]
    base = now - timedelta(hours=5)
    span_s = 4 * 3600
    intended: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"open_incidents_by_category": Counter(), "lamps_out": 0, "containers_full": 0,
                 "cabinet_alerts": []})
    records: list[tuple[str, dict[str, Any]]] = []

    def at(offset_s: float) -> datetime:
        return base + timedelta(milliseconds=round(offset_s * 1000))

    # every ward ends with a closed incident 10 min before the end, so no ward's last event is
    # near the lamp faults below (which all come at least 1 h before the end): the only cabinet
    # alerts are the outages made on purpose further down
    closing = list(ward_codes)[: targets["incident"]]
    for number, ward in enumerate(closing):
        records.append(("incident", {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "occurred_at": at(span_s - 600 + number), "incident_id": f"CHAOS-{seed}-END-{ward}",
            "source_system": "OTHER", "category": "OTHER", "severity": "MINOR",
            "status": "RESOLVED", "ward_code": ward, "latitude": None, "longitude": None,
            "rw": None, "rt": None, "description": "chaos run end marker (synthetic)",
        }))
    # incidents: full or partial lifecycles, some corrected category, some UNKNOWN severity
    made = len(closing)
    while made < targets["incident"]:
        ward = rng.choice(ward_codes)
        incident_id = f"CHAOS-{seed}-{made:06d}"
        stages = rng.choice((1, 2, 3, 4, 4, 4))
        stages = min(stages, targets["incident"] - made)
        category = rng.choice(CATEGORIES)
        t = rng.uniform(0, span_s - 3600)
        # one source per incident: an incident id belongs to the source that opened it
        source = rng.choice(("POLICE", "CALL_CENTER_112", "CITIZEN_APP"))
        history = []
        for index in range(stages):
            status = rng.choice(("RESOLVED", "CANCELLED")) if index == 3 else LIFECYCLE[index]
            if index and rng.random() < 0.1:
                category = rng.choice(CATEGORIES)  # a correction: the latest event's category wins
            severity = "UNKNOWN" if index and rng.random() < 0.1 else rng.choice(SEVERITIES)
            history.append({
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "occurred_at": at(t), "incident_id": incident_id,
                "source_system": source,
                "category": category, "severity": severity, "status": status,
                "ward_code": ward, "latitude": None, "longitude": None,
                "rw": f"{rng.randint(1, 12):03d}", "rt": f"{rng.randint(1, 20):03d}",
                "description": "chaos run (synthetic)",
            })
            t += rng.uniform(30, 900)
        records.extend(("incident", r) for r in history)
        made += stages
        if history[-1]["status"] in LIFECYCLE:
            intended[ward]["open_incidents_by_category"][category] += 1

    lamps = [a for a in registry if a["asset_kind"] == "LAMP"]
    containers = [a for a in registry if a["asset_kind"] in ("WASTE_CONTAINER", "TPS")]
    # cabinet outages: 4 lamps of a cabinet lose power after everything else in their ward,
    # so the ward's last situation must carry a cabinet alert
    by_cabinet: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for lamp in lamps:
        by_cabinet[str(lamp["cabinet_id"])].append(lamp)
    outages = rng.sample(sorted(c for c, members in by_cabinet.items() if len(members) >= 4),
                         2 if targets["lighting"] >= 100 else 0)
    for number, cabinet in enumerate(outages):
        for j, lamp in enumerate(rng.sample(by_cabinet[cabinet], 4)):
            record = _lamp_event(rng, lamp, at(span_s + 60 + 40 * number + 10 * j), last=True)
            record.update(lamp_status="NO_POWER", report_kind="FAULT", power_state="OFF",
                          dimming_level=None)
            records.append(("lighting", record))
            targets["lighting"] -= 1
        intended[str(by_cabinet[cabinet][0]["ward_code"])]["cabinet_alerts"].append(cabinet)
    chosen_lamps = rng.sample(lamps, max(1, min(len(lamps), targets["lighting"] // 6)))
    chosen_containers = rng.sample(containers,
                                   max(1, min(len(containers), targets["waste"] // 5)))
    for kind, assets in (("lighting", chosen_lamps), ("waste", chosen_containers)):
        counts = [targets[kind] // len(assets)] * len(assets)
        for i in range(targets[kind] - sum(counts)):
            counts[i] += 1
        for asset, count in zip(assets, counts, strict=True):
            if count == 0:
                continue
            times = sorted(rng.sample(range((span_s - 3600) * 10), count))  # distinct 0.1 s
            history = [(_lamp_event if kind == "lighting" else _waste_event)(
                rng, asset, at(step / 10), last=(i == count - 1))
                for i, step in enumerate(times)]
            records.extend((kind, r) for r in history)
            final: dict[str, Any] = history[-1]
            if kind == "waste" and (final["filling_level"] or 0.0) >= 0.9:
                intended[asset["ward_code"]]["containers_full"] += 1
    lamp_ward = {str(a["asset_id"]): str(a["ward_code"]) for a in lamps}
    last_status: dict[str, tuple[datetime, str]] = {}
    for kind, record in records:
        if kind == "lighting" and record["lamp_status"] != "UNKNOWN":
            seen = last_status.get(record["lamp_id"])
            if seen is None or record["occurred_at"] > seen[0]:
                last_status[record["lamp_id"]] = (record["occurred_at"], record["lamp_status"])
    for lamp_id, (_, status) in last_status.items():
        if status != "OK":
            intended[lamp_ward[lamp_id]]["lamps_out"] += 1

    sends = [Send(kind, _key(kind, r), encode(KIND_SCHEMA[kind], r), str(r["event_id"]))
             for kind, r in records]
    sends.extend(_hostile(rng, i, now, registry) for i in range(hostile_n))
    order = [(rng.random(), send) for send in sends]
    for _ in range(duplicate_n):  # partner retries: same bytes, some time after the original
        position, original = rng.choice([pair for pair in order if pair[1].reason is None])
        order.append((rng.uniform(position, 1.0), original))
    order.sort(key=lambda pair: pair[0])
    return Scenario(
        sends=[send for _, send in order],
        intended={ward: {**v, "open_incidents_by_category": dict(sorted(
            v["open_incidents_by_category"].items()))} for ward, v in sorted(intended.items())},
        duplicates=duplicate_n, hostile=hostile_n,
    )


def _key(kind: str, record: Mapping[str, Any]) -> bytes:
    field_name = {"incident": "incident_id", "lighting": "lamp_id", "waste": "container_id"}[kind]
    return str(record[field_name]).encode()


def _lamp_event(rng: random.Random, asset: Mapping[str, Any], at: datetime, last: bool
                ) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.5:
        status, kind = "OK", "STATUS"
    elif roll < 0.9 or last:
        status, kind = rng.choice(LAMP_FAULTS), rng.choice(("STATUS", "FAULT"))
    else:
        status, kind = "UNKNOWN", rng.choice(("STATUS", "FAULT"))  # keeps the previous status
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "occurred_at": at,
        "lamp_id": asset["asset_id"], "cabinet_id": None, "report_kind": kind,
        "lamp_status": status, "power_state": "ON" if status == "OK" else "OFF",
        "dimming_level": round(rng.uniform(0.3, 1.0), 2) if status == "OK" else None,
        "energy_kwh": round(rng.uniform(0.1, 2.0), 3), "ward_code": None, "latitude": None,
        "longitude": None,
    }


def _waste_event(rng: random.Random, asset: Mapping[str, Any], at: datetime, last: bool
                 ) -> dict[str, Any]:
    site = "TPS" if asset["asset_kind"] == "TPS" else "CONTAINER"
    record: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "occurred_at": at,
        "container_id": asset["asset_id"], "site_kind": site, "report_kind": "FILL_LEVEL",
        "filling_level": round(rng.uniform(0.0, 1.0), 3),
        "temperature_celsius": rng.choice((28.5, 31.0, 34.5, 65.0)) if rng.random() < 0.3 else None,
        "collected_weight_kg": None, "ward_code": None, "latitude": None, "longitude": None,
    }
    if not last and rng.random() < 0.15:
        record.update(report_kind="COLLECTION", filling_level=None,
                      collected_weight_kg=round(rng.uniform(20, 400), 1))
    return record


def _hostile(rng: random.Random, index: int, now: datetime,
             registry: Sequence[Mapping[str, Any]]) -> Send:
    """A record the worker must dead-letter, unique (by its bytes) so it can be found again."""
    tag = f"chaos-hostile-{index}"
    kind = rng.choice(("incident", "lighting", "waste"))
    choice = index % 5
    if choice == 0:
        return Send(kind, tag.encode(), f"not avro {tag}".encode(), None, "DECODE",
                    "not_single_object")
    lamp = next(a for a in registry if a["asset_kind"] == "LAMP")
    container = next(a for a in registry if a["asset_kind"] == "WASTE_CONTAINER")
    event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    at = now - timedelta(hours=2)
    if choice == 1:
        record = {"event_id": event_id, "occurred_at": at, "incident_id": tag,
                  "source_system": "POLICE", "category": "FIRE", "severity": "SEVERE",
                  "status": "REPORTED", "ward_code": "36.72.99.9999", "latitude": None,
                  "longitude": None, "rw": None, "rt": None, "description": tag}
        return Send("incident", tag.encode(), encode(KIND_SCHEMA["incident"], record),
                    event_id, "ENRICH", "unknown_ward")
    if choice == 2:
        record = _lamp_event(rng, lamp, at, last=True) | {"event_id": event_id,
                                                         "lamp_id": f"PJU-X{index}"}
        return Send("lighting", tag.encode(), encode(KIND_SCHEMA["lighting"], record),
                    event_id, "ENRICH", "unknown_asset")
    if choice == 3:
        record = _waste_event(rng, container, at, last=True) | {
            "event_id": event_id, "filling_level": float("nan")}
        return Send("waste", tag.encode(), encode(KIND_SCHEMA["waste"], record), event_id,
                    "VALIDATE", "not_finite")
    good = encode(KIND_SCHEMA["waste"], _waste_event(rng, container, at, last=True) | {
        "event_id": event_id})
    return Send("waste", tag.encode(), good[: len(good) - 3 - index % 7], None, "DECODE",
                "truncated")


# ------------------------------------------------------------------------------------------
# Sending: an idempotent producer; a failed or timed-out send is "maybe written" and resent


class Sender(threading.Thread):
    """Sends the scenario at `rate` records/s (0: as fast as the producer goes).

    Through `PartnerProducer`, which replaces a producer wedged by an expired batch and fails
    the sends it had not confirmed (cityops/producer.py, docs/reliability.md). A failed send is
    "maybe written" and sent again here: a duplicate at worst, which the ward state's dedupe
    absorbs. So every scenario record reaches the input topics at least once.
    """

    def __init__(self, namespace: Namespace, sends: Sequence[Send], rate: float) -> None:
        super().__init__(name="chaos-sender", daemon=True)
        self.namespace = namespace
        self.sends = sends
        self.rate = rate
        self.sent = 0
        self.maybe_written = 0
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._producer: PartnerProducer | None = None

    @property
    def producer_restarts(self) -> int:
        return self._producer.summary.producer_replacements if self._producer else 0

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # reported by the main thread
            self.error = error
        finally:
            self.done.set()

    def _send(self, producer: PartnerProducer, index: int) -> Any:
        """The send's future, or None when it could not even be handed over (a new producer
        while the broker is still down): resent like a failed one."""
        send = self.sends[index]
        try:
            return producer.send_raw(self.namespace.name(KIND_TOPIC[send.kind]), send.key,
                                     send.value)
        except KafkaError:
            return None

    def _resend_failed(self, producer: PartnerProducer, pending: dict[int, Any]) -> None:
        for index, future in list(pending.items()):
            if future is not None and future.succeeded():
                del pending[index]
            elif future is None or future.failed():
                self.maybe_written += 1
                pending[index] = self._send(producer, index)
                if pending[index] is None:  # the broker is still down: try the rest later
                    return

    def _run(self) -> None:
        producer = self._producer = PartnerProducer(
            self.namespace.bootstrap, client_id="cityops-chaos-partner",
            request_timeout_ms=3_000, delivery_timeout_ms=5_000, max_block_ms=10_000)
        pending: dict[int, Any] = {}
        started = time.monotonic()
        for index in range(len(self.sends)):
            if self.rate > 0:
                delay = started + index / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            pending[index] = self._send(producer, index)
            self.sent += 1
            if index % 100 == 0:
                self._resend_failed(producer, pending)
        while True:
            with contextlib.suppress(KafkaError):
                producer.flush(timeout_s=30)
            self._resend_failed(producer, pending)
            if not pending:
                break
            time.sleep(0.5)
        producer.close()


# ------------------------------------------------------------------------------------------
# The run


@dataclass
class ChaosConfig:
    bootstrap: str = DEFAULT_BOOTSTRAP
    events: int = 5000
    kills: int = 3
    broker_restarts: int = 1
    seed: int = 1
    rate: float = 0.0
    guarantee: str = "at_least_once"
    #: The worker's session timeout (CITYOPS_SESSION_TIMEOUT_S): how long the group waits for a
    #: SIGKILLed worker before handing its partitions to the restarted one. Faust's default
    #: is 60 s; the worker's default is 10 s (docs/reliability.md).
    session_timeout_s: float = 10.0
    #: Workers in the group. With more than one, every kill is also a rebalance: the victim's
    #: partitions move to the survivors and back when it rejoins.
    workers: int = 1
    preload: bool = False
    artifacts: Path = ROOT / "test-artifacts"
    timeout_s: float = 900.0
    keep_topics: bool = False
    label: str = "chaos"


@dataclass
class ChaosReport:
    config: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> str:
        return json.dumps({"ok": self.ok, "config": self.config, "figures": self.figures,
                           "problems": self.problems}, indent=2, default=str)


def say(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", flush=True)


def run_chaos(config: ChaosConfig, log: Callable[[str], None] = say) -> ChaosReport:
    from cityops.assets import generate_asset_registry
    from core.reference_data import load_ward_records
    from core.vocabulary import ASSET_REGISTRY_SEED

    config.artifacts.mkdir(parents=True, exist_ok=True)
    report = ChaosReport({k: str(v) if isinstance(v, Path) else v
                          for k, v in vars(config).items()})
    figures = report.figures
    namespace = Namespace.fresh(config.bootstrap, config.label)
    app_id = f"{config.label}-{uuid.uuid4().hex[:8]}"
    log_paths = [config.artifacts / (f"{config.label}-worker.log" if index == 0 else
                                     f"{config.label}-worker-{index + 1}.log")
                 for index in range(config.workers)]
    for path in log_paths:
        path.unlink(missing_ok=True)
    log(f"namespace {namespace.prefix} app {app_id}, worker log(s) "
        f"{', '.join(str(path) for path in log_paths)}")
    namespace.setup()
    wards = load_ward_records()
    registry = generate_asset_registry(wards, seed=ASSET_REGISTRY_SEED)
    scenario = generate(config.events, config.seed, registry,
                        [str(w["kelurahan_code"]) for w in wards], datetime.now(UTC))
    figures.update(sent=len(scenario.sends), partner_duplicates=scenario.duplicates,
                   hostile=scenario.hostile)
    data_root = Path(tempfile.mkdtemp(prefix=f"{app_id}-"))
    workers = [chaos_worker(namespace, app_id, path, config.guarantee,
                            f"{app_id}-{index + 1}", data_root / str(index + 1),
                            config.session_timeout_s)
               for index, path in enumerate(log_paths)]
    sender = Sender(namespace, scenario.sends, config.rate)
    rng = random.Random(config.seed * 7919)
    unplanned: list[str] = []

    def keep_alive() -> None:
        for worker in workers:
            if not worker.running:
                unplanned.append(f"worker {worker.worker_id} exited by itself with "
                                 f"{worker.exit_code()}")
                log(unplanned[-1])
                worker.start()

    try:
        if config.preload:
            sender.start()
            sender.join()
            if sender.error is not None:
                raise sender.error
        started = time.monotonic()
        for worker in workers:
            worker.start()
        figures["first_ready_s"] = round(max(worker.wait_ready() for worker in workers), 1)
        ready_at = time.monotonic()
        if not config.preload:
            sender.start()
        actions = _plan(rng, config, len(scenario.sends))
        figures["action_plan"] = [(round(at, 3), action) for at, action in actions]
        outputs = [namespace.name(spec) for spec in (*KIND_ENRICHED.values(),
                                                     catalog.DEAD_LETTERS)]
        total = len(scenario.sends)
        restarts: list[float] = []
        recoveries: list[float] = []
        sending_since = time.monotonic()
        now = 0.0
        while actions:
            if config.rate > 0:  # paced: act at planned moments of the sending
                now = time.monotonic() - sending_since
                where = f"{now:.1f} s into sending"
            else:  # as fast as possible: act at planned shares of the work done
                with contextlib.suppress(KafkaError, OSError):
                    now = sum(end_offsets(config.bootstrap, outputs).values()) / total
                where = f"progress {now:.2f}"
            if now >= actions[0][0]:
                _, action = actions.pop(0)
                if action == "kill":
                    worker = rng.choice(workers) if len(workers) > 1 else workers[0]
                    log(f"SIGKILL worker {worker.worker_id} at {where}")
                    worker.kill()
                    time.sleep(rng.uniform(0.0, 2.0))
                    worker.start()
                    recoveries.append(worker.wait_ready())
                else:
                    log(f"broker restart at {where}")
                    restarts.append(broker_restart())
                    log(f"broker back after {restarts[-1]:.1f} s")
            keep_alive()
            time.sleep(0.2)
        sender.join(timeout=config.timeout_s)
        if sender.error is not None:
            raise sender.error
        if sender.is_alive():
            raise TimeoutError(f"the partner side could not send everything in "
                               f"{config.timeout_s:.0f} s")
        inputs = [namespace.name(spec) for spec in KIND_TOPIC.values()]
        enriched = [namespace.name(spec) for spec in KIND_ENRICHED.values()]
        waiting_since = time.monotonic()
        caught_up_at = waiting_since + wait_caught_up(
            config.bootstrap, app_id, inputs + enriched, config.timeout_s, keep_alive)
        elapsed = caught_up_at - started
        figures.update(
            workers=config.workers, kills=config.kills,
            worker_starts=sum(worker.starts for worker in workers),
            # a worker that stopped itself for a stalled ward agent (streams/liveness.py) is
            # restarted like a supervisor would; counted apart from any other exit
            unplanned_exits=[u for u in unplanned if not u.endswith(f" {EXIT_STALLED}")],
            liveness_restarts=sum(1 for u in unplanned if u.endswith(f" {EXIT_STALLED}")),
            broker_restarts=len(restarts), broker_restart_s=[round(s, 1) for s in restarts],
            worker_ready_after_kill_s=[round(s, 1) for s in recoveries],
            maybe_written_resends=sender.maybe_written,
            partner_producer_restarts=sender.producer_restarts, run_s=round(elapsed, 1),
            events_per_s=round(total / elapsed, 1),
            # from the worker's first "ready" to no lag; +-2.8 s (Faust's commit interval)
            processing_s=round(caught_up_at - ready_at, 1),
        )
        with contextlib.suppress(OSError):
            figures["last_worker_metrics"] = _metric_totals(workers)
        verify(config.bootstrap, namespace, app_id, scenario, registry, wards, report, log)
    finally:
        for worker in workers:
            worker.stop()
        shutil.rmtree(data_root, ignore_errors=True)
        if not config.keep_topics:
            namespace.teardown([app_id])
    return report


def _plan(rng: random.Random, config: ChaosConfig, total: int) -> list[tuple[float, str]]:
    """When to kill the worker and restart the broker: one random moment in each of equal
    slots of the sending time (paced) or of the work (unpaced), so actions don't bunch up."""
    actions = ["kill"] * config.kills + ["broker"] * config.broker_restarts
    rng.shuffle(actions)
    span = total / config.rate if config.rate > 0 else 1.0
    first, last = 0.1 * span, 0.9 * span
    width = (last - first) / max(1, len(actions))
    return [(first + width * (i + rng.uniform(0.2, 0.8)), action)
            for i, action in enumerate(actions)]


def _metric_totals(workers: Sequence[Worker]) -> dict[str, float]:
    """Summed over the workers since their last start."""
    totals: dict[str, float] = defaultdict(float)
    samples = [sample for worker in workers for sample in worker.samples()]
    for name, labels, value in samples:
        if name in ("cityops_events_consumed_total", "cityops_events_enriched_total",
                    "cityops_events_rejected_total"):
            totals[name] += value
        elif name == "cityops_events_aggregated_total":
            totals[f"{name}{{outcome={labels['outcome']}}}"] += value
    return dict(totals)


# ------------------------------------------------------------------------------------------
# Verification against bench/reference_model.py


def verify(bootstrap: str, namespace: Namespace, app_id: str, scenario: Scenario,
           registry: Sequence[Mapping[str, Any]], wards: Sequence[Mapping[str, Any]],
           report: ChaosReport, log: Callable[[str], None] = say,
           settle_timeout_s: float = 60.0) -> None:
    """Read every topic back and compare with the reference model; fills `report`."""
    from bench.reference_model import Asset, Event, expected_wards, rollup_totals
    from processors.state import WardState

    figures, problems = report.figures, report.problems
    hostile = {send.value: send for send in scenario.sends if send.reason is not None}
    sent_values = Counter(send.value for send in scenario.sends)

    # -- inputs: what the partner side really managed to write is the reference input
    events: list[Event] = []
    hostile_places: dict[tuple[str, int, int], Send] = {}
    valid_places: set[tuple[str, int, int]] = set()
    required: dict[str, Counter[str]] = {}
    places_of: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    found_values: Counter[bytes] = Counter()
    for kind, spec in KIND_TOPIC.items():
        topic = namespace.name(spec)
        required[kind] = Counter()
        records = read_records(bootstrap, topic)
        figures.setdefault("input_records", {})[kind] = len(records)
        for r in records:
            found_values[r.value] += 1
            place = (topic, r.partition, r.offset)
            if r.value in hostile:
                hostile_places[place] = hostile[r.value]
                continue
            record = decode(r.value, expected=KIND_SCHEMA[kind]).record
            events.append(Event(kind, record))
            valid_places.add(place)
            required[kind][str(record["event_id"])] += 1
            places_of[str(record["event_id"])].append(place)
    never_written = sum(max(0, n - found_values[v]) for v, n in sent_values.items())
    if never_written:
        problems.append(f"{never_written} sends confirmed or retried but not in the input")

    # -- dead letters: every hostile record, with its reason; no valid record
    letters: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    dead = read_records(bootstrap, namespace.name(catalog.DEAD_LETTERS))
    for r in dead:
        d = decode(r.value, expected=catalog.DEAD_LETTERS.value_schema).record
        letters[(d["original_topic"], d["original_partition"], d["original_offset"])].append(d)
    by_reason: Counter[str] = Counter()
    for place, send in hostile_places.items():
        envelopes = letters.get(place)
        if not envelopes:
            problems.append(f"hostile record at {place} ({send.reason}) not dead-lettered")
            continue
        reasons = {(d["stage"], d["reason"]) for d in envelopes}
        if reasons != {(send.stage, send.reason)}:
            problems.append(f"hostile record at {place}: {reasons}, want {send.reason}")
        by_reason[str(send.reason)] += 1
    wrongly_dead = [p for p in letters if p in valid_places]
    if wrongly_dead:
        problems.append(f"{len(wrongly_dead)} valid records dead-lettered, e.g. "
                        f"{letters[wrongly_dead[0]][0]['reason']}: "
                        f"{letters[wrongly_dead[0]][0]['error_message']}")
    stray = [p for p in letters if p not in valid_places and p not in hostile_places]
    if stray:
        problems.append(f"{len(stray)} dead letters of records not in the input")
    figures["dead_lettered_by_reason"] = dict(sorted(by_reason.items()))
    figures["dead_letter_records"] = len(dead)
    figures["dead_letter_replays"] = len(dead) - len(letters)

    # -- enriched topics: each valid input record at least once (replays allowed)
    missing_enriched = replays = 0
    for kind, spec in KIND_ENRICHED.items():
        got = Counter(str(decode(r.value, expected=spec.value_schema).record["event"]["event_id"])
                      for r in read_records(bootstrap, namespace.name(spec)))
        figures.setdefault("enriched_records", {})[kind] = got.total()
        missing = {i: n - got[i] for i, n in required[kind].items() if n > got[i]}
        missing_enriched += sum(missing.values())
        if missing:  # where they sit, to find the commit or the worker that skipped them
            where = sorted(place for i in missing for place in places_of[i])
            log(f"{kind}: {sum(missing.values())} never enriched, at (topic, partition, "
                f"offset): {where}")
        replays += sum(max(0, got[i] - n) for i, n in required[kind].items())
        unknown = set(got) - set(required[kind])
        if unknown:
            problems.append(f"{len(unknown)} {kind} enriched records with no input record")
    figures["enriched_missing"] = missing_enriched
    figures["enriched_replays"] = replays
    if missing_enriched:
        problems.append(f"{missing_enriched} valid input records never enriched")

    # -- the reference calculation
    assets = {str(a["asset_id"]): Asset(str(a["ward_code"]), str(a["asset_kind"]),
                                        a.get("cabinet_id")) for a in registry}
    expected = expected_wards(events, assets)
    figures["unique_valid_events"] = sum(len(w.event_ids) for w in expected.values())
    figures["wards_with_events"] = len(expected)

    # -- ward state from the changelog topic (what a restarted worker recovers)
    changelog = f"{app_id}-ward_state-changelog"
    tables: dict[str, dict[str, Any] | None] = {}
    for r in read_records(bootstrap, changelog):
        key = r.key.decode()
        key = json.loads(key) if key.startswith('"') else key
        tables[key] = json.loads(r.value) if r.value is not None else None
    lost = double = 0
    state_mismatch: list[str] = []
    for code, want in expected.items():
        value = tables.get(code)
        if not value:
            lost += len(want.event_ids)
            state_mismatch.append(f"{code}: no table entry")
            continue
        state = WardState.from_dict(value["state"])
        seen = set(state.seen)
        lost += len(want.recent_event_ids - seen)  # older ids may be pruned: by design
        double += len(seen - want.event_ids)
        got_view: dict[str, dict[str, Any]] = {
            # One source per incident id in this scenario: the id alone identifies it.
            "incidents": {incident_id: rec.status_name
                          for (_, incident_id), rec in state.incidents.items()},
            "lamps": {k: status for k, (status, _) in state.lamps.items()},
            "containers": {k: rec.effective_fill() for k, rec in state.containers.items()},
        }
        want_view: dict[str, dict[str, Any]] = {
            "incidents": want.incident_status, "lamps": want.lamp_status,
            "containers": want.container_fill}
        for part in want_view:
            if got_view[part] != want_view[part]:
                diff = {k for k in set(got_view[part]) | set(want_view[part])
                        if got_view[part].get(k) != want_view[part].get(k)}
                state_mismatch.append(f"{code} {part}: {len(diff)} differ, e.g. "
                                      f"{sorted(diff)[:3]}")
    figures["lost_events"] = lost
    figures["double_counted_events"] = double
    if lost or double or state_mismatch:
        problems.append(f"ward state: {lost} events lost, {double} extra, "
                        f"{state_mismatch[:5]}")

    # -- last situation per ward, and the rollups (the leader emits them on a timer)
    kecamatan_of = {str(w["kelurahan_code"]): str(w["kecamatan_code"]) for w in wards}
    deadline = time.monotonic() + settle_timeout_s
    state_double = double
    while True:
        double = state_double  # situations add their excess once, from the last reading
        last: dict[str, dict[str, Any]] = {}
        situation_records = read_records(bootstrap, namespace.name(catalog.SITUATIONS))
        for r in situation_records:
            s = decode(r.value, expected=catalog.SITUATIONS.value_schema).record
            last[s["scope_code"]] = s
        ward_mismatch = []
        for code, want in expected.items():
            ward_situation = last.get(code)
            fields = want.situation_fields()
            shown = {k: ward_situation[k] for k in fields} if ward_situation else None
            if shown != fields:
                bad = sorted(k for k in fields if shown is None or shown[k] != fields[k])
                ward_mismatch.append(f"{code}: {bad}")
                if shown is not None:
                    double += sum(max(0, shown[k] - fields[k]) for k in (
                        "open_incidents", "lamps_out", "containers_full", "dispatch_count",
                        "on_scene_count"))
        groups: dict[str, list[Any]] = defaultdict(list)
        for code, want in expected.items():
            groups[kecamatan_of[code]].append(want)
        groups["36.72"] = list(expected.values())
        rollup_mismatch = []
        for code, members in sorted(groups.items()):
            rollup = last.get(code)
            want_totals = rollup_totals(members)
            got_totals = {k: rollup[k] for k in want_totals} if rollup else None
            if got_totals != want_totals:
                rollup_mismatch.append(f"{code}: {got_totals} != {want_totals}")
        if (not ward_mismatch and not rollup_mismatch) or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    figures["situation_records"] = len(situation_records)
    regressions = sequence_regressions(
        (r.key, decode(r.value, expected=catalog.SITUATIONS.value_schema).record["sequence"])
        for r in situation_records)
    figures["sequence_regressions"] = len(regressions)
    if regressions:
        problems.append(f"sequence went back {len(regressions)} times, e.g. {regressions[:5]}")
    figures["wards_compared"] = len(expected)
    figures["ward_situation_mismatches"] = len(ward_mismatch)
    figures["rollup_mismatches"] = len(rollup_mismatch)
    if ward_mismatch:
        problems.append(f"last situation differs in {len(ward_mismatch)} wards: "
                        f"{ward_mismatch[:5]}")
    if rollup_mismatch:
        problems.append(f"rollups differ: {rollup_mismatch[:3]}")
    figures["double_counted_events"] = double
    log(f"verified: {figures}")


def sequence_regressions(records: Iterable[tuple[bytes | None, int]]) -> list[str]:
    """Every place where a key's situation `sequence` is lower than the one before it, in
    the order the records were written to their partition (a key lives in one partition):
    the README's consumer rule keeps the latest record whose sequence is not lower, so a
    record after a regression would be ignored (issue 12, hole 7)."""
    last: dict[bytes | None, int] = {}
    found: list[str] = []
    for key, sequence in records:
        before = last.get(key)
        if before is not None and sequence < before:
            found.append(f"{(key or b'').decode(errors='replace')}: {before} -> {sequence}")
        last[key] = sequence
    return found


# ------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("CITYOPS_BOOTSTRAP",
                                                              DEFAULT_BOOTSTRAP))
    parser.add_argument("--events", type=int, default=50_000,
                        help="records sent: unique + 5%% partner retries + 2%% hostile")
    parser.add_argument("--kills", type=int, default=5,
                        help="SIGKILLs of a worker (a random one when there are several)")
    parser.add_argument("--workers", type=int, default=1,
                        help="workers in the consumer group (kills are then also rebalances)")
    parser.add_argument("--broker-restarts", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=400.0,
                        help="records/s sent; kills and the broker restart fall at random "
                        "moments of the sending (0: send at once, act at shares of the work)")
    parser.add_argument("--processing-guarantee", default="at_least_once",
                        choices=["at_least_once", "exactly_once"])
    parser.add_argument("--session-timeout", type=float, default=10.0,
                        help="the worker's Faust broker_session_timeout in s (Faust: 60)")
    parser.add_argument("--preload", action="store_true",
                        help="send everything before the worker starts (a throughput run)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    args = parser.parse_args(argv)
    config = ChaosConfig(
        bootstrap=args.bootstrap, events=args.events, kills=args.kills, workers=args.workers,
        broker_restarts=args.broker_restarts, seed=args.seed, rate=args.rate,
        guarantee=args.processing_guarantee, preload=args.preload, timeout_s=args.timeout,
        session_timeout_s=args.session_timeout,
        keep_topics=args.keep_topics,
    )
    report = run_chaos(config)
    text = report.to_json()
    print(text)
    if args.report:
        args.report.write_text(text)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
