"""What the history store keeps of each record: decoded records in, table rows out (issue 21).

Pure: no database, no Kafka. The sink (`streams/history_sink.py`) decodes a batch, asks this
module for the rows and writes them in one transaction; the store (`streams/history_store.py`)
creates the tables declared here. Keeping the mapping here means the tests, the sink and the
bench agree on one definition of a row.

Every event table is keyed by the record's position in Kafka (`src_topic`, `src_partition`,
`src_offset`): a record read twice (the sink was killed after its transaction committed but
before its offsets did) writes the same key twice, and `ON CONFLICT DO NOTHING` keeps one row.
That key, unlike a natural key such as scope + sequence, also keeps two different records that
happen to share a sequence (a SNAPSHOT repeats the CHANGE's sequence): the store then holds
exactly what the topic held.

Times are epoch milliseconds (`*_ms` columns) in both SQLite and PostgreSQL, so one SQL text
serves both; lists and maps are JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from processors.state import to_ms


@dataclass(frozen=True, slots=True)
class Table:
    """One table of the store: its columns (name, SQL type), primary key and retention."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    retention_days: int
    """Default retention (docs/history.md); `CITYOPS_HISTORY_RETENTION` overrides per table."""
    time_column: str
    """The column a purge compares with its cutoff."""
    doc: str

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


_POSITION: Final = (("src_topic", "TEXT NOT NULL"), ("src_partition", "INTEGER NOT NULL"),
                    ("src_offset", "BIGINT NOT NULL"))
_POSITION_KEY: Final = ("src_topic", "src_partition", "src_offset")

SITUATIONS: Final = Table(
    "situations",
    (*_POSITION,
     ("scope", "TEXT NOT NULL"), ("scope_code", "TEXT NOT NULL"), ("scope_name", "TEXT NOT NULL"),
     ("kecamatan_code", "TEXT"), ("kind", "TEXT NOT NULL"), ("level", "TEXT NOT NULL"),
     ("reasons", "TEXT NOT NULL"), ("emitted_at_ms", "BIGINT NOT NULL"),
     ("sequence", "BIGINT NOT NULL"), ("events_folded", "INTEGER NOT NULL"),
     ("caused_by_event_id", "TEXT"), ("open_incidents", "INTEGER NOT NULL"),
     ("new_incidents_in_window", "INTEGER NOT NULL"), ("lamps_total", "INTEGER NOT NULL"),
     ("lamps_out", "INTEGER NOT NULL"), ("containers_total", "INTEGER NOT NULL"),
     ("containers_full", "INTEGER NOT NULL"), ("containers_fire_risk", "INTEGER NOT NULL"),
     ("containers_overdue", "INTEGER NOT NULL"), ("mean_dispatch_seconds", "DOUBLE PRECISION"),
     ("mean_on_scene_seconds", "DOUBLE PRECISION"), ("sla_overdue", "INTEGER NOT NULL"),
     ("acknowledged_by", "TEXT"), ("acknowledged_at_ms", "BIGINT"),
     ("body", "TEXT NOT NULL")),
    _POSITION_KEY, 400, "emitted_at_ms",
    "every situation record, CHANGE and SNAPSHOT, with the whole record as JSON in `body`")

INCIDENT_EVENTS: Final = Table(
    "incident_events",
    (*_POSITION,
     ("event_id", "TEXT NOT NULL"), ("source_system", "TEXT NOT NULL"),
     ("incident_id", "TEXT NOT NULL"), ("ward_code", "TEXT NOT NULL"),
     ("kecamatan_code", "TEXT NOT NULL"), ("category", "TEXT NOT NULL"),
     ("severity", "TEXT NOT NULL"), ("status", "TEXT NOT NULL"), ("rw", "TEXT"),
     ("occurred_at_ms", "BIGINT NOT NULL")),
    _POSITION_KEY, 400, "occurred_at_ms",
    "every enriched incident event (the partner's status changes): the cases' clocks")

OPERATOR_ACTIONS: Final = Table(
    "operator_actions",
    (*_POSITION,
     ("action_id", "TEXT NOT NULL"), ("occurred_at_ms", "BIGINT NOT NULL"),
     ("operator_id", "TEXT NOT NULL"), ("operator_role", "TEXT NOT NULL"),
     ("action", "TEXT NOT NULL"), ("ward_code", "TEXT NOT NULL"), ("incident_source", "TEXT"),
     ("incident_id", "TEXT"), ("agency", "TEXT"), ("text", "TEXT")),
    _POSITION_KEY, 5 * 365, "occurred_at_ms",
    "every operator action (the audit record); `text` is personal data with its own retention")

