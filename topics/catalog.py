"""Every topic of the pipeline, in one place.

Names carry a version suffix (`.v1`) so an incompatible change gets a new topic instead of
breaking readers. Reference and situation topics are compacted: the latest record per key is
the current truth, so a consumer that starts late rebuilds the full picture from the topic.
Enriched topics are keyed by kelurahan code; they are the repartition step that brings every
event of one ward to the worker that owns that ward's state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum

from core.vocabulary import CITY_CODE

DAY_MS = 24 * 60 * 60 * 1000

#: Prepended to every topic name: lets tests (and a staging city on a shared cluster) run in
#: their own namespace on the same broker. Empty in production.
PREFIX = os.environ.get("CITYOPS_TOPIC_PREFIX", "")

#: Partitions of the ward-keyed topics; it caps how many workers share the aggregation.
WARD_PARTITIONS = 6


class Role(StrEnum):
    INPUT = "input"
    ENRICHED = "enriched"
    REFERENCE = "reference"
    OUTPUT = "output"
    DEAD_LETTER = "dead-letter"


@dataclass(frozen=True)
class TopicSpec:
    """One topic: what it carries, how it is keyed, and the broker settings it needs."""

    name: str
    role: Role
    key: str
    value_schema: str
    partitions: int
    description: str
    config: dict[str, str] = field(default_factory=dict)
    replication_factor: int = 1

    @property
    def compacted(self) -> bool:
        return self.config.get("cleanup.policy") == "compact"


_DELETE_7D = {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}
_COMPACT = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": "60000",
    "segment.ms": str(DAY_MS),
}

INCIDENTS = TopicSpec(
    f"{PREFIX}city.incidents.v1", Role.INPUT, "incident_id", "org.cityops.IncidentEvent",
    WARD_PARTITIONS,
    "Incident reports from police, the 112 call center, the citizen app, CCTV and fire service.",
    _DELETE_7D,
)
LIGHTING = TopicSpec(
    f"{PREFIX}city.lighting.v1", Role.INPUT, "lamp_id", "org.cityops.LightingEvent",
    WARD_PARTITIONS,
    "Street-lighting (PJU) status, fault and energy reports.", _DELETE_7D,
)
WASTE = TopicSpec(
    f"{PREFIX}city.waste.v1", Role.INPUT, "container_id", "org.cityops.WasteEvent",
    WARD_PARTITIONS,
    "Waste container and TPS fill levels, collections, overflow complaints and fire risk.",
    _DELETE_7D,
)
INCIDENTS_ENRICHED = TopicSpec(
    f"{PREFIX}city.incidents.enriched.v1", Role.ENRICHED, "kelurahan code",
    "org.cityops.EnrichedIncidentEvent", WARD_PARTITIONS,
    "Validated incidents with their resolved ward.", _DELETE_7D,
)
LIGHTING_ENRICHED = TopicSpec(
    f"{PREFIX}city.lighting.enriched.v1", Role.ENRICHED, "kelurahan code",
    "org.cityops.EnrichedLightingEvent", WARD_PARTITIONS,
    "Validated lighting reports with their ward and control cabinet.", _DELETE_7D,
)
WASTE_ENRICHED = TopicSpec(
    f"{PREFIX}city.waste.enriched.v1", Role.ENRICHED, "kelurahan code",
    "org.cityops.EnrichedWasteEvent", WARD_PARTITIONS,
    "Validated waste reports with their ward and site.", _DELETE_7D,
)
WARDS = TopicSpec(
    f"{PREFIX}city.reference.wards.v1", Role.REFERENCE, "kelurahan code", "org.cityops.Ward", 1,
    "The 43 kelurahan of Kota Cilegon with kecamatan, centroid and boundary.", _COMPACT,
)
ASSETS = TopicSpec(
    f"{PREFIX}city.reference.assets.v1", Role.REFERENCE, "asset id", "org.cityops.Asset", 1,
    "Lamp, container and TPS registry (asset id -> ward, road or site, wattage or capacity).",
    _COMPACT,
)
SITUATIONS = TopicSpec(
    f"{PREFIX}city.situations.v1", Role.OUTPUT,
    f"scope code (kelurahan, kecamatan or {CITY_CODE} for the city)",
    "org.cityops.SituationEvent", 3,
    "Situation per kelurahan, kecamatan and city for command-center consumers.", _COMPACT,
)
DEAD_LETTERS = TopicSpec(
    f"{PREFIX}city.deadletter.v1", Role.DEAD_LETTER, "original key", "org.cityops.DeadLetter", 3,
    "Rejected input with its original bytes, the rule broken and who rejected it.",
    {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
)

CATALOG: tuple[TopicSpec, ...] = (
    INCIDENTS, LIGHTING, WASTE,
    INCIDENTS_ENRICHED, LIGHTING_ENRICHED, WASTE_ENRICHED,
    WARDS, ASSETS, SITUATIONS, DEAD_LETTERS,
)

INPUT_TOPICS: tuple[TopicSpec, ...] = (INCIDENTS, LIGHTING, WASTE)


def by_name(name: str) -> TopicSpec:
    for spec in CATALOG:
        if spec.name == name:
            return spec
    raise KeyError(f"no topic {name!r} in the catalog")
