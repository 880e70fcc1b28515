"""The docker-compose stack, checked without a Docker engine.

No machine of ours runs Docker, so everything a `docker compose up` would trip over first is
checked here against the real code: the compose file parses, every file it mounts or builds
from exists and is in the build context, every `cityops ...` command parses with the real CLI
parser, the workers' environment gives WorkerSettings that Prometheus can scrape, Kafka runs
the same major version and settings as the local broker, Prometheus' config and rules pass
promtool, and Grafana's provisioning points at the files and datasource the dashboard uses.
tests/integration/test_dashboard_queries.py runs the dashboard's queries for real.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cityops.broker import CLUSTER_HEAP_MB, BrokerConfig, server_properties
from cityops.cli import build_parser
from cityops.notify import REGISTRY as NOTIFY_REGISTRY
from streams.metrics import WorkerMetrics
from streams.settings import WorkerSettings
from tests.conftest import ROOT
from topics.catalog import CatalogSettings, Profile

pytestmark = pytest.mark.integration

COMPOSE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "cityops.json"
PROMTOOL_HINT = "install Debian's prometheus package (apt-get install prometheus); .ci/run does it"



# --- helpers ----------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def services(profile: str | None = None) -> dict[str, dict[str, Any]]:
    """The services `docker compose up` starts (no profile), or those of one profile."""
    found: dict[str, dict[str, Any]] = compose()["services"]
    return {name: s for name, s in found.items()
            if (profile in s.get("profiles", []) if profile else "profiles" not in s)}


def workers() -> list[str]:
    """Services running `cityops worker`: two in the repository, more after scaling out."""
    return [name for name, s in services().items()
            if [argv[0] for argv in cityops_invocations(s.get("command", []))] == ["worker"]]


def app_services() -> list[str]:
    return ["init", *workers(), "simulator", "history-sink", "gateway", "notifier"]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(f"promtool not found on PATH ({os.environ.get('PATH', '')}): {PROMTOOL_HINT}")
    return path


def run_promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def cityops_invocations(command: list[str] | str) -> list[list[str]]:
    """The argv lists (after `cityops`) that a compose `command` runs, through `sh -c` too."""
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if len(argv) == 3 and argv[0] in ("sh", "bash") and argv[1] == "-c":
        lexer = shlex.shlex(argv[2], posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        commands: list[list[str]] = [[]]
        for token in tokens:
            if token in ("&&", "||", ";", "|", "&"):
                commands.append([])
            else:
                commands[-1].append(token)
    else:
        commands = [argv]
    return [c[1:] for c in commands if c and c[0] == "cityops"]


def parse_cli(argv: list[str]) -> argparse.Namespace:
    """Parse with the real `cityops` parser; a usage error fails the test with its message."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`cityops {' '.join(argv)}` does not parse: {stderr.getvalue().strip()}")


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every bind mount; named volumes are not files of the repository."""
    mounts: list[tuple[str, str]] = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts.append((source, target))
    return mounts


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as Docker reads it: later lines win, `!` re-includes, `**` spans folders."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = os.path.normpath(pattern).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex + r"\Z")))
    return rules


def _excluded(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def build_context() -> set[str]:
    """Repository files Docker sends as the build context (relative posix paths)."""
    rules = _dockerignore_rules()
    reincluded = [r.pattern for negate, r in rules if negate]
    files: set[str] = set()

    def walk(folder: Path) -> Iterator[Path]:
        for entry in sorted(folder.iterdir()):
            relative = entry.relative_to(ROOT).as_posix()
            if entry.is_dir() and not entry.is_symlink():
                # skip big excluded trees (.venv, var, .git) nothing re-includes
                if _excluded(relative, rules) and not any(
                    p.startswith(re.escape(relative) + "/") or p.startswith(("(?:.*/)?", "[^/]*"))
                    for p in reincluded
                ):
                    continue
                yield from walk(entry)
            else:
                yield entry

    for path in walk(ROOT):
        relative = path.relative_to(ROOT).as_posix()
        if not _excluded(relative, rules):
            files.add(relative)
    return files


def worker_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> WorkerSettings:
    """WorkerSettings exactly as the container builds them: its env, then its command's flags."""
    service = services()[name]
    for key in [k for k in os.environ if k.startswith("CITYOPS_")]:
        monkeypatch.delenv(key)
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, str(value))
    [argv] = cityops_invocations(service["command"])
    args = parse_cli(argv)
    return WorkerSettings.from_env(
        bootstrap=args.bootstrap or os.environ.get("CITYOPS_BOOTSTRAP"), app_id=args.app_id,
        store=args.store, processing_guarantee=args.processing_guarantee,
        metrics_host=args.metrics_host, metrics_port=args.metrics_port, web_port=args.web_port,
        thresholds_path=args.thresholds, data_dir=args.data_dir,
    )


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(cityops_[a-z0-9_]+)\b", expr))


