"""A `cityops gateway serve` process (a real process on loopback) and its tokens: for the tests and
the gateway benchmark."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import CITYOPS, ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_token(tokens_file: Path, partner: str, name: str) -> str:
    result = subprocess.run(
        [*CITYOPS, "gateway", "token", partner, "--name", name, "--tokens-file",
         str(tokens_file)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.strip().splitlines()[-1]


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class GatewayProcess:
    bootstrap: str
    prefix: str
    tokens_file: Path
    log_path: Path
    args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> GatewayProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*CITYOPS, "gateway", "serve", "--bootstrap", self.bootstrap, "--port",
             str(self.port), "--tokens-file", str(self.tokens_file), *self.args],
            cwd=ROOT, env={**os.environ, "CITYOPS_TOPIC_PREFIX": self.prefix},
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_path.read_text()[-3000:]}")
            try:
                if self.get("/healthz").status == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"gateway not up in {timeout_s} s: "
                           f"{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, timeout_s: float = 60.0) -> Answer:
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Answer(error.code, dict(error.headers), error.read())

    def get(self, path: str) -> Answer:
        return self.request("GET", path, timeout_s=5)

    def post(self, path: str, token: str | None, records: Any, *,
             key: str | None = None, headers: Mapping[str, str] | None = None,
             raw: bytes | None = None, content_type: str = "application/json") -> Answer:
        sent = {"Content-Type": content_type, **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if key is not None:
            sent["Idempotency-Key"] = key
        body = raw if raw is not None else json.dumps(records).encode()
        return self.request("POST", path, body, sent)
