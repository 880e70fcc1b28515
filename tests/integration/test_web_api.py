"""The board's JSON API and live stream, on a real worker and the real broker.

The worker runs in a topic namespace of its own (a prefix nested in the session's), with the
wards and the synthetic asset registry loaded into it, so the whole city picture, rollups
included, comes from this module's scenario alone and can be compared as exact JSON.

Scenario (event times fixed relative to a 5-minute window boundary in the recent past):
- Cibeber (36.72.01.1001): two FLOOD reports 30 s apart -> NORMAL then WATCH; the first is
  dispatched 2 min after its report -> the mean dispatch time shows.
- Kotasari (36.72.06.1001): one lamp of the registry reports NO_POWER -> NORMAL, 1 lamp out.
Registry counts quoted below (Cibeber 91 lamps and 8 containers, Kotasari 124 and 10, 6,180
assets) are those of the SYNTHETIC registry `cityops assets load` publishes (seed 7).
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path
from typing import Any, Final

import pytest

from bench.harness import Namespace, Worker, wait_until
from core import accounts
from processors.thresholds import Thresholds

pytestmark = pytest.mark.integration

FLOOD_WARD = "36.72.01.1001"
LAMP_WARD = "36.72.06.1001"
LAMP = "PJU-03379"  # first lamp of Kotasari in the synthetic registry


# -- helpers shared with tests/e2e/test_board.py ----------------------------------------------


def window_base() -> datetime:
    """A 5-minute window boundary about 10 minutes ago: events land in one known window."""
    now = datetime.now(UTC).replace(microsecond=0)
    base = now - timedelta(minutes=10)
    return base - timedelta(minutes=base.minute % 5, seconds=base.second)


def incident(incident_id: str, at: datetime, status: str, ward: str,
             category: str = "FLOOD", event_id: str | None = None) -> tuple[str, dict[str, Any]]:
    return ("IncidentEvent", {
        "event_id": event_id or str(uuid.uuid4()), "occurred_at": at,
        "incident_id": incident_id, "source_system": "CALL_CENTER_112", "category": category,
        "severity": "MODERATE", "status": status, "ward_code": ward, "latitude": None,
        "longitude": None, "rw": None, "rt": None, "description": "test",
    })


def lamp_fault(lamp_id: str, at: datetime, event_id: str) -> tuple[str, dict[str, Any]]:
    return ("LightingEvent", {
        "event_id": event_id, "occurred_at": at, "lamp_id": lamp_id, "cabinet_id": None,
        "report_kind": "FAULT", "lamp_status": "NO_POWER", "power_state": "OFF",
        "dimming_level": None, "energy_kwh": None, "ward_code": None, "latitude": None,
        "longitude": None,
    })


def get_json(port: int, path: str, token: str | None) -> tuple[int, Any]:
    """GET a JSON route as an API consumer with a bearer token (None: anonymous)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


#: The test operators, one per role (issue 14).
ROLES = {"vera": "viewer", "oscar": "operator", "sari": "supervisor"}


@dataclass(frozen=True)
class BoardAccess:
    """A test worker's accounts file (an operator per role and an API token) and thresholds."""

    accounts_file: Path
    thresholds_file: Path
    token: str
    passwords: Mapping[str, str]

    @property
    def env(self) -> dict[str, str]:
        # the second factor has its own tests (tests/e2e/test_second_factor.py); these sign
        # in with a password only, which the worker allows only without secure cookies
        return {"CITYOPS_OPERATORS_FILE": str(self.accounts_file),
                "CITYOPS_THRESHOLDS": str(self.thresholds_file),
                "CITYOPS_BOARD_SECOND_FACTOR": "off"}


