"""The command center acts (issue 14): sign-in, operator actions and the audit trail on the board.

Kept apart from `streams/web.py` (the situation board itself) so the two grow without
touching each other; `register_operators` adds to the board's web server:

    GET  /board/login                       the sign-in page (public)
    POST /board/login                       sign in: name, password, the page's one-time token
    POST /board/logout                      sign out
    POST /board/logout-everywhere           sign out every session of the account
    GET  /api/sessions                      supervisors: every open session
    POST /api/sessions/{id}/end             supervisors: end one session everywhere
    POST /api/accounts/{name}/sessions/end  supervisors: end every session of an account
    GET  /api/me                            who is signed in, their role, the CSRF token
    POST /api/wards/{code}/actions/{action} acknowledge | assign | escalate | note | close
    GET  /api/actions/{action_id}           the receipt of an action still pending
    GET  /api/audit                         supervisors: every recent action in the city
    GET  /api/audit/sign-ins                supervisors: the newest sign-in attempts

An action is not applied here: it becomes an `OperatorAction` record on
`city.operator.actions.v1`, keyed by the kelurahan, and the ward agent that owns the ward folds
it in order with the ward's events; the board then shows it like any other change, through the
situation topic. So every worker serving the board sees the same result, and the topic is the
audit record.

Issue 24: an action must name what the board shows. An action on an incident names one of the
kelurahan's open cases in its current situation (else 404), so invented incident ids cannot
fill the ward's case cap; an assign, escalate or close carries the case version the operator
saw and is refused with what changed (409) when the case moved since, here against the board's
copy and again by the ward agent (two operators at once: the fold decides). The request then
waits for the ward agent's receipt on `city.operator.receipts.v1` (`ActionReceipts`) and says
whether the action was applied (200) or refused and why (409 conflict, 422 otherwise); past
`action_wait_s` it answers 202 "pending" and the page asks `/api/actions/{id}`.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import parse_qs

import pyotp
import segno
from aiohttp import web
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from core import accounts
from core.accounts import MAX_PASSWORD_LENGTH, Principal
from processors.neighbourhood import COUNT_FIELDS, REVIEW_DECISIONS, may_review
from processors.operations import (
    ACTIONS,
    MAX_TEXT,
    VERSIONED_ACTIONS,
    action_problem,
    describe_case,
    may,
    may_see_audit,
)
from processors.personal_data import screen_note
from processors.scopes import action_problem as scope_problem
from processors.scopes import scoped_situation, sees_ward
from processors.state import from_ms, to_ms
from processors.thresholds import AGENCIES
from schemas.codec import CodecError, decode, encode
from streams.auth import (
    LOGIN_COOKIE,
    Attempt,
    BoardSecurity,
    client_address,
    same_token,
    scope_of,
    throttle_keys,
)
from streams.compacted_topics import CompactedTopicView
from streams.web import iso, situation_json
from topics import catalog

if TYPE_CHECKING:
    from streams.web import Board

log = logging.getLogger(__name__)

LOGIN_PATH: Final = "/board/login"
SECOND_FACTOR_PATH: Final = "/board/login/second-factor"
#: The issuer an authenticator app shows next to the account.
TOTP_ISSUER: Final = "Cilegon Command Center"
#: Entries listed by /api/audit (the topic keeps all of them).
AUDIT_LIMIT: Final = 200
#: Largest request body read from a sign-in form or an action, in bytes.
MAX_BODY: Final = 4_096
#: Receipts kept per worker for `/api/actions/{id}` (the newest); the topic keeps an hour.
MAX_RECEIPTS: Final = 10_000
#: Sign-in attempts listed by /api/audit/sign-ins (the topic keeps a year of them).
SIGN_IN_LIMIT: Final = 500
#: How often every worker ends the sessions past their timeouts or whose account changed.
SWEEP_EVERY_S: Final = 1.0
#: Levels an acknowledgement is for.
RAISED_LEVELS: Final = frozenset({"ALERT", "CRITICAL"})


class RecentRecords(CompactedTopicView):
    """A topic every worker reads whole but keeps only the newest records of (`keep`): for the
    topics whose keys only grow (action ids, sign-in attempts), unlike the compacted views."""

    def __init__(self, topic: str, schema: str) -> None:
        super().__init__(topic, self._decode_record)
        self.schema = schema

    def _decode_record(self, value: bytes) -> dict[str, Any]:
        return decode(value, expected=self.schema).record

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            return
        try:
            record = self._decode_record(value)
        except Exception as error:
            log.warning("%s: unusable record: %s", self.topic, error)
            return
        self.keep(record)

    def keep(self, record: dict[str, Any]) -> None:
        raise NotImplementedError


class SignInTrail(RecentRecords):
    """The newest sign-in attempts of every worker, for the supervisors' audit page."""

    def __init__(self, topic: str, capacity: int = SIGN_IN_LIMIT) -> None:
        super().__init__(topic, catalog.SIGN_INS.value_schema)
        self.recent: deque[dict[str, Any]] = deque(maxlen=capacity)

    def keep(self, record: dict[str, Any]) -> None:
        self.recent.append(record)


