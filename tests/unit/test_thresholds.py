"""Unit tests of processors.thresholds: the default file, parsing, and errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.vocabulary import level_rank, max_level
from processors.thresholds import (
    DEFAULT_THRESHOLDS_PATH,
    BurstRule,
    LevelSteps,
    RatioSteps,
    Thresholds,
    ThresholdsError,
    load,
)

pytestmark = pytest.mark.unit


def test_default_file_is_exactly_the_code_defaults() -> None:
    assert DEFAULT_THRESHOLDS_PATH.name == "thresholds.default.json"
    assert Thresholds.load() == Thresholds()
    assert load(DEFAULT_THRESHOLDS_PATH) == Thresholds()
    raw = json.loads(DEFAULT_THRESHOLDS_PATH.read_text(encoding="utf-8"))
    assert {k: v for k, v in raw.items() if not k.startswith("_")} == Thresholds().to_mapping()


def test_every_key_of_the_default_file_is_documented() -> None:
    rules = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text(encoding="utf-8")
    for key, value in Thresholds().to_mapping().items():
        assert f"`{key}`" in rules, key
        if isinstance(value, dict) and key != "category_bursts":
            for sub in value:
                assert f"`{key}.{sub}`" in rules, f"{key}.{sub}"


def test_defaults_and_derived_values() -> None:
    t = Thresholds()
    assert (t.window_ms, t.grace_ms, t.dedupe_horizon_ms) == (300_000, 60_000, 7_200_000)
    assert t.category_bursts == (
        BurstRule("FIRE", 1800, LevelSteps(None, 2, 4)),
        BurstRule("FLOOD", 1200, LevelSteps(2, 3, 6)),
        BurstRule("TRAFFIC_ACCIDENT", 3600, LevelSteps(3, 5, None)),
    )
    assert t.lookback_windows == 12  # 1 h of 5-min windows
    assert (t.windows_for(1200), t.windows_for(1201), t.windows_for(1)) == (4, 5, 1)
    assert t.open_incident_severity_levels == {"EXTREME": "CRITICAL", "SEVERE": "ALERT"}


def test_round_trip_through_mapping_and_partial_override() -> None:
    t = Thresholds.from_mapping(
        {
            "_comment": "ignored",
            "window_seconds": 60,
            "grace_seconds": 0,
            "lamps_out": {"min_count": 5},
            "open_incidents": {"critical": None},
            "category_bursts": {"FLOOD": {"lookback_seconds": 600, "alert": 4}},
        }
    )
    assert (t.window_seconds, t.grace_seconds) == (60, 0)
    assert t.lamps_out == RatioSteps(0.05, 0.10, 0.25, 5)
    assert t.open_incidents == LevelSteps(3, 6, None)
    assert t.category_bursts == (BurstRule("FLOOD", 600, LevelSteps(None, 4, None)),)
    assert t.lookback_windows == 10
    assert t.full_level == 0.9
    assert Thresholds.from_mapping(t.to_mapping()) == t


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"overdue_seconds": 43_200, "overdue_level": "ALERT"}))
    t = Thresholds.load(path)
    assert (t.overdue_seconds, t.overdue_ms, t.overdue_level) == (43_200, 43_200_000, "ALERT")


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"lamp_out": {}}, "lamp_out: unknown key (known: cabinet_alert_level, "),
        ({"lamps_out": {"watch": 0.1}}, "lamps_out.watch: unknown key (known: alert_ratio, "),
        ({"window_seconds": 0}, "window_seconds: expected an integer >= 1, got 0"),
        ({"grace_seconds": -1}, "grace_seconds: expected an integer >= 0, got -1"),
        ({"window_seconds": True}, "window_seconds: expected an integer >= 1, got True"),
        ({"window_seconds": 300.0}, "window_seconds: expected an integer >= 1, got 300.0"),
        ({"full_level": 1.5}, "full_level: expected a share in (0, 1], got 1.5"),
        ({"full_level": "high"}, "full_level: expected a finite number, got 'high'"),
        (
            {"fire_temperature_celsius": float("nan")},
            "fire_temperature_celsius: expected a finite number, got nan",
        ),
        (
            {"fire_risk_level": "RED"},
            "fire_risk_level: expected one of WATCH, ALERT, CRITICAL, got 'RED'",
        ),
        ({"open_incidents": [1, 2, 3]}, "open_incidents: expected an object, got [1, 2, 3]"),
        (
            {"open_incidents": {"watch": 7}},
            "open_incidents.watch: 7 must not exceed open_incidents.alert (6)",
        ),
        (
            {"lamps_out": {"alert_ratio": 0.5}},
            "lamps_out.alert_ratio: 0.5 must not exceed lamps_out.critical_ratio (0.25)",
        ),
        (
            {"containers_full_ratio": {"min_count": 0}},
            "containers_full_ratio.min_count: expected an integer >= 1, got 0",
        ),
        (
            {"category_bursts": {"FLOODS": {"lookback_seconds": 60}}},
            "category_bursts.FLOODS: unknown key (known: CRIME, FIRE, FLOOD, ",
        ),
        (
            {"category_bursts": {"FLOOD": {"alert": 3}}},
            "category_bursts.FLOOD.lookback_seconds: required",
        ),
        (
            {"category_bursts": {"FLOOD": {"lookback_seconds": 60, "alert": "3"}}},
            "category_bursts.FLOOD.alert: expected an integer >= 1, got '3'",
        ),
        (
            {"open_incident_severity_levels": {"MINOR": "NORMAL"}},
            "open_incident_severity_levels.MINOR: expected one of WATCH, ALERT, CRITICAL, got",
        ),
        (
            {"open_incident_severity_levels": {"UNKNOWN": "WATCH"}},
            "open_incident_severity_levels.UNKNOWN: unknown key (known: EXTREME, MINOR, ",
        ),
        (
            {"dedupe_horizon_seconds": 3600},
            "dedupe_horizon_seconds: 3600 is shorter than the longest lookback + "
            "window_seconds + grace_seconds (3960)",
        ),
        (
            {"closed_incident_horizon_seconds": 3959},
            "closed_incident_horizon_seconds: 3959 is shorter than the longest lookback",
        ),
        (
            {"stale_open_incident_seconds": 86_399},
            "stale_open_incident_seconds: 86399 is shorter than closed_incident_horizon_seconds",
        ),
    ],
)
def test_bad_values_fail_with_the_key_named(mapping: dict[str, Any], message: str) -> None:
    with pytest.raises(ThresholdsError) as caught:
        Thresholds.from_mapping(mapping)
    assert str(caught.value).startswith(message)


def test_bad_file_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ThresholdsError, match=r"thresholds file .*broken\.json: Expecting"):
        Thresholds.load(broken)
    listing = tmp_path / "list.json"
    listing.write_text("[]")
    with pytest.raises(ThresholdsError, match="top level must be a JSON object"):
        Thresholds.load(listing)
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"cabinet_fault_count": 0}))
    with pytest.raises(
        ThresholdsError,
        match=r"typo\.json: cabinet_fault_count: expected an integer >= 1, got 0",
    ):
        Thresholds.load(typo)
    with pytest.raises(ThresholdsError, match=r"missing\.json"):
        Thresholds.load(tmp_path / "missing.json")


def test_thresholds_built_in_code_are_validated_too() -> None:
    with pytest.raises(ThresholdsError, match=r"category_bursts\.WEATHER: unknown category"):
        Thresholds(category_bursts=(BurstRule("WEATHER", 60, LevelSteps(1)),))
    with pytest.raises(ThresholdsError, match=r"category_bursts\.FIRE: duplicate rule"):
        Thresholds(
            category_bursts=(
                BurstRule("FIRE", 60, LevelSteps(1)),
                BurstRule("FIRE", 120, LevelSteps(2)),
            )
        )
    with pytest.raises(ThresholdsError, match="cabinet_alert_level: expected one of"):
        Thresholds(cabinet_alert_level="NORMAL")


@pytest.mark.parametrize(
    ("count", "level"),
    [(0, "NORMAL"), (2, "NORMAL"), (3, "WATCH"), (5, "WATCH"), (6, "ALERT"), (12, "CRITICAL")],
)
def test_level_steps(count: int, level: str) -> None:
    assert LevelSteps(3, 6, 12).level_for(count) == level


def test_level_steps_with_disabled_steps() -> None:
    assert LevelSteps(None, 2, None).level_for(1) == "NORMAL"
    assert LevelSteps(None, 2, None).level_for(100) == "ALERT"
    assert LevelSteps().level_for(10**6) == "NORMAL"


@pytest.mark.parametrize(
    ("count", "total", "level"),
    [
        (3, 60, "WATCH"),  # exactly 5 %
        (3, 61, "NORMAL"),
        (2, 40, "NORMAL"),  # 5 % but below min_count
        (6, 60, "ALERT"),
        (15, 60, "CRITICAL"),
        (14, 60, "ALERT"),
        (3, 0, "NORMAL"),
    ],
)
def test_ratio_steps(count: int, total: int, level: str) -> None:
    assert RatioSteps(0.05, 0.10, 0.25, 3).level_for(count, total) == level


def test_level_ordering_helpers() -> None:
    assert [level_rank(x) for x in ("NORMAL", "WATCH", "ALERT", "CRITICAL", "UNKNOWN")] == [
        0,
        1,
        2,
        3,
        -1,
    ]
    assert max_level([]) == "NORMAL"
    assert max_level(["WATCH", "CRITICAL", "ALERT"]) == "CRITICAL"
    assert max_level(["UNKNOWN", "WATCH"]) == "WATCH"
    assert max_level(["UNKNOWN"]) == "NORMAL"
