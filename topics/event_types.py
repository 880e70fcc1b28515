"""The input event types, one typed entry each: the single place that says what a kind is.

The worker's wiring (an enrich agent per type, the ward aggregator's sources), the partner
producer and `cityops produce --type`, and the simulator all iterate over `EVENT_TYPES` instead
of naming incident, lighting and waste themselves. Adding a type means: its Avro schemas, its
topics in `topics.catalog`, its enricher (and state step) in `processors/`, and one entry here
(the checklist is in docs/operations.md, "Adding an event type").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processors.enrich import enrich_incident, enrich_lighting, enrich_waste
from processors.records import Enricher
from processors.state import EventKind
from topics import catalog
from topics.catalog import TopicSpec


@dataclass(frozen=True)
class EventType:
    """One kind of partner event and the paths it takes through the pipeline."""

    kind: EventKind
    """The name the ward state folds it under, and the `cityops produce --type` value."""
    shared_input: TopicSpec
    """Where a record's payload names its source (keyed by `key_field`): the only input of a
    type without sources; for incidents the shared topic kept for the transition."""
    enriched: TopicSpec
    """Where the worker writes it validated and placed in a ward (keyed by kelurahan code)."""
    enricher: Enricher
    source_inputs: tuple[TopicSpec, ...] = ()
    """One input topic per partner source (each declares its `source`): the worker takes a
    record's source from the topic it read, so only who may write a topic decides it."""
    source_field: str | None = None
    """The record field the source topics bind (`source_system` for incidents)."""

    def __post_init__(self) -> None:
        # A source topic must carry exactly what the shared one carries, for one source each:
        # the producer, the ACLs and the worker rely on it.
        sources = [spec.source for spec in self.source_inputs]
        assert self.shared_input.source is None, self.shared_input.name
        assert None not in sources and len(set(sources)) == len(sources), sources
        assert not sources or self.source_field is not None, self.kind
        for spec in self.source_inputs:
            assert (spec.value_schema, spec.key_field) == (
                self.shared_input.value_schema, self.shared_input.key_field), spec.name

    @property
    def inputs(self) -> tuple[TopicSpec, ...]:
        """Every topic partners write this type to: the source topics, then the shared one."""
        return (*self.source_inputs, self.shared_input)

    def input_for_source(self, source: str) -> TopicSpec:
        """The topic bound to one source (KeyError when the source has no topic of its own)."""
        for spec in self.source_inputs:
            if spec.source == source:
                return spec
        raise KeyError(f"no {self.kind} topic is bound to source {source!r}")

    def binding(self, spec: TopicSpec) -> tuple[str, str] | None:
        """(field, source) a record read from `spec` must carry, or None where the payload
        names its own source (the shared topic)."""
        if spec.source is None or self.source_field is None:
            return None
        return (self.source_field, spec.source)

    def input_for(self, record: Mapping[str, Any]) -> TopicSpec:
        """Where a partner writes `record`: its source's own topic when it has one (a police
        incident to the police topic), else the shared topic."""
        if self.source_field is not None:
            source = record.get(self.source_field)
            for spec in self.source_inputs:
                if spec.source == source:
                    return spec
        return self.shared_input

    @property
    def schema(self) -> str:
        """The Avro record partners write."""
        return self.shared_input.value_schema

    @property
    def enriched_schema(self) -> str:
        return self.enriched.value_schema

    @property
    def key_field(self) -> str:
        assert self.shared_input.key_field is not None, self.shared_input.name
        return self.shared_input.key_field


INCIDENT = EventType(
    "incident", catalog.INCIDENTS, catalog.INCIDENTS_ENRICHED, enrich_incident,
    source_inputs=(catalog.INCIDENTS_POLICE, catalog.INCIDENTS_112, catalog.INCIDENTS_CITIZEN),
    source_field="source_system",
)
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


def topic_for(schema: str, record: Mapping[str, Any]) -> TopicSpec:
    """The declared topic a record of `schema` is written to: its event type's topic for the
    record's source (`EventType.input_for`), or the reference topic carrying `schema`."""
    try:
        event_type = by_schema(schema)
    except KeyError:
        return catalog.by_schema(schema)
    return event_type.input_for(record)


INPUT_TOPICS: tuple[TopicSpec, ...] = tuple(
    spec for event_type in EVENT_TYPES for spec in event_type.inputs)
"""Every topic partners write (declared names): each type's source topics and shared topic."""

SHARED_INPUT_TOPICS: tuple[TopicSpec, ...] = tuple(
    event_type.shared_input for event_type in EVENT_TYPES)
"""One topic per event type, where the payload names its source (the benchmark's feed)."""

RT_REPORT_KIND = "rt_report"
"""`cityops produce --type rt_report`: the monthly RT report (issue 13). Not an `EventType`:
it has no ward-state step; `streams/neighbourhood_agent.py` screens and judges it."""

PARTNER_KINDS: tuple[tuple[str, TopicSpec], ...] = (
    *((event_type.kind, event_type.shared_input) for event_type in EVENT_TYPES),
    (RT_REPORT_KIND, catalog.RT_REPORTS),
)
"""Every `--type` a partner may send and its shared input topic: the event types and the RT
report."""
