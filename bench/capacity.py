"""`python -m bench capacity`: how many partitions, workers, brokers and how much disk a
deployment of N villages at R events per village and second needs, from measured figures.

    .venv/bin/python -m bench capacity --events-per-village-per-s 0.1
    .venv/bin/python -m bench capacity --villages 1552 --events-per-village-per-s 0.5

Every per-event and per-ward figure comes from the latest `bench run` (its JSON in var/bench/,
or the "Capacity inputs" section that run wrote into BENCHMARKS.md, whichever is newer; or
`--figures FILE`): events/s and CPU per event of one worker, bytes on disk per input and
enriched event, state bytes per ward, changelog flushes per ward and second, situation bytes
per record and situations per ward and minute (bench/footprint.py measures the last four).
Nothing measured is typed in here. What is typed in is said as such: the village counts (with
their source), and the deployment's choices in `Assumptions` (headroom, replication, partition
reserve), each with its reason. Retention, partition defaults, replication and the snapshot
interval are read from the catalog, the broker configuration and the worker settings.

docs/capacity.md has the table for Cilegon, Banten and Indonesia and explains the arithmetic;
tests/unit/test_capacity.py checks it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.harness import ROOT

DAY_S = 86_400
CAPACITY_START = "<!-- bench:capacity-inputs:start -->"
CAPACITY_END = "<!-- bench:capacity-inputs:end -->"


@dataclass(frozen=True)
class Scale:
    name: str
    villages: int
    source: str


def reference_scales() -> tuple[Scale, ...]:
    """Cilegon (counted from the project's ward data), Banten and Indonesia (desa + kelurahan
    of Kepmendagri No 300.2.2-2138 Tahun 2025, as tabulated in the README of
    github.com/cahyadsn/wilayah at commit 000a1025: Banten 314 kelurahan + 1,238 desa;
    Indonesia 8,496 kelurahan + 75,266 desa)."""
    from core.reference_data import load_ward_records

    kepmendagri = ("Kepmendagri No 300.2.2-2138/2025 via github.com/cahyadsn/wilayah "
                   "README @000a1025")
    return (
        Scale("Kota Cilegon", len(load_ward_records()), "core/data (Kemendagri codes)"),
        Scale("Provinsi Banten", 314 + 1_238, f"314 kelurahan + 1,238 desa, {kepmendagri}"),
        Scale("Indonesia", 8_496 + 75_266, f"8,496 kelurahan + 75,266 desa, {kepmendagri}"),
    )


@dataclass(frozen=True)
class Measured:
    """The figures of one benchmark run the model needs (bench/run.py, bench/footprint.py)."""

    date: str
    command: str
    mode: str
    worker_events_per_s: float
    worker_cpu_us_per_event: float
    #: The passthrough ceiling through one broker on the same machine (None: not measured).
    broker_events_per_s: float | None
    input_bytes_per_event: float
    enriched_bytes_per_event: float
    changelog_flushes_per_ward_per_s: float
    state_bytes_per_ward: float
    situation_bytes_per_record: float
    situations_per_ward_per_minute: float

    @classmethod
    def from_results(cls, results: Mapping[str, Any]) -> Measured:
        """From a `bench run` JSON; ValueError naming what is missing."""
        pipeline, footprint = results.get("pipeline"), results.get("footprint")
        if not pipeline or not footprint:
            raise ValueError("the run has no pipeline drain or no footprint figures (run "
                             "`python -m bench run` without --skip footprint)")
        ceiling = results.get("ceiling") or {}
        return cls(
            date=str(results["date"]), command=str(results.get("command", "")),
            mode=str(results.get("mode", "")),
            worker_events_per_s=float(pipeline["events_per_s"]),
            worker_cpu_us_per_event=float(pipeline["worker_cpu_us_per_event"]),
            broker_events_per_s=(float(ceiling["events_per_s"]) if ceiling.get("events_per_s")
                                 else None),
            input_bytes_per_event=float(footprint["input_bytes_per_event"]),
            enriched_bytes_per_event=float(footprint["enriched_bytes_per_event"]),
            changelog_flushes_per_ward_per_s=float(
                footprint["changelog_flushes_per_ward_per_s"]),
            # the largest ward: every village sized like the busiest one measured
            state_bytes_per_ward=float(footprint["state_bytes_per_ward_max"]),
            situation_bytes_per_record=float(footprint["situation_bytes_per_record"]),
            situations_per_ward_per_minute=float(footprint["situations_per_ward_per_minute"]),
        )


@dataclass(frozen=True)
class Assumptions:
    """Deployment choices, not measurements: each says why."""

    #: Run workers and brokers at no more than this share of what one was measured to do, so
    #: that after an outage the backlog drains at least as fast as new events arrive.
    headroom: float = 0.5
    #: Ward partitions per worker: partitions of a ward-keyed topic cannot be added without
    #: moving wards between partitions (and their state), so keep room to double the workers.
    partitions_per_worker: int = 2
    #: Replication factor of the cluster profile (topics/catalog.py).
    replication_factor: int = 3
    #: A KRaft quorum of three: any one node may be lost (docs/operations.md).
    min_brokers: int = 3


@dataclass(frozen=True)
class Settings:
    """What the code itself configures, read from it (see `settings_from_code`)."""

    ward_partitions_default: int
    input_retention_days: float
    enriched_retention_days: float
    snapshot_interval_s: float
    segment_bytes: int
    situation_partitions: int = 3


def settings_from_code() -> Settings:
    from cityops.broker import BrokerConfig, server_properties
    from streams.settings import WorkerSettings
    from topics import catalog

    def days(spec: catalog.TopicSpec) -> float:
        return int(spec.config["retention.ms"]) / 1000 / DAY_S

    properties = server_properties(BrokerConfig(nodes=3), Path("/nonexistent"))
    segment = re.search(r"^log\.segment\.bytes=(\d+)$", properties, re.MULTILINE)
    return Settings(
        ward_partitions_default=catalog.WARD_PARTITIONS,
        input_retention_days=days(catalog.LIGHTING),
        enriched_retention_days=days(catalog.LIGHTING_ENRICHED),
        snapshot_interval_s=WorkerSettings().snapshot_interval_s,
        segment_bytes=int(segment.group(1)) if segment else 1 << 30,
        situation_partitions=catalog.SITUATIONS.partitions,
    )


@dataclass(frozen=True)
class Plan:
    name: str
    villages: int
    events_per_village_per_s: float
    events_per_s: float
    worker_cores: float
    workers: int
    partitions: int
    write_bytes_per_s: float
    brokers: int
    brokers_for_throughput: int | None
    disk_bytes: float
    disk_bytes_per_broker: float
    state_bytes_per_worker: float
    situations_per_ward_per_minute: float


def plan(name: str, villages: int, rate: float, m: Measured, s: Settings,
         a: Assumptions = Assumptions()) -> Plan:
    """The deployment for `villages` villages at `rate` events per village and second."""
    if villages < 1 or rate <= 0:
        raise ValueError("villages must be at least 1 and the event rate above 0")
    events_per_s = villages * rate
    workers = max(1, math.ceil(events_per_s / (m.worker_events_per_s * a.headroom)))
    partitions = min(max(s.ward_partitions_default, workers * a.partitions_per_worker),
                     max(villages, s.ward_partitions_default))
    # a ward's state is written to the changelog once per flush in which it changed: at most
    # as often as the measured drain flushed it, at least once per event when events are rare
    flushes_per_ward = min(rate, m.changelog_flushes_per_ward_per_s)
    # one CHANGE per batch at most (the drain's rate caps it), plus the periodic SNAPSHOT
    situations_per_minute = (min(rate * 60, m.situations_per_ward_per_minute)
                             + 60 / s.snapshot_interval_s)
    changelog_bps = villages * flushes_per_ward * m.state_bytes_per_ward
    situation_bps = villages * situations_per_minute / 60 * m.situation_bytes_per_record
    stream_bps = events_per_s * (m.input_bytes_per_event + m.enriched_bytes_per_event)
    write_bps = stream_bps + changelog_bps + situation_bps
    throughput_brokers: int | None = None
    if m.broker_events_per_s:
        broker_bps = m.broker_events_per_s * m.input_bytes_per_event
        throughput_brokers = math.ceil(write_bps * a.replication_factor
                                       / (broker_bps * a.headroom))
    brokers = max(a.min_brokers, throughput_brokers or 0)
    # delete-policy topics keep their retention; compacted ones their live keys twice over
    # (the cleaner starts at 50 % dirty) plus the open segment of each partition, which the
    # cleaner never touches, at most a day of writes (segment.ms) or segment.bytes
    streams_disk = events_per_s * DAY_S * (
        s.input_retention_days * m.input_bytes_per_event
        + s.enriched_retention_days * m.enriched_bytes_per_event)
    changelog_disk = (2 * villages * m.state_bytes_per_ward
                      + min(changelog_bps * DAY_S, partitions * s.segment_bytes))
    situation_disk = (2 * villages * m.situation_bytes_per_record
                      + min(situation_bps * DAY_S, s.situation_partitions * s.segment_bytes))
    disk = a.replication_factor * (streams_disk + changelog_disk + situation_disk)
    return Plan(
        name=name, villages=villages, events_per_village_per_s=rate,
        events_per_s=events_per_s,
        worker_cores=events_per_s * m.worker_cpu_us_per_event / 1e6,
        workers=workers, partitions=partitions, write_bytes_per_s=write_bps,
        brokers=brokers, brokers_for_throughput=throughput_brokers,
        disk_bytes=disk, disk_bytes_per_broker=disk / brokers,
        state_bytes_per_worker=villages * m.state_bytes_per_ward / workers,
        situations_per_ward_per_minute=situations_per_minute,
    )


# ------------------------------------------------------------------------------------------
# Where the measured figures come from


def capacity_inputs(results: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of a run the model reads, as written into BENCHMARKS.md."""
    return asdict(Measured.from_results(results))


