"""Which notifications are due, to whom, and what they say (issue 25, part 1).

Assigning a case writes an `OperatorAction`; nobody at the agency learns of it unless they look
at the board. This step reads the same two streams the board reads (operator actions and
kelurahan situations) and decides the messages that reach the agency's own channels:

* ASSIGNED: a case is assigned to an agency (an ASSIGN action);
* CRITICAL_UNACKNOWLEDGED: a CRITICAL kelurahan waits past its acknowledge clock (the
  situation says "CRITICAL not acknowledged for ..." and names no acknowledgement);
* SLA_EXPIRING: a case's dispatch, on-scene or resolve clock has `sla_lead_seconds` or less
  left (computed from the situation's case: reported_at, status, agency and the SLA rules of
  the thresholds file, as the ward step computes it);
* CLOSED: a supervisor closes a case (a CLOSE action).

Each notification has a key, "<case>|<event>", and is decided once: `NotifyState.decided`
remembers the keys (restored from the outbox topic on start, `restore`), so replayed inputs,
a restart or a rebalance decide nothing twice. Everything here is pure: no clock, no I/O; the
places (kelurahan names and centroids) and the configuration are passed in.

Who receives it is the configuration's business (`NotifyConfig`): routes from (agency,
kecamatan) to Telegram chats, WhatsApp numbers, e-mail addresses and webhook URLs, the most
specific route winning. Ward-level notices and cases nobody is assigned to go to the pseudo
agency `COMMAND_CENTER`. Secrets are never in this file: a provider names the file or
environment variable that holds its token (`SecretRef`), resolved by the notifier.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from core.rejections import Rejection
from processors.operations import check_action
from processors.state import from_ms, to_ms
from processors.thresholds import AGENCIES, SLA_CLOCKS, SlaRules

WIB: Final = timezone(timedelta(hours=7), "WIB")
#: The pseudo agency of ward-level notices and of cases no agency is assigned to yet.
COMMAND_CENTER: Final[str] = "COMMAND_CENTER"
KINDS: Final[tuple[str, ...]] = ("ASSIGNED", "CRITICAL_UNACKNOWLEDGED", "SLA_EXPIRING", "CLOSED")
CHANNELS: Final[tuple[str, ...]] = ("telegram", "whatsapp", "email", "webhook")
LANGUAGES: Final[tuple[str, ...]] = ("id", "en")
#: Keys remembered as decided (the newest); the outbox topic keeps them all.
MAX_DECIDED: Final[int] = 100_000
#: Cases whose place, category and agency are remembered for later notices (the newest).
MAX_CASES: Final[int] = 20_000
#: Characters of operator text quoted in a message.
MAX_QUOTED: Final[int] = 200
_ACK_REASON = re.compile(r"^CRITICAL not acknowledged for (.+)$")
_UNIT_MS: Final[Mapping[str, int]] = {"d": 86_400_000, "h": 3_600_000, "min": 60_000, "s": 1000}


def waited_ms(reasons: Iterable[str]) -> int | None:
    """How long the ward has waited for an acknowledgement, read from the worker's reason
    ("CRITICAL not acknowledged for 1 h 5 min", `processors.operations.elapsed_text`)."""
    for reason in reasons:
        found = _ACK_REASON.match(reason)
        if found:
            parts = re.findall(r"(\d+) (d|h|min|s)\b", found.group(1))
            if parts:
                return sum(int(n) * _UNIT_MS[unit] for n, unit in parts)
    return None

CATEGORY_NAMES: Final[Mapping[str, Mapping[str, str]]] = {
    "id": {"TRAFFIC_ACCIDENT": "Kecelakaan lalu lintas", "FIRE": "Kebakaran", "FLOOD": "Banjir",
           "CRIME": "Tindak kriminal", "PUBLIC_ORDER": "Gangguan ketertiban",
           "MEDICAL": "Kedaruratan medis", "INFRASTRUCTURE_DAMAGE": "Kerusakan infrastruktur",
           "OTHER": "Kejadian lain"},
    "en": {"TRAFFIC_ACCIDENT": "Traffic accident", "FIRE": "Fire", "FLOOD": "Flood",
           "CRIME": "Crime", "PUBLIC_ORDER": "Public order", "MEDICAL": "Medical emergency",
           "INFRASTRUCTURE_DAMAGE": "Infrastructure damage", "OTHER": "Other incident"},
}
_CLOCK_NAMES: Final[Mapping[str, Mapping[str, str]]] = {
    "id": {"dispatch": "penugasan", "on_scene": "tiba di lokasi", "resolve": "penyelesaian"},
    "en": {"dispatch": "dispatch", "on_scene": "on-scene", "resolve": "resolution"},
}


class NotifyConfigError(ValueError):
    """The channels configuration cannot work; the message names the key."""


# -- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret lives: a file (read when the notifier starts) or an environment variable;
    never its value, so the configuration can be shown, versioned and logged."""

    file: str | None = None
    env: str | None = None

    def describe(self) -> str:
        return f"file {self.file}" if self.file else f"environment variable {self.env}"


