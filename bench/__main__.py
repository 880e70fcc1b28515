"""`python -m bench run`: the pipeline's benchmarks on the local broker.

    .venv/bin/python -m bench run                    # 1,000,000 events, every figure
    .venv/bin/python -m bench run --events 200000    # a smaller run
    .venv/bin/python -m bench run --long             # 10,000,000 events (RSS at 1M and 10M)
    .venv/bin/python -m bench run --smoke            # seconds, 3,000 events, checks the state
    .venv/bin/python -m bench codec                  # per-record decode cost, in-process, no broker
    .venv/bin/python -m bench chaos [--cluster] ...  # chaos runs (bench/chaos.py --help)
    .venv/bin/python -m bench gateway [--rate 1000]  # HTTP gateway vs direct Kafka path
    .venv/bin/python -m bench capacity --villages N --events-per-village-per-s R
                                                     # the capacity model (bench/capacity.py)
    .venv/bin/python -m bench history [--hours H]    # the history sink's rows/s and CPU per
                                                     # situation (bench/history_bench.py)

Writes the figures as JSON (--json) and as Markdown (--report); a full run also replaces the
"latest run" section of BENCHMARKS.md unless --no-benchmarks-md is given. Exits 1 when the
state check failed (--verify, always on with --smoke), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from bench.harness import ROOT

PHASES = ("codec", "memory", "ceiling", "latency", "scale", "footprint")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("chaos", help="a chaos run (options: python -m bench chaos --help)")
    sub.add_parser("capacity", help="the capacity model (python -m bench capacity --help)")
    sub.add_parser("history", help="the history sink's rows/s and CPU per situation "
                   "(python -m bench history --help)")
    sub.add_parser("gateway", help="HTTP gateway vs direct Kafka at one offered rate "
                   "(python -m bench gateway --help)")
    run = sub.add_parser("run", help="run the benchmarks")
    run.add_argument("--bootstrap", default=os.environ.get("CITYOPS_BOOTSTRAP",
                                                           "127.0.0.1:9092"))
    run.add_argument("--events", type=int, help="events to pre-load (default 1,000,000; "
                     "10,000,000 with --long; 3,000 with --smoke)")
    run.add_argument("--long", action="store_true", help="10M events: RSS at 1M and 10M")
    run.add_argument("--smoke", action="store_true",
                     help="a few thousand events, tiny loads; checks the output state")
    run.add_argument("--loads", help="offered loads for latency, events/s, comma-separated "
                     "(default 1000,5000,10000)")
    run.add_argument("--load-seconds", type=float, help="seconds per load level (default 30)")
    run.add_argument("--scale-events", type=int,
                     help="events for the 1-vs-2-worker run (default 300,000)")
    run.add_argument("--span-hours", type=float,
                     help="event-time span of the pre-load (default 120 = 5 days)")
    run.add_argument("--verify", action="store_true",
                     help="compare the drained state with an independent fold")
    run.add_argument("--skip", default="", help=f"phases to skip: {','.join(PHASES)}")
    run.add_argument("--wait-load", type=float, metavar="LOAD",
                     help="first wait (at most --wait-max seconds) for the 1-minute load "
                     "average to drop below LOAD: the machine is shared")
    run.add_argument("--wait-max", type=float, default=600.0)
    run.add_argument("--worker-root", type=Path,
                     help="run the workers from this checkout instead (before/after runs)")
    run.add_argument("--json", type=Path, help="results JSON (default var/bench/<date>.json)")
    run.add_argument("--report", type=Path, help="results Markdown (default next to the JSON)")
    run.add_argument("--no-benchmarks-md", action="store_true",
                     help="do not update BENCHMARKS.md (smoke runs never do)")
    run.add_argument("--capacity-md", action="store_true",
                     help="update only the 'Capacity inputs' section of BENCHMARKS.md (the "
                     "figures `python -m bench capacity` reads), not the latest-run one")
    codec = sub.add_parser("codec", help="per-record decode cost in-process (no broker): "
                           "re-encode vs compiled canonical check, trusted decode")
    codec.add_argument("--records", type=int, default=20_000)
    codec.add_argument("--rounds", type=int, default=7)
    codec.add_argument("--before-rev", help="also time schemas/codec.py of this git revision")
    codec.add_argument("--wait-load", type=float, metavar="LOAD",
                       help="first wait (at most --wait-max seconds) for the 1-minute load "
                       "average to drop below LOAD")
    codec.add_argument("--wait-max", type=float, default=600.0)
    codec.add_argument("--no-benchmarks-md", action="store_true",
                       help="print only; do not append the figures to BENCHMARKS.md")
    return parser


def _wait_for_load(load: float, wait_max: float) -> float:
    """Seconds waited (at most `wait_max`) for the 1-minute load average to drop below `load`:
    the machine is shared."""
    started = time.monotonic()
    while os.getloadavg()[0] >= load and time.monotonic() - started < wait_max:
        time.sleep(10.0)
    waited = time.monotonic() - started
    print(f"waited {waited:.0f}s for the load average; now {os.getloadavg()}")
    return waited


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["chaos"]:  # its own options: bench/chaos.py
        from bench import chaos

        return chaos.main(argv[1:])
    if argv[:1] == ["gateway"]:  # its own options: bench/gateway_bench.py
        from bench import gateway_bench

        return gateway_bench.main(argv[1:])
    if argv[:1] == ["capacity"]:  # its own options: bench/capacity.py
        from bench import capacity

        return capacity.main(argv[1:])
    if argv[:1] == ["history"]:  # its own options: bench/history_bench.py
        from bench import history_bench

        return history_bench.main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "codec":
        from bench import decode_cost

        if args.wait_load is not None:
            _wait_for_load(args.wait_load, args.wait_max)
        return decode_cost.main(args.records, args.rounds, args.before_rev,
                                not args.no_benchmarks_md,
                                list(argv) if argv is not None else sys.argv[1:])
    from bench.report import render, update_benchmarks_md
    from bench.run import Config, Run, write_json

    skip = frozenset(p for p in args.skip.split(",") if p)
    if skip - set(PHASES):
        print(f"--skip takes {', '.join(PHASES)}", file=sys.stderr)
        return 2
    config = Config.smoke_config(args.bootstrap) if args.smoke else Config(
        bootstrap=args.bootstrap)
    config.command = shlex.join(
        [".venv/bin/python", "-m", "bench", *argv])
    if args.long:
        config.long = True
        config.events = 10_000_000
    if args.events is not None:
        config.events = args.events
    if args.loads:
        config.loads = tuple(int(x) for x in args.loads.split(","))
    if args.load_seconds is not None:
        config.load_seconds = args.load_seconds
    if args.scale_events is not None:
        config.scale_events = args.scale_events
    config.scale_events = min(config.scale_events, config.events)
    if args.span_hours is not None:
        config.span = timedelta(hours=args.span_hours)
    if config.span >= timedelta(days=7) - timedelta(hours=1):
        print("--span-hours must stay under 167: the pipeline rejects events older than "
              "7 days", file=sys.stderr)
        return 2
    config.verify = config.verify or args.verify
    config.skip = skip
    config.worker_root = args.worker_root.resolve() if args.worker_root else None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kind = "smoke" if args.smoke else "run"
    json_path = args.json or ROOT / "var" / "bench" / f"{stamp}-{kind}.json"
    report_path = args.report or json_path.with_suffix(".md")

    waited = 0.0
    if args.wait_load is not None:
        waited = _wait_for_load(args.wait_load, args.wait_max)
    results = Run(config).run()
    results["waited_for_load_s"] = round(waited)
    write_json(results, json_path)
    text = render(results)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(text)
    print(f"results: {json_path}\nreport: {report_path}")
    if not args.smoke and not args.no_benchmarks_md and not args.capacity_md:
        update_benchmarks_md(ROOT / "BENCHMARKS.md", text)
        print("BENCHMARKS.md: latest run section updated")
    if not args.smoke and "footprint" in results and (args.capacity_md
                                                      or not args.no_benchmarks_md):
        from bench.capacity import update_inputs_section

        update_inputs_section(ROOT / "BENCHMARKS.md", results)
        print("BENCHMARKS.md: capacity inputs section updated")
    verdict = results.get("verify")
    if verdict is not None and not verdict["ok"]:
        print(f"state check FAILED: {verdict['problems']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
