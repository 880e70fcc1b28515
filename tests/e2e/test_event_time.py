"""The same events give the same windowed counts however long the backlog before them
(issue 26): the flood scenario after background feeds of different lengths, sent by
`cityops simulate` as fast as possible (event times laid out in the past up to now, the flood at
the end) to one worker, must read "6 flood reports in 20 min" in each of Cibeber's six
kelurahan, with no event counted `late` (the feed holds none). Before the hop's event-time
order and the ward stage's low watermark, a 300 s backlog read 3-6 and a 4 h one 2-5.

The rule itself, for any interleaving, is asserted on the driver
(tests/unit/test_event_order_property.py); this is the real broker and the real worker."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from bench.harness import Namespace
from streams.ward_aggregator import HOLD_EXPIRY_S

pytestmark = pytest.mark.e2e

CIBEBER = ("Bulakan", "Cibeber", "Cikerai", "Kalitimbang", "Karang Asem", "Kedaleman")
FLOOD_REASON = "6 flood reports in 20 min"


def _drained(worker: object, sent: int, timeout_s: float) -> None:
    """Until every record sent was folded (or dead-lettered) and nothing moved for 3 s."""
    deadline = time.monotonic() + timeout_s
    last = -1.0
    steady_since = time.monotonic()
    while time.monotonic() < deadline:
        counters = worker.counters()  # type: ignore[attr-defined]
        done = counters.aggregated + counters.rejected
        if done != last:
            last, steady_since = done, time.monotonic()
        elif done >= sent and time.monotonic() - steady_since >= 3.0:
            return
        time.sleep(0.5)
    raise AssertionError(f"not drained in {timeout_s:.0f} s: {last:.0f} of {sent} folded")


def _flood_reasons(namespace: Namespace) -> dict[str, list[str]]:
    """The last situation's reasons of each Cibeber kelurahan."""
    latest: dict[str, dict[str, object]] = {}
    for situation in namespace.read_situations():
        if situation["scope"] != "KELURAHAN" or situation["scope_name"] not in CIBEBER:
            continue
        known = latest.get(str(situation["scope_name"]))
        if known is None or int(situation["sequence"]) >= int(known["sequence"]):  # type: ignore[call-overload]
            latest[str(situation["scope_name"])] = situation
    return {name: [r for r in s["reasons"] if "flood" in r]  # type: ignore[attr-defined]
            for name, s in sorted(latest.items())}


@pytest.mark.parametrize(("duration_s", "worker_first"),
                         [(60, True), (3600, True), (3600, False)])
def test_flood_after_a_backlog(broker: str, tmp_path: Path, artifacts_dir: Path,
                               duration_s: int, worker_first: bool) -> None:
    """`worker_first`: the feed is sent while the worker runs (the partitions catch up and
    fall behind as the partner's batches land); else it is all on the broker before the
    worker starts (an outage)."""
    namespace = Namespace.create(broker, f"backlog{duration_s}")
    simulate = ("simulate", "--rate", "20", "--duration", str(duration_s), "--scenario",
                "flood", "--seed", "7", "--quiet")
    expected = {name: [FLOOD_REASON] for name in CIBEBER}
    app_id = f"backlog-{uuid.uuid4().hex[:8]}"
    log_path = artifacts_dir / f"backlog-{duration_s}-{worker_first}.log"
    worker = namespace.worker(app_id, log_path, tmp_path,
                              CITYOPS_WARD_BATCH="1000")
    out = "" if worker_first else namespace.cityops(*simulate)
    worker.start()
    try:
        worker.wait_ready()
        out = namespace.cityops(*simulate) if worker_first else out
        sent = int(out.split("simulated ", 1)[1].split()[0].replace(",", ""))
        _drained(worker, sent, timeout_s=240)
        # the drain's last marks hold the wards until they expire (HOLD_EXPIRY_S)
        deadline = time.monotonic() + HOLD_EXPIRY_S + 30
        reasons = _flood_reasons(namespace)
        while reasons != expected and time.monotonic() < deadline:
            time.sleep(2.0)
            reasons = _flood_reasons(namespace)
        late = worker.metric_sum("cityops_events_aggregated_total", outcome="late")
        expired = worker.metric_sum("cityops_events_aggregated_total", outcome="expired")
        by_topic = {labels.get("topic"): value for name, labels, value in worker.samples()
                    if name == "cityops_events_aggregated_total" and value
                    and labels.get("outcome") in ("late", "expired")}
    finally:
        worker.stop()
    assert reasons == expected
    assert (late, expired) == (0, 0), by_topic
