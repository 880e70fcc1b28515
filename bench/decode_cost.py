"""`python -m bench codec`: per-record decode cost in-process, before and after the compiled
canonical-bytes check (issue 17, part 6), on the benchmark's SYNTHETIC event mix. No broker.

What is timed, per record, on the same payloads:

- partner input (`IncidentEvent`, `LightingEvent`, `WasteEvent` as the simulator sends them):
  fastavro's reader alone (the floor a codec with checks can approach), the full decode
  proving canonical bytes by re-encoding (before) and by the compiled check (after), and each
  proof alone;
- the enriched records the worker writes and reads back (the same events through the real
  enrichers): the trusted decode the ward agent uses, and the same decode with every partner
  check, for comparison.

"Before" is the re-encode path the codec keeps for schemas the compiled check does not cover
(`SingleObjectCodec(canonical_check="reencode")`), which is the previous decode line for line.
With `--before-rev REV` the previous `schemas/codec.py` is also loaded from git and its trusted
decode is timed (it still ran the UUID text check).

The clock is the process's CPU time (`time.process_time`), not the wall clock: on this shared
machine the wall clock also counts the time other processes hold the core. Each variant runs in
turn within a round, for several rounds, so what drift remains (caches, a sibling hyperthread)
hits all of them alike; the figure is the best round (the least disturbed), the median is
printed as well.
"""

from __future__ import annotations

import importlib.util
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from bench.feed import Feed, utc_now_ms
from bench.harness import ROOT, machine
from processors.enrich import EnrichmentRules, ReferenceData
from schemas.codec import HEADER_SIZE, SingleObjectCodec, default_catalog, encode
from topics.event_types import by_schema

SECTION = "## Codec: per-record decode cost, re-encode vs compiled canonical check"


