"""The `cityops` command: one entry point for operators, partners and developers.

Subcommands import their modules lazily so `cityops broker start` works before Faust is even
importable, and `--help` is fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from core.vocabulary import ASSET_REGISTRY_SEED
from topics.event_types import PARTNER_KINDS

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
ADMIN_PRINCIPAL = "admin"


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

    try:
        config = broker.BrokerConfig.from_env(args.port, secure=args.secure, nodes=args.nodes)
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
        print(f"{'topic':32} {'exists':6} {'partitions':>10} {'rf':>5} {'urp':>4}  settings")
        for check in checks:
            partitions = f"{check.partitions or '-'}/{check.expected_partitions}"
            replication = f"{check.replication_factor or '-'}/{check.expected_replication_factor}"
            settings = "ok" if not check.config_mismatches else ", ".join(
                f"{key}={actual} (catalog {want})"
                for key, (want, actual) in check.config_mismatches.items()
            )
            exists = "yes" if check.exists else "NO"
            print(f"{check.name:32} {exists:6} {partitions:>10} {replication:>5} "
                  f"{len(check.under_replicated):>4}  {settings}")
            for partition in check.under_replicated:
                print(f"    under-replicated: {partition.describe()}")
        return 0 if all(check.ok for check in checks) else 1
    finally:
        admin.close()


# --- reference data ---------------------------------------------------------------------------


def _wards(args: argparse.Namespace) -> int:
    from cityops.publish_reference import publish_wards
    from topics.catalog import WARDS, TopicCatalog

    count = publish_wards(_bootstrap(args))
    print(f"published {count} kelurahan to {TopicCatalog.from_env().name(WARDS)}")
    return 0


def _assets(args: argparse.Namespace) -> int:
    from cityops.publish_reference import publish_assets
    from topics.catalog import ASSETS, TopicCatalog

    summary = publish_assets(_bootstrap(args), seed=args.seed)
    print(f"published synthetic asset registry to {TopicCatalog.from_env().name(ASSETS)}: "
          + ", ".join(
        f"{count} {kind}" for kind, count in sorted(summary.items())
    ))
    return 0


def _neighbourhoods(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cityops.neighbourhoods import RegistryError
    from cityops.publish_reference import publish_neighbourhoods
    from topics.catalog import NEIGHBOURHOODS, TopicCatalog

    try:
        rts, rws, synthetic = publish_neighbourhoods(
            _bootstrap(args), None if args.csv is None else Path(args.csv), seed=args.seed)
    except (OSError, RegistryError) as error:
        print(f"cityops neighbourhoods: {error}", file=sys.stderr)
        return 2
    kind = "SYNTHETIC" if synthetic else "CSV"
    print(f"published {kind} registry of {rts} RT in {rws} RW to "
          f"{TopicCatalog.from_env().name(NEIGHBOURHOODS)}")
    return 0


# --- security ---------------------------------------------------------------------------------


def _security(args: argparse.Namespace) -> int:
    from cityops import security
    from core.connection import SCRAM_MECHANISM, SecurityError

    try:
        if args.action == "setup":
            app_id = args.app_id or os.environ.get("CITYOPS_APP_ID", "cityops")
            report = security.setup(_bootstrap(args), app_id)
            print(f"SCRAM users ({SCRAM_MECHANISM}): {', '.join(report.users)}")
            print(f"{report.acl_count} ACLs:")
            for grant in report.grants:
                print(f"  {grant.describe()}")
            print(f"passwords: {security.credentials_path()}")
            return 0
        if args.principal not in security.PRINCIPALS:
            print(f"cityops security: unknown principal {args.principal!r}; one of "
                  f"{', '.join(security.PRINCIPALS)}", file=sys.stderr)
            return 2
        password = security.load_credentials()[args.principal]
        for name, value in security.principal_env(args.principal, password).items():
            print(f"export {name}={value}")
        return 0
    except SecurityError as error:
        print(f"cityops security: {error}", file=sys.stderr)
        return 2


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


# --- operator accounts (issue 14) ---------------------------------------------------------------


def _operators(args: argparse.Namespace) -> int:
    import getpass

    from core import accounts

    path = Path(args.file) if args.file else None
    if args.action != "list" and not args.name:
        print(f"cityops operators {args.action}: NAME is required", file=sys.stderr)
        return 2
    try:
        if args.action == "add":
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            else:
                password = getpass.getpass(f"password for {args.name}: ")
                if getpass.getpass("again: ") != password:
                    print("cityops operators: the passwords differ", file=sys.stderr)
                    return 2
            agency, kecamatan = _checked_scope(args.agency, args.kecamatan or [])
            accounts.add_operator(args.name, args.role, password, path, agency=agency,
                                  kecamatan=kecamatan,
                                  kelurahan=tuple(args.kelurahan or ()))
            bound = "".join((f", agency {agency}" if agency else "",
                             f", kecamatan {' '.join(kecamatan)}" if kecamatan else ""))
            print(f"operator {args.name} ({args.role}{bound}) saved in "
                  f"{path or accounts.default_path()}")
        elif args.action == "token":
            token = accounts.add_token(args.name, path)
            print(f"API token for {args.name} (read-only; shown once, store it now):\n{token}")
        elif args.action == "remove":
            if not accounts.remove(args.name, path):
                print(f"cityops operators: no account {args.name!r}", file=sys.stderr)
                return 1
        else:
            loaded = accounts.load(path)
            for name, record in sorted(loaded.operators.items()):
                scope = " ".join(filter(None, (
                    f"agency={record['agency']}" if record.get("agency") else "",
                    "kecamatan=" + ",".join(record["kecamatan"]) if record.get("kecamatan")
                    else "")))
                print(f"{name:32} {record['role'].lower()} {scope}".rstrip())
            for name in sorted(loaded.tokens):
                print(f"{name:32} api token (read-only)")
    except accounts.AccountError as error:
        print(f"cityops operators: {error}", file=sys.stderr)
        return 2
    return 0


def _checked_scope(agency: str | None, kecamatan: list[str]) -> tuple[str | None, list[str]]:
    """An account's scope checked against the reference lists (issue 24, part 4): an agency of
    processors/thresholds.py AGENCIES, kecamatan codes of core/data."""
    from core import accounts
    from core.reference_data import load_kecamatan
    from processors.thresholds import AGENCIES

    if agency is not None and agency.upper() not in AGENCIES:
        raise accounts.AccountError(f"agency {agency!r}: one of {', '.join(AGENCIES)}")
    known = {k.code for k in load_kecamatan()}
    unknown = [code for code in kecamatan if code not in known]
    if unknown:
        raise accounts.AccountError(f"kecamatan {', '.join(unknown)}: not Cilegon kecamatan "
                                    f"codes (one of {', '.join(sorted(known))})")
    return (agency.upper() if agency else None), sorted(set(kecamatan))


# --- history store (issue 21) -------------------------------------------------------------------


def _db(args: argparse.Namespace) -> int:
    from cityops import database

    try:
        if args.action == "start":
            print(database.start())
        elif args.action == "stop":
            print(database.stop())
        elif args.action == "url":
            print(database.url())
        else:
            state = database.status()
            print(state)
            return 0 if state.startswith("running") else 1
    except database.DatabaseError as error:
        print(f"cityops db: {error}", file=sys.stderr)
        return 2
    return 0


def _history(args: argparse.Namespace) -> int:
    import logging
    import time

    from streams.history_store import HistoryError, HistoryStore

    try:
        if args.action == "sink":
            from streams.history_sink import run_sink

            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
            logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO is per connection
            stats = run_sink(_bootstrap(args), args.url, args.app_id,
                             idle_exit_s=args.idle_exit)
            print(f"history sink: {stats.records} records in {stats.batches} batches, "
                  f"{stats.inserted} rows inserted, {stats.rejected} rejected")
            return 0
        store = HistoryStore.from_env(args.url)
        store.create_tables()
        if args.action == "purge":
            for row in store.purge(int(time.time() * 1000)):
                print(f"{row['table_name']:24} {row['rows_purged']:>8}  {row['what']}")
            return 0
        from processors.history_rows import TABLES

        for table in TABLES:
            print(f"{table.name:20} {store.count(table):>10}  {table.doc}")
        return 0
    except HistoryError as error:
        print(f"cityops history: {error}", file=sys.stderr)
        return 2


# --- sample feed and live view -----------------------------------------------------------------


def _produce(args: argparse.Namespace) -> int:
    from cityops.produce import run_produce

    return run_produce(_bootstrap(args), args.type, args.files, args.json or [], sys.stdin)


def _simulate(args: argparse.Namespace) -> int:
    from cityops.simulate import run_simulate, run_simulate_rt_month

    if args.rt_month is not None:
        return run_simulate_rt_month(_bootstrap(args), args.seed, args.rt_month or None,
                                     args.kelurahan or (), json_out=args.rt_json)
    return run_simulate(_bootstrap(args), args.seed, args.rate, args.duration, args.count,
                        args.scenario, args.realtime, sys.stderr.isatty() and not args.quiet,
                        registry_seed=args.registry_seed,
                        incidents_per_hour=args.incidents_per_hour)


def _watch(args: argparse.Namespace) -> int:
    from cityops.watch import WatchError, watch

    try:
        return watch(_bootstrap(args), kecamatan=args.kecamatan, seconds=args.seconds,
                     once=args.once)
    except WatchError as error:
        print(f"cityops watch: {error}", file=sys.stderr)
        return 2


def _notify(args: argparse.Namespace) -> int:
    from cityops.notify import run_notify

    return run_notify(_bootstrap(args), args.config, args.thresholds, args.group,
                      args.metrics_port, args.metrics_host, args.role, args.max_age,
                      args.seconds)


def _demo(args: argparse.Namespace) -> int:
    from cityops.demo import run_demo

    return run_demo(_bootstrap(args), seconds=args.seconds, rate_per_s=args.rate,
                    scenario=args.scenario)


def _gateway(args: argparse.Namespace) -> int:
    from cityops import gateway
    from cityops.security import PARTNER_TOPICS
    from core import partner_tokens
    from core.accounts import AccountError

    tokens_file = Path(args.tokens_file) if args.tokens_file else None
    if args.action == "openapi":
        json.dump(gateway.openapi_document(), sys.stdout, indent=2)
        print()
        return 0
    if args.action == "token":
        if not args.partner or not args.name:
            print("cityops gateway token: PARTNER and --name are required", file=sys.stderr)
            return 2
        try:
            token = partner_tokens.add(args.partner, args.name, PARTNER_TOPICS,
                                       tokens_file)
        except AccountError as error:
            print(f"cityops gateway token: {error}", file=sys.stderr)
            return 2
        print(f"gateway token {args.name} for {args.partner} (writes "
              f"{PARTNER_TOPICS[args.partner].name} only; shown once, store it now):"
              f"\n{token}")
        return 0
    settings = gateway.GatewaySettings(
        bootstrap=_bootstrap(args), host=args.host, port=args.port, reuse_port=args.reuse_port,
        max_body_bytes=args.max_body_bytes, max_batch_records=args.max_batch,
        rate_per_s=args.rate, burst=args.burst,
        max_inflight_per_partner=args.max_inflight_per_partner,
        max_inflight_total=args.max_inflight, ack_timeout_s=args.ack_timeout,
        tokens_file=tokens_file)
    return gateway.serve(settings)


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

    broker = command("broker", _broker, "Run the local Apache Kafka 4 broker (KRaft, one node, "
                     "or a replicated cluster with --nodes 3).")
    broker.add_argument("action", choices=["start", "stop", "status", "fetch", "reset"],
                        help="start (fetches jars and formats storage on first use), stop, "
                        "status, fetch the jars only, or reset (stop and delete all data)")
    broker.add_argument("--secure", action="store_true",
                        help="SASL/SCRAM-SHA-512 and ACLs (generates var/security/"
                        "credentials.json; run `cityops security setup` after the first start)")
    broker.add_argument("--port", type=int, help="listener port (env CITYOPS_KAFKA_PORT, "
                        "default 9092; the controller uses port + 1; node N of a cluster "
                        "uses port + 2(N-1) and the port above it)")
    broker.add_argument("--nodes", type=int, default=1,
                        help="1 (default): one node for the demo; 3: three broker+controller "
                        "nodes in var/kafka-cluster/ with replication factor 3, min ISR 2 "
                        "(start only starts the nodes that are down; stop stops them all)")

    topics = command("topics", _topics,
                     "Create the catalog's topics or compare the broker with it.")
    topics.add_argument("action", choices=["create", "describe"],
                        help="create the missing topics; describe compares partitions, "
                        "replication factor (rf) and settings with the catalog and lists "
                        "under-replicated partitions (urp) with their ISR; exits 1 on any "
                        "difference. The deployment comes from CITYOPS_CATALOG_PROFILE "
                        "(single|cluster), CITYOPS_WARD_PARTITIONS and CITYOPS_WORKERS")
    topics.add_argument("--replication-factor", type=int, default=None,
                        help="override the catalog's replication factor (1 locally)")
    _add_bootstrap(topics)

    wards = command("wards", _wards, "Publish the 43 kelurahan to the compacted reference topic.")
    wards.add_argument("action", choices=["load"])
    _add_bootstrap(wards)

    assets = command("assets", _assets,
                     "Publish the SYNTHETIC lamp and waste-container registry (simulator data).")
    assets.add_argument("action", choices=["load"])
    assets.add_argument("--seed", type=int, default=ASSET_REGISTRY_SEED,
                        help=f"registry seed (default {ASSET_REGISTRY_SEED})")
    _add_bootstrap(assets)

    neighbourhoods = command(
        "neighbourhoods", _neighbourhoods,
        "Publish the RW/RT registry (SYNTHETIC unless --csv names a real one).")
    neighbourhoods.add_argument("action", choices=["load"])
    neighbourhoods.add_argument("--csv", help="a real registry: CSV with columns rt_code, "
                                "kelurahan_code, kecamatan_code, rw, rt[, synthetic]")
    neighbourhoods.add_argument("--seed", type=int, default=13,
                                help="seed of the synthetic registry (default 13)")
    _add_bootstrap(neighbourhoods)

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

    produce = command("produce", _produce, "Validate partner events (JSON) against the Avro "
                      "schemas and send them; nothing is sent if any record is invalid.")
    _add_bootstrap(produce)
    produce.add_argument("files", nargs="*", metavar="FILE", help="JSON Lines, a JSON array or "
                         "one object; '-' = stdin (stdin is read when no FILE and no --json)")
    produce.add_argument("--type", choices=[kind for kind, _ in PARTNER_KINDS],
                         help="type of every record (else each object's \"type\" member)")
    produce.add_argument("--json", action="append", metavar="JSON",
                         help="an inline JSON object or array; repeatable")

    simulate = command("simulate", _simulate,
                       "Stream the SYNTHETIC city feed, optionally with a named scenario.")
    _add_bootstrap(simulate)
    simulate.add_argument("--rate", type=float, default=20.0,
                          help="events per second (default 20)")
    simulate.add_argument("--realtime", action="store_true",
                          help="pace on the wall clock; default: as fast as possible with event "
                          "times laid out in the past up to now")
    simulate.add_argument("--count", type=int, help="stop after N background events")
    simulate.add_argument("--duration", type=float, help="stop after N seconds (wall clock with "
                          "--realtime, event time otherwise)")
    simulate.add_argument("--seed", type=int,
                          help="feed seed (default: random, printed in the summary)")
    simulate.add_argument("--scenario", choices=["flood", "cabinet-power-loss",
                                                 "holiday-waste-surge", "night-accidents"])
    simulate.add_argument("--registry-seed", type=int, default=ASSET_REGISTRY_SEED)
    simulate.add_argument("--incidents-per-hour", type=float, default=6.0)
    simulate.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    simulate.add_argument("--rt-month", nargs="?", const="", metavar="YYYY-MM",
                          help="instead of the city feed: one SYNTHETIC month of RT reports "
                          "(default: last month in WIB) after a clean base month, with human "
                          "mistakes at known rates; prints the verdicts the worker must give")
    simulate.add_argument("--kelurahan", action="append", metavar="CODE",
                          help="with --rt-month: only the RTs of this kelurahan; repeatable")
    simulate.add_argument("--rt-json", metavar="FILE",
                          help="with --rt-month: write the reports as JSON Lines (for "
                          "`cityops produce --type rt_report FILE`) instead of sending them")

    watch = command("watch", _watch, "Live view of ward and kecamatan situations.")
    _add_bootstrap(watch)
    watch.add_argument("--kecamatan", help="show only this kecamatan (name or code)")
    watch.add_argument("--seconds", type=float, default=0.0,
                       help="stop after N seconds (0 = never)")
    watch.add_argument("--once", action="store_true",
                       help="print the current picture once and exit")

    secure = command("security", _security,
                     "Secured broker: create SCRAM users and ACLs, or print a principal's "
                     "client environment.")
    secure.add_argument("action", choices=["setup", "env"],
                        help="setup (users + ACLs, as admin; idempotent) or env PRINCIPAL "
                        "(prints CITYOPS_SASL_* exports)")
    secure.add_argument("principal", nargs="?", default=ADMIN_PRINCIPAL,
                        help=f"for env: whose credentials (default {ADMIN_PRINCIPAL})")
    secure.add_argument("--app-id", help="the workers' app id, for their group and internal "
                        "topics (env CITYOPS_APP_ID, default cityops)")
    _add_bootstrap(secure)

    operators = command(
        "operators", _operators,
        "Board accounts: operators sign in with a password (stored as an Argon2id hash) and a "
        "role; API consumers get a read-only token.")
    operators.add_argument("action", choices=["add", "remove", "list", "token"],
                           help="add NAME --role R (asks for the password twice), remove NAME, "
                           "list, or token NAME (a new API token, printed once)")
    operators.add_argument("name", nargs="?", help="account name (lower case)")
    operators.add_argument("--role", default="viewer",
                           choices=["viewer", "operator", "supervisor", "village_staff"],
                           help="viewer sees; operator acknowledges, assigns, escalates and "
                           "notes; supervisor also closes cases, sees the audit trail and "
                           "reviews RT reports everywhere; village_staff reviews the RT "
                           "reports of its --kelurahan")
    operators.add_argument("--agency", help="bind the account to one agency (POLRES, DAMKAR, "
                           "BPBD, DISHUB, DLH, DINKES): it sees and acts on the cases assigned "
                           "to that agency only")
    operators.add_argument("--kecamatan", nargs="+", metavar="CODE",
                           help="bind the account to these kecamatan (codes like 36.72.01): it "
                           "sees and acts on their kelurahan only")
    operators.add_argument("--kelurahan", action="append", metavar="CODE",
                           help="village_staff: a kelurahan code whose RT reports the account "
                           "reviews (repeatable)")
    operators.add_argument("--password-stdin", action="store_true",
                           help="read the password from the first line of stdin (scripts)")
    operators.add_argument("--file", help="accounts file (env CITYOPS_OPERATORS_FILE, default "
                           "var/operators.json)")

    db = command("db", _db, "The private PostgreSQL server of the history store (Debian's "
                 "postgresql package; as root it runs as the postgres user).")
    db.add_argument("action", choices=["start", "stop", "status", "url"],
                    help="start (initdb on first use, port CITYOPS_PG_PORT, default 5439, data "
                    "in var/postgres), stop, status, or url (for CITYOPS_HISTORY_URL)")

    history = command("history", _history, "The history store: the sink that fills it from "
                      "the topics, its tables, and the retention purge.")
    history.add_argument("action", choices=["sink", "tables", "purge"],
                         help="sink (consumer group <app id>-history, until SIGTERM), tables "
                         "(row counts), purge (delete what is past its retention, audited)")
    history.add_argument("--url", help="store URL (env CITYOPS_HISTORY_URL, default "
                         "sqlite:///var/history.sqlite3; postgresql://USER:PASS@HOST:PORT/DB)")
    history.add_argument("--app-id", help="the deployment's app id (env CITYOPS_APP_ID)")
    history.add_argument("--idle-exit", type=float, default=None, metavar="S",
                         help="sink: exit once caught up and idle for S seconds")
    _add_bootstrap(history)

    gateway = command(
        "gateway", _gateway,
        "The partners' HTTP door: JSON or Avro events in, acknowledged (acks=all) records "
        "with a receipt each out; idempotent retries, per-partner limits (docs/gateway.md).")
    gateway.add_argument("action", choices=["serve", "token", "openapi"],
                         help="serve; token PARTNER --name NAME (a new partner token, printed "
                         "once); openapi (print the OpenAPI document)")
    gateway.add_argument("partner", nargs="?",
                         help="for token: the partner principal (partner-police, partner-112, "
                         "partner-citizen-app, partner-lighting, partner-waste, "
                         "partner-rt-reports)")
    gateway.add_argument("--name", help="for token: the token's label (lower case)")
    gateway.add_argument("--tokens-file", help="partner tokens (env CITYOPS_PARTNER_TOKENS_FILE, "
                         "default var/partner-tokens.json)")
    gateway.add_argument("--host", default="127.0.0.1", help="listen address (default "
                         "127.0.0.1; 0.0.0.0 behind a load balancer)")
    gateway.add_argument("--port", type=int, default=8088, help="listen port (default 8088)")
    gateway.add_argument("--reuse-port", action="store_true",
                         help="SO_REUSEPORT: several gateways on one host share the port")
    gateway.add_argument("--max-body-bytes", type=int, default=1 << 20,
                         help="largest request body (default 1 MiB; 413 above)")
    gateway.add_argument("--max-batch", type=int, default=500,
                         help="most records per request (default 500; 413 above)")
    gateway.add_argument("--rate", type=float, default=500.0,
                         help="records/s per partner, sustained (default 500; 429 above)")
    gateway.add_argument("--burst", type=float, default=2000.0,
                         help="records a quiet partner may send at once (default 2000)")
    gateway.add_argument("--max-inflight-per-partner", type=int, default=16,
                         help="concurrent requests per partner (default 16; 429 above)")
    gateway.add_argument("--max-inflight", type=int, default=128,
                         help="concurrent requests in all (default 128; 503 above)")
    gateway.add_argument("--ack-timeout", type=float, default=15.0,
                         help="seconds to wait for the broker's acks=all before a 503 "
                         "(default 15)")
    _add_bootstrap(gateway)
    notify = command("notify", _notify,
                     "Decide the notifications due to agencies (assignments, CRITICAL "
                     "unacknowledged, SLA about to expire, closed cases) and deliver them by "
                     "Telegram, WhatsApp, e-mail and signed webhook (docs/notifications.md).")
    _add_bootstrap(notify)
    notify.add_argument("--config", help="channels file, JSON (env CITYOPS_NOTIFY_CONFIG); "
                        "secrets are named by file or environment variable, never written in it")
    notify.add_argument("--thresholds", help="thresholds JSON file for the SLA limits (env "
                        "CITYOPS_THRESHOLDS; default: the packaged defaults)")
    notify.add_argument("--group", default="cityops-notify",
                        help="consumer group of the sender (the decider's is GROUP-decide)")
    notify.add_argument("--role", choices=["both", "decide", "send"], default="both",
                        help="run the decider, the sender or both (default)")
    notify.add_argument("--max-age", type=float, default=6 * 3600.0,
                        help="seconds past which a due notification is counted as stale and "
                        "not sent (a first start on an old backlog; default 6 h)")
    notify.add_argument("--metrics-port", type=int, default=9110,
                        help="Prometheus endpoint port (default 9110; 0 = none)")
    notify.add_argument("--metrics-host", default="127.0.0.1")
    notify.add_argument("--seconds", type=float, default=0.0,
                        help="stop after N seconds (0 = never)")

    demo = command("demo", _demo, "The main job: broker, topics, reference data, a worker, a "
                   "simulated city feed and the live situation view.")
    _add_bootstrap(demo)
    demo.add_argument("--seconds", type=float, default=0.0,
                      help="stop after N seconds (0 = Ctrl-C)")
    demo.add_argument("--rate", type=float, default=20.0, help="feed events per second")
    demo.add_argument("--scenario", default="flood",
                      choices=["flood", "cabinet-power-loss", "holiday-waste-surge",
                               "night-accidents"],
                      help="scenario played 10 s into the feed (default flood)")
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
