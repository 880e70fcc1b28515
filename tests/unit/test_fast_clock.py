"""One fast clock cannot blind a ward (issue 12, hole 6).

A partner whose clock runs 4 min 50 s fast shares a kelurahan with on-time partners. The ward's
watermark may move only up to the ingest time the enrichment stamps, so the on-time flood
reports that follow stay in their window and raise the level exactly as in a control kelurahan
that never saw the fast-clock event. Through the whole topology (`TopologyTestDriver`), so the
`ingested_at` is the one the enrichment really stamps.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cityops.assets import generate_asset_registry
from core.reference_data import load_ward_records
from core.vocabulary import ASSET_REGISTRY_SEED
from schemas.codec import encode
from streams.test_driver import TopologyTestDriver

pytestmark = pytest.mark.unit

SHARED = "36.72.01.1001"  # Cibeber: the fast-clock partner and the on-time partners
CONTROL = "36.72.01.1002"  # Kedaleman: the on-time partners only
#: 30 s before a 5-minute window ends: the window of the on-time reports closes (end + 60 s
#: grace) before the fast partner's timestamp, which is what made them late.
NOW = datetime(2026, 3, 2, 7, 59, 30, tzinfo=UTC)
WARDS = load_ward_records()
REGISTRY = generate_asset_registry(WARDS, seed=ASSET_REGISTRY_SEED)


def _incident(n: int, ward: str, at: datetime, category: str, source: str) -> bytes:
    return encode("org.cityops.IncidentEvent", {
        "event_id": str(uuid.UUID(int=0x5A00 + n)), "occurred_at": at,
        "incident_id": f"{source}-{n}", "source_system": source, "category": category,
        "severity": "MINOR", "status": "REPORTED", "ward_code": ward, "latitude": None,
        "longitude": None, "rw": None, "rt": None, "description": "test",
    })


def _last(driver: TopologyTestDriver, code: str) -> dict[str, Any]:
    return driver.situations_of(code)[-1]


def test_one_fast_clock_does_not_make_the_on_time_flood_reports_late() -> None:
    driver = TopologyTestDriver(WARDS, REGISTRY, batch=1)
    driver.pipe("incident", _incident(0, SHARED, NOW + timedelta(minutes=4, seconds=50),
                                      "CRIME", "POLICE"), now=NOW)
    for n, ward in enumerate([SHARED, SHARED, SHARED, CONTROL, CONTROL, CONTROL], start=1):
        at = NOW - timedelta(seconds=4 - (n - 1) % 3)
        driver.pipe("incident", _incident(n, ward, at, "FLOOD", "CITIZEN_APP"), now=NOW)
    shared, control = _last(driver, SHARED), _last(driver, CONTROL)
    assert driver.outputs.dead_letters == []
    assert (shared["level"], shared["reasons"], shared["new_incidents_in_window"]) == (
        "ALERT", ["3 flood reports in 20 min", "4 open incidents"], 3)
    assert (control["level"], control["reasons"], control["new_incidents_in_window"]) == (
        "ALERT", ["3 flood reports in 20 min", "3 open incidents"], 3)
    assert (shared["open_incidents"], control["open_incidents"]) == (4, 3)
    assert [driver.entries[code].state.late_events for code in (SHARED, CONTROL)] == [0, 0]
    # the shared ward's watermark stopped at the fast event's ingest time, not at its 08:04:20
    assert (shared["last_event_at"], control["last_event_at"]) == (
        NOW, NOW - timedelta(seconds=2))


def test_the_fast_clock_report_counts_once_the_clock_reaches_its_window() -> None:
    driver = TopologyTestDriver(WARDS, REGISTRY, batch=1)
    driver.pipe("incident", _incident(0, SHARED, NOW + timedelta(minutes=4, seconds=50),
                                      "FLOOD", "POLICE"), now=NOW)
    assert _last(driver, SHARED)["new_incidents_in_window"] == 0
    driver.tick(NOW + timedelta(minutes=5))
    shown = _last(driver, SHARED)
    assert (shown["new_incidents_in_window"], shown["window_start"]) == (
        1, datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
