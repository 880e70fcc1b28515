"""The benchmark command in its smoke mode, on the real broker: every figure is produced and the
state the worker drained to is the one an independent fold of the sent events gives.

No timing is asserted (the machine is shared); only that each figure exists and is positive,
that every event was consumed, enriched and applied exactly once, and that the run cleaned up
its topics.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from kafka import KafkaAdminClient

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

SMOKE_EVENTS = 3_000


@pytest.fixture(scope="module")
def smoke_results(broker: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("bench")
    published = ROOT / "BENCHMARKS.md"
    before = published.read_text() if published.exists() else None
    result = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--smoke", "--bootstrap", broker,
         "--json", str(out / "smoke.json"), "--report", str(out / "smoke.md")],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )
    assert result.returncode == 0, f"bench smoke failed:\n{result.stdout}\n{result.stderr}"
    results: dict[str, object] = json.loads((out / "smoke.json").read_text())
    results["_report"] = (out / "smoke.md").read_text()
    results["_benchmarks_md_unchanged"] = before == (
        published.read_text() if published.exists() else None)
    return results


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and value > 0


def test_every_figure_is_produced(smoke_results: dict[str, object]) -> None:
    r = smoke_results
    machine = r["machine"]
    assert isinstance(machine, dict) and _positive(machine["cores"]) and _positive(
        machine["ram_gib"])
    feed = r["feed"]
    assert isinstance(feed, dict) and feed["events"] == SMOKE_EVENTS
    assert set(feed["by_type"]) == {"IncidentEvent", "LightingEvent", "WasteEvent"}
    for key in ("ceiling", "passthrough_per_message", "pipeline"):
        figure = r[key]
        assert isinstance(figure, dict) and _positive(figure["events_per_s"]), key
    assert _positive(r["ratio_pipeline_to_ceiling"])
    codec = r["codec"]
    assert isinstance(codec, dict)
    assert all(_positive(codec[k]) for k in ("codec_encode_per_s", "codec_decode_per_s",
                                             "json_encode_per_s", "json_decode_per_s"))
    memory = r["memory"]
    assert isinstance(memory, dict)
    assert _positive(memory["rss_0_mib"]) and _positive(memory["rss_end_mib"])
    latency = r["latency"]
    assert isinstance(latency, list) and [level["offered_per_s"] for level in latency] == [200]
    assert latency[0]["sent"] > 0 and latency[0]["p99_ms"] is not None
    scale = r["scale_out"]
    assert isinstance(scale, dict)
    assert _positive(scale["workers_1"]["events_per_s"])
    assert _positive(scale["workers_2"]["events_per_s"])
    assert scale["partitions"]["input_topics"] == 6
    footprint = r["footprint"]  # the capacity model's inputs (bench/footprint.py)
    assert isinstance(footprint, dict)
    assert (footprint["events"], footprint["wards"], footprint["wards_in_state"]) == (
        SMOKE_EVENTS, 43, 43)
    assert all(_positive(footprint[k]) for k in (
        "input_bytes_per_event", "enriched_bytes_per_event", "changelog_bytes_per_event",
        "changelog_flushes_per_ward_per_s", "state_bytes_per_ward_mean",
        "state_bytes_per_ward_max", "situation_bytes_per_record",
        "situations_per_ward_per_minute"))
    report = r["_report"]
    assert isinstance(report, str)
    for needle in ("ceiling", "pipeline", "ratio pipeline / ceiling", "worker RSS",
                   "latency at 200 events/s", "codec", "scale-out", "footprint",
                   "state check | correct"):
        assert needle in report, needle


def test_every_event_is_applied_exactly_once_and_the_state_is_right(
    smoke_results: dict[str, object],
) -> None:
    pipeline = smoke_results["pipeline"]
    assert isinstance(pipeline, dict)
    counters = pipeline["counters"]
    assert (counters["consumed"], counters["enriched"], counters["rejected"]) == (
        SMOKE_EVENTS, SMOKE_EVENTS, 0)
    outcomes = counters["outcomes"]
    assert outcomes.get("applied", 0) + outcomes.get("late", 0) == SMOKE_EVENTS
    assert outcomes.get("duplicate", 0) == 0 and outcomes.get("expired", 0) == 0
    assert smoke_results["verify"] == {"ok": True, "problems": []}


def test_the_run_deletes_its_topics_and_leaves_benchmarks_md_alone(
    smoke_results: dict[str, object], broker: str,
) -> None:
    namespaces = smoke_results["namespaces"]
    assert isinstance(namespaces, list) and len(namespaces) == 3  # main, 1 and 2 workers
    admin = KafkaAdminClient(bootstrap_servers=broker, client_id="cityops-test")
    left: list[str] = []
    try:
        # Topic deletion completes asynchronously on the broker: a loaded broker may still
        # list a deleted topic for a moment (seen once in CI beside other runs).
        deadline = time.monotonic() + 30.0
        while True:
            left = [t for t in admin.list_topics() if t.startswith(tuple(namespaces))]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(1.0)
    finally:
        admin.close()
    assert left == []
    assert smoke_results["mode"] == "smoke"
    assert smoke_results["_benchmarks_md_unchanged"] is True
