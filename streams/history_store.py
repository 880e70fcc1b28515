"""The history store (issue 21): SQLite embedded by default, PostgreSQL in production.

One SQL text serves both databases: `?` placeholders (rewritten to `%s` for psycopg), BIGINT
epoch milliseconds for times, JSON text for lists, `INSERT ... ON CONFLICT DO NOTHING` for the
idempotent writes and window functions for "the latest record per scope". The URL says which:

    sqlite:///var/history.sqlite3           (the default, `make demo`; a file, no server)
    postgresql://user:password@host:5432/db (production, the compose stack, the tests)

`CITYOPS_HISTORY_URL` sets it for every command; `default_url()` is the embedded file under
var/. Connections are short-lived and per call, so the worker's web threads and the sink never
share one; SQLite runs in WAL mode so the board reads while the sink writes.

Why sync drivers (stdlib sqlite3, psycopg 3): the sink is a plain loop (poll, write, commit
offsets) with nothing else to do while the database commits, and the board calls the store in
a thread (`asyncio.to_thread`), so an event loop would buy nothing and cost a second code path.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from core.paths import var_dir
from processors import reports
from processors.history_rows import (
    INCIDENT_EVENTS,
    INDICATORS,
    NOTE_RETENTION_DAYS,
    OPERATOR_ACTIONS,
    PURGES,
    SITUATIONS,
    TABLES,
    TABLES_BY_NAME,
    Table,
)
from processors.thresholds import SlaRules

URL_VARIABLE: Final = "CITYOPS_HISTORY_URL"
RETENTION_VARIABLE: Final = "CITYOPS_HISTORY_RETENTION"
DAY_MS: Final = 24 * 60 * 60 * 1000


class HistoryError(RuntimeError):
    """The store cannot be opened or used; the message says what to check."""


def default_url() -> str:
    return f"sqlite:///{var_dir() / 'history.sqlite3'}"


def store_url(url: str | None = None) -> str:
    return url or os.environ.get(URL_VARIABLE) or default_url()


class _Connection(Protocol):
    def cursor(self) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class HistoryStore:
    """One store by URL. Cheap to build: it holds the URL, not a connection."""

    url: str

    @classmethod
    def from_env(cls, url: str | None = None) -> HistoryStore:
        return cls(store_url(url))

    @property
    def dialect(self) -> str:
        scheme = urlsplit(self.url).scheme
        if scheme == "sqlite":
            return "sqlite"
        if scheme in ("postgresql", "postgres"):
            return "postgresql"
        raise HistoryError(f"{URL_VARIABLE}: unsupported URL scheme {scheme!r}; use "
                           "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB")

    def describe(self) -> str:
        """The URL without its password, for logs."""
        parts = urlsplit(self.url)
        if parts.password:
            return self.url.replace(f":{parts.password}@", ":***@")
        return self.url

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.dialect == "postgresql" else text

    def _connect(self) -> _Connection:
        if self.dialect == "sqlite":
            path = Path(urlsplit(self.url).path)
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, timeout=30.0)
            connection.execute("PRAGMA journal_mode=WAL")
            # A committed transaction survives the process being killed (the WAL is written
            # before commit returns); only a power loss may lose the last ones.
            connection.execute("PRAGMA synchronous=NORMAL")
            return connection
        import psycopg

        try:
            return psycopg.connect(self.url, connect_timeout=10)
        except psycopg.OperationalError as error:
            raise HistoryError(f"cannot connect to {self.describe()}: "
                               f"{str(error).strip()}") from error

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction: committed when the block ends, rolled back if it
        raises."""
        connection = self._connect()
        try:
            cursor = connection.cursor()
            yield cursor
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()

    def query(self, text: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.transaction() as cursor:
            cursor.execute(self._sql(text), tuple(parameters))
            return list(cursor.fetchall())

    # -- schema ------------------------------------------------------------------------------

    def create_tables(self) -> None:
        """Idempotent: every table and index, created when missing. On PostgreSQL two sinks
        starting at once would race in `CREATE TABLE IF NOT EXISTS` (its catalog check is not
        atomic), so the creation holds a transaction-level advisory lock; SQLite serialises
        writers by itself."""
        with self.transaction() as cursor:
            if self.dialect == "postgresql":
                cursor.execute("SELECT pg_advisory_xact_lock(2172021)")
            for table in TABLES:
                columns = ", ".join(f"{name} {kind}" for name, kind in table.columns)
                cursor.execute(f"CREATE TABLE IF NOT EXISTS {table.name} ({columns}, "
                               f"PRIMARY KEY ({', '.join(table.key)}))")
                self._migrate(cursor, table)
            cursor.execute("CREATE TABLE IF NOT EXISTS sink_meta (name TEXT PRIMARY KEY, "
                           "value TEXT NOT NULL)")
            for index, indexed, columns in _INDEXES:
                cursor.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {indexed} ({columns})")

    def _migrate(self, cursor: Any, table: Table) -> None:
        """Bring a table an older version created up to its declared columns: a column added
        later (nullable, so existing rows stay valid) is added, and a column that became
        nullable loses its NOT NULL (the indicators' `unemployed` and `withheld` of the
        small-cell suppression, issue 24 part 5). PostgreSQL alters in place; SQLite cannot
        drop a NOT NULL, so the table is rebuilt with its rows in the same transaction."""
        declared = {name: "NOT NULL" not in kind for name, kind in table.columns}
        if self.dialect == "postgresql":
            cursor.execute("SELECT column_name, is_nullable FROM information_schema.columns "
                           "WHERE table_name = %s AND table_schema = current_schema()",
                           (table.name,))
            existing = {name: nullable == "YES" for name, nullable in cursor.fetchall()}
            for name, kind in table.columns:
                if name not in existing:
                    cursor.execute(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}")
                elif declared[name] and not existing[name] and name not in table.key:
                    cursor.execute(f"ALTER TABLE {table.name} ALTER COLUMN {name} "
                                   "DROP NOT NULL")
            return
        cursor.execute(f"PRAGMA table_info({table.name})")
        existing = {row[1]: not row[3] for row in cursor.fetchall()}
        if all(name in existing and (existing[name] or not declared[name]
                                     or name in table.key) for name in declared):
            return
        kept = ", ".join(name for name in declared if name in existing)
        columns = ", ".join(f"{name} {kind}" for name, kind in table.columns)
        rebuilt = f"{table.name}_migrating"
        cursor.execute("SAVEPOINT migrate")
        cursor.execute(f"DROP TABLE IF EXISTS {rebuilt}")
        cursor.execute(f"CREATE TABLE {rebuilt} ({columns}, "
                       f"PRIMARY KEY ({', '.join(table.key)}))")
        cursor.execute(f"INSERT INTO {rebuilt} ({kept}) SELECT {kept} FROM {table.name}")
        cursor.execute(f"DROP TABLE {table.name}")
        cursor.execute(f"ALTER TABLE {rebuilt} RENAME TO {table.name}")
        cursor.execute("RELEASE migrate")

    # -- writes ------------------------------------------------------------------------------

    def write(self, rows: Iterable[tuple[Table, Mapping[str, Any]]]) -> int:
        """Insert rows in one transaction; a row whose key is already stored is skipped (the
        at-least-once replay). Returns the rows actually inserted."""
        grouped: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for table, row in rows:
            grouped[table.name].append(tuple(row[name] for name in table.column_names))
        if not grouped:
            return 0
        inserted = 0
        with self.transaction() as cursor:
            for name, values in grouped.items():
                table = TABLES_BY_NAME[name]
                marks = ", ".join("?" for _ in table.column_names)
                cursor.executemany(self._sql(
                    f"INSERT INTO {name} ({', '.join(table.column_names)}) VALUES ({marks}) "
                    f"ON CONFLICT ({', '.join(table.key)}) DO NOTHING"), values)
                inserted += max(0, cursor.rowcount)
        return inserted

    def bind_cluster(self, cluster_id: str) -> None:
        """Tie the store to one Kafka cluster: rows are keyed by offsets, and offsets start
        again at 0 on another cluster (or after `cityops broker reset`), where a new record
        would collide with an old one's key and be skipped. A store filled from another
        cluster is refused with what to do."""
        with self.transaction() as cursor:
            cursor.execute(self._sql("INSERT INTO sink_meta (name, value) VALUES (?, ?) "
                                     "ON CONFLICT (name) DO NOTHING"), ("cluster_id", cluster_id))
            cursor.execute(self._sql("SELECT value FROM sink_meta WHERE name = ?"),
                           ("cluster_id",))
            found = cursor.fetchone()
            if found[0] != cluster_id:
                raise HistoryError(
                    f"{self.describe()} was filled from Kafka cluster {found[0]}, not "
                    f"{cluster_id} (a reset broker starts its offsets again): point "
                    f"{URL_VARIABLE} at a new store, or move the old one away")

    def count(self, table: Table) -> int:
        return int(self.query(f"SELECT COUNT(*) FROM {table.name}")[0][0])

    def keys(self, table: Table) -> list[tuple[Any, ...]]:
        """Every stored key of a table (the kill test compares them with the topics)."""
        return [tuple(row) for row in self.query(
            f"SELECT {', '.join(table.key)} FROM {table.name}")]

    # -- the board at a past moment ------------------------------------------------------------

    def situations_at(self, at_ms: int) -> list[dict[str, Any]]:
        """Every scope's situation as a consumer of the situations topic held it at `at_ms`:
        among the records emitted up to then, the highest sequence, and of equal sequences the
        later record (README, the situation contract; `cityops/watch.py` applies the same)."""
        rows = self.query(
            "SELECT body FROM (SELECT body, ROW_NUMBER() OVER (PARTITION BY scope_code "
            "ORDER BY sequence DESC, src_partition DESC, src_offset DESC) AS newest "
            "FROM situations WHERE emitted_at_ms <= ?) latest WHERE newest = 1", (at_ms,))
        return [json.loads(body) for (body,) in rows]

    def level_changes(self, scope_code: str, since_ms: int, until_ms: int
                      ) -> list[dict[str, Any]]:
        """The scope's level changes in [since, until]: each record whose level differs from
        the one before it (in sequence order), with its reasons; the first is the level the
        period started with."""
        rows = self.query(
            "SELECT emitted_at_ms, sequence, level, reasons, kind FROM situations "
            "WHERE scope_code = ? AND emitted_at_ms <= ? "
            "ORDER BY sequence, src_partition, src_offset", (scope_code, until_ms))
        changes: list[dict[str, Any]] = []
        previous: str | None = None
        start: tuple[int, int, str, str, str] | None = None
        for emitted, sequence, level, reasons, kind in rows:
            if emitted < since_ms:
                start = (emitted, sequence, level, reasons, kind)
                previous = level
                continue
            if start is not None and not changes:
                changes.append(_change(*start, opening=True))
            if level != previous:
                changes.append(_change(emitted, sequence, level, reasons, kind))
                previous = level
        if start is not None and not changes:
            changes.append(_change(*start, opening=True))
        return changes

    # -- cases --------------------------------------------------------------------------------

    def cases(self, *, ward_codes: Sequence[str] = (), since_ms: int | None = None,
              until_ms: int | None = None) -> list[dict[str, Any]]:
        """Cases (one incident of one source in one kelurahan) from the stored incident events
        and operator actions: when it was reported, dispatched, on scene and resolved, who it
        was assigned to, escalated and closed by. A function of stored rows only, so a
        replayed record changes nothing."""
        where: list[str] = ["1 = 1"]
        parameters: list[Any] = []
        if ward_codes:
            where.append(f"ward_code IN ({', '.join('?' for _ in ward_codes)})")
            parameters.extend(ward_codes)
        events = self.query(
            "SELECT ward_code, kecamatan_code, source_system, incident_id, category, severity, "
            "status, rw, occurred_at_ms FROM incident_events WHERE " + " AND ".join(where)
            + " ORDER BY occurred_at_ms, src_partition, src_offset", parameters)
        actions = self.query(
            "SELECT ward_code, incident_source, incident_id, action, agency, operator_id, "
            "occurred_at_ms FROM operator_actions WHERE incident_id IS NOT NULL AND "
            + " AND ".join(where) + " ORDER BY occurred_at_ms, src_partition, src_offset",
            parameters)
        found = fold_cases(events, actions)
        return [case for case in found
                if (since_ms is None or (case["reported_at_ms"] or 0) >= since_ms)
                and (until_ms is None or (case["reported_at_ms"] or 0) < until_ms)]

    # -- monthly reports (processors/reports.py computes) -----------------------------------

    def monthly_report(self, month: str, kecamatan: str | None, rules: SlaRules
                       ) -> dict[str, Any]:
        """The month's report for a kecamatan (None: the city) from the stored rows."""
        start, end = reports.month_bounds(month)
        cases = self.cases()
        ward_levels = self.query(
            "SELECT scope_code, emitted_at_ms, level FROM situations WHERE scope = 'KELURAHAN' "
            "AND emitted_at_ms < ? ORDER BY scope_code, sequence, src_partition, src_offset",
            (end,))
        acknowledgements = self.query(
            "SELECT ward_code, occurred_at_ms FROM operator_actions WHERE action = "
            "'ACKNOWLEDGE' AND occurred_at_ms < ? ORDER BY occurred_at_ms, src_partition, "
            "src_offset", (end,))
        assets = self.query(
            "SELECT scope_code, emitted_at_ms, lamps_out, containers_full FROM situations "
            "WHERE scope = 'KELURAHAN' AND emitted_at_ms >= ? AND emitted_at_ms < ?",
            (start, end))
        names = INDICATORS.column_names
        indicators = [dict(zip(names, row, strict=True)) for row in self.query(
            f"SELECT {', '.join(names)} FROM indicators WHERE period IN (?, ?)",
            (month, reports.previous_month(month)))]
        acknowledged = reports.acknowledge_samples(ward_levels, acknowledgements, rules)
        return {
            "month": month, "kecamatan": kecamatan,
            "sla": reports.sla_report(cases, acknowledged, rules, month, kecamatan),
            "incidents": reports.incidents_report(cases, month, kecamatan),
            "assets": reports.assets_report(assets, month, kecamatan),
            "unemployment": reports.unemployment_report(indicators, month, kecamatan),
        }

    # -- retention (UU 27/2022) ----------------------------------------------------------------

    def purge(self, now_ms: int, retention: Mapping[str, int] | None = None,
              note_days: int | None = None) -> list[dict[str, Any]]:
        """Delete what is past its table's retention and blank operator notes past theirs, in
        one transaction with its own audit rows in `purges` (which table, how many rows, up to
        which time): a purge is itself on the record. Returns those audit rows."""
        days = {**retention_days(), **(retention or {})}
        notes = note_days if note_days is not None else days.get("notes", NOTE_RETENTION_DAYS)
        purge_id = str(uuid.uuid4())
        audit: list[dict[str, Any]] = []
        with self.transaction() as cursor:
            for table in TABLES:
                if table is PURGES:
                    continue
                cutoff = now_ms - days[table.name] * DAY_MS
                cursor.execute(self._sql(
                    f"DELETE FROM {table.name} WHERE {table.time_column} < ?"), (cutoff,))
                audit.append(_purge_row(purge_id, table.name, now_ms, cutoff,
                                        max(0, cursor.rowcount),
                                        f"rows older than {days[table.name]} days"))
            cutoff = now_ms - notes * DAY_MS
            cursor.execute(self._sql(
                "UPDATE operator_actions SET text = NULL WHERE text IS NOT NULL "
                "AND occurred_at_ms < ?"), (cutoff,))
            audit.append(_purge_row(purge_id, "operator_actions.text", now_ms, cutoff,
                                    max(0, cursor.rowcount),
                                    f"operator note text older than {notes} days"))
            marks = ", ".join("?" for _ in PURGES.column_names)
            cursor.executemany(self._sql(
                f"INSERT INTO purges ({', '.join(PURGES.column_names)}) VALUES ({marks})"),
                [tuple(row[name] for name in PURGES.column_names) for row in audit])
        return audit


_INDEXES: Final = (
    ("situations_scope_time", SITUATIONS.name, "scope_code, emitted_at_ms"),
    ("situations_time", SITUATIONS.name, "emitted_at_ms"),
    ("incident_events_case", INCIDENT_EVENTS.name, "ward_code, source_system, incident_id"),
    ("operator_actions_ward", OPERATOR_ACTIONS.name, "ward_code, occurred_at_ms"),
    ("rt_validations_period", "rt_validations", "period, kelurahan_code"),
    ("indicators_period", "indicators", "period, scope_code"),
)


def _change(emitted: int, sequence: int, level: str, reasons: str, kind: str,
            opening: bool = False) -> dict[str, Any]:
    return {"at_ms": emitted, "sequence": sequence, "level": level,
            "reasons": json.loads(reasons), "kind": kind, "opening": opening}


def _purge_row(purge_id: str, table: str, now_ms: int, cutoff_ms: int, rows: int,
               what: str) -> dict[str, Any]:
    return {"purge_id": purge_id, "table_name": table, "purged_at_ms": now_ms,
            "cutoff_ms": cutoff_ms, "rows_purged": rows, "what": what}


def retention_days(env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Days kept per table: the defaults in processors/history_rows.py, and `notes` for
    operator note text, overridden by `CITYOPS_HISTORY_RETENTION` ("situations=30,notes=60")."""
    env = os.environ if env is None else env
    days = {table.name: table.retention_days for table in TABLES}
    days["notes"] = NOTE_RETENTION_DAYS
    for item in filter(None, (part.strip() for part in env.get(RETENTION_VARIABLE, "")
                              .split(","))):
        name, _, value = item.partition("=")
        if name not in days or not value.strip().isdigit():
            raise HistoryError(f"{RETENTION_VARIABLE}: {item!r} is not TABLE=DAYS with TABLE "
                               f"one of {', '.join(sorted(days))}")
        days[name] = int(value)
    return days


_STAGE_STATUS: Final = {"DISPATCHED": "dispatched_at_ms", "ON_SCENE": "on_scene_at_ms"}
_END_STATUS: Final = ("RESOLVED", "CANCELLED")


def fold_cases(events: Iterable[Sequence[Any]], actions: Iterable[Sequence[Any]]
               ) -> list[dict[str, Any]]:
    """Cases from incident event rows and operator action rows, both in time order.

    A stage's time is the first time it was seen (a retried or replayed event changes
    nothing); dispatch also counts an operator's assignment, as the SLA clock does
    (processors/operations.py); the outcome is the partner's RESOLVED/CANCELLED, else CLOSED
    when a supervisor closed it, else OPEN."""
    cases: dict[tuple[str, str, str], dict[str, Any]] = {}
    for ward, kecamatan, source, incident, category, severity, status, rw, at in events:
        case = cases.setdefault((ward, source, incident), {
            "ward_code": ward, "kecamatan_code": kecamatan, "source_system": source,
            "incident_id": incident, "category": category, "severity": severity, "rw": rw,
            "reported_at_ms": None, "first_seen_ms": at, "dispatched_at_ms": None,
            "on_scene_at_ms": None, "resolved_at_ms": None, "status": status,
            "assigned_agency": None, "assigned_at_ms": None, "escalated_at_ms": None,
            "closed_by": None, "closed_at_ms": None, "outcome": "OPEN",
        })
        case["status"], case["severity"] = status, severity
        if status == "REPORTED" and case["reported_at_ms"] is None:
            case["reported_at_ms"] = at
        stage = _STAGE_STATUS.get(status)
        if stage and case[stage] is None:
            case[stage] = at
        if status == "ON_SCENE" and case["dispatched_at_ms"] is None:
            case["dispatched_at_ms"] = at
        if status in _END_STATUS and case["resolved_at_ms"] is None:
            case["resolved_at_ms"], case["outcome"] = at, status
    for ward, source, incident, action, agency, operator, at in actions:
        found = cases.get((ward, source, incident))
        if found is None:
            continue
        if action == "ASSIGN":
            found["assigned_agency"] = agency
            if found["assigned_at_ms"] is None:
                found["assigned_at_ms"] = at
        elif action == "ESCALATE" and found["escalated_at_ms"] is None:
            found["escalated_at_ms"] = at
        elif action == "CLOSE" and found["closed_at_ms"] is None:
            found["closed_by"], found["closed_at_ms"] = operator, at
    for case in cases.values():
        if case["reported_at_ms"] is None:
            case["reported_at_ms"] = case["first_seen_ms"]
        assigned = case["assigned_at_ms"]
        if assigned is not None and (case["dispatched_at_ms"] is None
                                     or assigned < case["dispatched_at_ms"]):
            case["dispatched_at_ms"] = assigned
        if case["outcome"] == "OPEN" and case["closed_at_ms"] is not None:
            case["outcome"] = "CLOSED"
    return sorted(cases.values(), key=lambda c: (c["reported_at_ms"], c["ward_code"],
                                                 c["source_system"], c["incident_id"]))