# --- compose ----------------------------------------------------------------------------------


def test_compose_parses_into_the_expected_services() -> None:
    data = compose()
    assert workers()[:2] == ["worker-1", "worker-2"]
    assert sorted(services()) == sorted(["kafka", *app_services(), "postgres", "prometheus",
                                         "grafana"])
    assert sorted(services("cluster")) == sorted(data["services"].keys() - services().keys()) == [
        "cluster-init", "cluster-simulator", "cluster-worker-1", "cluster-worker-2",
        "kafka-1", "kafka-2", "kafka-3"]
    assert sorted(data["volumes"]) == ["grafana-data", "history-data", "kafka-1-data",
                                       "kafka-2-data", "kafka-3-data", "kafka-data",
                                       "operator-accounts", "partner-tokens", "prometheus-data"]


def test_every_build_context_dockerfile_and_bind_mount_exists() -> None:
    built = {name: s["build"] for name, s in services().items() if "build" in s}
    assert sorted(built) == sorted(app_services())
    for name, build in built.items():
        context = ROOT / build["context"]
        assert context.resolve() == ROOT, name
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
    mounts = {name: bind_mounts(s) for name, s in services().items()}
    assert {name: m for name, m in mounts.items() if m} == {
        "prometheus": [("./deploy/prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml"),
                       ("./deploy/prometheus/rules.yml", "/etc/prometheus/rules.yml")],
        "grafana": [("./deploy/grafana/provisioning", "/etc/grafana/provisioning"),
                    ("./deploy/grafana/dashboards", "/etc/grafana/dashboards")],
        "postgres": [("./deploy/postgres/init-grafana-role.sh",
                      "/docker-entrypoint-initdb.d/init-grafana-role.sh")],
        "notifier": [("./deploy/notify", "/etc/cityops/notify")],
    }
    for service_mounts in mounts.values():
        for source, _ in service_mounts:
            assert (ROOT / source).exists(), source


def test_every_cityops_command_parses_with_the_real_cli() -> None:
    invocations = {name: cityops_invocations(s["command"])
                   for name, s in services().items() if "command" in s}
    for name, service in services().items():
        assert "entrypoint" not in service, name  # the image has no entrypoint to combine with
    assert {name: argv for name, argv in invocations.items() if argv} == {
        "init": [["topics", "create"], ["wards", "load"], ["assets", "load"]],
        **{name: [["worker", "--app-id", "cityops"]] for name in workers()},
        "gateway": [["gateway", "serve", "--host", "0.0.0.0", "--port", "8088"]],
        "simulator": [["simulate", "--bootstrap", "kafka:9092", "--rate", "20", "--realtime"]],
        "history-sink": [["history", "sink", "--app-id", "cityops"]],
        "notifier": [["notify", "--metrics-host", "0.0.0.0", "--metrics-port", "9110"]],
    }
    commands = [parse_cli(argv).command for argvs in invocations.values() for argv in argvs]
    assert commands == ["topics", "wards", "assets", *(["worker"] * len(workers())), "simulate",
                        "history", "notify", "gateway"]


def test_app_services_reach_kafka_inside_the_network() -> None:
    for name in app_services():
        assert services()[name]["environment"]["CITYOPS_BOOTSTRAP"] == "kafka:9092", name
        assert services()[name]["image"] == "cityops:local", name


def test_workers_share_an_app_id_and_prometheus_scrapes_each_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = {name: worker_settings(name, monkeypatch) for name in workers()}
    assert {s.app_id for s in settings.values()} == {"cityops"}
    assert [s.worker_id for s in settings.values()] == list(settings)
    assert {(s.bootstrap, s.metrics_host, s.metrics_port, s.web_host, s.web_port)
            for s in settings.values()} == {("kafka:9092", "0.0.0.0", 9108, "0.0.0.0", 6066)}
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "cityops-worker"]
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets == [f"{name}:{s.metrics_port}" for name, s in settings.items()]


