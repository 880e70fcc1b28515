"""Each named scenario of `cityops simulate`, played through a real worker, brings exactly its
wards to the level it promises; `cityops watch --once` then shows that board."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.harness import Namespace, Worker
from cityops.scenarios import SCENARIOS
from tests.conftest import CITYOPS, ROOT

pytestmark = pytest.mark.e2e


def _cityops(namespace: Namespace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CITYOPS, *args, "--bootstrap", namespace.bootstrap], cwd=ROOT, capture_output=True,
        text=True, timeout=300, check=False,
        env={**os.environ, "CITYOPS_TOPIC_PREFIX": namespace.prefix},
    )


def _latest(namespace: Namespace) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for record in namespace.read_situations():
        held = latest.get(record["scope_code"])
        if held is None or record["sequence"] >= held["sequence"]:
            latest[record["scope_code"]] = record
    return latest


@pytest.fixture(params=sorted(SCENARIOS))
def played(request: pytest.FixtureRequest, broker: str, tmp_path: Path,
           artifacts_dir: Path) -> Iterator[tuple[str, Namespace]]:
    name: str = request.param
    namespace = Namespace.create(broker, f"scenario-{name}")
    worker: Worker = namespace.worker(
        f"scenario-{uuid.uuid4().hex[:8]}", artifacts_dir / f"scenario-{name}.log", tmp_path)
    worker.start()
    try:
        worker.wait_ready()
        result = _cityops(namespace, "simulate", "--scenario", name, "--count", "0",
                          "--seed", "11", "--quiet")
        assert result.returncode == 0, result.stdout + result.stderr
        yield name, namespace
    finally:
        worker.stop()


def test_scenario_brings_exactly_its_wards_to_the_promised_level(
    played: tuple[str, Namespace]
) -> None:
    name, namespace = played
    expected = SCENARIOS[name].expected_wards
    deadline = time.monotonic() + 90
    levels: dict[str, str] = {}
    while time.monotonic() < deadline:
        latest = _latest(namespace)
        levels = {code: s["level"] for code, s in latest.items() if s["scope"] == "KELURAHAN"
                  and s["level"] != "NORMAL"}
        if levels == expected:
            break
        time.sleep(1.0)
    assert levels == expected


def test_watch_shows_the_flood_board(broker: str, tmp_path: Path, artifacts_dir: Path) -> None:
    namespace = Namespace.create(broker, "watch")
    worker = namespace.worker(f"watch-{uuid.uuid4().hex[:8]}", artifacts_dir / "watch.log",
                              tmp_path).start()
    try:
        worker.wait_ready()
        assert _cityops(namespace, "simulate", "--scenario", "flood", "--count", "0",
                        "--seed", "11", "--quiet").returncode == 0
        expected_rows = {("kecamatan", "Cibeber", "CRITICAL")} | {
            ("kelurahan", name, "CRITICAL")
            for name in ("Bulakan", "Cibeber", "Cikerai", "Kalitimbang", "Karang Asem",
                         "Kedaleman")}
        rows: set[tuple[str, str, str]] = set()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and rows != expected_rows:
            result = _cityops(namespace, "watch", "--once", "--kecamatan", "Cibeber")
            assert result.returncode == 0, result.stderr
            lines = result.stdout.splitlines()
            assert lines[0].startswith("Cilegon command center - situations at ")
            rows = {(line[:10].strip(), line[11:33].strip(), line[34:43].strip())
                    for line in lines[4:] if line.strip()}
            time.sleep(1.0)
        assert rows == expected_rows
    finally:
        worker.stop()
