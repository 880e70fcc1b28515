"""Accounts scoped to what a person answers for (issue 24, part 4), on a real worker and the
real broker: a camat's staff (bound to kecamatan Ciwandan) see and act on Ciwandan's kelurahan
only, on every route and on the live stream; a DAMKAR field officer sees only the cases
assigned to DAMKAR and acts only on them; changing an account's scope ends its sessions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest

from bench.harness import Namespace, Worker, wait_until
from core import accounts
from tests.integration.test_web_api import (
    BoardAccess,
    BoardSession,
    EventStream,
    board_access,
    get_json,
)

pytestmark = pytest.mark.integration

CIWANDAN = "36.72.04"
IN = "36.72.04.1001"  # a kelurahan of Ciwandan
OUT = "36.72.01.1001"  # Cibeber's Cibeber: another kecamatan
PASSWORD = "scoped accounts test password"


class SessionStream(EventStream):
    """The live stream opened with a board session's cookie (not a token)."""

    def __init__(self, port: int, session: BoardSession) -> None:
        cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
        self.connection = HTTPConnection("127.0.0.1", port, timeout=60)
        self.connection.request("GET", "/api/situations/stream", headers={
            "Accept": "text/event-stream", "Cookie": cookie})
        self.response = self.connection.getresponse()


@pytest.fixture(scope="module")
def namespace(broker: str) -> Namespace:
    return Namespace.create(broker, "scopes")


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> BoardAccess:
    made = board_access(tmp_path_factory.mktemp("scopes-access"))
    accounts.add_operator("camat", "operator", PASSWORD, made.accounts_file,
                          kecamatan=[CIWANDAN])
    accounts.add_operator("damkar", "operator", PASSWORD, made.accounts_file, agency="DAMKAR")
    return made


@pytest.fixture(scope="module")
def worker(namespace: Namespace, tmp_path_factory: pytest.TempPathFactory,
           artifacts_dir: Path, access: BoardAccess) -> Iterator[Worker]:
    with namespace.worker(f"scopes-{uuid.uuid4().hex[:8]}", artifacts_dir / "scopes-worker.log",
                          tmp_path_factory.mktemp("scopes-worker"), **access.env) as process:
        wait_until(lambda: get_json(process.web_port, "/api/situations",
                                    access.token)[1]["ready"] is True)
        yield process


def sign_in(worker: Worker, name: str, password: str = PASSWORD) -> BoardSession:
    session = BoardSession(worker.web_port)
    status, _ = session.sign_in(name, password)
    assert (status, session.csrf is not None) == (200, True)
    return session


def incident(namespace: Namespace, ward: str, incident_id: str) -> None:
    reported = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    namespace.send([("IncidentEvent", {
        "event_id": str(uuid.uuid4()), "occurred_at": reported, "incident_id": incident_id,
        "source_system": "CALL_CENTER_112", "category": "FIRE", "severity": "EXTREME",
        "status": "REPORTED", "ward_code": ward, "latitude": None, "longitude": None,
        "rw": "001", "rt": "001", "description": "kebakaran"})])


def cases(worker: Worker, access: BoardAccess, ward: str) -> list[dict[str, Any]]:
    situation = get_json(worker.web_port, f"/api/wards/{ward}", access.token)[1]["situation"]
    return list((situation or {}).get("cases") or [])


def target(incident_id: str) -> dict[str, Any]:
    return {"incident_source": "CALL_CENTER_112", "incident_id": incident_id}


@pytest.fixture(scope="module")
def scene(namespace: Namespace, worker: Worker, access: BoardAccess) -> None:
    """A case in each kecamatan; OUT's first case assigned to DAMKAR by the supervisor."""
    for ward, incident_id in ((IN, "112-IN-1"), (OUT, "112-OUT-1"), (OUT, "112-OUT-2")):
        incident(namespace, ward, incident_id)
    wait_until(lambda: (len(cases(worker, access, IN)), len(cases(worker, access, OUT))) == (1, 2))
    sari = sign_in(worker, "sari", access.passwords["sari"])
    status, body = sari.json("POST", f"/api/wards/{OUT}/actions/assign",
                             target("112-OUT-1") | {"agency": "DAMKAR", "case_version": 0})
    assert (status, body["status"]) == (200, "applied")
    wait_until(lambda: [c["assigned_agency"] for c in cases(worker, access, OUT)
                        if c["incident_id"] == "112-OUT-1"] == ["DAMKAR"])