def test_history_store_is_the_stacks_postgresql_for_the_sink_and_the_workers() -> None:
    """Issue 21: the sink writes and the workers' board reads the same store; the image is the
    major version of Debian's postgresql package the tests run (15)."""
    postgres = services()["postgres"]
    assert postgres["image"] == "postgres:15"
    env = postgres["environment"]
    url = (f"postgresql://{env['POSTGRES_USER']}:${{HISTORY_DB_PASSWORD:-cityops}}"
           f"@postgres:5432/{env['POSTGRES_DB']}")
    for name in ["history-sink", *workers()]:
        assert services()[name]["environment"]["CITYOPS_HISTORY_URL"] == url, name
        assert services()[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services()["grafana"]["environment"]["GRAFANA_DB_PASSWORD"] == env[
        "GRAFANA_DB_PASSWORD"]
    script = (ROOT / "deploy" / "postgres" / "init-grafana-role.sh").read_text()
    assert "GRANT SELECT ON TABLES TO grafana" in script


def test_the_gateway_listens_on_the_port_prometheus_scrapes_with_tokens_on_their_volume(
) -> None:
    service = services()["gateway"]
    [argv] = cityops_invocations(service["command"])
    args = parse_cli(argv)
    assert (args.command, args.action, args.host, args.port) == ("gateway", "serve", "0.0.0.0",
                                                                 8088)
    assert "127.0.0.1:18088:8088" in service["ports"]
    tokens_file = service["environment"]["CITYOPS_PARTNER_TOKENS_FILE"]
    assert service["volumes"] == ["partner-tokens:/var/lib/cityops/partner-tokens"]
    assert tokens_file.startswith("/var/lib/cityops/partner-tokens/")
    assert "/var/lib/cityops/partner-tokens" in (ROOT / "Dockerfile").read_text()
    assert "http://127.0.0.1:8088/healthz" in " ".join(service["healthcheck"]["test"])
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "cityops-gateway"]
    assert [t for group in job["static_configs"] for t in group["targets"]] == [
        f"gateway:{args.port}"]


def test_kafka_image_matches_the_local_brokers_major_version() -> None:
    image = services()["kafka"]["image"]
    name, tag = image.split(":")
    version = ET.parse(ROOT / "kafka-broker" / "pom.xml").getroot().find(
        "{http://maven.apache.org/POM/4.0.0}properties/{http://maven.apache.org/POM/4.0.0}"
        "kafka.version")
    assert version is not None and version.text is not None
    assert name == "apache/kafka"
    assert tag.split(".")[0] == version.text.split(".")[0] == "4"


NETWORK_SETTINGS = {"listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs",
                    "listener.security.protocol.map"}


def assert_mirrors(env: dict[str, str], local_properties: str) -> None:
    """Every local server.property but the network ones is the image's KAFKA_* variable."""
    local = dict(line.split("=", 1) for line in local_properties.splitlines() if line)

    def env_name(key: str) -> str:  # the image's rule: "." -> "_", "_" -> "__", "-" -> "___"
        return "KAFKA_" + key.replace("-", "___").replace("_", "__").replace(".", "_").upper()

    assert {k: env.get(env_name(k)) for k in local if k not in NETWORK_SETTINGS} == {
        k: v for k, v in local.items() if k not in NETWORK_SETTINGS}


