"""`python -m bench gateway`: the HTTP gateway against the direct Kafka path at one offered rate.

Both paths get the same records at the same fixed offered rate, in the same batches, open loop:
each batch is due at its scheduled moment whether or not the previous ones were answered, and
its answer time runs from that moment (so a path that falls behind shows it in its p99 instead
of silently offering less). The direct path is the partner producer (kafka-python, idempotent,
acks=all) sending a batch and waiting for every record's acknowledgement; the gateway path is
an HTTP POST of the batch to `cityops gateway serve` on loopback, answered after the same
acknowledgement and the receipt's. Accepted records/s counts acknowledged records (HTTP 200).

The broker, the gateway and this client share the machine: the figures are for this machine
and say how the two paths compare, not what a dedicated gateway host reaches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.gateway_process import GatewayProcess, make_token
from bench.harness import ROOT, Namespace, machine
from bench.report import replace_section

START = "<!-- gateway-bench:start -->"
END = "<!-- gateway-bench:end -->"
WARDS = ("36.72.01.1001", "36.72.02.1002", "36.72.03.1001")


@dataclass
class PathResult:
    path: str
    offered_per_s: float
    accepted_per_s: float
    batches: int
    failed_batches: int
    p50_ms: float
    p99_ms: float


def _batch(size: int, now: datetime) -> list[dict[str, Any]]:
    return [{
        "type": "incident", "event_id": str(uuid.uuid4()),
        "occurred_at": (now - timedelta(minutes=5)).isoformat(),
        "incident_id": f"112-BENCH-{uuid.uuid4().hex[:10]}", "source_system": "CALL_CENTER_112",
        "category": "FLOOD", "severity": "MINOR", "status": "REPORTED",
        "ward_code": WARDS[i % len(WARDS)],
    } for i in range(size)]


async def _open_loop(rate: float, seconds: float, batch: int, concurrency: int,
                     send: Callable[[list[dict[str, Any]]], Awaitable[bool]],
                     label: str) -> PathResult:
    """Batches due every batch/rate seconds for `seconds`; at most `concurrency` in flight
    (beyond that a batch waits, and its wait counts in its answer time)."""
    interval = batch / rate
    count = int(seconds / interval)
    now = datetime.now(UTC)
    batches = [_batch(batch, now) for _ in range(count)]
    gate = asyncio.Semaphore(concurrency)
    times: list[float] = []
    failures = 0
    start = time.monotonic() + 0.5

    async def one(number: int) -> None:
        nonlocal failures
        due = start + number * interval
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        async with gate:
            ok = await send(batches[number])
        times.append(time.monotonic() - due)
        if not ok:
            failures += 1

    await asyncio.gather(*(one(n) for n in range(count)))
    elapsed = max(time.monotonic() - start, seconds)
    ordered = sorted(times)
    return PathResult(
        label, rate, (count - failures) * batch / elapsed, count, failures,
        statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1,
                                                       int(0.99 * len(ordered)))] * 1000)


async def _direct(namespace: Namespace, rate: float, seconds: float, batch: int,
                  concurrency: int) -> PathResult:
    from cityops.gateway import as_asyncio
    from cityops.produce import JsonItem, prepare

    loop = asyncio.get_running_loop()
    with namespace.producer() as producer:
        async def send(records: list[dict[str, Any]]) -> bool:
            # the same conversion and validation `cityops produce` and the gateway do
            prepared = prepare([JsonItem(str(i), r) for i, r in enumerate(records)], None)
            futures = [producer.send(schema, record) for schema, record in prepared.records]
            try:
                await asyncio.gather(*(as_asyncio(loop, f) for f in futures))
            except Exception:
                return False
            return True

        return await _open_loop(rate, seconds, batch, concurrency, send, "direct Kafka "
                                "(PartnerProducer, acks=all)")


async def _gateway(gateway: GatewayProcess, token: str, rate: float, seconds: float,
                   batch: int, concurrency: int) -> PathResult:
    from aiohttp import ClientSession, ClientTimeout, TCPConnector

    async with ClientSession(connector=TCPConnector(limit=concurrency),
                             timeout=ClientTimeout(total=60)) as session:
        async def send(records: list[dict[str, Any]]) -> bool:
            async with session.post(
                    f"{gateway.url}/v1/events/incident", json=records,
                    headers={"Authorization": f"Bearer {token}",
                             "Idempotency-Key": str(uuid.uuid4())}) as response:
                await response.read()
                return response.status == 200

        return await _open_loop(rate, seconds, batch, concurrency, send,
                                "HTTP gateway (cityops gateway, acks=all + receipt)")


def render(results: Sequence[PathResult], command: str, host: dict[str, Any],
           batch: int, concurrency: int) -> str:
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}`: offered "
        f"{results[0].offered_per_s:,.0f} records/s in batches of {batch} (open loop, at most "
        f"{concurrency} batches in flight), broker, gateway and client on one machine "
        f"({host['cores']} cores, {host['cpu_model'] or 'unknown CPU'}, load average "
        f"{host['loadavg'][0]} at the start; shared with other sessions).",
        "",
        "| path | offered records/s | accepted records/s | batches (failed) | p50 answer | "
        "p99 answer |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.path} | {r.offered_per_s:,.0f} | {r.accepted_per_s:,.0f} | "
                     f"{r.batches} ({r.failed_batches}) | {r.p50_ms:.1f} ms | "
                     f"{r.p99_ms:.1f} ms |")
    lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench gateway", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered records/s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-benchmarks-md", action="store_true")
    args = parser.parse_args(argv)
    host = machine()
    namespace = Namespace.fresh(args.bootstrap, "bench-gateway")
    namespace.cityops("topics", "create")
    workdir = ROOT / "var" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    tokens_file = workdir / "gateway-bench-tokens.json"
    token = make_token(tokens_file, "partner-112", "bench")
    gateway = GatewayProcess(
        args.bootstrap, namespace.prefix, tokens_file, workdir / "gateway-bench.log",
        ("--rate", str(args.rate * 10), "--burst", str(args.rate * 10),
         "--max-inflight-per-partner", str(args.concurrency),
         "--max-inflight", str(args.concurrency))).start()
    try:
        results = [
            asyncio.run(_direct(namespace, args.rate, args.seconds, args.batch,
                                args.concurrency)),
            asyncio.run(_gateway(gateway, token, args.rate, args.seconds, args.batch,
                                 args.concurrency)),
        ]
    finally:
        gateway.stop()
        namespace.teardown()
    command = " ".join([".venv/bin/python", "-m", "bench", "gateway", *argv])
    text = render(results, command, host, args.batch, args.concurrency)
    print(text)
    (workdir / f"gateway-{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(json.dumps(
        {"machine": host, "results": [r.__dict__ for r in results]}, indent=2))
    if not args.no_benchmarks_md:
        replace_section(ROOT / "BENCHMARKS.md", text, START, END,
                        "Partner gateway against the direct Kafka path")
        print("BENCHMARKS.md: gateway section updated")
    return 0 if all(r.failed_batches == 0 for r in results) else 1


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
