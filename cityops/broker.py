"""The local Apache Kafka broker: fetched from Maven Central, run from its own jars.

One KRaft node acts as broker and controller on loopback. The jars come from the small pom in
`kafka-broker/` (Maven resolves `org.apache.kafka:kafka_2.13` and a log4j backend), storage is
formatted once, and the process runs detached with its pid in `var/kafka/broker.pid`, so the
same `cityops broker start` serves a developer, the tests and CI.

`--nodes 3` runs a cluster from the same jars instead: three combined broker+controller nodes
(a quorum of three voters, so losing any one keeps a majority), each in `var/kafka-cluster/
node-N/` with its client port at base + 2(N-1) and its controller port one above, and
replication factor 3 / min ISR 2 for Kafka's own topics, so one node can be lost without losing
a committed record or stopping `acks=all` producers.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from core.paths import kafka_home, var_dir

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


class BrokerError(RuntimeError):
    """A broker operation failed; the message is one line a person can act on."""


#: Heap of one node of a cluster: three of them, two workers and a test run fit in 24 GiB and
#: leave the page cache most of the memory (Kafka reads recent data from it, not the heap).
CLUSTER_HEAP_MB = 384
SINGLE_HEAP_MB = 512


@dataclass(frozen=True)
class Node:
    """One Kafka process: its KRaft node id, its two ports and the folder it keeps its files in."""

    node_id: int
    port: int
    controller_port: int
    home: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def properties(self) -> Path:
        return self.home / "server.properties"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "server.log"


@dataclass(frozen=True)
class BrokerConfig:
    """Ports and sizes of the local broker; defaults fit a 2-core machine shared with workers."""

    port: int = 9092
    controller_port: int = 9093
    heap_mb: int = SINGLE_HEAP_MB
    start_timeout_s: float = 120.0
    #: SASL/SCRAM on the client listener and ACLs enforced (see cityops/security.py).
    secure: bool = False
    #: 1: the single demo node; 3: a replicated cluster of combined broker+controller nodes.
    nodes: int = 1

    @classmethod
    def from_env(cls, port: int | None = None, secure: bool = False,
                 nodes: int = 1) -> BrokerConfig:
        """Port from the flag, else `CITYOPS_KAFKA_PORT`, else 9092; controller on port + 1."""
        if nodes < 1:
            raise BrokerError(f"--nodes must be at least 1, not {nodes}")
        if nodes > 1 and secure:
            raise BrokerError("--secure runs on the single node only; start the cluster "
                              "without it")
        chosen = port or int(os.environ.get("CITYOPS_KAFKA_PORT", "9092"))
        default_heap = SINGLE_HEAP_MB if nodes == 1 else CLUSTER_HEAP_MB
        return cls(
            port=chosen,
            controller_port=int(os.environ.get("CITYOPS_KAFKA_CONTROLLER_PORT", chosen + 1)),
            heap_mb=int(os.environ.get("CITYOPS_KAFKA_HEAP_MB", default_heap)),
            secure=secure,
            nodes=nodes,
        )

    def node_list(self) -> list[Node]:
        """The processes of this deployment: the single node keeps its historic `var/kafka/`
        layout; node N of a cluster uses ports base + 2(N-1) and base + 2(N-1) + 1."""
        if self.nodes == 1:
            return [Node(1, self.port, self.controller_port, broker_dir())]
        return [Node(n, self.port + 2 * (n - 1), self.port + 2 * (n - 1) + 1,
                     cluster_dir() / f"node-{n}")
                for n in range(1, self.nodes + 1)]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.node_list())


def broker_dir() -> Path:
    return var_dir() / "kafka"


def cluster_dir() -> Path:
    """Apart from the single node's folder, so a checkout can keep both and `reset` of one
    never deletes the other's data."""
    return var_dir() / "kafka-cluster"


def libs_dir() -> Path:
    return kafka_home() / "libs"