def test_kafka_settings_mirror_the_local_broker() -> None:
    """Same server.properties as cityops/broker.py, except where the network differs."""
    env = {k: str(v) for k, v in services()["kafka"]["environment"].items()}
    assert_mirrors(env, server_properties(BrokerConfig(), Path("/data")))
    assert env["KAFKA_LISTENERS"] == "PLAINTEXT://:9092,CONTROLLER://:9093,HOST://:19092"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092,HOST://localhost:19092"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols == {"PLAINTEXT": "PLAINTEXT", "CONTROLLER": "PLAINTEXT", "HOST": "PLAINTEXT"}
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert ("kafka-data", "/var/lib/kafka/data") in [
        tuple(str(v).split(":")[:2]) for v in services()["kafka"]["volumes"]]
    # a KRaft cluster id is a base64url UUID: 22 characters, 16 bytes
    cluster_id = env["CLUSTER_ID"]
    assert len(cluster_id) == 22
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_cluster_profile_brokers_mirror_the_local_three_node_cluster() -> None:
    """`--profile cluster`: each node has the settings of `cityops broker start --nodes 3`."""
    brokers = {name: s for name, s in services("cluster").items() if name.startswith("kafka-")}
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"]
    local = BrokerConfig(nodes=3)
    ids = set()
    for node in local.node_list():
        name = f"kafka-{node.node_id}"
        service = brokers[name]
        env = {k: str(v) for k, v in service["environment"].items()}
        assert_mirrors(env, server_properties(local, Path("/data"), node=node))
        host_port = 19191 + node.node_id
        assert {key: env[key] for key in (
            "KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS",
            "KAFKA_HEAP_OPTS", "KAFKA_LOG_DIRS")} == {
            "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093",
            "KAFKA_LISTENERS": f"PLAINTEXT://:9092,CONTROLLER://:9093,HOST://:{host_port}",
            "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{name}:9092,HOST://localhost:{host_port}",
            "KAFKA_HEAP_OPTS": f"-Xms{CLUSTER_HEAP_MB}m -Xmx{CLUSTER_HEAP_MB}m",
            "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
        }
        assert service["volumes"] == [f"{name}-data:/var/lib/kafka/data"]
        assert service["image"] == services()["kafka"]["image"]
        ids.add(env["CLUSTER_ID"])
    assert len(ids) == 1  # one cluster: every node formats with the same id


def test_cluster_profile_apps_use_the_catalogs_cluster_profile_on_every_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    apps = {name: s for name, s in services("cluster").items() if name.startswith("cluster-")}
    assert {name: cityops_invocations(s["command"]) for name, s in apps.items()} == {
        "cluster-init": [["topics", "create"], ["wards", "load"], ["assets", "load"]],
        "cluster-worker-1": [["worker", "--app-id", "cityops"]],
        "cluster-worker-2": [["worker", "--app-id", "cityops"]],
        "cluster-simulator": [["simulate", "--rate", "20", "--realtime"]],
    }
    for name, service in apps.items():
        for argv in cityops_invocations(service["command"]):
            parse_cli(argv)
        env = {k: str(v) for k, v in service["environment"].items()}
        assert env["CITYOPS_BOOTSTRAP"] == "kafka-1:9092,kafka-2:9092,kafka-3:9092", name
        # the deployment's catalog: RF 3 / min ISR 2, and as many partitions as workers allow
        assert CatalogSettings.from_env(env) == CatalogSettings("", Profile.CLUSTER, 6, 2), name
    workers = [name for name in apps if name.startswith("cluster-worker-")]
    assert len(workers) == CatalogSettings.from_env(
        {k: str(v) for k, v in apps["cluster-init"]["environment"].items()}).workers
    for key in [k for k in os.environ if k.startswith("CITYOPS_")]:
        monkeypatch.delenv(key)
    for name in workers:
        for key, value in apps[name]["environment"].items():
            monkeypatch.setenv(key, str(value))
        settings = WorkerSettings.from_env(app_id="cityops")
        assert (settings.worker_id, settings.catalog.profile) == (name, Profile.CLUSTER)


# --- image --------------------------------------------------------------------------------------


def test_dockerfile_installs_the_project_from_a_context_with_everything_it_needs() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    assert [line for line in lines if line.startswith("FROM ")] == ["FROM python:3.11-slim"]
    copies = [shlex.split(line)[1:] for line in lines if line.startswith("COPY ")]
    assert copies == [[".", "."]]
    context = build_context()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools_config = pyproject["tool"]["setuptools"]
    needed = {"pyproject.toml"}
    for pattern in setuptools_config["packages"]["find"]["include"]:
        needed.add(f"{pattern.rstrip('*')}/__init__.py")
    for package, patterns in setuptools_config["package-data"].items():
        for pattern in patterns:
            matches = [p for p in (ROOT / package).glob(pattern) if p.is_file()]
            assert matches, f"{package}/{pattern} matches nothing"
            needed.update(p.relative_to(ROOT).as_posix() for p in matches)
    readme = pyproject["project"].get("readme")
    if readme and (ROOT / readme).exists():
        needed.add(readme)
    assert needed - context == set()
    assert not [f for f in context if f.split("/")[0] in (".venv", "var", "kafka", ".git", "tests")]
    assert not [f for f in context if "__pycache__" in f or f.endswith(".pyc")]


# --- Prometheus -----------------------------------------------------------------------------------


