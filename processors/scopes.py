"""What an account is responsible for, and what it may see and act on (issue 24, part 4).

An account may be bound to one agency (a field officer of DAMKAR sees the cases assigned to
DAMKAR and acts only on them) and to one or more kecamatan (a camat's staff see and act on
their kecamatan's kelurahan only). An account bound to neither sees the whole city, as before.
Pure decisions, so every route (`streams/auth.py`, `streams/web.py`, `streams/operator_web.py`)
and the live stream ask the same questions and the unit tests pin the answers.

Kelurahan codes are Kemendagri codes whose first three parts are the kecamatan's
("36.72.01.1001" lies in "36.72.01"), so no table is needed to place a ward in its kecamatan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

#: Routes a scoped account may call; every other `/api/` route answers it 403, so a route
#: added later stays closed to scoped accounts until someone decides what it may show them.
#: `{code}` routes are checked against the kelurahan in the path.
SCOPED_ROUTES: Final[tuple[str, ...]] = (
    "/api/me", "/api/situations", "/api/situations/stream", "/api/wards/",
    "/api/actions/", "/api/neighbourhoods/", "/api/history/wards/", "/api/audit",
)
#: Actions on a ward rather than a case: an agency account takes none of them.
WARD_ACTIONS: Final = frozenset({"ACKNOWLEDGE"})


@dataclass(frozen=True, slots=True)
class Scope:
    """An account's responsibility: None/empty is the whole city."""

    agency: str | None = None
    kecamatan: frozenset[str] = frozenset()

    @property
    def whole_city(self) -> bool:
        return self.agency is None and not self.kecamatan

    def key(self) -> str | None:
        """The scope as one canonical text (kept with each session: a session whose account's
        scope changed since sign-in is ended, like a role change); None for the whole city."""
        if self.whole_city:
            return None
        return f"agency={self.agency or ''};kecamatan={','.join(sorted(self.kecamatan))}"

    @classmethod
    def parse(cls, key: str | None) -> Scope:
        if not key:
            return cls()
        parts = dict(part.split("=", 1) for part in key.split(";") if "=" in part)
        return cls(parts.get("agency") or None,
                   frozenset(c for c in parts.get("kecamatan", "").split(",") if c))

    @classmethod
    def of(cls, agency: str | None, kecamatan: Iterable[str]) -> Scope:
        return cls(agency or None, frozenset(kecamatan))


def kecamatan_of(code: str) -> str:
    """The kecamatan code of a kelurahan code ("36.72.01.1001" -> "36.72.01")."""
    return code.rsplit(".", 1)[0] if code.count(".") == 3 else code


def sees_ward(scope: Scope, code: str) -> bool:
    """May the account see (and act in) this kelurahan at all."""
    return not scope.kecamatan or kecamatan_of(code) in scope.kecamatan


def sees_situation(scope: Scope, situation: Mapping[str, Any]) -> bool:
    """City situations sum every kecamatan: a kecamatan-bound account does not see them; a
    kecamatan's situation only its own kecamatan; a kelurahan's as `sees_ward`."""
    if not scope.kecamatan:
        return True
    kind, code = situation.get("scope"), str(situation.get("scope_code", ""))
    if kind == "CITY":
        return False
    if kind == "KECAMATAN":
        return code in scope.kecamatan
    return sees_ward(scope, code)


def sees_case(scope: Scope, case: Mapping[str, Any]) -> bool:
    """An agency account sees the cases assigned to its agency only."""
    return scope.agency is None or case.get("assigned_agency") == scope.agency


def scoped_situation(scope: Scope, situation: Mapping[str, Any]) -> dict[str, Any] | None:
    """The situation as the account may see it: None when it may not, else with only the
    cases it may see (the level and its reasons stay: they say what the ward needs)."""
    if not sees_situation(scope, situation):
        return None
    shown = dict(situation)
    if scope.agency is not None and isinstance(situation.get("cases"), list):
        shown["cases"] = [case for case in situation["cases"] if sees_case(scope, case)]
    return shown


def scoped_situations(scope: Scope, situations: Mapping[str, Mapping[str, Any]]
                      ) -> dict[str, Mapping[str, Any]]:
    if scope.whole_city:
        return dict(situations)
    shown = {key: scoped_situation(scope, value) for key, value in situations.items()}
    return {key: value for key, value in shown.items() if value is not None}


def route_allowed(scope: Scope, path: str, ward_code: str | None) -> bool:
    """May a scoped account call this API route (`ward_code`: the kelurahan in the path)."""
    if scope.whole_city or not path.startswith("/api/"):
        return True
    if not any(path == route or (route.endswith("/") and path.startswith(route))
               for route in SCOPED_ROUTES):
        return False
    return ward_code is None or sees_ward(scope, ward_code)


def action_problem(scope: Scope, code: str, kind: str,
                   case: Mapping[str, Any] | None) -> str | None:
    """Why a scoped account may not take this action (None: it may). `case` is the case the
    action names (None: a ward-level action)."""
    if not sees_ward(scope, code):
        return "this kelurahan is outside your kecamatan"
    if scope.agency is not None:
        if case is None:
            return f"an account of {scope.agency} acts on its agency's cases only"
        if not sees_case(scope, case):
            return f"the case is not assigned to {scope.agency}"
    return None
