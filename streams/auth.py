"""Who may use the situation board and its API, and how a request proves it (issue 14).

- Operators sign in with a name and password (`core/accounts.py`, Argon2id hashes) and get a
  session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site sends it),
  expiring after `session_ttl_s`, and Secure when the board is served over HTTPS.
- Every state-changing request (POST) carries the session's CSRF token in `X-CSRF-Token` (the
  sign-in form carries a one-time token of its own, double-submitted in a cookie); a missing
  or wrong token is refused with 403, and so is a request whose Origin is another site.
- Sign-in attempts are throttled per (name, client address) pair and per client address
  (issue 24, `LoginThrottle`): counted before the password is checked, 5 free failures per
  pair and 30 per address, then each attempt waits (1 s, doubling, at most 5 min) or gets
  429, with no Retry-After. Never per name alone, so guesses from elsewhere cannot lock an
  operator out; behind a reverse proxy the client address is the one the proxy saw
  (`client_address`, `CITYOPS_TRUSTED_PROXIES`).
- API consumers (dashboards, partners' servers) use a bearer token per consumer; a token reads
  the JSON API and the live stream and never acts.
- Only the configured host names are answered (the Host header is checked), so a web page on
  another origin cannot reach the API through DNS rebinding.

Sessions (issue 24) live on the compacted topic `city.operator.sessions.v1`, keyed by the
SHA-256 digest of the session id (the id itself is never stored: whoever reads the topic cannot
sign in with it), so every worker knows every session and a restart keeps them. A session ends
after `idle_s` without a request or `absolute_s` after sign-in, at sign-out, when a supervisor
ends it, or when its account's role changed or the account was removed (checked against the
accounts file on every request, so every worker refuses it at once); an ended session is a
tombstone every worker reads. The CSRF token of a session is an HMAC of its id, so every worker
derives the same one without storing it. The policy objects here take the time as an argument,
so the unit tests run them at exact instants.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from core import accounts
from core.accounts import AccountError, Accounts, Principal
from processors.scopes import Scope, route_allowed

log = logging.getLogger(__name__)

SESSION_COOKIE: Final = "cityops_session"
#: The cookie's name when cookies are Secure: the `__Host-` prefix makes the browser refuse it
#: unless it is Secure, has Path=/ and no Domain, so no subdomain can plant or shadow it.
HOST_SESSION_COOKIE: Final = "__Host-cityops_session"
LOGIN_COOKIE: Final = "cityops_login"
CSRF_HEADER: Final = "X-CSRF-Token"
#: Open sessions per account; a sign-in past it ends that account's oldest session.
MAX_SESSIONS_PER_ACCOUNT: Final = 5
ACTIVE: Final = "ACTIVE"
#: How long a password-checked session may wait for its second factor.
PENDING_S: Final = 300.0
#: A session's last request is written to the topic at most this often: the idle timeout is
#: exact to within this much, and a busy board does not write per request.
TOUCH_EVERY_S: Final = 60.0
#: Sign-in attempts in a row that failed, per (name, client address) pair, before that pair is
#: slowed down (issue 24: the pair, not the name alone, so an attacker elsewhere cannot slow
#: the account's owner down).
FREE_ATTEMPTS: Final = 5
#: Failed attempts from one client address, whatever the names, before every attempt from it
#: is slowed down: the budget against one address trying many names (credential stuffing).
#: Large enough for an office behind one NAT address to mistype for a day.
FREE_ADDRESS_ATTEMPTS: Final = 30
#: The wait after the first attempt over a budget; it doubles with each further one, up to the
#: cap.
FIRST_DELAY_S: Final = 1.0
MAX_DELAY_S: Final = 300.0
#: A key with no failed attempt for this long starts again from nothing.
FORGET_AFTER_S: Final = 3_600.0
#: Keys tracked by the throttle; past it the one not failed for the longest is forgotten.
MAX_TRACKED: Final = 10_000
#: What anyone may fetch without signing in: the sign-in page, the static files, and Faust's
#: `/` index (the liveness check). Everything else of the board and the API needs a principal.
PUBLIC_PATHS: Final = ("/board/login", "/board/static/")
LIVENESS_PATH: Final = "/"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def session_digest(session_id: str) -> str:
    """What the topic and every worker's memory hold of a session id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_token(session_id: str) -> str:
    """The session's CSRF token: an HMAC of its id, the same on every worker, never stored."""
    return hmac.new(session_id.encode(), b"cityops-board-csrf", hashlib.sha256).hexdigest()


