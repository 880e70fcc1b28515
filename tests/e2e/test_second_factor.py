"""Two-step sign-in (issue 24, part 3) in real headless Chromium on a real worker and broker.

oscar (operator) has no second factor yet: after his password the board shows a QR code and
the key to enrol an authenticator app; a wrong code is refused, the right one shows his 10
recovery codes once and opens the board. Signing in again, the code he just used is refused
(replay), the next one is taken; a recovery code signs him in once and is refused the second
time. Between password and code the session grants nothing. vera (viewer) signs in with her
password only (the second factor is not required of viewers here). The accounts file keeps
the secret and the recovery codes' digests only. Screenshot: test-artifacts/second-factor-enrol.png.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from bench.harness import Namespace, Worker, wait_until
from core import accounts
from tests.e2e.test_board import browser  # noqa: F401 (the browser fixture)
from tests.integration.test_web_api import BoardAccess, board_access, get_json

pytestmark = pytest.mark.e2e

TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def namespace(broker: str) -> Namespace:
    return Namespace.create(broker, "second-factor")


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> BoardAccess:
    return board_access(tmp_path_factory.mktemp("second-factor"))


@pytest.fixture(scope="module")
def worker(namespace: Namespace, tmp_path_factory: pytest.TempPathFactory,
           artifacts_dir: Path, access: BoardAccess) -> Iterator[Worker]:
    with namespace.worker(f"totp-{uuid.uuid4().hex[:8]}", artifacts_dir / "second-factor.log",
                          tmp_path_factory.mktemp("second-factor-worker"),
                          **{**access.env, "CITYOPS_BOARD_SECOND_FACTOR": "required"}) as process:
        wait_until(lambda: get_json(process.web_port, "/api/situations",
                                    access.token)[1]["ready"] is True)
        yield process


def password_step(browser: Any, base_url: str, name: str, password: str) -> Any:  # noqa: F811
    page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
    page.goto(f"{base_url}/board/login")
    page.fill("input[name='name']", name)
    page.fill("input[name='password']", password)
    page.click("button[type='submit']")
    return page


def code_step(page: Any, code: str) -> str:
    """Submit a code; the page's alert text afterwards ("" when none)."""
    page.fill("input[name='code']", code)
    page.click("button[type='submit']")
    page.wait_for_load_state()
    alert = page.locator("[role='alert']")
    return str(alert.inner_text()) if alert.count() else ""


def test_enrol_with_a_qr_code_then_wrong_replayed_and_recovery_codes(
    browser: Any, worker: Worker, access: BoardAccess, artifacts_dir: Path,  # noqa: F811
) -> None:
    base_url = f"http://127.0.0.1:{worker.web_port}"
    oscar = password_step(browser, base_url, "oscar", access.passwords["oscar"])
    oscar.wait_for_url(f"{base_url}/board/login/second-factor")
    assert (oscar.locator("#totp-qr").get_attribute("src") or "").startswith(
        "data:image/svg+xml")
    secret = oscar.locator("#totp-secret").inner_text()
    oscar.screenshot(path=str(artifacts_dir / "second-factor-enrol.png"))
    # between the password and the code the session grants nothing
    assert oscar.evaluate("async () => (await fetch('/api/me')).status") == 401
    totp = pyotp.TOTP(secret)
    assert code_step(oscar, totp.at(int(time.time() - 3600))) == (
        "Wrong code, or a code already used; wait for the next one.")
    now = time.time()
    used = totp.at(int(now))
    oscar.fill("input[name='code']", used)
    oscar.click("button[type='submit']")
    oscar.wait_for_selector("#recovery-codes", timeout=TIMEOUT_MS)
    codes = oscar.locator("#recovery-codes li").all_inner_texts()
    assert len(codes) == 10
    oscar.click("#continue")
    oscar.wait_for_selector("#operator .who", timeout=TIMEOUT_MS)
    assert oscar.locator("#operator .who").inner_text() == "oscar · operator"

    stored = json.loads(access.accounts_file.read_text(encoding="utf-8"))["operators"]["oscar"]
    assert (stored["totp"] == secret, "totp_pending" in stored, len(stored["recovery"]),
            any(code in json.dumps(stored) for code in codes)) == (True, False, 10, False)

    # again: the code just used is refused (replay), the next step's code is taken
    again = password_step(browser, base_url, "oscar", access.passwords["oscar"])
    again.wait_for_url(f"{base_url}/board/login/second-factor")
    assert again.locator("#totp-qr").count() == 0  # enrolled: no QR code any more
    assert code_step(again, used) == "Wrong code, or a code already used; wait for the next one."
    assert code_step(again, totp.at(int(now + 30))) == ""
    again.wait_for_selector("#operator .who", timeout=TIMEOUT_MS)

    # a recovery code signs in once
    third = password_step(browser, base_url, "oscar", access.passwords["oscar"])
    third.wait_for_url(f"{base_url}/board/login/second-factor")
    assert code_step(third, codes[0]) == ""
    third.wait_for_selector("#operator .who", timeout=TIMEOUT_MS)
    fourth = password_step(browser, base_url, "oscar", access.passwords["oscar"])
    fourth.wait_for_url(f"{base_url}/board/login/second-factor")
    assert code_step(fourth, codes[0]) == (
        "Wrong code, or a code already used; wait for the next one.")
    assert len(accounts.load(access.accounts_file).operators["oscar"]["recovery"]) == 9

    # a viewer signs in with her password alone
    vera = password_step(browser, base_url, "vera", access.passwords["vera"])
    vera.wait_for_selector("#operator .who", timeout=TIMEOUT_MS)
    assert vera.locator("#operator .who").inner_text() == "vera · viewer"