def test_a_kecamatan_account_sees_and_acts_on_its_kecamatan_only(
        worker: Worker, access: BoardAccess, scene: None) -> None:
    camat = sign_in(worker, "camat")
    status, me = camat.json("GET", "/api/me")
    assert (status, me["kecamatan"], me["agency"]) == (200, [CIWANDAN], None)
    status, board = camat.json("GET", "/api/situations")
    assert (status, board["city"], [k["scope_code"] for k in board["kecamatan"]],
            sorted({k["scope_code"][:8] for k in board["kelurahan"]}),
            IN in [k["scope_code"] for k in board["kelurahan"]]) == (
        200, None, [CIWANDAN], [CIWANDAN], True)
    assert camat.json("GET", f"/api/wards/{OUT}") == (
        404, {"error": "unknown kelurahan", "code": OUT})
    assert camat.json("GET", f"/api/wards/{IN}")[0] == 200
    assert camat.json("POST", f"/api/wards/{OUT}/actions/note",
                      target("112-OUT-2") | {"text": "x"}) == (
        404, {"error": "unknown kelurahan", "code": OUT})
    assert camat.json("GET", f"/api/neighbourhoods/{OUT}")[0] == 404
    assert camat.json("GET", f"/api/history/wards/{OUT}/timeline?hours=24")[0] == 404
    refused = (403, {"error": "not open to an account bound to an agency or kecamatan"})
    assert [camat.json("GET", path) for path in (
        "/api/neighbourhoods", "/api/history/situations", "/api/history/cases",
        "/api/reports/monthly", "/api/sessions", "/api/audit/sign-ins")] == [refused] * 6
    status, body = camat.json("POST", f"/api/wards/{IN}/actions/note",
                              target("112-IN-1") | {"text": "tim kecamatan di lokasi"})
    assert (status, body["status"]) == (200, "applied")


def test_the_stream_of_a_kecamatan_account_carries_its_kecamatan_only(
        namespace: Namespace, worker: Worker, access: BoardAccess, scene: None) -> None:
    camat = sign_in(worker, "camat")
    stream = SessionStream(worker.web_port, camat)
    try:
        assert stream.response.status == 200
        event, snapshot = stream.next()
        assert (event, snapshot["city"], [k["scope_code"] for k in snapshot["kecamatan"]],
                sorted({k["scope_code"][:8] for k in snapshot["kelurahan"]})) == (
            "snapshot", None, [CIWANDAN], [CIWANDAN])
        incident(namespace, OUT, "112-OUT-3")  # Cibeber changes first ...
        wait_until(lambda: len(cases(worker, access, OUT)) == 3)
        incident(namespace, IN, "112-IN-2")  # ... then Ciwandan
        seen: list[tuple[str, str]] = []
        while (("KELURAHAN", IN) not in seen
               or len(cases(worker, access, IN)) < 2):
            event, body = stream.next()
            if event == "situation":
                seen.append((body["scope"], body["scope_code"]))
                if body["scope_code"] == IN and len(body["cases"]) == 2:
                    break
        assert {(scope, code[:8]) for scope, code in seen} <= {
            ("KECAMATAN", CIWANDAN), ("KELURAHAN", CIWANDAN)}
        assert ("KELURAHAN", IN) in seen
    finally:
        stream.close()


def test_an_agency_account_sees_and_acts_on_its_agencys_cases_only(
        worker: Worker, access: BoardAccess, scene: None) -> None:
    damkar = sign_in(worker, "damkar")
    status, ward = damkar.json("GET", f"/api/wards/{OUT}")
    assert (status, [c["incident_id"] for c in ward["situation"]["cases"]]) == (
        200, ["112-OUT-1"])
    status, board = damkar.json("GET", "/api/situations")
    assert (status, sorted(c["incident_id"] for k in board["kelurahan"]
                           for c in k.get("cases") or [])) == (200, ["112-OUT-1"])
    assert damkar.json("POST", f"/api/wards/{OUT}/actions/note",
                       target("112-OUT-2") | {"text": "x"}) == (
        403, {"error": "the case is not assigned to DAMKAR"})
    assert damkar.json("POST", f"/api/wards/{OUT}/actions/acknowledge", {}) == (
        403, {"error": "an account of DAMKAR acts on its agency's cases only"})
    status, body = damkar.json("POST", f"/api/wards/{OUT}/actions/note",
                               target("112-OUT-1") | {"text": "unit 3 berangkat"})
    assert (status, body["status"]) == (200, "applied")


def test_a_scope_change_ends_the_accounts_sessions(
        worker: Worker, access: BoardAccess) -> None:
    accounts.add_operator("moved", "operator", PASSWORD, access.accounts_file,
                          kecamatan=[CIWANDAN])
    moved = sign_in(worker, "moved")
    assert moved.json("GET", "/api/me")[0] == 200
    accounts.add_operator("moved", "operator", PASSWORD, access.accounts_file,
                          kecamatan=["36.72.01"])
    wait_until(lambda: moved.json("GET", "/api/me")[0] == 401)
    again = sign_in(worker, "moved")
    assert again.json("GET", "/api/me")[1]["kecamatan"] == ["36.72.01"]
