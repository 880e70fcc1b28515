"""Partner API tokens of the HTTP ingestion gateway: each token is bound to one partner principal.

Why not the board's API tokens (`core.accounts`): those read situations and never write; a
partner token writes, and only what its principal may write on a secured broker
(`cityops.security.PARTNER_TOPICS`: the citizen app's token writes citizen incidents, never a
POLICE one). Why a file of its own: the gateway then holds no operator password hashes, and
the workers none of the partners' tokens. Tokens are 32 random bytes stored as SHA-256
digests, like the board's, so a stolen file gives no token.

File (mode 0600)::

    {"version": 1, "tokens": {"<sha256 hex>": {"partner": "partner-police", "name": "police-cad"}}}
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from core.accounts import AccountError, check_name, read_private_json, write_private_json
from core.paths import var_dir

FILE_VARIABLE: Final = "CITYOPS_PARTNER_TOKENS_FILE"
#: Longest Authorization value looked at: a token is 43 characters; anything far longer is not
#: one and is not hashed.
MAX_TOKEN_CHARS: Final = 256


def default_path() -> Path:
    """`CITYOPS_PARTNER_TOKENS_FILE`, else `var/partner-tokens.json`."""
    configured = os.environ.get(FILE_VARIABLE)
    return Path(configured) if configured else var_dir() / "partner-tokens.json"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class PartnerToken:
    """Whom a token acts for: `partner` is the principal (its topic), `name` the token's label."""

    partner: str
    name: str


class PartnerTokens:
    """The parsed file; lookups by digest (the token is random, so nothing leaks by timing)."""

    def __init__(self, by_digest: Mapping[str, PartnerToken] | None = None) -> None:
        self.by_digest: dict[str, PartnerToken] = dict(by_digest or {})

    def lookup(self, token: str) -> PartnerToken | None:
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        return self.by_digest.get(digest(token))

    def to_json(self) -> dict[str, object]:
        return {"version": 1, "tokens": {
            key: {"partner": value.partner, "name": value.name}
            for key, value in sorted(self.by_digest.items())}}


def load(path: Path | None = None) -> PartnerTokens:
    """The tokens file; no tokens when there is none yet."""
    path = path or default_path()
    raw = read_private_json(path, "partner tokens file")
    if raw is None:
        return PartnerTokens()
    tokens = {}
    for key, record in dict(raw.get("tokens", {})).items():
        if not isinstance(record, Mapping) or not isinstance(record.get("partner"), str):
            raise AccountError(f"partner tokens file {path}: entry {key[:8]}... has no partner")
        tokens[key] = PartnerToken(record["partner"], str(record.get("name", "")))
    return PartnerTokens(tokens)


def add(partner: str, name: str, partners: Mapping[str, object],
        path: Path | None = None) -> str:
    """Create a token for `partner` (one of `partners`, the principals that may write) labelled
    `name`, replacing the token of the same label; returns the token (shown once)."""
    if partner not in partners:
        raise AccountError(f"partner {partner!r}: one of {', '.join(sorted(partners))}")
    check_name(name)
    tokens = load(path)
    for key, value in list(tokens.by_digest.items()):
        if value.name == name:
            del tokens.by_digest[key]
    token = secrets.token_urlsafe(32)
    tokens.by_digest[digest(token)] = PartnerToken(partner, name)
    write_private_json(path or default_path(), tokens.to_json())
    return token


class ReloadingTokens:
    """The tokens file, read again when it changed (checked at most every `interval_s`), so a
    token added with `cityops gateway token` works on a running gateway within seconds and a
    removed one stops working. A file that cannot be read keeps the last good tokens."""

    def __init__(self, path: Path | None = None, interval_s: float = 2.0) -> None:
        self.path = path or default_path()
        self.interval_s = interval_s
        self._checked = float("-inf")
        self._stamp: tuple[int, int] | None = None
        self._tokens = PartnerTokens()
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        import time

        now = time.monotonic()
        if not force and now - self._checked < self.interval_s:
            return
        self._checked = now
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp and not force:
            return
        try:
            self._tokens = load(self.path)
            self._stamp = stamp
        except AccountError:
            if force:
                raise

    def lookup(self, token: str) -> PartnerToken | None:
        self._refresh()
        return self._tokens.lookup(token)
