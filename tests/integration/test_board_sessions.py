"""Board sessions every worker shares and that survive restarts (issue 24, part 2), on two real
workers of one group and the real broker.

Signed in on worker A, an operator acts on worker B with the same cookie and CSRF token; both
workers restart and the session still holds on both. A supervisor lists the sessions and ends
one on A: B refuses it within a second and closes its live stream. A role change or a removed
account is refused by both at once; "sign out everywhere" ends every session of the account.
The sessions topic holds digests only, never a session id.
"""

from __future__ import annotations

import http.cookiejar
import time
import uuid
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path

import pytest

from bench.harness import Namespace, Worker, read_records, wait_until
from core import accounts
from streams.auth import session_digest
from tests.integration.test_web_api import BoardAccess, BoardSession, board_access, get_json
from topics import catalog

pytestmark = pytest.mark.integration

WARD = "36.72.02.1001"  # any kelurahan: the notes here are on the kelurahan as a whole


@pytest.fixture(scope="module")
def namespace(broker: str) -> Namespace:
    return Namespace.create(broker, "sessions")


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> BoardAccess:
    return board_access(tmp_path_factory.mktemp("sessions-access"))


@pytest.fixture(scope="module")
def workers(namespace: Namespace, tmp_path_factory: pytest.TempPathFactory,
            artifacts_dir: Path, access: BoardAccess) -> Iterator[tuple[Worker, Worker]]:
    app_id = f"sessions-{uuid.uuid4().hex[:8]}"
    a = namespace.worker(app_id, artifacts_dir / "sessions-worker-a.log",
                         tmp_path_factory.mktemp("sessions-a"), **access.env)
    b = namespace.worker(app_id, artifacts_dir / "sessions-worker-b.log",
                         tmp_path_factory.mktemp("sessions-b"), **access.env)
    with a:
        b.start()
        try:
            for worker in (a, b):
                ready(worker, access)
            yield a, b
        finally:
            b.stop()


def ready(worker: Worker, access: BoardAccess) -> None:
    worker.wait_ready()
    wait_until(lambda: get_json(worker.web_port, "/api/situations",
                                access.token)[1]["ready"] is True)


def on(session: BoardSession, worker: Worker) -> BoardSession:
    """The same browser (cookie jar and CSRF token) talking to another worker."""
    other = BoardSession(worker.web_port)
    other.cookies, other.opener, other.csrf = session.cookies, session.opener, session.csrf
    return other


def session_id(session: BoardSession) -> str:
    cookies: http.cookiejar.CookieJar = session.cookies
    return next(c.value for c in cookies if c.name == "cityops_session" and c.value)


def signed_in(worker: Worker, access: BoardAccess, name: str) -> BoardSession:
    session = BoardSession(worker.web_port)
    assert session.sign_in(name, access.passwords[name])[0] == 200
    return session


def note(session: BoardSession, text: str) -> tuple[int, str]:
    status, body = session.json("POST", f"/api/wards/{WARD}/actions/note", {"text": text})
    return status, body.get("status") or body.get("error")


def test_signed_in_on_a_acting_on_b_and_both_restarted_still_signed_in(
        namespace: Namespace, workers: tuple[Worker, Worker], access: BoardAccess) -> None:
    a, b = workers
    oscar = signed_in(a, access, "oscar")
    at_b = on(oscar, b)
    assert at_b.json("GET", "/api/me")[1]["csrf_token"] == oscar.csrf  # one token everywhere
    assert note(at_b, "signed in on A, acting on B") == (200, "applied")
    for worker in (a, b):
        worker.stop()
    for worker in (a, b):
        worker.start()
    for worker in (a, b):
        ready(worker, access)
    assert [(on(oscar, w).json("GET", "/api/me")[1] or {}).get("name") for w in (a, b)] == [
        "oscar", "oscar"]
    assert note(on(oscar, a), "after both restarted") == (200, "applied")
    # the topic holds the session's digest, never its id
    sid = session_id(oscar)
    records = read_records(namespace.bootstrap, namespace.name(catalog.SESSIONS))
    raw = b"".join((r.key or b"") + (r.value or b"") for r in records)
    assert (sid.encode() in raw, session_digest(sid).encode() in raw) == (False, True)


