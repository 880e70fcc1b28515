"""Enrichment: exact outputs per event type, every rejection with its exact reason and message."""

from __future__ import annotations

import copy
import math
import pickle
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import load_schema
from fastavro.validation import validate

from core.reference_data import load_ward_records
from core.rejections import CODEC_REASONS, REASONS, STAGES, Rejection
from processors.enrich import (
    EnrichmentRules,
    ReferenceData,
    cabinet_ids,
    check_source,
    data_quality,
    enrich_incident,
    enrich_lighting,
    enrich_waste,
    normalise_description,
)

pytestmark = pytest.mark.unit

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "avro"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
RULES = EnrichmentRules()

LAMP: dict[str, Any] = {
    "asset_id": "PJU-00001",
    "asset_kind": "LAMP",
    "ward_code": "36.72.01.1001",
    "location_name": "Ruas PJU 01 Cibeber (synthetic)",
    "latitude": -6.03311,
    "longitude": 106.06966,
    "cabinet_id": "CAB-36.72.01.1001-01",
    "lamp_wattage_w": 90,
    "container_capacity_l": None,
    "synthetic": True,
}
BIN: dict[str, Any] = {
    "asset_id": "WC-0001",
    "asset_kind": "WASTE_CONTAINER",
    "ward_code": "36.72.02.1001",
    "location_name": "Bin site 01 Bagendung (synthetic)",
    "latitude": -6.057468,
    "longitude": 106.029382,
    "cabinet_id": None,
    "lamp_wattage_w": None,
    "container_capacity_l": 1100,
    "synthetic": True,
}
TPS: dict[str, Any] = {
    **BIN,
    "asset_id": "TPS-001",
    "asset_kind": "TPS",
    "ward_code": "36.72.06.1004",
    "location_name": "TPS 01 Gerem (synthetic)",
    "container_capacity_l": 10000,
}
LAMP_IN_NO_WARD: dict[str, Any] = {**LAMP, "asset_id": "PJU-99999", "ward_code": "36.72.99.9999"}

LAMP_ON_CABINET_2: dict[str, Any] = {
    **LAMP, "asset_id": "PJU-00002", "cabinet_id": "CAB-36.72.01.1001-02"
}

REF = ReferenceData.build(
    load_ward_records(), [LAMP, BIN, TPS, LAMP_IN_NO_WARD, LAMP_ON_CABINET_2]
)

GROGOL_CENTROID = (-5.9728, 106.033893)
GAP_POINT = (-6.004398391104635, 106.06187152387079)  # between polygons, 2.7 m from Masigit
SUNDA_STRAIT = (-5.95, 105.95)


def incident(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f",
        "occurred_at": NOW - timedelta(minutes=2),
        "incident_id": "POL-2025-0001",
        "source_system": "POLICE",
        "category": "FLOOD",
        "severity": "MODERATE",
        "status": "REPORTED",
        "ward_code": None,
        "latitude": None,
        "longitude": None,
        "rw": None,
        "rt": None,
        "description": "",
    }
    event.update(changes)
    return event


def lighting(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a",
        "occurred_at": NOW - timedelta(minutes=1),
        "lamp_id": "PJU-00001",
        "cabinet_id": None,
        "report_kind": "FAULT",
        "lamp_status": "NO_POWER",
        "power_state": "OFF",
        "dimming_level": None,
        "energy_kwh": None,
        "ward_code": None,
        "latitude": None,
        "longitude": None,
    }
    event.update(changes)
    return event


def waste(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        "occurred_at": NOW - timedelta(hours=1),
        "container_id": "WC-0001",
        "site_kind": "CONTAINER",
        "report_kind": "FILL_LEVEL",
        "filling_level": 0.85,
        "temperature_celsius": 31.5,
        "collected_weight_kg": None,
        "ward_code": None,
        "latitude": None,
        "longitude": None,
    }
    event.update(changes)
    return event


def _schema(name: str) -> Any:
    return load_schema(str(SCHEMA_DIR / f"org.cityops.{name}.avsc"))


# --------------------------------------------------------------------- exact outputs


