"""`cityops notify` against real servers: a real SMTP server (aiosmtpd), a local HTTP server that
answers as the Telegram Bot API and WhatsApp Cloud API document, a signed webhook, the real
broker, and a kill -9 in the middle of a send."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from cityops.notify import Email, Notifier, Telegram, Webhook, WhatsApp, build_channels
from processors.notifications import Delivery, Message, Notification, idempotency_key, parse_config
from processors.thresholds import Thresholds
from schemas.codec import decode, encode
from tests.conftest import CITYOPS, ROOT
from topics.catalog import (
    DEAD_LETTERS,
    NOTIFICATION_DELIVERIES,
    NOTIFICATIONS_OUTBOX,
    OPERATOR_ACTIONS,
    TopicCatalog,
)

pytestmark = pytest.mark.integration

WARD = "36.72.01.1001"


class Recorder(BaseHTTPRequestHandler):
    """Answers the scripted (status, headers, body, delay) for each POST, in order, per path
    prefix; records every request."""

    def do_POST(self) -> None:
        server: Any = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server.requests.append((self.path, dict(self.headers), body))
        server.times.append((self.path, time.monotonic()))
        script = server.script.get(self.path, [])
        status, headers, answer, delay = script.pop(0) if script else (200, {}, b"{}", 0.0)
        if delay == "hold":
            server.held.set()
            server.release.wait(60)
        elif delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except OSError:
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.requests, server.script, server.times = [], {}, []
    server.held, server.release = threading.Event(), threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.release.set()
    server.shutdown()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    with socket.socket() as probe:  # a free port: aiosmtpd's start() connects to the one given
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def notification(key: str = f"{WARD}/CALL_CENTER_112/INC-7|assigned:BPBD:a1") -> Notification:
    return Notification(
        key, "ASSIGNED", f"{WARD}/CALL_CENTER_112/INC-7", "assigned:BPBD:a1", WARD, "36.72.01",
        "BPBD", 1_796_565_600_000, "https://osm/x",
        (Message("id", "Penugasan untuk BPBD", "teks id", ("apa", "di mana", "sejak", "harap",
                                                          "peta")),),
        (Delivery("webhook", "http://x"),))


def telegram_ok(message_id: int) -> bytes:
    return json.dumps({"ok": True, "result": {"message_id": message_id, "date": 1796565600,
                                              "chat": {"id": -1001, "type": "group"},
                                              "text": "teks id"}}).encode()


def test_telegram_429_retry_after_5xx_and_timeout_read_as_documented(http: Any) -> None:
    path = "/bot123:SECRET/sendMessage"
    http.script[path] = [
        (429, {}, b'{"ok":false,"error_code":429,"description":"Too Many Requests: retry '
                  b'after 7","parameters":{"retry_after":7}}', 0.0),
        (502, {}, b'{"ok":false,"error_code":502,"description":"Bad Gateway"}', 0.0),
        (200, {}, telegram_ok(1), 2.0),
        (400, {}, b'{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}',
         0.0),
        (200, {}, telegram_ok(42), 0.0),
    ]
    channel = Telegram("123:SECRET", http.base, timeout=1.0)
    outcomes = [channel.send(notification(), "-1001", "k") for _ in range(5)]
    assert [(o.ok, o.reason, o.permanent, o.retry_after) for o in outcomes] == [
        (False, "rate_limited", False, 7.0), (False, "server_error", False, None),
        (False, "timeout", False, None), (False, "refused", True, None),
        (True, "sent", False, None)]
    assert outcomes[4].provider_id == "42"
    assert outcomes[3].answer == ('400 {"ok":false,"error_code":400,"description":"Bad Request: '
                                  'chat not found"}')
    assert all("SECRET" not in o.answer for o in outcomes)
    assert [json.loads(body) for _, _, body in http.requests] == [
        {"chat_id": "-1001", "text": "teks id", "disable_web_page_preview": True}] * 5
    assert {p for p, _, _ in http.requests} == {path}


def test_whatsapp_template_message_and_its_rate_limit_codes(http: Any) -> None:
    path = "/v21.0/1099/messages"
    http.script[path] = [
        (400, {"Retry-After": "3"}, json.dumps({"error": {
            "message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429,
            "fbtrace_id": "Az8"}}).encode(), 0.0),
        (400, {}, json.dumps({"error": {"message": "(#131056) (Business Account, Consumer "
                                        "Account) pair rate limit hit", "type": "OAuthException",
                                        "code": 131056, "fbtrace_id": "Az9"}}).encode(), 0.0),
        (404, {}, json.dumps({"error": {"message": "(#132001) Template name does not exist in "
                                        "the translation", "type": "OAuthException",
                                        "code": 132001, "fbtrace_id": "AzA"}}).encode(), 0.0),
        (200, {}, json.dumps({"messaging_product": "whatsapp", "contacts": [
            {"input": "628111", "wa_id": "628111"}], "messages": [
            {"id": "wamid.HBgLNjI4MTExFQIAERgSQ0"}]}).encode(), 0.0),
    ]
    channel = WhatsApp("EAAtoken", "1099", "cityops_notice", "id", http.base, "v21.0", 5.0)
    outcomes = [channel.send(notification(), "628111", "k") for _ in range(4)]
    assert [(o.ok, o.reason, o.permanent, o.retry_after) for o in outcomes] == [
        (False, "rate_limited", False, 3.0), (False, "rate_limited", False, None),
        (False, "refused", True, None), (True, "sent", False, None)]
    assert outcomes[3].provider_id == "wamid.HBgLNjI4MTExFQIAERgSQ0"
    _, headers, body = http.requests[0]
    assert headers["Authorization"] == "Bearer EAAtoken"
    assert json.loads(body) == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "628111",
        "type": "template",
        "template": {"name": "cityops_notice", "language": {"code": "id"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": t} for t in
                                            ("apa", "di mana", "sejak", "harap", "peta")]}]},
        "biz_opaque_callback_data": f"{WARD}/CALL_CENTER_112/INC-7|assigned:BPBD:a1"}


def test_email_goes_through_a_real_smtp_server_with_a_derived_message_id(
        smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    key = idempotency_key(notification().key, "email", "bpbd@example.org")
    outcome = Email("127.0.0.1", port, "cityops@example.org").send(
        notification(), "bpbd@example.org", key)
    assert (outcome.ok, outcome.answer) == (True, "250 accepted")
    ((sender, recipients, raw),) = box.messages
    mail = message_from_bytes(raw)
    assert (sender, recipients) == ("cityops@example.org", ["bpbd@example.org"])
    assert mail["Message-ID"] == f"<{key}@cityops.cilegon.go.id>"
    assert mail["Subject"] == "Penugasan untuk BPBD"
    assert mail.get_payload(decode=True) == b"teks id\r\n"  # SMTP line ends


def test_webhook_is_signed_over_timestamp_and_body_with_a_stable_key(http: Any) -> None:
    outcome = Webhook("hmac-secret", clock=lambda: 1_796_565_600.0).send(
        notification(), f"{http.base}/hook", "idem-1")
    assert outcome.ok
    _, headers, body = http.requests[0]
    assert headers["Idempotency-Key"] == "idem-1"
    assert headers["X-Cityops-Timestamp"] == "1796565600"
    assert headers["X-Cityops-Signature"] == "v1=" + hmac.new(
        b"hmac-secret", b"1796565600." + body, hashlib.sha256).hexdigest()
    assert json.loads(body)["key"] == notification().key
    assert json.loads(body)["decided_at"] == "2026-12-06T14:00:00+00:00"


# -- on the broker -------------------------------------------------------------------------------


def _config(http: Any, smtp_port: int, tmp: Path) -> dict[str, Any]:
    (tmp / "hmac").write_text("hmac-secret\n")
    return {
        "languages": ["id"],
        "retry": {"attempts": 3, "base_seconds": 0.2, "max_seconds": 1, "timeout_seconds": 5},
        "providers": {
            "telegram": {"api_base": http.base, "bot_token": {"env": "TEST_TG_TOKEN"}},
            "whatsapp": {"api_base": http.base, "api_version": "v21.0",
                         "phone_number_id": "1099", "access_token": {"env": "TEST_WA_TOKEN"},
                         "template": "cityops_notice"},
            "email": {"host": "127.0.0.1", "port": smtp_port, "sender": "cityops@example.org"},
            "webhook": {"hmac_key": {"file": str(tmp / "hmac")}},
        },
        "routes": [{"agency": "BPBD", "kecamatan": "*", "telegram": ["-1001"],
                    "whatsapp": ["628111"], "email": ["bpbd@example.org"],
                    "webhook": [f"{http.base}/hook"]},
                   {"agency": "COMMAND_CENTER", "kecamatan": "*",
                    "webhook": [f"{http.base}/hook"]}],
    }


def _action(kind: str, action_id: str, **extra: Any) -> dict[str, Any]:
    return {"action_id": action_id, "occurred_at": datetime.now(UTC), "operator_id": "op1",
            "operator_role": "SUPERVISOR", "action": kind, "ward_code": WARD,
            "incident_source": "CALL_CENTER_112", "incident_id": f"INC-{action_id[:6]}",
            "agency": None, "text": None, **extra}


def _send_actions(bootstrap: str, actions: list[dict[str, Any]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    topic = TopicCatalog.from_env().name(OPERATOR_ACTIONS)
    for record in actions:
        producer.send(topic, key=WARD.encode(), value=encode("OperatorAction", record))
    producer.flush()
    producer.close()


def _read(bootstrap: str, spec: Any, schema: str) -> list[tuple[str, dict[str, Any]]]:
    topic = TopicCatalog.from_env().name(spec)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions)
    found: list[tuple[str, dict[str, Any]]] = []
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        for records in consumer.poll(timeout_ms=500).values():
            found += [(r.key.decode(), decode(r.value, expected=schema).record) for r in records]
    consumer.close()
    return found


def _wait(condition: Any, seconds: float = 180.0) -> None:
    """An upper bound, not a timing assertion: group joins take seconds on a loaded machine."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.2)


