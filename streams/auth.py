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

Sessions live in the memory of the worker that signed the operator in (bounded); a restarted
worker signs everyone out. The policy objects here take the time as an argument, so the unit
tests run them at exact instants.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web

from core import accounts
from core.accounts import AccountError, Accounts, Principal

log = logging.getLogger(__name__)

SESSION_COOKIE: Final = "cityops_session"
LOGIN_COOKIE: Final = "cityops_login"
CSRF_HEADER: Final = "X-CSRF-Token"
#: Open sessions kept per worker; past it the one expiring first is dropped.
MAX_SESSIONS: Final = 1_000
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


@dataclass
class Session:
    principal: Principal
    csrf: str
    expires_at: float


class SessionStore:
    """Signed-in operators by session id (random, 256 bits), each with its CSRF token."""

    def __init__(self, ttl_s: float, capacity: int = MAX_SESSIONS) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._sessions: dict[str, Session] = {}

    def open(self, principal: Principal, now: float) -> tuple[str, Session]:
        self._expire(now)
        if len(self._sessions) >= self.capacity:
            oldest = min(self._sessions, key=lambda sid: self._sessions[sid].expires_at)
            del self._sessions[oldest]
        session_id = secrets.token_urlsafe(32)
        session = Session(principal, secrets.token_urlsafe(32), now + self.ttl_s)
        self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str | None, now: float) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires_at <= now:
            del self._sessions[session_id]
            return None
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def _expire(self, now: float) -> None:
        for session_id in [sid for sid, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[session_id]

    def __len__(self) -> int:
        return len(self._sessions)


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


class BoardSecurity:
    """The board's sessions, throttle, accounts and host list, and the middleware enforcing
    them on every request the worker's web server answers."""

    def __init__(self, *, web_host: str, extra_hosts: Iterable[str], accounts_path: Path | None,
                 session_ttl_s: float, secure_cookies: bool,
                 clock: Callable[[], float] = time.time) -> None:
        self.hosts = allowed_hosts(web_host, extra_hosts)
        self.sessions = SessionStore(session_ttl_s)
        self.throttle = LoginThrottle()
        self.accounts = AccountBook(accounts_path)
        self.secure_cookies = secure_cookies
        self.clock = clock

    def principal(self, request: web.Request) -> tuple[Principal | None, Session | None]:
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE), self.clock())
        if session is not None:
            return session.principal, session
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ").strip()
            return self.accounts.current().token_principal(token), None
        return None, None

    def set_session_cookie(self, response: web.StreamResponse, session_id: str) -> None:
        response.set_cookie(SESSION_COOKIE, session_id, max_age=int(self.sessions.ttl_s),
                            path="/", httponly=True, samesite="Strict",
                            secure=self.secure_cookies)

    def clear_session_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path="/")

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
        principal, session = self.principal(request)
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