def test_incident_located_by_coordinates_exact_output() -> None:
    event = incident(
        latitude=GROGOL_CENTROID[0],
        longitude=GROGOL_CENTROID[1],
        description="  Banjir\t setinggi\n\n 50 cm  ",
    )
    out = enrich_incident(event, REF, RULES, NOW)
    assert out == {
        "event": {**event, "description": "Banjir setinggi 50 cm"},
        "ward_code": "36.72.06.1002",
        "kelurahan_name": "Grogol",
        "kecamatan_code": "36.72.06",
        "kecamatan_name": "Gerogol",
        "ingested_at": NOW,
        "ward_resolution": "POINT_IN_POLYGON",
    }
    assert validate(out, _schema("EnrichedIncidentEvent"), strict=True)


def test_lighting_resolved_from_the_asset_registry_exact_output() -> None:
    event = lighting(dimming_level=0.0, energy_kwh=0.0)
    out = enrich_lighting(event, REF, RULES, NOW)
    assert out == {
        "event": event,
        "ward_code": "36.72.01.1001",
        "kelurahan_name": "Cibeber",
        "kecamatan_code": "36.72.01",
        "kecamatan_name": "Cibeber",
        "ingested_at": NOW,
        "ward_resolution": "ASSET_REGISTRY",
        "cabinet_id": "CAB-36.72.01.1001-01",
        "location_name": "Ruas PJU 01 Cibeber (synthetic)",
    }
    assert validate(out, _schema("EnrichedLightingEvent"), strict=True)


def test_waste_with_a_ward_code_that_agrees_with_the_registry_exact_output() -> None:
    event = waste(ward_code="36.72.02.1001")
    out = enrich_waste(event, REF, RULES, NOW)
    assert out == {
        "event": event,
        "ward_code": "36.72.02.1001",
        "kelurahan_name": "Bagendung",
        "kecamatan_code": "36.72.02",
        "kecamatan_name": "Cilegon",
        "ingested_at": NOW,
        "ward_resolution": "ASSET_REGISTRY",
        "location_name": "Bin site 01 Bagendung (synthetic)",
        "container_capacity_l": 1100,
    }
    assert validate(out, _schema("EnrichedWasteEvent"), strict=True)
    assert data_quality(out) == ()


def test_tps_event_takes_site_name_and_capacity_from_the_registry() -> None:
    out = enrich_waste(waste(container_id="TPS-001", site_kind="TPS"), REF, RULES, NOW)
    assert (
        out["ward_code"],
        out["ward_resolution"],
        out["location_name"],
        out["container_capacity_l"],
    ) == ("36.72.06.1004", "ASSET_REGISTRY", "TPS 01 Gerem (synthetic)", 10000)


def test_incident_in_a_polygon_gap_resolves_by_nearest_boundary() -> None:
    out = enrich_incident(incident(latitude=GAP_POINT[0], longitude=GAP_POINT[1]), REF, RULES, NOW)
    assert (out["ward_code"], out["kelurahan_name"], out["ward_resolution"]) == (
        "36.72.05.1003",
        "Masigit",
        "NEAREST_BOUNDARY",
    )


def test_partner_ward_code_wins_over_coordinates_in_another_kelurahan() -> None:
    event = incident(
        ward_code="36.72.01.1001", latitude=GROGOL_CENTROID[0], longitude=GROGOL_CENTROID[1]
    )
    out = enrich_incident(event, REF, RULES, NOW)
    assert (out["ward_code"], out["ward_resolution"]) == ("36.72.01.1001", "WARD_CODE")


def test_the_asset_registry_wins_over_a_contradicting_ward_code() -> None:
    """Issue 12, hole 3: a lamp reported under another kelurahan's code stays in its own ward
    (never counted in two), keeps the partner's code in the embedded event, and is reported
    as a data-quality problem once."""
    lamp = enrich_lighting(lighting(ward_code="36.72.02.1004"), REF, RULES, NOW)
    bin_ = enrich_waste(waste(ward_code="36.72.01.1001"), REF, RULES, NOW)
    assert [
        (o["ward_code"], o["ward_resolution"], o["event"]["ward_code"], data_quality(o))
        for o in (lamp, bin_)
    ] == [
        ("36.72.01.1001", "ASSET_REGISTRY", "36.72.02.1004", ("ward_code_mismatch",)),
        ("36.72.02.1001", "ASSET_REGISTRY", "36.72.01.1001", ("ward_code_mismatch",)),
    ]


