"""RT reports through the worker (issue 13): screened, judged per kelurahan, indicated.

    city.neighbourhood.reports.v1 (keyed by RT code)
      -> screen agent: decode + `processors.neighbourhood.screen_report` (registry, clock)
         REJECTED -> city.deadletter.v1 (personal data: value withheld) + its verdict
      -> city.neighbourhood.reports.enriched.v1 (the screened record, `screened_bytes`: not the
         partner's bytes, no note; keyed by kelurahan code)
      -> judge agent: `KelurahanReports.judge` on the kelurahan's entry in the
         `neighbourhood_state` table (continuity, duplicates, revisions, outliers)
      -> city.neighbourhood.validations.v1 (keyed by RT code): VALID or NEEDS_REVIEW
      -> city.neighbourhood.indicators.v1 (compacted, "<scope>|<period>"): the kelurahan and
         its RWs after each batch; kecamatan and city by the leader from the kelurahan ones.

The state is kept per kelurahan, not per RT, because the outlier test compares an RT with the
other RTs of its RW and kelurahan: the repartition by kelurahan brings them to one worker, as
the enriched topics bring a ward's events to its owner. It is bounded by
`KelurahanReports.prune` (the accepted window plus one month). Every failure is caught per
event and dead-lettered: Faust acks and skips an event whose processing raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import faust

from core.rejections import Rejection
from processors.neighbourhood import (
    Judgement,
    KelurahanReports,
    current_month,
    kelurahan_indicators,
    read_report,
    read_review,
    rejected_validation,
    review_validation,
    rollups,
    screen_report,
    screened_bytes,
    validation,
)
from processors.thresholds import Thresholds
from schemas.codec import encode
from streams.context import Record, WorkerContext
from topics import catalog

log = logging.getLogger(__name__)

BATCH = 500
BATCH_WITHIN_S = 0.05
ROLLUP_INTERVAL_S = 2.0


class NeighbourhoodAgents:
    def __init__(self, context: WorkerContext, thresholds: Callable[[], Thresholds]) -> None:
        self.context = context
        self.app = context.app
        self.metrics = context.metrics
        self.references = context.references
        self.thresholds = thresholds
        self.schema = catalog.RT_REPORTS.value_schema
        self.table = self.app.Table(
            "neighbourhood_state", default=None, partitions=catalog.WARD_PARTITIONS,
            key_type=str, help="Per-kelurahan RT reports of the accepted window (JSON).")
        self._by_kelurahan: dict[str, list[dict[str, Any]]] = {}
        self._registry_version = -1
        self._gauge_period: dict[str, str] = {}

    def wire(self) -> None:
        self.app.agent(self.context.raw_topic(catalog.RT_REPORTS),
                       name="cityops.rt_screen")(self._screen_agent)
        self.app.agent(self.context.raw_topic(catalog.RT_REPORTS_BY_KELURAHAN),
                       name="cityops.rt_judge")(self._judge_agent)
        self.app.agent(self.context.raw_topic(catalog.RT_REVIEWS),
                       name="cityops.rt_review")(self._review_agent)

        async def rollup_tick() -> None:
            await self.rollups()

        self.app.timer(ROLLUP_INTERVAL_S)(rollup_tick)

    # -- registry ----------------------------------------------------------------------------

    @property
    def registry(self) -> Mapping[str, dict[str, Any]]:
        return cast(Mapping[str, dict[str, Any]], self.references.neighbourhoods.values)

    def registered(self, kelurahan_code: str) -> list[dict[str, Any]]:
        """The kelurahan's RTs in the registry, indexed again only when the registry changed."""
        version = self.references.neighbourhoods.version
        if version != self._registry_version:
            self._registry_version = version
            index: dict[str, list[dict[str, Any]]] = {}
            for record in self.registry.values():
                index.setdefault(record["kelurahan_code"], []).append(record)
            self._by_kelurahan = index
        return self._by_kelurahan.get(kelurahan_code, [])

    async def _ready(self) -> None:
        await self.references.wait_ready()
        await self.references.neighbourhoods.ready.wait()
        await self.references.indicators.ready.wait()

    # -- hop 1: the screen -------------------------------------------------------------------

    async def _screen_agent(self, stream: faust.StreamT[bytes]) -> None:
        await self._ready()
        target = self.context.topics.name(catalog.RT_REPORTS_BY_KELURAHAN)
        batches = cast(faust.Stream[bytes], stream).take_events(BATCH, within=BATCH_WITHIN_S)
        async for events in batches:
            records = []
            for event in events:
                record = await self.screen(event)
                if record is not None:
                    records.append(record)
            await self.context.send_batch(target, records)

    async def screen(self, event: faust.EventT[bytes]) -> Record | None:
        """The screened report placed in its kelurahan, or None when it was dead-lettered."""
        message = event.message
        now = datetime.now(UTC)
        report: dict[str, Any] | None = None
        try:
            report = read_report(message.value, message.topic, self.schema)
            rt = screen_report(report, self.registry, self.thresholds().neighbourhood, now)
        except Rejection as error:
            await self.context.send_dead_letter(event, error.stage, error.reason, error)
            if report is not None:
                known = self.registry.get(report["rt_code"])
                await self._send_validation(rejected_validation(report, known, error, now))
                self._count(known, "REJECTED")
            return None
        except Exception as error:
            log.exception("screening failed on %s@%d", message.topic, message.offset)
            await self.context.send_dead_letter(event, "PROCESS", "processing_error", error)
            return None
        code: str = rt["kelurahan_code"]
        return (self.context.ward_partition(code), code.encode(),
                screened_bytes(report, self.schema))

    # -- hop 2: the judgement ----------------------------------------------------------------

    async def _judge_agent(self, stream: faust.StreamT[bytes]) -> None:
        await self._ready()
        batches = cast(faust.Stream[bytes], stream).take_events(BATCH, within=BATCH_WITHIN_S)
        async for events in batches:
            touched: set[tuple[str, str]] = set()
            for event in events:
                placed = await self.judge(event)
                if placed is not None:
                    touched.add(placed)
            for kelurahan_code, period in sorted(touched):
                await self._publish_indicators(kelurahan_code, period)

    async def judge(self, event: faust.EventT[bytes]) -> tuple[str, str] | None:
        """Judge one screened report; (kelurahan, period) when it changed the kelurahan."""
        message = event.message
        now = datetime.now(UTC)
        try:
            report = read_report(message.value, message.topic, self.schema, trusted=True)
            rt = self.registry.get(report["rt_code"])
            if rt is None:  # the registry lost the RT between the two hops
                raise Rejection("ENRICH", "unknown_rt",
                                f"RT {report['rt_code']!r} left the registry")
            rules = self.thresholds().neighbourhood
            code: str = rt["kelurahan_code"]
            reports = KelurahanReports.from_json(self.table.get(code))
            judgement: Judgement = reports.judge(report, rules)
            reports.prune(current_month(now), rules)
            self._save(code, reports, message.partition)
        except Rejection as error:
            await self.context.send_dead_letter(event, error.stage, error.reason, error)
            return None
        except Exception as error:
            log.exception("judging failed on %s@%d", message.topic, message.offset)
            await self.context.send_dead_letter(event, "PROCESS", "processing_error", error)
            return None
        if judgement.verdict is None:
            self._count(rt, judgement.outcome)
            return None
        self._count(rt, judgement.verdict)
        for reason in judgement.codes:
            self.metrics.rt_review_reasons.labels(rt["kecamatan_code"], reason).inc()
        await self._send_validation(validation(report, rt, judgement.verdict, judgement.codes,
                                               judgement.reasons, now))
        return code, report["period"]

    def _save(self, code: str, reports: KelurahanReports, partition: int) -> None:
        """What `table[code] = value` does, with the record's own partition (the enriched and
        reviews topics are co-partitioned with the table by kelurahan): Faust would take it
        from the current event, and inside a `take_events` batch there is none, so the
        assignment raised "Cannot modify table key from outside of stream iteration"."""
        value = reports.to_json()
        self.table.data[code] = value
        self.table.send_changelog(partition, code, value)

    # -- reviewers' decisions (issue 23) -------------------------------------------------------

    async def _review_agent(self, stream: faust.StreamT[bytes]) -> None:
        """Reviewers' decisions, keyed and partitioned by kelurahan like the screened reports,
        so the worker that holds a kelurahan's entry applies them (one at a time: rare)."""
        await self._ready()
        async for event in cast(faust.Stream[bytes], stream).events():
            placed = await self.review(event)
            if placed is not None:
                await self._publish_indicators(*placed)

    async def review(self, event: faust.EventT[bytes]) -> tuple[str, str] | None:
        message = event.message
        now = datetime.now(UTC)
        try:
            decision = read_review(message.value, message.topic)
            rt = self.registry.get(decision["rt_code"])
            if rt is None or rt["kelurahan_code"] != decision["kelurahan_code"]:
                raise Rejection("ENRICH", "unknown_rt",
                                f"RT {decision['rt_code'][:40]!r} is not in kelurahan "
                                f"{decision['kelurahan_code'][:20]!r}")
            code: str = rt["kelurahan_code"]
            reports = KelurahanReports.from_json(self.table.get(code))
            judgement = reports.review(decision, self.thresholds().neighbourhood)
            self._save(code, reports, message.partition)
        except Rejection as error:
            await self.context.send_dead_letter(event, error.stage, error.reason, error)
            return None
        except Exception as error:
            log.exception("review failed on %s@%d", message.topic, message.offset)
            await self.context.send_dead_letter(event, "PROCESS", "processing_error", error)
            return None
        assert judgement.verdict is not None
        self._count(rt, judgement.verdict)
        await self._send_validation(review_validation(reports, decision, rt, judgement, now))
        log.info("review %s of %s %s by %s", decision["decision"], decision["rt_code"],
                 decision["period"], decision["reviewer_id"])
        return code, decision["period"]

    def _count(self, rt: Mapping[str, Any] | None, verdict: str) -> None:
        kecamatan = "unknown" if rt is None else rt["kecamatan_code"]
        self.metrics.rt_reports.labels(kecamatan, verdict).inc()

    async def _send_validation(self, record: dict[str, Any]) -> None:
        await self.context.raw_topic(catalog.RT_VALIDATIONS).send(
            key=record["rt_code"].encode(),
            value=encode(catalog.RT_VALIDATIONS.value_schema, record))

    # -- indicators ----------------------------------------------------------------------------

    async def _send_indicator(self, record: dict[str, Any]) -> None:
        await self.context.raw_topic(catalog.NEIGHBOURHOOD_INDICATORS).send(
            key=f"{record['scope_code']}|{record['period']}".encode(),
            value=encode(catalog.NEIGHBOURHOOD_INDICATORS.value_schema, record))

    async def _publish_indicators(self, kelurahan_code: str, period: str) -> None:
        registered = self.registered(kelurahan_code)
        reports = KelurahanReports.from_json(self.table.get(kelurahan_code))
        for record in kelurahan_indicators(kelurahan_code, registered, reports, period,
                                           datetime.now(UTC), self.thresholds().neighbourhood):
            await self._send_indicator(record)
            if record["scope_level"] == "KELURAHAN":
                self._gauge(record, registered[0]["kecamatan_code"] if registered else "")

    def _gauge(self, record: Mapping[str, Any], kecamatan: str) -> None:
        """The kelurahan's gauges show its latest month: an older month's update is not."""
        code = record["scope_code"]
        if record["period"] < self._gauge_period.get(code, ""):
            return
        self._gauge_period[code] = record["period"]
        labels = (code, kecamatan)
        rate = record["unemployment_rate"]
        self.metrics.neighbourhood_unemployment_rate.labels(*labels).set(
            float("nan") if rate is None else rate)
        self.metrics.neighbourhood_completeness.labels(*labels).set(record["completeness"])
        share = record["review_share"]
        self.metrics.neighbourhood_review_share.labels(*labels).set(
            float("nan") if share is None else share)

    async def rollups(self) -> None:
        """On the leader: kecamatan and city indicators from the latest kelurahan ones, sent
        only when their counts changed (the compacted topic holds the last one)."""
        if not self.app.is_leader() or not self.references.indicators.ready.is_set():
            return
        published = self.references.indicators.values
        self.registered("")  # re-index first if the registry changed
        registered = {code: len(rts) for code, rts in self._by_kelurahan.items()}
        kecamatan_of = {code: rts[0]["kecamatan_code"]
                        for code, rts in self._by_kelurahan.items() if rts}
        for record in rollups(published.values(), registered, kecamatan_of, datetime.now(UTC)):
            old = published.get(f"{record['scope_code']}|{record['period']}")
            if old is None or _counts(old) != _counts(record):
                await self._send_indicator(record)


def _counts(record: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(record[name] for name in ("rt_registered", "rt_reported", "rt_valid",
                                           "rt_needs_review", "residents", "labour_force",
                                           "unemployed", "withheld"))
