"""The gateway's pure parts and its limits, with a stand-in producer (no broker): token bucket,
receipt cache, request digest, the OpenAPI document, 429 per partner without starving others."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityops.gateway import (
    Gateway,
    GatewaySettings,
    Receipt,
    ReceiptCache,
    TokenBucket,
    openapi_document,
    request_digest,
)
from core import partner_tokens
from schemas.codec import default_catalog

pytestmark = pytest.mark.unit


class Metadata(NamedTuple):
    topic: str
    partition: int
    offset: int


class Future:
    """kafka-python's future as far as the gateway uses it."""

    def __init__(self, value: Metadata | None) -> None:
        self.value = value

    def add_callback(self, callback: Callable[[Any], None]) -> None:
        if self.value is not None:
            callback(self.value)

    def add_errback(self, _errback: Callable[[BaseException], None]) -> None:
        pass


class Producer:
    """Acknowledges at once, or never (`hang`), per topic."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.offset = 0

    def send(self, schema: str, record: dict[str, Any], headers: Any = None) -> Future:
        self.sent.append((schema, record))
        self.offset += 1
        return Future(None if self.hang else Metadata("city.incidents.112.v1", 0, self.offset))

    def send_raw(self, topic: str, key: bytes, value: bytes) -> Future:
        return Future(None if self.hang else Metadata(topic, 0, 0))

    def close(self) -> None:
        pass


def incident(source: str = "CALL_CENTER_112") -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-23T08:15:00Z",
            "incident_id": "112-2026-1", "source_system": source, "category": "FLOOD",
            "severity": "SEVERE", "status": "REPORTED", "ward_code": "36.72.01.1001"}


def test_token_bucket_waits_exactly_for_the_missing_records() -> None:
    bucket = TokenBucket(rate=10.0, burst=20.0)
    assert bucket.take(20, now=100.0) == 0.0
    assert bucket.take(5, now=100.0) == pytest.approx(0.5)
    assert bucket.take(5, now=100.5) == 0.0  # refilled 5 in 0.5 s
    assert bucket.take(30, now=110.0) == pytest.approx(1.0)  # capped at the burst of 20


def test_receipt_cache_evicts_the_least_recently_used() -> None:
    cache = ReceiptCache(2)
    for key in ("a", "b"):
        cache.put(key, Receipt(key, 200, "{}"))
    assert cache.get("a") is not None
    cache.put("c", Receipt("c", 200, "{}"))
    assert (cache.get("a") is not None, cache.get("b"), cache.get("c") is not None, len(cache)) == (
        True, None, True, 2)


def test_request_digest_is_the_records_not_their_spelling() -> None:
    record = {"a": 1, "b": "x"}
    assert request_digest("/v1/events/incident", [("S", record)], []) == request_digest(
        "/v1/events/incident", [("S", {"b": "x", "a": 1})], [])
    assert request_digest("/v1/events/incident", [("S", record)], []) != request_digest(
        "/v1/events/incident", [("S", record)], [("trace-id", b"1")])


def test_openapi_names_every_field_of_every_partner_schema_and_the_required_ones() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]
    for short in ("IncidentEvent", "LightingEvent", "WasteEvent", "RtReport"):
        fields = default_catalog().current(f"org.cityops.{short}").writer_schema["fields"]
        assert list(schemas[short]["properties"]) == ["type", *(f["name"] for f in fields)]
        assert schemas[short]["required"] == [f["name"] for f in fields if "default" not in f]
    responses = document["paths"]["/v1/events/incident"]["post"]["responses"]
    assert sorted(responses) == ["200", "400", "401", "403", "413", "415", "422", "429", "503"]


def _run(gateway: Gateway, scenario: Callable[[TestClient[Any, Any]], Any]) -> Any:
    async def main() -> Any:
        async with TestClient(TestServer(gateway.app())) as client:
            return await scenario(client)

    return asyncio.run(main())


def _gateway(tmp_path: Path, producer: Producer, now: list[float],
             **settings: Any) -> tuple[Gateway, dict[str, str]]:
    path = tmp_path / "tokens.json"
    tokens = {partner: partner_tokens.add(partner, partner.removeprefix("partner-"),
                                          {"partner-112": 1, "partner-police": 1}, path)
              for partner in ("partner-112", "partner-police")}
    gateway = Gateway(GatewaySettings("unused:9092", **settings), producer,
                      partner_tokens.load(path), ReceiptCache(100), clock=lambda: now[0])
    return gateway, tokens


def test_a_partner_over_its_rate_gets_429_with_retry_after_and_nothing_is_sent(
    tmp_path: Path,
) -> None:
    producer = Producer()
    now = [1000.0]
    gateway, tokens = _gateway(tmp_path, producer, now, rate_per_s=1.0, burst=5.0,
                               max_batch_records=5)
    auth = {"Authorization": f"Bearer {tokens['partner-112']}"}

    async def scenario(client: TestClient[Any, Any]) -> list[Any]:
        first = await client.post("/v1/events/incident", json=[incident() for _ in range(5)],
                                  headers=auth)
        second = await client.post("/v1/events/incident", json=[incident() for _ in range(3)],
                                   headers=auth)
        return [first.status, second.status, second.headers.get("Retry-After"),
                await second.json()]

    assert _run(gateway, scenario) == [200, 429, "3", {"error": "rate limit of 1 records/s"}]
    assert len(producer.sent) == 5


def test_one_partner_at_its_concurrency_bound_does_not_block_another(tmp_path: Path) -> None:
    producer = Producer(hang=True)  # the broker never acknowledges: requests wait until 503
    gateway, tokens = _gateway(tmp_path, producer, [0.0], max_inflight_per_partner=2,
                               ack_timeout_s=0.5)

    def auth(partner: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[partner]}"}

    async def scenario(client: TestClient[Any, Any]) -> list[Any]:
        async def post(partner: str, source: str) -> tuple[int, Any]:
            response = await client.post("/v1/events/incident", json=incident(source),
                                         headers=auth(partner))
            return response.status, json.loads(await response.text())["error"]

        hanging = [asyncio.create_task(post("partner-112", "CALL_CENTER_112"))
                   for _ in range(2)]
        await asyncio.sleep(0.1)
        refused = await post("partner-112", "CALL_CENTER_112")
        other = await post("partner-police", "POLICE")
        return [refused, other, *[await task for task in hanging]]

    refused, other, *hung = _run(gateway, scenario)
    assert refused == (429, "more than 2 concurrent requests of this partner")
    not_confirmed = ("not confirmed by the broker (TimeoutError); some records may be written: "
                     "retrying with the same Idempotency-Key is safe")
    assert other == (503, not_confirmed)  # waited for the broker, not for partner-112
    assert hung == [(503, not_confirmed)] * 2
