"""The flood scenario, sent by `cityops simulate` to a real worker: `cityops watch --once` shows
its kecamatan and kelurahan at the level it promises (the leader's rollup included).

Which wards each scenario brings to which level is asserted without a broker, every scenario
through the command's own feed, in tests/unit/test_driver_scenarios.py."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from bench.harness import Namespace
from tests.conftest import CITYOPS, ROOT

pytestmark = pytest.mark.e2e


def _cityops(namespace: Namespace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CITYOPS, *args, "--bootstrap", namespace.bootstrap], cwd=ROOT, capture_output=True,
        text=True, timeout=300, check=False,
        env={**os.environ, "CITYOPS_TOPIC_PREFIX": namespace.prefix},
    )


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
