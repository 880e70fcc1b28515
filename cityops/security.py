"""Who may do what on the city's Kafka: SCRAM users, ACLs and the client settings that use them.

Partner systems share one cluster but must never write into each other's topics (a lighting
vendor's bug, or a compromised citizen app, must not be able to inject police incidents), and
command-center screens must only see situations, never raw reports with reporter details. Kafka
enforces that when the broker authenticates every connection (SASL/SCRAM-SHA-512) and runs
`StandardAuthorizer` with deny-by-default; this module holds the three halves of that setup:

* the broker side: listener and authorizer properties for `cityops broker start --secure`;
* the operator side: one password per principal, generated into an ignored file, and
  `setup()`, which creates the SCRAM users and the ACLs, all derived from the topic catalog so
  a `CITYOPS_TOPIC_PREFIX` namespace gets exactly the same rules as production;
* the client side, `principal_env()`: the environment that makes a command act as one
  principal; the settings clients build from it are in `core.connection`, the leaf every layer
  imports.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.connection import (
    ENV_MECHANISM,
    ENV_PASSWORD,
    ENV_PROTOCOL,
    ENV_USERNAME,
    SASL_PLAINTEXT,
    SCRAM_MECHANISM,
    SecurityError,
    scram_client_config,
)
from core.paths import var_dir
from streams.runtime.batch_hop import hop_group
from topics import catalog
from topics.catalog import TopicCatalog
from topics.event_types import INCIDENT, LIGHTING, WASTE

#: The broker's own principal and the only super user: it formats storage, authenticates the
#: broker to its controller and is the operator's identity for topic and ACL administration.
ADMIN = "admin"
WORKER = "cityops-worker"
COMMAND_CENTER = "command-center"
#: Publishes the compacted reference topics (wards, asset registry).
REFERENCE_PUBLISHER = "cityops-reference"
#: The partners' HTTP gateway (docs/gateway.md): writes each partner topic for the partner whose
#: token it checked, and reads and writes its receipts.
GATEWAY = "cityops-gateway"

#: Incident partner principal -> the `source_system` it is. Its topic is the one the event-type
#: catalog binds to that source, so the topic a record was read from is who wrote it (issue 12).
PARTNER_SOURCES: dict[str, str] = {
    "partner-police": "POLICE",
    "partner-112": "CALL_CENTER_112",
    "partner-citizen-app": "CITIZEN_APP",
}

#: Partner principal -> the one input topic it may write. No partner may write the shared
#: `city.incidents.v1`: it stays for the transition on unsecured setups only (docs/security.md).
PARTNER_TOPICS: dict[str, catalog.TopicSpec] = {
    **{principal: INCIDENT.input_for_source(source)
       for principal, source in PARTNER_SOURCES.items()},
    "partner-lighting": LIGHTING.shared_input,
    "partner-waste": WASTE.shared_input,
    #: The RT heads' reporting app (issue 13, docs/smart-village.md).
    "partner-rt-reports": catalog.RT_REPORTS,
}

PRINCIPALS: tuple[str, ...] = (
    ADMIN, *PARTNER_TOPICS, WORKER, COMMAND_CENTER, REFERENCE_PUBLISHER, GATEWAY,
)

#: Consumer groups of command-center applications start with this (a prefixed ACL).
COMMAND_CENTER_GROUP_PREFIX = "command-center"

# --- client side --------------------------------------------------------------------------------


def principal_env(username: str, password: str) -> dict[str, str]:
    """The environment that makes any `cityops` command act as this principal."""
    return {
        ENV_PROTOCOL: SASL_PLAINTEXT,
        ENV_MECHANISM: SCRAM_MECHANISM,
        ENV_USERNAME: username,
        ENV_PASSWORD: password,
    }


# --- passwords ----------------------------------------------------------------------------------


def credentials_path() -> Path:
    """In the ignored runtime folder: passwords are generated per installation, never committed."""
    return var_dir() / "security" / "credentials.json"


def load_credentials(path: Path | None = None) -> dict[str, str]:
    """Principal -> password, as written by `ensure_credentials`."""
    path = path or credentials_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise SecurityError(f"no credentials in {path}: run `cityops broker start --secure` "
                            "or `cityops security setup` first") from error
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in users.items()
    ):
        raise SecurityError(f"{path}: expected {{\"users\": {{name: password}}}}")
    return dict(users)


def ensure_credentials(path: Path | None = None,
                       principals: Sequence[str] = PRINCIPALS) -> dict[str, str]:
    """Load the passwords, generating any missing one; existing passwords are never replaced.

    Replacing the admin password would lock the broker out of itself: its SCRAM credential was
    written into the metadata log when storage was formatted.
    """
    path = path or credentials_path()
    users = load_credentials(path) if path.exists() else {}
    missing = [name for name in principals if name not in users]
    if missing or not path.exists():
        for name in missing:
            users[name] = secrets.token_urlsafe(24)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        temporary = path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump({"mechanism": SCRAM_MECHANISM, "users": users}, handle, indent=2,
                      sort_keys=True)
            handle.write("\n")
        temporary.replace(path)
    return users


def admin_client_config(path: Path | None = None) -> dict[str, str]:
    """kafka-python settings for the admin principal, from the credentials file."""
    return scram_client_config(ADMIN, load_credentials(path)[ADMIN])


# --- broker side --------------------------------------------------------------------------------


def broker_listener_properties(port: int, controller_port: int, admin_password: str) -> list[str]:
    """Listener, SASL and authorizer lines of a secured single-node KRaft server.properties.

    Clients and the broker itself use SCRAM-SHA-512 on the loopback client listener. The
    controller listener uses SASL/PLAIN with one static user (the broker): KRaft cannot use
    SCRAM there (SCRAM users live in the metadata the controller serves), and a PLAINTEXT
    controller listener would authenticate as User:ANONYMOUS, which then has to be a super
    user -- anyone reaching the controller port could change ACLs. Deny by default.
    """
    plain_jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN}" password="{admin_password}" user_{ADMIN}="{admin_password}";'
    )
    scram_jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{admin_password}";'
    )
    return [
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=SASL_PLAINTEXT",
        "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}",
        f"listener.name.sasl_plaintext.{SCRAM_MECHANISM.lower()}.sasl.jaas.config={scram_jaas}",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f"listener.name.controller.plain.sasl.jaas.config={plain_jaas}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        f"super.users=User:{ADMIN}",
    ]


def format_scram_arguments(admin_password: str) -> list[str]:
    """StorageTool arguments that create the admin user before the broker's first start."""
    return ["--add-scram", f"{SCRAM_MECHANISM}=[name={ADMIN},password={admin_password}]"]


