"""Operator accounts and API tokens of the situation board: one JSON file, passwords hashed.

Why a file and not a Kafka topic: accounts are few, change by hand (`cityops operators add`),
and must be readable before any broker is reachable; every worker that serves the board reads
the same file (re-read when it changes). Passwords are stored only as Argon2id hashes
(argon2-cffi, the reference implementation's bindings, with its RFC 9106 low-memory profile);
API tokens only as SHA-256 digests: a token is 32 random bytes, so a fast hash is enough, and a
stolen file gives neither passwords nor tokens.

File (mode 0600)::

    {"version": 1,
     "operators": {"rina": {"role": "OPERATOR", "password": "$argon2id$v=19$...",
                            "totp": "<base32>", "recovery": ["<sha256 hex>", ...]}},
     "tokens": {"grafana": {"role": "VIEWER", "sha256": "<hex>"}}}

Issue 24 adds the second factor: `totp` is the account's RFC 6238 secret (it must be readable
to check a code, so it is kept like the password file itself: mode 0600, one owner), set once
the operator confirmed it with a code (`totp_pending` until then); `recovery` the SHA-256
digests of the account's unused recovery codes (10 random codes of 120 bits each, shown once).
Issue 24 part 4 adds the account's scope: `agency` (one of processors/thresholds.py AGENCIES)
and `kecamatan` (a list of kecamatan codes); an account with neither sees the whole city
(processors/scopes.py decides what a scoped one sees). All of these are optional, so a file
written before issue 24 loads unchanged. Workers write the
file too (enrolment, a used recovery code): every read-modify-write holds an exclusive lock
(`locked`), so two workers never lose each other's change.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyotp
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


#: RFC 6238 defaults, what every authenticator app uses: 30 s steps, 6 digits, SHA-1.
TOTP_STEP_S: Final = 30
#: Steps either side of now a code is accepted from (a phone's clock a little off).
TOTP_WINDOW: Final = 1
RECOVERY_CODES: Final = 10
#: Roles that must give a second factor, every role that acts (a village_staff reviewer's
#: decisions are audited actions too); a viewer too when the deployment asks
#: (`CITYOPS_BOARD_VIEWER_2FA=1`).
SECOND_FACTOR_ROLES: Final = frozenset({"OPERATOR", "SUPERVISOR", "VILLAGE_STAFF"})


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
    agency: str | None = None
    """The agency the account answers for (None: every agency)."""
    kecamatan: tuple[str, ...] = ()
    """The kecamatan codes the account answers for (empty: the whole city)."""
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
        return principal_of(name, record)

    def needs_second_factor(self, name: str, viewers_too: bool = False) -> bool:
        record = self.operators.get(name)
        if record is None:
            return False
        return record["role"] in SECOND_FACTOR_ROLES or (viewers_too
                                                         and record["role"] == "VIEWER")

    def totp_secret(self, name: str) -> str | None:
        """The account's confirmed TOTP secret (None: not enrolled yet)."""
        record = self.operators.get(name) or {}
        return str(record["totp"]) if record.get("totp") else None

    def token_principal(self, token: str) -> Principal | None:
        """The API consumer a bearer token belongs to, compared in constant time."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        found = None
        for name, record in self.tokens.items():
            if hmac.compare_digest(record["sha256"], digest):
                found = Principal(name, record["role"], "token")
        return found


def principal_of(name: str, record: Mapping[str, Any]) -> Principal:
    """The operator an accounts-file record describes, scope included."""
    return Principal(name, str(record["role"]), "operator", agency=record.get("agency") or None,
                     kecamatan=tuple(sorted(record.get("kecamatan") or ())),
                     kelurahan=tuple(str(code) for code in record.get("kelurahan") or ()))


def scope_fields(record: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """(agency, kecamatan codes) of an accounts-file record; what a session compares."""
    return record.get("agency") or None, tuple(sorted(record.get("kecamatan") or ()))


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
    raw = read_private_json(path, "accounts file")
    if raw is None:
        return Accounts()
    accounts = Accounts(dict(raw.get("operators", {})), dict(raw.get("tokens", {})))
    for name, record in accounts.operators.items():
        if record.get("role") not in ROLES or not str(record.get("password", "")).startswith(
                "$argon2"):
            raise AccountError(f"accounts file {path}: operator {name!r} has no valid role "
                               "and Argon2 hash")
        agency: Any = record.get("agency")
        kecamatan: Any = record.get("kecamatan", [])
        if (agency is not None and not isinstance(agency, str)) or not (
                isinstance(kecamatan, list) and all(isinstance(c, str) for c in kecamatan)):
            raise AccountError(f"accounts file {path}: operator {name!r} has a scope that is "
                               "not an agency name and a list of kecamatan codes")
    return accounts


def read_private_json(path: Path, kind: str) -> Mapping[str, Any] | None:
    """A version-1 JSON file written by `write_private_json` (None: there is none yet); an
    unreadable or foreign file is an AccountError naming `kind` and the path."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise AccountError(f"{kind} {path}: {error}") from error
    if not isinstance(raw, Mapping) or raw.get("version") != 1:
        raise AccountError(f"{kind} {path}: not a version-1 {kind}")
    return raw


