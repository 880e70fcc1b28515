"""The topic catalog's promises: versioned names, compaction where the latest value is truth."""

from __future__ import annotations

import re

import pytest

from schemas.codec import default_catalog
from topics import catalog
from topics.catalog import CATALOG, WARD_PARTITIONS, Role
from topics.event_types import INCIDENT, INPUT_TOPICS, LIGHTING, topic_for

pytestmark = pytest.mark.unit


def test_every_topic_name_is_versioned_and_unique() -> None:
    names = [spec.name for spec in CATALOG]
    assert len(set(names)) == len(names) == 26
    assert all(re.fullmatch(r"city(\.[a-z0-9]+)+\.v[0-9]+", name) for name in names)


def test_reference_situation_and_session_topics_are_compacted_and_others_delete() -> None:
    compacted = {spec.name for spec in CATALOG if spec.compacted}
    assert compacted == {"city.reference.wards.v1", "city.reference.assets.v1",
                         "city.situations.v1", "city.reference.neighbourhoods.v1",
                         "city.neighbourhood.indicators.v1", "city.operator.sessions.v1",
                         "city.gateway.receipts.v1", "city.notifications.outbox.v1",
                         "city.notifications.deliveries.v1"}
    assert all(spec.config["cleanup.policy"] == "delete" for spec in CATALOG
               if not spec.compacted)
    # receipts are compacted (one per key) and also deleted after their retention
    assert catalog.GATEWAY_RECEIPTS.config["cleanup.policy"] == "compact,delete"


def test_ward_keyed_topics_share_the_partition_count_of_the_state_table() -> None:
    ward_keyed = [spec for spec in CATALOG if spec.role in (Role.INPUT, Role.ENRICHED)]
    assert [spec.partitions for spec in ward_keyed] == [WARD_PARTITIONS] * 11


def test_every_value_schema_is_a_shipped_record() -> None:
    names = set(default_catalog().record_names())
    assert {spec.value_schema for spec in CATALOG} <= names


def test_each_incident_partner_source_has_its_own_topic_and_the_shared_one_names_none() -> None:
    assert {spec.name: spec.source for spec in INCIDENT.inputs} == {
        "city.incidents.police.v1": "POLICE",
        "city.incidents.112.v1": "CALL_CENTER_112",
        "city.incidents.citizen.v1": "CITIZEN_APP",
        "city.incidents.v1": None,
    }
    assert [spec.name for spec in INPUT_TOPICS] == [
        "city.incidents.police.v1", "city.incidents.112.v1", "city.incidents.citizen.v1",
        "city.incidents.v1", "city.lighting.v1", "city.waste.v1",
    ]
    assert {(spec.value_schema, spec.key_field, spec.partitions) for spec in INCIDENT.inputs} == {
        ("org.cityops.IncidentEvent", "incident_id", WARD_PARTITIONS)}
    assert catalog.by_schema("IncidentEvent") is catalog.INCIDENTS


def test_a_record_goes_to_the_topic_of_its_source() -> None:
    def incident(source: str) -> dict[str, str]:
        return {"incident_id": "X-1", "source_system": source}

    assert [topic_for("IncidentEvent", incident(source)).name for source in (
        "POLICE", "CALL_CENTER_112", "CITIZEN_APP", "CCTV", "FIRE_SERVICE", "OTHER")] == [
        "city.incidents.police.v1", "city.incidents.112.v1", "city.incidents.citizen.v1",
        "city.incidents.v1", "city.incidents.v1", "city.incidents.v1",
    ]
    assert topic_for("org.cityops.LightingEvent", {"lamp_id": "PJU-1"}) is LIGHTING.shared_input
    assert topic_for("Ward", {"kelurahan_code": "36.72.01.1001"}) is catalog.WARDS


def test_only_a_source_topic_binds_a_source() -> None:
    assert [INCIDENT.binding(spec) for spec in INCIDENT.inputs] == [
        ("source_system", "POLICE"), ("source_system", "CALL_CENTER_112"),
        ("source_system", "CITIZEN_APP"), None,
    ]
    assert LIGHTING.binding(LIGHTING.shared_input) is None
    with pytest.raises(KeyError, match="no incident topic is bound to source 'CCTV'"):
        INCIDENT.input_for_source("CCTV")