def test_data_quality_is_silent_without_a_registry_placement() -> None:
    placed_by_code = enrich_incident(incident(ward_code="36.72.01.1001"), REF, RULES, NOW)
    placed_by_registry = enrich_lighting(lighting(), REF, RULES, NOW)
    assert (data_quality(placed_by_code), data_quality(placed_by_registry)) == ((), ())


def test_asset_registry_wins_over_coordinates() -> None:
    event = lighting(latitude=GROGOL_CENTROID[0], longitude=GROGOL_CENTROID[1])
    out = enrich_lighting(event, REF, RULES, NOW)
    assert (out["ward_code"], out["ward_resolution"]) == ("36.72.01.1001", "ASSET_REGISTRY")


def test_a_registered_cabinet_from_the_event_wins_over_the_lamps_own() -> None:
    out = enrich_lighting(lighting(cabinet_id="CAB-36.72.01.1001-02"), REF, RULES, NOW)
    assert out["cabinet_id"] == "CAB-36.72.01.1001-02"


def test_known_cabinets_are_those_of_registered_lamps() -> None:
    bin_with_cabinet = {**BIN, "asset_id": "WC-0002", "cabinet_id": "CAB-OF-A-BIN"}
    assert cabinet_ids([LAMP, LAMP_ON_CABINET_2, BIN, bin_with_cabinet,
                        {**LAMP, "asset_id": "PJU-3", "cabinet_id": None}]) == frozenset(
        {"CAB-36.72.01.1001-01", "CAB-36.72.01.1001-02"})


@pytest.mark.parametrize("ident", [
    "POL-2025/0001 A", "112-2026-004211", "Kejadian-Ciwedus", "事件-7", "CAB.36.72_01#2",
])
def test_identifiers_of_the_documented_character_set_are_accepted(ident: str) -> None:
    out = enrich_incident(incident(incident_id=ident, ward_code="36.72.01.1001"), REF, RULES, NOW)
    assert out["event"]["incident_id"] == ident


def test_limits_are_inclusive() -> None:
    at_skew = enrich_incident(
        incident(ward_code="36.72.01.1001", occurred_at=NOW + timedelta(minutes=5)), REF, RULES, NOW
    )
    at_age = enrich_incident(
        incident(ward_code="36.72.01.1001", occurred_at=NOW - timedelta(days=7)), REF, RULES, NOW
    )
    edges = enrich_waste(
        waste(filling_level=1.0, temperature_celsius=150.0, collected_weight_kg=0.0),
        REF,
        RULES,
        NOW,
    )
    cold = enrich_waste(waste(filling_level=0.0, temperature_celsius=-20.0), REF, RULES, NOW)
    lamp = enrich_lighting(lighting(dimming_level=1.0), REF, RULES, NOW)
    assert [o["ward_resolution"] for o in (at_skew, at_age, edges, cold, lamp)] == [
        "WARD_CODE",
        "WARD_CODE",
        "ASSET_REGISTRY",
        "ASSET_REGISTRY",
        "ASSET_REGISTRY",
    ]


def test_the_input_event_is_not_mutated() -> None:
    event = incident(ward_code="36.72.01.1001", description="  two   spaces ")
    before = copy.deepcopy(event)
    out = enrich_incident(event, REF, RULES, NOW)
    assert event == before
    assert out["event"]["description"] == "two spaces"


def test_description_is_capped_at_500_characters_after_collapsing() -> None:
    assert normalise_description("x" * 600, 500) == "x" * 500
    assert normalise_description("a" * 499 + "   \n b" + "c" * 20, 500) == "a" * 499
    assert normalise_description(None, 500) == ""
    assert normalise_description(" \t\n ", 500) == ""
    out = enrich_incident(
        incident(ward_code="36.72.01.1001", description="y " * 400), REF, RULES, NOW
    )
    assert out["event"]["description"] == ("y " * 250).rstrip()


