"""Operator accounts and API tokens of the situation board: one JSON file, passwords hashed.

Why a file and not a Kafka topic: accounts are few, change by hand (`cityops operators add`),
and must be readable before any broker is reachable; every worker that serves the board reads
the same file (re-read when it changes). Passwords are stored only as Argon2id hashes
(argon2-cffi, the reference implementation's bindings, with its RFC 9106 low-memory profile);
API tokens only as SHA-256 digests: a token is 32 random bytes, so a fast hash is enough, and a
stolen file gives neither passwords nor tokens.

File (mode 0600)::

    {"version": 1,
     "operators": {"rina": {"role": "OPERATOR", "password": "$argon2id$v=19$..."}},
     "tokens": {"grafana": {"role": "VIEWER", "sha256": "<hex>"}}}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from core.paths import var_dir

FILE_VARIABLE: Final = "CITYOPS_OPERATORS_FILE"
ROLES: Final[tuple[str, ...]] = ("VIEWER", "OPERATOR", "SUPERVISOR", "VILLAGE_STAFF")
"""VILLAGE_STAFF (issue 23): a kelurahan's staff, who review its RT reports (the kelurahan
codes in the account's optional "kelurahan" list); they see the board as a viewer."""
NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")
MIN_PASSWORD_LENGTH: Final = 10
#: Largest password accepted: Argon2 takes any length, but hashing megabytes per sign-in
#: attempt would be a cheap way to load the worker.
MAX_PASSWORD_LENGTH: Final = 256

_HASHER: Final = PasswordHasher()
#: Verified against when the name is unknown, so a wrong name costs as long as a wrong password
#: (no account enumeration by timing).
_DUMMY_HASH: Final = _HASHER.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A name, role, password or accounts file that cannot be used; the message says why."""


def default_path() -> Path:
    """`CITYOPS_OPERATORS_FILE`, else `var/operators.json`."""
    configured = os.environ.get(FILE_VARIABLE)
    return Path(configured) if configured else var_dir() / "operators.json"


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: an operator (signed in) or an API consumer (a token)."""

    name: str
    role: str
    kind: str = "operator"
    """operator or token."""
    kelurahan: tuple[str, ...] = ()
    """Kelurahan codes whose RT reports a VILLAGE_STAFF account reviews."""


@dataclass
class Accounts:
    """The parsed file."""

    operators: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "operators": self.operators, "tokens": self.tokens}

    def verify_password(self, name: str, password: str) -> Principal | None:
        """The operator when `password` is theirs; None otherwise (same cost either way)."""
        record = self.operators.get(name)
        stored = record["password"] if record else _DUMMY_HASH
        if len(password) > MAX_PASSWORD_LENGTH:
            return None
        try:
            _HASHER.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if record is None:
            return None
        return Principal(name, record["role"], "operator",
                         tuple(str(code) for code in record.get("kelurahan", ())))

    def token_principal(self, token: str) -> Principal | None:
        """The API consumer a bearer token belongs to, compared in constant time."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        found = None
        for name, record in self.tokens.items():
            if hmac.compare_digest(record["sha256"], digest):
                found = Principal(name, record["role"], "token")
        return found


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise AccountError(f"name {name!r}: 2-32 characters, lower-case letters, digits, '.', "
                           "'_' or '-', starting with a letter or digit")
    return name


def check_role(role: str) -> str:
    upper = role.upper()
    if upper not in ROLES:
        raise AccountError(f"role {role!r}: one of {', '.join(r.lower() for r in ROLES)}")
    return upper


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"password: at most {MAX_PASSWORD_LENGTH} characters")
    return password


def load(path: Path | None = None) -> Accounts:
    """The accounts file; an empty set of accounts when there is none yet."""
    path = path or default_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Accounts()
    except (OSError, ValueError) as error:
        raise AccountError(f"accounts file {path}: {error}") from error
    if not isinstance(raw, Mapping) or raw.get("version") != 1:
        raise AccountError(f"accounts file {path}: not a version-1 accounts file")
    accounts = Accounts(dict(raw.get("operators", {})), dict(raw.get("tokens", {})))
    for name, record in accounts.operators.items():
        if record.get("role") not in ROLES or not str(record.get("password", "")).startswith(
                "$argon2"):
            raise AccountError(f"accounts file {path}: operator {name!r} has no valid role "
                               "and Argon2 hash")
    return accounts


def save(accounts: Accounts, path: Path | None = None) -> None:
    """Write the file atomically, readable by its owner only."""
    path = path or default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(accounts.to_json(), handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


def add_operator(name: str, role: str, password: str, path: Path | None = None,
                 kelurahan: tuple[str, ...] = ()) -> None:
    """Create or replace an operator account (the password is hashed, never stored);
    `kelurahan` are the codes a VILLAGE_STAFF account reviews."""
    accounts = load(path)
    record: dict[str, Any] = {
        "role": check_role(role), "password": _HASHER.hash(check_password(password))}
    if kelurahan:
        record["kelurahan"] = list(kelurahan)
    accounts.operators[check_name(name)] = record
    save(accounts, path)


def remove(name: str, path: Path | None = None) -> bool:
    """Remove an operator or a token by name; False when there was none."""
    accounts = load(path)
    found = accounts.operators.pop(name, None) is not None
    found = accounts.tokens.pop(name, None) is not None or found
    save(accounts, path)
    return found


def add_token(name: str, path: Path | None = None) -> str:
    """Create or replace an API consumer's token; returns the token (shown once). Tokens read
    (the JSON API and the live stream) and never act: an action needs a signed-in operator."""
    token = secrets.token_urlsafe(32)
    accounts = load(path)
    accounts.tokens[check_name(name)] = {
        "role": "VIEWER", "sha256": hashlib.sha256(token.encode()).hexdigest()}
    save(accounts, path)
    return token
