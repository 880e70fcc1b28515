"""Unit tests of the board's sign-in policy (streams/auth.py) and accounts (core/accounts.py) at
exact instants: sessions expire, wrong passwords slow sign-in down, host names are checked."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyotp
import pytest
from aiohttp import web

from core import accounts
from core.accounts import AccountError, Principal
from streams.auth import (
    BoardSecurity,
    LoginThrottle,
    SessionBook,
    allowed_hosts,
    client_address,
    csrf_token,
    host_name,
    same_token,
    session_digest,
    throttle_keys,
    why_ended,
)

pytestmark = pytest.mark.unit

OSCAR = Principal("oscar", "OPERATOR")


def test_a_session_ends_at_its_absolute_or_idle_timeout_or_when_its_account_changes() -> None:
    book = SessionBook(absolute_s=100.0, idle_s=30.0)
    session_id, session, pushed_out = book.open(OSCAR, now=1_000.0, address="10.0.0.5")
    assert (pushed_out, book.find(session_id) is session, book.find("other"), book.find(None),
            session.digest == session_digest(session_id), session_id in repr(session)) == (
        [], True, None, None, True, False)
    assert [why_ended(session, at, 100.0, 30.0, "OPERATOR") for at in (
        1_029.999, 1_030.0)] == [None, "idle"]
    session.last_seen_at = 1_090.0
    assert [why_ended(session, at, 100.0, 30.0, "OPERATOR") for at in (
        1_099.999, 1_100.0)] == [None, "expired"]
    assert (why_ended(session, 1_050.0, 100.0, 30.0, "SUPERVISOR"),
            why_ended(session, 1_050.0, 100.0, 30.0, None)) == ("role changed", "account removed")


def test_the_csrf_token_is_derived_from_the_session_id_and_never_stored() -> None:
    book = SessionBook(absolute_s=100.0, idle_s=30.0)
    first, a, _ = book.open(OSCAR, now=0.0, address="x")
    _, b, _ = book.open(OSCAR, now=1.0, address="x")
    record = a.record()
    assert (a.csrf == csrf_token(first), a.csrf != b.csrf, first in json.dumps(record, default=str),
            a.csrf in json.dumps(record, default=str)) == (True, True, False, False)
    other = SessionBook(absolute_s=100.0, idle_s=30.0)  # another worker reads the record
    other.apply(a.digest, record)
    found = other.find(first)
    assert found is not None and (found.csrf, found.principal, found.created_at) == (
        a.csrf, OSCAR, 0.0)
    other.apply(a.digest, None)
    assert other.find(first) is None


def test_an_account_keeps_at_most_five_sessions_the_oldest_goes() -> None:
    book = SessionBook(absolute_s=100.0, idle_s=30.0)
    opened = [book.open(OSCAR, now=float(n), address="x") for n in range(5)]
    _, _, pushed_out = book.open(OSCAR, now=5.0, address="x")
    assert (pushed_out, len(book), book.find(opened[0][0])) == ([opened[0][1].digest], 5, None)
    book.open(Principal("sari", "SUPERVISOR"), now=6.0, address="x")
    assert (len(book.of_account("oscar")), len(book.of_account("sari"))) == (5, 1)


@pytest.mark.parametrize(("secure", "expected"), [
    (False, "cityops_session=ID; HttpOnly; Max-Age=28800; Path=/; SameSite=Strict"),
    (True, "__Host-cityops_session=ID; HttpOnly; Max-Age=28800; Path=/; SameSite=Strict; "
           "Secure"),
])
def test_the_session_cookie_takes_the_host_prefix_when_secure(secure: bool,
                                                              expected: str) -> None:
    security = BoardSecurity(web_host="127.0.0.1", extra_hosts=[], accounts_path=None,
                             session_ttl_s=28_800.0, secure_cookies=secure)
    response = web.Response()
    security.set_session_cookie(response, "ID")
    assert response.cookies.output(header="").strip() == expected


def test_five_wrong_passwords_in_a_row_start_a_doubling_wait() -> None:
    throttle = LoginThrottle()
    keys = throttle_keys("sari", "127.0.0.1")
    assert keys == ("pair:sari|127.0.0.1", "address:127.0.0.1")
    attempts = [throttle.begin(keys, 100.0 * n) for n in range(8)]
    assert None not in attempts  # each attempt came after the wait had passed
    assert [throttle.wait_s(keys, 700.0 + dt) for dt in (0.0, 7.5, 8.0)] == [8.0, 0.5, 0.0]
    assert (throttle.failures(keys[0]), throttle.failures(keys[1])) == (8, 8)
    last = throttle.begin(keys, 708.0)
    assert last is not None
    throttle.succeeded(last)  # the pair starts again, the address gets one attempt back
    assert (throttle.failures(keys[0]), throttle.failures(keys[1]),
            throttle.wait_s(keys[:1], 708.0)) == (0, 8, 0.0)


def test_an_attempt_is_counted_before_its_password_is_checked() -> None:
    """120 attempts at once (none finished): 5 go ahead, 115 are refused unchecked."""
    throttle = LoginThrottle()
    keys = throttle_keys("sari", "198.51.100.9")
    attempts = [throttle.begin(keys, 50.0) for _ in range(120)]
    assert (sum(a is not None for a in attempts), throttle.failures(keys[0])) == (5, 5)
    assert throttle.wait_s(keys, 50.0) == 1.0


def test_guesses_from_elsewhere_never_slow_the_owner_down() -> None:
    throttle = LoginThrottle()
    for n in range(200):  # a botnet: 200 addresses, 10 guesses each, one name
        for _ in range(10):
            throttle.begin(throttle_keys("sari", f"203.0.113.{n % 250}|{n}"), 10.0)
    assert throttle.begin(throttle_keys("sari", "10.1.2.3"), 10.0) is not None


def test_one_address_trying_many_names_is_slowed_after_its_budget() -> None:
    throttle = LoginThrottle()
    given = [throttle.begin(throttle_keys(f"user{n}", "192.0.2.1"), 0.0) for n in range(31)]
    assert (sum(a is not None for a in given), throttle.failures("address:192.0.2.1")) == (30, 30)
    assert throttle.wait_s(["address:192.0.2.1"], 0.0) == 1.0
    # a colleague behind the same address waits (never a lock): heard at 1 s, then 2 s later
    rina = throttle_keys("rina", "192.0.2.1")
    assert [throttle.begin(rina, at) is not None for at in (0.5, 1.0, 2.0, 3.0)] == [
        False, True, False, True]
    # and the address's failures are forgotten an hour after its last one
    assert (throttle.begin(rina, 3.0 + 3_600.0) is not None,
            throttle.failures("address:192.0.2.1")) == (True, 1)


def test_the_wait_is_capped_and_the_throttle_forgets_the_oldest_keys() -> None:
    throttle = LoginThrottle(capacity=2)
    for _ in range(30):
        throttle.failed(["pair:a"], 0.0)
    assert throttle.wait_s(["pair:a"], 0.0) == 300.0
    throttle.failed(["pair:b"], 0.0)
    throttle.failed(["pair:c"], 0.0)
    assert (throttle.failures("pair:a"), throttle.failures("pair:c")) == (0, 1)


@pytest.mark.parametrize(("remote", "forwarded", "expected"), [
    ("198.51.100.7", None, "198.51.100.7"),  # no proxy
    ("198.51.100.7", "10.0.0.1", "198.51.100.7"),  # not a trusted proxy: the header is a lie
    ("127.0.0.1", "203.0.113.5", "203.0.113.5"),  # the trusted proxy saw 203.0.113.5
    ("127.0.0.1", "1.2.3.4, 203.0.113.5", "203.0.113.5"),  # the client's own entry is ignored
    ("127.0.0.1", "203.0.113.5, 10.8.0.2", "203.0.113.5"),  # two trusted hops
    ("127.0.0.1", "203.0.113.5, not-an-address", "127.0.0.1"),  # malformed: the proxy itself
    (None, None, "unknown"),
])
def test_the_client_address_is_the_one_a_trusted_proxy_saw(
        remote: str | None, forwarded: str | None, expected: str) -> None:
    assert client_address(remote, forwarded, ["127.0.0.1", "10.8.0.0/24"]) == expected


def test_host_names_are_compared_without_port_and_case() -> None:
    assert [host_name(h) for h in ("127.0.0.1:6066", "LOCALHOST", "[::1]:6066", "", None,
                                   "board.cilegon.go.id:443")] == [
        "127.0.0.1", "localhost", "[::1]", "", "", "board.cilegon.go.id"]
    assert allowed_hosts("127.0.0.1", ["Board.Cilegon.go.id"]) == {
        "127.0.0.1", "localhost", "[::1]", "board.cilegon.go.id"}
    assert "0.0.0.0" not in allowed_hosts("0.0.0.0", [])
    assert (same_token("abc", "abc"), same_token("abd", "abc"), same_token(None, "abc"),
            same_token("", "")) == (True, False, False, False)


def test_accounts_hash_passwords_and_tokens_and_verify_them(tmp_path: Path) -> None:
    path = tmp_path / "operators.json"
    accounts.add_operator("rina", "operator", "correct horse battery", path)
    token = accounts.add_token("grafana", path)
    text = path.read_text(encoding="utf-8")
    assert ("correct horse battery" in text, token in text) == (False, False)
    loaded = accounts.load(path)
    assert json.loads(text)["operators"]["rina"]["password"].startswith("$argon2id$")
    assert loaded.verify_password("rina", "correct horse battery") == Principal(
        "rina", "OPERATOR", "operator")
    assert (loaded.verify_password("rina", "wrong horse battery"),
            loaded.verify_password("nobody", "correct horse battery")) == (None, None)
    assert loaded.token_principal(token) == Principal("grafana", "VIEWER", "token")
    assert loaded.token_principal(token + "x") is None


@pytest.mark.parametrize(("call", "message"), [
    (lambda p: accounts.add_operator("Rina!", "operator", "x" * 10, p),
     "name 'Rina!': 2-32 characters, lower-case letters, digits, '.', '_' or '-', starting "
     "with a letter or digit"),
    (lambda p: accounts.add_operator("rina", "admin", "x" * 10, p),
     "role 'admin': one of viewer, operator, supervisor, village_staff"),
    (lambda p: accounts.add_operator("rina", "viewer", "short", p),
     "password: at least 10 characters"),
])
def test_bad_accounts_are_refused_with_the_reason(tmp_path: Path, call: object,
                                                  message: str) -> None:
    with pytest.raises(AccountError) as raised:
        call(tmp_path / "operators.json")  # type: ignore[operator]
    assert str(raised.value) == message


def test_cityops_operators_add_asks_twice_and_stores_only_a_hash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import getpass

    from cityops.cli import main

    path = tmp_path / "operators.json"
    answers = iter(["correct horse battery", "correct horse battery",
                    "correct horse battery", "different horse battery"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    assert main(["operators", "add", "rina", "--role", "operator", "--file", str(path)]) == 0
    assert main(["operators", "add", "budi", "--role", "viewer", "--file", str(path)]) == 2
    assert main(["operators", "list", "--file", str(path)]) == 0
    assert main(["operators", "add", "--file", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"operator rina (operator) saved in {path}",
                                "rina                             operator"]
    assert err.splitlines() == ["cityops operators: the passwords differ",
                                "cityops operators add: NAME is required"]
    assert "correct horse battery" not in path.read_text(encoding="utf-8")
    assert accounts.load(path).verify_password("rina", "correct horse battery") is not None


def test_a_totp_code_counts_once_within_one_step_either_side() -> None:
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    totp = pyotp.TOTP(secret)
    now = 1_765_000_000.0  # step 58_833_333
    assert [accounts.totp_step(secret, totp.at(int(now + dt)), now, None) for dt in (
        -60, -30, 0, 30, 60)] == [None, 58_833_332, 58_833_333, 58_833_334, None]
    # a code used at step 58_833_333 is refused again, and so is any earlier one
    assert (accounts.totp_step(secret, totp.at(int(now)), now, 58_833_333),
            accounts.totp_step(secret, totp.at(int(now - 30)), now, 58_833_333),
            accounts.totp_step(secret, totp.at(int(now + 30)), now, 58_833_333)) == (
        None, None, 58_833_334)
    assert [accounts.totp_step(secret, code, now, None) for code in (
        "", "12345", "abcdef", "1234567")] == [None] * 4


def test_enrolment_recovery_codes_and_an_old_accounts_file(tmp_path: Path) -> None:
    path = tmp_path / "operators.json"
    path.write_text(json.dumps({"version": 1, "operators": {"rina": {  # written before issue 24
        "role": "OPERATOR", "password": accounts._HASHER.hash("correct horse battery")}},
        "tokens": {}}), encoding="utf-8")
    loaded = accounts.load(path)
    assert (loaded.needs_second_factor("rina"), loaded.totp_secret("rina"),
            loaded.needs_second_factor("nobody")) == (True, None, False)
    secret = accounts.begin_enrolment("rina", path)
    assert accounts.begin_enrolment("rina", path) == secret  # the same until confirmed
    now = 1_765_000_000.0
    assert accounts.confirm_enrolment("rina", "000000" if pyotp.TOTP(secret).at(int(now))
                                      != "000000" else "111111", now, path) is None
    confirmed = accounts.confirm_enrolment("rina", pyotp.TOTP(secret).at(int(now)), now, path)
    assert confirmed is not None
    step, codes = confirmed
    text = path.read_text(encoding="utf-8")
    assert (step, len(codes), len(set(codes)), any(code in text for code in codes),
            accounts.load(path).totp_secret("rina")) == (58_833_333, 10, 10, False, secret)
    assert [accounts.use_recovery_code("rina", code, path) for code in (
        codes[3], codes[3].upper(), "nope-nope")] == [True, False, False]
    # a role change keeps the second factor; viewers need one only when asked
    accounts.add_operator("rina", "viewer", "correct horse battery", path)
    again = accounts.load(path)
    assert (again.totp_secret("rina"), len(again.operators["rina"]["recovery"]),
            again.needs_second_factor("rina"), again.needs_second_factor("rina", True)) == (
        secret, 9, False, True)


def test_the_demo_prints_a_sign_in_that_works(tmp_path: Path) -> None:
    from cityops.demo import DEMO_OPERATOR, demo_accounts

    path, password, secret = demo_accounts(tmp_path)
    loaded = accounts.load(path)
    assert loaded.verify_password(DEMO_OPERATOR, password) == Principal(
        DEMO_OPERATOR, "SUPERVISOR")
    assert loaded.totp_secret(DEMO_OPERATOR) == secret
    now = time.time()
    assert accounts.totp_step(secret, pyotp.TOTP(secret).at(int(now)), now, None) == int(now // 30)
