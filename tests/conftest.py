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


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