@dataclass(frozen=True, slots=True)
class Route:
    """Targets of one (agency, kecamatan) pair; "*" matches any."""

    agency: str
    kecamatan: str
    telegram: tuple[str, ...] = ()
    whatsapp: tuple[str, ...] = ()
    email: tuple[str, ...] = ()
    webhook: tuple[str, ...] = ()

    def targets(self) -> list[tuple[str, str]]:
        return [(channel, target) for channel in CHANNELS for target in getattr(self, channel)]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per delivery and the exponential backoff between them (seconds)."""

    attempts: int = 6
    base_seconds: float = 2.0
    max_seconds: float = 300.0
    timeout_seconds: float = 10.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1)))


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """The channels configuration (a JSON file, `parse_config`): routes, languages, the SLA lead
    time, retries, and each provider's endpoint and secret references."""

    routes: tuple[Route, ...] = ()
    languages: tuple[str, ...] = ("id",)
    sla_lead_seconds: int = 300
    retry: RetryPolicy = RetryPolicy()
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    board_url: str | None = None

    def route(self, agency: str, kecamatan: str | None) -> Route | None:
        """The most specific route: (agency, kecamatan), (agency, *), (*, kecamatan), (*, *)."""
        for want_agency, want_kecamatan in ((agency, kecamatan), (agency, "*"),
                                            ("*", kecamatan), ("*", "*")):
            for route in self.routes:
                if route.agency == want_agency and route.kecamatan == want_kecamatan:
                    return route
        return None


_PROVIDER_KEYS: Final[Mapping[str, Mapping[str, str]]] = {
    # key -> "secret" for SecretRef values, "text" for plain settings
    "telegram": {"api_base": "text", "bot_token": "secret"},
    "whatsapp": {"api_base": "text", "api_version": "text", "phone_number_id": "text",
                 "access_token": "secret", "template": "text", "language_code": "text"},
    "email": {"host": "text", "port": "text", "sender": "text", "starttls": "text",
              "username": "text", "password": "secret", "message_id_domain": "text"},
    "webhook": {"hmac_key": "secret"},
}


def _secret(value: object, where: str) -> SecretRef:
    if not isinstance(value, Mapping) or set(value) - {"file", "env"} or len(value) != 1:
        raise NotifyConfigError(
            f"{where}: a secret is {{\"file\": PATH}} or {{\"env\": NAME}}, never the value "
            "itself (secrets come from files or the environment)")
    ((kind, name),) = value.items()
    if not isinstance(name, str) or not name:
        raise NotifyConfigError(f"{where}.{kind}: expected a non-empty string")
    return SecretRef(file=name) if kind == "file" else SecretRef(env=name)


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise NotifyConfigError(f"{where}: expected a list of non-empty strings")
    return tuple(value)


