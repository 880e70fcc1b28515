"""The ACL plan: each incident partner writes its own source's topic and nothing else, and the
worker reads every input topic (the per-source ones and the shared transition topic)."""

from __future__ import annotations

import pytest

from cityops.security import PARTNER_SOURCES, PARTNER_TOPICS, WORKER, acl_plan
from topics.catalog import CatalogSettings, TopicCatalog
from topics.event_types import INCIDENT

pytestmark = pytest.mark.unit

DEPLOYED = TopicCatalog(CatalogSettings(prefix="t."))


def test_each_partner_writes_and_describes_its_own_topic_only() -> None:
    partner_rules = sorted((g.principal, g.resource_type, g.resource_name, g.pattern,
                            g.operations)
                           for g in acl_plan("app", topics=DEPLOYED)
                           if g.principal.startswith("partner-"))
    assert partner_rules == [
        ("partner-112", "TOPIC", "t.city.incidents.112.v1", "LITERAL", ("WRITE", "DESCRIBE")),
        ("partner-citizen-app", "TOPIC", "t.city.incidents.citizen.v1", "LITERAL",
         ("WRITE", "DESCRIBE")),
        ("partner-lighting", "TOPIC", "t.city.lighting.v1", "LITERAL", ("WRITE", "DESCRIBE")),
        ("partner-police", "TOPIC", "t.city.incidents.police.v1", "LITERAL",
         ("WRITE", "DESCRIBE")),
        ("partner-rt-reports", "TOPIC", "t.city.neighbourhood.reports.v1", "LITERAL",
         ("WRITE", "DESCRIBE")),
        ("partner-waste", "TOPIC", "t.city.waste.v1", "LITERAL", ("WRITE", "DESCRIBE")),
    ]


def test_an_incident_partners_topic_is_the_one_bound_to_its_source() -> None:
    assert {principal: (PARTNER_TOPICS[principal].source, PARTNER_TOPICS[principal].name)
            for principal in PARTNER_SOURCES} == {
        "partner-police": ("POLICE", "city.incidents.police.v1"),
        "partner-112": ("CALL_CENTER_112", "city.incidents.112.v1"),
        "partner-citizen-app": ("CITIZEN_APP", "city.incidents.citizen.v1"),
    }
    assert INCIDENT.shared_input not in PARTNER_TOPICS.values()


def test_the_worker_reads_every_incident_input_and_writes_none() -> None:
    worker_topics = {g.resource_name: g.operations for g in acl_plan("app", topics=DEPLOYED)
                     if g.principal == WORKER and g.resource_type == "TOPIC"}
    assert {name: ops for name, ops in worker_topics.items() if ".incidents." in name} == {
        "t.city.incidents.v1": ("READ",),
        "t.city.incidents.police.v1": ("READ",),
        "t.city.incidents.112.v1": ("READ",),
        "t.city.incidents.citizen.v1": ("READ",),
        "t.city.incidents.enriched.v1": ("READ", "WRITE"),
    }


def test_the_worker_reads_and_writes_every_catalog_topic_by_its_role() -> None:
    worker = {g.resource_name: g.operations for g in acl_plan("app", topics=DEPLOYED)
              if g.principal == "cityops-worker" and g.resource_type == "TOPIC"
              and g.pattern == "LITERAL"}
    assert worker == {
        "t.city.incidents.v1": ("READ",), "t.city.incidents.police.v1": ("READ",),
        "t.city.incidents.112.v1": ("READ",), "t.city.incidents.citizen.v1": ("READ",),
        "t.city.lighting.v1": ("READ",), "t.city.waste.v1": ("READ",),
        "t.city.incidents.enriched.v1": ("READ", "WRITE"),
        "t.city.lighting.enriched.v1": ("READ", "WRITE"),
        "t.city.waste.enriched.v1": ("READ", "WRITE"),
        "t.city.reference.wards.v1": ("READ",), "t.city.reference.assets.v1": ("READ",),
        "t.city.situations.v1": ("READ", "WRITE"), "t.city.deadletter.v1": ("WRITE",),
        "t.city.reference.neighbourhoods.v1": ("READ",),
        "t.city.neighbourhood.reports.v1": ("READ",),
        "t.city.neighbourhood.reports.enriched.v1": ("READ", "WRITE"),
        "t.city.neighbourhood.validations.v1": ("READ", "WRITE"),
        "t.city.neighbourhood.indicators.v1": ("READ", "WRITE"),
        # issue 14: the board writes operator actions, the ward agent reads them
        "t.city.operator.actions.v1": ("READ", "WRITE"),
        # issue 24: the ward agent writes receipts, every board reads them
        "t.city.operator.receipts.v1": ("READ", "WRITE"),
        "t.city.operator.signins.v1": ("READ", "WRITE"),
        "t.city.operator.sessions.v1": ("READ", "WRITE"),
        # issue 25: outputs by role (the notifier's outbox and delivery state)
        "t.city.notifications.outbox.v1": ("READ", "WRITE"),
        "t.city.notifications.deliveries.v1": ("READ", "WRITE"),
        # issue 23: the board writes reviewers' decisions, the judge agent reads them
        "t.city.neighbourhood.reviews.v1": ("READ", "WRITE"),
    }


def test_the_gateway_writes_the_partner_topics_and_its_receipts_only() -> None:
    gateway = {(g.resource_type, g.resource_name, g.pattern, g.operations)
               for g in acl_plan("app", topics=DEPLOYED) if g.principal == "cityops-gateway"}
    assert gateway == {
        *(("TOPIC", f"t.{spec.name}", "LITERAL", ("WRITE", "DESCRIBE"))
          for spec in PARTNER_TOPICS.values()),
        ("TOPIC", "t.city.gateway.receipts.v1", "LITERAL", ("READ", "WRITE")),
    }


def test_the_worker_reads_its_faust_group_and_its_batch_hop_group_only() -> None:
    groups = {(g.resource_name, g.pattern, g.operations) for g in acl_plan("app", topics=DEPLOYED)
              if g.principal == WORKER and g.resource_type == "GROUP"}
    assert groups == {("app", "LITERAL", ("READ",)), ("app-enrich", "LITERAL", ("READ",))}