def board_access(directory: Path, sla: Mapping[str, Any] | None = None) -> BoardAccess:
    """Accounts made with the same functions `cityops operators` uses, random passwords, and a
    thresholds file whose SLA clocks are `sla` (default: a day for every clock, so the board
    scenarios, whose reports are minutes old, never see one expire)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "operators.json"
    passwords = {name: secrets.token_urlsafe(12) for name in ROLES}
    for name, role in ROLES.items():
        accounts.add_operator(name, role, passwords[name], path)
    token = accounts.add_token("tests", path)
    return BoardAccess(path, sla_thresholds(directory, sla), token, passwords)


#: SLA clocks of a day each: a scenario whose reports are minutes old never sees one expire.
DAY_SLA: Final = {
    "default": {"dispatch_seconds": 86_400, "on_scene_seconds": 86_400,
                "resolve_seconds": 86_400},
    "categories": {}, "agencies": {},
    "acknowledge_seconds": {"ALERT": 86_400, "CRITICAL": 86_400},
}


def sla_thresholds(directory: Path, sla: Mapping[str, Any] | None = None) -> Path:
    """A thresholds file of the defaults with the SLA clocks `sla` (default `DAY_SLA`), for a
    worker of a scenario whose events lie minutes in the past: since issue 14 the defaults
    would call its incidents overdue ("FLOOD at RW 003 unassigned for 12 min")."""
    directory.mkdir(parents=True, exist_ok=True)
    mapping = Thresholds().to_mapping()
    mapping["sla"] = dict(sla if sla is not None else DAY_SLA)
    thresholds = directory / "thresholds.json"
    thresholds.write_text(json.dumps(mapping), encoding="utf-8")
    return thresholds


class BoardSession:
    """A signed-in operator's HTTP session: cookies kept, the CSRF token sent on POSTs."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies))
        self.csrf: str | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.base + path, data=body, method=method,
                                         headers=dict(headers or {}))
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def login_token(self) -> str:
        status, _, page = self.request("GET", "/board/login")
        assert status == 200
        found = re.search(rb'name="token" value="([^"]+)"', page)
        assert found is not None
        return found.group(1).decode()

    def sign_in(self, name: str, password: str) -> tuple[int, bytes]:
        form = urllib.parse.urlencode({"name": name, "password": password,
                                       "token": self.login_token()}).encode()
        status, _, page = self.request("POST", "/board/login", form, {
            "Content-Type": "application/x-www-form-urlencoded"})
        if status == 200:  # followed the redirect to the board
            me = self.json("GET", "/api/me")[1]
            self.csrf = me["csrf_token"]
        return status, page

    def json(self, method: str, path: str, body: Any = None,
             csrf: str | None = "session") -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        token = self.csrf if csrf == "session" else csrf
        if method != "GET" and token is not None:
            headers["X-CSRF-Token"] = token
        data = None if body is None else json.dumps(body).encode()
        status, _, raw = self.request(method, path, data, headers)
        return status, json.loads(raw) if raw else None


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z")


class EventStream:
    """A minimal server-sent-events reader over http.client."""

    def __init__(self, port: int, path: str = "/api/situations/stream",
                 token: str | None = None) -> None:
        self.connection = HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Accept": "text/event-stream"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.connection.request("GET", path, headers=headers)
        self.response: HTTPResponse = self.connection.getresponse()

    def next(self) -> tuple[str, Any]:
        event, data = "message", list[str]()
        while True:
            line = self.response.readline().decode().rstrip("\n")
            if not line:
                if data:
                    return event, json.loads("\n".join(data))
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)

    def close(self) -> None:
        self.connection.close()


# -- fixtures -------------------------------------------------------------------------------


@dataclass
class Scenario:
    base: datetime
    event_ids: list[str]


@pytest.fixture(scope="module")
def namespace(broker: str) -> Namespace:
    return Namespace.create(broker, "web")


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> BoardAccess:
    """Since issue 14 the API answers authenticated consumers only: a token of our own."""
    return board_access(tmp_path_factory.mktemp("web-access"))


