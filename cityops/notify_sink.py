"""A local receiver of the notifier's signed webhook, for `cityops demo` (issue 25).

It does what the city's own system should do with the webhook: refuse a request whose
signature or timestamp does not check out (401), answer a repeated Idempotency-Key with 200
without acting on it again (a notifier restarted mid-send repeats the request it had in
flight), and otherwise act; here acting is appending the message to a log file
(var/demo/notifications.log), so a demo shows what an agency would receive.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

#: Requests whose timestamp is further than this from the sink's clock are refused (replay).
MAX_SKEW_S: Final[float] = 300.0
#: Idempotency keys remembered (the newest).
MAX_KEYS: Final[int] = 10_000


def signature_ok(hmac_key: str, timestamp: str, body: bytes, signature: str,
                 now: float, max_skew_s: float = MAX_SKEW_S) -> bool:
    """The receiver's check of `cityops.notify.sign`: the HMAC over "<timestamp>." + body, in
    constant time, and a timestamp within `max_skew_s` of now."""
    try:
        if abs(now - int(timestamp)) > max_skew_s:
            return False
    except ValueError:
        return False
    expected = "v1=" + hmac.new(hmac_key.encode(), timestamp.encode() + b"." + body,
                                hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


class WebhookSink:
    """Serve on 127.0.0.1:`port` (0 = any free port) until `close`."""

    def __init__(self, hmac_key: str, log_path: Path, port: int = 0) -> None:
        self.hmac_key, self.log_path = hmac_key, log_path
        self.seen: dict[str, None] = {}
        #: The notifications acted on, oldest first (the newest MAX_KEYS).
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 1 << 20))
                status = sink.receive(self.headers.get("X-Cityops-Timestamp", ""),
                                      self.headers.get("X-Cityops-Signature", ""),
                                      self.headers.get("Idempotency-Key", ""), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/notifications"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="notify-sink")
        self.thread.start()

    def receive(self, timestamp: str, signature: str, key: str, body: bytes) -> int:
        if not signature_ok(self.hmac_key, timestamp, body, signature, time.time()):
            return 401
        try:
            record = json.loads(body)
        except ValueError:
            return 400
        with self.lock:
            if key in self.seen:
                return 200
            self.seen[key] = None
            self.received.append(record)
            if len(self.seen) > MAX_KEYS:
                del self.seen[next(iter(self.seen))]
                del self.received[0]
            texts = "\n\n".join(m["text"] for m in record.get("messages", []))
            with self.log_path.open("a", encoding="utf-8") as log:
                log.write(f"=== {record.get('kind')} to {record.get('agency')} "
                          f"(kecamatan {record.get('kecamatan_code')})\n{texts}\n\n")
        return 200

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
