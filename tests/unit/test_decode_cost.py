"""bench/decode_cost.py: the per-record codec benchmark's report and where it lands in
BENCHMARKS.md (the measurement itself is a benchmark, not a test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.decode_cost import SECTION, append_to_benchmarks_md, measure, render

pytestmark = pytest.mark.unit

RESULTS: dict[str, Any] = {
    "date": "2026-12-02 15:40 UTC", "records": 100, "rounds": 2, "mean_partner_bytes": 94.6,
    "mean_enriched_bytes": 183.8,
    "us_per_record": {"partner: decode, compiled check (after)": {"best": 9.5, "median": 10.25}},
    "machine": {"cores": 2, "cpu_model": "CPU", "ram_gib": 23.5, "kernel": "6.1",
                "python": "3.11.7", "loadavg": [0.5, 0.4, 0.3]},
}


def test_render_names_the_command_machine_and_figures() -> None:
    assert render(RESULTS, ".venv/bin/python -m bench codec") == (
        "### 2026-12-02 15:40 UTC\n"
        "\n"
        "Command: `.venv/bin/python -m bench codec`  \n"
        "Machine: 2 cores (CPU), 23.5 GiB RAM, Linux 6.1, Python 3.11.7; load average at the end "
        "[0.5, 0.4, 0.3].  \n"
        "100 SYNTHETIC events of the bench feed (partner payloads 94.6 bytes on average, enriched "
        "183.8), 2 interleaved rounds, one core, no broker.\n"
        "\n"
        "| variant | CPU µs per record, best round | median round |\n"
        "|---|---|---|\n"
        "| partner: decode, compiled check (after) | 9.50 | 10.25 |\n")


def test_runs_go_in_their_section_before_the_latest_run_newest_last(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Old\n\ntext\n\n## Latest run\n\nrun\n", encoding="utf-8")
    append_to_benchmarks_md(path, "### first\n")
    append_to_benchmarks_md(path, "### second\n")
    assert path.read_text(encoding="utf-8") == (
        "# Benchmarks\n\n## Old\n\ntext\n\n"
        f"{SECTION}\n\nWritten by `python -m bench codec` (bench/decode_cost.py), newest last. "
        "What the compiled check proves: schemas/canonical.py.\n\n"
        "### first\n\n### second\n\n"
        "## Latest run\n\nrun\n")


def test_a_tiny_measurement_times_every_variant() -> None:
    results = measure(count=30, rounds=1)
    assert list(results["us_per_record"]) == [
        "partner: fastavro reader alone",
        "partner: decode, re-encode proof (before)",
        "partner: decode, compiled check (after)",
        "partner: the re-encode alone",
        "partner: the compiled check alone",
        "enriched: fastavro reader alone",
        "enriched: decode with every partner check",
        "enriched: trusted decode (after)",
    ]
    assert (results["records"], results["rounds"]) == (30, 1)
