"""What one drained benchmark left on the broker, per event and per ward: the inputs of the
capacity model (bench/capacity.py) that events/s and CPU per event do not give.

Measured right after the pipeline drain of `bench run`, before the latency phase adds records:

- bytes on disk per event of the input and of the enriched topics (the broker's own log-dir
  sizes: batch headers, keys and compression included, one replica);
- the ward table's changelog: records written (its end offsets; offsets are never reused, so
  compaction does not hide them), the bytes of the records still there, and from them bytes
  written per event and the flushes per ward and second the drain made;
- state bytes per ward: the size of each ward's latest changelog value (what a worker recovers
  and what the compacted changelog keeps per ward);
- situation records and bytes: records written per ward and minute during the drain, mean
  bytes per record.

Compacted topics may already have been cleaned, so "bytes written" for the changelog and the
situations is records written x the mean size of the records still there. The latest records
are the largest (a ward's state grows during a drain), so this errs high: on the safe side for
sizing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kafka import KafkaAdminClient

from bench.harness import Namespace, end_offsets, iter_records
from topics import catalog
from topics.event_types import SHARED_INPUT_TOPICS

ENRICHED = (catalog.INCIDENTS_ENRICHED, catalog.LIGHTING_ENRICHED, catalog.WASTE_ENRICHED)


def log_dir_bytes(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    """topic -> bytes of all its partitions in the brokers' log directories (every replica)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="cityops-bench")
    try:
        described = admin.describe_log_dirs(list(topics))
    finally:
        admin.close()
    sizes = dict.fromkeys(topics, 0)
    for broker in described:
        for log_dir in broker["log_dirs"]:
            for topic in log_dir["topics"]:
                if topic["name"] in sizes:
                    sizes[topic["name"]] += sum(p["partition_size"] for p in topic["partitions"])
    return sizes


def compacted_sizes(bootstrap: str, topic: str) -> dict[str, Any]:
    """Records written and kept, bytes kept, and the latest value's size per key."""
    written = sum(end_offsets(bootstrap, [topic]).values())
    kept = kept_bytes = 0
    latest: dict[bytes, int] = {}  # one entry per key: wards or scopes, bounded
    for record in iter_records(bootstrap, topic, timeout_s=600.0):
        size = len(record.key or b"") + len(record.value or b"")
        kept += 1
        kept_bytes += size
        if record.value is None:
            latest.pop(record.key or b"", None)
        else:
            latest[record.key or b""] = len(record.value)
    return {"records_written": written, "records_kept": kept, "bytes_kept": kept_bytes,
            "latest_value_bytes": sorted(latest.values())}


def measure(ns: Namespace, app_id: str, events: int, drain_s: float, wards: int
            ) -> dict[str, Any]:
    """The footprint figures of one drain of `events` events over `wards` wards that took
    `drain_s` seconds (see the module docstring)."""
    inputs = [ns.name(spec) for spec in SHARED_INPUT_TOPICS]
    enriched = [ns.name(spec) for spec in ENRICHED]
    disk = log_dir_bytes(ns.bootstrap, [*inputs, *enriched])
    changelog = compacted_sizes(ns.bootstrap, f"{app_id}-ward_state-changelog")
    situations = compacted_sizes(ns.bootstrap, ns.name(catalog.SITUATIONS))
    state = changelog["latest_value_bytes"]
    changelog_record = changelog["bytes_kept"] / max(1, changelog["records_kept"])
    situation_record = situations["bytes_kept"] / max(1, situations["records_kept"])
    minutes = drain_s / 60.0
    return {
        "events": events,
        "wards": wards,
        "drain_s": round(drain_s, 1),
        "input_bytes_per_event": round(sum(disk[t] for t in inputs) / events, 1),
        "enriched_bytes_per_event": round(sum(disk[t] for t in enriched) / events, 1),
        "changelog_records_written": changelog["records_written"],
        "changelog_bytes_per_event": round(
            changelog["records_written"] * changelog_record / events, 1),
        "changelog_flushes_per_ward_per_s": round(
            changelog["records_written"] / wards / drain_s, 3),
        "wards_in_state": len(state),
        "state_bytes_per_ward_mean": round(sum(state) / max(1, len(state))),
        "state_bytes_per_ward_max": max(state, default=0),
        "situation_records_written": situations["records_written"],
        "situation_bytes_per_record": round(situation_record, 1),
        "situations_per_ward_per_minute": round(
            situations["records_written"] / wards / minutes, 1),
        "situation_bytes_per_ward_per_minute": round(
            situations["records_written"] * situation_record / wards / minutes),
    }
