"""The pipeline scenario: one small city, every event type, as partners send it (SYNTHETIC).

Event times are fixed relative to `base`, a 5-minute window boundary in the recent past:
- Cibeber (36.72.01.1001): three FLOOD reports within 90 s, then one is dispatched 5 min after
  its report -> NORMAL, WATCH, ALERT, then the dispatch shows in the response time.
- Tamansari (36.72.03.1001): three lamps of control cabinet CAB-36.72.03.1001-01
  lose power -> cabinet alert (ALERT).
- Ciwedus (36.72.02.1002): three of its five containers (four bins and a TPS) report
  95% full -> ALERT.
- An incident with coordinates only (no ward code) lands in Warnasari by point-in-polygon.
- Garbage bytes and an unknown ward code go to the dead-letter topic with their reasons.

Shared by the rules' test without a broker (tests/unit/test_test_driver.py) and the
real-broker test (tests/e2e/test_pipeline.py), which sends exactly these records.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cityops.assets import generate_asset_registry
from core.reference_data import load_ward_records
from core.vocabulary import ASSET_REGISTRY_SEED
from processors.thresholds import Thresholds
from schemas.codec import encode
from streams.test_driver import TopologyTestDriver
from tests.integration.test_web_api import DAY_SLA
from topics.event_types import by_schema, topic_for

FLOOD_WARD = "36.72.01.1001"
CABINET_WARD = "36.72.03.1001"
CABINET = "CAB-36.72.03.1001-01"
WASTE_WARD = "36.72.02.1002"
COORDINATE_WARD = "36.72.08.1001"
WARDS = load_ward_records()
REGISTRY = generate_asset_registry(WARDS, seed=ASSET_REGISTRY_SEED)
GARBAGE = (b"garbage-key", b"\x00\x01not avro")
"""Key and value of the garbage record, sent raw to the lighting topic."""


@dataclass(frozen=True)
class Sent:
    """One partner record: its Avro schema and fields, or (schema None) raw bytes."""

    schema: str | None
    record: dict[str, Any]

    @property
    def kind(self) -> str:
        return by_schema(self.schema or "LightingEvent").kind

    @property
    def source(self) -> str | None:
        """The incident source whose own topic the partner producer picks, else None."""
        if self.schema is None:
            return None
        event_type = by_schema(self.schema)
        binding = event_type.binding(topic_for(self.schema, self.record))
        return None if binding is None else binding[1]

    @property
    def key(self) -> bytes:
        if self.schema is None:
            return GARBAGE[0]
        spec = topic_for(self.schema, self.record)
        assert spec.key_field is not None, spec.name
        return str(self.record[spec.key_field]).encode()

    @property
    def value(self) -> bytes:
        return GARBAGE[1] if self.schema is None else encode(self.schema, self.record)


def window_base(now: datetime) -> datetime:
    """10 minutes before `now`, back to the 5-minute window boundary before that."""
    base = now.replace(microsecond=0) - timedelta(minutes=10)
    return base - timedelta(minutes=base.minute % 5, seconds=base.second)


def _incident(incident_id: str, at: datetime, status: str, category: str = "FLOOD",
              severity: str = "MODERATE", ward: str | None = FLOOD_WARD,
              lat: float | None = None, lon: float | None = None) -> Sent:
    return Sent("org.cityops.IncidentEvent", {
        "event_id": str(uuid.uuid4()), "occurred_at": at, "incident_id": incident_id,
        "source_system": "CALL_CENTER_112", "category": category, "severity": severity,
        "status": status, "ward_code": ward, "latitude": lat, "longitude": lon,
        "rw": None, "rt": None, "description": "test",
    })


def scenario(base: datetime) -> list[Sent]:
    """Every record of the scenario in send order (the dispatch last)."""
    lamps = sorted(a["asset_id"] for a in REGISTRY if a.get("cabinet_id") == CABINET)[:3]
    containers = sorted(a["asset_id"] for a in REGISTRY
                        if a["ward_code"] == WASTE_WARD and a["asset_kind"] == "WASTE_CONTAINER")
    floods = [f"FLOOD-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    centroid = next(w for w in WARDS if w["kelurahan_code"] == COORDINATE_WARD)
    sent = [_incident(incident_id, base + timedelta(seconds=30 * (i + 1)), "REPORTED")
            for i, incident_id in enumerate(floods)]
    sent += [Sent("org.cityops.LightingEvent", {
        "event_id": str(uuid.uuid4()), "occurred_at": base + timedelta(seconds=40 + i),
        "lamp_id": lamp, "cabinet_id": None, "report_kind": "FAULT",
        "lamp_status": "NO_POWER", "power_state": "OFF", "dimming_level": None,
        "energy_kwh": None, "ward_code": None, "latitude": None, "longitude": None,
    }) for i, lamp in enumerate(lamps)]
    sent += [Sent("org.cityops.WasteEvent", {
        "event_id": str(uuid.uuid4()), "occurred_at": base + timedelta(seconds=50 + i),
        "container_id": container, "site_kind": "CONTAINER", "report_kind": "FILL_LEVEL",
        "filling_level": 0.95, "temperature_celsius": 31.0, "collected_weight_kg": None,
        "ward_code": None, "latitude": None, "longitude": None,
    }) for i, container in enumerate(containers[:3])]
    sent.append(_incident("COORD-1", base + timedelta(seconds=45), "REPORTED",
                          category="OTHER", severity="MINOR", ward=None,
                          lat=centroid["centroid_lat"], lon=centroid["centroid_lon"]))
    sent.append(_incident("NOWHERE-1", base + timedelta(seconds=46), "REPORTED",
                          ward="36.72.99.9999"))
    sent.append(Sent(None, {}))
    sent.append(_incident(floods[0], base + timedelta(seconds=30 + 300), "DISPATCHED"))
    return sent


def day_sla_thresholds() -> Thresholds:
    """The defaults with SLA clocks of a day, as the e2e worker of this scenario runs: its
    events lie minutes in the past, and the default clocks (issue 14) would call them
    overdue."""
    mapping = Thresholds().to_mapping()
    mapping["sla"] = dict(DAY_SLA)
    return Thresholds.from_mapping(mapping)


def through_driver(sent: list[Sent], now: datetime, batch: int = 1) -> TopologyTestDriver:
    """Partner records (this scenario's, or any `Sent`) through the topology without a
    broker, each on the topic the partner producer picks for it, all at `now`."""
    driver = TopologyTestDriver(WARDS, REGISTRY, thresholds=day_sla_thresholds(), batch=batch)
    for item in sent:
        driver.pipe(item.kind, item.value, key=item.key, now=now, source=item.source)
    driver.end_batch(now)
    return driver
