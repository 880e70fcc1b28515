"""Worker configuration from flags and the environment, in one frozen object.

Flags win over `CITYOPS_*` variables, which win over defaults, so the same worker runs from a
terminal, from docker-compose (environment only) and from tests (explicit values).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from core.paths import var_dir
from topics.catalog import CatalogSettings


@dataclass(frozen=True)
class WorkerSettings:
    bootstrap: str = "127.0.0.1:9092"
    app_id: str = "cityops"
    store: str = "memory://"
    processing_guarantee: str = "at_least_once"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9108
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    thresholds_path: Path | None = None
    data_dir: Path | None = None
    worker_id: str = ""
    #: Seconds between full situation snapshots (for consumers that join late).
    snapshot_interval_s: float = 60.0
    #: Seconds between kecamatan/city rollups.
    rollup_interval_s: float = 1.0
    #: Seconds the consumer group waits for a silent worker before giving its partitions to the
    #: others. Faust's default, 60 s, left a SIGKILLed worker's wards unprocessed for a minute;
    #: 10 s brought the replacement up in 7-12 s (docs/reliability.md).
    session_timeout_s: float = 10.0
    #: The ward agent folds what has arrived, up to this many events, waiting at most
    #: `ward_batch_within_s`, then evaluates each ward it changed once (docs/runtime.md). The
    #: window is what a situation may wait; a batch of 1 evaluates after every event.
    ward_batch: int = 1_000
    ward_batch_within_s: float = 0.1
    #: How this deployment names the catalog's topics (`CITYOPS_TOPIC_PREFIX`).
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    #: Host names the board answers to besides `web_host`, 127.0.0.1 and localhost
    #: (`CITYOPS_WEB_ALLOWED_HOSTS`, comma-separated): any other Host header is refused, which
    #: closes the API to DNS rebinding (issue 14).
    web_allowed_hosts: tuple[str, ...] = ()
    #: The operator accounts file (`CITYOPS_OPERATORS_FILE`, default var/operators.json).
    operators_file: Path | None = None
    #: How long a board sign-in lasts at most (`CITYOPS_BOARD_SESSION_S`, default 8 h: one
    #: shift), whatever the activity: the absolute timeout.
    session_ttl_s: float = 8 * 3600.0
    #: How long a board session lasts without a request (`CITYOPS_BOARD_IDLE_S`, default
    #: 30 min): the idle timeout (docs/security.md, "Sessions").
    session_idle_s: float = 1_800.0
    #: Mark session cookies Secure (`CITYOPS_BOARD_SECURE_COOKIES=1`): set it when the board is
    #: served over HTTPS by a reverse proxy; the worker itself speaks plain HTTP on loopback.
    secure_cookies: bool = False
    #: Whether operators and supervisors must give a TOTP code after their password
    #: (`CITYOPS_BOARD_SECOND_FACTOR`: `required`, the default, or `off` for a developer's
    #: own machine and the tests; the worker refuses `off` with secure cookies, i.e. any
    #: board served over HTTPS) and viewers too (`CITYOPS_BOARD_VIEWER_2FA=1`).
    second_factor: bool = True
    viewer_second_factor: bool = False
    #: How long an action request waits for the ward agent's receipt before it answers
    #: "pending" (`CITYOPS_ACTION_WAIT_S`, default 10 s); the page then asks for the receipt.
    action_wait_s: float = 10.0
    #: Addresses of the reverse proxies whose `X-Forwarded-For` is believed
    #: (`CITYOPS_TRUSTED_PROXIES`, comma-separated): the sign-in throttle counts the client
    #: address the nearest trusted proxy saw; from any other peer the header is ignored.
    trusted_proxies: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, **flags: object) -> WorkerSettings:
        env = os.environ

        def pick(name: str, variable: str, default: object) -> object:
            value = flags.get(name)
            if value is not None:
                return value
            return env.get(variable, default)

        app_id = str(pick("app_id", "CITYOPS_APP_ID", cls.app_id))
        thresholds = pick("thresholds_path", "CITYOPS_THRESHOLDS", None)
        data_dir = pick("data_dir", "CITYOPS_DATA_DIR", None)
        return cls(
            bootstrap=str(pick("bootstrap", "CITYOPS_BOOTSTRAP", cls.bootstrap)),
            app_id=app_id,
            store=str(pick("store", "CITYOPS_STORE", cls.store)),
            processing_guarantee=str(
                pick("processing_guarantee", "CITYOPS_PROCESSING_GUARANTEE",
                     cls.processing_guarantee)
            ),
            metrics_host=str(pick("metrics_host", "CITYOPS_METRICS_HOST", cls.metrics_host)),
            metrics_port=int(str(pick("metrics_port", "CITYOPS_METRICS_PORT", cls.metrics_port))),
            web_host=str(pick("web_host", "CITYOPS_WEB_HOST", cls.web_host)),
            web_port=int(str(pick("web_port", "CITYOPS_WEB_PORT", cls.web_port))),
            thresholds_path=Path(str(thresholds)) if thresholds else None,
            data_dir=Path(str(data_dir)) if data_dir else var_dir() / f"worker-{app_id}",
            worker_id=str(pick("worker_id", "CITYOPS_WORKER_ID",
                               f"{socket.gethostname()}-{os.getpid()}")),
            snapshot_interval_s=float(str(pick("snapshot_interval_s",
                                               "CITYOPS_SNAPSHOT_INTERVAL_S", 60.0))),
            rollup_interval_s=float(str(pick("rollup_interval_s",
                                             "CITYOPS_ROLLUP_INTERVAL_S", 1.0))),
            session_timeout_s=float(str(pick("session_timeout_s", "CITYOPS_SESSION_TIMEOUT_S",
                                             cls.session_timeout_s))),
            ward_batch=int(str(pick("ward_batch", "CITYOPS_WARD_BATCH", cls.ward_batch))),
            ward_batch_within_s=float(str(pick("ward_batch_within_s",
                                               "CITYOPS_WARD_BATCH_WITHIN_S",
                                               cls.ward_batch_within_s))),
            catalog=CatalogSettings.from_env(env),
            web_allowed_hosts=tuple(
                host.strip().lower() for host in str(
                    pick("web_allowed_hosts", "CITYOPS_WEB_ALLOWED_HOSTS", "")).split(",")
                if host.strip()),
            operators_file=(Path(str(env["CITYOPS_OPERATORS_FILE"]))
                            if env.get("CITYOPS_OPERATORS_FILE") else None),
            session_ttl_s=float(str(pick("session_ttl_s", "CITYOPS_BOARD_SESSION_S",
                                         cls.session_ttl_s))),
            session_idle_s=float(str(pick("session_idle_s", "CITYOPS_BOARD_IDLE_S",
                                          cls.session_idle_s))),
            secure_cookies=str(pick("secure_cookies", "CITYOPS_BOARD_SECURE_COOKIES", "0"))
            in ("1", "true", "yes"),
            second_factor=str(pick("second_factor", "CITYOPS_BOARD_SECOND_FACTOR", "required"))
            != "off",
            viewer_second_factor=str(pick("viewer_second_factor", "CITYOPS_BOARD_VIEWER_2FA",
                                          "0")) in ("1", "true", "yes"),
            action_wait_s=float(str(pick("action_wait_s", "CITYOPS_ACTION_WAIT_S",
                                         cls.action_wait_s))),
            trusted_proxies=tuple(
                address.strip() for address in str(
                    pick("trusted_proxies", "CITYOPS_TRUSTED_PROXIES", "")).split(",")
                if address.strip()),
        )
