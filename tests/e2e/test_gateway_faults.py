"""The gateway through faults on a real broker: a kill -9 mid-batch with the partner retrying
the same keys (0 lost, 0 double-counted), a broker restart under load (503s, never a 2xx for
an unwritten record), and 1,000 concurrent partner connections.

Counting is the worker's own code (`streams/test_driver.py`) over the records the topic really
holds: a batch written twice (the gateway killed between its records' acknowledgement and its
receipt's) is on the topic twice and folded once.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.gateway_process import Answer, GatewayProcess, make_token
from bench.harness import Namespace, PrivateCluster, free_base_port, read_records
from cityops.assets import generate_asset_registry
from core.reference_data import load_ward_records
from core.vocabulary import ASSET_REGISTRY_SEED
from streams.test_driver import TopologyTestDriver
from topics.catalog import INCIDENTS_112, INCIDENTS_ENRICHED

pytestmark = pytest.mark.e2e

WARDS = [ward["kelurahan_code"] for ward in load_ward_records()][:6]


def batch_of(number: int, size: int, now: datetime) -> list[dict[str, Any]]:
    return [{
        "type": "incident", "event_id": str(uuid.uuid4()),
        "occurred_at": (now - timedelta(minutes=30)).isoformat(),
        "incident_id": f"112-{number:04d}-{i:03d}", "source_system": "CALL_CENTER_112",
        "category": "FLOOD", "severity": "SEVERE", "status": "REPORTED",
        "ward_code": WARDS[(number + i) % len(WARDS)],
    } for i in range(size)]


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "partner-tokens.json"
    return path, make_token(path, "partner-112", "vendor-112")


def _retry_until_ok(gateway: GatewayProcess, token: str, key: str,
                    batch: list[dict[str, Any]], timeout_s: float = 120.0) -> Answer:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = gateway.post("/v1/events/incident", token, batch, key=key)
        except OSError:
            answer = None
        if answer is not None and answer.status == 200:
            return answer
        assert answer is None or answer.status in (429, 503), (answer.status, answer.body)
        assert time.monotonic() < deadline, f"{key} not accepted in {timeout_s} s"
        time.sleep(0.5)


def _fold(namespace: Namespace, now: datetime) -> Counter[str]:
    """What the worker's code makes of the topic as it is: fold outcomes by name."""
    wards = load_ward_records()
    driver = TopologyTestDriver(wards, generate_asset_registry(wards, seed=ASSET_REGISTRY_SEED))
    for record in read_records(namespace.bootstrap, namespace.name(INCIDENTS_112), 30):
        driver.pipe("incident", record.value, now=now, key=record.key,
                    source="CALL_CENTER_112")
    assert driver.outputs.dead_letters == []
    return Counter({status: count for (topic, status), count
                    in driver.outputs.aggregated.items() if topic == INCIDENTS_ENRICHED.name})


@pytest.mark.timeout(600)
def test_a_gateway_killed_mid_batch_with_the_partner_retrying_loses_and_doubles_nothing(
    broker: str, tokens: tuple[Path, str], artifacts_dir: Path,
) -> None:
    namespace = Namespace.fresh(broker, "gateway-kill")
    namespace.cityops("topics", "create")
    tokens_file, token = tokens
    now = datetime.now(UTC)
    batches = {f"kill-{n:03d}": batch_of(n, 25, now) for n in range(40)}
    log = artifacts_dir / "gateway-kill.log"
    first = GatewayProcess(namespace.bootstrap, namespace.prefix, tokens_file, log).start()
    answers: dict[str, Answer] = {}
    lock = threading.Lock()
    keys = iter(sorted(batches))

    def partner() -> None:  # four partner connections sending one batch after another
        while True:
            with lock:
                key = next(keys, None)
            if key is None:
                return
            try:
                answer = first.post("/v1/events/incident", token, batches[key], key=key)
            except OSError:
                return  # the gateway died under this request
            if answer.status == 200:
                with lock:
                    answers[key] = answer

    threads = [threading.Thread(target=partner) for _ in range(4)]
    for thread in threads:
        thread.start()
    while len(answers) < 12:
        time.sleep(0.005)
    first.kill()  # mid-batch: four requests in flight
    for thread in threads:
        thread.join(60)
    answered_before = dict(answers)
    assert 12 <= len(answered_before) < len(batches)

    second = GatewayProcess(namespace.bootstrap, namespace.prefix, tokens_file, log,
                            port=first.port).start()
    try:
        for key, batch in sorted(batches.items()):  # the partner retries everything
            answer = _retry_until_ok(second, token, key, batch)
            if key in answered_before:
                assert answer.body == answered_before[key].body
                assert answer.headers.get("Idempotent-Replayed") == "true"
    finally:
        second.stop()

    on_topic = Counter(record["event_id"] for record in namespace.read(INCIDENTS_112))
    sent = {record["event_id"] for batch in batches.values() for record in batch}
    assert set(on_topic) == sent  # 0 lost
    doubled = {event_id for event_id, count in on_topic.items() if count > 1}
    answered_ids = {r["event_id"] for key in answered_before for r in batches[key]}
    assert not doubled & answered_ids  # a receipted batch is never written again
    assert max(on_topic.values()) <= 2
    folded = _fold(namespace, now)
    assert folded == Counter({"applied": len(sent), "duplicate": len(doubled)}) - Counter()
    namespace.teardown()


