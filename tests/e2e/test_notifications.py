"""Agencies are reached (issue 25) on the real pipeline: a real worker turns an EXTREME flood
CRITICAL, its acknowledge clock (5 s in this test's thresholds) runs out and its dispatch clock
(120 s) comes within the lead time (110 s); an operator's ASSIGN (written to the actions topic
as the board writes it) follows. `cityops notify`, a process of its own, delivers each to a
signed webhook (the demo's sink: signature checked, repeats dropped) exactly once, with the
RW, kelurahan and category the worker's situation gave."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from bench.harness import Namespace, wait_until
from cityops.notify_sink import WebhookSink
from schemas.codec import encode
from tests.conftest import CITYOPS, ROOT
from tests.integration.test_web_api import sla_thresholds
from topics.catalog import OPERATOR_ACTIONS

pytestmark = pytest.mark.e2e

WARD = "36.72.05.1004"  # Panggung Rawi, kecamatan Jombang
INCIDENT = "112-NOTIFY-1"
DAY = 86_400
MAP = "https://www.openstreetmap.org/?mlat=-6.00631&mlon=106.07246#map=16/-6.00631/106.07246"


@pytest.fixture(scope="module")
def namespace(broker: str) -> Namespace:
    return Namespace.create(broker, "notify-e2e")


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[WebhookSink]:
    receiver = WebhookSink("e2e-hmac-key", tmp_path / "notifications.log")
    yield receiver
    receiver.close()


def test_the_command_center_and_the_agency_hear_of_a_flood_once_each(
        namespace: Namespace, sink: WebhookSink, tmp_path: Path, artifacts_dir: Path) -> None:
    thresholds = sla_thresholds(tmp_path, {
        "acknowledge_seconds": {"ALERT": DAY, "CRITICAL": 5},
        "default": {"dispatch_seconds": DAY, "on_scene_seconds": DAY, "resolve_seconds": DAY},
        "categories": {"FLOOD": {"dispatch_seconds": 120}}, "agencies": {}})
    (tmp_path / "hmac").write_text("e2e-hmac-key\n")
    (tmp_path / "channels.json").write_text(json.dumps({
        "languages": ["id"], "sla_lead_seconds": 110,
        "providers": {"webhook": {"hmac_key": {"file": str(tmp_path / "hmac")}}},
        "routes": [{"agency": "*", "kecamatan": "*", "webhook": [sink.url]}]}))
    reported = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    with namespace.worker(f"notify-e2e-{uuid.uuid4().hex[:8]}",
                          artifacts_dir / "notify-e2e-worker.log",
                          tmp_path / "worker", CITYOPS_SNAPSHOT_INTERVAL_S="5",
                          CITYOPS_THRESHOLDS=str(thresholds)):
        log = (artifacts_dir / "notify-e2e-notifier.log").open("wb")
        notifier = subprocess.Popen(
            [*CITYOPS, "notify", "--bootstrap", namespace.bootstrap, "--config",
             str(tmp_path / "channels.json"), "--thresholds", str(thresholds),
             "--metrics-port", "0", "--group", f"notify-e2e-{uuid.uuid4().hex[:6]}"],
            cwd=ROOT, env={**os.environ, **namespace.env}, stdout=log, stderr=subprocess.STDOUT)
        try:
            namespace.send([("IncidentEvent", {
                "event_id": str(uuid.uuid4()), "occurred_at": reported,
                "incident_id": INCIDENT, "source_system": "CALL_CENTER_112",
                "category": "FLOOD", "severity": "EXTREME", "status": "REPORTED",
                "ward_code": WARD, "latitude": None, "longitude": None, "rw": "003",
                "rt": "001", "description": "Banjir"})])
            wait_until(lambda: {r["kind"] for r in sink.received} >= {
                "CRITICAL_UNACKNOWLEDGED", "SLA_EXPIRING"}, timeout_s=120)
            action_id = str(uuid.uuid4())
            producer = KafkaProducer(bootstrap_servers=namespace.bootstrap)
            producer.send(namespace.name(OPERATOR_ACTIONS), key=WARD.encode(), value=encode(
                "OperatorAction", {
                    "action_id": action_id, "occurred_at": datetime.now(UTC),
                    "operator_id": "oscar", "operator_role": "OPERATOR", "action": "ASSIGN",
                    "ward_code": WARD, "incident_source": "CALL_CENTER_112",
                    "incident_id": INCIDENT, "agency": "BPBD", "text": None}))
            producer.flush()
            producer.close()
            wait_until(lambda: "ASSIGNED" in {r["kind"] for r in sink.received}, timeout_s=60)
            time.sleep(6)  # a snapshot later: nothing is decided twice
        finally:
            notifier.send_signal(signal.SIGINT)
            try:
                notifier.wait(30)
            except subprocess.TimeoutExpired:
                notifier.kill()
            log.close()
    case = f"{WARD}/CALL_CENTER_112/{INCIDENT}"
    by_kind = {r["kind"]: r for r in sink.received}
    assert sorted(r["key"].split("|")[1].split(":")[0] for r in sink.received) == [
        "assigned", "critical_unacknowledged", "sla_expiring"]  # each once
    assert by_kind["SLA_EXPIRING"]["key"] == f"{case}|sla_expiring:dispatch"
    assert by_kind["ASSIGNED"]["key"] == f"{case}|assigned:BPBD:{action_id}"
    assert (by_kind["ASSIGNED"]["agency"], by_kind["ASSIGNED"]["kecamatan_code"]) == (
        "BPBD", "36.72.05")
    lines: list[Any] = by_kind["ASSIGNED"]["messages"][0]["text"].splitlines()
    assert lines[:5] == [
        "[CityOps Cilegon] Penugasan untuk BPBD: Banjir di Kel. Panggung Rawi",
        f"Apa: Banjir (EXTREME), laporan CALL_CENTER_112 {INCIDENT}",
        "Di mana: RW 003, Kel. Panggung Rawi, Kec. Jombang",
        f"Peta: {MAP}",
        f"Sejak: {(reported + timedelta(hours=7)).strftime('%Y-%m-%d %H:%M')} WIB"]
    assert by_kind["CRITICAL_UNACKNOWLEDGED"]["agency"] == "COMMAND_CENTER"
