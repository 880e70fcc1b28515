"""`cityops gateway` on the real broker: exact 4xx for every bad input with nothing written,
receipts that match the topic, headers through, retries answered from the receipt."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.gateway_process import GatewayProcess, make_token
from bench.harness import Namespace, read_records
from schemas.codec import encode
from tests.namespace import NamespacePlan
from topics.catalog import GATEWAY_RECEIPTS, INCIDENTS_112, INCIDENTS_CITIZEN, LIGHTING

pytestmark = pytest.mark.integration

PLAN = NamespacePlan.new("gateway")


def incident(**change: Any) -> dict[str, Any]:
    record = {
        "type": "incident", "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-23T08:15:00Z", "incident_id": "112-2026-004211",
        "source_system": "CALL_CENTER_112", "category": "FLOOD", "severity": "SEVERE",
        "status": "REPORTED", "ward_code": "36.72.01.1001", "rw": "003", "rt": "007",
        "description": "Banjir setinggi lutut",
    }
    record.update(change)
    return {key: value for key, value in record.items() if value is not None}


@pytest.fixture(scope="module")
def namespace(broker: str) -> Namespace:
    return PLAN.create(broker)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("gateway") / "partner-tokens.json"
    return {"file": path, "112": make_token(path, "partner-112", "vendor-112"),
            "citizen": make_token(path, "partner-citizen-app", "citizen-app"),
            "lighting": make_token(path, "partner-lighting", "pju-cms")}


@pytest.fixture(scope="module")
def gateway(namespace: Namespace, tokens: dict[str, Any],
            artifacts_dir: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(namespace.bootstrap, namespace.prefix, tokens["file"],
                             artifacts_dir / "gateway-integration.log",
                             ("--max-batch", "20", "--max-body-bytes", "65536")).start()
    yield process
    process.stop()


def _topic_event_ids(namespace: Namespace) -> list[str]:
    return [record["event_id"] for record in namespace.read(INCIDENTS_112, timeout_s=5)]


BAD_INPUTS = [
    # (what, path, token, body bytes, content type, extra headers, status, error, per record)
    ("no token", "/v1/events/incident", None, json.dumps(incident()).encode(),
     "application/json", {}, 401,
     "a partner token is required: Authorization: Bearer <token>", None),
    ("unknown token", "/v1/events/incident", "not-a-token", json.dumps(incident()).encode(),
     "application/json", {}, 401,
     "a partner token is required: Authorization: Bearer <token>", None),
    ("unknown type", "/v1/events/parking", "112", b"{}", "application/json", {}, 404,
     "no event type 'parking': one of incident, lighting, waste, rt_report", None),
    ("not JSON", "/v1/events/incident", "112", b"{oops", "application/json", {}, 400,
     "body: not JSON: Expecting property name enclosed in double quotes: line 1 column 2 "
     "(char 1); nothing written", None),
    ("not UTF-8", "/v1/events/incident", "112", b'{"a": "\xff"}', "application/json", {},
     400, "the body is not UTF-8; nothing written", None),
    ("empty array", "/v1/events/incident", "112", b"[]", "application/json", {}, 400,
     "no records in the body; nothing written", None),
    ("form body", "/v1/events/incident", "112", b"a=1", "application/x-www-form-urlencoded",
     {}, 415, "Content-Type: application/json or application/vnd.cityops.avro", None),
    ("batch above the cap", "/v1/events/incident", "112",
     json.dumps([incident() for _ in range(21)]).encode(), "application/json", {}, 413,
     "21 records, above the batch cap of 20; nothing written", None),
    ("body above the cap", "/v1/events/incident", "112",
     json.dumps(incident(description="x" * 70_000)).encode(), "application/json", {}, 413,
     "body above 65536 bytes; nothing written", None),
    ("bad idempotency key", "/v1/events/incident", "112", json.dumps(incident()).encode(),
     "application/json", {"Idempotency-Key": "x" * 256}, 400,
     "Idempotency-Key: 1-255 printable ASCII characters", None),
    ("too many pass-through headers", "/v1/events/incident", "112",
     json.dumps(incident()).encode(), "application/json",
     {f"X-Cityops-Header-H{i}": "v" for i in range(17)}, 400,
     "more than 16 X-Cityops-Header-* headers; nothing written", None),
    ("a bad enum in the second record", "/v1/events/incident", "112",
     json.dumps([incident(), incident(severity="HUGE")]).encode(), "application/json", {},
     422, "1 of 2 records are invalid; nothing written",
     [{"index": 1, "error": "record 1 (body[1]): IncidentEvent.severity: 'HUGE' is not one "
       "of EXTREME, SEVERE, MODERATE, MINOR, UNKNOWN"}]),
    ("a missing field and a non-UUID", "/v1/events/incident", "112",
     json.dumps([incident(incident_id=None), incident(event_id="nope")]).encode(),
     "application/json", {}, 422, "2 of 2 records are invalid; nothing written",
     [{"index": 0, "error": "record 0 (body[0]): IncidentEvent.incident_id: required field "
       "is missing"},
      {"index": 1, "error": "record 1 (body[1]): IncidentEvent.event_id: 'nope' is not a "
       "UUID (RFC 4122 text, 8-4-4-4-12 hex digits)"}]),
    ("type member contradicting the path", "/v1/events/lighting", "lighting",
     json.dumps(incident()).encode(), "application/json", {}, 422,
     "1 of 1 records are invalid; nothing written",
     [{"index": 0, "error": "record 0 (body): type: 'incident' contradicts --type lighting"}]),
    ("citizen app writing a 112 incident", "/v1/events/incident", "citizen",
     json.dumps([incident(source_system="CITIZEN_APP"), incident()]).encode(),
     "application/json", {}, 403,
     "1 of 2 records are not this partner's to write; nothing written",
     [{"index": 1, "error": "record 1: IncidentEvent goes to city.incidents.112.v1; "
       "partner-citizen-app may write only city.incidents.citizen.v1"}]),
    ("Avro bytes that are not single-object", "/v1/events/incident", "112", b"\x00\x01\x02",
     "application/vnd.cityops.avro", {}, 422,
     "record 0 is not a valid Avro single-object record; nothing written",
     [{"index": 0, "reason": "not_single_object",
       "error": "payload starts with 0001, not the single-object marker c301"}]),
]


@pytest.mark.parametrize(
    ("path", "token", "body", "content_type", "headers", "status", "error", "errors"),
    [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_every_bad_input_gets_its_exact_4xx_and_nothing_is_written(
    gateway: GatewayProcess, namespace: Namespace, tokens: dict[str, Any], path: str,
    token: str | None, body: bytes, content_type: str, headers: dict[str, str], status: int,
    error: str, errors: list[dict[str, Any]] | None,
) -> None:
    before = _topic_event_ids(namespace)
    answer = gateway.post(path, tokens.get(token, token) if token else None, None, raw=body,
                          content_type=content_type, headers=headers)
    expected: dict[str, Any] = {"error": error}
    if errors is not None:
        expected["errors"] = errors
    assert (answer.status, answer.json()) == (status, expected)
    assert _topic_event_ids(namespace) == before
    assert namespace.read(INCIDENTS_CITIZEN, timeout_s=5) == []
    assert namespace.read(LIGHTING, timeout_s=5) == []


def test_a_batch_is_acknowledged_with_the_receipt_of_every_record_and_headers_pass_through(
    gateway: GatewayProcess, namespace: Namespace, tokens: dict[str, Any],
) -> None:
    batch = [incident(incident_id=f"112-2026-9{i:05d}") for i in range(5)]
    answer = gateway.post("/v1/events/incident", tokens["112"], batch, key="batch-1",
                          headers={"X-Cityops-Header-Trace-Id": "t-42"})
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["idempotency_key"] == "batch-1"
    by_offset = {(r.partition, r.offset): r
                 for r in read_records(namespace.bootstrap, PLAN.name(INCIDENTS_112), 10)}
    for index, (sent, receipt) in enumerate(zip(batch, body["records"], strict=True)):
        assert (receipt["index"], receipt["event_id"], receipt["topic"]) == (
            index, sent["event_id"], PLAN.name(INCIDENTS_112))
        record = by_offset[(receipt["partition"], receipt["offset"])]
        assert record.key == sent["incident_id"].encode()
        assert ("trace-id", b"t-42") in record.headers
    # the retry gets the first answer, byte for byte, and writes nothing
    count = len(_topic_event_ids(namespace))
    again = gateway.post("/v1/events/incident", tokens["112"], batch, key="batch-1",
                         headers={"X-Cityops-Header-Trace-Id": "t-42"})
    assert (again.status, again.body, again.headers.get("Idempotent-Replayed")) == (
        200, answer.body, "true")
    assert len(_topic_event_ids(namespace)) == count
    # the same key for another batch is refused
    other = gateway.post("/v1/events/incident", tokens["112"], batch[:2], key="batch-1")
    assert (other.status, other.json()) == (422, {
        "error": "this Idempotency-Key was used for another request; nothing written"})
    # the receipt is on the receipts topic, keyed by partner and key
    receipts = read_records(namespace.bootstrap, PLAN.name(GATEWAY_RECEIPTS), 10)
    assert [r.key for r in receipts] == [b"partner-112|batch-1"]


def test_without_a_key_the_event_ids_make_the_retry_and_avro_bodies_are_accepted(
    gateway: GatewayProcess, namespace: Namespace, tokens: dict[str, Any],
) -> None:
    record = incident(incident_id="112-2026-777777")
    first = gateway.post("/v1/events/incident", tokens["112"], record)
    again = gateway.post("/v1/events/incident", tokens["112"], record)
    assert first.status == again.status == 200
    assert again.body == first.body and again.headers.get("Idempotent-Replayed") == "true"
    assert _topic_event_ids(namespace).count(record["event_id"]) == 1
    lamp = {"event_id": str(uuid.uuid4()), "occurred_at": 1795000000000,
            "lamp_id": "PJU-CLG-00001", "report_kind": "STATUS", "lamp_status": "OK",
            "power_state": "ON"}
    from cityops.produce import to_record

    schema, avro_record = to_record(lamp, "lighting")
    answer = gateway.post("/v1/events/lighting", tokens["lighting"], None,
                          raw=encode(schema, avro_record),
                          content_type="application/vnd.cityops.avro")
    assert answer.status == 200, answer.body
    [written] = namespace.read(LIGHTING, timeout_s=5)
    assert written["event_id"] == lamp["event_id"]


def test_the_openapi_document_and_the_metrics_are_served(
    gateway: GatewayProcess,
) -> None:
    document = gateway.get("/openapi.json").json()
    assert sorted(document["paths"]) == ["/v1/events/incident", "/v1/events/lighting",
                                         "/v1/events/rt_report", "/v1/events/waste"]
    assert document["components"]["schemas"]["IncidentEvent"]["properties"]["severity"][
        "enum"] == ["EXTREME", "SEVERE", "MODERATE", "MINOR", "UNKNOWN"]
    metrics = gateway.get("/metrics").body.decode()
    assert 'cityops_gateway_requests_total{partner="partner-112",status="200"}' in metrics
    assert 'cityops_gateway_requests_total{partner="unauthenticated",status="401"} 2.0' in metrics