@pytest.fixture(scope="module")
def worker(namespace: Namespace, tmp_path_factory: pytest.TempPathFactory,
           artifacts_dir: Path, access: BoardAccess) -> Iterator[Worker]:
    app_id = f"web-{uuid.uuid4().hex[:8]}"
    with namespace.worker(app_id, artifacts_dir / "web-api-worker.log",
                          tmp_path_factory.mktemp("web-worker"), **access.env) as process:
        wait_until(lambda: get_json(process.web_port, "/api/situations",
                                    access.token)[1]["ready"] is True)
        yield process


@pytest.fixture(scope="module")
def scenario(namespace: Namespace, worker: Worker, access: BoardAccess) -> Scenario:
    base = window_base()
    ids = [str(uuid.uuid4()) for _ in range(4)]

    def flood_sequence() -> int:
        situation = get_json(worker.web_port, f"/api/wards/{FLOOD_WARD}",
                             access.token)[1]["situation"]
        return int((situation or {}).get("sequence", 0))

    # one at a time: the two reports have different keys, so sent together they could be
    # enriched in either order
    namespace.send([
        incident("FLOOD-A", base + timedelta(seconds=30), "REPORTED", FLOOD_WARD, event_id=ids[0]),
        lamp_fault(LAMP, base + timedelta(seconds=45), ids[1]),
    ])
    wait_until(lambda: flood_sequence() == 1)
    namespace.send([
        incident("FLOOD-B", base + timedelta(seconds=60), "REPORTED", FLOOD_WARD, event_id=ids[2]),
    ])
    wait_until(lambda: flood_sequence() == 2)
    namespace.send([incident("FLOOD-A", base + timedelta(seconds=150), "DISPATCHED", FLOOD_WARD,
                             event_id=ids[3])])

    def settled() -> bool:
        body = get_json(worker.web_port, "/api/situations", access.token)[1]
        city = body["city"] or {}
        return city.get("mean_dispatch_seconds") == 120.0 and city.get("lamps_out") == 1
    wait_until(settled)
    return Scenario(base, ids)


# -- expected JSON ----------------------------------------------------------------------------


def _situation(scope: str, code: str, name: str, kecamatan: tuple[str | None, str | None],
               level: str, reasons: list[str], emitted_at: str, last_event_at: str,
               caused_by: str | None, sequence: int, window: tuple[str, str],
               **counts: Any) -> dict[str, Any]:
    """A full SituationEvent as the API renders it; counts default to zero/empty."""
    body: dict[str, Any] = {
        "scope": scope, "scope_code": code, "scope_name": name,
        "kecamatan_code": kecamatan[0], "kecamatan_name": kecamatan[1], "kind": "CHANGE",
        "level": level, "reasons": reasons, "emitted_at": emitted_at,
        "last_event_at": last_event_at, "caused_by_event_id": caused_by, "sequence": sequence,
        "open_incidents": 0, "open_incidents_by_category": {}, "open_incidents_by_severity": {},
        "new_incidents_in_window": 0, "window_start": window[0], "window_end": window[1],
        "lamps_total": 0, "lamps_out": 0, "lamps_working_ratio": None, "cabinet_alerts": [],
        "new_lamp_faults_in_window": 0, "containers_total": 0, "containers_full": 0,
        "containers_fire_risk": 0, "containers_overdue": 0, "overflow_reports_in_window": 0,
        "mean_dispatch_seconds": None, "mean_on_scene_seconds": None, "dispatch_count": 0,
        "on_scene_count": 0, "events_folded": 0,
        # issue 14: the command center's part (nobody acted in this scenario)
        "acknowledged_by": None, "acknowledged_at": None, "sla_overdue": 0, "cases": [],
        "ward_timeline": [],
    }
    unknown = set(counts) - set(body)
    assert not unknown, unknown
    body.update(counts)
    return body


