"""The command center acts (issue 14), in real headless Chromium on a real worker and broker.

Two browsers: oscar (operator) and vera (viewer), each signed in through the sign-in page. An
EXTREME flood turns Panggung Rawi CRITICAL, "CRITICAL not acknowledged"; oscar acknowledges
it, assigns the flood to BPBD and adds a note with markup in it. Vera's board shows each change
live, the note as text, no action controls, and every action endpoint answers her 403. A
second flood in Ramanuju is left unassigned: when its dispatch clock (60 s for FLOOD in this
test's thresholds) expires, the reason appears and the kelurahan turns ALERT.
Screenshots: test-artifacts/operators-oscar.png, operators-vera.png, operators-sla.png.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.harness import Namespace, Worker, wait_until
from streams.auth import session_digest
from streams.web import sse_message
from tests.e2e.test_board import browser, signed_in_page  # noqa: F401 (the browser fixture)
from tests.integration.test_web_api import BoardAccess, BoardSession, board_access, get_json

pytestmark = pytest.mark.e2e

CRITICAL_WARD = "36.72.05.1004"  # Panggung Rawi, kecamatan Jombang
SLA_WARD = "36.72.07.1001"  # Ramanuju, kecamatan Purwakarta
INCIDENT = "112-E2E-1"
NOTE = '<b>Air</b> naik <img src=x onerror="document.body.dataset.pwned=1">'
#: Upper bound for a page to show a change; a bound, not a timing assertion.
UPDATE_TIMEOUT_MS = 30_000
#: The FLOOD dispatch clock expires 60 s after the report, then the next tick (5 s) shows it.
SLA_TIMEOUT_MS = 120_000
DAY = 86_400


@pytest.fixture(scope="module")
def namespace(broker: str) -> Namespace:
    return Namespace.create(broker, "operators-e2e")


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> BoardAccess:
    return board_access(tmp_path_factory.mktemp("operators-e2e"), sla={
        "acknowledge_seconds": {"ALERT": DAY, "CRITICAL": DAY},
        "default": {"dispatch_seconds": DAY, "on_scene_seconds": DAY, "resolve_seconds": DAY},
        "categories": {"FLOOD": {"dispatch_seconds": 60}},
        "agencies": {},
    })


@pytest.fixture(scope="module")
def worker(namespace: Namespace, tmp_path_factory: pytest.TempPathFactory,
           artifacts_dir: Path, access: BoardAccess) -> Iterator[Worker]:
    with namespace.worker(f"ops-e2e-{uuid.uuid4().hex[:8]}",
                          artifacts_dir / "operators-e2e-worker.log",
                          tmp_path_factory.mktemp("operators-e2e-worker"),
                          CITYOPS_SNAPSHOT_INTERVAL_S="5", **access.env) as process:
        wait_until(lambda: get_json(process.web_port, "/api/situations",
                                    access.token)[1]["ready"] is True)
        yield process


def flood(incident_id: str, ward: str, severity: str, rw: str) -> tuple[str, dict[str, Any]]:
    return ("IncidentEvent", {
        "event_id": str(uuid.uuid4()), "occurred_at": datetime.now(UTC).replace(microsecond=0)
        - timedelta(seconds=1), "incident_id": incident_id, "source_system": "CALL_CENTER_112",
        "category": "FLOOD", "severity": severity, "status": "REPORTED", "ward_code": ward,
        "latitude": None, "longitude": None, "rw": rw, "rt": "001",
        "description": "Banjir <script>alert(1)</script>"})


def act(page: Any, action: str, click: Any) -> int:
    """Click, and the status of the action request the click sent."""
    with page.expect_response(lambda response: f"/actions/{action}" in response.url,
                              timeout=UPDATE_TIMEOUT_MS) as sent:
        click()
    return int(sent.value.status)


def open_ward(page: Any, ward: str, level: str) -> None:
    page.wait_for_selector(f"path.ward[data-code='{ward}'][data-level='{level}']",
                           timeout=UPDATE_TIMEOUT_MS)
    page.locator(f"#ward-list li[data-code='{ward}']").click()
    page.wait_for_selector(f"#detail[data-code='{ward}'] #ops", timeout=UPDATE_TIMEOUT_MS)


def test_an_operator_acts_a_viewer_watches_and_an_sla_clock_expires(
    browser: Any, namespace: Namespace, worker: Worker, access: BoardAccess,  # noqa: F811
    artifacts_dir: Path,
) -> None:
    base_url = f"http://127.0.0.1:{worker.web_port}"
    oscar = signed_in_page(browser, base_url, "oscar", access.passwords["oscar"],
                           {"width": 1600, "height": 1000})
    vera = signed_in_page(browser, base_url, "vera", access.passwords["vera"],
                          {"width": 1600, "height": 1000})
    errors: list[str] = []
    for page in (oscar, vera):
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.wait_for_selector("#connection[data-state='live']", timeout=UPDATE_TIMEOUT_MS)
    assert (oscar.locator("#operator .who").inner_text(),
            vera.locator("#operator .who").inner_text()) == ("oscar · operator", "vera · viewer")

    namespace.send([flood(INCIDENT, CRITICAL_WARD, "EXTREME", "003")])
    for page in (oscar, vera):
        open_ward(page, CRITICAL_WARD, "CRITICAL")
    item = vera.locator(f"#ward-list li[data-code='{CRITICAL_WARD}'] .reasons li")
    assert item.all_inner_texts() == ["CRITICAL not acknowledged",
                                      "1 open EXTREME incident (FLOOD)"]
    assert vera.locator("#ops .ack").inner_text() == "CRITICAL not acknowledged"
    # the viewer sees and cannot act: no control at all
    assert [vera.locator(selector).count() for selector in (
        "#acknowledge", ".case .assign", ".case .escalate", ".case .add-note",
        ".case .close-case")] == [0, 0, 0, 0, 0]
    assert oscar.locator(".case .close-case").count() == 0  # closing is a supervisor's

    assert act(oscar, "acknowledge", lambda: oscar.click("#acknowledge")) == 200
    vera.wait_for_selector("#ops .ack[data-acknowledged='true']", timeout=UPDATE_TIMEOUT_MS)
    assert vera.locator("#ops .ack").inner_text().startswith("Acknowledged by oscar at ")
    vera.wait_for_function(
        "([code]) => [...document.querySelectorAll(`#ward-list li[data-code='${code}'] "
        ".reasons li`)].map((li) => li.textContent).join('|') === "
        "'1 open EXTREME incident (FLOOD)'", arg=[CRITICAL_WARD], timeout=UPDATE_TIMEOUT_MS)

    card = f".case[data-incident='{INCIDENT}']"
    oscar.select_option(f"{card} select.agency", "BPBD")
    assert act(oscar, "assign", lambda: oscar.click(f"{card} button.assign")) == 200
    vera.wait_for_selector(f"{card} .timeline li[data-kind='ASSIGN']",
                           timeout=UPDATE_TIMEOUT_MS)
    assert vera.locator(f"{card} .assigned").inner_text().startswith(
        "Assigned to BPBD by oscar at ")

    oscar.fill(f"{card} input.note-text", NOTE)
    assert act(oscar, "note", lambda: oscar.click(f"{card} button.add-note")) == 200
    vera.wait_for_selector(f"{card} .timeline li[data-kind='NOTE']", timeout=UPDATE_TIMEOUT_MS)
    # markup from an operator (or a partner) is shown as the text it is
    assert vera.locator(f"{card} .timeline li[data-kind='NOTE'] .text").inner_text() == NOTE
    assert [vera.locator(f"#detail {tag}").count() for tag in ("b", "img", "script")] == [0, 0, 0]
    assert vera.evaluate("document.body.dataset.pwned") is None
    assert [(li.get_attribute("data-actor"), li.get_attribute("data-kind"))
            for li in vera.locator(f"{card} .timeline li").all()] == [
        ("partner CALL_CENTER_112", "REPORTED"), ("oscar", "ASSIGN"), ("oscar", "NOTE")]
    assert oscar.locator(f"{card} .timeline li").count() == 3
    oscar.screenshot(path=str(artifacts_dir / "operators-oscar.png"))
    vera.screenshot(path=str(artifacts_dir / "operators-vera.png"))
    assert oscar.locator("#ops-status").get_attribute("data-outcome") == "applied"

    # issue 24: oscar's board is held at what it showed (its live stream replays the picture
    # of now); sari reassigns the case; oscar's assignment, made on the version he saw, is
    # refused and his page says what changed
    frozen = sse_message("snapshot", get_json(worker.web_port, "/api/situations",
                                              access.token)[1])
    oscar.route("**/api/situations/stream", lambda route: route.fulfill(
        status=200, headers={"Content-Type": "text/event-stream"},
        body=b"retry: 600000\n" + frozen))
    oscar.reload()
    open_ward(oscar, CRITICAL_WARD, "CRITICAL")
    sari = BoardSession(worker.web_port)
    assert sari.sign_in("sari", access.passwords["sari"])[0] == 200
    status, answer = sari.json("POST", f"/api/wards/{CRITICAL_WARD}/actions/assign", {
        "incident_source": "CALL_CENTER_112", "incident_id": INCIDENT, "agency": "DAMKAR",
        "case_version": 2})
    assert (status, answer["status"], answer["case_version"]) == (200, "applied", 3)
    wait_until(lambda: get_json(worker.web_port, f"/api/wards/{CRITICAL_WARD}", access.token)[
        1]["situation"]["cases"][0]["version"] == 3)
    assert oscar.locator(f"{card} .assigned").inner_text().startswith(
        "Assigned to BPBD by oscar at ")
    oscar.select_option(f"{card} select.agency", "POLRES")
    assert act(oscar, "assign", lambda: oscar.click(f"{card} button.assign")) == 409
    oscar.wait_for_selector("#ops-status[data-outcome='refused']", timeout=UPDATE_TIMEOUT_MS)
    assert oscar.locator("#ops-status").inner_text() == (
        "assign refused (409): the case changed since you loaded it (version 3, not 2): "
        "assigned to Damkar by sari, last action ASSIGN by sari")
    oscar.screenshot(path=str(artifacts_dir / "operators-conflict.png"))
    # live again, the case shows sari's assignment
    oscar.unroute("**/api/situations/stream")
    oscar.reload()
    open_ward(oscar, CRITICAL_WARD, "CRITICAL")
    assert oscar.locator(f"{card} .assigned").inner_text().startswith(
        "Assigned to Damkar by sari at ")

    # every action endpoint refuses the viewer, with her own valid session and CSRF token
    refused = vera.evaluate("""async ([code, incident]) => {
        const me = await (await fetch('../api/me')).json();
        const out = [];
        for (const action of ['acknowledge', 'assign', 'escalate', 'note', 'close']) {
          const response = await fetch(`../api/wards/${code}/actions/${action}`, {
            method: 'POST',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf_token},
            body: JSON.stringify({incident_source: 'CALL_CENTER_112', incident_id: incident,
                                  agency: 'BPBD', text: 'x'})});
          out.push([response.status, (await response.json()).error]);
        }
        return out;
    }""", [CRITICAL_WARD, INCIDENT])
    assert refused == [[403, f"a viewer may not {action}"] for action in (
        "acknowledge", "assign", "escalate", "note", "close")]

    # an unassigned flood: its dispatch clock expires at 60 s and the reason appears
    namespace.send([flood("112-E2E-2", SLA_WARD, "MODERATE", "007")])
    vera.wait_for_selector(f"path.ward[data-code='{SLA_WARD}'][data-level='NORMAL']",
                           timeout=UPDATE_TIMEOUT_MS)
    vera.wait_for_selector(f"path.ward[data-code='{SLA_WARD}'][data-level='ALERT']",
                           timeout=SLA_TIMEOUT_MS)
    assert vera.locator(f"#ward-list li[data-code='{SLA_WARD}'] .reasons li").all_inner_texts() \
        == ["FLOOD at RW 007 unassigned for 1 min"]
    open_ward(vera, SLA_WARD, "ALERT")
    assert (vera.locator(".case[data-incident='112-E2E-2'] .overdue").inner_text(),
            vera.locator("#ops .sla-count").inner_text()) == (
        "SLA overdue: dispatch", "1 SLA clock(s) overdue")
    vera.screenshot(path=str(artifacts_dir / "operators-sla.png"))
    assert errors == []


def test_a_supervisor_ends_an_operators_session_on_the_sessions_page(
    browser: Any, worker: Worker, access: BoardAccess, artifacts_dir: Path,  # noqa: F811
) -> None:
    """Issue 24: sari opens "Sessions", sees oscar's session with its address and ends it;
    oscar's board is refused from then on (its next request, a reload sends him to sign in),
    and his "Sign out everywhere" on a new sign-in ends every session of his."""
    base_url = f"http://127.0.0.1:{worker.web_port}"
    oscar = signed_in_page(browser, base_url, "oscar", access.passwords["oscar"],
                           {"width": 1600, "height": 1000})
    sari = signed_in_page(browser, base_url, "sari", access.passwords["sari"],
                          {"width": 1600, "height": 1000})
    cookie = next(c["value"] for c in oscar.context.cookies() if c["name"] == "cityops_session")
    digest = session_digest(cookie)
    assert oscar.locator("#sessions-open").count() == 0  # supervisors only
    sari.click("#sessions-open")
    row = f"#sessions li[data-id='{digest}']"
    sari.wait_for_selector(row, timeout=UPDATE_TIMEOUT_MS)
    assert (sari.locator(f"{row} .actor").inner_text(),
            sari.locator(f"{row} .where").inner_text().startswith("127.0.0.1 · since "),
            sari.locator("#sessions li[data-current='true'] .actor").inner_text()) == (
        "oscar", True, "sari")
    sari.screenshot(path=str(artifacts_dir / "operators-sessions.png"))
    sari.click(f"{row} .end-session")
    sari.wait_for_function("() => document.getElementById('sessions-status').textContent"
                           " === \"Ended oscar's session\"", timeout=UPDATE_TIMEOUT_MS)
    sari.wait_for_selector(row, state="detached", timeout=UPDATE_TIMEOUT_MS)
    assert oscar.evaluate("async () => (await fetch('../api/me')).status") == 401
    oscar.reload()
    oscar.wait_for_url(f"{base_url}/board/login")

    again = signed_in_page(browser, base_url, "oscar", access.passwords["oscar"],
                           {"width": 1600, "height": 1000})
    other = signed_in_page(browser, base_url, "oscar", access.passwords["oscar"],
                           {"width": 1600, "height": 1000})
    again.click("#sign-out-everywhere")
    again.wait_for_url(f"{base_url}/board/login")
    assert other.evaluate("async () => (await fetch('../api/me')).status") == 401
