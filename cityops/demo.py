"""The main job in one command: the whole city on this machine.

Starts (or reuses) the broker, creates topics, publishes wards, the synthetic asset registry and
the SYNTHETIC RW/RT registry, starts a worker, the history sink (issue 21: every situation,
case, action and RT month into the embedded SQLite store, or `CITYOPS_HISTORY_URL`), the
simulated city feed and the notifier (issue 25, with every notification routed to a local
signed-webhook sink that writes what agencies would receive to var/demo/notifications.log) as
child processes, sends one simulated month of RT reports (issue 13: a clean base month, then
last month with human mistakes; the worker judges them beside the live situations and the board's
"Unemployment" layer shows the result), and shows the live situation board until Ctrl-C or
`--seconds`. Child output goes to var/logs so the board stays readable.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pyotp

from cityops import broker
from cityops.notify_sink import WebhookSink
from cityops.publish_reference import publish_assets, publish_neighbourhoods, publish_wards
from cityops.simulate import run_simulate_rt_month
from cityops.watch import watch
from core import accounts
from core.paths import var_dir
from streams.history_store import HistoryStore
from topics.admin import admin_client, create_topics

#: The demo's own accounts file: made afresh by every `cityops demo`, never the deployment's.
DEMO_OPERATOR = "demo"


def _spawn(name: str, args: list[str], logs: Path,
           env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "cityops.cli", *args], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def demo_accounts(directory: Path) -> tuple[Path, str, str]:
    """A fresh accounts file holding one supervisor, `demo`, with a random password and a
    random TOTP secret, for this demo only (issues 14 and 24): the board needs a sign-in with
    a second factor, and a demo must not reuse real accounts. Returns the file, the password
    and the secret to print."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "demo-operators.json"
    path.unlink(missing_ok=True)
    password = secrets.token_urlsafe(12)
    accounts.add_operator(DEMO_OPERATOR, "supervisor", password, path)
    secret = pyotp.random_base32()
    accounts.set_totp(DEMO_OPERATOR, secret, path)
    return path, password, secret


#: The demo's SLA lead time: FLOOD's dispatch clock is 10 min, so the flood's cases warn about a
#: minute after they are reported instead of at 5 min before the deadline.
DEMO_SLA_LEAD_SECONDS = 540


def demo_notifications(directory: Path) -> tuple[Path, WebhookSink]:
    """A channels file routing every notification (any agency, any kecamatan) to a local
    webhook sink that logs them to `directory`/notifications.log; its HMAC key in a file of its
    own, as a deployment keeps its secrets. Returns the file and the running sink."""
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "notify-webhook.key"
    key = secrets.token_hex(32)
    key_file.write_text(key + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    (directory / "notifications.log").unlink(missing_ok=True)  # this demo's notices only
    sink = WebhookSink(key, directory / "notifications.log")
    config = {
        "languages": ["id", "en"], "sla_lead_seconds": DEMO_SLA_LEAD_SECONDS,
        "retry": {"attempts": 5, "base_seconds": 1, "max_seconds": 30, "timeout_seconds": 5},
        "providers": {"webhook": {"hmac_key": {"file": str(key_file)}}},
        "routes": [{"agency": "*", "kecamatan": "*", "webhook": [sink.url]}],
    }
    path = directory / "notify-channels.json"
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path, sink


DEMO_RT_SEED = 13
"""Seed of the demo's month of RT reports: its verdict counts are in docs/smart-village.md."""


def run_demo(bootstrap: str, seconds: float = 0.0, rate_per_s: float = 20.0,
             scenario: str = "flood") -> int:
    step = "broker"
    try:
        print(f"[1/6] broker: {broker.start(broker.BrokerConfig.from_env())}")
        step = "topics"
        admin = admin_client(bootstrap)
        created = create_topics(admin)
        admin.close()
        print(f"[2/6] topics: {sum(1 for _, o in created if o == 'created')} created, "
              f"{sum(1 for _, o in created if o == 'exists')} already there")
        step = "reference data"
        wards = publish_wards(bootstrap)
        assets = publish_assets(bootstrap)
        rts, rws, _ = publish_neighbourhoods(bootstrap)
        print(f"[3/6] reference data: {wards} kelurahan, synthetic registry "
              + ", ".join(f"{n} {k}" for k, n in sorted(assets.items()))
              + f", SYNTHETIC neighbourhood registry {rts} RT in {rws} RW")
    except (broker.BrokerError, OSError, RuntimeError) as error:
        print(f"cityops demo: {step} failed: {error}", file=sys.stderr)
        return 2
    logs = var_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    accounts_file, password, secret = demo_accounts(var_dir() / "demo")
    worker = _spawn("worker", ["worker", "--bootstrap", bootstrap], logs,
                    {"CITYOPS_OPERATORS_FILE": str(accounts_file)})
    port = os.environ.get("CITYOPS_WEB_PORT", "6066")
    sign_in = (f"board http://127.0.0.1:{port}/board/ - demo sign-in (this demo only): name "
               f"{DEMO_OPERATOR}, password {password} (supervisor; {accounts_file}), then the "
               f"code of TOTP secret {secret} (add it to an authenticator app, or: "
               f"{sys.executable} -c \"import pyotp; print(pyotp.TOTP('{secret}').now())\")")
    history_sink = _spawn("history", ["history", "sink", "--bootstrap", bootstrap], logs)
    print(f"[4/6] worker started (pid {worker.pid}); metrics http://127.0.0.1:9108/metrics; "
          f"log {logs / 'worker.log'}")
    print(f"      history sink started (pid {history_sink.pid}) into "
          f"{HistoryStore.from_env().describe()}; log {logs / 'history.log'}")
    print(f"      {sign_in}")
    channels, notification_sink = demo_notifications(var_dir() / "demo")
    notifier = _spawn("notifier", ["notify", "--bootstrap", bootstrap, "--config", str(channels),
                                   "--metrics-port", "0"], logs)
    print(f"      notifier started (pid {notifier.pid}): assignments, closures, SLA warnings and "
          f"unacknowledged CRITICAL go to {notification_sink.log_path} "
          f"(log {logs / 'notifier.log'})")
    time.sleep(3.0)
    feed = _spawn("feed", ["simulate", "--bootstrap", bootstrap, "--rate", str(rate_per_s),
                           "--realtime", "--scenario", scenario, "--quiet"], logs)
    print(f"[5/6] simulated city feed at {rate_per_s:g} events/s with the '{scenario}' "
          f"scenario after 10 s (pid {feed.pid}); log {logs / 'feed.log'}")
    rt_month = run_simulate_rt_month(bootstrap, DEMO_RT_SEED, None, out=sys.stdout)
    board = f"http://127.0.0.1:{port}/board/"
    print(f"[6/6] one month of RT reports {'sent' if rt_month == 0 else 'NOT sent'}: the "
          f"board's 'Unemployment (RT reports)' layer at {board} (verdicts: "
          "`city.neighbourhood.validations.v1`)")
    print("live situations follow (Ctrl-C to stop; the broker keeps running: "
          "`cityops broker stop`)\n")
    time.sleep(2.0)
    try:
        watch(bootstrap, seconds=seconds, footer=sign_in)
    finally:
        for process in (feed, notifier, worker, history_sink):
            process.terminate()
        notification_sink.close()
        for process in (feed, notifier, worker, history_sink):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0