def _case(incident_id: str, status: str, reported_at: str,
          timeline: list[tuple[str, str]]) -> dict[str, Any]:
    """An open incident as a situation lists it: no operator has acted on it."""
    return {
        "source_system": "CALL_CENTER_112", "incident_id": incident_id, "category": "FLOOD",
        "severity": "MODERATE", "status": status, "rw": None, "reported_at": reported_at,
        "assigned_agency": None, "assigned_by": None, "assigned_at": None, "escalated_by": None,
        "escalated_at": None, "closed_by": None, "closed_at": None, "version": 0,
        "overdue": [],
        "timeline": [{"at": when, "actor": "partner CALL_CENTER_112", "kind": kind, "text": None}
                     for when, kind in timeline],
    }


def test_api_returns_exact_json_for_the_scenario(
    namespace: Namespace, worker: Worker, scenario: Scenario, access: BoardAccess
) -> None:
    base, ids = scenario.base, scenario.event_ids
    status, body = get_json(worker.web_port, "/api/situations", access.token)
    ward_status, ward_body = get_json(worker.web_port, f"/api/wards/{FLOOD_WARD}",
                                      access.token)
    # Only emitted_at (wall clock) and the rollups' sequence and kind (how many rollup ticks
    # ran) are not fixed by the scenario: they are taken from the very record the API names,
    # read back from the situation topic, so the API must serve exactly what the topic holds.
    records = namespace.records()

    def emitted(situation: dict[str, Any]) -> str:
        return iso(records[(situation["scope_code"], situation["sequence"])]["emitted_at"])

    window = (iso(base), iso(base + timedelta(minutes=5)))
    at = {s: iso(base + timedelta(seconds=s)) for s in (30, 45, 60, 150)}
    cibeber = _situation(
        "KELURAHAN", FLOOD_WARD, "Cibeber", ("36.72.01", "Cibeber"), "WATCH",
        ["2 flood reports in 20 min"], emitted({"scope_code": FLOOD_WARD, "sequence": 3}),
        at[150], ids[3], 3, window, open_incidents=2, open_incidents_by_category={"FLOOD": 2},
        open_incidents_by_severity={"MODERATE": 2}, new_incidents_in_window=2, lamps_total=91,
        lamps_working_ratio=1.0, containers_total=8, mean_dispatch_seconds=120.0,
        dispatch_count=1, events_folded=1,
        cases=[_case("FLOOD-A", "DISPATCHED", at[30], [(at[30], "REPORTED"),
                                                        (at[150], "DISPATCHED")]),
               _case("FLOOD-B", "REPORTED", at[60], [(at[60], "REPORTED")])],
    )
    kotasari = _situation(
        "KELURAHAN", LAMP_WARD, "Kotasari", ("36.72.06", "Gerogol"), "NORMAL", [],
        emitted({"scope_code": LAMP_WARD, "sequence": 1}), at[45], ids[1], 1, window,
        lamps_total=124, lamps_out=1, lamps_working_ratio=123 / 124,
        new_lamp_faults_in_window=1, containers_total=10, events_folded=1,
    )
    flood_reason = "Kelurahan Cibeber: WATCH (2 flood reports in 20 min)"

    def rollup(served: dict[str, Any], scope: str, code: str, name: str, level: str,
               reasons: list[str], last_event_at: str, **counts: Any) -> dict[str, Any]:
        assert served["kind"] in ("CHANGE", "SNAPSHOT")
        kecamatan = (code, name) if scope == "KECAMATAN" else (None, None)
        return _situation(scope, code, name, kecamatan, level, reasons, emitted(served),
                          last_event_at, None, served["sequence"], window,
                          kind=served["kind"], **counts)

    city = rollup(
        body["city"], "CITY", "36.72", "Kota Cilegon", "WATCH", [flood_reason], at[150],
        open_incidents=2, open_incidents_by_category={"FLOOD": 2},
        open_incidents_by_severity={"MODERATE": 2}, new_incidents_in_window=2,
        lamps_total=215, lamps_out=1, lamps_working_ratio=214 / 215,
        new_lamp_faults_in_window=1, containers_total=18, mean_dispatch_seconds=120.0,
        dispatch_count=1,
    )
    kecamatan_cibeber = rollup(
        body["kecamatan"][0], "KECAMATAN", "36.72.01", "Cibeber", "WATCH", [flood_reason],
        at[150], open_incidents=2, open_incidents_by_category={"FLOOD": 2},
        open_incidents_by_severity={"MODERATE": 2}, new_incidents_in_window=2,
        lamps_total=91, lamps_working_ratio=1.0, containers_total=8,
        mean_dispatch_seconds=120.0, dispatch_count=1,
    )
    kecamatan_gerogol = rollup(
        body["kecamatan"][1], "KECAMATAN", "36.72.06", "Gerogol", "NORMAL", [], at[45],
        lamps_total=124, lamps_out=1, lamps_working_ratio=123 / 124,
        new_lamp_faults_in_window=1, containers_total=10,
    )
    # part by part first, for readable diffs; then the whole body
    assert (status, body["kelurahan"]) == (200, [cibeber, kotasari])  # worst level first
    assert body["kecamatan"] == [kecamatan_cibeber, kecamatan_gerogol]
    assert body["city"] == city
    assert body == {
        "ready": True,
        "city": city,
        "kecamatan": [kecamatan_cibeber, kecamatan_gerogol],
        "kelurahan": [cibeber, kotasari],
        "asset_registry": {"assets": 6180, "synthetic": 6180},
    }

    def change(sequence: int, **differs: Any) -> dict[str, Any]:
        entry = {name: cibeber[name] for name in (
            "sequence", "emitted_at", "last_event_at", "caused_by_event_id", "level",
            "reasons", "open_incidents", "lamps_out", "containers_full",
            "mean_dispatch_seconds", "mean_on_scene_seconds")}
        entry.update(sequence=sequence,
                     emitted_at=emitted({"scope_code": FLOOD_WARD, "sequence": sequence}))
        entry.update(differs)
        return entry

    assert (ward_status, ward_body) == (200, {
        "ward": {
            "kelurahan_code": FLOOD_WARD, "kelurahan_name": "Cibeber",
            "kecamatan_code": "36.72.01", "kecamatan_name": "Cibeber",
            "centroid_lat": -6.03311, "centroid_lon": 106.06966, "postal_code": "42423",
            "bps_code": "3672040005", "population": None, "area_km2": None,
        },
        "situation": cibeber,
        "recent_changes": [  # newest first
            change(3),
            change(2, last_event_at=at[60], caused_by_event_id=ids[2],
                   mean_dispatch_seconds=None),
            change(1, last_event_at=at[30], caused_by_event_id=ids[0], level="NORMAL",
                   reasons=[], open_incidents=1, mean_dispatch_seconds=None),
        ],
    })
    assert get_json(worker.web_port, "/api/wards/36.72.99.9999", access.token) == (
        404, {"error": "unknown kelurahan", "code": "36.72.99.9999"})