def test_prometheus_config_passes_promtool() -> None:
    result = run_promtool("check", "config", "deploy/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: deploy/prometheus/prometheus.yml is valid prometheus config file syntax" in (
        result.stdout + result.stderr)


def test_prometheus_rules_pass_promtool_and_their_unit_tests() -> None:
    check = run_promtool("check", "rules", "deploy/prometheus/rules.yml")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 12 rules found" in check.stdout + check.stderr
    tested = run_promtool("test", "rules", "rules.test.yml", cwd=PROMETHEUS_DIR)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_rules_only_use_metrics_the_worker_exports() -> None:
    exported = exported_metric_names()
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())
    used = {name for group in rules["groups"] for rule in group["rules"]
            for name in metric_names_in(rule["expr"])}
    assert used - exported == set()


# --- Grafana ------------------------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    """Every sample name a worker, the gateway or the notifier can expose (histogram and
    counter suffixes included)."""
    from cityops.gateway import GatewayMetrics

    names: set[str] = set()
    families = [*WorkerMetrics().registry.collect(), *GatewayMetrics().registry.collect(),
                *NOTIFY_REGISTRY.collect()]
    for family in families:
        base = family.name
        if family.type == "counter":
            names.update({f"{base}_total", f"{base}_created"})
        elif family.type == "histogram":
            names.update({f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"})
        else:
            names.add(base)
    return names


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard() -> None:
    provisioning = GRAFANA_DIR / "provisioning"
    [datasource] = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert (datasource["type"], datasource["uid"], datasource["url"]) == (
        "prometheus", "cityops-prometheus", "http://prometheus:9090")
    scrape_interval = yaml.safe_load(
        (PROMETHEUS_DIR / "prometheus.yml").read_text())["global"]["scrape_interval"]
    assert datasource["jsonData"]["timeInterval"] == scrape_interval
    assert "127.0.0.1:9090:9090" in services()["prometheus"]["ports"]

    [provider] = yaml.safe_load(
        (provisioning / "dashboards" / "cityops.yml").read_text())["providers"]
    mounts = dict(bind_mounts(services()["grafana"]))
    assert {target: source for source, target in mounts.items()}[
        provider["options"]["path"]] == "./deploy/grafana/dashboards"
    env = services()["grafana"]["environment"]
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:-cityops}"
    assert (env["GF_AUTH_ANONYMOUS_ENABLED"], env["GF_AUTH_ANONYMOUS_ORG_ROLE"]) == (
        "true", "Viewer")


def test_dashboard_panels_each_have_the_datasource_and_queries() -> None:
    board = dashboard()
    panels = board["panels"]
    assert len(panels) == 15
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "cityops-prometheus"}, panel
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert target["expr"].strip(), panel["title"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    used = set().union(*(metric_names_in(e) for e in exprs))
    assert used - exported_metric_names() == set()
    assert {
        "cityops_ward_situation_level", "cityops_kecamatan_situation_level",
        "cityops_open_incidents", "cityops_lamps_working_ratio", "cityops_containers_full",
        "cityops_incident_dispatch_seconds_bucket", "cityops_incident_on_scene_seconds_bucket",
        "cityops_events_consumed_total", "cityops_events_rejected_total",
        "cityops_ingest_to_situation_seconds_bucket", "cityops_event_age_seconds_bucket",
        "cityops_gateway_requests_total", "cityops_gateway_records_total",
        "cityops_gateway_answer_seconds_bucket",
    } - used == set()


def test_ward_level_table_colours_levels_like_the_situation_board() -> None:
    [table] = [p for p in dashboard()["panels"] if p["title"] == "Ward levels (kelurahan)"]
    assert table["type"] == "table"
    assert [t["format"] for t in table["targets"]] == ["table"]
    [override] = table["fieldConfig"]["overrides"]
    assert override["matcher"] == {"id": "byName", "options": "level"}
    properties = {p["id"]: p["value"] for p in override["properties"]}
    [mapping] = properties["mappings"]
    assert {value: (o["text"], o["color"]) for value, o in mapping["options"].items()} == {
        "0": ("NORMAL", "green"), "1": ("WATCH", "yellow"), "2": ("ALERT", "orange"),
        "3": ("CRITICAL", "red"), "-1": ("UNKNOWN", "text"),
    }
    assert properties["custom.cellOptions"]["type"] == "color-background"
    [organize] = table["transformations"]
    assert organize["options"]["renameByName"]["Value"] == "level"
    assert {k for k, v in organize["options"]["excludeByName"].items() if v} == {
        "Time", "__name__", "instance", "job"}
