"""The demo's webhook receiver checks what the city's own system must check."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cityops.notify import sign
from cityops.notify_sink import WebhookSink, signature_ok

pytestmark = pytest.mark.unit


def test_a_signature_checks_only_with_the_key_the_body_and_a_recent_timestamp() -> None:
    body = b'{"key":"a|b"}'
    signature = sign("k", "1796565600", body)
    assert signature_ok("k", "1796565600", body, signature, now=1796565600.0)
    assert not signature_ok("other", "1796565600", body, signature, now=1796565600.0)
    assert not signature_ok("k", "1796565600", body + b" ", signature, now=1796565600.0)
    assert not signature_ok("k", "1796565601", body, signature, now=1796565600.0)
    assert not signature_ok("k", "1796565600", body, signature, now=1796565600.0 + 301)
    assert not signature_ok("k", "soon", body, signature, now=1796565600.0)


def test_the_sink_logs_a_notification_once_whatever_the_repeats(tmp_path: Path) -> None:
    sink = WebhookSink("k", tmp_path / "notifications.log")
    try:
        body = json.dumps({"kind": "ASSIGNED", "agency": "BPBD", "kecamatan_code": "36.72.01",
                           "messages": [{"text": "teks id"}, {"text": "text en"}]}).encode()
        now = str(int(time.time()))
        assert sink.receive(now, sign("k", now, body), "idem-1", body) == 200
        assert sink.receive(now, sign("k", now, body), "idem-1", body) == 200
        assert sink.receive(now, sign("x", now, body), "idem-2", body) == 401
        assert (tmp_path / "notifications.log").read_text() == (
            "=== ASSIGNED to BPBD (kecamatan 36.72.01)\nteks id\n\ntext en\n\n")
    finally:
        sink.close()
