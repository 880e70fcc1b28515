"""`cityops gateway`: the partners' HTTP door into the input topics.

Why: the 112 call center's vendor, the citizen app and most city systems speak HTTP, not Kafka
with SASL and Avro. The gateway takes their JSON (or Avro single-object bytes), validates it
exactly as `cityops produce` does (the same `prepare`, the same reasons, every error named per
record, a batch all-or-nothing), checks that the partner's token may write the record's topic
(the per-source rule of `cityops.security.PARTNER_TOPICS`), and writes through the partner
producer (idempotent, acks=all). It answers only after the broker acknowledged every record,
with a receipt (topic, partition, offset) per record.

Retries (docs/gateway.md says which layer guarantees what): a request's answer is written to
the compacted `city.gateway.receipts.v1` (acks=all) before it is sent. Every gateway tails that
topic into a bounded cache and reads it to its end before it listens, so a retry with the same
`Idempotency-Key` (or, without one, the same event ids) on any gateway, also one restarted after
a kill -9, returns the first answer and writes nothing. What a receipt cannot cover (a gateway
killed between the records' acknowledgement and the receipt's, two gateways taking the same
retry at once, a key evicted from the cache) writes the records a second time; the pipeline
counts each `event_id` once, so nothing is double-counted.

Fairness: per partner a token bucket of records/s (429 with Retry-After) and a bound on
concurrent requests (429), and a bound on all requests in flight (503), so one partner cannot
take the producer, the event loop or the memory from the others.

Several gateways run behind a load balancer (or share one port on a host: `--reuse-port`);
they share nothing but Kafka.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import math
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from cityops.produce import (
    EVENT_TYPES,
    InputError,
    broker_errors,
    parse_json_text,
    prepare,
)
from cityops.security import PARTNER_TOPICS
from core import partner_tokens
from core.connection import kafka_python_security
from core.text import terminal_safe
from schemas.codec import CodecError, decode, default_catalog, encode
from topics.catalog import GATEWAY_RECEIPTS, TopicCatalog
from topics.event_types import topic_for

log = logging.getLogger(__name__)

DEFAULT_PORT: Final = 8088
MAX_BODY_BYTES: Final = 1 << 20
"""Largest request body: Kafka's default record limit; a batch of the cap fits well within."""
MAX_BATCH_RECORDS: Final = 500
MAX_KEY_CHARS: Final = 255
HEADER_PREFIX: Final = "X-Cityops-Header-"
"""Request headers with this prefix travel as Kafka record headers, the prefix removed and the
name lower-cased (HTTP names are case-insensitive): ``X-Cityops-Header-Trace-Id: 7`` becomes
the record header ``trace-id``."""
MAX_PASSED_HEADERS: Final = 16
MAX_HEADER_VALUE_BYTES: Final = 1024
AVRO_TYPES: Final = frozenset({"application/vnd.cityops.avro", "avro/binary"})
"""Content types of an Avro single-object body (one record; the path names its type)."""
REPLAYED_HEADER: Final = "Idempotent-Replayed"


@dataclass(frozen=True)
class GatewaySettings:
    """Limits and addresses of one gateway; the CLI's flags."""

    bootstrap: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    reuse_port: bool = False
    max_body_bytes: int = MAX_BODY_BYTES
    max_batch_records: int = MAX_BATCH_RECORDS
    rate_per_s: float = 500.0
    """Records per second per partner, sustained."""
    burst: float = 2000.0
    """Records a partner may send at once after being quiet (at least one full batch)."""
    max_inflight_per_partner: int = 16
    max_inflight_total: int = 128
    ack_timeout_s: float = 15.0
    """How long a request waits for the broker's acknowledgement before answering 503."""
    receipts_cached: int = 100_000
    """Receipts held in memory (LRU); an older key's retry is written again (and counted once
    downstream)."""
    tokens_file: Path | None = None


# ----------------------------------------------------------------------------------------------
# Pure pieces: token bucket, receipt cache, request digest, OpenAPI.
# ----------------------------------------------------------------------------------------------