def render_inputs_section(results: Mapping[str, Any]) -> str:
    """The "Capacity inputs" block of BENCHMARKS.md: the figures as JSON, and where from."""
    inputs = capacity_inputs(results)
    return (f"Inputs of `python -m bench capacity` (docs/capacity.md), from the run of "
            f"{inputs['date']} ({inputs['mode']} mode): `{inputs['command']}`\n\n"
            f"```json\n{json.dumps(inputs, indent=2)}\n```\n")


def update_inputs_section(path: Path, results: Mapping[str, Any]) -> None:
    from bench.report import replace_section

    replace_section(path, render_inputs_section(results), CAPACITY_START, CAPACITY_END,
                    "Capacity inputs")


def inputs_from_markdown(text: str) -> Measured | None:
    if CAPACITY_START not in text or CAPACITY_END not in text:
        return None
    block = text.split(CAPACITY_START, 1)[1].split(CAPACITY_END, 1)[0]
    found = re.search(r"```json\n(.*?)\n```", block, re.DOTALL)
    return Measured(**json.loads(found.group(1))) if found else None


def latest_measured(bench_dir: Path, benchmarks_md: Path) -> tuple[Measured, str]:
    """The newest of: the bench JSONs in `bench_dir` (smoke runs left out: their few thousand
    events say little per event) and BENCHMARKS.md's capacity inputs. Returns it and where
    it was read."""
    found: list[tuple[Measured, str]] = []
    for path in sorted(bench_dir.glob("*.json")):
        try:
            results = json.loads(path.read_text())
            if results.get("mode") != "smoke":
                found.append((Measured.from_results(results), str(path)))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # another kind of JSON, or a run without the figures
    if benchmarks_md.exists():
        measured = inputs_from_markdown(benchmarks_md.read_text())
        if measured is not None:
            found.append((measured, f"{benchmarks_md.name}, Capacity inputs"))
    if not found:
        raise FileNotFoundError(
            f"no measured figures in {bench_dir} or {benchmarks_md}: run `python -m bench "
            f"run` (e.g. --events 200000 --skip latency,scale,codec --capacity-md) first")
    return max(found, key=lambda pair: pair[0].date)