@dataclass
class Session:
    """One session as a request sees it."""

    digest: str
    principal: Principal
    created_at: float
    last_seen_at: float
    address: str
    csrf: str = ""
    #: ACTIVE, or SECOND_FACTOR / ENROL while the second factor is still to come.
    stage: str = ACTIVE
    #: The TOTP time step the session was signed in with.
    step: int | None = None

    @property
    def active(self) -> bool:
        return self.stage == ACTIVE

    def record(self) -> dict[str, Any]:
        """The BoardSession record of the topic."""
        return {"session_digest": self.digest, "account": self.principal.name,
                "role": self.principal.role, "created_at": _time(self.created_at),
                "last_seen_at": _time(self.last_seen_at), "address": self.address,
                "stage": self.stage, "second_factor_step": self.step,
                "scope": scope_of(self.principal).key()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Session:
        scope = Scope.parse(record.get("scope"))
        return cls(str(record["session_digest"]),
                   Principal(str(record["account"]), str(record["role"]), "operator",
                             agency=scope.agency, kecamatan=tuple(sorted(scope.kecamatan))),
                   record["created_at"].timestamp(), record["last_seen_at"].timestamp(),
                   str(record["address"]), stage=str(record.get("stage") or ACTIVE),
                   step=record.get("second_factor_step"))


def _time(seconds: float) -> datetime:
    """Epoch seconds as the millisecond UTC time Avro keeps."""
    return datetime.fromtimestamp(int(seconds * 1000) / 1000, UTC)


def scope_of(principal: Principal) -> Scope:
    """What a principal answers for (issue 24, part 4)."""
    return Scope.of(principal.agency, principal.kecamatan)


def why_ended(session: Session, now: float, absolute_s: float, idle_s: float,
              role: str | None, scope: str | None = None) -> str | None:
    """Why a session no longer holds (None: it does): its absolute lifetime or idle timeout
    passed, or its account (`role`: the account's role now, None when removed; `scope`: its
    scope now, `Scope.key`) changed; a session waiting for its second factor lasts
    `PENDING_S`."""
    if not session.active and now >= session.created_at + PENDING_S:
        return "second factor not given in time"
    if now >= session.created_at + absolute_s:
        return "expired"
    if now >= session.last_seen_at + idle_s:
        return "idle"
    if role is None:
        return "account removed"
    if role != session.principal.role:
        return "role changed"
    if scope != scope_of(session.principal).key():
        return "scope changed"
    return None


def account_now(record: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(role, scope key) of an accounts-file record now; (None, None) for a removed one."""
    if record is None:
        return None, None
    return str(record["role"]), Scope.of(*accounts.scope_fields(record)).key()


class SessionBook:
    """Every worker's sessions by digest: what the topic says, plus this worker's own writes
    (applied at once, so the redirect after sign-in finds its session here)."""

    def __init__(self, absolute_s: float, idle_s: float,
                 per_account: int = MAX_SESSIONS_PER_ACCOUNT) -> None:
        self.absolute_s = absolute_s
        self.idle_s = idle_s
        self.per_account = per_account
        self.sessions: dict[str, Session] = {}
        #: The latest TOTP step each account signed in with, on any worker (kept after its
        #: session ends: a code is refused again for its whole validity).
        self.last_steps: dict[str, int] = {}

    def _saw_step(self, session: Session) -> None:
        if session.step is not None and session.step > self.last_steps.get(
                session.principal.name, -1):
            self.last_steps[session.principal.name] = session.step

    def last_step(self, name: str) -> int | None:
        return self.last_steps.get(name)

    def apply(self, digest: str, record: Mapping[str, Any] | None) -> None:
        """A record read from the topic (None: a tombstone)."""
        if record is None:
            self.sessions.pop(digest, None)
            return
        session = Session.from_record(record)
        self._saw_step(session)
        known = self.sessions.get(digest)
        if known is not None and known.last_seen_at > session.last_seen_at:
            session.last_seen_at = known.last_seen_at
        self.sessions[digest] = session

    def open(self, principal: Principal, now: float, address: str, stage: str = ACTIVE,
             step: int | None = None) -> tuple[str, Session, list[str]]:
        """A new session (a new random id at every sign-in, and again once the second factor
        is given), and the digests of the account's oldest sessions of the same kind (signed
        in, or waiting for a second factor) it pushes past `per_account` (to be ended)."""
        session_id = secrets.token_urlsafe(32)
        session = Session(session_digest(session_id), principal, now, now, address,
                          csrf_token(session_id), stage, step)
        self._saw_step(session)
        mine = sorted((s for s in self.sessions.values() if s.principal.name == principal.name
                       and s.active == session.active), key=lambda s: s.created_at)
        ended = [s.digest for s in mine[:max(0, len(mine) + 1 - self.per_account)]]
        for digest in ended:
            del self.sessions[digest]
        self.sessions[session.digest] = session
        return session_id, session, ended

    def find(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self.sessions.get(session_digest(session_id))
        if session is not None:
            session.csrf = csrf_token(session_id)
        return session

    def of_account(self, name: str) -> list[Session]:
        return [s for s in self.sessions.values() if s.principal.name == name]

    def end(self, digest: str) -> bool:
        return self.sessions.pop(digest, None) is not None

    def __len__(self) -> int:
        return len(self.sessions)


@dataclass(frozen=True)
class Attempt:
    """One sign-in attempt the throttle let through, already counted as a failure."""

    keys: tuple[str, ...]


def throttle_keys(name: str, address: str) -> tuple[str, str]:
    """The pair key and the address key of an attempt."""
    return f"pair:{name}|{address}", f"address:{address}"


class LoginThrottle:
    """Failed sign-in attempts per key and when the next attempt may come (issue 24).

    An attempt is counted before its password is checked, in the one synchronous step that
    also decides whether it may go ahead (`begin`): no await in between, so of 120 attempts
    sent at once only those within the budget reach the (slow) hash. A right password then
    clears the pair and gives the address back the attempt it was charged (`succeeded`).

    Keys: the (name, address) pair (`FREE_ATTEMPTS`) and the address (`FREE_ADDRESS_ATTEMPTS`).
    No key is the name alone: a name's owner signing in from their own address is never
    slowed down by guesses from elsewhere. The delay is a wait, never a lock.
    """

    def __init__(self, capacity: int = MAX_TRACKED) -> None:
        self.capacity = capacity
        #: key -> (failed attempts, earliest next attempt, last failure)
        self._failures: OrderedDict[str, tuple[int, float, float]] = OrderedDict()

    @staticmethod
    def _free(key: str) -> int:
        return FREE_ADDRESS_ATTEMPTS if key.startswith("address:") else FREE_ATTEMPTS

    def _entry(self, key: str, now: float) -> tuple[int, float, float]:
        entry = self._failures.get(key, (0, 0.0, 0.0))
        if entry[0] and now - entry[2] >= FORGET_AFTER_S:
            del self._failures[key]
            return (0, 0.0, 0.0)
        return entry

    def wait_s(self, keys: Iterable[str], now: float) -> float:
        """Seconds to wait before an attempt for these keys is heard (0: go ahead)."""
        return max((max(0.0, self._entry(k, now)[1] - now) for k in keys), default=0.0)

    def begin(self, keys: Iterable[str], now: float) -> Attempt | None:
        """Count an attempt now, or None (not counted) when one of its keys must still wait."""
        keys = tuple(keys)
        if self.wait_s(keys, now) > 0:
            return None
        self.failed(keys, now)
        return Attempt(keys)

    def failed(self, keys: Iterable[str], now: float) -> None:
        for key in keys:
            count = self._entry(key, now)[0] + 1
            self._failures.pop(key, None)
            free = self._free(key)
            delay = (0.0 if count < free
                     else min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** (count - free)))
            self._failures[key] = (count, now + delay, now)
            while len(self._failures) > self.capacity:
                self._failures.popitem(last=False)

    def succeeded(self, attempt: Attempt) -> None:
        """The attempt's password was right: the pair starts again, the address gets its
        attempt back (but keeps any other failures: a colleague's right password does not
        clear an attacker's budget)."""
        for key in attempt.keys:
            if key.startswith("address:"):
                entry = self._failures.get(key)
                if entry is not None:
                    count = entry[0] - 1
                    if count <= 0:
                        del self._failures[key]
                    else:
                        self._failures[key] = (count, entry[1], entry[2])
            else:
                self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, (0, 0.0, 0.0))[0]


def client_address(remote: str | None, forwarded_for: str | None,
                   trusted: Iterable[str]) -> str:
    """The client's address: the peer's, unless the peer is a trusted reverse proxy, then the
    last address in `X-Forwarded-For` that is not itself a trusted proxy (the one the nearest
    trusted proxy saw; addresses further left are whatever the client wrote)."""
    networks = [ipaddress.ip_network(entry, strict=False) for entry in trusted]

    def is_trusted(address: str) -> bool:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in networks)

    peer = remote or "unknown"
    if not forwarded_for or not is_trusted(peer):
        return peer
    for hop in reversed([part.strip() for part in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain: believe only the proxy itself
        if not is_trusted(hop):
            return hop
    return peer


def host_name(header: str | None) -> str:
    """The host of a Host header without its port, lower case ("[::1]:6066" -> "[::1]")."""
    if not header:
        return ""
    host = header.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts(web_host: str, extra: Iterable[str]) -> frozenset[str]:
    """The host names the board answers to: loopback, the bind address (unless it binds every
    interface) and the configured ones."""
    hosts = {"127.0.0.1", "localhost", "[::1]", *(h.lower() for h in extra)}
    if web_host not in ("0.0.0.0", "::", ""):
        hosts.add(web_host.lower())
    return frozenset(hosts)


def same_token(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given), expected)


class AccountBook:
    """The accounts file, re-read when it changes (an account added while the worker runs)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path or accounts.default_path()
        self._mtime: float | None = None
        self._accounts = Accounts()

    def current(self) -> Accounts:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return Accounts()
        if mtime != self._mtime:
            try:
                self._accounts = accounts.load(self.path)
            except AccountError as error:
                log.error("operator accounts not (re)loaded: %s", error)
            self._mtime = mtime
        return self._accounts


Publish = Callable[[str, "dict[str, Any] | None"], Awaitable[None]]
#: Longest a request with an unknown session cookie waits for this worker's copy of the
#: sessions topic to catch up (a sign-in on another worker a moment ago).
CATCH_UP_S: Final = 2.0
#: Longest a request with a session cookie waits for a starting worker to have read the
#: sessions topic.
LOAD_WAIT_S: Final = 15.0
#: Ended sessions remembered, so a last-minute write for one (a touch racing the tombstone)
#: is answered with the tombstone again instead of bringing it back.
MAX_ENDED: Final = 10_000
#: The live stream: it does not count as activity (a board left open is idle).
STREAM_PATH: Final = "/api/situations/stream"


class BoardSecurity:
    """The board's sessions, throttle, accounts and host list, and the middleware enforcing
    them on every request the worker's web server answers."""

    def __init__(self, *, web_host: str, extra_hosts: Iterable[str], accounts_path: Path | None,
                 session_ttl_s: float, secure_cookies: bool, idle_s: float = 1_800.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.hosts = allowed_hosts(web_host, extra_hosts)
        self.sessions = SessionBook(session_ttl_s, idle_s)
        self.throttle = LoginThrottle()
        self.accounts = AccountBook(accounts_path)
        self.secure_cookies = secure_cookies
        self.cookie_name = HOST_SESSION_COOKIE if secure_cookies else SESSION_COOKIE
        self.clock = clock
        #: Writes a session record (None: a tombstone) to the sessions topic; set by the
        #: operator routes, which own the producer.
        self.publish: Publish | None = None
        #: Waits until this worker's copy of the sessions topic has caught up; `loaded` is set
        #: once it was read to the end offsets seen at start (a restarted worker).
        self.catch_up: Callable[[], Awaitable[None]] | None = None
        self.loaded: asyncio.Event | None = None
        #: Called with the digest of every session that ends (the live streams close).
        self.on_end: list[Callable[[str], None]] = []
        self._ended: OrderedDict[str, None] = OrderedDict()

    # -- sessions -------------------------------------------------------------------------

    async def _write(self, digest: str, record: dict[str, Any] | None) -> None:
        if self.publish is not None:
            await self.publish(digest, record)

    async def open_session(self, principal: Principal, address: str, stage: str = ACTIVE,
                           step: int | None = None) -> str:
        """Sign-in: a new session id (never one the browser brought), written for every
        worker; the account's oldest session past the per-account cap ends."""
        session_id, session, pushed_out = self.sessions.open(principal, self.clock(), address,
                                                             stage, step)
        await self._write(session.digest, session.record())
        for digest in pushed_out:
            await self.end_session(digest, "more than "
                                   f"{self.sessions.per_account} sessions")
        return session_id

    async def end_session(self, digest: str, why: str) -> bool:
        """End one session on every worker (a tombstone); False when there was none."""
        found = self.sessions.end(digest)
        self._remember_ended(digest)
        await self._write(digest, None)
        self._ended_here(digest)
        if found:
            log.info("board session %s… ended: %s", digest[:12], why)
        return found

    async def end_account_sessions(self, name: str, why: str) -> int:
        sessions = self.sessions.of_account(name)
        for session in sessions:
            await self.end_session(session.digest, why)
        return len(sessions)

    def _remember_ended(self, digest: str) -> None:
        self._ended[digest] = None
        while len(self._ended) > MAX_ENDED:
            self._ended.popitem(last=False)

    def _ended_here(self, digest: str) -> None:
        for listener in self.on_end:
            try:
                listener(digest)
            except Exception:  # a listener must never stop sign-out
                log.exception("session-end listener %r failed", listener)

    def session_read(self, digest: str, record: dict[str, Any] | None) -> bool:
        """A record of the sessions topic, as every worker reads it (in topic order); True when
        the session must be ended again: a write for it (a touch racing the tombstone) came
        after its tombstone, and must not bring it back."""
        if record is None:
            self.sessions.apply(digest, None)
            self._remember_ended(digest)
            self._ended_here(digest)
            return False
        if digest in self._ended:
            return True
        self.sessions.apply(digest, record)
        return False

    async def sweep(self) -> int:
        """End every session past its timeouts or whose account changed; run every second by
        every worker, so open streams of such sessions close too."""
        now, operators = self.clock(), self.accounts.current().operators
        ended = 0
        for session in list(self.sessions.sessions.values()):
            why = why_ended(session, now, self.sessions.absolute_s, self.sessions.idle_s,
                            *account_now(operators.get(session.principal.name)))
            if why is not None:
                ended += await self.end_session(session.digest, why)
        return ended

    async def session(self, request: web.Request, stage: str = ACTIVE) -> Session | None:
        """The request's session, if it still holds: a signed-in one (`stage` ACTIVE), or one
        waiting for its second factor (any other `stage`), which grants nothing else; one that
        does not hold is ended here."""
        session_id = request.cookies.get(self.cookie_name)
        if not session_id:
            return None
        if self.loaded is not None and not self.loaded.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.loaded.wait(), LOAD_WAIT_S)
        session = self.sessions.find(session_id)
        if session is None and self.catch_up is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.catch_up(), CATCH_UP_S)
            session = self.sessions.find(session_id)
        if session is None or session.active != (stage == ACTIVE):
            return None
        now = self.clock()
        why = why_ended(session, now, self.sessions.absolute_s, self.sessions.idle_s,
                        *account_now(self.accounts.current().operators.get(
                            session.principal.name)))
        if why is not None:
            await self.end_session(session.digest, why)
            return None
        if request.path != STREAM_PATH and now - session.last_seen_at >= TOUCH_EVERY_S:
            session.last_seen_at = now
            await self._write(session.digest, session.record())
        return session

    async def principal(self, request: web.Request) -> tuple[Principal | None, Session | None]:
        session = await self.session(request)
        if session is not None:
            return session.principal, session
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ").strip()
            return self.accounts.current().token_principal(token), None
        return None, None

    def set_session_cookie(self, response: web.StreamResponse, session_id: str) -> None:
        response.set_cookie(self.cookie_name, session_id,
                            max_age=int(self.sessions.absolute_s), path="/", httponly=True,
                            samesite="Strict", secure=self.secure_cookies)

    def clear_session_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(self.cookie_name, path="/")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if host_name(request.headers.get("Host")) not in self.hosts:
            # 421 Misdirected Request: this server is not the one for that name
            return web.json_response({"error": "unknown host"}, status=421)
        path = request.path
        origin = request.headers.get("Origin")
        if (request.method not in SAFE_METHODS and origin is not None
                and host_name(origin.split("://", 1)[-1]) not in self.hosts):
            return web.json_response({"error": "cross-site request refused"}, status=403)
        public = path == LIVENESS_PATH or path.startswith(PUBLIC_PATHS)
        principal, session = await self.principal(request)
        request["principal"] = principal
        request["session"] = session
        if not public:
            if principal is None:
                if path.startswith("/board"):  # a person with a browser: the sign-in page
                    raise web.HTTPSeeOther("/board/login")
                return web.json_response({"error": "sign in or send an API token"},
                                         status=401)
            if request.method not in SAFE_METHODS:
                if session is None:
                    return web.json_response(
                        {"error": "actions need a signed-in operator (tokens only read)"},
                        status=403)
                if not same_token(request.headers.get(CSRF_HEADER), session.csrf):
                    return web.json_response({"error": "CSRF token missing or wrong"},
                                             status=403)
            scope = scope_of(principal)
            if not scope.whole_city:
                ward = request.match_info.get("code")
                if not route_allowed(scope, path, None):
                    return web.json_response(
                        {"error": "not open to an account bound to an agency or kecamatan"},
                        status=403)
                if not route_allowed(scope, path, ward):
                    return web.json_response({"error": "unknown kelurahan",
                                              "code": (ward or "")[:40]}, status=404)
        response = await handler(request)
        if response.prepared:  # a stream: its headers are on the wire already
            return response
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on form
        # posts, which the cross-site check above would refuse
        headers.setdefault("Referrer-Policy", "same-origin")
        if path.startswith("/board/") and not path.startswith("/board/static/"):
            headers.setdefault("Cache-Control", "no-store")
            headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
        return response