@dataclass
class TokenBucket:
    """Records/s with a burst; `take` answers how long to wait when the request does not fit."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, count: int, now: float) -> float:
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if count <= self.tokens:
            self.tokens -= count
            return 0.0
        return (count - self.tokens) / self.rate


@dataclass(frozen=True)
class Receipt:
    """One answered request, as stored on the receipts topic."""

    request_sha256: str
    status: int
    body: str


class ReceiptCache:
    """Receipts by '<partner>|<key>', least recently used evicted beyond `capacity`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Receipt] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Receipt | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: str, receipt: Receipt) -> None:
        with self._lock:
            self._items[key] = receipt
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def request_digest(path: str, records: Sequence[tuple[str, Mapping[str, Any]]],
                   headers: Sequence[tuple[str, bytes]]) -> str:
    """SHA-256 of what a request asks for (its records as validated, not their spelling), so a
    retry that reformats the JSON is the same request and another batch under the same key is
    not."""
    canonical = json.dumps(
        {"path": path, "records": [[schema, record] for schema, record in records],
         "headers": [[name, base64.b64encode(value).decode()] for name, value in headers]},
        sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _json_schema(avro: Any, named: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema (OpenAPI 3.1) of the JSON a partner sends for an Avro type."""
    if isinstance(avro, list):
        branches = [_json_schema(branch, named) for branch in avro]
        return branches[0] if len(branches) == 1 else {"anyOf": branches}
    if isinstance(avro, str):
        if avro in named:
            known: dict[str, Any] = named[avro]
            return known
        return {"null": {"type": "null"}, "boolean": {"type": "boolean"},
                "int": {"type": "integer", "format": "int32"},
                "long": {"type": "integer", "format": "int64"},
                "float": {"type": "number"}, "double": {"type": "number"},
                "string": {"type": "string"},
                "bytes": {"type": "string", "format": "byte"}}[avro]
    logical = avro.get("logicalType")
    if logical == "timestamp-millis":
        return {"anyOf": [{"type": "string", "format": "date-time"},
                          {"type": "integer", "description": "UTC epoch milliseconds"}],
                "description": "ISO-8601 with a time zone, or UTC epoch milliseconds"}
    if logical == "uuid":
        return {"type": "string", "format": "uuid"}
    kind = avro["type"]
    if kind == "enum":
        schema: dict[str, Any] = {"type": "string", "enum": list(avro["symbols"])}
    elif kind == "array":
        schema = {"type": "array", "items": _json_schema(avro["items"], named)}
    elif kind == "map":
        schema = {"type": "object", "additionalProperties": _json_schema(avro["values"], named)}
    elif kind == "record":
        properties = {}
        for spec in avro["fields"]:
            prop = dict(_json_schema(spec["type"], named))
            if spec.get("doc"):
                prop["description"] = spec["doc"]
            properties[spec["name"]] = prop
        schema = {"type": "object", "properties": properties,
                  "required": [s["name"] for s in avro["fields"] if "default" not in s],
                  "additionalProperties": False}
    elif isinstance(kind, str) and kind in named:
        reference: dict[str, Any] = named[kind]
        return reference
    else:
        return _json_schema(kind, named)
    if avro.get("doc"):
        schema["description"] = avro["doc"]
    if "name" in avro:
        named[avro["name"]] = schema
        if avro.get("namespace"):
            named[f"{avro['namespace']}.{avro['name']}"] = schema
    return schema


def openapi_document() -> dict[str, Any]:
    """The gateway's OpenAPI 3.1 document, generated from the current Avro schemas."""
    components: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    errors = {"$ref": "#/components/schemas/Error"}
    for kind, schema_name in EVENT_TYPES.items():
        writer = default_catalog().current(schema_name).writer_schema
        short = schema_name.rpartition(".")[2]
        record = _json_schema(writer, {})
        record = {**record, "properties": {
            "type": {"type": "string", "enum": [kind],
                     "description": "optional; must name this path's type"},
            **record["properties"]}}
        components[short] = record
        ref = {"$ref": f"#/components/schemas/{short}"}
        paths[f"/v1/events/{kind}"] = {"post": {
            "summary": f"Send one {short} or a batch of them (all-or-nothing)",
            "operationId": f"send_{kind}",
            "security": [{"partnerToken": []}],
            "parameters": [
                {"name": "Idempotency-Key", "in": "header", "required": False,
                 "schema": {"type": "string", "maxLength": MAX_KEY_CHARS},
                 "description": "A retry with the same key returns the first answer "
                 "(default: the batch's event ids)"},
                {"name": f"{HEADER_PREFIX}*", "in": "header", "required": False,
                 "schema": {"type": "string"},
                 "description": "Passed through as Kafka record headers, prefix removed"},
            ],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"oneOf": [
                    ref, {"type": "array", "items": ref, "maxItems": MAX_BATCH_RECORDS}]}},
                "application/vnd.cityops.avro": {"schema": {
                    "type": "string", "format": "binary",
                    "description": "one record, Avro single-object encoding (C3 01, "
                    "fingerprint, body)"}},
            }},
            "responses": {
                "200": {"description": "Every record acknowledged by the broker (acks=all)",
                        "content": {"application/json": {"schema": {
                            "$ref": "#/components/schemas/Receipts"}}}},
                **{code: {"description": text, "content": {
                    "application/json": {"schema": errors}}}
                   for code, text in _ERROR_STATUSES.items()},
            },
        }}
    components["Receipts"] = {"type": "object", "properties": {
        "idempotency_key": {"type": "string"},
        "records": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "event_id": {"type": "string"},
            "topic": {"type": "string"}, "partition": {"type": "integer"},
            "offset": {"type": "integer"}}}}}}
    components["Error"] = {"type": "object", "properties": {
        "error": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "error": {"type": "string"}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "cityops partner gateway", "version": "1",
                 "description": "Partner events into the Cilegon command center's input "
                 "topics (README, 'For partners')."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "partnerToken": {"type": "http", "scheme": "bearer",
                             "description": "a partner token (cityops gateway token)"}}},
    }