def test_stream_sends_the_full_picture_then_each_change(
    namespace: Namespace, worker: Worker, scenario: Scenario, access: BoardAccess
) -> None:
    stream = EventStream(worker.web_port, token=access.token)
    try:
        assert stream.response.status == 200
        assert stream.response.getheader("Content-Type") == "text/event-stream"
        event, snapshot = stream.next()
        assert event == "snapshot"
        served = get_json(worker.web_port, "/api/situations", access.token)[1]
        assert snapshot["kelurahan"] == served["kelurahan"]
        assert [s["scope_code"] for s in [snapshot["city"], *snapshot["kecamatan"]]] == [
            "36.72", "36.72.01", "36.72.06"]

        third = str(uuid.uuid4())
        namespace.send([incident("FLOOD-C", scenario.base + timedelta(seconds=90), "REPORTED",
                                 FLOOD_WARD, event_id=third)])
        received: list[tuple[str, str, int]] = []
        body: dict[str, Any] = {}
        while True:
            event, body = stream.next()
            received.append((event, body["scope_code"], body["sequence"]))
            if body["scope_code"] == FLOOD_WARD:
                break
        assert (event, body["level"], body["reasons"], body["open_incidents"],
                body["caused_by_event_id"]) == (
            "situation", "ALERT", ["3 flood reports in 20 min", "3 open incidents"], 3, third)
        assert received[-1] == ("situation", FLOOD_WARD, 4)
    finally:
        stream.close()


