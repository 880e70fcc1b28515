"""Worker settings: flags win over CITYOPS_* variables, which win over defaults."""

from __future__ import annotations

import pytest

from streams.settings import WorkerSettings

pytestmark = pytest.mark.unit


def test_session_timeout_defaults_to_ten_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CITYOPS_SESSION_TIMEOUT_S", raising=False)
    assert WorkerSettings.from_env().session_timeout_s == 10.0


def test_session_timeout_from_environment_then_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYOPS_SESSION_TIMEOUT_S", "25")
    assert WorkerSettings.from_env().session_timeout_s == 25.0
    assert WorkerSettings.from_env(session_timeout_s=6.0).session_timeout_s == 6.0
