"""The capacity model's arithmetic (bench/capacity.py), on round made-up figures (not measured:
the real ones come from a `bench run`), so every expected value can be checked by hand."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from bench.capacity import (
    Assumptions,
    Measured,
    Settings,
    inputs_from_markdown,
    latest_measured,
    plan,
    reference_scales,
    settings_from_code,
    update_inputs_section,
)

pytestmark = pytest.mark.unit

FIGURES = Measured(
    date="2026-12-02T10:00:00+00:00", command="made up for the test", mode="default",
    worker_events_per_s=1000.0, worker_cpu_us_per_event=200.0, broker_events_per_s=100_000.0,
    input_bytes_per_event=100.0, enriched_bytes_per_event=200.0,
    changelog_flushes_per_ward_per_s=0.5, state_bytes_per_ward=10_000.0,
    situation_bytes_per_record=1000.0, situations_per_ward_per_minute=60.0,
)
SETTINGS = Settings(ward_partitions_default=6, input_retention_days=7.0,
                    enriched_retention_days=7.0, snapshot_interval_s=60.0,
                    segment_bytes=1_000_000, situation_partitions=3)


def test_a_busy_deployment_is_sized_by_worker_throughput_and_broker_bandwidth() -> None:
    p = plan("busy", 1000, 1.0, FIGURES, SETTINGS)
    # 1,000 events/s at half of 1,000/s per worker; partitions: the default 6 beats 2 x 2
    assert (p.events_per_s, p.workers, p.partitions) == (1000.0, 2, 6)
    assert p.worker_cores == pytest.approx(0.2)
    # flushes capped at 0.5/s per ward, situations at 60 per minute + 1 snapshot
    assert p.situations_per_ward_per_minute == 61.0
    changelog = 1000 * 0.5 * 10_000
    situations = 1000 * 61 / 60 * 1000
    assert p.write_bytes_per_s == pytest.approx(1000 * 300 + changelog + situations)
    # 6.32 MB/s x 3 replicas against half of 100,000 events/s x 100 B
    assert (p.brokers_for_throughput, p.brokers) == (4, 4)
    streams = 1000 * 86_400 * (7 * 100 + 7 * 200)
    compacted = (2 * 1000 * 10_000 + 6 * 1_000_000) + (2 * 1000 * 1000 + 3 * 1_000_000)
    assert p.disk_bytes == pytest.approx(3 * (streams + compacted))
    assert p.disk_bytes_per_broker == pytest.approx(3 * (streams + compacted) / 4)
    assert p.state_bytes_per_worker == 5_000_000.0


def test_a_quiet_city_needs_the_minimum_and_its_rare_events_each_flush_their_ward() -> None:
    # segments of a TB: the open segment of a compacted topic holds a day of writes (segment.ms)
    p = plan("quiet", 43, 0.01, FIGURES, replace(SETTINGS, segment_bytes=10**12))
    assert (p.workers, p.partitions, p.brokers, p.brokers_for_throughput) == (1, 6, 3, 1)
    assert p.situations_per_ward_per_minute == pytest.approx(0.6 + 1)
    changelog = 43 * 0.01 * 10_000  # one flush per event: rarer than the measured flushes
    situations = 43 * 1.6 / 60 * 1000
    assert p.write_bytes_per_s == pytest.approx(0.43 * 300 + changelog + situations)
    compacted = (2 * 43 * 10_000 + changelog * 86_400) + (2 * 43 * 1000 + situations * 86_400)
    assert p.disk_bytes == pytest.approx(3 * (0.43 * 86_400 * 2100 + compacted))


def test_partitions_keep_room_to_double_the_workers_but_never_exceed_the_villages() -> None:
    many = plan("many", 100_000, 1.0, FIGURES, SETTINGS)
    assert (many.workers, many.partitions) == (200, 400)
    few = plan("few", 10, 100.0, FIGURES, SETTINGS)
    assert (few.workers, few.partitions) == (2, 6)
    narrow = plan("narrow", 8, 1000.0, FIGURES, SETTINGS)
    assert (narrow.workers, narrow.partitions) == (16, 8)


def test_headroom_one_plans_for_the_full_measured_rate() -> None:
    p = plan("full", 1000, 1.0, FIGURES, SETTINGS, Assumptions(headroom=1.0))
    assert (p.workers, p.brokers_for_throughput, p.brokers) == (1, 2, 3)


def test_without_a_measured_broker_ceiling_the_quorum_minimum_is_the_broker_count() -> None:
    figures = Measured(**{**asdict(FIGURES), "broker_events_per_s": None})
    p = plan("no ceiling", 1000, 1.0, figures, SETTINGS)
    assert (p.brokers_for_throughput, p.brokers) == (None, 3)


@pytest.mark.parametrize(("villages", "rate"), [(0, 1.0), (10, 0.0), (10, -1.0)])
def test_no_villages_or_no_events_is_refused(villages: int, rate: float) -> None:
    with pytest.raises(ValueError, match="villages must be at least 1"):
        plan("x", villages, rate, FIGURES, SETTINGS)


def test_the_reference_scales_are_cilegon_banten_and_indonesia() -> None:
    assert [(s.name, s.villages) for s in reference_scales()] == [
        ("Kota Cilegon", 43), ("Provinsi Banten", 1552), ("Indonesia", 83_762)]


def test_settings_are_read_from_the_catalog_broker_and_worker() -> None:
    assert settings_from_code() == Settings(
        ward_partitions_default=6, input_retention_days=7.0, enriched_retention_days=7.0,
        snapshot_interval_s=60.0, segment_bytes=67_108_864, situation_partitions=3)


def _results(date: str, mode: str = "default") -> dict[str, Any]:
    """A `bench run` JSON holding FIGURES, as bench/run.py and bench/footprint.py write it."""
    return {
        "date": date, "command": "made up", "mode": mode,
        "pipeline": {"events_per_s": 1000.0, "worker_cpu_us_per_event": 200.0},
        "ceiling": {"events_per_s": 100_000.0},
        "footprint": {"input_bytes_per_event": 100.0, "enriched_bytes_per_event": 200.0,
                      "changelog_flushes_per_ward_per_s": 0.5,
                      "state_bytes_per_ward_max": 10_000, "state_bytes_per_ward_mean": 5_000,
                      "situation_bytes_per_record": 1000.0,
                      "situations_per_ward_per_minute": 60.0},
    }


def test_the_newest_run_wins_and_smoke_runs_and_other_json_are_skipped(tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "a.json").write_text(json.dumps(_results("2026-12-01T00:00:00+00:00")))
    (bench / "b.json").write_text(json.dumps(_results("2026-12-03T00:00:00+00:00", "smoke")))
    (bench / "c.json").write_text(json.dumps({"not": "a run"}))
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# Benchmarks\n\ntext\n")
    update_inputs_section(markdown, _results("2026-12-02T00:00:00+00:00"))
    measured, source = latest_measured(bench, markdown)
    assert (measured, source) == (
        Measured(**{**asdict(FIGURES), "date": "2026-12-02T00:00:00+00:00",
                    "command": "made up"}), "BENCHMARKS.md, Capacity inputs")
    (bench / "d.json").write_text(json.dumps(_results("2026-12-04T00:00:00+00:00")))
    assert latest_measured(bench, markdown)[1] == str(bench / "d.json")


def test_the_markdown_section_is_replaced_in_place_and_read_back(tmp_path: Path) -> None:
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# Benchmarks\n")
    update_inputs_section(markdown, _results("2026-12-01T00:00:00+00:00"))
    update_inputs_section(markdown, _results("2026-12-02T00:00:00+00:00"))
    text = markdown.read_text()
    assert text.count("## Capacity inputs") == 1
    measured = inputs_from_markdown(text)
    assert measured is not None and measured.date == "2026-12-02T00:00:00+00:00"


def test_no_figures_anywhere_names_the_command_that_makes_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m bench run"):
        latest_measured(tmp_path, tmp_path / "BENCHMARKS.md")


def test_a_run_without_footprint_figures_is_refused() -> None:
    results = _results("2026-12-01T00:00:00+00:00")
    del results["footprint"]
    with pytest.raises(ValueError, match="no pipeline drain or no footprint"):
        Measured.from_results(results)


def test_the_open_segment_of_a_compacted_topic_counts_at_most_segment_bytes_per_partition(
) -> None:
    p = plan("quiet", 43, 0.01, FIGURES, SETTINGS)
    compacted = (2 * 43 * 10_000 + 6 * 1_000_000) + (2 * 43 * 1000 + 3 * 1_000_000)
    assert p.disk_bytes == pytest.approx(3 * (0.43 * 86_400 * 2100 + compacted))