def test_board_files_are_served_and_faust_table_routes_are_off(
        worker: Worker, access: BoardAccess) -> None:
    port = worker.web_port
    board = urllib.request.Request(f"http://127.0.0.1:{port}/board/",
                                   headers={"Authorization": f"Bearer {access.token}"})
    with urllib.request.urlopen(board, timeout=30) as response:
        page = response.read().decode()
        assert (response.status, response.headers.get_content_type()) == (200, "text/html")
    assert '<script src="static/board.js"></script>' in page
    for path, kind in (("/board/static/board.js", "application/javascript"),
                       ("/board/static/board.css", "text/css")):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            assert (response.status, response.headers.get_content_type()) == (200, kind)
    status, wards = get_json(port, "/board/wards.geojson", access.token)
    assert (status, len(wards["features"])) == (200, 43)
    status, outlines = get_json(port, "/board/kecamatan.geojson", access.token)
    assert (status, [f["properties"]["kecamatan_name"] for f in outlines["features"]]) == (
        200, ["Cibeber", "Cilegon", "Pulomerak", "Ciwandan", "Jombang", "Gerogol", "Purwakarta",
              "Citangkil"])
    assert {f["geometry"]["type"] for f in outlines["features"]} == {"MultiLineString"}
    # Faust's built-in /table (raw ward state) and /router (cluster topology) are switched off
    # (and, since issue 14, nothing but the sign-in page answers without a principal)
    for path in ("/table/", "/table/ward_state/", "/router/"):
        assert get_json(port, path, None)[0] == 401
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}{path}",
                headers={"Authorization": f"Bearer {access.token}"}), timeout=30)
        assert error.value.code == 404


def test_a_second_worker_serves_the_same_city(
    namespace: Namespace, worker: Worker, scenario: Scenario,
    tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path, access: BoardAccess,
) -> None:
    second = namespace.worker(worker.app_id, artifacts_dir / "web-api-worker-2.log",
                              tmp_path_factory.mktemp("web-worker-2"), **access.env).start()
    try:
        second.wait_ready()
        wait_until(lambda: get_json(second.web_port, "/api/situations", access.token)
                 == get_json(worker.web_port, "/api/situations", access.token))
        body = get_json(second.web_port, "/api/situations", access.token)[1]
        assert [s["scope_code"] for s in body["kelurahan"]] == [FLOOD_WARD, LAMP_WARD]
        # a change made while both run reaches both boards, whichever worker owns the ward.
        # FLOOD-A's raw partition has a committed offset already: see the report on events
        # sent during a rebalance to a partition without one.
        before = get_json(worker.web_port, f"/api/wards/{FLOOD_WARD}",
                          access.token)[1]["situation"]
        namespace.send([incident("FLOOD-A", scenario.base + timedelta(seconds=200), "RESOLVED",
                                 FLOOD_WARD)])

        def resolved(port: int) -> bool:
            situation = get_json(port, f"/api/wards/{FLOOD_WARD}",
                                 access.token)[1]["situation"]
            return bool(situation["open_incidents"] == before["open_incidents"] - 1)
        wait_until(lambda: resolved(worker.web_port) and resolved(second.web_port))
        assert get_json(second.web_port, f"/api/wards/{FLOOD_WARD}", access.token) == get_json(
            worker.web_port, f"/api/wards/{FLOOD_WARD}", access.token)
    finally:
        second.stop()