def parse_config(data: Mapping[str, Any]) -> NotifyConfig:
    """Parse the channels file's JSON; raises NotifyConfigError naming the bad key."""
    known = {"routes", "languages", "sla_lead_seconds", "retry", "providers", "board_url"}
    unknown = set(data) - known
    if unknown:
        raise NotifyConfigError(f"unknown keys {sorted(unknown)} (known: {sorted(known)})")
    routes = []
    for index, raw in enumerate(data.get("routes", [])):
        where = f"routes[{index}]"
        if not isinstance(raw, Mapping) or set(raw) - {"agency", "kecamatan", *CHANNELS}:
            raise NotifyConfigError(f"{where}: expected agency, kecamatan and channel lists")
        agency, kecamatan = raw.get("agency", "*"), raw.get("kecamatan", "*")
        if agency not in (*AGENCIES, COMMAND_CENTER, "*"):
            raise NotifyConfigError(f"{where}.agency: {agency!r} is not one of "
                                    f"{', '.join((*AGENCIES, COMMAND_CENTER))} or *")
        if not isinstance(kecamatan, str):
            raise NotifyConfigError(f"{where}.kecamatan: expected a kecamatan code or *")
        routes.append(Route(agency, kecamatan, **{
            channel: _strings(raw[channel], f"{where}.{channel}")
            for channel in CHANNELS if channel in raw}))
    languages = tuple(data.get("languages", ["id"]))
    if not languages or any(lang not in LANGUAGES for lang in languages):
        raise NotifyConfigError(f"languages: a list of {', '.join(LANGUAGES)}")
    lead = data.get("sla_lead_seconds", 300)
    if not isinstance(lead, int) or isinstance(lead, bool) or lead < 0:
        raise NotifyConfigError("sla_lead_seconds: a whole number of seconds, 0 or more")
    retry_raw = data.get("retry", {})
    try:
        retry = RetryPolicy(**{key: type(getattr(RetryPolicy(), key))(value)
                               for key, value in retry_raw.items()})
    except (TypeError, ValueError) as error:
        raise NotifyConfigError(f"retry: {error} (attempts, base_seconds, max_seconds, "
                                "timeout_seconds)") from None
    if retry.attempts < 1:
        raise NotifyConfigError("retry.attempts: at least 1")
    providers: dict[str, dict[str, Any]] = {}
    for name, raw in data.get("providers", {}).items():
        spec = _PROVIDER_KEYS.get(name)
        if spec is None or not isinstance(raw, Mapping):
            raise NotifyConfigError(f"providers.{name}: unknown provider (known: "
                                    f"{', '.join(CHANNELS)})")
        extra = set(raw) - set(spec)
        if extra:
            raise NotifyConfigError(f"providers.{name}: unknown keys {sorted(extra)}")
        providers[name] = {key: _secret(value, f"providers.{name}.{key}")
                           if spec[key] == "secret" else value for key, value in raw.items()}
    board_url = data.get("board_url")
    return NotifyConfig(tuple(routes), languages, lead, retry, providers,
                        board_url if isinstance(board_url, str) else None)


# -- places and what is remembered ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Place:
    """A kelurahan as a message names it, with its centroid for the map link."""

    kelurahan: str
    kecamatan_code: str
    kecamatan: str
    lat: float
    lon: float


def places_from_wards(wards: Iterable[Mapping[str, Any]]) -> dict[str, Place]:
    """Places of `org.cityops.Ward` records (core.reference_data.load_ward_records)."""
    return {w["kelurahan_code"]: Place(w["kelurahan_name"], w["kecamatan_code"],
                                       w["kecamatan_name"], w["centroid_lat"], w["centroid_lon"])
            for w in wards}


def map_link(lat: float, lon: float) -> str:
    """An OpenStreetMap link that opens on any phone without an app or an API key."""
    return f"https://www.openstreetmap.org/?mlat={lat:.5f}&mlon={lon:.5f}#map=16/{lat:.5f}/{lon:.5f}"


@dataclass(slots=True)
class CaseInfo:
    """What the latest situation said about a case (for the notices that come from actions)."""

    category: str | None = None
    severity: str | None = None
    rw: str | None = None
    reported_at: int | None = None
    agency: str | None = None


@dataclass(slots=True)
class NotifyState:
    """What the step remembers: decided keys, cases' facts, the open CRITICAL episodes (ward ->
    the time the decider first saw it CRITICAL). Bounded (MAX_DECIDED, MAX_CASES)."""

    decided: dict[str, None] = field(default_factory=dict)
    cases: dict[str, CaseInfo] = field(default_factory=dict)
    episodes: dict[str, int] = field(default_factory=dict)

    def _remember(self, key: str) -> bool:
        if key in self.decided:
            return False
        self.decided[key] = None
        if len(self.decided) > MAX_DECIDED:
            del self.decided[next(iter(self.decided))]
        return True

    def _case(self, key: str) -> CaseInfo:
        info = self.cases.pop(key, None) or CaseInfo()
        self.cases[key] = info  # newest last
        if len(self.cases) > MAX_CASES:
            del self.cases[next(iter(self.cases))]
        return info


