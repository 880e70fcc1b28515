"""The command center acts (issue 14): sign-in, operator actions and the audit trail on the board.

Kept apart from `streams/web.py` (the situation board itself) so the two grow without
touching each other; `register_operators` adds to the board's web server:

    GET  /board/login                       the sign-in page (public)
    POST /board/login                       sign in: name, password, the page's one-time token
    POST /board/logout                      sign out
    GET  /api/me                            who is signed in, their role, the CSRF token
    POST /api/wards/{code}/actions/{action} acknowledge | assign | escalate | note | close
    GET  /api/audit                         supervisors: every recent action in the city

An action is not applied here: it becomes an `OperatorAction` record on
`city.operator.actions.v1`, keyed by the kelurahan, and the ward agent that owns the ward folds
it in order with the ward's events; the board then shows it like any other change, through the
situation topic. So every worker serving the board sees the same result, and the topic is the
audit record.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import math
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import parse_qs

from aiohttp import web
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from core.accounts import MAX_PASSWORD_LENGTH, Principal
from processors.neighbourhood import COUNT_FIELDS, REVIEW_DECISIONS, may_review
from processors.operations import ACTIONS, MAX_TEXT, action_problem, may, may_see_audit
from processors.personal_data import screen_note
from processors.state import from_ms, to_ms
from processors.thresholds import AGENCIES
from schemas.codec import CodecError, encode
from streams.auth import LOGIN_COOKIE, SESSION_COOKIE, BoardSecurity, same_token
from streams.web import situation_json
from topics import catalog

if TYPE_CHECKING:
    from streams.web import Board

log = logging.getLogger(__name__)

LOGIN_PATH: Final = "/board/login"
#: Entries listed by /api/audit (the topic keeps all of them).
AUDIT_LIMIT: Final = 200
#: Largest request body read from a sign-in form or an action, in bytes.
MAX_BODY: Final = 4_096


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


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


class OperatorWeb:
    """Sign-in and action routes on one board's web server."""

    def __init__(self, board: Board, security: BoardSecurity) -> None:
        self.board = board
        self.security = security
        self.context = board.context

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
        keys = (f"name:{name}", f"address:{client_address(request)}")
        security = self.security
        wait = security.throttle.wait_s(keys, security.clock())
        if wait > 0:
            retry = max(1, math.ceil(wait))
            response = self._login_response(
                f"Too many wrong passwords in a row; try again in {retry} s.", status=429)
            response.headers["Retry-After"] = str(retry)
            return response
        # Argon2id takes tens of milliseconds of CPU on purpose: off the loop the agents share
        principal = await asyncio.to_thread(
            security.accounts.current().verify_password, name, password)
        if principal is None:
            security.throttle.failed(keys, security.clock())
            log.warning("board sign-in refused for %r from %s", name, client_address(request))
            return self._login_response("Wrong name or password.", status=401)
        security.throttle.succeeded(keys)
        session_id, _ = security.sessions.open(principal, security.clock())
        log.info("board sign-in: %s (%s)", principal.name, principal.role)
        response = web.HTTPSeeOther("/board/")
        security.set_session_cookie(response, session_id)
        response.del_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.security.sessions.close(request.cookies.get(SESSION_COOKIE))
        response = web.json_response({"signed_out": True})
        self.security.clear_session_cookie(response)
        return response

    async def me(self, request: web.Request) -> web.StreamResponse:
        principal = cast(Principal, request["principal"])
        session = request.get("session")
        return web.json_response({
            "name": principal.name, "role": principal.role, "kind": principal.kind,
            "csrf_token": session.csrf if session is not None else None,
            "actions": [a for a in ACTIONS if session is not None and may(principal.role, a)],
            "audit": may_see_audit(principal.role), "agencies": list(AGENCIES),
            "reviews": (["*"] if principal.role.upper() == "SUPERVISOR"
                        else list(principal.kelurahan)),
        })

    # -- actions ----------------------------------------------------------------------------

    async def act(self, request: web.Request) -> web.StreamResponse:
        """Turn a request into an OperatorAction record on the actions topic (202)."""
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
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return web.json_response({"error": "request too large"}, status=413)
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
        except ValueError as error:
            return web.json_response({"error": f"body: {error}"}, status=400)
        record, problem = self._record(principal, code, kind, body)
        if record is None:
            return web.json_response({"error": problem}, status=400)
        try:
            value = encode(catalog.OPERATOR_ACTIONS.value_schema, record)
        except CodecError as error:
            return web.json_response({"error": error.message}, status=400)
        await self.context.raw_topic(catalog.OPERATOR_ACTIONS).send(
            key=code.encode(), value=value, partition=self.context.ward_partition(code))
        log.info("operator action %s by %s on %s", kind, principal.name, code)
        return web.json_response({"action_id": record["action_id"], "action": kind},
                                 status=202)

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
        if text is not None and len(text) > MAX_TEXT:
            return None, f"text is {len(text)} characters, over {MAX_TEXT}"
        record = {
            "action_id": str(uuid.uuid4()),
            "occurred_at": from_ms(to_ms(datetime.now(UTC))),
            "operator_id": principal.name, "operator_role": principal.role, "action": kind,
            "ward_code": code, "incident_source": source if source and incident else None,
            "incident_id": incident if source and incident else None,
            "agency": agency if kind == "ASSIGN" else None, "text": text,
        }
        problem = action_problem(record)
        return (None, problem[1]) if problem is not None else (record, "")

    # -- reviews of RT reports (issue 23) ---------------------------------------------------

    async def review_report(self, request: web.Request) -> web.StreamResponse:
        """A reviewer's decision on an RT report that needs review, as an RtReview record on
        the reviews topic (202): the judge agent applies it and publishes the new verdict."""
        principal = cast(Principal, request["principal"])
        code = request.match_info["code"]
        if not may_review(principal.role, principal.kelurahan, code):
            return web.json_response(
                {"error": f"{principal.name} may not review the RT reports of {code[:20]}"},
                status=403)
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return web.json_response({"error": "request too large"}, status=413)
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
        except ValueError as error:
            return web.json_response({"error": f"body: {error}"}, status=400)
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
        for situation in self.context.references.situations.values.values():
            if situation.get("scope") != "KELURAHAN":
                continue
            body = situation_json(situation)
            where = {"kelurahan_code": body["scope_code"], "kelurahan": body["scope_name"]}
            for entry in body.get("ward_timeline") or []:
                entries.append({**where, "incident_id": None, **entry})
            for case in body.get("cases") or []:
                for entry in case["timeline"]:
                    if not entry["actor"].startswith("partner"):
                        entries.append({**where, "incident_id": case["incident_id"], **entry})
        entries.sort(key=lambda e: e["at"], reverse=True)
        return web.json_response({"entries": entries[:AUDIT_LIMIT]})

    # -- wiring -----------------------------------------------------------------------------

    def register(self) -> None:
        web_app = cast(AiohttpWeb, self.board.app.web).web_app
        web_app.middlewares.append(self.security.middleware)
        router = web_app.router
        router.add_get(LOGIN_PATH, self.login_form)
        router.add_post(LOGIN_PATH, self.login)
        router.add_post("/board/logout", self.logout)
        router.add_get("/api/me", self.me)
        router.add_post("/api/wards/{code}/actions/{action}", self.act)
        router.add_get("/api/audit", self.audit)
        router.add_post("/api/neighbourhoods/{code}/reviews", self.review_report)


def register_operators(board: Board) -> OperatorWeb:
    """Sign-in, roles, actions and the audit trail on the board's web server; call before the
    web server starts (its middleware list freezes then)."""
    settings = board.context.settings
    security = BoardSecurity(
        web_host=settings.web_host, extra_hosts=settings.web_allowed_hosts,
        accounts_path=settings.operators_file, session_ttl_s=settings.session_ttl_s,
        secure_cookies=settings.secure_cookies)
    operator_web = OperatorWeb(board, security)
    operator_web.register()
    return operator_web
