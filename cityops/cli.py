"""The `cityops` command: one entry point for operators, partners and developers.

Subcommands import their modules lazily so `cityops broker start` works before Faust is even
importable, and `--help` is fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def _bootstrap(args: argparse.Namespace) -> str:
    value: str = args.bootstrap or os.environ.get("CITYOPS_BOOTSTRAP", DEFAULT_BOOTSTRAP)
    return value


def _add_bootstrap(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        help=f"Kafka bootstrap servers (env CITYOPS_BOOTSTRAP, default {DEFAULT_BOOTSTRAP})",
    )


# --- broker -----------------------------------------------------------------------------------


def _broker(args: argparse.Namespace) -> int:
    from cityops import broker

    config = broker.BrokerConfig.from_env(args.port)
    try:
        if args.action == "start":
            print(broker.start(config))
        elif args.action == "stop":
            print(broker.stop())
        elif args.action == "status":
            state = broker.status(config)
            print(state)
            return 0 if state.startswith("running") else 1
        elif args.action == "fetch":
            print(f"Kafka jars in {broker.fetch_jars(quiet=False)}")
        elif args.action == "reset":
            print(broker.reset())
    except broker.BrokerError as error:
        return broker.main_error(error)
    return 0


# --- topics -----------------------------------------------------------------------------------


def _topics(args: argparse.Namespace) -> int:
    from topics.admin import admin_client, create_topics, describe_topics

    admin = admin_client(_bootstrap(args))
    try:
        if args.action == "create":
            for name, outcome in create_topics(admin, replication_factor=args.replication_factor):
                print(f"{outcome:8} {name}")
            return 0
        checks = describe_topics(admin)
        print(f"{'topic':32} {'exists':6} {'partitions':>10}  settings")
        for check in checks:
            partitions = f"{check.partitions or '-'}/{check.expected_partitions}"
            settings = "ok" if not check.config_mismatches else ", ".join(
                f"{key}={actual} (catalog {want})"
                for key, (want, actual) in check.config_mismatches.items()
            )
            print(f"{check.name:32} {'yes' if check.exists else 'NO':6} {partitions:>10}  {settings}")
        return 0 if all(check.ok for check in checks) else 1
    finally:
        admin.close()


# --- reference data ---------------------------------------------------------------------------


def _wards(args: argparse.Namespace) -> int:
    from cityops.reference import publish_wards
    from topics.catalog import WARDS

    count = publish_wards(_bootstrap(args))
    print(f"published {count} kelurahan to {WARDS.name}")
    return 0


def _assets(args: argparse.Namespace) -> int:
    from cityops.reference import publish_assets
    from topics.catalog import ASSETS

    summary = publish_assets(_bootstrap(args), seed=args.seed)
    print(f"published synthetic asset registry to {ASSETS.name}: " + ", ".join(
        f"{count} {kind}" for kind, count in sorted(summary.items())
    ))
    return 0


# --- worker -----------------------------------------------------------------------------------


def _worker(args: argparse.Namespace) -> int:
    from streams.app import run_worker
    from streams.settings import WorkerSettings

    settings = WorkerSettings.from_env(
        bootstrap=_bootstrap(args),
        app_id=args.app_id,
        store=args.store,
        processing_guarantee=args.processing_guarantee,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        web_port=args.web_port,
        thresholds_path=args.thresholds,
        data_dir=args.data_dir,
    )
    run_worker(settings, loglevel=args.loglevel)
    return 0


# --- sample feed and live view -----------------------------------------------------------------


def _sample(args: argparse.Namespace) -> int:
    from cityops.sample import send_sample_feed

    sent = send_sample_feed(_bootstrap(args), events=args.events, seed=args.seed,
                            rate_per_s=args.rate)
    print(f"sent {sent} events")
    return 0


def _watch(args: argparse.Namespace) -> int:
    from cityops.watch import watch

    return watch(_bootstrap(args), kecamatan=args.kecamatan, seconds=args.seconds,
                 once=args.once)


def _demo(args: argparse.Namespace) -> int:
    from cityops.demo import run_demo

    return run_demo(_bootstrap(args), seconds=args.seconds, rate_per_s=args.rate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cityops",
        description="Cilegon command-center stream processor: broker, topics, reference data, "
        "workers, feeds and the live situation view.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str
                ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    broker = command("broker", _broker, "Run the local Apache Kafka 4 broker (KRaft, one node).")
    broker.add_argument("action", choices=["start", "stop", "status", "fetch", "reset"],
                        help="start (fetches jars and formats storage on first use), stop, "
                        "status, fetch the jars only, or reset (stop and delete all data)")
    broker.add_argument("--port", type=int, help="listener port (env CITYOPS_KAFKA_PORT, "
                        "default 9092; the controller uses port + 1)")

    topics = command("topics", _topics, "Create the catalog's topics or compare the broker with it.")
    topics.add_argument("action", choices=["create", "describe"])
    topics.add_argument("--replication-factor", type=int, default=None,
                        help="override the catalog's replication factor (1 locally)")
    _add_bootstrap(topics)

    wards = command("wards", _wards, "Publish the 43 kelurahan to the compacted reference topic.")
    wards.add_argument("action", choices=["load"])
    _add_bootstrap(wards)

    assets = command("assets", _assets,
                     "Publish the SYNTHETIC lamp and waste-container registry (simulator data).")
    assets.add_argument("action", choices=["load"])
    assets.add_argument("--seed", type=int, default=7, help="registry seed (default 7)")
    _add_bootstrap(assets)

    worker = command("worker", _worker, "Run a Faust worker (enrichment, ward state, situations).")
    _add_bootstrap(worker)
    worker.add_argument("--app-id", help="consumer group and table prefix (env CITYOPS_APP_ID, "
                        "default cityops); workers with the same id share partitions")
    worker.add_argument("--store", help="table store URL, memory:// or rocksdb:// "
                        "(env CITYOPS_STORE, default memory://)")
    worker.add_argument("--processing-guarantee", choices=["at_least_once", "exactly_once"],
                        help="Faust processing guarantee (default at_least_once)")
    worker.add_argument("--metrics-host", help="Prometheus endpoint address "
                        "(env CITYOPS_METRICS_HOST, default 127.0.0.1)")
    worker.add_argument("--metrics-port", type=int,
                        help="Prometheus endpoint port (env CITYOPS_METRICS_PORT, default 9108)")
    worker.add_argument("--web-port", type=int, help="Faust web port (default 6066)")
    worker.add_argument("--thresholds", help="thresholds JSON file (env CITYOPS_THRESHOLDS; "
                        "default: the packaged defaults); re-read when it changes")
    worker.add_argument("--data-dir", help="Faust data directory (default var/worker-<app id>)")
    worker.add_argument("--loglevel", default="info")

    sample = command("sample", _sample, "Send a realistic sample feed of city events.")
    _add_bootstrap(sample)
    sample.add_argument("--events", type=int, default=200)
    sample.add_argument("--seed", type=int, default=1)
    sample.add_argument("--rate", type=float, default=0.0,
                        help="events per second (0 = as fast as possible)")

    watch = command("watch", _watch, "Live view of ward and kecamatan situations.")
    _add_bootstrap(watch)
    watch.add_argument("--kecamatan", help="show only this kecamatan (name or code)")
    watch.add_argument("--seconds", type=float, default=0.0, help="stop after N seconds (0 = never)")
    watch.add_argument("--once", action="store_true",
                       help="print the current picture once and exit")

    demo = command("demo", _demo, "The main job: broker, topics, reference data, a worker, a "
                   "simulated city feed and the live situation view.")
    _add_bootstrap(demo)
    demo.add_argument("--seconds", type=float, default=0.0, help="stop after N seconds (0 = Ctrl-C)")
    demo.add_argument("--rate", type=float, default=20.0, help="feed events per second")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
