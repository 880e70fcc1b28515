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


# --- the history store's PostgreSQL (issue 21) ------------------------------------------------

#: The tests' own server: its own folder and port, so a developer's `cityops db start` on 5439
#: is never touched.
TEST_PG_HOME = ROOT / "var" / "test-postgres"
TEST_PG_PORT = "5440"


def _test_pg_home() -> Path:
    """var/test-postgres, unless the checkout lies below a folder the `postgres` user cannot
    pass (a clone in root's 0700 home): then a folder of its own under the system temp dir."""
    from cityops import database

    if database.reachable(ROOT):
        return TEST_PG_HOME
    import hashlib
    import tempfile

    digest = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"cityops-test-postgres-{digest}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A real PostgreSQL server started with `cityops db start` (reused when it answers, and
    then left running; stopped at the end when this session started it); yields the server's
    URL without a database name."""
    os.environ["CITYOPS_PG_HOME"] = str(_test_pg_home())
    os.environ["CITYOPS_PG_PORT"] = TEST_PG_PORT
    result = subprocess.run([*CITYOPS, "db", "start"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    if result.returncode != 0:
        pytest.fail(f"cityops db start failed: {result.stdout}{result.stderr}")
    from cityops import database

    yield database.url().rsplit("/", 1)[0]
    if result.stdout.startswith("started"):
        subprocess.run([*CITYOPS, "db", "stop"], cwd=ROOT, capture_output=True, timeout=120,
                       check=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty history store: a SQLite file, or a new database on the test server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'history.sqlite3'}"
        return
    import psycopg

    server = request.getfixturevalue("postgres")
    name = f"history_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