# -- notifications ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One language's rendering: a subject, the full text, and the five parameters of the
    WhatsApp template (what, where, since, expected, map link)."""

    language: str
    subject: str
    text: str
    parameters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Delivery:
    channel: str
    target: str


@dataclass(frozen=True, slots=True)
class Notification:
    """One decided notification: the outbox record (`to_record`), keyed by `key`."""

    key: str
    kind: str
    case: str
    event: str
    ward_code: str
    kecamatan_code: str | None
    agency: str
    decided_at: int
    map_url: str | None
    messages: tuple[Message, ...]
    deliveries: tuple[Delivery, ...]

    def to_record(self) -> dict[str, Any]:
        """The `org.cityops.Notification` record."""
        return {
            "key": self.key, "kind": self.kind, "case": self.case, "event": self.event,
            "ward_code": self.ward_code, "kecamatan_code": self.kecamatan_code,
            "agency": self.agency, "decided_at": from_ms(self.decided_at),
            "map_url": self.map_url,
            "messages": [{"language": m.language, "subject": m.subject, "text": m.text,
                          "parameters": list(m.parameters)} for m in self.messages],
            "deliveries": [{"channel": d.channel, "target": d.target} for d in self.deliveries],
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Notification:
        decided = record["decided_at"]
        return cls(
            record["key"], record["kind"], record["case"], record["event"], record["ward_code"],
            record["kecamatan_code"], record["agency"],
            to_ms(decided) if isinstance(decided, datetime) else int(decided),
            record["map_url"],
            tuple(Message(m["language"], m["subject"], m["text"], tuple(m["parameters"]))
                  for m in record["messages"]),
            tuple(Delivery(d["channel"], d["target"]) for d in record["deliveries"]))


def idempotency_key(notification_key: str, channel: str, target: str) -> str:
    """A stable id of one delivery (the webhook's Idempotency-Key, the e-mail's Message-ID
    local part): the same after a restart, so a receiver can drop a repeat."""
    return hashlib.sha256(f"{notification_key}\n{channel}\n{target}".encode()).hexdigest()[:32]


def wib(millis: int) -> str:
    return from_ms(millis).astimezone(WIB).strftime("%Y-%m-%d %H:%M WIB")


def duration(millis: int, language: str) -> str:
    """"7 menit", "1 jam 5 menit" / "7 min", "1 h 5 min"; seconds under a minute."""
    seconds = max(0, millis) // 1000
    if seconds < 60:
        return f"{seconds} {'detik' if language == 'id' else 's'}"
    hours, minutes = divmod(seconds // 60, 60)
    h, m = ("jam", "menit") if language == "id" else ("h", "min")
    return f"{hours} {h} {minutes} {m}" if hours else f"{minutes} {m}"


def _case_key(ward: str, source: str, incident: str) -> str:
    return f"{ward}/{source}/{incident}"


@dataclass(frozen=True, slots=True)
class _Facts:
    ward_code: str
    place: Place | None
    rw: str | None
    category: str | None
    severity: str | None
    source: str | None
    incident: str | None

    def what(self, language: str) -> str:
        category = (CATEGORY_NAMES[language].get(self.category, self.category)
                    if self.category else ("Kasus" if language == "id" else "Case"))
        severity = f" ({self.severity})" if self.severity else ""
        if self.incident is None:
            return category + severity
        report = "laporan" if language == "id" else "report"
        return f"{category}{severity}, {report} {self.source} {self.incident}"

    def where(self) -> str:
        parts = [f"RW {self.rw}"] if self.rw else []
        if self.place is not None:
            parts += [f"Kel. {self.place.kelurahan}", f"Kec. {self.place.kecamatan}"]
        else:
            parts.append(f"kelurahan {self.ward_code}")
        return ", ".join(parts)

    def short(self, language: str) -> str:
        name = self.place.kelurahan if self.place else self.ward_code
        category = (CATEGORY_NAMES[language].get(self.category, self.category)
                    if self.category else ("Kasus" if language == "id" else "Case"))
        return f"{category} di Kel. {name}" if language == "id" else f"{category} in Kel. {name}"


_LABELS: Final[Mapping[str, tuple[str, str, str, str, str]]] = {
    "id": ("Apa", "Di mana", "Peta", "Sejak", "Yang diharapkan"),
    "en": ("What", "Where", "Map", "Since", "Expected"),
}


def _message(language: str, subject: str, what: str, where: str, map_url: str | None,
             since: str, expected: str, extra: Iterable[str], ref: str) -> Message:
    labels = _LABELS[language]
    lines = [f"[CityOps Cilegon] {subject}", f"{labels[0]}: {what}", f"{labels[1]}: {where}"]
    if map_url:
        lines.append(f"{labels[2]}: {map_url}")
    lines += [f"{labels[3]}: {since}", f"{labels[4]}: {expected}", *extra, f"Ref: {ref}"]
    return Message(language, subject, "\n".join(lines),
                   (what, where, since, expected, map_url or "-"))


def _quote(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED - 1] + "…"


class NotificationStep:
    """The decider: call `on_action` and `on_situation` in input order; each returns the
    notifications newly due (already remembered as decided)."""

    def __init__(self, config: NotifyConfig, places: Mapping[str, Place], sla: SlaRules,
                 state: NotifyState | None = None) -> None:
        self.config, self.places, self.sla = config, places, sla
        self.state = state if state is not None else NotifyState()

    # -- restoring ------------------------------------------------------------------------------

    def restore(self, notification: Notification) -> None:
        """Remember a notification read back from the outbox (on start): decided, and for a
        CRITICAL notice its open episode."""
        self.state._remember(notification.key)
        if notification.kind == "CRITICAL_UNACKNOWLEDGED":
            since = int(notification.event.rsplit(":", 1)[1])
            if self.state.episodes.get(notification.ward_code, -1) < since:
                self.state.episodes[notification.ward_code] = since

    # -- inputs ---------------------------------------------------------------------------------

    def on_action(self, action: Mapping[str, Any]) -> list[Notification]:
        """ASSIGNED for an ASSIGN, CLOSED for a CLOSE; nothing for the other actions, nor for
        one the worker refuses (`processors.operations.check_action`: a role that may not, a
        missing target), which never reaches the board either."""
        kind = action.get("action")
        source, incident = action.get("incident_source"), action.get("incident_id")
        if kind not in ("ASSIGN", "CLOSE") or not source or not incident:
            return []
        try:
            check_action(action)
        except Rejection:
            return []
        ward = str(action["ward_code"])
        case = _case_key(ward, source, incident)
        info = self.state._case(case)
        at = to_ms(action["occurred_at"])
        facts = self._facts(ward, source, incident, info)
        operator = str(action["operator_id"])
        if kind == "ASSIGN":
            agency = str(action.get("agency"))
            if agency not in AGENCIES:
                return []
            info.agency = agency
            event = f"assigned:{agency}:{action['action_id']}"
            start = info.reported_at
            on_scene = (None if start is None
                        else self.sla.limit_seconds("on_scene", info.category or "", agency))
            messages = []
            for lang in self.config.languages:
                deadline = ("" if on_scene is None or start is None else
                            (f"; batas tiba di lokasi {wib(start + on_scene * 1000)}"
                             if lang == "id" else
                             f"; on scene by {wib(start + on_scene * 1000)}"))
                if lang == "id":
                    subject = f"Penugasan untuk {agency}: {facts.short(lang)}"
                    expected = f"{agency} mengirim petugas ke lokasi{deadline}."
                    extra = [f"Ditugaskan oleh: {operator} ({wib(at)})"]
                else:
                    subject = f"Assigned to {agency}: {facts.short(lang)}"
                    expected = f"{agency} sends a team to the scene{deadline}."
                    extra = [f"Assigned by: {operator} ({wib(at)})"]
                if action.get("text"):
                    extra.append(("Catatan: " if lang == "id" else "Note: ")
                                 + _quote(action["text"]))
                messages.append(self._render(lang, subject, facts, start if start else at,
                                             expected, extra, f"{case}|{event}"))
            return self._emit("ASSIGNED", case, event, ward, agency, at, messages)
        agency = info.agency or COMMAND_CENTER
        event = f"closed:{action['action_id']}"
        messages = []
        for lang in self.config.languages:
            if lang == "id":
                subject = f"Kasus ditutup: {facts.short(lang)}"
                expected = "tidak ada tindakan lanjutan; tarik petugas bila masih di lokasi."
                extra = [f"Ditutup oleh: {operator} ({wib(at)})"]
            else:
                subject = f"Case closed: {facts.short(lang)}"
                expected = "nothing further; stand the team down if still on scene."
                extra = [f"Closed by: {operator} ({wib(at)})"]
            if action.get("text"):
                extra.append(("Alasan: " if lang == "id" else "Reason: ") + _quote(action["text"]))
            messages.append(self._render(lang, subject, facts, info.reported_at or at,
                                         expected, extra, f"{case}|{event}"))
        return self._emit("CLOSED", case, event, ward, agency, at, messages)

    def on_situation(self, situation: Mapping[str, Any]) -> list[Notification]:
        """CRITICAL_UNACKNOWLEDGED and SLA_EXPIRING from a kelurahan situation."""
        if situation.get("scope") != "KELURAHAN":
            return []
        ward = str(situation["scope_code"])
        as_of = to_ms(situation["emitted_at"])
        found: list[Notification] = []
        found += self._critical(ward, situation, as_of)
        for record in situation.get("cases", []):
            found += self._sla(ward, record, as_of)
        return found

    def observe(self, situation: Mapping[str, Any]) -> None:
        """Learn what a situation says about its cases (place, category, agency) and its
        CRITICAL episode, deciding nothing: a restarted decider reads the compacted situations
        this way, so an assignment right after the restart still names the RW and the
        category, and a closure still reaches the agency the case was assigned to."""
        if situation.get("scope") != "KELURAHAN":
            return
        ward = str(situation["scope_code"])
        if situation["level"] == "CRITICAL" and not situation.get("acknowledged_by"):
            self.state.episodes.setdefault(ward, to_ms(situation["emitted_at"]))
        else:
            self.state.episodes.pop(ward, None)
        for record in situation.get("cases", []):
            self._learn(ward, record)

    # -- the rules ------------------------------------------------------------------------------

    def _critical(self, ward: str, situation: Mapping[str, Any], as_of: int) -> list[Notification]:
        critical = situation["level"] == "CRITICAL" and not situation.get("acknowledged_by")
        if not critical:
            self.state.episodes.pop(ward, None)
            return []
        since = self.state.episodes.setdefault(ward, as_of)
        waited = waited_ms(situation.get("reasons", []))
        if waited is None:
            return []
        # The key keeps the decider's own first sight (stable across replays); the message
        # says since when the ward waits, as the worker's clock counts it.
        shown = as_of - waited
        event = f"critical_unacknowledged:{since}"
        facts = _Facts(ward, self.places.get(ward), None, None, None, None, None)
        reasons = _quote("; ".join(situation.get("reasons", [])))
        limit = self.sla.acknowledge_seconds.get("CRITICAL")
        messages = []
        for lang in self.config.languages:
            name = facts.place.kelurahan if facts.place else ward
            if lang == "id":
                subject = f"KRITIS belum di-acknowledge: Kel. {name}"
                what = f"situasi CRITICAL belum di-acknowledge: {reasons}"
                expected = ("operator command center meng-acknowledge situasi di board dan "
                            "menugaskan instansi"
                            + (f" (batas {duration((limit or 0) * 1000, lang)})." if limit
                               else "."))
            else:
                subject = f"CRITICAL not acknowledged: Kel. {name}"
                what = f"CRITICAL situation not acknowledged: {reasons}"
                expected = ("a command-center operator acknowledges it on the board and assigns "
                            "the cases"
                            + (f" (limit {duration((limit or 0) * 1000, lang)})." if limit
                               else "."))
            messages.append(_message(lang, subject, what, facts.where(), self._map(ward),
                                     wib(shown), expected, self._board(lang),
                                     f"{ward}|{event}"))
        return self._emit("CRITICAL_UNACKNOWLEDGED", ward, event, ward, COMMAND_CENTER, as_of,
                          messages)

    def _sla(self, ward: str, record: Mapping[str, Any], as_of: int) -> list[Notification]:
        case, info = self._learn(ward, record)
        source, incident = str(record["source_system"]), str(record["incident_id"])
        if info.reported_at is None or record.get("closed_at") is not None:
            return []
        status = record.get("status")
        done = {"dispatch": bool(info.agency) or status in ("DISPATCHED", "ON_SCENE"),
                "on_scene": status == "ON_SCENE", "resolve": False}
        facts = self._facts(ward, source, incident, info)
        found: list[Notification] = []
        for clock in SLA_CLOCKS:
            if done[clock]:
                continue
            limit = self.sla.limit_seconds(clock, info.category or "", info.agency)
            if limit is None:
                continue
            deadline = info.reported_at + limit * 1000
            left = deadline - as_of
            if left > self.config.sla_lead_seconds * 1000:
                continue
            event = f"sla_expiring:{clock}"
            if f"{case}|{event}" in self.state.decided:
                continue
            agency = info.agency or COMMAND_CENTER
            messages = []
            for lang in self.config.languages:
                name = _CLOCK_NAMES[lang][clock]
                if lang == "id":
                    state = (f"habis dalam {duration(left, lang)}" if left > 0
                             else f"sudah lewat {duration(-left, lang)}")
                    subject = (f"SLA {name} hampir habis: {facts.short(lang)}" if left > 0
                               else f"SLA {name} terlewati: {facts.short(lang)}")
                    todo = {"dispatch": "tugaskan instansi",
                            "on_scene": f"{agency} tiba di lokasi",
                            "resolve": f"{agency} menyelesaikan kasus"}[clock]
                    expected = f"{todo} sebelum {wib(deadline)}."
                    extra = [f"Batas waktu {name}: {state}"]
                else:
                    state = (f"expires in {duration(left, lang)}" if left > 0
                             else f"overdue by {duration(-left, lang)}")
                    subject = (f"SLA {name} about to expire: {facts.short(lang)}" if left > 0
                               else f"SLA {name} overdue: {facts.short(lang)}")
                    todo = {"dispatch": "assign an agency",
                            "on_scene": f"{agency} on scene",
                            "resolve": f"{agency} resolves the case"}[clock]
                    expected = f"{todo} by {wib(deadline)}."
                    extra = [f"{name.capitalize()} clock: {state}"]
                messages.append(self._render(lang, subject, facts, info.reported_at, expected,
                                             extra + self._board(lang), f"{case}|{event}"))
            found += self._emit("SLA_EXPIRING", case, event, ward, agency, as_of, messages)
        return found

    # -- helpers --------------------------------------------------------------------------------

    def _learn(self, ward: str, record: Mapping[str, Any]) -> tuple[str, CaseInfo]:
        """Remember a situation's case record; returns the case key and what is known."""
        case = _case_key(ward, str(record["source_system"]), str(record["incident_id"]))
        info = self.state._case(case)
        reported = record.get("reported_at")
        info.category, info.severity, info.rw = (record["category"], record["severity"],
                                                 record.get("rw"))
        info.reported_at = None if reported is None else to_ms(reported)
        if record.get("assigned_agency"):
            info.agency = str(record["assigned_agency"])
        return case, info

    def _facts(self, ward: str, source: str, incident: str, info: CaseInfo) -> _Facts:
        return _Facts(ward, self.places.get(ward), info.rw, info.category, info.severity,
                      source, incident)

    def _map(self, ward: str) -> str | None:
        place = self.places.get(ward)
        return None if place is None else map_link(place.lat, place.lon)

    def _board(self, language: str) -> list[str]:
        if not self.config.board_url:
            return []
        return [f"{'Board' if language == 'en' else 'Papan'}: {self.config.board_url}"]

    def _render(self, language: str, subject: str, facts: _Facts, since: int, expected: str,
                extra: list[str], ref: str) -> Message:
        return _message(language, subject, facts.what(language), facts.where(),
                        self._map(facts.ward_code), wib(since), expected, extra, ref)

    def _emit(self, kind: str, case: str, event: str, ward: str, agency: str, at: int,
              messages: list[Message]) -> list[Notification]:
        key = f"{case}|{event}"
        if not self.state._remember(key):
            return []
        place = self.places.get(ward)
        kecamatan = place.kecamatan_code if place else None
        route = self.config.route(agency, kecamatan)
        deliveries = tuple(Delivery(c, t) for c, t in route.targets()) if route else ()
        return [Notification(key, kind, case, event, ward, kecamatan, agency, at,
                             self._map(ward), tuple(messages), deliveries)]
