"""The input event types, one typed entry each: the single place that says what a kind is.

The worker's wiring (an enrich agent per type, the ward aggregator's sources), the partner
producer and `cityops produce --type`, and the simulator all iterate over `EVENT_TYPES` instead
of naming incident, lighting and waste themselves. Adding a type means: its Avro schemas, its
topics in `topics.catalog`, its enricher (and state step) in `processors/`, and one entry here
(the checklist is in docs/operations.md, "Adding an event type").
"""

from __future__ import annotations

from dataclasses import dataclass

from processors.enrich import enrich_incident, enrich_lighting, enrich_waste
from processors.records import Enricher
from processors.state import EventKind
from topics import catalog
from topics.catalog import TopicSpec


@dataclass(frozen=True)
class EventType:
    """One kind of partner event and the path it takes through the pipeline."""

    kind: EventKind
    """The name the ward state folds it under, and the `cityops produce --type` value."""
    input: TopicSpec
    """Where partners write it (keyed by `input.key_field`)."""
    enriched: TopicSpec
    """Where the worker writes it validated and placed in a ward (keyed by kelurahan code)."""
    enricher: Enricher

    @property
    def schema(self) -> str:
        """The Avro record partners write."""
        return self.input.value_schema

    @property
    def enriched_schema(self) -> str:
        return self.enriched.value_schema

    @property
    def key_field(self) -> str:
        assert self.input.key_field is not None, self.input.name
        return self.input.key_field


INCIDENT = EventType("incident", catalog.INCIDENTS, catalog.INCIDENTS_ENRICHED, enrich_incident)
LIGHTING = EventType("lighting", catalog.LIGHTING, catalog.LIGHTING_ENRICHED, enrich_lighting)
WASTE = EventType("waste", catalog.WASTE, catalog.WASTE_ENRICHED, enrich_waste)

EVENT_TYPES: tuple[EventType, ...] = (INCIDENT, LIGHTING, WASTE)


def by_kind(kind: str) -> EventType:
    for event_type in EVENT_TYPES:
        if event_type.kind == kind:
            return event_type
    raise KeyError(f"{kind!r} is not one of {', '.join(t.kind for t in EVENT_TYPES)}")


def by_schema(schema: str) -> EventType:
    """The type whose partners write `schema` (full or short record name)."""
    full = schema if "." in schema else f"org.cityops.{schema}"
    for event_type in EVENT_TYPES:
        if event_type.schema == full:
            return event_type
    raise KeyError(f"no event type carries {schema}")


INPUT_TOPICS: tuple[TopicSpec, ...] = tuple(event_type.input for event_type in EVENT_TYPES)
"""Where partners write, one topic per event type (declared names)."""

RT_REPORT_KIND = "rt_report"
"""`cityops produce --type rt_report`: the monthly RT report (issue 13). Not an `EventType`:
it has no ward-state step; `streams/neighbourhood_agent.py` screens and judges it."""

PARTNER_KINDS: tuple[tuple[str, TopicSpec], ...] = (
    *((event_type.kind, event_type.input) for event_type in EVENT_TYPES),
    (RT_REPORT_KIND, catalog.RT_REPORTS),
)
"""Every `--type` a partner may send and its input topic: the event types and the RT report."""