def test_a_session_a_supervisor_ends_on_a_is_refused_by_b_within_a_second(
        workers: tuple[Worker, Worker], access: BoardAccess) -> None:
    a, b = workers
    oscar, sari = signed_in(b, access, "oscar"), signed_in(a, access, "sari")
    digest = session_digest(session_id(oscar))
    wait_until(lambda: digest in [s["id"] for s in sari.json("GET", "/api/sessions")[1][
        "sessions"]], timeout_s=5)
    listed = next(s for s in sari.json("GET", "/api/sessions")[1]["sessions"]
                  if s["id"] == digest)
    assert (listed["account"], listed["role"], listed["address"], listed["current"]) == (
        "oscar", "OPERATOR", "127.0.0.1", False)
    assert oscar.json("GET", "/api/sessions")[0] == 403
    stream = HTTPConnection("127.0.0.1", b.web_port, timeout=30)
    stream.request("GET", "/api/situations/stream", headers={
        "Cookie": f"cityops_session={session_id(oscar)}", "Accept": "text/event-stream"})
    response = stream.getresponse()
    assert (response.status, response.readline()) == (200, b"retry: 2000\n")
    assert sari.json("POST", f"/api/sessions/{digest}/end") == (200, {"ended": digest})
    ended = time.monotonic()
    while oscar.json("GET", "/api/me")[0] != 401 and time.monotonic() - ended < 5.0:
        time.sleep(0.05)
    refused_after = time.monotonic() - ended
    print(f"worker B refused the ended session after {refused_after:.3f} s")
    assert refused_after < 1.0
    assert (on(oscar, a).json("GET", "/api/me")[0], note(oscar, "x")[0]) == (401, 401)
    assert b"".join(iter(lambda: response.read(65536), b"")) != b""  # then closed
    stream.close()
    assert sari.json("POST", f"/api/sessions/{digest}/end")[0] == 404


def test_a_role_change_or_a_removed_account_is_refused_by_every_worker_at_once(
        workers: tuple[Worker, Worker], access: BoardAccess) -> None:
    a, b = workers
    oscar, vera = signed_in(a, access, "oscar"), signed_in(b, access, "vera")
    assert [on(oscar, w).json("GET", "/api/me")[0] for w in (a, b)] == [200, 200]
    accounts.add_operator("oscar", "viewer", access.passwords["oscar"], access.accounts_file)
    accounts.remove("vera", access.accounts_file)
    assert [on(s, w).json("GET", "/api/me")[0] for s in (oscar, vera) for w in (a, b)] == [
        401, 401, 401, 401]
    sari = signed_in(a, access, "sari")
    wait_until(lambda: {s["account"] for s in sari.json("GET", "/api/sessions")[1][
        "sessions"]} & {"oscar", "vera"} == set(), timeout_s=5)
    # signing in again gives a new session with the new role
    again = signed_in(b, access, "oscar")
    assert (again.json("GET", "/api/me")[1]["role"], session_id(again) != session_id(oscar)) == (
        "VIEWER", True)
    accounts.add_operator("oscar", "operator", access.passwords["oscar"], access.accounts_file)


def test_sign_out_everywhere_ends_every_session_of_the_account(
        workers: tuple[Worker, Worker], access: BoardAccess) -> None:
    a, b = workers
    first, second = signed_in(a, access, "oscar"), signed_in(b, access, "oscar")
    status, body = second.json("POST", "/board/logout-everywhere")
    assert (status, body["signed_out"], body["sessions_ended"] >= 2) == (200, True, True)
    wait_until(lambda: first.json("GET", "/api/me")[0] == 401, timeout_s=5)
    assert [on(s, w).json("GET", "/api/me")[0] for s in (first, second) for w in (a, b)] == [
        401, 401, 401, 401]
