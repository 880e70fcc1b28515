"""`cityops notify`: decide the notifications that are due and deliver them (issue 25).

Two loops in one process, each with its own consumer group:

* the decider reads operator actions and situations, runs `processors.notifications` and
  writes what is due to the outbox topic (keyed "<case>|<event>"); on start it reads the
  outbox back so nothing is decided twice, and it commits its input offsets only after the
  outbox writes are acknowledged (a kill re-reads, and the restored keys absorb the re-read);
* the sender reads the outbox and delivers each notification to each target: Telegram
  (Bot API sendMessage), WhatsApp (Cloud API template message), e-mail (SMTP) and a signed
  webhook. Each attempt is recorded on the compacted delivery-state topic *before* the
  request (ATTEMPTING) and after it (SENT, RETRYING, DEAD); the outbox offset is committed
  when every target of the record is SENT or DEAD.

What a kill -9 mid-send can do: the delivery in flight is ATTEMPTING on restart and is sent
again with the same identity: the webhook's `Idempotency-Key` header and body, and the e-mail's
`Message-ID`, are derived from (notification, channel, target), so a receiver can drop the
repeat. The Telegram Bot API and the WhatsApp Cloud API have no idempotency key: a message
whose request reached them before the kill is sent a second time (at most the one message in
flight per target); every message carries its "Ref:" line (and WhatsApp its
`biz_opaque_callback_data`) so a reader and the city's status webhook can tell it is a repeat.
Nothing is lost: an outbox record is committed only when all its deliveries are final.

Secrets (bot token, WhatsApp access token, SMTP password, webhook HMAC key) are read from the
files or environment variables the channels file names, and never logged: answers logged or
stored are the provider's status and body, which carry no token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import smtplib
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, Final, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from core.connection import kafka_python_security
from core.reference_data import load_ward_records
from processors.dead_letters import SourceRecord, dead_letter
from processors.notifications import (
    Notification,
    NotificationStep,
    NotifyConfig,
    NotifyConfigError,
    SecretRef,
    idempotency_key,
    parse_config,
    places_from_wards,
)
from processors.state import from_ms
from processors.thresholds import Thresholds
from schemas.codec import CodecError, decode, encode
from topics.catalog import (
    DEAD_LETTERS,
    NOTIFICATION_DELIVERIES,
    NOTIFICATIONS_OUTBOX,
    OPERATOR_ACTIONS,
    SITUATIONS,
    TopicCatalog,
)

log = logging.getLogger("cityops.notify")

CONFIG_VARIABLE: Final[str] = "CITYOPS_NOTIFY_CONFIG"
#: Characters of a provider's answer kept in the delivery state and the dead letter.
MAX_ANSWER: Final[int] = 1000
#: Telegram's limit on a message's text.
TELEGRAM_MAX_TEXT: Final[int] = 4096
#: WhatsApp Cloud API error codes that mean "try again later" (throughput, pair rate and spam
#: rate limits, temporary errors); any other error code is a refusal. Meta's error-code page.
WHATSAPP_RETRYABLE: Final[frozenset[int]] = frozenset(
    {1, 2, 4, 80007, 130429, 131000, 131016, 131048, 131056, 133004})

#: The notifier's own metrics (its endpoint serves these, not the worker's).
REGISTRY = CollectorRegistry()
DECIDED = Counter("cityops_notifications_decided_total",
                  "Notifications decided and written to the outbox.", ["kind"], registry=REGISTRY)
SKIPPED = Counter("cityops_notifications_stale_total",
                  "Notifications due but older than --max-age when decided (not sent).", ["kind"],
                  registry=REGISTRY)
DELIVERIES = Counter("cityops_notification_deliveries_total",
                     "Deliveries that ended, by channel and outcome (sent or dead).",
                     ["channel", "outcome"], registry=REGISTRY)
FAILED_ATTEMPTS = Counter("cityops_notification_attempts_failed_total",
                          "Delivery attempts that failed, by channel and reason.",
                          ["channel", "reason"], registry=REGISTRY)
LATENCY = Histogram("cityops_notification_delivery_seconds",
                    "Seconds from a notification's decision to its delivery.", ["channel"],
                    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 900, 3600), registry=REGISTRY)


class NotifyError(Exception):
    """The notifier cannot start; the message says what to fix."""


# -- secrets and configuration ------------------------------------------------------------------


def read_secret(ref: SecretRef, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    if ref.file:
        try:
            value = Path(ref.file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise NotifyError(f"secret {ref.describe()}: {error.strerror}") from None
    else:
        value = env.get(ref.env or "", "").strip()
    if not value:
        raise NotifyError(f"secret {ref.describe()} is empty or not set")
    return value


def load_config(path: str | Path) -> NotifyConfig:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise NotifyError(f"{path}: {error}") from None
    try:
        return parse_config(data)
    except NotifyConfigError as error:
        raise NotifyError(f"{path}: {error}") from None


# -- channels -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt gave: sent, or a failure that is permanent or may be retried (after
    `retry_after` seconds when the provider said so)."""

    ok: bool
    answer: str
    reason: str = "sent"
    permanent: bool = False
    retry_after: float | None = None
    provider_id: str | None = None