_ERROR_STATUSES: Final = {
    "400": "Not JSON, not objects, or a bad Idempotency-Key or header; nothing written",
    "401": "No or unknown partner token",
    "403": "A record's topic is not the one the token's partner may write; nothing written",
    "413": "Body or batch above the cap; nothing written",
    "415": "Unsupported content type",
    "422": "A record breaks the schema (every error named per record), or the "
           "Idempotency-Key was used for another request; nothing written",
    "429": "The partner's rate or concurrency limit; Retry-After says when to retry",
    "503": "The broker did not acknowledge every record in time; retrying with the same "
           "Idempotency-Key is safe",
}


# ----------------------------------------------------------------------------------------------
# The service.
# ----------------------------------------------------------------------------------------------


class GatewayMetrics:
    """The gateway's Prometheus series (its own registry: one gateway per process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cityops_gateway_requests", "Partner requests answered, by partner and HTTP status",
            ["partner", "status"], registry=self.registry)
        self.records = Counter(
            "cityops_gateway_records", "Records acknowledged by the broker, by partner and topic",
            ["partner", "topic"], registry=self.registry)
        self.replays = Counter(
            "cityops_gateway_replays", "Retries answered from a receipt (nothing written)",
            ["partner"], registry=self.registry)
        self.answer_seconds = Histogram(
            "cityops_gateway_answer_seconds", "Time from request to answer",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry)
        self.inflight = Gauge(
            "cityops_gateway_inflight_requests", "Requests being handled, by partner",
            ["partner"], registry=self.registry)
        self.receipts_cached = Gauge(
            "cityops_gateway_receipts_cached", "Receipts held for retries",
            registry=self.registry)


class GatewayError(Exception):
    """An answer other than 200: status, body and extra headers."""

    def __init__(self, status: int, error: str, *, errors: Sequence[Mapping[str, Any]] = (),
                 retry_after: float | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.body: dict[str, Any] = {"error": error}
        if errors:
            self.body["errors"] = list(errors)
        self.headers = ({"Retry-After": str(max(1, math.ceil(retry_after)))}
                        if retry_after is not None else {})


@dataclass
class PartnerState:
    bucket: TokenBucket
    inflight: int = 0


class ReceiptTail:
    """Reads the receipts topic into the cache: to its end before the gateway listens, then
    continuously, so a retry sent to another gateway finds this one's answers."""

    def __init__(self, bootstrap: str, topic: str, cache: ReceiptCache) -> None:
        self.topic = topic
        self.cache = cache
        self._stop = threading.Event()
        self._bootstrap = bootstrap
        self._thread: threading.Thread | None = None

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None,
                                 enable_auto_commit=False, client_id="cityops-gateway-receipts",
                                 reconnect_backoff_max_ms=2000, **kafka_python_security())
        partitions = consumer.partitions_for_topic(self.topic) or set()
        if not partitions:
            consumer.close()
            raise RuntimeError(f"topic {self.topic} does not exist: run `cityops topics create`")
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        return consumer

    def _apply(self, records: Mapping[Any, Sequence[Any]]) -> None:
        for batch in records.values():
            for message in batch:
                if message.value is None or message.key is None:
                    continue
                try:
                    value = decode(message.value, expected="org.cityops.GatewayReceipt",
                                   trusted=True).record
                except CodecError as error:
                    log.warning("receipt at %s offset %d unreadable: %s", message.partition,
                                message.offset, error)
                    continue
                self.cache.put(message.key.decode("utf-8", "replace"), Receipt(
                    value["request_sha256"], value["status"], value["body"]))

    def catch_up(self, timeout_s: float = 60.0) -> Any:
        """Read to the end offsets as of now; returns the consumer to keep tailing with."""
        consumer = self._consumer()
        ends = consumer.end_offsets(list(consumer.assignment()))
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"receipts not read to their end within {timeout_s} s")
            self._apply(consumer.poll(timeout_ms=500, max_records=5000))
        return consumer

    def start(self, consumer: Any) -> None:
        def run() -> None:
            try:
                while not self._stop.is_set():
                    try:
                        self._apply(consumer.poll(timeout_ms=500, max_records=5000))
                    except Exception:  # a broker outage: keep tailing once it is back
                        log.exception("receipts tail")
                        self._stop.wait(1.0)
            finally:
                consumer.close()

        self._thread = threading.Thread(target=run, name="receipts-tail", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)