# ------------------------------------------------------------------------------------------
# Output


def _bytes(value: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value:,.0f} B"


def table(plans: Sequence[Plan]) -> str:
    lines = [
        "| deployment | villages | events/s | worker CPU (cores) | workers | ward partitions "
        "| brokers | written to Kafka (before replication) | disk, all replicas (per broker) "
        "| ward state per worker |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in plans:
        lines.append(
            f"| {p.name} | {p.villages:,} | {p.events_per_s:,.1f} | {p.worker_cores:,.2f} | "
            f"{p.workers:,} | {p.partitions:,} | {p.brokers:,} | {_bytes(p.write_bytes_per_s)}/s"
            f" | {_bytes(p.disk_bytes)} ({_bytes(p.disk_bytes_per_broker)}) | "
            f"{_bytes(p.state_bytes_per_worker)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench capacity",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--villages", type=int,
                        help="villages (desa/kelurahan) of one more deployment to plan")
    parser.add_argument("--events-per-village-per-s", type=float, required=True,
                        help="partner events per village and second")
    parser.add_argument("--figures", type=Path,
                        help="a `bench run` JSON (default: the latest measured figures)")
    parser.add_argument("--headroom", type=float, default=Assumptions.headroom,
                        help="share of one worker's and broker's measured capacity to plan for")
    parser.add_argument("--json", action="store_true", help="print the plans as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.headroom <= 1:
        parser.error("--headroom must be in (0, 1]")
    try:
        if args.figures:
            measured = Measured.from_results(json.loads(args.figures.read_text()))
            source = str(args.figures)
        else:
            measured, source = latest_measured(ROOT / "var" / "bench", ROOT / "BENCHMARKS.md")
    except (OSError, ValueError) as error:
        print(f"bench capacity: {error}", file=sys.stderr)
        return 2
    settings = settings_from_code()
    assumptions = Assumptions(headroom=args.headroom)
    rate = args.events_per_village_per_s
    try:
        plans = [plan(scale.name, scale.villages, rate, measured, settings, assumptions)
                 for scale in reference_scales()]
        if args.villages is not None:
            plans.insert(0, plan(f"{args.villages:,} villages", args.villages, rate, measured,
                                 settings, assumptions))
    except ValueError as error:
        print(f"bench capacity: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"measured": asdict(measured), "source": source,
                          "settings": asdict(settings), "assumptions": asdict(assumptions),
                          "plans": [asdict(p) for p in plans]}, indent=2))
        return 0
    print(f"Measured figures: {source} (run of {measured.date}, {measured.mode} mode)")
    print(f"  one worker {measured.worker_events_per_s:,.0f} events/s, "
          f"{measured.worker_cpu_us_per_event:,.1f} µs CPU per event; broker passthrough "
          f"{measured.broker_events_per_s or 0:,.0f} events/s; per event "
          f"{measured.input_bytes_per_event:,.1f} B input + "
          f"{measured.enriched_bytes_per_event:,.1f} B enriched; ward state "
          f"{_bytes(measured.state_bytes_per_ward)} (largest ward), flushed at most "
          f"{measured.changelog_flushes_per_ward_per_s:,.2f}/s; situations "
          f"{measured.situation_bytes_per_record:,.0f} B each, at most "
          f"{measured.situations_per_ward_per_minute:,.0f} per ward and minute")
    print(f"Assumed: headroom {assumptions.headroom:.0%}, {assumptions.partitions_per_worker} "
          f"partitions per worker, replication {assumptions.replication_factor}, at least "
          f"{assumptions.min_brokers} brokers; {rate:g} events per village and second")
    print()
    print(table(plans))
    print()
    for scale in reference_scales():
        print(f"{scale.name}: {scale.villages:,} villages ({scale.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