RT_VALIDATIONS: Final = Table(
    "rt_validations",
    (*_POSITION,
     ("rt_code", "TEXT NOT NULL"), ("kelurahan_code", "TEXT"), ("rw", "TEXT"),
     ("period", "TEXT NOT NULL"), ("report_id", "TEXT NOT NULL"),
     ("revision", "INTEGER NOT NULL"), ("verdict", "TEXT NOT NULL"),
     ("reason_codes", "TEXT NOT NULL"), ("reasons", "TEXT NOT NULL"), ("residents", "INTEGER"),
     ("labour_force", "INTEGER"), ("unemployed", "INTEGER"),
     ("validated_at_ms", "BIGINT NOT NULL"), ("synthetic", "INTEGER NOT NULL")),
    _POSITION_KEY, 5 * 365, "validated_at_ms", "every RT report verdict")

INDICATORS: Final = Table(
    "indicators",
    (*_POSITION,
     ("scope_code", "TEXT NOT NULL"), ("scope_level", "TEXT NOT NULL"),
     ("period", "TEXT NOT NULL"), ("rt_registered", "INTEGER NOT NULL"),
     ("rt_reported", "INTEGER NOT NULL"), ("rt_valid", "INTEGER NOT NULL"),
     ("rt_needs_review", "INTEGER NOT NULL"), ("residents", "BIGINT NOT NULL"),
     ("labour_force", "BIGINT NOT NULL"), ("unemployed", "BIGINT"),
     ("unemployment_rate", "DOUBLE PRECISION"), ("completeness", "DOUBLE PRECISION NOT NULL"),
     ("review_share", "DOUBLE PRECISION"), ("computed_at_ms", "BIGINT NOT NULL"),
     ("synthetic", "INTEGER NOT NULL"), ("withheld", "TEXT")),
    _POSITION_KEY, 10 * 365, "computed_at_ms",
    "every indicator record of an RW, kelurahan, kecamatan or the city for a month")

REJECTED: Final = Table(
    "rejected_records",
    (*_POSITION, ("reason", "TEXT NOT NULL"), ("stored_at_ms", "BIGINT NOT NULL")),
    _POSITION_KEY, 30, "stored_at_ms",
    "records the sink could not read (never silently dropped): position and reason")

PURGES: Final = Table(
    "purges",
    (("purge_id", "TEXT NOT NULL"), ("table_name", "TEXT NOT NULL"),
     ("purged_at_ms", "BIGINT NOT NULL"), ("cutoff_ms", "BIGINT NOT NULL"),
     ("rows_purged", "BIGINT NOT NULL"), ("what", "TEXT NOT NULL")),
    ("purge_id", "table_name"), 10 * 365, "purged_at_ms",
    "the audit of every retention purge: what was purged, when, up to which time")

TABLES: Final[tuple[Table, ...]] = (SITUATIONS, INCIDENT_EVENTS, OPERATOR_ACTIONS,
                                    RT_VALIDATIONS, INDICATORS, REJECTED, PURGES)
TABLES_BY_NAME: Final[Mapping[str, Table]] = {table.name: table for table in TABLES}

#: Operator notes can hold names and phone numbers (UU 27/2022): their text is blanked after
#: this many days while the action itself stays in the audit record.
NOTE_RETENTION_DAYS: Final = 90

#: The schema each table is fed from.
SCHEMA_TABLES: Final[Mapping[str, Table]] = {
    "org.cityops.SituationEvent": SITUATIONS,
    "org.cityops.EnrichedIncidentEvent": INCIDENT_EVENTS,
    "org.cityops.OperatorAction": OPERATOR_ACTIONS,
    "org.cityops.RtValidation": RT_VALIDATIONS,
    "org.cityops.NeighbourhoodIndicator": INDICATORS,
}


@dataclass(frozen=True, slots=True)
class Position:
    topic: str
    partition: int
    offset: int

    def columns(self) -> dict[str, Any]:
        return {"src_topic": self.topic, "src_partition": self.partition,
                "src_offset": self.offset}


def _ms(value: datetime | None) -> int | None:
    return None if value is None else to_ms(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        # as the board's JSON (streams/web.py): UTC, milliseconds, a Z
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, Mapping):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    return value