def test_assignments_reach_every_channel_over_the_broker_with_retries_and_a_dead_letter(
        catalog_topics: str, http: Any, smtp: tuple[Mailbox, int], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    box, port = smtp
    monkeypatch.setenv("TEST_TG_TOKEN", "123:SECRET")
    monkeypatch.setenv("TEST_WA_TOKEN", "EAAtoken")
    config = parse_config(_config(http, port, tmp_path))
    tg = "/bot123:SECRET/sendMessage"
    http.script[tg] = [(429, {}, b'{"ok":false,"error_code":429,"description":"Too Many '
                                 b'Requests: retry after 1","parameters":{"retry_after":1}}', 0.0),
                       (200, {}, telegram_ok(5), 0.0), (200, {}, telegram_ok(6), 0.0)]
    wa_ok = json.dumps({"messaging_product": "whatsapp", "contacts": [], "messages": [
        {"id": "wamid.1"}]}).encode()
    http.script["/v21.0/1099/messages"] = [(500, {}, b'{"error":{"code":1,"message":"x"}}', 0.0),
                                           (200, {}, wa_ok, 0.0),
                                           (503, {}, b"down", 0.0), (503, {}, b"down", 0.0),
                                           (503, {}, b"down", 0.0)]
    assign_id, close_id = str(uuid.uuid4()), str(uuid.uuid4())
    assign = _action("ASSIGN", assign_id, agency="BPBD")
    close = _action("CLOSE", close_id, incident_id=assign["incident_id"], text="selesai")
    notifier = Notifier(catalog_topics, config, build_channels(config), Thresholds(),
                        group=f"notify-{uuid.uuid4().hex[:6]}")
    threads = [threading.Thread(target=loop, daemon=True)
               for loop in (notifier.run_decider, notifier.run_sender)]
    for thread in threads:
        thread.start()
    _send_actions(catalog_topics, [assign, assign, close])  # the replayed ASSIGN: once
    try:
        _wait(lambda: len([k for k, v in _read(catalog_topics, NOTIFICATION_DELIVERIES,
                                                "org.cityops.NotificationDelivery")
                           if v["status"] in ("SENT", "DEAD")]) == 8)
    finally:
        notifier.stop()
        for thread in threads:
            thread.join(30)
    outbox = _read(catalog_topics, NOTIFICATIONS_OUTBOX, "org.cityops.Notification")
    case = f"{WARD}/CALL_CENTER_112/{assign['incident_id']}"
    assert [key for key, _ in outbox] == [f"{case}|assigned:BPBD:{assign_id}",
                                          f"{case}|closed:{close_id}"]
    final: dict[str, tuple[str, int]] = {}
    for key, value in _read(catalog_topics, NOTIFICATION_DELIVERIES,
                            "org.cityops.NotificationDelivery"):
        final[key] = (value["status"], value["attempt"])
    assigned, closed = (key for key, _ in outbox)
    assert final == {
        f"{assigned}|telegram|-1001": ("SENT", 2), f"{assigned}|whatsapp|628111": ("SENT", 2),
        f"{assigned}|email|bpbd@example.org": ("SENT", 1),
        f"{assigned}|webhook|{http.base}/hook": ("SENT", 1),
        f"{closed}|telegram|-1001": ("SENT", 1), f"{closed}|whatsapp|628111": ("DEAD", 3),
        f"{closed}|email|bpbd@example.org": ("SENT", 1),
        f"{closed}|webhook|{http.base}/hook": ("SENT", 1)}
    assert len([r for r in http.requests if r[0] == tg]) == 3  # 429, then one per notice
    rate_limited, retried = [at for path, at in http.times if path == tg][:2]
    assert retried - rate_limited >= 1.0  # Telegram's retry_after, above the 0.2 s backoff
    assert [message_from_bytes(m[2])["Subject"] for m in box.messages] == [
        "Penugasan untuk BPBD: Kasus di Kel. Cibeber", "Kasus ditutup: Kasus di Kel. Cibeber"]
    letters = [v for _, v in _read(catalog_topics, DEAD_LETTERS, "org.cityops.DeadLetter")
               if v["reason"] == "notification_undeliverable"]
    assert [(v["stage"], v["error_message"], v["error_class"]) for v in letters] == [
        ("PROCESS", "whatsapp refused or did not answer after 3 attempt(s): 503 down",
         "notify.whatsapp.server_error")]


def test_a_notifier_killed_mid_send_resends_the_same_request_and_loses_nothing(
        catalog_topics: str, http: Any, smtp: tuple[Mailbox, int], tmp_path: Path) -> None:
    _, port = smtp
    config = _config(http, port, tmp_path)
    config["routes"] = [{"agency": "BPBD", "kecamatan": "*", "webhook": [f"{http.base}/hook"]}]
    del config["providers"]["telegram"], config["providers"]["whatsapp"]
    (tmp_path / "channels.json").write_text(json.dumps(config))
    http.script["/hook"] = [(200, {}, b"{}", "hold")]
    group = f"notify-{uuid.uuid4().hex[:6]}"
    command = [*CITYOPS, "notify", "--bootstrap", catalog_topics, "--config",
               str(tmp_path / "channels.json"), "--group", group, "--metrics-port", "0"]
    env = {**os.environ}
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    ids = [str(uuid.uuid4()) for _ in range(2)]
    _send_actions(catalog_topics, [_action("ASSIGN", i, agency="BPBD") for i in ids])
    try:
        assert http.held.wait(180), "the notifier never sent"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    http.release.set()
    second = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        _wait(lambda: len({r[1]["Idempotency-Key"] for r in http.requests}) == 2
              and len(http.requests) >= 3)
        time.sleep(2)
    finally:
        second.send_signal(signal.SIGINT)
        try:
            second.wait(30)
        except subprocess.TimeoutExpired:
            second.kill()
    keys = [r[1]["Idempotency-Key"] for r in http.requests]
    bodies = [r[2] for r in http.requests]
    assert len(http.requests) == 3  # the one in flight at the kill is repeated, nothing else
    assert sorted(keys.count(k) for k in set(keys)) == [1, 2]
    repeated = [body for key, body in zip(keys, bodies, strict=True) if key == keys[0]]
    assert len(repeated) == 2 and repeated[0] == repeated[1]  # the same request, byte for byte
    delivered = {json.loads(body)["event"] for body in bodies}
    assert delivered == {f"assigned:BPBD:{i}" for i in ids}
