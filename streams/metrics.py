"""Prometheus metrics of a worker, named after Prometheus' own rules.

Base units (seconds, ratios 0..1), `_total` on counters, and only bounded label values: topic
names from the catalog, rejection reasons from a fixed set, at most 43 kelurahan and 8 kecamatan,
never an event or asset id. Each worker process has its own registry so tests can run several.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
RESPONSE_BUCKETS_S = (60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 7200.0)
#: SLA clocks run from minutes (dispatch) to days (resolution).
SLA_BUCKETS_S = (60.0, 300.0, 420.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 7200.0,
                 21600.0, 86400.0, 604800.0)


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.consumed = Counter(
            "cityops_events_consumed_total", "Records read from a partner input topic.",
            ["topic"], registry=r)
        self.enriched = Counter(
            "cityops_events_enriched_total",
            "Input events validated, placed in a ward and written to their enriched topic.",
            ["topic", "ward_resolution"], registry=r)
        self.rejected = Counter(
            "cityops_events_rejected_total",
            "Records sent to the dead-letter topic, by stage and reason.",
            ["topic", "stage", "reason"], registry=r)
        self.unparseable = Counter(
            "cityops_unparseable_batches_total",
            "Record batches the Kafka client could not parse (crc_mismatch, unsupported_codec, "
            "invalid_utf8 header name, malformed): each dead-lettered whole and skipped.",
            ["topic", "kind"], registry=r)
        self.ward_agent_stalls = Counter(
            "cityops_ward_agent_stalls_total",
            "Times this worker stopped itself because its ward agent applied nothing for 90 s "
            "while records waited (streams/liveness.py); it exits with status 75 to be "
            "restarted.",
            registry=r)
        self.catch_up_timeouts = Counter(
            "cityops_situations_catch_up_timeouts_total",
            "Batches that went on before this worker's copy of the situations topic was read to "
            "its end (5 s bound): a ward taken over then may repeat a sequence number.",
            registry=r)
        self.corrected = Counter(
            "cityops_events_corrected_total",
            "Accepted events with a data-quality problem the worker corrected, by reason "
            "(core.rejections.DATA_QUALITY_REASONS), e.g. a ward_code that contradicts the "
            "asset registry.", ["topic", "reason"], registry=r)
        self.aggregated = Counter(
            "cityops_events_aggregated_total",
            "Enriched events applied to ward state (outcome: applied, duplicate, late).",
            ["topic", "outcome"], registry=r)
        self.dedupe_evicted = Counter(
            "cityops_dedupe_ids_evicted_total",
            "Event ids a very busy ward forgot before the dedupe horizon, to keep its state "
            "within one changelog record: retries of those events would count twice.",
            ["kelurahan_code"], registry=r)
        self.event_age = Histogram(
            "cityops_event_age_seconds",
            "Age of an event when the worker enriched it (now - occurred_at).",
            ["topic"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.ingest_to_situation = Histogram(
            "cityops_ingest_to_situation_seconds",
            "Time from a worker accepting an event to emitting the situation it changed.",
            buckets=LATENCY_BUCKETS_S, registry=r)
        self.situation_failures = Counter(
            "cityops_situation_failures_total",
            "Situations that could not be evaluated or encoded (dead-lettered as PROCESS/"
            "situation_failed); the scope keeps its last good situation.", ["scope"],
            registry=r)
        self.situations = Counter(
            "cityops_situations_emitted_total", "Situation records written, by scope and kind.",
            ["scope", "kind"], registry=r)
        self.ward_level = Gauge(
            "cityops_ward_situation_level",
            "Current level per kelurahan: 0 NORMAL, 1 WATCH, 2 ALERT, 3 CRITICAL.",
            ["kelurahan_code", "kelurahan", "kecamatan"], registry=r)
        self.kecamatan_level = Gauge(
            "cityops_kecamatan_situation_level",
            "Current level per kecamatan: 0 NORMAL, 1 WATCH, 2 ALERT, 3 CRITICAL.",
            ["kecamatan"], registry=r)
        self.open_incidents = Gauge(
            "cityops_open_incidents", "Open incidents per kecamatan and category.",
            ["kecamatan", "category"], registry=r)
        self.lamps_out = Gauge(
            "cityops_lamps_out", "Registered lamps whose latest status is not OK, per kecamatan.",
            ["kecamatan"], registry=r)
        self.lamps_working_ratio = Gauge(
            "cityops_lamps_working_ratio", "Share of registered lamps working, per kecamatan.",
            ["kecamatan"], registry=r)
        self.containers_full = Gauge(
            "cityops_containers_full", "Containers at or above the full threshold, per kecamatan.",
            ["kecamatan"], registry=r)
        self.dispatch_time = Histogram(
            "cityops_incident_dispatch_seconds",
            "Time from an incident's report to its dispatch, per kecamatan.",
            ["kecamatan"], buckets=RESPONSE_BUCKETS_S, registry=r)
        self.on_scene_time = Histogram(
            "cityops_incident_on_scene_seconds",
            "Time from an incident's report to a unit on scene, per kecamatan.",
            ["kecamatan"], buckets=RESPONSE_BUCKETS_S, registry=r)
        # SLA clocks (issue 14). The gauge is set by the leader from the situations topic, like
        # the ward level, so a rebalance leaves no stale copy that counts; the histogram and
        # counter are observed by the ward's owner when a clock stops (KPIs: share within SLA,
        # median and 90th percentile per kecamatan and agency, docs/operations.md).
        self.sla_overdue = Gauge(
            "cityops_sla_overdue_clocks",
            "SLA clocks past their threshold per kelurahan (acknowledge, dispatch, on-scene, "
            "resolve).", ["kelurahan_code", "kelurahan", "kecamatan"], registry=r)
        self.sla_seconds = Histogram(
            "cityops_sla_clock_seconds",
            "Time an SLA clock ran before it stopped (raised situation to acknowledgement; report "
            "to dispatch, on scene, resolved), per clock, kecamatan and assigned agency ('none' "
            "when unassigned).",
            ["clock", "kecamatan", "agency"], buckets=SLA_BUCKETS_S, registry=r)
        self.sla_clocks = Counter(
            "cityops_sla_clocks_total",
            "SLA clocks stopped, by clock, kecamatan, agency and outcome (within, breached).",
            ["clock", "kecamatan", "agency", "outcome"], registry=r)
        self.operator_actions = Counter(
            "cityops_operator_actions_total",
            "Operator actions folded into ward state, by action and outcome (applied, duplicate).",
            ["action", "outcome"], registry=r)
        self.sign_ins = Counter(
            "cityops_board_sign_ins_total",
            "Attempts to sign in to the board, by outcome (succeeded, wrong_password, "
            "throttled: refused unchecked, second_factor_wrong).", ["outcome"], registry=r)
        for outcome in ("succeeded", "wrong_password", "throttled", "second_factor_wrong"):
            self.sign_ins.labels(outcome)
        self.reference_records = Gauge(
            "cityops_reference_records", "Reference records loaded in this worker, by kind.",
            ["kind"], registry=r)
        self.reference_rejected = Counter(
            "cityops_reference_rejected_total",
            "Reference records that could not be used (kept out of the lookup tables).",
            ["kind", "reason"], registry=r)
        self.thresholds_reloads = Counter(
            "cityops_thresholds_reloads_total", "Thresholds file reloads, by outcome.",
            ["outcome"], registry=r)
        self.rt_reports = Counter(
            "cityops_rt_reports_total",
            "RT reports judged, by kecamatan and verdict (VALID, NEEDS_REVIEW, REJECTED) or "
            "outcome (duplicate, superseded: changed nothing).", ["kecamatan", "verdict"],
            registry=r)
        self.rt_review_reasons = Counter(
            "cityops_rt_review_reasons_total",
            "Reasons RT reports need review (processors.neighbourhood.REVIEW_CODES).",
            ["kecamatan", "reason"], registry=r)
        self.neighbourhood_unemployment_rate = Gauge(
            "cityops_neighbourhood_unemployment_rate",
            "Open unemployment rate from VALID RT reports of the latest month indicated, per "
            "kelurahan (ratio 0..1; SYNTHETIC while the registry is).",
            ["kelurahan_code", "kecamatan"], registry=r)
        self.neighbourhood_completeness = Gauge(
            "cityops_neighbourhood_report_completeness",
            "Share of the kelurahan's RTs that reported for the latest month indicated.",
            ["kelurahan_code", "kecamatan"], registry=r)
        self.neighbourhood_review_share = Gauge(
            "cityops_neighbourhood_review_share",
            "Share of the kelurahan's reports of the latest month indicated that need review.",
            ["kelurahan_code", "kecamatan"], registry=r)
        self.ready = Gauge(
            "cityops_worker_ready",
            "1 once the worker's agents run with the reference data read to the end.",
            registry=r)
        self.hop_watermark_lag = Gauge(
            "cityops_hop_watermark_lag_seconds",
            "Event-time seconds between the newest event the batch hop released and its low "
            "watermark (what its slowest input partition holds back; 0 when all are caught "
            "up).", registry=r)
        self.hop_hold_expired = Counter(
            "cityops_hop_hold_expired_total",
            "Input partitions that stopped holding the hop's low watermark back after "
            "delivering nothing for the bound (docs/rules.md).", registry=r)
        self.ward_watermark_held = Gauge(
            "cityops_ward_watermark_held_seconds",
            "Event-time seconds the most held-back ward's watermark is behind the newest event "
            "it folded, because an input channel has not delivered up to it yet.", registry=r)
        self.leader = Gauge(
            "cityops_worker_is_leader",
            "1 on the worker that computes kecamatan and city rollups.", registry=r)
