"""A private PostgreSQL server for the history store: Debian's `postgresql`, run by the project.

Like `cityops/broker.py` does for Kafka: `cityops db start` finds the server binaries of
Debian's package (`/usr/lib/postgresql/<version>/bin`, which Debian keeps off PATH), runs
`initdb` once into `var/postgres/data`, and `pg_ctl` starts it on loopback on a private port
(`CITYOPS_PG_PORT`, default 5439) with its socket in `var/postgres/`, so it never meets a
system cluster on 5432. The superuser `cityops` gets a random password (`var/postgres/password`,
mode 0600) and SCRAM authentication; `cityops db url` prints the URL for `CITYOPS_HISTORY_URL`.

PostgreSQL refuses to run as root. Run by root (CI, our machines), every server command runs as
the unprivileged `postgres` system user the Debian package creates (`subprocess`'s `user=`), and
`var/postgres/` is handed to that user; run by anyone else, it runs as that user.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from core.paths import var_dir

PORT_VARIABLE: Final = "CITYOPS_PG_PORT"
DEFAULT_PORT: Final = 5439
SUPERUSER: Final = "cityops"
DATABASE: Final = "cityops"
SERVICE_USER: Final = "postgres"


class DatabaseError(RuntimeError):
    """A server operation failed; the message is one line a person can act on."""


HOME_VARIABLE: Final = "CITYOPS_PG_HOME"


def home() -> Path:
    """`var/postgres`, or `CITYOPS_PG_HOME` (the tests' own server)."""
    chosen = os.environ.get(HOME_VARIABLE)
    return Path(chosen).resolve() if chosen else var_dir().resolve() / "postgres"


def data_dir() -> Path:
    return home() / "data"


def password_file() -> Path:
    return home() / "password"


def log_path() -> Path:
    return home() / "server.log"


def port() -> int:
    return int(os.environ.get(PORT_VARIABLE, DEFAULT_PORT))


def binaries() -> Path:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise DatabaseError("PostgreSQL server binaries not found: install Debian's postgresql "
                        "package (apt-get install postgresql; scripts/system-packages does it)")


@dataclass(frozen=True)
class _RunAs:
    """Who runs the server: the `postgres` user when we are root, else ourselves."""

    user: str | None

    @classmethod
    def choose(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls(None)
        try:
            import pwd

            pwd.getpwnam(SERVICE_USER)
        except KeyError as error:
            raise DatabaseError(f"running as root and there is no {SERVICE_USER!r} user to run "
                                "PostgreSQL as (the postgresql package creates it)") from error
        return cls(SERVICE_USER)

    def run(self, command: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {}
        if self.user is not None:
            extra = {"user": self.user, "group": self.user, "extra_groups": []}
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False, cwd="/", **extra)

    def own(self, path: Path) -> None:
        if self.user is None:
            return
        for root, dirs, files in os.walk(path):
            for name in [root, *(os.path.join(root, d) for d in dirs),
                         *(os.path.join(root, f) for f in files)]:
                shutil.chown(name, self.user, self.user)


def reachable(path: Path) -> bool:
    """Whether the server's user can pass through `path` (always, when that is us)."""
    runner = _RunAs.choose()
    return runner.user is None or runner.run(["test", "-x", str(path)]).returncode == 0


def _password() -> str:
    path = password_file()
    if path.exists():
        return path.read_text().strip()
    home().mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(18)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def url() -> str:
    """The history store URL of the private server (`CITYOPS_HISTORY_URL`)."""
    return f"postgresql://{SUPERUSER}:{_password()}@127.0.0.1:{port()}/{DATABASE}"


def _initdb(runner: _RunAs) -> None:
    home().mkdir(parents=True, exist_ok=True)
    password = _password()
    pwfile = home() / "initdb-password"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    runner.own(home())
    if runner.run(["test", "-w", str(home())]).returncode != 0:
        raise DatabaseError(f"the {runner.user} user cannot write {home()}: a folder above it "
                            f"is closed to other users; set {HOME_VARIABLE} to a folder it "
                            "can reach")
    try:
        result = runner.run([str(binaries() / "initdb"), "-D", str(data_dir()),
                             "--username", SUPERUSER, "--pwfile", str(pwfile),
                             "--auth", "scram-sha-256", "--encoding", "UTF8",
                             "--locale", "C.UTF-8"])
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise DatabaseError("initdb failed: " + " | ".join(
            (result.stdout + result.stderr).strip().splitlines()[-3:]))


def status() -> str:
    result = _RunAs.choose().run([str(binaries() / "pg_ctl"), "status", "-D", str(data_dir())])
    if result.returncode == 0:
        return f"running on 127.0.0.1:{port()} (data {data_dir()})"
    return "stopped"


def _answers(timeout_s: float) -> bool:
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(url().rsplit("/", 1)[0] + "/postgres", connect_timeout=3):
                return True
        except psycopg.OperationalError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.3)


def _create_database() -> None:
    import psycopg

    with psycopg.connect(url().rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (DATABASE,)).fetchone()
        if exists is None:
            conn.execute(f"CREATE DATABASE {DATABASE}")


def start() -> str:
    """Start the private server (initdb on first use); a server already answering is reused."""
    runner = _RunAs.choose()
    if password_file().exists() and _answers(0.5):
        _create_database()
        return f"already running on 127.0.0.1:{port()}"
    if not (data_dir() / "PG_VERSION").exists():
        _initdb(runner)
    else:
        runner.own(home())
    options = (f"-p {port()} -k {home()} -c listen_addresses=127.0.0.1 "
               "-c max_connections=50 -c shared_buffers=64MB -c fsync=on")
    result = runner.run([str(binaries() / "pg_ctl"), "start", "-D", str(data_dir()), "-w",
                         "-t", "60", "-l", str(log_path()), "-o", options])
    if result.returncode != 0 or not _answers(30.0):
        tail = log_path().read_text(errors="replace").splitlines()[-3:] \
            if log_path().exists() else []
        raise DatabaseError("pg_ctl start failed: " + " | ".join(
            [*(result.stdout + result.stderr).strip().splitlines()[-2:], *tail]))
    _create_database()
    return f"started on 127.0.0.1:{port()} (data {data_dir()}, log {log_path()})"


def stop() -> str:
    if not (data_dir() / "PG_VERSION").exists():
        return "not initialised"
    result = _RunAs.choose().run([str(binaries() / "pg_ctl"), "stop", "-D", str(data_dir()),
                                  "-m", "fast", "-w"])
    return "stopped" if result.returncode == 0 else "not running"
