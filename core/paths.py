"""Where the project keeps its runtime files.

Everything a run leaves behind (Kafka jars, broker data, logs, pid files) lives under one
ignored folder, so a fresh clone is clean and `rm -rf var` is a full reset.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def var_dir() -> Path:
    """Runtime folder; `CITYOPS_VAR_DIR` moves it (tests use a temporary one)."""
    return Path(os.environ.get("CITYOPS_VAR_DIR", PROJECT_ROOT / "var"))


def kafka_home() -> Path:
    """Folder with the broker pom and, after a fetch, its jars in `libs/`."""
    return Path(os.environ.get("CITYOPS_KAFKA_HOME", PROJECT_ROOT / "kafka-broker"))
