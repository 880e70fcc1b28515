"""Is the drained state right? An independent fold of the sent events, compared with what the
worker left in its changelog and on the situations topic.

The reference enriches every sent event in-process (processors.enrich, against the same wards
and asset registry the worker reads) and folds them into per-ward state in event-time order
with processors.state.apply. The parts of the state that must not depend on arrival order
(processors/state.py: every field is a max/min over event time or guarded by the dedupe set)
have to be identical: the event ids seen (each event applied exactly once), every incident's
lifecycle, every lamp's latest status, every container's readings, and the newest event time
folded (`frontier`: the watermark itself may still be held by the hops' last marks, docs/rules.md
"Event-time order across partitions"). Window counts no longer depend on how the partitions and
the three enriched topics interleave (issue 26: tests/unit/test_event_order_property.py proves
it on the driver), but which windows are pruned depends on how far the watermark got, so they
are not compared here. The smoke run spans minutes of event time, so no horizon prunes anything
and the comparison is exact.

The last situation of every ward must show the reference's open incidents and lamps out.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from cityops.simulator import SimEvent
from processors.enrich import (
    EnrichmentRules,
    ReferenceData,
    enrich_incident,
    enrich_lighting,
    enrich_waste,
)
from processors.state import WardState, apply
from processors.thresholds import DEFAULT_THRESHOLDS_PATH, Thresholds
from schemas.codec import decode

ENRICHERS = {
    "org.cityops.IncidentEvent": ("incident", enrich_incident),
    "org.cityops.LightingEvent": ("lighting", enrich_lighting),
    "org.cityops.WasteEvent": ("waste", enrich_waste),
}


def reference_states(events: Sequence[SimEvent], wards: Sequence[dict[str, Any]],
                     assets: Sequence[dict[str, Any]]) -> dict[str, WardState]:
    ref = ReferenceData.build(wards, assets)
    rules = EnrichmentRules()
    thresholds = Thresholds.load(DEFAULT_THRESHOLDS_PATH)
    now = datetime.now(UTC)
    states: dict[str, WardState] = defaultdict(WardState)
    for event in sorted(events, key=lambda e: e.at):
        kind, enricher = ENRICHERS[event.schema]
        enriched = enricher(event.record, ref, rules, now)
        apply(states[enriched["ward_code"]], kind, enriched, thresholds)
    return dict(states)


def _latest(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             client_id="cityops-bench-verify")
    try:
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        latest: dict[bytes, bytes] = {}
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    if record.key is not None and record.value is not None:
                        latest[record.key] = record.value
        return latest
    finally:
        consumer.close()


def _incident_view(state: WardState) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {key: tuple(rec.to_list()[:11]) for key, rec in state.incidents.items()}


def _container_view(state: WardState) -> dict[str, list[Any]]:
    return {key: rec.to_list() for key, rec in state.containers.items()}


def check(bootstrap: str, changelog: str, situations: str, events: Sequence[SimEvent],
          wards: Sequence[dict[str, Any]], assets: Sequence[dict[str, Any]]) -> list[str]:
    """Differences between the worker's output and the reference; empty when correct."""
    expected = reference_states(events, wards, assets)
    stored: dict[str, WardState] = {}
    for key, value in _latest(bootstrap, changelog).items():
        code = json.loads(key)
        stored[code] = WardState.from_dict(json.loads(value)["state"])
    problems: list[str] = []
    if set(stored) != set(expected):
        problems.append(f"wards with state: worker {len(stored)}, reference {len(expected)}; "
                        f"only worker: {sorted(set(stored) - set(expected))[:5]}, "
                        f"only reference: {sorted(set(expected) - set(stored))[:5]}")
    for code in sorted(set(stored) & set(expected)):
        got, want = stored[code], expected[code]
        if set(got.seen) != set(want.seen):
            problems.append(f"{code}: event ids differ (worker {len(got.seen)}, "
                            f"reference {len(want.seen)})")
        if _incident_view(got) != _incident_view(want):
            problems.append(f"{code}: incidents differ")
        if got.lamps != want.lamps:
            problems.append(f"{code}: lamp statuses differ")
        if _container_view(got) != _container_view(want):
            problems.append(f"{code}: container readings differ")
        if got.frontier != want.watermark:
            problems.append(f"{code}: newest event time {got.frontier} != {want.watermark}")
    last: dict[str, dict[str, Any]] = {}
    for _key, value in _latest(bootstrap, situations).items():
        record = decode(value, expected="org.cityops.SituationEvent").record
        if record["scope"] == "KELURAHAN":
            last[record["scope_code"]] = record
    for code, want in sorted(expected.items()):
        situation = last.get(code)
        if situation is None:
            problems.append(f"{code}: no situation")
            continue
        open_total = sum(want.open_by_key.values())
        if (situation["open_incidents"], situation["lamps_out"]) != (open_total, want.lamps_out):
            problems.append(
                f"{code}: situation shows {situation['open_incidents']} open incidents and "
                f"{situation['lamps_out']} lamps out, reference {open_total} and "
                f"{want.lamps_out}")
    return problems