def _pid_file() -> Path:
    return broker_dir() / "broker.pid"


def log_file() -> Path:
    return broker_dir() / "logs" / "server.log"


def _secured_marker() -> Path:
    """Present when storage was formatted with the admin SCRAM user (secured mode)."""
    return broker_dir() / "secured"


def _require(tool: str, install_hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"{tool} not found on PATH: install {install_hint}")
    return path


def fetch_jars(quiet: bool = True) -> Path:
    """Download Kafka's jars once; later calls return at once."""
    libs = libs_dir()
    if any(libs.glob("kafka_2.13-*.jar")):
        return libs
    _require("java", "Java 17 (Debian: apt-get install openjdk-17-jdk-headless)")
    mvn = _require("mvn", "Maven (Debian: apt-get install maven)")
    command = [
        mvn, "-B", "-f", str(kafka_home() / "pom.xml"), DEPENDENCY_PLUGIN,
        f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
    ]
    if quiet:
        command.insert(2, "-q")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise BrokerError("fetching Kafka jars with Maven failed: " + " | ".join(tail))
    return libs


def server_properties(config: BrokerConfig, data_dir: Path,
                      admin_password: str | None = None, node: Node | None = None) -> str:
    """The KRaft configuration of one node.

    Single node: every replication setting is 1. Cluster: every node is a voter of a static
    quorum (`controller.quorum.voters`; the node set is fixed by `--nodes`, so the dynamic
    quorum's `--initial-controllers` would only add directory ids to carry around), and Kafka's
    own topics and the broker defaults get replication factor 3 and min ISR 2.
    """
    node = node or config.node_list()[0]
    if config.secure:
        from cityops.security import broker_listener_properties

        if admin_password is None:
            raise BrokerError("a secured broker needs the admin password")
        listeners = broker_listener_properties(node.port, node.controller_port, admin_password)
    else:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}"
                          for n in config.node_list())
        listeners = [
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://127.0.0.1:{node.port},"
            f"CONTROLLER://127.0.0.1:{node.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ]
    replicas, min_isr = replication(config.nodes)
    cluster = [
        f"default.replication.factor={replicas}",
        f"min.insync.replicas={min_isr}",
        # Never elect a replica that missed committed records: losing data silently is worse
        # than a partition that waits for an in-sync replica (Kafka's default, said here).
        "unclean.leader.election.enable=false",
    ] if config.nodes > 1 else []
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node.node_id}",
        *listeners,
        f"log.dirs={data_dir}",
        "num.partitions=1",
        "num.network.threads=2",
        "num.io.threads=2",
        "background.threads=2",
        f"offsets.topic.replication.factor={replicas}",
        "offsets.topic.num.partitions=8",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min_isr}",
        "transaction.state.log.num.partitions=4",
        f"share.coordinator.state.topic.replication.factor={replicas}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        *cluster,
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "log.segment.bytes=67108864",
        "log.cleaner.threads=1",
        "",
    ])


def replication(nodes: int) -> tuple[int, int]:
    """Replication factor and min ISR for `nodes` brokers: 3 and 2 from three nodes up, so
    one broker may be down while `acks=all` writes still reach two copies."""
    replicas = min(nodes, 3)
    return replicas, max(1, replicas - 1)


def _java_command(config: BrokerConfig, main: str, *args: str, node: Node | None = None
                  ) -> list[str]:
    java = _require("java", "Java 17 (Debian: apt-get install openjdk-17-jdk-headless)")
    logs = (node.home if node else broker_dir()) / "logs"
    return [
        java, f"-Xms{config.heap_mb}m", f"-Xmx{config.heap_mb}m", "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={kafka_home() / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={logs}",
        "-cp", str(libs_dir() / "*"), main, *args,
    ]


