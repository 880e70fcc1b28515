"""The local Apache Kafka broker: fetched from Maven Central, run from its own jars.

One KRaft node acts as broker and controller on loopback. The jars come from the small pom in
`kafka-broker/` (Maven resolves `org.apache.kafka:kafka_2.13` and a log4j backend), storage is
formatted once, and the process runs detached with its pid in `var/kafka/broker.pid`, so the
same `cityops broker start` serves a developer, the tests and CI.
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


@dataclass(frozen=True)
class BrokerConfig:
    """Ports and sizes of the local broker; defaults fit a 2-core machine shared with workers."""

    port: int = 9092
    controller_port: int = 9093
    heap_mb: int = 512
    start_timeout_s: float = 120.0
    #: SASL/SCRAM on the client listener and ACLs enforced (see cityops/security.py).
    secure: bool = False

    @classmethod
    def from_env(cls, port: int | None = None, secure: bool = False) -> BrokerConfig:
        """Port from the flag, else `CITYOPS_KAFKA_PORT`, else 9092; controller on port + 1."""
        chosen = port or int(os.environ.get("CITYOPS_KAFKA_PORT", "9092"))
        return cls(
            port=chosen,
            controller_port=int(os.environ.get("CITYOPS_KAFKA_CONTROLLER_PORT", chosen + 1)),
            heap_mb=int(os.environ.get("CITYOPS_KAFKA_HEAP_MB", "512")),
            secure=secure,
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def broker_dir() -> Path:
    return var_dir() / "kafka"


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
                      admin_password: str | None = None) -> str:
    """A single-node KRaft configuration: every replication setting is 1, there is one node."""
    if config.secure:
        from cityops.security import broker_listener_properties

        if admin_password is None:
            raise BrokerError("a secured broker needs the admin password")
        listeners = broker_listener_properties(config.port, config.controller_port,
                                               admin_password)
    else:
        listeners = [
            f"controller.quorum.voters=1@127.0.0.1:{config.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{config.port},"
            f"CONTROLLER://127.0.0.1:{config.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{config.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ]
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        *listeners,
        f"log.dirs={data_dir}",
        "num.partitions=1",
        "num.network.threads=2",
        "num.io.threads=2",
        "background.threads=2",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=8",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=4",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "log.segment.bytes=67108864",
        "log.cleaner.threads=1",
        "",
    ])


def _java_command(config: BrokerConfig, main: str, *args: str) -> list[str]:
    java = _require("java", "Java 17 (Debian: apt-get install openjdk-17-jdk-headless)")
    logs = broker_dir() / "logs"
    return [
        java, f"-Xms{config.heap_mb}m", f"-Xmx{config.heap_mb}m", "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={kafka_home() / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={logs}",
        "-cp", str(libs_dir() / "*"), main, *args,
    ]


def _read_pid() -> int | None:
    try:
        pid = int(_pid_file().read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    return pid if KAFKA_MAIN.encode() in cmdline else None


def port_answers(port: int, host: str = "127.0.0.1", **security: str) -> bool:
    """True when the broker's listener accepts connections and answers a metadata request.

    `security` holds client settings (SASL) for a secured broker's listener.
    """
    try:
        with socket.create_connection((host, port), timeout=1.0):
            pass
    except OSError:
        return False
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=f"{host}:{port}", request_timeout_ms=5000,
                                 **security)
    except Exception:
        return False
    try:
        admin.describe_cluster()
        return True
    except Exception:
        return False
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
    pid = _read_pid()
    if pid is None:
        return "stopped"
    answers = port_answers(config.port, **_probe_security(config))
    return f"running (pid {pid}, {config.bootstrap})" if answers else (
        f"starting or unhealthy (pid {pid}); log: {log_file()}"
    )


def _format_storage(config: BrokerConfig, properties: Path, data_dir: Path,
                    admin_password: str | None = None) -> None:
    if (data_dir / "meta.properties").exists():
        return
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    extra: list[str] = []
    if config.secure:
        from cityops.security import format_scram_arguments

        assert admin_password is not None
        extra = format_scram_arguments(admin_password)
    result = subprocess.run(
        _java_command(config, STORAGE_TOOL, "format", "-t", cluster_id, "-c", str(properties),
                      *extra),
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise BrokerError("formatting Kafka storage failed: " + result.stderr.strip()[-400:])
    if config.secure:
        _secured_marker().touch()


def start(config: BrokerConfig) -> str:
    """Start the broker unless it already runs; returns what was done."""
    admin_password: str | None = None
    if config.secure:
        from cityops.security import ADMIN, ensure_credentials

        admin_password = ensure_credentials()[ADMIN]
    security = _probe_security(config)
    running = _read_pid()
    if running is not None:
        # Started by us (pid file) and perhaps still coming up: wait for it rather than launch
        # a second broker on the same port and data directory.
        if _wait_answering(config, None, security):
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
    base = broker_dir()
    data_dir = base / "data"
    (base / "logs").mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    if (data_dir / "meta.properties").exists() and config.secure != _secured_marker().exists():
        # A plain start on secured storage would serve its topics without authentication; a
        # secured start on plain storage would lack the admin user it authenticates with.
        raise BrokerError(
            f"storage in {data_dir} was formatted {'without' if config.secure else 'with'} "
            f"SCRAM users; start it {'without' if config.secure else 'with'} --secure, or "
            "give the other mode its own CITYOPS_VAR_DIR")
    properties = base / "server.properties"
    if config.secure:
        # The secured file holds the admin password (JAAS lines): readable by its owner only.
        properties.touch()
        properties.chmod(0o600)
    properties.write_text(server_properties(config, data_dir, admin_password))
    _format_storage(config, properties, data_dir, admin_password)
    stdout = (base / "logs" / "stdout.log").open("ab")
    process = subprocess.Popen(
        _java_command(config, KAFKA_MAIN, str(properties)),
        stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    _pid_file().write_text(str(process.pid))
    if _wait_answering(config, process, security):
        return (f"started on {config.bootstrap}{' (SASL/SCRAM, ACLs)' if config.secure else ''}"
                f" (pid {process.pid}); log: {log_file()}")
    # Do not leave a half-started broker behind with a pid file that says it runs.
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    _pid_file().unlink(missing_ok=True)
    raise BrokerError(f"Kafka did not answer on {config.bootstrap} in "
                      f"{config.start_timeout_s:.0f}s and was stopped; see {log_file()}")


def _wait_answering(config: BrokerConfig, process: subprocess.Popen[bytes] | None,
                    security: dict[str, str]) -> bool:
    """Wait until the broker answers on its port; False after the start timeout."""
    deadline = time.monotonic() + config.start_timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            _pid_file().unlink(missing_ok=True)
            raise BrokerError(
                f"Kafka exited with code {process.returncode} while starting; see {log_file()}"
            )
        if process is None and _read_pid() is None:
            return False
        if port_answers(config.port, **security):
            return True
        time.sleep(0.5)
    return False


def stop(timeout_s: float = 60.0) -> str:
    """Stop with SIGTERM (Kafka flushes and closes its logs); SIGKILL only as a last resort."""
    pid = _read_pid()
    if pid is None:
        _pid_file().unlink(missing_ok=True)
        return "not running"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _read_pid() is None or _is_zombie(pid):
            _pid_file().unlink(missing_ok=True)
            return f"stopped (pid {pid})"
        time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    _pid_file().unlink(missing_ok=True)
    return f"killed after {timeout_s:.0f}s (pid {pid})"


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def reset() -> str:
    """Delete the broker's data (topics, offsets) after stopping it: a clean city."""
    stop()
    shutil.rmtree(broker_dir() / "data", ignore_errors=True)
    _secured_marker().unlink(missing_ok=True)
    return "broker data deleted"


def main_error(error: BrokerError) -> int:
    print(f"cityops broker: {error}", file=sys.stderr)
    return 2
