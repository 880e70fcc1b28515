"""The situation board in a real headless Chromium, fed live by a real worker on the real broker.

Scenario: the board is open on a quiet city; three FLOOD reports arrive for Ciwedus
(36.72.02.1002) within 90 s -> the kelurahan turns from "no reports" to ALERT on the map, the
side list shows its reasons, and its detail shows the open incidents by category and the
three situation changes. A second page opened afterwards gets the same picture at once, and
the page never asks for anything outside the worker (no tiles, fonts or scripts).

Chromium is Debian's (`apt-get install -y chromium`), driven by Playwright's Python package;
`playwright install` is never needed. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.harness import Namespace, Worker, wait_until
from tests.integration.test_web_api import (
    BoardAccess,
    board_access,
    get_json,
    incident,
    window_base,
)

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WARD = "36.72.02.1002"  # Ciwedus, kecamatan Cilegon
ALERT_FILL = "rgb(244, 96, 54)"  # --alert in board.css
NO_REPORTS_FILL = "rgb(43, 58, 76)"  # --none in board.css
#: Upper bound for the page to show a change; a bound, not a timing assertion.
UPDATE_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium; a missing browser or package fails the test, never skips it."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium with "
                    "`apt-get update && apt-get install -y chromium`", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.fail(f"python package playwright missing ({error}): "
                    "`pip install -e '.[test]'` (never `playwright install`)", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def namespace(broker: str) -> Namespace:
    return Namespace.create(broker, "board")


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> BoardAccess:
    return board_access(tmp_path_factory.mktemp("board-access"))


@pytest.fixture(scope="module")
def worker(namespace: Namespace, tmp_path_factory: pytest.TempPathFactory,
           artifacts_dir: Path, access: BoardAccess) -> Iterator[Worker]:
    with namespace.worker(f"board-{uuid.uuid4().hex[:8]}", artifacts_dir / "board-worker.log",
                          tmp_path_factory.mktemp("board-worker"), **access.env) as process:
        wait_until(lambda: get_json(process.web_port, "/api/situations",
                                    access.token)[1]["ready"] is True)
        yield process


def signed_in_page(browser: Any, base_url: str, name: str, password: str,
                   viewport: dict[str, int]) -> Any:
    """A page of its own browser context (its own cookies), signed in through the sign-in
    form (issue 14: the board needs an account), on the board."""
    page = browser.new_context(viewport=viewport).new_page()
    page.goto(f"{base_url}/board/")  # not signed in: the board sends the browser to sign in
    page.wait_for_url(f"{base_url}/board/login")
    page.fill("input[name='name']", name)
    page.fill("input[name='password']", password)
    page.click("button[type='submit']")
    page.wait_for_url(f"{base_url}/board/")
    return page


def test_board_turns_the_flooded_kelurahan_to_alert_live(
    browser: Any, namespace: Namespace, worker: Worker, artifacts_dir: Path,
    access: BoardAccess,
) -> None:
    base_url = f"http://127.0.0.1:{worker.web_port}"
    outside: list[str] = []
    page = signed_in_page(browser, base_url, "vera", access.passwords["vera"],
                          {"width": 1600, "height": 1000})
    page.on("request", lambda request: None if request.url.startswith(base_url)
            else outside.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.wait_for_selector("#connection[data-state='live']", timeout=UPDATE_TIMEOUT_MS)
    ward = page.locator(f"path.ward[data-code='{WARD}']")
    assert (page.locator("path.ward").count(), page.locator("path.kec-outline").count()) == (43, 8)
    assert (ward.get_attribute("data-name"), ward.get_attribute("data-level")) == (
        "Ciwedus", "NONE")
    assert ward.evaluate("node => getComputedStyle(node).fill") == NO_REPORTS_FILL
    assert page.locator("#ward-list li").count() == 0
    assert page.locator("#legend .row[data-level='NONE'] .n").inner_text() == "43"

    base = window_base()
    namespace.send([
        incident(f"FLOOD-{i}", base + timedelta(seconds=30 * (i + 1)), "REPORTED", WARD)
        for i in range(3)
    ])

    page.wait_for_selector(f"path.ward[data-code='{WARD}'][data-level='ALERT']",
                           timeout=UPDATE_TIMEOUT_MS)
    item = page.locator(f"#ward-list li[data-code='{WARD}']")
    # fill has a 0.6 s transition: wait for it to end rather than sleeping
    page.wait_for_function(
        "([code, fill]) => getComputedStyle(document.querySelector("
        "`path.ward[data-code='${code}']`)).fill === fill", arg=[WARD, ALERT_FILL],
        timeout=UPDATE_TIMEOUT_MS)
    assert item.locator(".reasons li").all_inner_texts() == [
        "3 flood reports in 20 min", "3 open incidents"]
    assert (item.get_attribute("data-level"), item.locator(".pill").inner_text()) == (
        "ALERT", "ALERT")
    assert page.locator("#legend .row[data-level='ALERT'] .n").inner_text() == "1"
    assert page.locator("#legend .row[data-level='NONE'] .n").inner_text() == "42"

    ward.click()
    page.wait_for_selector(f"#detail[data-code='{WARD}'] .changes li[data-sequence='1']",
                           timeout=UPDATE_TIMEOUT_MS)
    detail = page.locator("#detail")
    assert detail.locator(".dname").inner_text().split("\n")[0].strip() == "Ciwedus ALERT"
    assert detail.locator("tr[data-key='FLOOD'] td").all_inner_texts() == ["Flood", "3"]
    assert [li.get_attribute("data-sequence")
            for li in detail.locator(".changes li").all()] == ["3", "2", "1"]
    assert detail.locator(".changes li .pill").all_inner_texts() == ["ALERT", "WATCH", "NORMAL"]
    page.mouse.move(5, 5)  # no tooltip over the screenshot
    page.screenshot(path=str(artifacts_dir / "board-ciwedus-alert.png"))

    # a page opened late gets the whole current picture from the stream's first event
    late = signed_in_page(browser, base_url, "vera", access.passwords["vera"],
                          {"width": 1280, "height": 800})
    late.wait_for_selector(f"path.ward[data-code='{WARD}'][data-level='ALERT']",
                           timeout=UPDATE_TIMEOUT_MS)
    # the first picture is painted without the fade: the colour is right at once
    assert late.locator(f"path.ward[data-code='{WARD}']").evaluate(
        "node => getComputedStyle(node).fill") == ALERT_FILL
    assert late.locator(f"#ward-list li[data-code='{WARD}'] .reasons li").all_inner_texts() == [
        "3 flood reports in 20 min", "3 open incidents"]
    late.screenshot(path=str(artifacts_dir / "board-opened-late.png"))
    late.close()
    page.close()

    assert (outside, errors) == ([], [])
