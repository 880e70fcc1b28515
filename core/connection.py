"""How every Kafka client of the project connects: one leaf that every layer imports.

The worker (Faust and its aiokafka readers), the partner producer and the admin tools
(kafka-python) all read the same `CITYOPS_SECURITY_PROTOCOL` / `CITYOPS_SASL_*` environment
through here, so a principal set once applies to every client a command builds, and the
security setup in `cityops.security` (users, ACLs) sits above it instead of beside it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCRAM_MECHANISM = "SCRAM-SHA-512"
SASL_PLAINTEXT = "SASL_PLAINTEXT"

ENV_USERNAME = "CITYOPS_SASL_USERNAME"
ENV_PASSWORD = "CITYOPS_SASL_PASSWORD"
ENV_PROTOCOL = "CITYOPS_SECURITY_PROTOCOL"
ENV_MECHANISM = "CITYOPS_SASL_MECHANISM"

_SUPPORTED_PROTOCOLS = ("PLAINTEXT", SASL_PLAINTEXT)
_SUPPORTED_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class SecurityError(RuntimeError):
    """A security setting or operation is wrong; the message says what to change."""


@dataclass(frozen=True)
class ClientSecurity:
    """How one client authenticates; `username` is None for an unauthenticated listener."""

    protocol: str = SASL_PLAINTEXT
    mechanism: str = SCRAM_MECHANISM
    username: str | None = None
    password: str | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")


def client_security(env: Mapping[str, str] | None = None) -> ClientSecurity | None:
    """The security settings in the environment, or None when none is set (the plain broker)."""
    env = os.environ if env is None else env
    username = env.get(ENV_USERNAME) or None
    password = env.get(ENV_PASSWORD) or None
    protocol = env.get(ENV_PROTOCOL) or None
    mechanism = env.get(ENV_MECHANISM) or SCRAM_MECHANISM
    if username is None and password is None and protocol is None:
        return None
    protocol = (protocol or SASL_PLAINTEXT).upper()
    if protocol not in _SUPPORTED_PROTOCOLS:
        raise SecurityError(f"{ENV_PROTOCOL}={protocol} is not supported; use one of "
                            f"{', '.join(_SUPPORTED_PROTOCOLS)} (TLS is not wired in yet)")
    if mechanism not in _SUPPORTED_MECHANISMS:
        raise SecurityError(f"{ENV_MECHANISM}={mechanism} is not supported; use one of "
                            f"{', '.join(_SUPPORTED_MECHANISMS)}")
    if protocol.startswith("SASL_") and (username is None or password is None):
        raise SecurityError(f"{protocol} needs both {ENV_USERNAME} and {ENV_PASSWORD}")
    return ClientSecurity(protocol, mechanism, username, password)


def scram_client_config(username: str, password: str,
                        mechanism: str = SCRAM_MECHANISM) -> dict[str, str]:
    """kafka-python / aiokafka settings for one SCRAM principal (both libraries use these keys)."""
    return {
        "security_protocol": SASL_PLAINTEXT,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": username,
        "sasl_plain_password": password,
    }


def _client_config(security: ClientSecurity | None) -> dict[str, str]:
    if security is None:
        return {}
    if not security.sasl:
        return {"security_protocol": security.protocol}
    assert security.username is not None and security.password is not None
    return scram_client_config(security.username, security.password, security.mechanism)


def kafka_python_security(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Keyword arguments for kafka-python clients; empty when the environment sets nothing."""
    return _client_config(client_security(env))


def aiokafka_security(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Keyword arguments for aiokafka clients; empty when the environment sets nothing."""
    return _client_config(client_security(env))


def faust_credentials(env: Mapping[str, str] | None = None) -> Any:
    """`broker_credentials` for `faust.App`: a `faust.SASLCredentials`, or None (plain broker).

    Faust hands these to every client it builds (consumer, producer, topic creation), which is
    why the worker needs no other security setting besides the reference views' own reader.
    """
    security = client_security(env)
    if security is None or not security.sasl:
        return None
    import faust

    return faust.SASLCredentials(username=security.username, password=security.password,
                                 mechanism=security.mechanism)
