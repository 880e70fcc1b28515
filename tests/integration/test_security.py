"""Partners isolated by ACLs on a SASL/SCRAM broker, and the normal flow still working there.

A second, secured broker runs next to the shared plain one: its own CITYOPS_VAR_DIR (a temporary
folder) and its own free ports, started, set up and stopped through the same commands an
operator runs (`cityops broker start --secure`, `cityops security setup`, `cityops topics
create`, `cityops wards/assets load` with a principal's environment). ACLs are built from the
catalog, so they name this session's prefixed topics.

Evidence of a refusal is twofold: the exact exception class the client raises, and the
broker's own audit line (`kafka.authorizer.logger`: "Principal = User:x is Denied operation =
..."), which StandardAuthorizer writes for every denied request.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import TopicAuthorizationFailedError as AIOTopicAuthorizationFailedError
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from bench.harness import Namespace, free_port
from cityops.assets import generate_asset_registry
from cityops.producer import PartnerProducer
from cityops.security import (
    ADMIN,
    COMMAND_CENTER,
    REFERENCE_PUBLISHER,
    WORKER,
    acl_plan,
    load_credentials,
    principal_env,
)
from core.connection import (
    ENV_MECHANISM,
    ENV_PASSWORD,
    ENV_PROTOCOL,
    ENV_USERNAME,
    SecurityError,
    aiokafka_security,
    faust_credentials,
    kafka_python_security,
    scram_client_config,
)
from core.reference_data import load_ward_records
from core.vocabulary import ASSET_REGISTRY_SEED
from schemas.codec import decode, encode
from tests.conftest import CITYOPS, ROOT
from tests.integration.test_watch_cli import refusal
from topics import catalog
from topics.catalog import TopicCatalog

pytestmark = pytest.mark.integration

#: The topics as this test session deploys them (its CITYOPS_TOPIC_PREFIX, tests/conftest.py).
_TOPICS = TopicCatalog.from_env()
INCIDENTS = _TOPICS.spec(catalog.INCIDENTS)  # the shared transition topic: no partner writes it
POLICE_INCIDENTS = _TOPICS.spec(catalog.INCIDENTS_POLICE)
CALL_CENTER_INCIDENTS = _TOPICS.spec(catalog.INCIDENTS_112)
CITIZEN_INCIDENTS = _TOPICS.spec(catalog.INCIDENTS_CITIZEN)
ENRICHED_INCIDENTS = _TOPICS.spec(catalog.INCIDENTS_ENRICHED)
DEAD_LETTERS = _TOPICS.spec(catalog.DEAD_LETTERS)
LIGHTING = _TOPICS.spec(catalog.LIGHTING)
SITUATIONS = _TOPICS.spec(catalog.SITUATIONS)
WASTE = _TOPICS.spec(catalog.WASTE)

FLOOD_WARD = "36.72.01.1001"  # Cibeber, Cibeber
POLICE_WARD = "36.72.02.1001"
LAMP_WARD = "36.72.03.1001"
CITIZEN_WARD = "36.72.04.1001"
DENIAL = re.compile(r"Principal = User:(\S+) is Denied operation = (\S+) from host = \S+ "
                    r"on resource = (\S+) for request")


@dataclass
class SecuredBroker:
    bootstrap: str
    var_dir: Path
    app_id: str
    passwords: dict[str, str]
    base_env: dict[str, str]

    def client(self, principal: str) -> dict[str, Any]:
        return scram_client_config(principal, self.passwords[principal])

    def env(self, principal: str) -> dict[str, str]:
        return {**self.base_env, **principal_env(principal, self.passwords[principal])}

    def denials(self, principal: str) -> set[tuple[str, str]]:
        """(operation, resource) pairs the broker denied this principal, from its audit log."""
        text = (self.var_dir / "kafka" / "logs" / "server.log").read_text()
        return {(op, resource) for who, op, resource in DENIAL.findall(text) if who == principal}


def _cityops(*args: str, env: dict[str, str], check: bool = True) -> str:
    result = subprocess.run([*CITYOPS, *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"cityops {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result.stdout


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory,
            artifacts_dir: Path) -> Iterator[SecuredBroker]:
    var_dir = tmp_path_factory.mktemp("secured-var")
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    base_env = {
        key: value for key, value in os.environ.items()
        if key not in (ENV_USERNAME, ENV_PASSWORD, ENV_PROTOCOL, ENV_MECHANISM)
    }
    base_env.update(CITYOPS_VAR_DIR=str(var_dir), CITYOPS_KAFKA_PORT=str(port),
                    CITYOPS_KAFKA_CONTROLLER_PORT=str(free_port()), CITYOPS_KAFKA_HEAP_MB="384")
    started = _cityops("broker", "start", "--secure", "--port", str(port), env=base_env)
    assert started.startswith(f"started on {bootstrap} (SASL/SCRAM, ACLs) (pid ")
    try:
        broker = SecuredBroker(bootstrap, var_dir, f"secure-{uuid.uuid4().hex[:8]}",
                               load_credentials(var_dir / "security" / "credentials.json"),
                               base_env)
        _cityops("security", "setup", "--bootstrap", bootstrap, "--app-id", broker.app_id,
                 env=base_env)
        _cityops("topics", "create", "--bootstrap", bootstrap, env=broker.env(ADMIN))
        _cityops("wards", "load", "--bootstrap", bootstrap, env=broker.env(REFERENCE_PUBLISHER))
        _cityops("assets", "load", "--bootstrap", bootstrap, env=broker.env(REFERENCE_PUBLISHER))
        yield broker
    finally:
        log = var_dir / "kafka" / "logs" / "server.log"
        if log.exists():
            shutil.copyfile(log, artifacts_dir / "security-broker.log")
        _cityops("broker", "stop", env=base_env, check=False)


def _incident(incident_id: str, ward: str, at: datetime, source: str = "POLICE"
              ) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()), "occurred_at": at, "incident_id": incident_id,
        "source_system": source, "category": "FLOOD", "severity": "MODERATE",
        "status": "REPORTED", "ward_code": ward, "latitude": None, "longitude": None,
        "rw": None, "rt": None, "description": "security test",
    }


def _read_to_end(bootstrap: str, topic: str, schema: str, security: dict[str, str],
                 timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Every record present now, read without a consumer group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **security)
    try:
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or [])]
        assert partitions, f"{topic} is not visible to this principal"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout_s}s"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(decode(r.value, expected=schema).record for r in batch)
        return records
    finally:
        consumer.close()


def test_partner_writing_another_partners_topic_is_refused(secured: SecuredBroker) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    registry = generate_asset_registry(load_ward_records(), seed=ASSET_REGISTRY_SEED)
    lamp = next(a["asset_id"] for a in registry
                if a["asset_kind"] == "LAMP" and a["ward_code"] == LAMP_WARD)
    forged = f"FORGED-{uuid.uuid4().hex[:8]}"
    with PartnerProducer(secured.bootstrap, **secured.client("partner-lighting")) as producer:
        with pytest.raises(TopicAuthorizationFailedError) as refused:
            producer.send("IncidentEvent", _incident(forged, FLOOD_WARD, now)).get(timeout=30)
        # the same principal still writes its own topic: the refusal is about the topic
        own = producer.send("LightingEvent", {
            "event_id": str(uuid.uuid4()), "occurred_at": now, "lamp_id": lamp,
            "cabinet_id": None, "report_kind": "STATUS", "lamp_status": "OK",
            "power_state": "ON", "dimming_level": None, "energy_kwh": None,
            "ward_code": None, "latitude": None, "longitude": None,
        }).get(timeout=30)

    assert type(refused.value) is TopicAuthorizationFailedError
    assert POLICE_INCIDENTS.name in str(refused.value)
    assert own.topic == LIGHTING.name
    incidents = _read_to_end(secured.bootstrap, POLICE_INCIDENTS.name,
                             POLICE_INCIDENTS.value_schema, secured.client(ADMIN))
    assert [r for r in incidents if r["incident_id"] == forged] == []
    assert secured.denials("partner-lighting") == {
        ("DESCRIBE", f"Topic:LITERAL:{POLICE_INCIDENTS.name}"),
    }


def test_citizen_app_can_write_neither_the_police_topic_nor_the_shared_one(
    secured: SecuredBroker,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    posing = _incident(f"POSING-{uuid.uuid4().hex[:8]}", FLOOD_WARD, now, "POLICE")
    with PartnerProducer(secured.bootstrap, **secured.client("partner-citizen-app")) as producer:
        # the producer routes a POLICE record to the police topic: refused
        with pytest.raises(TopicAuthorizationFailedError) as refused:
            producer.send("IncidentEvent", posing).get(timeout=30)
        # nor may it use the shared transition topic, where the payload would name the source
        with pytest.raises(TopicAuthorizationFailedError) as shared_refused:
            producer.send_raw(INCIDENTS.name, posing["incident_id"].encode(),
                              encode(INCIDENTS.value_schema, posing)).get(timeout=30)
    assert type(refused.value) is TopicAuthorizationFailedError
    assert POLICE_INCIDENTS.name in str(refused.value)
    assert type(shared_refused.value) is TopicAuthorizationFailedError
    assert INCIDENTS.name in str(shared_refused.value)
    for topic in (POLICE_INCIDENTS, INCIDENTS):
        written = _read_to_end(secured.bootstrap, topic.name, topic.value_schema,
                               secured.client(ADMIN))
        assert [r for r in written if r["incident_id"] == posing["incident_id"]] == []
    assert secured.denials("partner-citizen-app") == {
        ("DESCRIBE", f"Topic:LITERAL:{POLICE_INCIDENTS.name}"),
        ("DESCRIBE", f"Topic:LITERAL:{INCIDENTS.name}"),
    }


def test_partner_writes_its_own_topic_and_the_worker_principal_reads_it(
    secured: SecuredBroker,
) -> None:
    record = _incident(f"POLICE-{uuid.uuid4().hex[:8]}", POLICE_WARD,
                       datetime.now(UTC).replace(microsecond=0))
    # PartnerProducer is idempotent (kafka-python 3 default): no IdempotentWrite is granted
    with PartnerProducer(secured.bootstrap, **secured.client("partner-police")) as producer:
        written = producer.send("IncidentEvent", record).get(timeout=30)

    assert written.topic == POLICE_INCIDENTS.name
    read = _read_to_end(secured.bootstrap, POLICE_INCIDENTS.name, POLICE_INCIDENTS.value_schema,
                        secured.client(WORKER))
    assert [r for r in read if r["incident_id"] == record["incident_id"]] == [record]
    assert secured.denials("partner-police") == set()


def test_worker_principal_cannot_forge_partner_input(secured: SecuredBroker) -> None:
    producer = KafkaProducer(bootstrap_servers=secured.bootstrap, **secured.client(WORKER))
    try:
        with pytest.raises(TopicAuthorizationFailedError) as refused:
            producer.send(INCIDENTS.name, key=b"forged", value=b"x").get(timeout=30)
    finally:
        producer.close()
    assert type(refused.value) is TopicAuthorizationFailedError
    assert secured.denials(WORKER) == {("WRITE", f"Topic:LITERAL:{INCIDENTS.name}")}


def test_command_center_is_refused_partner_input_and_the_workers_group(
    secured: SecuredBroker,
) -> None:
    # aiokafka raises; kafka-python 3's consumer only logs "not authorized" and polls nothing
    async def read_incidents() -> None:
        consumer = AIOKafkaConsumer(INCIDENTS.name, bootstrap_servers=secured.bootstrap,
                                    group_id="command-center-security-test",
                                    **secured.client(COMMAND_CENTER))
        try:
            await consumer.start()
            await asyncio.wait_for(consumer.getmany(timeout_ms=5000), timeout=60)
        finally:
            await consumer.stop()

    with pytest.raises(AIOTopicAuthorizationFailedError) as refused:
        asyncio.run(read_incidents())
    assert type(refused.value) is AIOTopicAuthorizationFailedError

    # joining the workers' group would take partitions away from them
    consumer = KafkaConsumer(SITUATIONS.name, bootstrap_servers=secured.bootstrap,
                             group_id=secured.app_id, enable_auto_commit=False,
                             **secured.client(COMMAND_CENTER))
    try:
        with pytest.raises(GroupAuthorizationFailedError) as group_refused:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                consumer.poll(timeout_ms=500)
    finally:
        consumer.close()
    assert type(group_refused.value) is GroupAuthorizationFailedError

    assert secured.denials(COMMAND_CENTER) == {
        ("DESCRIBE", f"Topic:LITERAL:{INCIDENTS.name}"),
        ("DESCRIBE", f"Group:LITERAL:{secured.app_id}"),
    }


def test_watch_with_a_principal_that_may_not_read_situations_fails_clearly(
    secured: SecuredBroker,
) -> None:
    result = subprocess.run([*CITYOPS, "watch", "--once", "--bootstrap", secured.bootstrap],
                            cwd=ROOT, env=secured.env("partner-lighting"), capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == refusal(SITUATIONS.name, secured.bootstrap)


def test_worker_turns_an_incident_into_a_situation_on_the_secured_broker(
    secured: SecuredBroker, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path,
) -> None:
    session = Namespace(secured.bootstrap, TopicCatalog.from_env().prefix)
    worker = session.worker(
        secured.app_id, artifacts_dir / "security-worker.log",
        tmp_path_factory.mktemp("secured-worker"),
        **principal_env(WORKER, secured.passwords[WORKER]),
    ).start()
    try:
        worker.wait_ready()
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        with PartnerProducer(secured.bootstrap, **secured.client("partner-112")) as producer:
            sent = producer.send("IncidentEvent", _incident(
                f"CALL-{uuid.uuid4().hex[:8]}", FLOOD_WARD, at, "CALL_CENTER_112",
            )).get(timeout=30)
        assert sent.topic == CALL_CENTER_INCIDENTS.name
        # The citizen app writes its own topic: once honestly, once claiming to be the police
        # (issue 12: it was enriched as POLICE and made the ward CRITICAL).
        honest = _incident(f"CIT-{uuid.uuid4().hex[:8]}", CITIZEN_WARD, at, "CITIZEN_APP")
        posing = _incident(f"CIT-{uuid.uuid4().hex[:8]}", CITIZEN_WARD, at, "POLICE") | {
            "severity": "EXTREME"}
        with PartnerProducer(secured.bootstrap,
                             **secured.client("partner-citizen-app")) as producer:
            assert producer.send("IncidentEvent", honest).get(timeout=30).topic == (
                CITIZEN_INCIDENTS.name)
            producer.send_raw(CITIZEN_INCIDENTS.name, posing["incident_id"].encode(),
                              encode(CITIZEN_INCIDENTS.value_schema, posing)).get(timeout=30)

        def ward_situations() -> list[dict[str, Any]]:
            return [s for s in _read_to_end(secured.bootstrap, SITUATIONS.name,
                                            SITUATIONS.value_schema,
                                            secured.client(COMMAND_CENTER))
                    if s["scope_code"] == FLOOD_WARD]

        def citizen_outcomes() -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
            ids = {honest["incident_id"], posing["incident_id"]}
            enriched = [(r["event"]["incident_id"], r["event"]["source_system"])
                        for r in _read_to_end(secured.bootstrap, ENRICHED_INCIDENTS.name,
                                              ENRICHED_INCIDENTS.value_schema,
                                              secured.client(ADMIN))
                        if r["event"]["incident_id"] in ids]
            dead = [(d["original_key"].decode(), d["stage"], d["reason"])
                    for d in _read_to_end(secured.bootstrap, DEAD_LETTERS.name,
                                          DEAD_LETTERS.value_schema, secured.client(ADMIN))
                    if d["original_topic"] == CITIZEN_INCIDENTS.name]
            return enriched, dead

        deadline = time.monotonic() + 90
        situations = ward_situations()
        outcomes = citizen_outcomes()
        while (not situations or not all(outcomes)) and time.monotonic() < deadline:
            time.sleep(1.0)
            situations = ward_situations()
            outcomes = citizen_outcomes()
    finally:
        worker.stop()

    # enriched with the source of the topic it came from; the claim to be POLICE dead-lettered
    assert outcomes == ([(honest["incident_id"], "CITIZEN_APP")],
                        [(posing["incident_id"], "VALIDATE", "source_mismatch")])

    assert [(s["sequence"], s["kind"], s["level"], s["reasons"], s["open_incidents"],
             s["open_incidents_by_category"]) for s in situations] == [
        (1, "CHANGE", "NORMAL", [], 1, {"FLOOD": 1}),
    ]
    # the worker's ACLs are complete: it never hit a denial
    assert secured.denials(WORKER) - {("WRITE", f"Topic:LITERAL:{INCIDENTS.name}")} == set()


def test_clients_get_no_security_settings_when_the_environment_sets_none() -> None:
    assert (kafka_python_security({}), aiokafka_security({}), faust_credentials({})) == (
        {}, {}, None)
    env = {ENV_USERNAME: "partner-waste", ENV_PASSWORD: "secret"}
    assert kafka_python_security(env) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "partner-waste", "sasl_plain_password": "secret",
    }
    credentials = faust_credentials(env)
    assert (credentials.username, credentials.password, credentials.mechanism.value,
            credentials.protocol.value) == (
        "partner-waste", "secret", "SCRAM-SHA-512", "SASL_PLAINTEXT")
    with pytest.raises(SecurityError) as missing:
        kafka_python_security({ENV_USERNAME: "partner-waste"})
    assert str(missing.value) == (
        "SASL_PLAINTEXT needs both CITYOPS_SASL_USERNAME and CITYOPS_SASL_PASSWORD")


def test_acls_name_the_catalogs_prefixed_topics() -> None:
    partner_rules = {(g.principal, g.resource_name, g.operations)
                     for g in acl_plan("cityops") if g.principal.startswith("partner-")}
    assert partner_rules == {
        ("partner-police", POLICE_INCIDENTS.name, ("WRITE", "DESCRIBE")),
        ("partner-112", CALL_CENTER_INCIDENTS.name, ("WRITE", "DESCRIBE")),
        ("partner-citizen-app", CITIZEN_INCIDENTS.name, ("WRITE", "DESCRIBE")),
        ("partner-lighting", LIGHTING.name, ("WRITE", "DESCRIBE")),
        ("partner-waste", WASTE.name, ("WRITE", "DESCRIBE")),
        ("partner-rt-reports", _TOPICS.name(catalog.RT_REPORTS), ("WRITE", "DESCRIBE")),
    }
    assert INCIDENTS.name.startswith(os.environ["CITYOPS_TOPIC_PREFIX"])