class Channel(Protocol):
    name: str

    def send(self, notification: Notification, target: str, key: str) -> Outcome: ...


def _answer(status: int | str, body: bytes | str) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return f"{status} {text}"[:MAX_ANSWER]


def _retry_after(headers: Mapping[str, str] | Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float
              ) -> tuple[int, Any, bytes] | Outcome:
    """POST; (status, headers, body) for any HTTP answer, an Outcome for no answer."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()
    except TimeoutError:
        return Outcome(False, "timeout: no answer within the timeout", "timeout")
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError):
            return Outcome(False, "timeout: no answer within the timeout", "timeout")
        return Outcome(False, f"connection failed: {reason}", "connection")


def _http_outcome(status: int, headers: Any, body: bytes) -> Outcome:
    """The generic reading of an HTTP answer: 2xx sent, 408/425/429/5xx retried (after
    Retry-After), any other refusal permanent."""
    if 200 <= status < 300:
        return Outcome(True, _answer(status, body))
    if status in (408, 425, 429) or status >= 500:
        return Outcome(False, _answer(status, body),
                       "rate_limited" if status == 429 else "server_error",
                       retry_after=_retry_after(headers))
    return Outcome(False, _answer(status, body), "refused", permanent=True)


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _text(notification: Notification) -> str:
    return "\n\n".join(m.text for m in notification.messages)


class Telegram:
    """Bot API `sendMessage`, plain text (no parse_mode: operator text is never markup)."""

    name = "telegram"

    def __init__(self, token: str, api_base: str = "https://api.telegram.org",
                 timeout: float = 10.0) -> None:
        self._url = f"{api_base.rstrip('/')}/bot{token}/sendMessage"
        self.timeout = timeout

    def send(self, notification: Notification, target: str, key: str) -> Outcome:
        body = json.dumps({"chat_id": target, "text": _text(notification)[:TELEGRAM_MAX_TEXT],
                           "disable_web_page_preview": True}).encode()
        answer = http_post(self._url, body, {}, self.timeout)
        if isinstance(answer, Outcome):
            return answer
        status, headers, raw = answer
        data = _json(raw)
        if status == 200 and data.get("ok") is True:
            message_id = (data.get("result") or {}).get("message_id")
            return Outcome(True, _answer(status, raw), provider_id=str(message_id))
        if status == 429:
            after = (data.get("parameters") or {}).get("retry_after")
            return Outcome(False, _answer(status, raw), "rate_limited",
                           retry_after=float(after) if isinstance(after, int | float)
                           else _retry_after(headers))
        return _http_outcome(status if status != 200 else 502, headers, raw)


class WhatsApp:
    """Cloud API template message: POST /{version}/{phone-number-id}/messages."""

    name = "whatsapp"

    def __init__(self, token: str, phone_number_id: str, template: str,
                 language_code: str = "id", api_base: str = "https://graph.facebook.com",
                 api_version: str = "v21.0", timeout: float = 10.0) -> None:
        self._url = f"{api_base.rstrip('/')}/{api_version}/{phone_number_id}/messages"
        self._token, self.template, self.language_code = token, template, language_code
        self.timeout = timeout

    def request_body(self, notification: Notification, target: str) -> dict[str, Any]:
        message = notification.messages[0]
        return {
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": target,
            "type": "template",
            "template": {"name": self.template, "language": {"code": self.language_code},
                         "components": [{"type": "body", "parameters": [
                             {"type": "text", "text": p} for p in message.parameters]}]},
            "biz_opaque_callback_data": notification.key[:512],
        }

    def send(self, notification: Notification, target: str, key: str) -> Outcome:
        body = json.dumps(self.request_body(notification, target)).encode()
        answer = http_post(self._url, body, {"Authorization": f"Bearer {self._token}"},
                           self.timeout)
        if isinstance(answer, Outcome):
            return answer
        status, headers, raw = answer
        data = _json(raw)
        if 200 <= status < 300 and data.get("messages"):
            return Outcome(True, _answer(status, raw),
                           provider_id=str(data["messages"][0].get("id")))
        error = data.get("error") or {}
        code = error.get("code")
        if isinstance(code, int):
            if code in WHATSAPP_RETRYABLE:
                return Outcome(False, _answer(status, raw),
                               "rate_limited" if code in (4, 80007, 130429, 131048, 131056)
                               else "server_error", retry_after=_retry_after(headers))
            return Outcome(False, _answer(status, raw), "refused", permanent=True)
        return _http_outcome(status, headers, raw)


class Email:
    """SMTP (stdlib smtplib), STARTTLS when configured; the Message-ID is derived from the
    delivery, so a repeat after a kill is the same message to the receiving system."""

    name = "email"

    def __init__(self, host: str, port: int, sender: str, *, starttls: bool = False,
                 username: str | None = None, password: str | None = None,
                 message_id_domain: str = "cityops.cilegon.go.id", timeout: float = 10.0) -> None:
        self.host, self.port, self.sender, self.starttls = host, port, sender, starttls
        self.username, self._password = username, password
        self.domain, self.timeout = message_id_domain, timeout

    def message(self, notification: Notification, target: str, key: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = target
        message["Subject"] = notification.messages[0].subject
        message["Message-ID"] = f"<{key}@{self.domain}>"
        message["Date"] = formatdate(notification.decided_at / 1000, usegmt=True)
        message["X-Cityops-Ref"] = notification.key
        message.set_content(_text(notification) + "\n")
        return message

    def send(self, notification: Notification, target: str, key: str) -> Outcome:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username and self._password:
                    smtp.login(self.username, self._password)
                refused = smtp.send_message(self.message(notification, target, key))
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            return Outcome(False, _answer(code, text), "refused" if code >= 500 else
                           "server_error", permanent=code >= 500)
        except smtplib.SMTPResponseException as error:
            return Outcome(False, _answer(error.smtp_code, error.smtp_error),
                           "refused" if error.smtp_code >= 500 else "server_error",
                           permanent=error.smtp_code >= 500)
        except TimeoutError:
            return Outcome(False, "timeout: no answer within the timeout", "timeout")
        except (smtplib.SMTPException, OSError) as error:
            return Outcome(False, f"connection failed: {error}", "connection")
        if refused:
            return Outcome(False, _answer("refused", str(refused)), "refused", permanent=True)
        return Outcome(True, "250 accepted")


def webhook_body(notification: Notification, key: str) -> bytes:
    """The webhook's JSON: the outbox record, times as ISO 8601, keys sorted (the signed bytes)."""
    record = notification.to_record()
    record["decided_at"] = from_ms(notification.decided_at).isoformat()
    record["idempotency_key"] = key
    return json.dumps(record, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def sign(hmac_key: str, timestamp: str, body: bytes) -> str:
    """"v1=" + hex HMAC-SHA256 over "<timestamp>." + body (the receiver checks the timestamp
    is recent, so a captured request cannot be replayed later)."""
    digest = hmac.new(hmac_key.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


class Webhook:
    """The city's own systems: JSON, HMAC-SHA256 signature and timestamp in headers, and an
    Idempotency-Key that stays the same across retries and restarts."""

    name = "webhook"

    def __init__(self, hmac_key: str, timeout: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._key, self.timeout, self._clock = hmac_key, timeout, clock

    def send(self, notification: Notification, target: str, key: str) -> Outcome:
        body = webhook_body(notification, key)
        timestamp = str(int(self._clock()))
        answer = http_post(target, body, {
            "Idempotency-Key": key, "X-Cityops-Timestamp": timestamp,
            "X-Cityops-Signature": sign(self._key, timestamp, body),
            "User-Agent": "cityops-notify/1"}, self.timeout)
        if isinstance(answer, Outcome):
            return answer
        return _http_outcome(*answer)


def build_channels(config: NotifyConfig, env: Mapping[str, str] | None = None
                   ) -> dict[str, Channel]:
    """The channels the routes use, with their secrets read; a route's channel without its
    provider is refused here, when the notifier starts, not at the first message."""
    used = {channel for route in config.routes for channel, _ in route.targets()}
    timeout = config.retry.timeout_seconds
    channels: dict[str, Channel] = {}
    for name in sorted(used):
        spec = config.providers.get(name)
        if spec is None:
            raise NotifyError(f"a route sends to {name} but providers.{name} is not configured")
        try:
            if name == "telegram":
                channels[name] = Telegram(read_secret(spec["bot_token"], env),
                                          spec.get("api_base", "https://api.telegram.org"),
                                          timeout)
            elif name == "whatsapp":
                channels[name] = WhatsApp(
                    read_secret(spec["access_token"], env), str(spec["phone_number_id"]),
                    str(spec["template"]), str(spec.get("language_code", "id")),
                    spec.get("api_base", "https://graph.facebook.com"),
                    str(spec.get("api_version", "v21.0")), timeout)
            elif name == "email":
                password = spec.get("password")
                channels[name] = Email(
                    str(spec["host"]), int(spec.get("port", 25)), str(spec["sender"]),
                    starttls=bool(spec.get("starttls", False)), username=spec.get("username"),
                    password=read_secret(password, env) if password else None,
                    message_id_domain=str(spec.get("message_id_domain",
                                                   "cityops.cilegon.go.id")),
                    timeout=timeout)
            else:
                channels[name] = Webhook(read_secret(spec["hmac_key"], env), timeout)
        except KeyError as missing:
            raise NotifyError(f"providers.{name}: {missing} is required") from None
    return channels


# -- the two loops ------------------------------------------------------------------------------


def _read_all(bootstrap: str, topic: str, apply: Callable[[bytes | None, bytes | None], None],
              timeout_s: float = 60.0) -> int:
    """Read a compacted topic from the beginning to its current end (the state it holds)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             client_id="cityops-notify-restore", **kafka_python_security())
    try:
        found = consumer.partitions_for_topic(topic)
        if not found:
            raise NotifyError(f"{topic} is not visible on {bootstrap} (run `cityops topics "
                              "create`, or check CITYOPS_TOPIC_PREFIX and the ACLs)")
        partitions = [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        deadline, count = time.monotonic() + timeout_s, 0
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise NotifyError(f"{topic}: not read to its end within {timeout_s:g} s")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    apply(record.key, record.value)
                    count += 1
        return count
    finally:
        consumer.close()


def case_partition(case: str, partitions: int) -> int:
    """The outbox partition of a case: the record key is "<case>|<event>" (compaction keeps
    each notification), but the partition follows the case alone, so one case's notices are
    delivered in the order they were decided (assigned before closed)."""
    return int(murmur2(case.encode()) & 0x7FFFFFFF) % partitions


def _producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5,
                         client_id="cityops-notify", **kafka_python_security())


@dataclass
class Notifier:
    """Both loops; `stop` ends them at the next poll."""

    bootstrap: str
    config: NotifyConfig
    channels: Mapping[str, Channel]
    thresholds: Thresholds
    group: str = "cityops-notify"
    max_age_s: float = 6 * 3600
    worker_id: str = "cityops-notify"
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.topics = TopicCatalog.from_env()
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    # -- decider -------------------------------------------------------------------------------

    def run_decider(self) -> None:
        step = NotificationStep(self.config, places_from_wards(load_ward_records()),
                                self.thresholds.sla)
        outbox = self.topics.name(NOTIFICATIONS_OUTBOX)

        def restore(_key: bytes | None, value: bytes | None) -> None:
            if value is not None:
                step.restore(Notification.from_record(
                    decode(value, expected="org.cityops.Notification", trusted=True).record))

        restored = _read_all(self.bootstrap, outbox, restore)

        def observe(_key: bytes | None, value: bytes | None) -> None:
            if value is not None:
                step.observe(decode(value, expected="org.cityops.SituationEvent").record)

        observed = _read_all(self.bootstrap, self.topics.name(SITUATIONS), observe)
        log.info("decider: %d notifications restored from %s, %d situations read", restored,
                 outbox, observed)
        producer = _producer(self.bootstrap)
        actions, situations = (self.topics.name(OPERATOR_ACTIONS), self.topics.name(SITUATIONS))
        partitions = len(producer.partitions_for(outbox))
        consumer = KafkaConsumer(actions, situations, bootstrap_servers=self.bootstrap,
                                 group_id=f"{self.group}-decide", enable_auto_commit=False,
                                 auto_offset_reset="earliest", client_id="cityops-notify-decide",
                                 **kafka_python_security())
        try:
            while not self.stopping.is_set():
                batch = consumer.poll(timeout_ms=500)
                for partition, records in batch.items():
                    for record in records:
                        for notification in self._decide(step, partition.topic, actions,
                                                         record.value):
                            log.info("decided %s (%d deliveries)", notification.key,
                                     len(notification.deliveries))
                            producer.send(outbox, key=notification.key.encode(),
                                          value=encode("Notification", notification.to_record()),
                                          partition=case_partition(notification.case, partitions))
                if batch:
                    producer.flush(timeout=60)
                    consumer.commit()
        finally:
            consumer.close()
            producer.close()

    def _decide(self, step: NotificationStep, topic: str, actions: str,
                value: bytes | None) -> list[Notification]:
        if value is None:
            return []
        try:
            if topic == actions:
                due = step.on_action(decode(value, expected="org.cityops.OperatorAction").record)
            else:
                due = step.on_situation(
                    decode(value, expected="org.cityops.SituationEvent").record)
        except CodecError as error:  # the worker dead-letters bad actions; skip here
            log.warning("decider: undecodable record on %s skipped: %s", topic, error)
            return []
        fresh = []
        for notification in due:
            if notification.decided_at < (self.clock() - self.max_age_s) * 1000:
                SKIPPED.labels(notification.kind).inc()
                continue
            DECIDED.labels(notification.kind).inc()
            fresh.append(notification)
        return fresh

    # -- sender --------------------------------------------------------------------------------

    def run_sender(self) -> None:
        deliveries_topic = self.topics.name(NOTIFICATION_DELIVERIES)
        state: dict[str, tuple[str, int]] = {}

        def remember(key: bytes | None, value: bytes | None) -> None:
            if key is not None and value is not None:
                record = decode(value, expected="org.cityops.NotificationDelivery",
                                trusted=True).record
                _keep(state, key.decode(), (record["status"], record["attempt"]))

        _read_all(self.bootstrap, deliveries_topic, remember)
        producer = _producer(self.bootstrap)
        outbox = self.topics.name(NOTIFICATIONS_OUTBOX)
        consumer = KafkaConsumer(outbox, bootstrap_servers=self.bootstrap, group_id=self.group,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 client_id="cityops-notify-send", max_poll_records=1,
                                 max_poll_interval_ms=3_600_000, **kafka_python_security())
        try:
            while not self.stopping.is_set():
                for partition, records in consumer.poll(timeout_ms=500).items():
                    for record in records:
                        if record.value is not None:
                            self._deliver_all(record, partition.partition, producer, state)
                        if self.stopping.is_set():
                            return
                        consumer.commit()
        finally:
            consumer.close()
            producer.close()

    def _deliver_all(self, record: Any, partition: int, producer: KafkaProducer,
                     state: dict[str, tuple[str, int]]) -> None:
        notification = Notification.from_record(
            decode(record.value, expected="org.cityops.Notification", trusted=True).record)
        for delivery in notification.deliveries:
            dkey = f"{notification.key}|{delivery.channel}|{delivery.target}"
            status, attempt = state.get(dkey, ("NEW", 0))
            if status in ("SENT", "DEAD"):
                continue
            self._deliver(notification, delivery.channel, delivery.target, dkey, attempt,
                          producer, state, record, partition)
            if self.stopping.is_set():
                return

    def _record(self, producer: KafkaProducer, state: dict[str, tuple[str, int]], dkey: str,
                notification: Notification, channel: str, target: str, status: str,
                attempt: int, key: str, answer: str | None = None,
                provider_id: str | None = None) -> None:
        value = {"notification_key": notification.key, "channel": channel, "target": target,
                 "status": status, "attempt": attempt,
                 "at": datetime.fromtimestamp(self.clock(), UTC), "idempotency_key": key,
                 "answer": answer, "provider_id": provider_id}
        producer.send(self.topics.name(NOTIFICATION_DELIVERIES), key=dkey.encode(),
                      value=encode("NotificationDelivery", value))
        producer.flush(timeout=60)  # before the request: a kill after it still finds the record
        _keep(state, dkey, (status, attempt))

    def _deliver(self, notification: Notification, channel_name: str, target: str, dkey: str,
                 done: int, producer: KafkaProducer, state: dict[str, tuple[str, int]],
                 record: Any, partition: int) -> None:
        key = idempotency_key(notification.key, channel_name, target)
        channel = self.channels.get(channel_name)
        policy = self.config.retry
        attempt = done
        while not self.stopping.is_set():
            attempt += 1
            if channel is None:
                outcome = Outcome(False, f"no {channel_name} provider configured", "refused",
                                  permanent=True)
            else:
                self._record(producer, state, dkey, notification, channel_name, target,
                             "ATTEMPTING", attempt, key)
                outcome = channel.send(notification, target, key)
            if outcome.ok:
                self._record(producer, state, dkey, notification, channel_name, target, "SENT",
                             attempt, key, outcome.answer, outcome.provider_id)
                DELIVERIES.labels(channel_name, "sent").inc()
                LATENCY.labels(channel_name).observe(
                    max(0.0, self.clock() - notification.decided_at / 1000))
                log.info("sent %s to %s %s (attempt %d)", notification.key, channel_name,
                         _redact(target), attempt)
                return
            FAILED_ATTEMPTS.labels(channel_name, outcome.reason).inc()
            if outcome.permanent or attempt >= policy.attempts:
                self._record(producer, state, dkey, notification, channel_name, target, "DEAD",
                             attempt, key, outcome.answer)
                self._dead_letter(producer, notification, channel_name, outcome, attempt,
                                  record, partition)
                DELIVERIES.labels(channel_name, "dead").inc()
                log.error("dead: %s to %s %s after %d attempt(s): %s", notification.key,
                          channel_name, _redact(target), attempt, outcome.answer)
                return
            self._record(producer, state, dkey, notification, channel_name, target, "RETRYING",
                         attempt, key, outcome.answer)
            wait = max(policy.delay(attempt), outcome.retry_after or 0.0)
            log.warning("retry %s to %s in %.1f s (attempt %d: %s)", notification.key,
                        channel_name, wait, attempt, outcome.answer)
            self.stopping.wait(wait)

    def _dead_letter(self, producer: KafkaProducer, notification: Notification, channel: str,
                     outcome: Outcome, attempt: int, record: Any, partition: int) -> None:
        source = SourceRecord(record.topic, partition, record.offset, record.timestamp,
                              record.key, record.value)
        letter = dead_letter(
            source, stage="PROCESS", reason="notification_undeliverable",
            message=f"{channel} refused or did not answer after {attempt} attempt(s): "
                    f"{outcome.answer}",
            error_class=f"notify.{channel}.{outcome.reason}", worker_id=self.worker_id,
            now=datetime.fromtimestamp(self.clock(), UTC))
        producer.send(self.topics.name(DEAD_LETTERS), key=record.key,
                      value=encode("DeadLetter", letter))
        producer.flush(timeout=60)


#: Delivery states the sender keeps in memory (the newest). Only outbox records after the
#: committed offset are ever read again, and their deliveries are the newest, so an evicted
#: (old, final) state is never asked for.
MAX_DELIVERY_STATES: Final[int] = 200_000


def _keep(state: dict[str, tuple[str, int]], key: str, value: tuple[str, int]) -> None:
    state.pop(key, None)
    state[key] = value
    if len(state) > MAX_DELIVERY_STATES:
        del state[next(iter(state))]


def _redact(target: str) -> str:
    """A target as logs show it: a phone number or address is personal data (UU 27/2022), so
    only its last four characters; a URL without its query string."""
    if target.startswith(("http://", "https://")):
        return target.split("?", 1)[0]
    return "…" + target[-4:]


def run_notify(bootstrap: str, config_path: str | None, thresholds_path: str | None,
               group: str, metrics_port: int | None, metrics_host: str, role: str,
               max_age_s: float, seconds: float = 0.0) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO is every connection
    path = config_path or os.environ.get(CONFIG_VARIABLE)
    try:
        if not path:
            raise NotifyError(f"no channels file: pass --config or set {CONFIG_VARIABLE}")
        config = load_config(path)
        channels = build_channels(config)
        thresholds_path = thresholds_path or os.environ.get("CITYOPS_THRESHOLDS")
        thresholds = (Thresholds.load(thresholds_path) if thresholds_path
                      else Thresholds.load())
    except (NotifyError, ValueError) as error:
        print(f"cityops notify: {error}", file=sys.stderr, flush=True)
        return 2
    if metrics_port:
        start_http_server(metrics_port, addr=metrics_host, registry=REGISTRY)
    notifier = Notifier(bootstrap, config, channels, thresholds, group=group,
                        max_age_s=max_age_s)
    loops = {"decide": notifier.run_decider, "send": notifier.run_sender}
    wanted = list(loops) if role == "both" else [role]
    failures: list[BaseException] = []

    def run(loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as error:  # a dead loop must stop the process, not idle it
            failures.append(error)
            log.exception("notify loop failed")
            notifier.stop()

    threads = [threading.Thread(target=run, args=(loops[name],), name=f"notify-{name}",
                                daemon=True) for name in wanted]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds if seconds else None
    try:
        while any(t.is_alive() for t in threads):
            if deadline is not None and time.monotonic() > deadline:
                notifier.stop()
            time.sleep(0.2)
    except KeyboardInterrupt:
        notifier.stop()
    for thread in threads:
        thread.join(timeout=30)
    return 1 if failures else 0