def test_custom_rules_change_the_limits() -> None:
    rules = EnrichmentRules(max_future_skew=timedelta(0), temperature_max_c=60.0)
    with pytest.raises(Rejection) as skew:
        enrich_incident(
            incident(ward_code="36.72.01.1001", occurred_at=NOW + timedelta(milliseconds=1)),
            REF,
            rules,
            NOW,
        )
    with pytest.raises(Rejection) as hot:
        enrich_waste(waste(temperature_celsius=61.0), REF, rules, NOW)
    assert (skew.value.reason, hot.value.message) == (
        "future_timestamp",
        "WasteEvent.temperature_celsius=61.0 is outside -20..60 (plausible sensor range)",
    )


# --------------------------------------------------------------------- rejections

Enricher = Callable[[Mapping[str, Any], ReferenceData, EnrichmentRules, datetime], dict[str, Any]]

def _on_police_topic(event: Mapping[str, Any], ref: ReferenceData, rules: EnrichmentRules,
                     now: datetime) -> dict[str, Any]:
    """What the worker does with a record read from the police topic."""
    check_source(event, "source_system", "POLICE", "city.incidents.police.v1")
    return enrich_incident(event, ref, rules, now)


CASES: list[tuple[str, Enricher, dict[str, Any], str, str, str]] = [
    (
        "future",
        enrich_incident,
        incident(ward_code="36.72.01.1001", occurred_at=NOW + timedelta(minutes=6)),
        "VALIDATE",
        "future_timestamp",
        "IncidentEvent.occurred_at=2025-06-01T12:06:00+00:00 is 0:06:00 ahead of "
        "now=2025-06-01T12:00:00+00:00 (max 0:05:00)",
    ),
    (
        "too_old",
        enrich_lighting,
        lighting(occurred_at=NOW - timedelta(days=8)),
        "VALIDATE",
        "too_old",
        "LightingEvent.occurred_at=2025-05-24T12:00:00+00:00 is 8 days, 0:00:00 older than "
        "now=2025-06-01T12:00:00+00:00 (max 7 days, 0:00:00)",
    ),
    (
        "naive_time",
        enrich_waste,
        waste(occurred_at=datetime(2025, 6, 1, 11, 0)),  # naive on purpose
        "VALIDATE",
        "schema_violation",
        "WasteEvent.occurred_at=datetime.datetime(2025, 6, 1, 11, 0) is not a timezone-aware "
        "datetime",
    ),
    (
        "not_a_number",
        enrich_lighting,
        lighting(dimming_level="high"),
        "VALIDATE",
        "schema_violation",
        "LightingEvent.dimming_level='high' is not a number",
    ),
    (
        "nan_latitude",
        enrich_incident,
        incident(latitude=math.nan, longitude=106.0),
        "VALIDATE",
        "not_finite",
        "IncidentEvent.latitude=nan is not a finite number",
    ),
    (
        "inf_dimming",
        enrich_lighting,
        lighting(dimming_level=math.inf),
        "VALIDATE",
        "not_finite",
        "LightingEvent.dimming_level=inf is not a finite number",
    ),
    (
        "nan_energy",
        enrich_lighting,
        lighting(energy_kwh=math.nan),
        "VALIDATE",
        "not_finite",
        "LightingEvent.energy_kwh=nan is not a finite number",
    ),
    (
        "nan_filling",
        enrich_waste,
        waste(filling_level=-math.inf),
        "VALIDATE",
        "not_finite",
        "WasteEvent.filling_level=-inf is not a finite number",
    ),
    (
        "nan_temperature",
        enrich_waste,
        waste(temperature_celsius=math.nan),
        "VALIDATE",
        "not_finite",
        "WasteEvent.temperature_celsius=nan is not a finite number",
    ),
    (
        "nan_weight",
        enrich_waste,
        waste(report_kind="COLLECTION", collected_weight_kg=math.nan),
        "VALIDATE",
        "not_finite",
        "WasteEvent.collected_weight_kg=nan is not a finite number",
    ),
    (
        "latitude_alone",
        enrich_incident,
        incident(latitude=-6.0),
        "VALIDATE",
        "unpaired_coordinates",
        "IncidentEvent.latitude=-6.0 comes without longitude; coordinates must come as a pair",
    ),
    (
        "longitude_alone",
        enrich_waste,
        waste(longitude=106.0),
        "VALIDATE",
        "unpaired_coordinates",
        "WasteEvent.longitude=106.0 comes without latitude; coordinates must come as a pair",
    ),
    (
        "latitude_sign_flipped",
        enrich_incident,
        incident(latitude=6.0, longitude=106.0),
        "VALIDATE",
        "out_of_range",
        "IncidentEvent.latitude=6.0 is outside -6.130640..-5.826094 (city bounds + 0.05 deg)",
    ),
    (
        "null_island",
        enrich_lighting,
        lighting(latitude=-6.0, longitude=0.0),
        "VALIDATE",
        "out_of_range",
        "LightingEvent.longitude=0.0 is outside 105.871712..106.138169 (city bounds + 0.05 deg)",
    ),
    (
        "dimming",
        enrich_lighting,
        lighting(dimming_level=1.7),
        "VALIDATE",
        "out_of_range",
        "LightingEvent.dimming_level=1.7 is outside 0..1",
    ),
    (
        "energy",
        enrich_lighting,
        lighting(report_kind="ENERGY_READING", energy_kwh=-0.5),
        "VALIDATE",
        "out_of_range",
        "LightingEvent.energy_kwh=-0.5 is below 0",
    ),
    (
        "filling",
        enrich_waste,
        waste(filling_level=1.2),
        "VALIDATE",
        "out_of_range",
        "WasteEvent.filling_level=1.2 is outside 0..1",
    ),
    (
        "hot",
        enrich_waste,
        waste(temperature_celsius=200.0),
        "VALIDATE",
        "out_of_range",
        "WasteEvent.temperature_celsius=200.0 is outside -20..150 (plausible sensor range)",
    ),
    (
        "cold",
        enrich_waste,
        waste(temperature_celsius=-40.0),
        "VALIDATE",
        "out_of_range",
        "WasteEvent.temperature_celsius=-40.0 is outside -20..150 (plausible sensor range)",
    ),
    (
        "weight",
        enrich_waste,
        waste(report_kind="COLLECTION", collected_weight_kg=-1.0),
        "VALIDATE",
        "out_of_range",
        "WasteEvent.collected_weight_kg=-1.0 is below 0",
    ),
    (
        "unknown_code",
        enrich_incident,
        incident(ward_code="36.72.09.1001"),
        "ENRICH",
        "unknown_ward",
        "IncidentEvent.ward_code='36.72.09.1001' is not a kelurahan code of Kota Cilegon",
    ),
    (
        "in_the_strait",
        enrich_incident,
        incident(latitude=SUNDA_STRAIT[0], longitude=SUNDA_STRAIT[1]),
        "ENRICH",
        "unknown_ward",
        "IncidentEvent.latitude/longitude=(-5.95, 105.95) is in no kelurahan and more than "
        "250 m from every kelurahan boundary",
    ),
    (
        "registry_ward_unknown",
        enrich_lighting,
        lighting(lamp_id="PJU-99999"),
        "ENRICH",
        "unknown_ward",
        "Asset PJU-99999.ward_code='36.72.99.9999' (asset registry) is not a kelurahan code "
        "of Kota Cilegon",
    ),
    (
        "unknown_lamp",
        enrich_lighting,
        lighting(lamp_id="PJU-00404", ward_code="36.72.01.1001"),
        "ENRICH",
        "unknown_asset",
        "LightingEvent.lamp_id='PJU-00404' is not in the asset registry",
    ),
    (
        "bin_as_lamp",
        enrich_lighting,
        lighting(lamp_id="WC-0001"),
        "ENRICH",
        "unknown_asset",
        "LightingEvent.lamp_id='WC-0001' is a WASTE_CONTAINER in the asset registry, "
        "not one of LAMP",
    ),
    (
        "unknown_container",
        enrich_waste,
        waste(container_id="WC-9999"),
        "ENRICH",
        "unknown_asset",
        "WasteEvent.container_id='WC-9999' is not in the asset registry",
    ),
    (
        "lamp_as_container",
        enrich_waste,
        waste(container_id="PJU-00001"),
        "ENRICH",
        "unknown_asset",
        "WasteEvent.container_id='PJU-00001' is a LAMP in the asset registry, "
        "not one of TPS, WASTE_CONTAINER",
    ),
    (
        "unknown_code_beside_a_registered_lamp",
        enrich_lighting,
        lighting(ward_code="36.72.09.1001"),
        "ENRICH",
        "unknown_ward",
        "LightingEvent.ward_code='36.72.09.1001' is not a kelurahan code of Kota Cilegon",
    ),
    (
        "invented_cabinet",
        enrich_lighting,
        lighting(cabinet_id="CAB-INVENTED-0001"),
        "ENRICH",
        "unknown_asset",
        "LightingEvent.cabinet_id='CAB-INVENTED-0001' is the cabinet of no lamp in the asset "
        "registry",
    ),
    (
        "cabinet_id_of_a_lamp_id",
        enrich_lighting,
        lighting(cabinet_id="PJU-00001"),
        "ENRICH",
        "unknown_asset",
        "LightingEvent.cabinet_id='PJU-00001' is the cabinet of no lamp in the asset registry",
    ),
    (
        "nil_event_id",
        enrich_incident,
        incident(event_id="00000000-0000-0000-0000-000000000000", ward_code="36.72.01.1001"),
        "VALIDATE",
        "degenerate_uuid",
        "IncidentEvent.event_id='00000000-0000-0000-0000-000000000000' is the nil UUID, not an "
        "id that tells events apart",
    ),
    (
        "max_event_id",
        enrich_lighting,
        lighting(event_id="FFFFFFFF-ffff-FFFF-ffff-FFFFFFFFFFFF"),
        "VALIDATE",
        "degenerate_uuid",
        "LightingEvent.event_id='FFFFFFFF-ffff-FFFF-ffff-FFFFFFFFFFFF' is one hex digit "
        "repeated, not an id that tells events apart",
    ),
    (
        "same_digit_event_id",
        enrich_waste,
        waste(event_id="11111111-1111-1111-1111-111111111111"),
        "VALIDATE",
        "degenerate_uuid",
        "WasteEvent.event_id='11111111-1111-1111-1111-111111111111' is one hex digit "
        "repeated, not an id that tells events apart",
    ),
    (
        "empty_incident_id",
        enrich_incident,
        incident(incident_id="", ward_code="36.72.01.1001"),
        "VALIDATE",
        "blank_id",
        "IncidentEvent.incident_id='' is empty or blank; send null when it is not known",
    ),
    (
        "blank_rt",
        enrich_incident,
        incident(rt=" \u3000 ", ward_code="36.72.01.1001"),
        "VALIDATE",
        "blank_id",
        "IncidentEvent.rt=' \\u3000 ' is empty or blank; send null when it is not known",
    ),
    (
        "blank_lamp_id",
        enrich_lighting,
        lighting(lamp_id="   "),
        "VALIDATE",
        "blank_id",
        "LightingEvent.lamp_id='   ' is empty or blank; send null when it is not known",
    ),
    (
        "empty_cabinet_id",
        enrich_lighting,
        lighting(cabinet_id=""),
        "VALIDATE",
        "blank_id",
        "LightingEvent.cabinet_id='' is empty or blank; send null when it is not known",
    ),
    (
        "tab_container_id",
        enrich_waste,
        waste(container_id="\t"),
        "VALIDATE",
        "blank_id",
        "WasteEvent.container_id='\\t' is empty or blank; send null when it is not known",
    ),
    (
        "ansi_in_incident_id",
        enrich_incident,
        incident(incident_id="\x1b[2J\x1b[32mALL CLEAR\x1b[8m", ward_code="36.72.01.1001"),
        "VALIDATE",
        "forbidden_characters",
        "IncidentEvent.incident_id='\\x1b[2J\\x1b[32mALL CLEAR\\x1b[8m' holds \\x1b: identifiers "
        "may hold letters, digits, punctuation, symbols and spaces only",
    ),
    (
        "osc_title_in_cabinet_id",
        enrich_lighting,
        lighting(cabinet_id="\x1b]0;pwned\x07CAB-36.72.01.1001-01"),
        "VALIDATE",
        "forbidden_characters",
        "LightingEvent.cabinet_id='\\x1b]0;pwned\\x07CAB-36.72.01.1001-01' holds \\x1b, \\x07: "
        "identifiers may hold letters, digits, punctuation, symbols and spaces only",
    ),
    (
        "bidi_override_in_lamp_id",
        enrich_lighting,
        lighting(lamp_id="PJU-\u202e10000"),
        "VALIDATE",
        "forbidden_characters",
        "LightingEvent.lamp_id='PJU-\\u202e10000' holds \\u202e: identifiers may hold "
        "letters, digits, punctuation, symbols and spaces only",
    ),
    (
        "zero_width_in_container_id",
        enrich_waste,
        waste(container_id="WC-\u200b0001"),
        "VALIDATE",
        "forbidden_characters",
        "WasteEvent.container_id='WC-\\u200b0001' holds \\u200b: identifiers may hold "
        "letters, digits, punctuation, symbols and spaces only",
    ),
    (
        "many_controls_in_rw",
        enrich_incident,
        incident(rw="".join(chr(c) for c in range(1, 9)), ward_code="36.72.01.1001"),
        "VALIDATE",
        "forbidden_characters",
        "IncidentEvent.rw='\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08' holds \\x01, \\x02, "
        "\\x03, \\x04, \\x05 and 3 more: identifiers may hold letters, digits, punctuation, "
        "symbols and spaces only",
    ),
    (
        "citizen_app_posing_as_police",
        _on_police_topic,
        incident(source_system="CITIZEN_APP"),
        "VALIDATE",
        "source_mismatch",
        "source_system 'CITIZEN_APP' on city.incidents.police.v1, which only POLICE writes",
    ),
    (
        "nowhere",
        enrich_incident,
        incident(),
        "ENRICH",
        "missing_location",
        "IncidentEvent has no ward_code, no known asset and no latitude/longitude to place it",
    ),
]