# --- the ACL plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One ALLOW rule: principal may do `operations` on a resource (from any host)."""

    principal: str
    resource_type: str  # TOPIC | GROUP | CLUSTER
    resource_name: str
    pattern: str  # LITERAL | PREFIXED
    operations: tuple[str, ...]

    def describe(self) -> str:
        name = self.resource_name + ("*" if self.pattern == "PREFIXED" else "")
        return (f"User:{self.principal:20} {'+'.join(self.operations):18} "
                f"{self.resource_type.lower():5} {name}")


def acl_plan(app_id: str, command_center_group_prefix: str = COMMAND_CENTER_GROUP_PREFIX,
             topics: TopicCatalog | None = None) -> list[Grant]:
    """Every ACL of the city, from the catalog's (possibly prefixed) topic names.

    Partners get Write + Describe on their own input topic only: an incident partner its
    source's topic, so its records are read as that source and no other. kafka-python 3
    producers are idempotent by default and need no IdempotentWrite on the cluster: since Kafka 3.0
    (KIP-679) InitProducerId is allowed to a principal with Write on any topic -- verified on
    Kafka 4.1.1. Read implies Describe, so readers get Read alone.
    """
    deployed = topics if topics is not None else TopicCatalog.from_env()

    def _topic(principal: str, spec: catalog.TopicSpec, *operations: str) -> Grant:
        return Grant(principal, "TOPIC", deployed.name(spec), "LITERAL", operations)

    grants: list[Grant] = []
    for principal, spec in PARTNER_TOPICS.items():
        grants.append(_topic(principal, spec, "WRITE", "DESCRIBE"))
    for spec in catalog.CATALOG:
        if spec.role == catalog.Role.REFERENCE:
            grants.append(_topic(REFERENCE_PUBLISHER, spec, "WRITE", "DESCRIBE"))

    # The worker reads every partner input (the shared incident topic included: it subscribes
    # to it, and no partner may write it on a secured broker), its own enriched topics (the
    # repartition step), every reference view and its outputs (situations are read back as a
    # view); it writes enriched topics, outputs and dead letters. By role, so a topic added to
    # the catalog gets its grants without a line here.
    read_roles = {catalog.Role.INPUT, catalog.Role.ENRICHED, catalog.Role.REFERENCE,
                  catalog.Role.OUTPUT}
    written_roles = {catalog.Role.ENRICHED, catalog.Role.OUTPUT, catalog.Role.DEAD_LETTER}
    for spec in catalog.CATALOG:
        if spec is catalog.GATEWAY_RECEIPTS:  # the gateway's alone
            continue
        operations = tuple(op for op, wanted in (("READ", spec.role in read_roles),
                                                 ("WRITE", spec.role in written_roles))
                           if wanted)
        if operations:
            grants.append(_topic(WORKER, spec, *operations))
    # Faust's own topics (table changelogs, the leader-assignor topic) are named
    # `<app id>-...` and created by the worker on first start. Faust skips creating topics
    # that already exist, so the catalog topics need no Create. Verified on Kafka 4.1.1: a
    # worker with exactly these rules starts and processes with no denial in the broker log.
    grants.append(Grant(WORKER, "TOPIC", f"{app_id}-", "PREFIXED",
                        ("CREATE", "READ", "WRITE")))
    grants.append(Grant(WORKER, "GROUP", app_id, "LITERAL", ("READ",)))
    # The batch hop's group (partner topics), and its start from the Faust group's offsets.
    grants.append(Grant(WORKER, "GROUP", hop_group(app_id), "LITERAL", ("READ",)))

    # The gateway writes for the partners whose tokens it checked (the token is bound to the
    # same PARTNER_TOPICS entry), so it needs their Write, never the shared incident topic's;
    # its receipts consumer has no group.
    for spec in PARTNER_TOPICS.values():
        grants.append(_topic(GATEWAY, spec, "WRITE", "DESCRIBE"))
    grants.append(_topic(GATEWAY, catalog.GATEWAY_RECEIPTS, "READ", "WRITE"))

    grants.append(_topic(COMMAND_CENTER, catalog.SITUATIONS, "READ"))
    grants.append(Grant(COMMAND_CENTER, "GROUP", command_center_group_prefix, "PREFIXED",
                        ("READ",)))
    return grants