@dataclass
class Gateway:
    """One gateway process's state; `app()` is its aiohttp application."""

    settings: GatewaySettings
    producer: Any
    """A `cityops.producer.PartnerProducer` (send, send_raw, flush, close)."""
    tokens: partner_tokens.PartnerTokens | partner_tokens.ReloadingTokens
    cache: ReceiptCache
    topics: TopicCatalog = field(default_factory=TopicCatalog.from_env)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    clock: Callable[[], float] = time.monotonic
    _partners: dict[str, PartnerState] = field(default_factory=dict)
    _inflight_total: int = 0
    _inflight_keys: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    _executor: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="gateway-producer"))

    def app(self) -> web.Application:
        # client_max_size makes aiohttp refuse a larger body with 413 before reading it whole
        application = web.Application(client_max_size=self.settings.max_body_bytes)
        application.router.add_post("/v1/events", self._events)
        application.router.add_post("/v1/events/{kind}", self._events)
        application.router.add_get("/openapi.json", self._openapi)
        application.router.add_get("/metrics", self._metrics)
        application.router.add_get("/healthz", self._health)
        return application

    # -- plain routes ------------------------------------------------------------------------

    async def _openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(openapi_document())

    async def _metrics(self, _request: web.Request) -> web.Response:
        self.metrics.receipts_cached.set(len(self.cache))
        return web.Response(body=generate_latest(self.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "receipts_cached": len(self.cache)})

    # -- events --------------------------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.Response:
        started = self.clock()
        partner = "unauthenticated"
        try:
            token = self._authenticate(request)
            partner = token.partner
            response = await self._bounded(partner, lambda: self._handle(request, token))
        except GatewayError as error:
            response = web.json_response(error.body, status=error.status,
                                         headers=error.headers)
        except web.HTTPRequestEntityTooLarge:
            response = web.json_response(
                {"error": f"body above {self.settings.max_body_bytes} bytes; nothing written"},
                status=413)
        self.metrics.requests.labels(partner, str(response.status)).inc()
        self.metrics.answer_seconds.observe(self.clock() - started)
        return response

    def _authenticate(self, request: web.Request) -> partner_tokens.PartnerToken:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        found = self.tokens.lookup(value.strip()) if scheme.lower() == "bearer" else None
        if found is None or found.partner not in PARTNER_TOPICS:
            raise GatewayError(401, "a partner token is required: Authorization: Bearer <token>")
        return found

    async def _bounded(self, partner: str,
                       handler: Callable[[], Awaitable[web.Response]]) -> web.Response:
        state = self._partner(partner)
        if state.inflight >= self.settings.max_inflight_per_partner:
            raise GatewayError(429, f"more than {self.settings.max_inflight_per_partner} "
                               "concurrent requests of this partner", retry_after=1)
        if self._inflight_total >= self.settings.max_inflight_total:
            raise GatewayError(503, "the gateway is at its concurrency limit", retry_after=1)
        state.inflight += 1
        self._inflight_total += 1
        gauge = self.metrics.inflight.labels(partner)
        gauge.inc()
        try:
            return await handler()
        finally:
            state.inflight -= 1
            self._inflight_total -= 1
            gauge.dec()

    def _partner(self, partner: str) -> PartnerState:
        state = self._partners.get(partner)
        if state is None:  # bounded: tokens name only PARTNER_TOPICS' principals
            state = self._partners[partner] = PartnerState(
                TokenBucket(self.settings.rate_per_s,
                            max(self.settings.burst, self.settings.max_batch_records)))
        return state

    async def _handle(self, request: web.Request,
                      token: partner_tokens.PartnerToken) -> web.Response:
        kind = request.match_info.get("kind")
        if kind is not None and kind not in EVENT_TYPES:
            raise GatewayError(404, f"no event type {terminal_safe(kind)!r}: one of "
                               f"{', '.join(EVENT_TYPES)}")
        key = self._idempotency_key(request)
        headers = self._passed_headers(request)
        records = await self._records(request, kind)
        self._authorize(token, records)
        if not key:
            key = "event-ids:" + hashlib.sha256(
                "\n".join(str(r.get("event_id")) for _, r in records).encode()).hexdigest()
        digest = request_digest(request.path, records, headers)
        cache_key = f"{token.partner}|{key}"
        # one request per key at a time in this gateway: a concurrent retry waits for the first
        while (pending := self._inflight_keys.get(cache_key)) is not None:
            await asyncio.shield(pending)
        replay = self._replay(token.partner, cache_key, digest)
        if replay is not None:
            return replay
        wait = self._partner(token.partner).bucket.take(len(records), self.clock())
        if wait > 0:
            raise GatewayError(429, f"rate limit of {self.settings.rate_per_s:g} records/s",
                               retry_after=wait)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight_keys[cache_key] = done
        try:
            return await self._write(token.partner, key, cache_key, digest, records, headers)
        finally:
            del self._inflight_keys[cache_key]
            done.set_result(None)

    def _replay(self, partner: str, cache_key: str, digest: str) -> web.Response | None:
        receipt = self.cache.get(cache_key)
        if receipt is None:
            return None
        if receipt.request_sha256 != digest:
            raise GatewayError(422, "this Idempotency-Key was used for another request; "
                               "nothing written")
        self.metrics.replays.labels(partner).inc()
        return web.Response(text=receipt.body, status=receipt.status,
                            content_type="application/json",
                            headers={REPLAYED_HEADER: "true"})

    def _idempotency_key(self, request: web.Request) -> str:
        key = request.headers.get("Idempotency-Key", "")
        if len(key) > MAX_KEY_CHARS or not all(" " <= c <= "~" for c in key):
            raise GatewayError(400, f"Idempotency-Key: 1-{MAX_KEY_CHARS} printable ASCII "
                               "characters")
        return key

    def _passed_headers(self, request: web.Request) -> list[tuple[str, bytes]]:
        passed: list[tuple[str, bytes]] = []
        prefix = HEADER_PREFIX.lower()
        for name, value in request.headers.items():
            if not name.lower().startswith(prefix) or len(name) == len(prefix):
                continue
            encoded = value.encode("utf-8", "surrogateescape")
            if len(encoded) > MAX_HEADER_VALUE_BYTES:
                raise GatewayError(400, f"{terminal_safe(name)}: above "
                                   f"{MAX_HEADER_VALUE_BYTES} bytes; nothing written")
            passed.append((name[len(prefix):].lower(), encoded))
        if len(passed) > MAX_PASSED_HEADERS:
            raise GatewayError(400, f"more than {MAX_PASSED_HEADERS} {HEADER_PREFIX}* headers; "
                               "nothing written")
        return passed

    async def _records(self, request: web.Request,
                       kind: str | None) -> list[tuple[str, dict[str, Any]]]:
        content_type = request.content_type
        if content_type in AVRO_TYPES:
            if kind is None:
                raise GatewayError(400, "an Avro body needs the type in the path: "
                                   "/v1/events/{kind}")
            data = await request.read()
            try:
                decoded = decode(data, expected=EVENT_TYPES[kind])
            except CodecError as error:
                raise GatewayError(422, "record 0 is not a valid Avro single-object record; "
                                   "nothing written", errors=[{
                                       "index": 0, "reason": error.reason,
                                       "error": terminal_safe(error.message)}]) from None
            return [(decoded.full_name, decoded.record)]
        if content_type != "application/json":
            raise GatewayError(415, "Content-Type: application/json or "
                               "application/vnd.cityops.avro")
        data = await request.read()
        try:
            text = data.decode("utf-8")
            items = parse_json_text(text, "body")
        except UnicodeDecodeError:
            raise GatewayError(400, "the body is not UTF-8; nothing written") from None
        except InputError as error:
            raise GatewayError(400, f"{terminal_safe(str(error))}; nothing written") from None
        if not items:
            raise GatewayError(400, "no records in the body; nothing written")
        if len(items) > self.settings.max_batch_records:
            raise GatewayError(413, f"{len(items)} records, above the batch cap of "
                               f"{self.settings.max_batch_records}; nothing written")
        prepared = prepare(items, kind)
        if prepared.errors:
            raise GatewayError(
                422, f"{len(prepared.errors)} of {len(items)} records are invalid; nothing "
                "written", errors=[{"index": index, "error": terminal_safe(text)}
                                   for index, text in zip(prepared.error_indexes,
                                                          prepared.errors, strict=True)])
        return prepared.records

    def _authorize(self, token: partner_tokens.PartnerToken,
                   records: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        allowed = PARTNER_TOPICS[token.partner]
        refused = []
        for index, (schema, record) in enumerate(records):
            spec = topic_for(schema, record)
            if spec.name != allowed.name:
                refused.append({"index": index, "error": (
                    f"record {index}: {schema.rpartition('.')[2]} goes to {spec.name}; "
                    f"{token.partner} may write only {allowed.name}")})
        if refused:
            raise GatewayError(403, f"{len(refused)} of {len(records)} records are not this "
                               "partner's to write; nothing written", errors=refused)

    async def _write(self, partner: str, key: str, cache_key: str, digest: str,
                     records: Sequence[tuple[str, dict[str, Any]]],
                     headers: Sequence[tuple[str, bytes]]) -> web.Response:
        loop = asyncio.get_running_loop()
        timeout = self.settings.ack_timeout_s
        failures: tuple[type[BaseException], ...] = (TimeoutError, *broker_errors())

        async def send_and_ack() -> list[Any]:
            # the send itself may block (kafka-python waits up to max_block_ms for metadata
            # while the broker is away): inside the timeout too
            futures = await loop.run_in_executor(
                self._executor, self._send_all, records, headers)
            return await asyncio.gather(*(as_asyncio(loop, f) for f in futures))

        try:
            metadata = await asyncio.wait_for(send_and_ack(), timeout)
        except failures as error:
            raise GatewayError(503, f"not confirmed by the broker ({type(error).__name__}); "
                               "some records may be written: retrying with the same "
                               "Idempotency-Key is safe", retry_after=1) from None
        answer = {"idempotency_key": key, "records": [
            {"index": index, "event_id": record.get("event_id"), "topic": meta.topic,
             "partition": meta.partition, "offset": meta.offset}
            for index, ((_, record), meta) in enumerate(zip(records, metadata, strict=True))]}
        body = json.dumps(answer, separators=(",", ":"))
        receipt = {"partner": partner, "idempotency_key": key, "request_sha256": digest,
                   "status": 200, "body": body, "created_at": datetime.now(UTC)}
        value = encode("org.cityops.GatewayReceipt", receipt)

        async def write_receipt() -> None:
            future = await loop.run_in_executor(
                self._executor, self.producer.send_raw, self.topics.name(GATEWAY_RECEIPTS),
                cache_key.encode(), value)
            await as_asyncio(loop, future)

        try:
            await asyncio.wait_for(write_receipt(), timeout)
        except failures as error:
            raise GatewayError(503, f"records written, receipt not confirmed "
                               f"({type(error).__name__}): retrying with the same "
                               "Idempotency-Key is safe", retry_after=1) from None
        self.cache.put(cache_key, Receipt(digest, 200, body))
        for _, meta in zip(records, metadata, strict=True):
            self.metrics.records.labels(partner, meta.topic).inc()
        return web.Response(text=body, status=200, content_type="application/json")

    def _send_all(self, records: Sequence[tuple[str, dict[str, Any]]],
                  headers: Sequence[tuple[str, bytes]]) -> list[Any]:
        return [self.producer.send(schema, record, headers) for schema, record in records]

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with contextlib.suppress(*broker_errors()):
            self.producer.close()


def as_asyncio(loop: asyncio.AbstractEventLoop, future: Any) -> asyncio.Future[Any]:
    """A kafka-python future as an asyncio one (its callbacks run on the sender thread)."""
    result: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if result.done():  # the request timed out and went away meanwhile
            return
        if error is None:
            result.set_result(value)
        else:
            result.set_exception(error)

    def ok(value: Any) -> None:
        loop.call_soon_threadsafe(settle, value, None)

    def failed(error: BaseException) -> None:
        loop.call_soon_threadsafe(settle, None, error)

    future.add_callback(ok)
    future.add_errback(failed)
    return result


def serve(settings: GatewaySettings) -> int:
    """Run one gateway until SIGTERM/SIGINT: receipts read to their end, then listen."""
    from cityops.producer import PartnerProducer

    topics = TopicCatalog.from_env()
    cache = ReceiptCache(settings.receipts_cached)
    tail = ReceiptTail(settings.bootstrap, topics.name(GATEWAY_RECEIPTS), cache)
    consumer = tail.catch_up()
    tail.start(consumer)
    ack_ms = int(settings.ack_timeout_s * 1000)
    # the producer gives up on a record about when the request does (kafka-python wants the
    # delivery timeout above linger + request timeout)
    request_ms = max(1000, ack_ms // 2)
    producer = PartnerProducer(settings.bootstrap, client_id="cityops-gateway",
                               max_block_ms=min(5000, ack_ms), request_timeout_ms=request_ms,
                               delivery_timeout_ms=max(ack_ms, request_ms + 100))
    gateway = Gateway(settings, producer, partner_tokens.ReloadingTokens(settings.tokens_file),
                      cache, topics)

    async def run() -> None:
        runner = web.AppRunner(gateway.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port,
                           reuse_port=settings.reuse_port or None, backlog=2048)
        await site.start()
        print(f"cityops gateway listening on http://{settings.host}:{settings.port} "
              f"({len(cache)} receipts read)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await runner.cleanup()

    try:
        asyncio.run(run())
    finally:
        tail.stop()
        gateway.close()
    return 0