@pytest.mark.timeout(900)
def test_a_broker_restart_under_load_gives_503s_and_never_a_2xx_for_an_unwritten_record(
    tmp_path: Path, tokens: tuple[Path, str], artifacts_dir: Path,
) -> None:
    cluster = PrivateCluster(tmp_path / "var", free_base_port(1, first=45092), nodes=1)
    cluster.start()
    try:
        namespace = Namespace.fresh(cluster.bootstrap, "gateway-restart")
        namespace.cityops("topics", "create")
        tokens_file, token = tokens
        gateway = GatewayProcess(
            namespace.bootstrap, namespace.prefix, tokens_file,
            artifacts_dir / "gateway-broker-restart.log",
            ("--ack-timeout", "4", "--rate", "100000", "--burst", "100000")).start()
        now = datetime.now(UTC)
        results: list[tuple[str, list[dict[str, Any]], int, Any]] = []
        lock = threading.Lock()
        stop = threading.Event()
        counter = iter(range(1_000_000))

        def partner() -> None:
            while not stop.is_set():
                with lock:
                    number = next(counter)
                batch = batch_of(number, 10, now)
                key = f"restart-{number}"
                answer = gateway.post("/v1/events/incident", token, batch, key=key)
                with lock:
                    results.append((key, batch, answer.status,
                                    answer.json() if answer.status == 200 else None))

        threads = [threading.Thread(target=partner) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(5)
        cluster.stop()
        time.sleep(8)
        cluster.start()
        time.sleep(10)
        stop.set()
        for thread in threads:
            thread.join(120)
        try:
            statuses = Counter(status for _, _, status, _ in results)
            assert set(statuses) <= {200, 503}, statuses
            assert statuses[503] > 0 and statuses[200] > 0, statuses
            # the partner retries every 503 with its key until it is accepted
            for key, batch, status, _ in results:
                if status == 503:
                    _retry_until_ok(gateway, token, key, batch)
        finally:
            gateway.stop()
        held = {(r.partition, r.offset): r for r in read_records(
            namespace.bootstrap, namespace.name(INCIDENTS_112), 60)}
        from schemas.codec import decode

        for _key, batch, status, body in results:
            if status != 200:
                continue
            for sent, receipt in zip(batch, body["records"], strict=True):
                record = held[(receipt["partition"], receipt["offset"])]
                assert decode(record.value).record["event_id"] == sent["event_id"]
        on_topic = {decode(r.value).record["event_id"] for r in held.values()}
        assert on_topic == {rec["event_id"] for _, batch, _, _ in results for rec in batch}
    finally:
        cluster.stop()


@pytest.mark.timeout(300)
def test_a_thousand_concurrent_partner_connections_are_all_answered(
    broker: str, tokens: tuple[Path, str], artifacts_dir: Path,
) -> None:
    """Bounded and loopback only: 1,000 connections open at once, one request each."""
    from aiohttp import ClientSession, ClientTimeout, TCPConnector

    namespace = Namespace.fresh(broker, "gateway-load")
    namespace.cityops("topics", "create")
    tokens_file, token = tokens
    gateway = GatewayProcess(
        namespace.bootstrap, namespace.prefix, tokens_file, artifacts_dir / "gateway-load.log",
        ("--rate", "100000", "--burst", "100000", "--max-inflight-per-partner", "1000",
         "--max-inflight", "1000")).start()
    now = datetime.now(UTC)
    connections = 1000

    async def load() -> Counter[int]:
        ready = asyncio.Event()
        opened = 0

        async def one(number: int, session: ClientSession) -> int:
            nonlocal opened
            opened += 1
            if opened == connections:
                ready.set()
            await ready.wait()  # every connection's request goes out together
            async with session.post(
                    f"{gateway.url}/v1/events/incident", json=batch_of(number, 1, now),
                    headers={"Authorization": f"Bearer {token}",
                             "Idempotency-Key": f"load-{number}"}) as response:
                await response.read()
                return response.status

        connector = TCPConnector(limit=connections, force_close=True)
        async with ClientSession(connector=connector,
                                 timeout=ClientTimeout(total=120)) as session:
            statuses = await asyncio.gather(*(one(n, session) for n in range(connections)))
        return Counter(statuses)

    try:
        statuses = asyncio.run(load())
    finally:
        gateway.stop()
    assert statuses == Counter({200: connections})
    assert len(namespace.read(INCIDENTS_112)) == connections
    namespace.teardown()
