"""Unit tests of the board's sign-in policy (streams/auth.py) and accounts (core/accounts.py) at
exact instants: sessions expire, wrong passwords slow sign-in down, host names are checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import accounts
from core.accounts import AccountError, Principal
from streams.auth import LoginThrottle, SessionStore, allowed_hosts, host_name, same_token

pytestmark = pytest.mark.unit

OSCAR = Principal("oscar", "OPERATOR")


def test_a_session_lasts_exactly_its_ttl() -> None:
    store = SessionStore(ttl_s=100.0)
    session_id, session = store.open(OSCAR, now=1_000.0)
    assert store.get(session_id, 1_099.999) is session
    assert store.get(session_id, 1_100.0) is None
    assert (len(store), store.get("unknown", 1_000.0), store.get(None, 1_000.0)) == (0, None, None)


def test_sessions_are_capped_and_each_has_its_own_csrf_token() -> None:
    store = SessionStore(ttl_s=100.0, capacity=2)
    first, a = store.open(OSCAR, now=0.0)
    _, b = store.open(OSCAR, now=1.0)
    store.open(OSCAR, now=2.0)
    assert (len(store), store.get(first, 3.0), a.csrf != b.csrf) == (2, None, True)


def test_five_wrong_passwords_in_a_row_start_a_doubling_wait() -> None:
    throttle = LoginThrottle()
    keys = ("name:sari", "address:127.0.0.1")
    waits = []
    for attempt in range(8):
        now = 100.0 * attempt
        waits.append(throttle.wait_s(keys, now))
        throttle.failed(keys, now)
    assert waits == [0.0] * 8  # each attempt came after the wait had passed
    assert [throttle.wait_s(keys, 700.0 + dt) for dt in (0.0, 7.5, 8.0)] == [8.0, 0.5, 0.0]
    assert throttle.failures("name:sari") == 8
    throttle.succeeded(keys)
    assert (throttle.failures("name:sari"), throttle.wait_s(keys, 700.0)) == (0, 0.0)


def test_the_fourth_failure_is_free_and_the_fifth_waits_one_second() -> None:
    throttle = LoginThrottle()
    for _ in range(4):
        throttle.failed(["k"], 10.0)
    assert throttle.wait_s(["k"], 10.0) == 0.0
    throttle.failed(["k"], 10.0)
    assert throttle.wait_s(["k"], 10.0) == 1.0


def test_the_wait_is_capped_and_the_throttle_forgets_the_oldest_keys() -> None:
    throttle = LoginThrottle(capacity=2)
    for _ in range(30):
        throttle.failed(["a"], 0.0)
    assert throttle.wait_s(["a"], 0.0) == 300.0
    throttle.failed(["b"], 0.0)
    throttle.failed(["c"], 0.0)
    assert (throttle.failures("a"), throttle.failures("c")) == (0, 1)


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