def write_private_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write a JSON file atomically, readable by its owner only (accounts, partner tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


def save(accounts: Accounts, path: Path | None = None) -> None:
    """Write the file atomically, readable by its owner only."""
    write_private_json(path or default_path(), accounts.to_json())


def add_operator(name: str, role: str, password: str, path: Path | None = None, *,
                 agency: str | None = None, kecamatan: Iterable[str] = (),
                 kelurahan: Iterable[str] = ()) -> None:
    """Create or replace an operator account (the password is hashed, never stored). A
    replaced account keeps its second factor: a role change is not a new person. `agency` and
    `kecamatan` bind it to what it answers for (checked against the reference lists by the
    CLI, which may import them); `kelurahan` are the codes a VILLAGE_STAFF account reviews."""
    hashed = _HASHER.hash(check_password(password))
    scope: dict[str, Any] = {}
    if agency:
        scope["agency"] = agency.upper()
    codes = sorted(set(kecamatan))
    if codes:
        scope["kecamatan"] = codes
    reviewed = list(dict.fromkeys(kelurahan))
    if reviewed:
        scope["kelurahan"] = reviewed
    with locked(path) as held:
        accounts = load(held)
        kept = {key: value for key, value in accounts.operators.get(name, {}).items()
                if key in ("totp", "recovery")}
        accounts.operators[check_name(name)] = {
            "role": check_role(role), "password": hashed, **kept, **scope}
        save(accounts, held)


def remove(name: str, path: Path | None = None) -> bool:
    """Remove an operator or a token by name; False when there was none."""
    with locked(path) as held:
        accounts = load(held)
        found = accounts.operators.pop(name, None) is not None
        found = accounts.tokens.pop(name, None) is not None or found
        save(accounts, held)
        return found


@contextlib.contextmanager
def locked(path: Path | None = None) -> Iterator[Path]:
    """Hold the accounts file's exclusive lock (a `.lock` file beside it) for one
    read-modify-write: the CLI and every worker take it."""
    path = path or default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield path
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def totp_step(secret: str, code: str, now: float, last_step: int | None) -> int | None:
    """The time step a TOTP code is right for, within `TOTP_WINDOW` steps of `now`, and later
    than `last_step` (a code used once is refused: RFC 6238 section 5.2); None otherwise."""
    code = code.strip().replace(" ", "")
    if not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(secret, interval=TOTP_STEP_S)
    now_step = int(now // TOTP_STEP_S)
    found = None
    for step in range(now_step - TOTP_WINDOW, now_step + TOTP_WINDOW + 1):
        if hmac.compare_digest(totp.at(step * TOTP_STEP_S), code) and (
                last_step is None or step > last_step):
            found = step
    return found


def recovery_digest(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace("-", "").encode()).hexdigest()


def begin_enrolment(name: str, path: Path | None = None) -> str:
    """A new TOTP secret for `name`, kept pending until a code confirms it (a sign-in on the
    board); the secret a pending enrolment already has is returned again."""
    with locked(path) as held:
        accounts = load(held)
        record = accounts.operators[name]
        if not record.get("totp_pending"):
            record["totp_pending"] = pyotp.random_base32()
            save(accounts, held)
        return str(record["totp_pending"])


def confirm_enrolment(name: str, code: str, now: float,
                      path: Path | None = None) -> tuple[int, list[str]] | None:
    """Confirm the pending secret with a code: it becomes the account's second factor and 10
    new recovery codes are made (returned once, stored as digests); None for a wrong code."""
    with locked(path) as held:
        accounts = load(held)
        record = accounts.operators[name]
        pending = record.get("totp_pending")
        step = totp_step(str(pending), code, now, None) if pending else None
        if step is None:
            return None
        codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
        record["totp"] = str(pending)
        del record["totp_pending"]
        record["recovery"] = [recovery_digest(c) for c in codes]
        save(accounts, held)
        return step, codes


def set_totp(name: str, secret: str, path: Path | None = None) -> None:
    """Enrol `name` with a known secret (the demo's supervisor, whose secret is printed)."""
    with locked(path) as held:
        accounts = load(held)
        accounts.operators[name]["totp"] = secret
        save(accounts, held)


def use_recovery_code(name: str, code: str, path: Path | None = None) -> bool:
    """True, and the code is spent, when it is one of the account's unused recovery codes."""
    digest = recovery_digest(code)
    with locked(path) as held:
        accounts = load(held)
        record = accounts.operators.get(name)
        stored = list(record.get("recovery") or []) if record else []
        match = next((d for d in stored if hmac.compare_digest(d, digest)), None)
        if record is None or match is None:
            return False
        stored.remove(match)
        record["recovery"] = stored
        save(accounts, held)
        return True


def _recovery_code() -> str:
    """"k3f9-q2mz-xw7a-...": 120 random bits in base32 (lower case), six groups of four. At
    112 bits or more ASVS 5.0 6.5.2 allows a plain hash (SHA-256) for a lookup secret; a short
    code would need a salted password hash."""
    raw = base64.b32encode(secrets.token_bytes(15)).decode().lower()
    return "-".join(raw[i:i + 4] for i in range(0, 24, 4))


def add_token(name: str, path: Path | None = None) -> str:
    """Create or replace an API consumer's token; returns the token (shown once). Tokens read
    (the JSON API and the live stream) and never act: an action needs a signed-in operator."""
    token = secrets.token_urlsafe(32)
    accounts = load(path)
    accounts.tokens[check_name(name)] = {
        "role": "VIEWER", "sha256": hashlib.sha256(token.encode()).hexdigest()}
    save(accounts, path)
    return token