def record_json(record: Mapping[str, Any]) -> str:
    """A decoded record as compact JSON in its schema's field order, times as ISO 8601 UTC:
    the body `/api/situations` serves for the same record."""
    return json.dumps(_json_value(record), separators=(",", ":"), ensure_ascii=False)


def situation_row(record: Mapping[str, Any], at: Position) -> dict[str, Any]:
    return {
        **at.columns(),
        "scope": record["scope"], "scope_code": record["scope_code"],
        "scope_name": record["scope_name"], "kecamatan_code": record["kecamatan_code"],
        "kind": record["kind"], "level": record["level"],
        "reasons": json.dumps(record["reasons"], ensure_ascii=False),
        "emitted_at_ms": to_ms(record["emitted_at"]), "sequence": record["sequence"],
        "events_folded": record["events_folded"],
        "caused_by_event_id": record["caused_by_event_id"],
        "open_incidents": record["open_incidents"],
        "new_incidents_in_window": record["new_incidents_in_window"],
        "lamps_total": record["lamps_total"], "lamps_out": record["lamps_out"],
        "containers_total": record["containers_total"],
        "containers_full": record["containers_full"],
        "containers_fire_risk": record["containers_fire_risk"],
        "containers_overdue": record["containers_overdue"],
        "mean_dispatch_seconds": record["mean_dispatch_seconds"],
        "mean_on_scene_seconds": record["mean_on_scene_seconds"],
        "sla_overdue": record["sla_overdue"], "acknowledged_by": record["acknowledged_by"],
        "acknowledged_at_ms": _ms(record["acknowledged_at"]),
        "body": record_json(record),
    }


def incident_row(record: Mapping[str, Any], at: Position) -> dict[str, Any]:
    event = record["event"]
    return {
        **at.columns(),
        "event_id": event["event_id"], "source_system": event["source_system"],
        "incident_id": event["incident_id"], "ward_code": record["ward_code"],
        "kecamatan_code": record["kecamatan_code"], "category": event["category"],
        "severity": event["severity"], "status": event["status"], "rw": event.get("rw"),
        "occurred_at_ms": to_ms(event["occurred_at"]),
    }


def action_row(record: Mapping[str, Any], at: Position) -> dict[str, Any]:
    return {
        **at.columns(),
        "action_id": str(record["action_id"]), "occurred_at_ms": to_ms(record["occurred_at"]),
        "operator_id": record["operator_id"], "operator_role": record["operator_role"],
        "action": record["action"], "ward_code": record["ward_code"],
        "incident_source": record["incident_source"], "incident_id": record["incident_id"],
        "agency": record["agency"], "text": record["text"],
    }


def validation_row(record: Mapping[str, Any], at: Position) -> dict[str, Any]:
    return {
        **at.columns(),
        **{name: record[name] for name in ("rt_code", "kelurahan_code", "rw", "period",
                                           "report_id", "revision", "verdict", "residents",
                                           "labour_force", "unemployed")},
        "reason_codes": json.dumps(record["reason_codes"]),
        "reasons": json.dumps(record["reasons"], ensure_ascii=False),
        "validated_at_ms": to_ms(record["validated_at"]),
        "synthetic": int(record["synthetic"]),
    }


def indicator_row(record: Mapping[str, Any], at: Position) -> dict[str, Any]:
    return {
        **at.columns(),
        **{name: record[name] for name in (
            "scope_code", "scope_level", "period", "rt_registered", "rt_reported", "rt_valid",
            "rt_needs_review", "residents", "labour_force", "unemployed", "unemployment_rate",
            "completeness", "review_share", "withheld")},
        "computed_at_ms": to_ms(record["computed_at"]),
        "synthetic": int(record["synthetic"]),
    }


_ROW_OF: Final = {
    SITUATIONS.name: situation_row, INCIDENT_EVENTS.name: incident_row,
    OPERATOR_ACTIONS.name: action_row, RT_VALIDATIONS.name: validation_row,
    INDICATORS.name: indicator_row,
}


def row_of(schema: str, record: Mapping[str, Any], at: Position) -> tuple[Table, dict[str, Any]]:
    """The table and row of one decoded record of `schema` (one of SCHEMA_TABLES)."""
    table = SCHEMA_TABLES[schema]
    return table, _ROW_OF[table.name](record, at)


def rejected_row(at: Position, reason: str, now_ms: int) -> dict[str, Any]:
    return {**at.columns(), "reason": reason[:500], "stored_at_ms": now_ms}
