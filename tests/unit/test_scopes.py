"""Unit tests of the scope decision (processors/scopes.py, issue 24 part 4): what an account
bound to an agency or to kecamatan sees and may do, and that a scope change ends its sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core import accounts
from core.accounts import Principal
from processors.scopes import (
    Scope,
    action_problem,
    kecamatan_of,
    route_allowed,
    scoped_situation,
    scoped_situations,
    sees_ward,
)
from streams.auth import Session, SessionBook, account_now, scope_of, why_ended

pytestmark = pytest.mark.unit

CIBEBER, CILEGON = "36.72.01", "36.72.02"
CAMAT = Scope.of(None, [CIBEBER])
DAMKAR = Scope.of("DAMKAR", [])


def case(incident: str, agency: str | None) -> dict[str, Any]:
    return {"source_system": "LAPOR", "incident_id": incident, "assigned_agency": agency}


SITUATIONS: dict[str, dict[str, Any]] = {
    "36.72": {"scope": "CITY", "scope_code": "36.72"},
    CIBEBER: {"scope": "KECAMATAN", "scope_code": CIBEBER},
    CILEGON: {"scope": "KECAMATAN", "scope_code": CILEGON},
    "36.72.01.1001": {"scope": "KELURAHAN", "scope_code": "36.72.01.1001",
                      "cases": [case("a", "DAMKAR"), case("b", "POLRES"), case("c", None)]},
    "36.72.02.1001": {"scope": "KELURAHAN", "scope_code": "36.72.02.1001",
                      "cases": [case("d", "DAMKAR")]},
}


def test_a_kecamatan_account_sees_its_kecamatan_and_its_kelurahan_only() -> None:
    assert kecamatan_of("36.72.01.1001") == CIBEBER
    assert sorted(scoped_situations(CAMAT, SITUATIONS)) == [CIBEBER, "36.72.01.1001"]
    assert (sees_ward(CAMAT, "36.72.01.1002"), sees_ward(CAMAT, "36.72.02.1001")) == (True, False)
    assert scoped_situation(CAMAT, SITUATIONS["36.72.01.1001"]) == SITUATIONS["36.72.01.1001"]


def test_an_agency_account_sees_every_ward_but_only_its_agencys_cases() -> None:
    shown = scoped_situations(DAMKAR, SITUATIONS)
    assert sorted(shown) == sorted(SITUATIONS)
    assert {code: [c["incident_id"] for c in s.get("cases", [])] for code, s in shown.items()
            if s["scope"] == "KELURAHAN"} == {"36.72.01.1001": ["a"], "36.72.02.1001": ["d"]}
    assert len(SITUATIONS["36.72.01.1001"]["cases"]) == 3  # the board's copy is untouched


def test_an_unscoped_account_sees_everything_unchanged() -> None:
    assert scoped_situations(Scope(), SITUATIONS) == SITUATIONS
    assert (Scope().whole_city, Scope().key(), route_allowed(Scope(), "/api/sessions", None)) == (
        True, None, True)


def test_scoped_actions_are_refused_outside_what_the_account_answers_for() -> None:
    ours, theirs = case("a", "DAMKAR"), case("b", "POLRES")
    assert [action_problem(CAMAT, "36.72.01.1001", "ASSIGN", ours),
            action_problem(CAMAT, "36.72.01.1001", "ACKNOWLEDGE", None),
            action_problem(CAMAT, "36.72.02.1001", "NOTE", None),
            action_problem(DAMKAR, "36.72.02.1001", "CLOSE", ours),
            action_problem(DAMKAR, "36.72.02.1001", "NOTE", theirs),
            action_problem(DAMKAR, "36.72.02.1001", "ACKNOWLEDGE", None)] == [
        None, None, "this kelurahan is outside your kecamatan", None,
        "the case is not assigned to DAMKAR",
        "an account of DAMKAR acts on its agency's cases only"]


def test_scoped_accounts_reach_only_the_routes_made_for_them() -> None:
    assert [route_allowed(CAMAT, path, ward) for path, ward in (
        ("/api/situations", None), ("/api/situations/stream", None),
        ("/api/wards/36.72.01.1001", "36.72.01.1001"),
        ("/api/wards/36.72.02.1001", "36.72.02.1001"),
        ("/api/wards/36.72.02.1001/actions/note", "36.72.02.1001"),
        ("/api/neighbourhoods/36.72.02.1001", "36.72.02.1001"),
        ("/api/history/wards/36.72.01.1001/timeline", "36.72.01.1001"),
        ("/api/neighbourhoods", None), ("/api/history/situations", None),
        ("/api/history/cases", None), ("/api/reports/monthly", None), ("/api/sessions", None),
        ("/api/audit/sign-ins", None), ("/api/situationsX", None), ("/board/", None))] == [
        True, True, True, False, False, False, True,
        False, False, False, False, False, False, False, True]


def test_the_scope_key_round_trips_and_a_scope_change_ends_the_session() -> None:
    both = Scope.of("DAMKAR", [CILEGON, CIBEBER])
    assert (both.key(), Scope.parse(both.key()), Scope.parse(None)) == (
        "agency=DAMKAR;kecamatan=36.72.01,36.72.02", both, Scope())
    camat = Principal("siti", "OPERATOR", kecamatan=(CIBEBER,))
    book = SessionBook(absolute_s=100.0, idle_s=30.0)
    _, session, _ = book.open(camat, now=0.0, address="x")
    read = Session.from_record({**session.record()})  # another worker reads the record
    assert (scope_of(read.principal), read.principal) == (CAMAT, camat)
    same = account_now({"role": "OPERATOR", "kecamatan": [CIBEBER]})
    moved = account_now({"role": "OPERATOR", "kecamatan": [CILEGON]})
    freed = account_now({"role": "OPERATOR"})
    assert [why_ended(session, 1.0, 100.0, 30.0, *now) for now in (same, moved, freed)] == [
        None, "scope changed", "scope changed"]


def test_accounts_keep_their_scope_and_old_files_still_load(tmp_path: Path) -> None:
    path = tmp_path / "operators.json"
    accounts.add_operator("siti", "operator", "a long password", path,
                          kecamatan=[CILEGON, CIBEBER])
    accounts.add_operator("dani", "viewer", "a long password", path, agency="damkar")
    loaded = accounts.load(path)
    assert ({k: v for k, v in loaded.operators["siti"].items() if k in ("agency", "kecamatan")},
            loaded.operators["dani"]["agency"], "agency" in loaded.operators["siti"]) == (
        {"kecamatan": [CIBEBER, CILEGON]}, "DAMKAR", False)
    principal = loaded.verify_password("siti", "a long password")
    assert principal == Principal("siti", "OPERATOR", kecamatan=(CIBEBER, CILEGON))
    old = tmp_path / "old.json"  # a file written before scopes: no agency, no kecamatan
    old.write_text(f'{{"version": 1, "operators": {{"rina": {{"role": "VIEWER", "password": '
                   f'"{loaded.operators["dani"]["password"]}"}}}}, "tokens": {{}}}}')
    assert accounts.load(old).verify_password("rina", "a long password") == Principal(
        "rina", "VIEWER")
    old.write_text('{"version": 1, "operators": {"x": {"role": "VIEWER", "password": '
                   '"$argon2id$x", "kecamatan": "36.72.01"}}}')
    with pytest.raises(accounts.AccountError, match="scope"):
        accounts.load(old)


def test_cityops_operators_add_binds_an_account_and_refuses_unknown_scopes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import sys

    from cityops.cli import main

    path = str(tmp_path / "operators.json")

    def add(*extra: str) -> int:
        sys.stdin = io.StringIO("a long password\n")
        try:
            return main(["operators", "add", "siti", "--role", "operator", "--password-stdin",
                         "--file", path, *extra])
        finally:
            sys.stdin = sys.__stdin__
    assert [add("--agency", "SATPOL"), add("--kecamatan", "36.72.99"),
            add("--agency", "damkar", "--kecamatan", CILEGON, CIBEBER)] == [2, 2, 0]
    assert main(["operators", "list", "--file", path]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"operator siti (operator, agency DAMKAR, kecamatan {CIBEBER} {CILEGON}) saved in {path}",
        f"siti                             operator agency=DAMKAR kecamatan={CIBEBER},{CILEGON}"]
    assert [line.split(":")[1].strip() for line in err.splitlines()] == [
        "agency 'SATPOL'", "kecamatan 36.72.99"]
