"""A SYNTHETIC history for the store's tests and bench: what the sink's topics would hold after
some hours of the simulated city (issue 21).

The records come from the worker's own code: the SYNTHETIC city feed (`cityops.simulator`)
goes through `streams.test_driver.TopologyTestDriver`, with operator actions (assign, note,
close) on some incidents and one SYNTHETIC month of RT reports, so situations, enriched
incidents, actions, RT verdicts and indicators are what a worker would publish for the same
input. `publish` sends them to the (prefixed) topics; `read_topics` is the oracle the tests
compare the store with: it reads those topics back with a plain consumer.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from cityops.assets import generate_asset_registry
from cityops.neighbourhoods import generate_registry
from cityops.rt_simulator import simulate_month
from cityops.simulator import CitySimulator
from core.reference_data import load_ward_records
from core.vocabulary import ASSET_REGISTRY_SEED
from processors.situation import encode_situation
from schemas.codec import decode, encode
from streams.history_sink import SINK_TOPICS, HistorySink
from streams.history_store import HistoryStore
from streams.test_driver import TopologyTestDriver
from topics import catalog
from topics.catalog import TopicCatalog, TopicSpec

AGENCY_OF = {"FIRE": "DAMKAR", "FLOOD": "BPBD", "TRAFFIC_ACCIDENT": "DISHUB",
             "MEDICAL": "DINKES", "CRIME": "POLRES", "PUBLIC_ORDER": "POLRES"}
#: Kelurahan whose RTs send the SYNTHETIC month of reports (two in Cibeber).
RT_KELURAHAN = ("36.72.01.1001", "36.72.01.1002")


@dataclass
class HistoryFeed:
    """Records in publish order: (topic spec, key, value bytes)."""

    records: list[tuple[TopicSpec, bytes, bytes]] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None

    def count(self, spec: TopicSpec) -> int:
        return sum(1 for s, _, _ in self.records if s is spec)


def _action(at: datetime, action: str, ward: str, source: str | None, incident: str | None,
            agency: str | None, text: str | None, operator: str, role: str) -> bytes:
    return encode("org.cityops.OperatorAction", {
        "action_id": str(uuid.uuid4()), "occurred_at": at, "operator_id": operator,
        "operator_role": role, "action": action, "ward_code": ward,
        "incident_source": source, "incident_id": incident, "agency": agency, "text": text,
    })


def build(start: datetime, hours: float, seed: int = 21, rate_per_s: float = 1.0,
          incidents_per_hour: float = 40.0, rt_month: str | None = None) -> HistoryFeed:
    """`hours` of the SYNTHETIC city from `start`, through the worker's code; with `rt_month`
    (YYYY-MM) also that month of RT reports for RT_KELURAHAN."""
    wards = load_ward_records()
    assets = generate_asset_registry(wards, ASSET_REGISTRY_SEED)
    city = generate_registry(wards)
    registry = [rt for rt in city if rt["kelurahan_code"] in RT_KELURAHAN]
    driver = TopologyTestDriver(wards, assets, batch=50, neighbourhoods=registry)
    simulator = CitySimulator(wards, assets, seed, start, rate_per_s,
                              incidents_per_hour=incidents_per_hour)
    rng = random.Random(seed)
    end = start + timedelta(hours=hours)
    pending: list[tuple[datetime, int, bytes]] = []
    feed = HistoryFeed(start=start, end=end)
    seen_situations = seen_enriched = seen_validations = seen_indicators = 0
    next_tick = start + timedelta(minutes=1)
    counter = 0

    def drain() -> None:
        nonlocal seen_situations, seen_enriched, seen_validations, seen_indicators
        out = driver.outputs
        for record in out.enriched[seen_enriched:]:
            if "incident_id" in record["event"]:
                feed.records.append((catalog.INCIDENTS_ENRICHED, record["ward_code"].encode(),
                                     encode("org.cityops.EnrichedIncidentEvent", record)))
                _plan_actions(record)
        for record in out.situations[seen_situations:]:
            feed.records.append((catalog.SITUATIONS, record["scope_code"].encode(),
                                 encode_situation(record)))
            _plan_acknowledgement(record)
        for record in out.validations[seen_validations:]:
            feed.records.append((catalog.RT_VALIDATIONS, record["rt_code"].encode(),
                                 encode("org.cityops.RtValidation", record)))
        for record in out.indicators[seen_indicators:]:
            feed.records.append((catalog.NEIGHBOURHOOD_INDICATORS,
                                 f"{record['scope_code']}|{record['period']}".encode(),
                                 encode("org.cityops.NeighbourhoodIndicator", record)))
        seen_enriched, seen_situations = len(out.enriched), len(out.situations)
        seen_validations, seen_indicators = len(out.validations), len(out.indicators)

    def _plan_actions(record: dict[str, Any]) -> None:
        nonlocal counter
        event = record["event"]
        if event["status"] != "REPORTED" or rng.random() > 0.6:
            return
        at, ward = event["occurred_at"], record["ward_code"]
        agency = AGENCY_OF.get(event["category"], "POLRES")
        key = (ward, event["source_system"], event["incident_id"])
        plan: list[tuple[datetime, str, str | None, str | None, str, str]] = [
            (at + timedelta(seconds=rng.randint(30, 900)), "ASSIGN", agency, None, "rina",
             "OPERATOR")]
        if rng.random() < 0.3:
            plan.append((at + timedelta(seconds=rng.randint(60, 1200)), "NOTE", None,
                         "SYNTHETIC note: warga melapor lewat telepon", "rina", "OPERATOR"))
        if rng.random() < 0.25:
            plan.append((at + timedelta(seconds=rng.randint(1200, 3600)), "CLOSE", None, None,
                         "sari", "SUPERVISOR"))
        for when, kind, chosen, text, operator, role in plan:
            counter += 1
            heapq.heappush(pending, (when, counter, _action(
                when, kind, key[0], key[1], key[2], chosen, text, operator, role)))

    raised: set[str] = set()

    def _plan_acknowledgement(situation: dict[str, Any]) -> None:
        """An operator acknowledges most raised episodes, some minutes after they start."""
        nonlocal counter
        code = situation["scope_code"]
        if situation["level"] not in ("ALERT", "CRITICAL"):
            raised.discard(code)
            return
        if code in raised:
            return
        raised.add(code)
        if rng.random() < 0.8:
            when = situation["emitted_at"] + timedelta(seconds=rng.randint(20, 1500))
            counter += 1
            heapq.heappush(pending, (when, counter, _action(
                when, "ACKNOWLEDGE", code, None, None, None, None, "rina", "OPERATOR")))

    def act(until: datetime) -> None:
        while pending and pending[0][0] <= until:
            when, _, value = heapq.heappop(pending)
            driver.pipe_action(value, now=when)
            feed.records.append((catalog.OPERATOR_ACTIONS,
                                 decode(value).record["ward_code"].encode(), value))

    for event in simulator.events():
        if event.at >= end:
            break
        act(event.at)
        while event.at >= next_tick:
            driver.tick(next_tick)
            drain()
            next_tick += timedelta(minutes=1)
        kind = {"org.cityops.IncidentEvent": "incident", "org.cityops.LightingEvent":
                "lighting", "org.cityops.WasteEvent": "waste"}[event.schema]
        source = event.record.get("source_system") if kind == "incident" else None
        try:
            driver.pipe(kind, encode(event.schema, event.record), now=event.at,
                        source=source if source in ("POLICE", "CALL_CENTER_112",
                                                    "CITIZEN_APP") else None)
        except ValueError:
            continue
        drain()
    act(end)
    driver.tick(end)
    drain()
    if rt_month is not None:
        # the whole registry sizes each RT (residents per RT = city / all RTs); two kelurahan
        # alone made every RT hold a city's share and REJECTED it as out_of_range
        month = simulate_month(city, rt_month, seed=seed, kelurahan=RT_KELURAHAN)
        for report in month.reports:
            driver.pipe_rt_report(encode("org.cityops.RtReport", report.record), now=end,
                                  key=report.record["rt_code"].encode())
        driver.neighbourhood_rollups(end)
        drain()
    return feed


def publish(bootstrap: str, feed: HistoryFeed, records: Sequence[tuple[TopicSpec, bytes, bytes]]
            | None = None, names: TopicCatalog | None = None) -> int:
    """Send the feed's records (or a slice of them) to the deployment's topics, acks=all."""
    names = names or TopicCatalog.from_env()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                             enable_idempotence=True)
    chosen = feed.records if records is None else records
    for spec, key, value in chosen:
        producer.send(names.name(spec), key=key, value=value)
    producer.flush(60)
    producer.close()
    return len(chosen)


def read_topics(bootstrap: str, specs: Iterable[TopicSpec] = SINK_TOPICS,
                names: TopicCatalog | None = None
                ) -> dict[str, list[tuple[str, int, int, bytes | None]]]:
    """The oracle: every record of the sink's topics read back, per topic, as (topic,
    partition, offset, value), in offset order per partition."""
    names = names or TopicCatalog.from_env()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed", consumer_timeout_ms=3000)
    found: dict[str, list[tuple[str, int, int, bytes | None]]] = {}
    for spec in specs:
        topic = names.name(spec)
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        rows: list[tuple[str, int, int, bytes | None]] = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=1000).values():
                rows.extend((r.topic, r.partition, r.offset, r.value) for r in batch)
        found[spec.name] = sorted(rows, key=lambda row: (row[1], row[2]))
    consumer.close()
    return found


def board_at(records: Iterable[tuple[str, int, int, bytes | None]], at_ms: int
             ) -> dict[str, dict[str, Any]]:
    """The oracle of the board at a past moment: the situations topic read in order, keeping
    per scope the latest record emitted up to `at_ms` whose sequence is not lower than the one
    held (README, the situation contract; as cityops/watch.py)."""
    from processors.state import to_ms

    held: dict[str, dict[str, Any]] = {}
    for _, _, _, value in records:
        if value is None:
            continue
        record = decode(value, expected="org.cityops.SituationEvent").record
        if to_ms(record["emitted_at"]) > at_ms:
            continue
        previous = held.get(record["scope_code"])
        if previous is None or record["sequence"] >= previous["sequence"]:
            held[record["scope_code"]] = record
    return held


def sink_into(bootstrap: str, url: str, names: TopicCatalog | None = None,
              purge_interval_s: float | None = None) -> HistoryStore:
    """One sink of a new group, run until it has stored everything the topics hold."""
    store = HistoryStore(url)
    store.create_tables()
    sink = HistorySink(bootstrap, store, f"history-{uuid.uuid4().hex[:8]}", catalog=names,
                       purge_interval_s=purge_interval_s)
    sink.run(idle_exit_s=2.0)
    sink.close()
    return store
