"""The .avsc files are the contract with partners: rules every schema file must keep."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import load_schema, parse_schema

from schemas.codec import AVRO_DIR

pytestmark = pytest.mark.unit

CURRENT = sorted(AVRO_DIR.glob("*.avsc"))
HISTORY = sorted((AVRO_DIR / "history").glob("*.avsc"))
ALL_FILES = CURRENT + HISTORY
PARTNER_EVENTS = (
    "org.cityops.IncidentEvent",
    "org.cityops.LightingEvent",
    "org.cityops.WasteEvent",
)


def raw(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def named_types(schema: Any) -> Iterator[dict[str, Any]]:
    """Every record, enum and fixed defined inline in a raw schema, outermost first."""
    if isinstance(schema, list):
        for branch in schema:
            yield from named_types(branch)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            yield schema
        if kind in ("record", "error"):
            for field in schema["fields"]:
                yield from named_types(field["type"])
        elif kind == "array":
            yield from named_types(schema["items"])
        elif kind == "map":
            yield from named_types(schema["values"])


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_schema_folders_hold_the_expected_files() -> None:
    assert ids(CURRENT) == [
        "org.cityops.ActionReceipt.avsc",
        "org.cityops.Asset.avsc",
        "org.cityops.BoardSession.avsc",
        "org.cityops.DeadLetter.avsc",
        "org.cityops.EnrichedIncidentEvent.avsc",
        "org.cityops.EnrichedLightingEvent.avsc",
        "org.cityops.EnrichedWasteEvent.avsc",
        "org.cityops.GatewayReceipt.avsc",
        "org.cityops.IncidentEvent.avsc",
        "org.cityops.LightingEvent.avsc",
        "org.cityops.Neighbourhood.avsc",
        "org.cityops.NeighbourhoodIndicator.avsc",
        "org.cityops.Notification.avsc",
        "org.cityops.NotificationDelivery.avsc",
        "org.cityops.OperatorAction.avsc",
        "org.cityops.RtReport.avsc",
        "org.cityops.RtReview.avsc",
        "org.cityops.RtValidation.avsc",
        "org.cityops.SignInEvent.avsc",
        "org.cityops.SituationEvent.avsc",
        "org.cityops.Ward.avsc",
        "org.cityops.WardResolution.avsc",
        "org.cityops.WasteEvent.avsc",
    ]
    assert ids(HISTORY) == [
        "org.cityops.IncidentEvent.v1.avsc", "org.cityops.NeighbourhoodIndicator.v1.avsc",
        "org.cityops.OperatorAction.v1.avsc",
        "org.cityops.SituationEvent.v1.avsc", "org.cityops.SituationEvent.v2.avsc",
        "org.cityops.SituationEvent.v3.avsc",
    ]


@pytest.mark.parametrize("path", CURRENT, ids=ids(CURRENT))
def test_current_schema_parses_and_is_named_after_its_file(path: Path) -> None:
    parsed = load_schema(str(path))
    assert isinstance(parsed, dict)
    assert parsed["name"] == path.stem


@pytest.mark.parametrize("path", HISTORY, ids=ids(HISTORY))
def test_archived_schema_parses_on_its_own_and_is_named_after_its_file(path: Path) -> None:
    parsed = parse_schema(raw(path))
    assert isinstance(parsed, dict)
    assert f"{parsed['name']}.v" in path.name


@pytest.mark.parametrize("path", ALL_FILES, ids=ids(ALL_FILES))
def test_every_named_type_and_every_field_has_a_doc(path: Path) -> None:
    undocumented = []
    for named in named_types(raw(path)):
        if not str(named.get("doc", "")).strip():
            undocumented.append(named["name"])
        for field in named.get("fields", []):
            if not str(field.get("doc", "")).strip():
                undocumented.append(f"{named['name']}.{field['name']}")
    assert undocumented == []


@pytest.mark.parametrize("path", CURRENT, ids=ids(CURRENT))
def test_every_current_enum_has_a_default_among_its_symbols(path: Path) -> None:
    # The default is what a reader substitutes for a symbol added later: without one, an old
    # reader fails on the first new symbol instead of reading UNKNOWN.
    enums = [n for n in named_types(raw(path)) if n["type"] == "enum"]
    assert [(e["name"], e.get("default") in e["symbols"]) for e in enums] == [
        (e["name"], True) for e in enums
    ]


@pytest.mark.parametrize("path", HISTORY, ids=ids(HISTORY))
def test_archived_enum_defaults_when_present_are_symbols(path: Path) -> None:
    enums = [n for n in named_types(raw(path)) if n["type"] == "enum" and "default" in n]
    assert [e["name"] for e in enums if e["default"] not in e["symbols"]] == []


@pytest.mark.parametrize("full_name", PARTNER_EVENTS)
def test_partner_events_carry_a_uuid_event_id_and_a_millisecond_event_time(full_name: str) -> None:
    schema = raw(AVRO_DIR / f"{full_name}.avsc")
    types = {field["name"]: field["type"] for field in schema["fields"]}
    assert (types["event_id"], types["occurred_at"]) == (
        {"type": "string", "logicalType": "uuid"},
        {"type": "long", "logicalType": "timestamp-millis"},
    )


ARCHIVED_PARTNER_EVENTS = [path for path in HISTORY if path.name.split(".v")[0] in PARTNER_EVENTS]


@pytest.mark.parametrize("path", ARCHIVED_PARTNER_EVENTS, ids=ids(ARCHIVED_PARTNER_EVENTS))
def test_archived_partner_events_carry_event_id_and_occurred_at_too(path: Path) -> None:
    types = {field["name"]: field["type"] for field in raw(path)["fields"]}
    assert (types["event_id"], types["occurred_at"]) == (
        {"type": "string", "logicalType": "uuid"},
        {"type": "long", "logicalType": "timestamp-millis"},
    )


def test_incident_v1_is_the_current_schema_minus_the_later_additions() -> None:
    current = raw(AVRO_DIR / "org.cityops.IncidentEvent.avsc")
    v1 = raw(AVRO_DIR / "history" / "org.cityops.IncidentEvent.v1.avsc")
    assert [f["name"] for f in current["fields"] if f not in v1["fields"]] == [
        "status",  # its enum lost UNKNOWN (and so its default) in v1
        "rw",
        "rt",
        "description",
    ]
    v1_status = next(f for f in v1["fields"] if f["name"] == "status")["type"]
    assert (v1_status["symbols"], "default" in v1_status) == (
        ["REPORTED", "DISPATCHED", "ON_SCENE", "RESOLVED", "CANCELLED"],
        False,
    )
    assert v1["doc"].startswith("Version 1 of IncidentEvent, the first published version")