@pytest.mark.parametrize(
    ("enricher", "event", "stage", "reason", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_rejection(
    enricher: Enricher, event: dict[str, Any], stage: str, reason: str, message: str
) -> None:
    with pytest.raises(Rejection) as caught:
        enricher(event, REF, RULES, NOW)
    assert (caught.value.stage, caught.value.reason, caught.value.message, str(caught.value)) == (
        stage,
        reason,
        message,
        message,
    )


def test_every_validate_and_enrich_reason_is_exercised() -> None:
    # the codec's own reasons, except schema_violation, which validation raises too
    decode_or_process = (set(CODEC_REASONS) - {"schema_violation"}) | {
        "unparseable_record", "processing_error", "ward_state_full", "situation_failed"}
    # the RT-report reasons: tests/unit/test_neighbourhood.py
    rt_reports = {"personal_data", "future_period", "inconsistent_counts", "unknown_rt",
                  "too_many_reports", "stale_review"}
    # the operator-action reasons: tests/unit/test_operations.py
    operator_actions = {"action_not_allowed", "missing_target", "conflict"}
    assert {case[4] for case in CASES} == (
        set(REASONS) - decode_or_process - rt_reports - operator_actions)


# --------------------------------------------------------------------- Rejection itself


def test_reason_set_is_bounded_snake_case_and_unique() -> None:
    assert len(REASONS) == len(set(REASONS)) == 34
    assert REASONS[:len(CODEC_REASONS)] == CODEC_REASONS
    assert [r for r in REASONS if not re.fullmatch(r"[a-z]+(_[a-z]+)*", r)] == []
    assert STAGES == ("DECODE", "VALIDATE", "ENRICH", "PROCESS")


def test_rejection_refuses_labels_outside_the_bounded_sets() -> None:
    with pytest.raises(ValueError, match=r"Rejection\.reason='Out Of Range'"):
        Rejection("VALIDATE", "Out Of Range", "x")
    with pytest.raises(ValueError, match=r"Rejection\.stage='LOAD'"):
        Rejection("LOAD", "out_of_range", "x")  # type: ignore[arg-type]


def test_rejection_survives_pickling() -> None:
    original = Rejection("ENRICH", "unknown_ward", "IncidentEvent.ward_code='x' is unknown")
    restored = pickle.loads(pickle.dumps(original))
    assert (restored.stage, restored.reason, restored.message, repr(restored)) == (
        "ENRICH",
        "unknown_ward",
        "IncidentEvent.ward_code='x' is unknown",
        "Rejection(stage='ENRICH', reason='unknown_ward', "
        "message=\"IncidentEvent.ward_code='x' is unknown\")",
    )


def test_reference_data_refuses_duplicate_assets() -> None:
    with pytest.raises(ValueError, match="Asset PJU-00001 appears twice"):
        ReferenceData.build(load_ward_records(), [LAMP, LAMP])