def _to_acls(grants: Sequence[Grant]) -> list[Any]:
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    acls = []
    for grant in grants:
        pattern = ResourcePattern(ResourceType[grant.resource_type], grant.resource_name,
                                  ACLResourcePatternType[grant.pattern])
        for operation in grant.operations:
            acls.append(ACL(f"User:{grant.principal}", "*", ACLOperation[operation],
                            ACLPermissionType.ALLOW, pattern))
    return acls


# --- operator command ---------------------------------------------------------------------------


@dataclass
class SetupReport:
    users: list[str] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)
    acl_count: int = 0


def setup(bootstrap: str, app_id: str, credentials_file: Path | None = None,
          command_center_group_prefix: str = COMMAND_CENTER_GROUP_PREFIX) -> SetupReport:
    """Create (or update) every principal's SCRAM user and the ACL plan; safe to run again.

    Kafka ignores an ACL that already exists and an upsert replaces a user's salted password
    with one derived from the same password, so a second run changes nothing a client notices.
    """
    from kafka.admin import UserScramCredentialUpsertion

    from topics.admin import admin_client

    users = ensure_credentials(credentials_file)
    admin = admin_client(bootstrap, **scram_client_config(ADMIN, users[ADMIN]))
    try:
        upserts = [UserScramCredentialUpsertion(name, SCRAM_MECHANISM, users[name])
                   for name in PRINCIPALS if name != ADMIN]
        errors = {name: error for name, error in
                  admin.alter_user_scram_credentials(upserts).items() if error}
        if errors:
            raise SecurityError("creating SCRAM users failed: " + "; ".join(
                f"{name}: {error}" for name, error in sorted(errors.items())))
        grants = acl_plan(app_id, command_center_group_prefix)
        acls = _to_acls(grants)
        result = admin.create_acls(acls)
        if result["failed"]:
            raise SecurityError("creating ACLs failed: " + "; ".join(
                str(error) for error in result["failed"]))
    finally:
        admin.close()
    return SetupReport(users=[name for name in PRINCIPALS if name != ADMIN], grants=grants,
                       acl_count=len(acls))
