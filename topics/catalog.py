"""Every topic of the pipeline, in one place, and the deployment settings that name them.

Each topic is declared once here with its key, value schema and broker settings (as Kafka
Streams' examples declare `Schemas.Topics`). The declarations carry base names; a deployment's
`CatalogSettings` (a topic prefix for a test or staging namespace) is applied by
`TopicCatalog`, built when a program starts rather than when this module is imported, so one
process can address several namespaces and nothing depends on import order.

Names carry a version suffix (`.v1`) so an incompatible change gets a new topic instead of
breaking readers. Reference and situation topics are compacted: the latest record per key is
the current truth, so a consumer that starts late rebuilds the full picture from the topic.
Enriched topics are keyed by kelurahan code; they are the repartition step that brings every
event of one ward to the worker that owns that ward's state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from core.vocabulary import CITY_CODE

DAY_MS = 24 * 60 * 60 * 1000

#: The environment variable that sets `CatalogSettings.prefix` for the `cityops` commands.
PREFIX_VARIABLE = "CITYOPS_TOPIC_PREFIX"

#: Partitions of the ward-keyed topics; it caps how many workers share the aggregation.
#: The default of a deployment; `CatalogSettings.ward_partitions` (CITYOPS_WARD_PARTITIONS)
#: changes it.
WARD_PARTITIONS = 6

#: Environment variables of the deployment settings below (`CatalogSettings.from_env`).
PROFILE_VARIABLE = "CITYOPS_CATALOG_PROFILE"
PARTITIONS_VARIABLE = "CITYOPS_WARD_PARTITIONS"
WORKERS_VARIABLE = "CITYOPS_WORKERS"


class Profile(StrEnum):
    """How the deployment's topics are replicated: one broker, or a cluster that survives the
    loss of one broker without losing an `acks=all` write (RF 3, min ISR 2)."""

    SINGLE = "single"
    CLUSTER = "cluster"


#: Replication factor and min ISR of each profile.
REPLICATION: dict[Profile, tuple[int, int]] = {Profile.SINGLE: (1, 1), Profile.CLUSTER: (3, 2)}


class CatalogError(ValueError):
    """The deployment settings cannot work; the message says which setting to change."""


class Role(StrEnum):
    INPUT = "input"
    ENRICHED = "enriched"
    REFERENCE = "reference"
    OUTPUT = "output"
    DEAD_LETTER = "dead-letter"


@dataclass(frozen=True)
class TopicSpec:
    """One topic: what it carries, how it is keyed, and the broker settings it needs."""

    name: str
    role: Role
    key: str
    value_schema: str
    partitions: int
    description: str
    config: dict[str, str] = field(default_factory=dict)
    replication_factor: int = 1
    #: The record field that is the Kafka key, where the key is one (input and reference topics).
    key_field: str | None = None
    #: The `source_system` of every record on this input topic: only that partner's principal
    #: may write it, so the topic, not the payload, says who wrote a record (issue 12). None
    #: where the payload names its source (the shared transition topic) or a type has none.
    source: str | None = None
    #: Its partition count is the deployment's `ward_partitions`: the topics a consumer group of
    #: workers shares (input and ward-keyed enriched topics, co-partitioned with the ward table).
    scales: bool = False

    @property
    def compacted(self) -> bool:
        return "compact" in self.config.get("cleanup.policy", "").split(",")


_DELETE_7D = {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}
_COMPACT = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": "60000",
    "segment.ms": str(DAY_MS),
}

INCIDENTS = TopicSpec(
    "city.incidents.v1", Role.INPUT, "incident_id", "org.cityops.IncidentEvent",
    WARD_PARTITIONS,
    "Shared incident topic, kept for the transition to the per-source topics (unsecured setups "
    "only: no partner principal may write it); the payload's source_system is taken as sent.",
    _DELETE_7D, key_field="incident_id", scales=True,
)


def _incident_source_topic(slug: str, source: str, who: str) -> TopicSpec:
    """The input topic of one incident partner: same schema and key as the shared topic."""
    return replace(INCIDENTS, name=f"city.incidents.{slug}.v1", source=source,
                   description=f"Incident reports from {who}; source_system {source} only.")


#: One incident topic per `source_system` symbol a partner principal writes
#: (cityops/security.py): the worker takes the source from the topic, and ACLs let each
#: partner write its own topic only. CCTV, FIRE_SERVICE and OTHER have no partner principal
#: yet; adding one is a topic here and a line in security.PARTNER_SOURCES.
INCIDENTS_POLICE = _incident_source_topic("police", "POLICE", "the police")
INCIDENTS_112 = _incident_source_topic("112", "CALL_CENTER_112", "the 112 call center")
INCIDENTS_CITIZEN = _incident_source_topic("citizen", "CITIZEN_APP", "the citizen app")
LIGHTING = TopicSpec(
    "city.lighting.v1", Role.INPUT, "lamp_id", "org.cityops.LightingEvent",
    WARD_PARTITIONS,
    "Street-lighting (PJU) status, fault and energy reports.", _DELETE_7D, key_field="lamp_id",
    scales=True,
)
WASTE = TopicSpec(
    "city.waste.v1", Role.INPUT, "container_id", "org.cityops.WasteEvent",
    WARD_PARTITIONS,
    "Waste container and TPS fill levels, collections, overflow complaints and fire risk.",
    _DELETE_7D, key_field="container_id", scales=True,
)
INCIDENTS_ENRICHED = TopicSpec(
    "city.incidents.enriched.v1", Role.ENRICHED, "kelurahan code",
    "org.cityops.EnrichedIncidentEvent", WARD_PARTITIONS,
    "Validated incidents with their resolved ward.", _DELETE_7D, scales=True,
)
LIGHTING_ENRICHED = TopicSpec(
    "city.lighting.enriched.v1", Role.ENRICHED, "kelurahan code",
    "org.cityops.EnrichedLightingEvent", WARD_PARTITIONS,
    "Validated lighting reports with their ward and control cabinet.", _DELETE_7D, scales=True,
)
WASTE_ENRICHED = TopicSpec(
    "city.waste.enriched.v1", Role.ENRICHED, "kelurahan code",
    "org.cityops.EnrichedWasteEvent", WARD_PARTITIONS,
    "Validated waste reports with their ward and site.", _DELETE_7D, scales=True,
)
WARDS = TopicSpec(
    "city.reference.wards.v1", Role.REFERENCE, "kelurahan code", "org.cityops.Ward", 1,
    "The 43 kelurahan of Kota Cilegon with kecamatan, centroid and boundary.", _COMPACT,
    key_field="kelurahan_code",
)
ASSETS = TopicSpec(
    "city.reference.assets.v1", Role.REFERENCE, "asset id", "org.cityops.Asset", 1,
    "Lamp, container and TPS registry (asset id -> ward, road or site, wattage or capacity).",
    _COMPACT, key_field="asset_id",
)
SITUATIONS = TopicSpec(
    "city.situations.v1", Role.OUTPUT,
    f"scope code (kelurahan, kecamatan or {CITY_CODE} for the city)",
    "org.cityops.SituationEvent", 3,
    "Situation per kelurahan, kecamatan and city for command-center consumers.", _COMPACT,
)
DEAD_LETTERS = TopicSpec(
    "city.deadletter.v1", Role.DEAD_LETTER, "original key", "org.cityops.DeadLetter", 3,
    "Rejected input with its original bytes, the rule broken and who rejected it.",
    {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
)

NEIGHBOURHOODS = TopicSpec(
    "city.reference.neighbourhoods.v1", Role.REFERENCE, "RT code", "org.cityops.Neighbourhood",
    1, "Every RT and RW of the 43 kelurahan (RT code -> kelurahan, RW, RT); SYNTHETIC "
    "until a real register is loaded.", _COMPACT, key_field="rt_code",
)
RT_REPORTS = TopicSpec(
    "city.neighbourhood.reports.v1", Role.INPUT, "rt_code", "org.cityops.RtReport", WARD_PARTITIONS,
    "Monthly reports of the RT heads (households, residents, labour force, unemployed, ...).",
    _DELETE_7D, key_field="rt_code",
)
RT_REPORTS_BY_KELURAHAN = TopicSpec(
    "city.neighbourhood.reports.enriched.v1", Role.ENRICHED, "kelurahan code",
    "org.cityops.RtReport", WARD_PARTITIONS,
    "RT reports that passed the stateless checks, as sent, repartitioned by kelurahan so one "
    "worker holds every RT of a kelurahan (continuity, duplicates, outliers).", _DELETE_7D,
)
RT_VALIDATIONS = TopicSpec(
    "city.neighbourhood.validations.v1", Role.OUTPUT, "RT code", "org.cityops.RtValidation",
    WARD_PARTITIONS,
    "The verdict on every RT report (VALID, NEEDS_REVIEW with its reasons, REJECTED) for the "
    "kelurahan officer.", {"cleanup.policy": "delete", "retention.ms": str(90 * DAY_MS)},
)
NEIGHBOURHOOD_INDICATORS = TopicSpec(
    "city.neighbourhood.indicators.v1", Role.OUTPUT, "<scope code>|<YYYY-MM>",
    "org.cityops.NeighbourhoodIndicator", 3,
    "Monthly indicators per RW, kelurahan, kecamatan and city from VALID RT reports.", _COMPACT,
)
#: How long the operator actions are kept: they are the command center's audit record (who
#: acknowledged, assigned, escalated, noted and closed what, and when). Five years, never
#: compacted, so every action stays readable in order (docs/operations.md, "Operator actions").
ACTIONS_RETENTION_DAYS = 5 * 365
OPERATOR_ACTIONS = TopicSpec(
    "city.operator.actions.v1", Role.OUTPUT, "kelurahan code", "org.cityops.OperatorAction",
    WARD_PARTITIONS,
    "Command-center operator actions (acknowledge, assign, escalate, note, close), keyed and "
    "partitioned like the enriched topics so the ward agent folds them in order with the "
    "ward's events; the audit record, kept five years.",
    {"cleanup.policy": "delete", "retention.ms": str(ACTIONS_RETENTION_DAYS * DAY_MS)},
    scales=True,
)
#: How long an action's receipt is kept: the web server that wrote the action waits seconds for
#: it and the page asks again for minutes at most; an hour covers both with room to spare.
RECEIPTS_RETENTION_MS = 3_600_000
ACTION_RECEIPTS = TopicSpec(
    "city.operator.receipts.v1", Role.OUTPUT, "action_id", "org.cityops.ActionReceipt", 3,
    "What the ward agent did with each operator action (applied, or refused with the reason): "
    "the board tells the operator from it; kept an hour (issue 24).",
    {"cleanup.policy": "delete", "retention.ms": str(RECEIPTS_RETENTION_MS),
     "segment.ms": str(RECEIPTS_RETENTION_MS // 4)},
)
#: How long the sign-in trail is kept: a year, so a slow attack or an account's misuse can be
#: looked back on (docs/security.md); it holds client addresses, personal data.
SIGN_INS_RETENTION_DAYS = 365
SIGN_INS = TopicSpec(
    "city.operator.signins.v1", Role.OUTPUT, "account name, else client address",
    "org.cityops.SignInEvent", 1,
    "Every attempt to sign in to the board (succeeded, wrong password, throttled): the "
    "sign-in audit trail, kept a year (issue 24).",
    {"cleanup.policy": "delete", "retention.ms": str(SIGN_INS_RETENTION_DAYS * DAY_MS)},
)
SESSIONS = TopicSpec(
    "city.operator.sessions.v1", Role.OUTPUT, "SHA-256 digest of the session id",
    "org.cityops.BoardSession", 1,
    "Signed-in board sessions, shared by every worker and kept across restarts; a tombstone "
    "ends one everywhere (issue 24). Never holds a session id, only its digest.",
    {**_COMPACT, "min.compaction.lag.ms": "0", "delete.retention.ms": str(DAY_MS)},
)

#: How long the gateway remembers an answer: a partner retrying the same Idempotency-Key within
#: this time gets the first answer back (docs/gateway.md). Compacted and deleted after it, so
#: the topic holds one receipt per key and no key forever.
RECEIPTS_RETENTION_DAYS = 7
GATEWAY_RECEIPTS = TopicSpec(
    "city.gateway.receipts.v1", Role.OUTPUT, "<partner>|<idempotency key>",
    "org.cityops.GatewayReceipt", 3,
    "The HTTP ingestion gateway's answers (a receipt per record), so a retried request gets the "
    "first answer from any gateway instead of a second write.",
    {"cleanup.policy": "compact,delete", "retention.ms": str(RECEIPTS_RETENTION_DAYS * DAY_MS),
     "min.compaction.lag.ms": "60000", "segment.ms": str(DAY_MS)},
)

#: The notifications' topics (issue 25): the outbox (what is due, keyed by "<case>|<event>") and
#: the state of each delivery, written before and after every attempt. Both compacted (the
#: latest record per key is the truth) and kept 30 days, past which nothing is re-sent.
_COMPACT_30D = {**_COMPACT, "cleanup.policy": "compact,delete", "retention.ms": str(30 * DAY_MS)}
NOTIFICATIONS_OUTBOX = TopicSpec(
    "city.notifications.outbox.v1", Role.OUTPUT, "<case>|<event>", "org.cityops.Notification", 3,
    "Notifications due to agencies (assigned, CRITICAL unacknowledged, SLA about to expire, "
    "closed), decided once per key by `cityops notify` and delivered by its sender.",
    _COMPACT_30D,
)
NOTIFICATION_DELIVERIES = TopicSpec(
    "city.notifications.deliveries.v1", Role.OUTPUT, "<case>|<event>|<channel>|<target>",
    "org.cityops.NotificationDelivery", 3,
    "Each delivery's state (ATTEMPTING before a request, SENT, RETRYING or DEAD after it with "
    "the provider's answer), so a restarted notifier re-sends only what was not confirmed.",
    _COMPACT_30D,
)

RT_REVIEWS = TopicSpec(
    "city.neighbourhood.reviews.v1", Role.OUTPUT, "kelurahan code", "org.cityops.RtReview",
    WARD_PARTITIONS,
    "Reviewers' decisions on RT reports that needed review (accept, correct as a new revision, "
    "reject), written by the board and folded by the judge agent; the audit record, kept five "
    "years like the operator actions (issue 23).",
    {"cleanup.policy": "delete", "retention.ms": str(ACTIONS_RETENTION_DAYS * DAY_MS)},
)

#: The smart-village topics (issue 13), listed in `CATALOG`.
NEIGHBOURHOOD_TOPICS: tuple[TopicSpec, ...] = (
    NEIGHBOURHOODS, RT_REPORTS, RT_REPORTS_BY_KELURAHAN, RT_VALIDATIONS, NEIGHBOURHOOD_INDICATORS,
    RT_REVIEWS,
)

CATALOG: tuple[TopicSpec, ...] = (
    INCIDENTS, INCIDENTS_POLICE, INCIDENTS_112, INCIDENTS_CITIZEN, LIGHTING, WASTE,
    INCIDENTS_ENRICHED, LIGHTING_ENRICHED, WASTE_ENRICHED,
    WARDS, ASSETS, SITUATIONS, DEAD_LETTERS,
    *NEIGHBOURHOOD_TOPICS,
    OPERATOR_ACTIONS, ACTION_RECEIPTS, SIGN_INS, SESSIONS, GATEWAY_RECEIPTS,
    NOTIFICATIONS_OUTBOX, NOTIFICATION_DELIVERIES,
)


def by_schema(schema: str) -> TopicSpec:
    """The input or reference topic that carries `schema` (a full or short record name); for
    incidents the shared topic, where the payload names its source (a per-source topic is
    chosen by the record: `topics.event_types.EventType.input_for`)."""
    full = schema if "." in schema else f"org.cityops.{schema}"
    for spec in CATALOG:
        if (spec.value_schema == full and spec.role in (Role.INPUT, Role.REFERENCE)
                and spec.source is None):
            return spec
    raise KeyError(f"no input or reference topic carries {schema}")


@dataclass(frozen=True)
class CatalogSettings:
    """What one deployment changes about the catalog.

    `prefix` puts every topic name in a namespace, so tests and a staging city share a broker
    (empty in production). `profile` says how topics are replicated (`Profile`). `ward_partitions`
    is the partition count of the topics the workers share, and `workers` the largest consumer
    group the deployment runs: a worker beyond the partition count would get no partition and
    idle, so the settings refuse it rather than let a deployment believe it scaled out.
    """

    prefix: str = ""
    profile: Profile = Profile.SINGLE
    ward_partitions: int = WARD_PARTITIONS
    workers: int = 1

    def __post_init__(self) -> None:
        if self.ward_partitions < 1:
            raise CatalogError(f"{PARTITIONS_VARIABLE} must be at least 1, not "
                               f"{self.ward_partitions}")
        if self.workers < 1:
            raise CatalogError(f"{WORKERS_VARIABLE} must be at least 1, not {self.workers}")
        if self.ward_partitions < self.workers:
            raise CatalogError(
                f"the ward-keyed topics have {self.ward_partitions} partitions but the largest "
                f"consumer group has {self.workers} workers: {self.workers - self.ward_partitions}"
                f" would get no partition and idle; set {PARTITIONS_VARIABLE} to at least "
                f"{self.workers} (or run fewer workers)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CatalogSettings:
        env = os.environ if env is None else env
        profile = env.get(PROFILE_VARIABLE, Profile.SINGLE.value)
        if profile not in {p.value for p in Profile}:
            raise CatalogError(f"{PROFILE_VARIABLE}={profile!r}: expected one of "
                               + ", ".join(p.value for p in Profile))
        return cls(
            prefix=env.get(PREFIX_VARIABLE, ""),
            profile=Profile(profile),
            ward_partitions=_integer(env, PARTITIONS_VARIABLE, WARD_PARTITIONS),
            workers=_integer(env, WORKERS_VARIABLE, 1),
        )

    @property
    def replication_factor(self) -> int:
        return REPLICATION[self.profile][0]

    @property
    def min_insync_replicas(self) -> int:
        return REPLICATION[self.profile][1]

    @property
    def replication_configs(self) -> dict[str, str]:
        """Topic settings of the profile, for the catalog's topics and Faust's changelogs
        alike: none on one broker (its default, 1), `min.insync.replicas` on a cluster."""
        if self.profile is Profile.SINGLE:
            return {}
        return {"min.insync.replicas": str(self.min_insync_replicas)}


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise CatalogError(f"{name}={value!r} is not a whole number") from None


@dataclass(frozen=True)
class TopicCatalog:
    """The catalog as one deployment names it: every declared topic with the prefix applied."""

    settings: CatalogSettings = CatalogSettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TopicCatalog:
        return cls(CatalogSettings.from_env(env))

    @property
    def prefix(self) -> str:
        return self.settings.prefix

    @property
    def ward_partitions(self) -> int:
        """Partitions of every topic the workers share, and of the ward table's changelog."""
        return self.settings.ward_partitions

    def name(self, spec: TopicSpec) -> str:
        """The deployed name of a declared topic."""
        return self.prefix + spec.name

    def spec(self, spec: TopicSpec) -> TopicSpec:
        """A declared topic as this deployment creates it: its name, its partition count and,
        in the cluster profile, replication factor 3 with `min.insync.replicas=2`."""
        deployed = replace(spec, name=self.name(spec))
        if spec.scales:
            deployed = replace(deployed, partitions=self.ward_partitions)
        return replace(deployed, replication_factor=self.settings.replication_factor,
                       config={**spec.config, **self.settings.replication_configs})

    def specs(self, specs: tuple[TopicSpec, ...] = CATALOG) -> tuple[TopicSpec, ...]:
        return tuple(self.spec(spec) for spec in specs)

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self.specs())

    def declared(self, name: str) -> TopicSpec:
        """The declaration behind a deployed name."""
        return by_name(name.removeprefix(self.prefix) if name.startswith(self.prefix) else name)


def by_name(name: str) -> TopicSpec:
    for spec in CATALOG:
        if spec.name == name:
            return spec
    raise KeyError(f"no topic {name!r} in the catalog")