def _read_pid(pid_file: Path | None = None) -> int | None:
    try:
        pid = int((pid_file or _pid_file()).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    return pid if KAFKA_MAIN.encode() in cmdline and not _is_zombie(pid) else None


def port_answers(port: int, host: str = "127.0.0.1", **security: str) -> bool:
    """True when the broker's listener accepts connections and answers a metadata request.

    `security` holds client settings (SASL) for a secured broker's listener.
    """
    return _cluster_size(port, host, **security) is not None


def _cluster_size(port: int, host: str = "127.0.0.1", **security: str) -> int | None:
    """How many brokers the cluster behind `port` lists, or None when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            pass
    except OSError:
        return None
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=f"{host}:{port}", request_timeout_ms=5000,
                                 **security)
    except Exception:
        return None
    try:
        return len(admin.describe_cluster()["brokers"])
    except Exception:
        return None
    finally:
        admin.close()


def _probe_security(config: BrokerConfig) -> dict[str, str]:
    """The admin's SASL settings when this broker is (or was formatted) secured, else none."""
    if not (config.secure or _secured_marker().exists()):
        return {}
    from cityops.security import admin_client_config
    from core.connection import SecurityError

    try:
        return admin_client_config()
    except SecurityError as error:
        raise BrokerError(str(error)) from error


def status(config: BrokerConfig) -> str:
    """One line for the single node; for a cluster a summary line, then one line per node."""
    if config.nodes > 1:
        return _cluster_status(config)
    pid = _read_pid()
    if pid is None:
        return "stopped"
    answers = port_answers(config.port, **_probe_security(config))
    return f"running (pid {pid}, {config.bootstrap})" if answers else (
        f"starting or unhealthy (pid {pid}); log: {log_file()}"
    )


def _cluster_status(config: BrokerConfig) -> str:
    lines = []
    answering = 0
    for node in config.node_list():
        pid = _read_pid(node.pid_file)
        if pid is None:
            state = "stopped"
        elif port_answers(node.port):
            state = f"running (pid {pid})"
            answering += 1
        else:
            state = f"starting or unhealthy (pid {pid}); log: {node.log_file}"
        lines.append(f"node {node.node_id} {node.bootstrap}: {state}")
    head = ("running" if answering == config.nodes else "degraded" if answering else "stopped")
    return "\n".join([f"{head} ({answering}/{config.nodes} nodes, {config.bootstrap})", *lines])


def _format_storage(config: BrokerConfig, properties: Path, data_dir: Path,
                    admin_password: str | None = None, cluster_id: str | None = None,
                    node: Node | None = None) -> None:
    if (data_dir / "meta.properties").exists():
        return
    cluster_id = cluster_id or _new_cluster_id()
    extra: list[str] = []
    if config.secure:
        from cityops.security import format_scram_arguments

        assert admin_password is not None
        extra = format_scram_arguments(admin_password)
    result = subprocess.run(
        _java_command(config, STORAGE_TOOL, "format", "-t", cluster_id, "-c", str(properties),
                      *extra, node=node),
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise BrokerError("formatting Kafka storage failed: " + result.stderr.strip()[-400:])
    if config.secure:
        _secured_marker().touch()


def _new_cluster_id() -> str:
    """A random KRaft cluster id, as Kafka's `Uuid.randomUuid` makes one: never starting with
    "-", which the storage tool would read as an option (1 id in 64 did, and formatting failed
    with "argument --cluster-id/-t: expected one argument")."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _launch(config: BrokerConfig, node: Node) -> subprocess.Popen[bytes]:
    """Run one formatted node detached (its own session: a Ctrl-C of the CLI leaves it up)."""
    stdout = (node.home / "logs" / "stdout.log").open("ab")
    process = subprocess.Popen(
        _java_command(config, KAFKA_MAIN, str(node.properties), node=node),
        stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    node.pid_file.write_text(str(process.pid))
    return process


def _abandon(process: subprocess.Popen[bytes], node: Node) -> None:
    """Do not leave a half-started node behind with a pid file that says it runs."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    node.pid_file.unlink(missing_ok=True)


def start(config: BrokerConfig) -> str:
    """Start the broker unless it already runs; returns what was done."""
    if config.nodes > 1:
        return _start_cluster(config)
    [node] = config.node_list()
    admin_password: str | None = None
    if config.secure:
        from cityops.security import ADMIN, ensure_credentials

        admin_password = ensure_credentials()[ADMIN]
    security = _probe_security(config)
    running = _read_pid()
    if running is not None:
        # Started by us (pid file) and perhaps still coming up: wait for it rather than launch
        # a second broker on the same port and data directory.
        if _wait_answering(config, node, None, security):
            return f"already running on {config.bootstrap}"
        if _read_pid() is not None:
            raise BrokerError(f"a broker process (pid {running}) exists but does not answer on "
                              f"{config.bootstrap}; run `cityops broker stop`; see {log_file()}")
        # It died while we waited: start a new one below.
    if port_answers(config.port, **security):
        # Another checkout's (or another user's) broker: a second one could not bind the port,
        # and waiting for "the port answers" would then report a start that never happened.
        return (f"a broker this checkout did not start already answers on {config.bootstrap}; "
                f"using it (`cityops broker stop` here will not stop it; set "
                f"CITYOPS_KAFKA_PORT for a broker of this checkout's own)")
    fetch_jars()
    (node.home / "logs").mkdir(parents=True, exist_ok=True)
    node.data_dir.mkdir(parents=True, exist_ok=True)
    if (node.data_dir / "meta.properties").exists() and config.secure != _secured_marker().exists():
        # A plain start on secured storage would serve its topics without authentication; a
        # secured start on plain storage would lack the admin user it authenticates with.
        raise BrokerError(
            f"storage in {node.data_dir} was formatted "
            f"{'without' if config.secure else 'with'} SCRAM users; start it "
            f"{'without' if config.secure else 'with'} --secure, or "
            "give the other mode its own CITYOPS_VAR_DIR")
    if config.secure:
        # The secured file holds the admin password (JAAS lines): readable by its owner only.
        node.properties.touch()
        node.properties.chmod(0o600)
    node.properties.write_text(server_properties(config, node.data_dir, admin_password))
    _format_storage(config, node.properties, node.data_dir, admin_password)
    process = _launch(config, node)
    if _wait_answering(config, node, process, security):
        return (f"started on {config.bootstrap}{' (SASL/SCRAM, ACLs)' if config.secure else ''}"
                f" (pid {process.pid}); log: {log_file()}")
    _abandon(process, node)
    raise BrokerError(f"Kafka did not answer on {config.bootstrap} in "
                      f"{config.start_timeout_s:.0f}s and was stopped; see {log_file()}")


def _start_cluster(config: BrokerConfig) -> str:
    """Start every node of the cluster that is not running (all of them at first; after a
    crash only the lost one, which then catches up and rejoins the ISR) and wait until the
    cluster lists all of its brokers."""
    nodes = config.node_list()
    missing = [node for node in nodes if _read_pid(node.pid_file) is None]
    for node in missing:
        if port_answers(node.port):
            raise BrokerError(f"port {node.port} (node {node.node_id}) already answers for a "
                              "broker this checkout did not start; choose another base port "
                              "with --port or CITYOPS_KAFKA_PORT")
    if missing:
        fetch_jars()
    # Every node is formatted with the same cluster id, kept beside them so a node formatted
    # later (its folder deleted) still joins the same cluster.
    id_file = cluster_dir() / "cluster.id"
    cluster_dir().mkdir(parents=True, exist_ok=True)
    if not id_file.exists():
        id_file.write_text(_new_cluster_id())
    cluster_id = id_file.read_text().strip()
    launched: list[tuple[Node, subprocess.Popen[bytes]]] = []
    for node in missing:
        (node.home / "logs").mkdir(parents=True, exist_ok=True)
        node.data_dir.mkdir(parents=True, exist_ok=True)
        node.properties.write_text(server_properties(config, node.data_dir, node=node))
        _format_storage(config, node.properties, node.data_dir, cluster_id=cluster_id,
                        node=node)
    for node in missing:
        launched.append((node, _launch(config, node)))
    deadline = time.monotonic() + config.start_timeout_s
    try:
        while time.monotonic() < deadline:
            for node, process in launched:
                if process.poll() is not None:
                    node.pid_file.unlink(missing_ok=True)
                    raise BrokerError(f"Kafka node {node.node_id} exited with code "
                                      f"{process.returncode} while starting; see "
                                      f"{node.log_file}")
            if all(_cluster_size(node.port) == config.nodes for node in nodes):
                started = ", ".join(f"{node.node_id} (pid {process.pid})"
                                    for node, process in launched)
                if not launched:
                    return f"already running on {config.bootstrap}"
                return (f"started node{'s' if len(launched) > 1 else ''} {started}; "
                        f"cluster of {config.nodes} on {config.bootstrap}; "
                        f"logs: {cluster_dir()}/node-N/logs")
            time.sleep(0.5)
    except BrokerError:
        for node, process in launched:
            _abandon(process, node)
        raise
    for node, process in launched:
        _abandon(process, node)
    raise BrokerError(f"the {config.nodes}-node cluster did not list all of its brokers on "
                      f"{config.bootstrap} in {config.start_timeout_s:.0f}s; the nodes "
                      f"started now were stopped; see {cluster_dir()}/node-N/logs")


def _wait_answering(config: BrokerConfig, node: Node,
                    process: subprocess.Popen[bytes] | None, security: dict[str, str]) -> bool:
    """Wait until the broker answers on its port; False after the start timeout."""
    deadline = time.monotonic() + config.start_timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            node.pid_file.unlink(missing_ok=True)
            raise BrokerError(
                f"Kafka exited with code {process.returncode} while starting; see {log_file()}"
            )
        if process is None and _read_pid(node.pid_file) is None:
            return False
        if port_answers(node.port, **security):
            return True
        time.sleep(0.5)
    return False


def _cluster_pid_files() -> list[Path]:
    return sorted(cluster_dir().glob("node-*/broker.pid"))


def stop(timeout_s: float = 60.0) -> str:
    """Stop every Kafka process this checkout started: the single node and any cluster nodes.

    SIGTERM first (Kafka flushes and closes its logs, and a leader hands its partitions over);
    SIGKILL only as a last resort. Cluster nodes get SIGTERM together: stopped one after the
    other, the last one would wait for a quorum that has already gone (a minute, then SIGKILL).
    """
    running: dict[Path, int] = {}
    for pid_file in [_pid_file(), *_cluster_pid_files()]:
        pid = _read_pid(pid_file)
        if pid is None:
            pid_file.unlink(missing_ok=True)
        else:
            running[pid_file] = pid
            os.kill(pid, signal.SIGTERM)
    if not running:
        return "not running"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_read_pid(f) is not None for f in running):
        time.sleep(0.3)
    outcomes = []
    for pid_file, pid in running.items():
        if _read_pid(pid_file) is None:
            outcomes.append(f"stopped (pid {pid})")
        else:
            os.kill(pid, signal.SIGKILL)
            outcomes.append(f"killed after {timeout_s:.0f}s (pid {pid})")
        pid_file.unlink(missing_ok=True)
    return "; ".join(outcomes)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def reset() -> str:
    """Delete the broker's data (topics, offsets) after stopping it: a clean city."""
    stop()
    shutil.rmtree(broker_dir() / "data", ignore_errors=True)
    shutil.rmtree(cluster_dir(), ignore_errors=True)
    _secured_marker().unlink(missing_ok=True)
    return "broker data deleted"


def main_error(error: BrokerError) -> int:
    print(f"cityops broker: {error}", file=sys.stderr)
    return 2
