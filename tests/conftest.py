"""Shared fixtures: the real local broker, started through the same command users run."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Every test session gets its own topic namespace on the shared local broker, so runs never see
# each other's events. Set before anything imports topics.catalog.
os.environ.setdefault("CITYOPS_TOPIC_PREFIX", f"test-{uuid.uuid4().hex[:8]}.")

ROOT = Path(__file__).resolve().parent.parent
CITYOPS = [sys.executable, "-m", "cityops.cli"]


def bootstrap_servers() -> str:
    return os.environ.get("CITYOPS_BOOTSTRAP", "127.0.0.1:9092")


@pytest.fixture(scope="session")
def broker() -> str:
    """Start (or reuse) the local Kafka broker with `cityops broker start`."""
    result = subprocess.run([*CITYOPS, "broker", "start"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, check=False)
    if result.returncode != 0:
        pytest.fail(f"cityops broker start failed: {result.stdout}{result.stderr}")
    return bootstrap_servers()


@pytest.fixture(scope="session")
def catalog_topics(broker: str) -> str:
    """The catalog's topics exist (created idempotently with `cityops topics create`)."""
    result = subprocess.run([*CITYOPS, "topics", "create", "--bootstrap", broker], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        pytest.fail(f"cityops topics create failed: {result.stdout}{result.stderr}")
    return broker


@pytest.fixture
def unique_id() -> Iterator[str]:
    yield uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def reference_data(catalog_topics: str) -> str:
    """Wards and the synthetic asset registry published, as `cityops wards/assets load` do."""
    from cityops.publish_reference import publish_assets, publish_wards

    publish_wards(catalog_topics)
    publish_assets(catalog_topics)
    return catalog_topics


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class WorkerProcess:
    """A real `cityops worker` child process with its own app id and ports."""

    def __init__(self, bootstrap: str, app_id: str, log_path: Path, **env: str) -> None:
        self.bootstrap = bootstrap
        self.app_id = app_id
        self.metrics_port = free_port()
        self.web_port = free_port()
        self.log_path = log_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*CITYOPS, "worker", "--bootstrap", self.bootstrap, "--app-id", self.app_id,
             "--metrics-port", str(self.metrics_port), "--web-port", str(self.web_port),
             "--loglevel", "warning"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        return self

    def metrics_text(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as response:
            text: str = response.read().decode()
            return text

    def metric(self, name: str, **labels: str) -> float | None:
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    return float(sample.value)
        return None

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}; "
                                     f"log: {self.log_path.read_text()[-3000:]}")
            try:
                if self.metric("cityops_worker_ready") == 1.0:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"worker not ready in {timeout_s}s; "
                             f"log: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