class ActionReceipts(RecentRecords):
    """The receipts topic as every worker reads it: the newest receipts by action id, and the
    requests waiting for one (action ids only grow, so it keeps the newest `capacity`)."""

    def __init__(self, topic: str, capacity: int = MAX_RECEIPTS) -> None:
        super().__init__(topic, catalog.ACTION_RECEIPTS.value_schema)
        self.capacity = capacity
        self.recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def keep(self, record: dict[str, Any]) -> None:
        action_id = str(record["action_id"])
        self.recent[action_id] = record
        self.recent.move_to_end(action_id)
        while len(self.recent) > self.capacity:
            self.recent.popitem(last=False)
        waiter = self._waiters.pop(action_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(record)

    def expect(self, action_id: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the receipt of an action about to be sent (register before sending,
        so a fast receipt is not missed)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[action_id] = future
        return future

    async def wait(self, action_id: str, future: asyncio.Future[dict[str, Any]],
                   timeout_s: float) -> dict[str, Any] | None:
        """The receipt, or None when it did not come within `timeout_s`."""
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            return None
        finally:
            self._waiters.pop(action_id, None)


def receipt_answer(receipt: Mapping[str, Any], kind: str) -> web.Response:
    """200 for an applied action, 409 for a conflict, 422 for any other refusal."""
    applied = receipt["outcome"] == "APPLIED"
    body = {"action_id": str(receipt["action_id"]), "action": kind,
            "status": "applied" if applied else "refused", "reason": receipt["reason"],
            "case_version": receipt["case_version"], "folded_at": iso(receipt["folded_at"])}
    if not applied:
        body["error"] = receipt["message"] or receipt["reason"]
    status = 200 if applied else 409 if receipt["reason"] == "conflict" else 422
    return web.json_response(body, status=status)


def find_case(situation: Mapping[str, Any] | None, source: str,
              incident: str) -> Mapping[str, Any] | None:
    """The open case the board shows for (source, incident) in a kelurahan situation."""
    for case in (situation or {}).get("cases") or []:
        if case["source_system"] == source and case["incident_id"] == incident:
            return cast(Mapping[str, Any], case)
    return None


def case_now(case: Mapping[str, Any]) -> str:
    """`describe_case` of a situation's case (its last operator entry as the last action)."""
    operator_entries = [e for e in case["timeline"] if not str(e["actor"]).startswith("partner")]
    last = operator_entries[-1] if operator_entries else None
    return describe_case(case["assigned_agency"], case["assigned_by"], case["escalated_by"],
                         case["closed_by"], (last["kind"], last["actor"]) if last else None)


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Cilegon Command Center · {html.escape(title)}</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="../static/board.css">
  <link rel="stylesheet" href="../static/operators.css">
</head>
<body class="login-page">
{body}
</body>
</html>
"""


def second_factor_page(name: str, csrf: str, message: str = "",
                       enrol_uri: str | None = None, secret: str | None = None) -> str:
    """The second step of sign-in: a TOTP code (or a recovery code), or, for an account
    without one yet, the QR code to enrol an authenticator app and the first code."""
    notice = f'<p class="login-error" role="alert">{html.escape(message)}</p>' if message else ""
    if enrol_uri is not None and secret is not None:
        qr = segno.make(enrol_uri, error="m").svg_data_uri(scale=5, border=4, dark="black",
                                                            light="white")
        intro = f"""<p>Two-step sign-in is required for {html.escape(name)}. Scan this code with an
      authenticator app (Aegis, FreeOTP, Google Authenticator, ...), then type the 6 digits it
      shows.</p>
    <img id="totp-qr" class="totp-qr" alt="QR code of the authenticator secret" src="{qr}"
      width="220" height="220">
    <p class="note">Cannot scan? Enter this key:
      <code id="totp-secret">{html.escape(secret)}</code></p>"""
        hint = ""
    else:
        intro = (f"<p>Signed in as {html.escape(name)}: type the 6-digit code of your "
                 "authenticator app.</p>")
        hint = '<p class="note">Lost your phone? Type one of your recovery codes instead.</p>'
    return _page("Two-step sign-in", f"""  <form class="login" method="post" action="second-factor">
    <h1>Kota Cilegon · Command Center</h1>
    {notice}
    {intro}
    <label>Code <input name="code" autocomplete="one-time-code" inputmode="numeric" required
      autofocus></label>
    <input type="hidden" name="token" value="{html.escape(csrf)}">
    <button type="submit">Continue</button>
    {hint}
  </form>""")


def recovery_codes_page(codes: list[str]) -> str:
    """Shown once, right after enrolment: the recovery codes are stored only as digests."""
    items = "".join(f"<li><code>{html.escape(code)}</code></li>" for code in codes)
    return _page("Recovery codes", f"""  <div class="login">
    <h1>Kota Cilegon · Command Center</h1>
    <p>Two-step sign-in is set up. Keep these recovery codes somewhere safe: each signs you in
      once without your phone, and they are not shown again.</p>
    <ol id="recovery-codes">{items}</ol>
    <p><a id="continue" href="../">Continue to the board</a></p>
  </div>""")


def login_page(token: str, message: str = "") -> str:
    """The sign-in page; `message` is shown as text (escaped)."""
    notice = f'<p class="login-error" role="alert">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Cilegon Command Center · Sign in</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="static/board.css">
  <link rel="stylesheet" href="static/operators.css">
</head>
<body class="login-page">
  <form class="login" method="post" action="login">
    <h1>Kota Cilegon · Command Center</h1>
    {notice}
    <label>Name <input name="name" autocomplete="username" required autofocus></label>
    <label>Password <input name="password" type="password" autocomplete="current-password"
      required></label>
    <input type="hidden" name="token" value="{html.escape(token)}">
    <button type="submit">Sign in</button>
    <p class="note">No account? A supervisor creates one with
      <code>cityops operators add NAME --role viewer|operator|supervisor</code>.</p>
  </form>
</body>
</html>
"""


class OperatorWeb:
    """Sign-in and action routes on one board's web server."""

    def __init__(self, board: Board, security: BoardSecurity) -> None:
        self.board = board
        self.security = security
        self.context = board.context
        self.receipts = ActionReceipts(self.context.topics.name(catalog.ACTION_RECEIPTS))
        self.sign_ins = SignInTrail(self.context.topics.name(catalog.SIGN_INS))
        self.sessions_view = CompactedTopicView(
            self.context.topics.name(catalog.SESSIONS),
            lambda value: decode(value, expected=catalog.SESSIONS.value_schema).record,
            on_change=self._session_read)
        security.publish = self._publish_session
        self._writes: set[asyncio.Future[None]] = set()
        security.catch_up = self.sessions_view.caught_up
        security.loaded = self.sessions_view.ready
        security.on_end.append(board.feed.close_owner)

    # -- sign-in --------------------------------------------------------------------------

    def _login_response(self, message: str = "", status: int = 200) -> web.Response:
        token = uuid.uuid4().hex + uuid.uuid4().hex
        response = web.Response(text=login_page(token, message), status=status,
                                content_type="text/html")
        response.set_cookie(LOGIN_COOKIE, token, max_age=900, path=LOGIN_PATH, httponly=True,
                            samesite="Strict", secure=self.security.secure_cookies)
        return response

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if request.get("session") is not None:
            raise web.HTTPSeeOther("/board/")
        return self._login_response()

    async def login(self, request: web.Request) -> web.StreamResponse:
        """Check the form's one-time token, the throttle, then the password (Argon2id)."""
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return self._login_response("Request too large.", status=413)
        form = {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace"),
                                                           keep_blank_values=True).items()}
        if not same_token(form.get("token"), request.cookies.get(LOGIN_COOKIE, "")):
            return self._login_response("The sign-in form expired; please try again.",
                                        status=403)
        name = form.get("name", "").strip().lower()[:64]
        password = form.get("password", "")[:MAX_PASSWORD_LENGTH + 1]
        address = self.client_address(request)
        security = self.security
        known = name in security.accounts.current().operators
        # counted before the password is checked, in this one synchronous step (issue 24)
        attempt = security.throttle.begin(throttle_keys(name, address), security.clock())
        if attempt is None:
            await self._sign_in_event("THROTTLED", name if known else None, address)
            # no Retry-After and no time: the owner waits a little, a guesser learns nothing
            return self._login_response(
                "Too many failed sign-ins for this name from here; wait a little and try "
                "again.", status=429)
        # Argon2id takes tens of milliseconds of CPU on purpose: off the loop the agents share
        principal = await asyncio.to_thread(
            security.accounts.current().verify_password, name, password)
        if principal is None:
            await self._sign_in_event("WRONG_PASSWORD", name if known else None, address)
            log.warning("board sign-in refused for %s from %s",
                        repr(name) if known else "an unknown name", address)
            return self._login_response("Wrong name or password.", status=401)
        book = security.accounts.current()
        settings = self.context.settings
        if settings.second_factor and book.needs_second_factor(
                principal.name, settings.viewer_second_factor):
            # the password was right: the attempt stays charged until the second factor is
            # given, and the session grants nothing until then (issue 24)
            stage = "SECOND_FACTOR" if book.totp_secret(principal.name) else "ENROL"
            pending_id = await security.open_session(principal, address, stage=stage)
            response = web.HTTPSeeOther(SECOND_FACTOR_PATH)
            security.set_session_cookie(response, pending_id)
            response.del_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
            raise response
        security.throttle.succeeded(attempt)
        return await self._signed_in(principal, address)

    async def _signed_in(self, principal: Principal, address: str, step: int | None = None,
                         landing: web.Response | None = None) -> web.StreamResponse:
        """Open the signed-in session (a new id) and send the browser to the board."""
        await self._sign_in_event("SUCCEEDED", principal.name, address)
        session_id = await self.security.open_session(principal, address, step=step)
        log.info("board sign-in: %s (%s)", principal.name, principal.role)
        if landing is not None:
            self.security.set_session_cookie(landing, session_id)
            return landing
        response = web.HTTPSeeOther("/board/")
        self.security.set_session_cookie(response, session_id)
        response.del_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
        raise response

    # -- the second factor (issue 24) -----------------------------------------------------

    def _second_factor_response(self, session: Any, message: str = "",
                                status: int = 200) -> web.Response:
        name = session.principal.name
        uri = secret = None
        if session.stage == "ENROL":
            secret = accounts.begin_enrolment(name, self.security.accounts.path)
            uri = pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=TOTP_ISSUER)
        return web.Response(text=second_factor_page(name, session.csrf, message, uri, secret),
                            status=status, content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def second_factor_form(self, request: web.Request) -> web.StreamResponse:
        session = await self.security.session(request, stage="SECOND_FACTOR")
        if session is None:
            raise web.HTTPSeeOther(LOGIN_PATH)
        return self._second_factor_response(session)

    async def second_factor(self, request: web.Request) -> web.StreamResponse:
        """Check the TOTP code (or a recovery code, or the first code of an enrolment); a
        wrong, late or replayed code counts in the throttle like a wrong password."""
        security = self.security
        session = await security.session(request, stage="SECOND_FACTOR")
        if session is None:
            raise web.HTTPSeeOther(LOGIN_PATH)
        body = await request.content.read(MAX_BODY + 1)
        form = {key: values[0] for key, values in parse_qs(body[:MAX_BODY].decode(
            "utf-8", "replace"), keep_blank_values=True).items()}
        if not same_token(form.get("token"), session.csrf):
            return self._second_factor_response(session, "The form expired; please try again.",
                                                403)
        name, address = session.principal.name, self.client_address(request)
        code = form.get("code", "").strip()[:32]
        keys = throttle_keys(name, address)
        if security.throttle.begin(keys, security.clock()) is None:
            await self._sign_in_event("THROTTLED", name, address)
            return self._second_factor_response(
                session, "Too many failed sign-ins for this name from here; wait a little and "
                "try again.", 429)
        path = security.accounts.path
        step: int | None = None
        landing: web.Response | None = None
        now = security.clock()
        if session.stage == "ENROL":
            confirmed = await asyncio.to_thread(accounts.confirm_enrolment, name, code, now,
                                                path)
            if confirmed is not None:
                step, codes = confirmed
                landing = web.Response(text=recovery_codes_page(codes), content_type="text/html",
                                       headers={"Cache-Control": "no-store"})
            ok = confirmed is not None
        else:
            secret = security.accounts.current().totp_secret(name)
            step = accounts.totp_step(secret, code, now, security.sessions.last_step(name)) \
                if secret else None
            ok = step is not None or (not code.isdigit() and await asyncio.to_thread(
                accounts.use_recovery_code, name, code, path))
        if not ok:
            await self._sign_in_event("SECOND_FACTOR_WRONG", name, address)
            return self._second_factor_response(
                session, "Wrong code, or a code already used; wait for the next one.", 401)
        for _ in range(2):  # this attempt and the password's: the pair clears
            security.throttle.succeeded(Attempt(keys))
        await security.end_session(session.digest, "second factor given")
        return await self._signed_in(session.principal, address, step, landing)

    def client_address(self, request: web.Request) -> str:
        """The client address, the one a trusted reverse proxy saw (`CITYOPS_TRUSTED_PROXIES`)."""
        return client_address(request.remote, request.headers.get("X-Forwarded-For"),
                              self.context.settings.trusted_proxies)

    async def _sign_in_event(self, outcome: str, account: str | None, address: str) -> None:
        """One SignInEvent on the sign-in trail, and the metric."""
        self.context.metrics.sign_ins.labels(outcome.lower()).inc()
        record = {"at": from_ms(to_ms(datetime.now(UTC))), "outcome": outcome,
                  "account": account, "address": address,
                  "worker_id": self.context.settings.worker_id}
        await self.context.raw_topic(catalog.SIGN_INS).send(
            key=(account or address).encode(),
            value=encode(catalog.SIGN_INS.value_schema, record))

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """Sign out: this session ends on every worker."""
        session = request.get("session")
        if session is not None:
            await self.security.end_session(session.digest, "signed out")
        response = web.json_response({"signed_out": True})
        self.security.clear_session_cookie(response)
        return response

    async def logout_everywhere(self, request: web.Request) -> web.StreamResponse:
        """Sign out everywhere: every session of the signed-in account ends."""
        principal = cast(Principal, request["principal"])
        ended = await self.security.end_account_sessions(principal.name, "signed out "
                                                         "everywhere")
        response = web.json_response({"signed_out": True, "sessions_ended": ended})
        self.security.clear_session_cookie(response)
        return response

    # -- sessions (supervisors) -------------------------------------------------------------

    async def list_sessions(self, request: web.Request) -> web.StreamResponse:
        """Supervisors: every open session on every worker, newest first."""
        principal = cast(Principal, request["principal"])
        if not may_see_audit(principal.role):
            return web.json_response({"error": "sessions are for supervisors"}, status=403)
        current = request.get("session")
        sessions = sorted(self.security.sessions.sessions.values(),
                          key=lambda s: s.created_at, reverse=True)
        return web.json_response({
            "idle_timeout_s": self.security.sessions.idle_s,
            "absolute_timeout_s": self.security.sessions.absolute_s,
            "sessions": [{
                "id": s.digest, "account": s.principal.name, "role": s.principal.role,
                "created_at": iso(datetime.fromtimestamp(s.created_at, UTC)),
                "last_seen_at": iso(datetime.fromtimestamp(s.last_seen_at, UTC)),
                "address": s.address,
                "current": current is not None and current.digest == s.digest,
            } for s in sessions]})

    async def end_session(self, request: web.Request) -> web.StreamResponse:
        """Supervisors: end one session (by its id on the sessions page) on every worker."""
        principal = cast(Principal, request["principal"])
        if not may_see_audit(principal.role):
            return web.json_response({"error": "sessions are for supervisors"}, status=403)
        digest = request.match_info["session"]
        if not await self.security.end_session(digest, f"ended by {principal.name}"):
            return web.json_response({"error": "no such session"}, status=404)
        return web.json_response({"ended": digest})

    async def end_account(self, request: web.Request) -> web.StreamResponse:
        """Supervisors: end every session of one account."""
        principal = cast(Principal, request["principal"])
        if not may_see_audit(principal.role):
            return web.json_response({"error": "sessions are for supervisors"}, status=403)
        name = request.match_info["name"]
        ended = await self.security.end_account_sessions(name, f"ended by {principal.name}")
        return web.json_response({"account": name, "sessions_ended": ended})

    async def _publish_session(self, digest: str, record: dict[str, Any] | None) -> None:
        """Write a session record and wait for the broker's acknowledgement: the answer that
        follows (the redirect after sign-in) may reach another worker, which must find it."""
        value = None if record is None else encode(catalog.SESSIONS.value_schema, record)
        sent = await self.context.raw_topic(catalog.SESSIONS).send(key=digest.encode(),
                                                                   value=value)
        await sent

    def _session_read(self, digest: str, record: dict[str, Any] | None) -> None:
        # the view's change hook is synchronous; a tombstone it asks for goes on the loop
        if self.security.session_read(digest, record):
            task = asyncio.ensure_future(self._publish_session(digest, None))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _sweep(self) -> None:
        """Every second: end sessions past their timeouts or whose account changed."""
        await self.sessions_view.ready.wait()
        while True:
            try:
                await self.security.sweep()
            except Exception:  # the next second tries again
                log.exception("session sweep failed")
            await asyncio.sleep(SWEEP_EVERY_S)

    async def me(self, request: web.Request) -> web.StreamResponse:
        principal = cast(Principal, request["principal"])
        session = request.get("session")
        return web.json_response({
            "name": principal.name, "role": principal.role, "kind": principal.kind,
            "csrf_token": session.csrf if session is not None else None,
            "actions": [a for a in ACTIONS if session is not None and may(principal.role, a)],
            "audit": may_see_audit(principal.role), "agencies": list(AGENCIES),
            "agency": principal.agency, "kecamatan": list(principal.kecamatan),
            "reviews": (["*"] if principal.role.upper() == "SUPERVISOR"
                        else list(self.reviewed_kelurahan(principal))),
        })

    def reviewed_kelurahan(self, principal: Principal) -> tuple[str, ...]:
        """The kelurahan whose RT reports the account reviews, read from the accounts file as
        it is now: a session shared through the sessions topic (and so one signed in on another
        worker or before a restart) carries the role and scope, not this list."""
        if principal.kind != "operator":
            return ()
        record = self.security.accounts.current().operators.get(principal.name)
        return accounts.principal_of(principal.name, record).kelurahan if record else ()

    # -- actions ----------------------------------------------------------------------------

    async def act(self, request: web.Request) -> web.StreamResponse:
        """Check the action against the board's current situation, write it as an
        OperatorAction record and answer what the ward agent did with it."""
        principal = cast(Principal, request["principal"])
        code = request.match_info["code"]
        kind = request.match_info["action"].upper()
        if kind not in ACTIONS:
            return web.json_response({"error": f"unknown action {kind.lower()!r}"}, status=404)
        if not may(principal.role, kind):
            return web.json_response(
                {"error": f"a {principal.role.lower()} may not {kind.lower()}"}, status=403)
        if code not in self.context.references.wards.values:
            return web.json_response({"error": "unknown kelurahan", "code": code}, status=404)
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        record, problem = self._record(principal, code, kind, body)
        if record is None:
            return web.json_response({"error": problem}, status=400)
        scope = scope_of(principal)
        if not scope.whole_city:
            named = (find_case(self.context.references.situations.values.get(code),
                               record["incident_source"], record["incident_id"])
                     if record["incident_id"] is not None else None)
            if record["incident_id"] is not None and named is None:
                return web.json_response(
                    {"error": f"no open case {record['incident_id']!r} of "
                              f"{record['incident_source']} in this kelurahan",
                     "incident_id": record["incident_id"]}, status=404)
            outside = scope_problem(scope, code, kind, named)
            if outside is not None:
                return web.json_response({"error": outside}, status=403)
        refused = self._check_current(code, kind, record)
        if refused is not None:
            return refused
        try:
            value = encode(catalog.OPERATOR_ACTIONS.value_schema, record)
        except CodecError as error:
            return web.json_response({"error": error.message}, status=400)
        action_id = record["action_id"]
        receipt = self.receipts.expect(action_id)
        await self.context.raw_topic(catalog.OPERATOR_ACTIONS).send(
            key=code.encode(), value=value, partition=self.context.ward_partition(code))
        log.info("operator action %s by %s on %s", kind, principal.name, code)
        answer = await self.receipts.wait(action_id, receipt,
                                          self.context.settings.action_wait_s)
        if answer is None:
            return web.json_response({"action_id": action_id, "action": kind,
                                      "status": "pending",
                                      "receipt": f"/api/actions/{action_id}"}, status=202)
        return receipt_answer(answer, kind)

    def _check_current(self, code: str, kind: str,
                       record: Mapping[str, Any]) -> web.Response | None:
        """Refuse an action the board's current situation says cannot be meant: a case the
        kelurahan does not show (404), a case that changed since the operator loaded it, an
        acknowledgement of nothing or of what is acknowledged already (409)."""
        situation = self.context.references.situations.values.get(code)
        source, incident = record["incident_source"], record["incident_id"]
        if incident is not None:
            case = find_case(situation, source, incident)
            if case is None:
                return web.json_response(
                    {"error": f"no open case {incident!r} of {source} in this kelurahan",
                     "incident_id": incident}, status=404)
            expected = record["expected_version"]
            if kind in VERSIONED_ACTIONS and expected != case["version"]:
                return web.json_response({
                    "error": f"the case changed since you loaded it (version {case['version']},"
                             f" not {expected}): {case_now(case)}",
                    "reason": "conflict", "case": situation_json(case)}, status=409)
        elif kind == "ACKNOWLEDGE":
            level = (situation or {}).get("level")
            if level not in RAISED_LEVELS:
                return web.json_response(
                    {"error": f"nothing to acknowledge: the kelurahan is {level or 'unknown'}",
                     "reason": "conflict"}, status=409)
            if situation and situation.get("acknowledged_by"):
                return web.json_response(
                    {"error": f"already acknowledged by {situation['acknowledged_by']} at "
                              f"{iso(situation['acknowledged_at'])}", "reason": "conflict"},
                    status=409)
        return None

    async def receipt(self, request: web.Request) -> web.StreamResponse:
        """The receipt of an action, once the ward agent wrote it (404 while it has not)."""
        action_id = request.match_info["action_id"]
        found = self.receipts.recent.get(action_id)
        principal = cast(Principal, request["principal"])
        if found is not None and not sees_ward(scope_of(principal), str(found["ward_code"])):
            found = None  # another kecamatan's action: as unknown as one never taken
        if found is None:
            return web.json_response({"action_id": action_id, "status": "pending"},
                                     status=404)
        return receipt_answer(found, "")

    @staticmethod
    def _record(principal: Principal, code: str, kind: str,
                body: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        def text_field(name: str) -> str | None:
            value = body.get(name)
            return value if isinstance(value, str) and value.strip() else None

        source, incident = text_field("incident_source"), text_field("incident_id")
        agency, text = text_field("agency"), text_field("text")
        if kind in ("ASSIGN", "CLOSE") and not (source and incident):
            return None, f"{kind.lower()} needs incident_source and incident_id"
        if kind == "ASSIGN" and agency not in AGENCIES:
            return None, f"assign needs an agency: one of {', '.join(AGENCIES)}"
        if text is not None:  # the personal-data screen (issue 23): cleaned, or refused
            text, refused = screen_note(text)
            if refused is not None:
                return None, refused
            text = text.strip() or None
        if kind == "NOTE" and not text:
            return None, "note needs a text"
        version = body.get("case_version")
        versioned = kind in VERSIONED_ACTIONS and bool(source and incident)
        if versioned and (not isinstance(version, int) or isinstance(version, bool)
                          or version < 0):
            return None, (f"{kind.lower()} needs case_version: the version of the case as "
                          "the board showed it")
        if text is not None and len(text) > MAX_TEXT:
            return None, f"text is {len(text)} characters, over {MAX_TEXT}"
        record = {
            "action_id": str(uuid.uuid4()),
            "occurred_at": from_ms(to_ms(datetime.now(UTC))),
            "operator_id": principal.name, "operator_role": principal.role, "action": kind,
            "ward_code": code, "incident_source": source if source and incident else None,
            "incident_id": incident if source and incident else None,
            "agency": agency if kind == "ASSIGN" else None, "text": text,
            "expected_version": version if versioned else None,
        }
        problem = action_problem(record)
        return (None, problem[1]) if problem is not None else (record, "")

    # -- reviews of RT reports (issue 23) ---------------------------------------------------

    async def review_report(self, request: web.Request) -> web.StreamResponse:
        """A reviewer's decision on an RT report that needs review, as an RtReview record on
        the reviews topic (202): the judge agent applies it and publishes the new verdict."""
        principal = cast(Principal, request["principal"])
        code = request.match_info["code"]
        if not may_review(principal.role, self.reviewed_kelurahan(principal), code):
            return web.json_response(
                {"error": f"{principal.name} may not review the RT reports of {code[:20]}"},
                status=403)
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        registry = self.context.references.neighbourhoods.values
        rt = registry.get(str(body.get("rt_code")))
        if rt is None or rt["kelurahan_code"] != code:
            return web.json_response({"error": f"no such RT in kelurahan {code[:20]}"},
                                     status=404)
        decision = str(body.get("decision", "")).upper()
        if decision not in REVIEW_DECISIONS:
            return web.json_response(
                {"error": "decision: one of accept, correct, reject"}, status=400)
        note = body.get("note") if isinstance(body.get("note"), str) else None
        if note is not None:
            note, refused = screen_note(note)
            if refused is not None:
                return web.json_response({"error": refused}, status=400)
            note = note.strip()[:MAX_TEXT] or None
        counts = body.get("counts") if decision == "CORRECT" else None
        if decision == "CORRECT" and not (
                isinstance(counts, dict) and all(isinstance(counts.get(name), int)
                                                 for name in COUNT_FIELDS)):
            return web.json_response(
                {"error": f"correct needs every count: {', '.join(COUNT_FIELDS)}"}, status=400)
        record = {
            "review_id": str(uuid.uuid4()),
            "decided_at": from_ms(to_ms(datetime.now(UTC))),
            "reviewer_id": principal.name, "reviewer_role": principal.role,
            "kelurahan_code": code, "rt_code": rt["rt_code"],
            "period": str(body.get("period", ""))[:16],
            "report_id": str(body.get("report_id", ""))[:64],
            "revision": body.get("revision") if isinstance(body.get("revision"), int) else 0,
            "decision": decision,
            "counts": None if counts is None else {name: counts[name] for name in COUNT_FIELDS},
            "note": note,
        }
        try:
            value = encode(catalog.RT_REVIEWS.value_schema, record)
        except CodecError as error:
            return web.json_response({"error": error.message}, status=400)
        await self.context.raw_topic(catalog.RT_REVIEWS).send(
            key=code.encode(), value=value, partition=self.context.ward_partition(code))
        log.info("review %s of %s by %s", decision, rt["rt_code"], principal.name)
        return web.json_response({"review_id": record["review_id"], "decision": decision},
                                 status=202)

    # -- audit trail ------------------------------------------------------------------------

    async def audit(self, request: web.Request) -> web.StreamResponse:
        """Supervisors: the operator actions in every kelurahan's current situation, newest
        first (from the situations' case timelines; the actions topic holds all of them)."""
        principal = cast(Principal, request["principal"])
        if not may_see_audit(principal.role):
            return web.json_response({"error": "the audit trail is for supervisors"},
                                     status=403)
        entries: list[dict[str, Any]] = []
        scope = scope_of(principal)
        for situation in self.context.references.situations.values.values():
            shown = scoped_situation(scope, situation)
            if shown is None or situation.get("scope") != "KELURAHAN":
                continue
            if scope.agency is not None:
                shown["ward_timeline"] = []  # ward-level entries are no agency's case
            body = situation_json(shown)
            where = {"kelurahan_code": body["scope_code"], "kelurahan": body["scope_name"]}
            for entry in body.get("ward_timeline") or []:
                entries.append({**where, "incident_id": None, **entry})
            for case in body.get("cases") or []:
                for entry in case["timeline"]:
                    if not entry["actor"].startswith("partner"):
                        entries.append({**where, "incident_id": case["incident_id"], **entry})
        entries.sort(key=lambda e: e["at"], reverse=True)
        return web.json_response({"entries": entries[:AUDIT_LIMIT]})

    async def sign_in_audit(self, request: web.Request) -> web.StreamResponse:
        """Supervisors: the newest sign-in attempts on every worker, newest first."""
        principal = cast(Principal, request["principal"])
        if not may_see_audit(principal.role):
            return web.json_response({"error": "the audit trail is for supervisors"},
                                     status=403)
        return web.json_response({"attempts": [
            {**record, "at": iso(record["at"])} for record in reversed(self.sign_ins.recent)]})

    # -- wiring -----------------------------------------------------------------------------

    def register(self) -> None:
        web_app = cast(AiohttpWeb, self.board.app.web).web_app
        web_app.middlewares.append(self.security.middleware)
        self.context.references.extra_views.extend(
            (self.receipts, self.sign_ins, self.sessions_view))
        self.board.app.task(self._sweep)
        router = web_app.router
        router.add_get(LOGIN_PATH, self.login_form)
        router.add_post(LOGIN_PATH, self.login)
        router.add_get(SECOND_FACTOR_PATH, self.second_factor_form)
        router.add_post(SECOND_FACTOR_PATH, self.second_factor)
        router.add_post("/board/logout", self.logout)
        router.add_post("/board/logout-everywhere", self.logout_everywhere)
        router.add_get("/api/sessions", self.list_sessions)
        router.add_post("/api/sessions/{session}/end", self.end_session)
        router.add_post("/api/accounts/{name}/sessions/end", self.end_account)
        router.add_get("/api/me", self.me)
        router.add_post("/api/wards/{code}/actions/{action}", self.act)
        router.add_get("/api/actions/{action_id}", self.receipt)
        router.add_get("/api/audit", self.audit)
        router.add_get("/api/audit/sign-ins", self.sign_in_audit)
        router.add_post("/api/neighbourhoods/{code}/reviews", self.review_report)


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON object body, or the 413/400 answer that refuses it."""
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        return web.json_response({"error": "request too large"}, status=413)
    try:
        body = json.loads(raw or b"{}")
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
    except ValueError as error:
        return web.json_response({"error": f"body: {error}"}, status=400)
    return body


def register_operators(board: Board) -> OperatorWeb:
    """Sign-in, roles, actions and the audit trail on the board's web server; call before the
    web server starts (its middleware list freezes then)."""
    settings = board.context.settings
    if not settings.second_factor and settings.secure_cookies:
        raise ValueError("CITYOPS_BOARD_SECOND_FACTOR=off is for a developer's machine and the "
                         "tests: a board served over HTTPS (CITYOPS_BOARD_SECURE_COOKIES=1) "
                         "requires the second factor")
    security = BoardSecurity(
        web_host=settings.web_host, extra_hosts=settings.web_allowed_hosts,
        accounts_path=settings.operators_file, session_ttl_s=settings.session_ttl_s,
        idle_s=settings.session_idle_s, secure_cookies=settings.secure_cookies)
    operator_web = OperatorWeb(board, security)
    operator_web.register()
    return operator_web