def _load_codec_at(rev: str) -> ModuleType:
    """`schemas/codec.py` as it was at git revision `rev`, as a separate module."""
    source = subprocess.run(["git", "show", f"{rev}:schemas/codec.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="cityops-codec-")) / "codec_before.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("codec_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["codec_before"] = module
    spec.loader.exec_module(module)
    return module


def _payloads(count: int) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(partner payloads, enriched payloads) of the first `count` events of the bench feed."""
    feed = Feed()
    end = utc_now_ms() - timedelta(seconds=5)
    events = list(itertools.islice(feed.events(count, end), count))
    reference = ReferenceData.build(feed.wards, feed.assets)
    rules = EnrichmentRules()
    now = datetime.now(UTC)
    partner: list[tuple[str, bytes]] = []
    enriched: list[tuple[str, bytes]] = []
    for event in events:
        partner.append((event.schema, encode(event.schema, event.record)))
        kind = by_schema(event.schema)
        record = kind.enricher(event.record, reference, rules, now)
        enriched.append((kind.enriched_schema, encode(kind.enriched_schema, record)))
    return partner, enriched


def measure(count: int = 20_000, rounds: int = 7, before_rev: str | None = None,
            ) -> dict[str, Any]:
    """Per-record µs of each variant (best and median round) on `count` events."""
    partner, enriched = _payloads(count)
    catalog = default_catalog()
    after = SingleObjectCodec(catalog)
    before = SingleObjectCodec(catalog, canonical_check="reencode")
    schemas = {entry.fingerprint: entry.reading_schema for entry in catalog.all_versions()}
    checks = {fp: after.canonical_check(fp) for fp in schemas}
    decoded = [(schemas[p[2:HEADER_SIZE]], before.decode(p, s).record) for s, p in partner]

    def reader(payloads: list[tuple[str, bytes]]) -> Callable[[], None]:
        def run() -> None:
            for _, payload in payloads:
                stream = BytesIO(payload)
                stream.seek(HEADER_SIZE)
                schemaless_reader(stream, schemas[payload[2:HEADER_SIZE]], None)
        return run

    def reencode_alone() -> None:
        for schema, record in decoded:
            schemaless_writer(BytesIO(), schema, record)

    def compiled_alone() -> None:
        for _, payload in partner:
            check = checks[payload[2:HEADER_SIZE]]
            assert check is not None
            check(payload, HEADER_SIZE)

    def decoder(codec: Any, payloads: list[tuple[str, bytes]], trusted: bool
                ) -> Callable[[], None]:
        def run() -> None:
            for schema, payload in payloads:
                codec.decode(payload, schema, trusted=trusted)
        return run

    variants: dict[str, Callable[[], None]] = {
        "partner: fastavro reader alone": reader(partner),
        "partner: decode, re-encode proof (before)": decoder(before, partner, False),
        "partner: decode, compiled check (after)": decoder(after, partner, False),
        "partner: the re-encode alone": reencode_alone,
        "partner: the compiled check alone": compiled_alone,
        "enriched: fastavro reader alone": reader(enriched),
        "enriched: decode with every partner check": decoder(after, enriched, False),
        "enriched: trusted decode (after)": decoder(after, enriched, True),
    }
    if before_rev is not None:
        old = _load_codec_at(before_rev).SingleObjectCodec(catalog)
        variants[f"enriched: trusted decode at {before_rev} (before)"] = decoder(
            old, enriched, True)
        variants[f"partner: decode at {before_rev} (before)"] = decoder(old, partner, False)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            started = time.process_time()
            run()
            times[name].append((time.process_time() - started) / count * 1e6)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "records": count,
        "rounds": rounds,
        "mean_partner_bytes": round(sum(len(p) for _, p in partner) / count, 1),
        "mean_enriched_bytes": round(sum(len(p) for _, p in enriched) / count, 1),
        "us_per_record": {name: {"best": round(min(values), 2),
                                 "median": round(statistics.median(values), 2)}
                          for name, values in times.items()},
        "machine": machine(),
    }


def render(results: dict[str, Any], command: str) -> str:
    m = results["machine"]
    lines = [
        f"### {results['date']}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {m['cores']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM, Linux "
        f"{m['kernel']}, Python {m['python']}; load average at the end {m['loadavg']}.  ",
        f"{results['records']:,} SYNTHETIC events of the bench feed (partner payloads "
        f"{results['mean_partner_bytes']} bytes on average, enriched "
        f"{results['mean_enriched_bytes']}), {results['rounds']} interleaved rounds, one core, "
        "no broker.",
        "",
        "| variant | CPU µs per record, best round | median round |",
        "|---|---|---|",
    ]
    for name, figures in results["us_per_record"].items():
        lines.append(f"| {name} | {figures['best']:.2f} | {figures['median']:.2f} |")
    return "\n".join(lines) + "\n"


def append_to_benchmarks_md(path: Path, text: str) -> None:
    """Add one run at the end of the codec section, which is created before "Latest run" (the
    section `bench run` rewrites) the first time."""
    content = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if SECTION not in content:
        intro = (f"{SECTION}\n\nWritten by `python -m bench codec` (bench/decode_cost.py), "
                 "newest last. What the compiled check proves: schemas/canonical.py.\n\n")
        at = content.find("\n## Latest run")
        content = (content.rstrip("\n") + "\n\n" + intro if at < 0
                   else content[:at + 1] + intro + content[at + 1:])
    start = content.index(SECTION)
    following = content.find("\n## ", start + len(SECTION))
    end = len(content) if following < 0 else following + 1
    section = content[start:end].rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(content[:start] + section + content[end:], encoding="utf-8")


def main(count: int, rounds: int, before_rev: str | None, write_md: bool,
         argv: Sequence[str]) -> int:
    results = measure(count, rounds, before_rev)
    command = " ".join([".venv/bin/python", "-m", "bench", *argv])
    text = render(results, command)
    print(text)
    if write_md:
        append_to_benchmarks_md(ROOT / "BENCHMARKS.md", text)
        print("BENCHMARKS.md: appended")
    return 0
