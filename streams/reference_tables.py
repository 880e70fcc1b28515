"""The reference join: every worker's live wards, assets and latest situations.

Enrichment reads `data()` per event; the ward locator (point-in-polygon index) is rebuilt only
when a ward record changed, and the set of known control cabinets only when an asset record
changed, so a boundary fix or a new lamp published to a reference topic takes effect live
without a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from processors.enrich import ReferenceData, cabinet_ids
from processors.geo import WardLocator
from schemas.codec import CodecError, decode
from streams.compacted_topics import CompactedTopicView, OnChange, follow
from streams.metrics import WorkerMetrics
from streams.settings import WorkerSettings
from topics import catalog
from topics.catalog import TopicCatalog

log = logging.getLogger(__name__)


def _decoder(schema: str) -> Any:
    def run(value: bytes) -> dict[str, Any]:
        return decode(value, expected=schema).record

    return run


class ReferenceTables:
    def __init__(self, settings: WorkerSettings, topics: TopicCatalog,
                 metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.topics = topics
        self.metrics = metrics
        self.wards = self._view(catalog.WARDS, "ward")
        self.assets = self._view(catalog.ASSETS, "asset")
        #: The RT registry (issue 13): RT code -> org.cityops.Neighbourhood.
        self.neighbourhoods = self._view(catalog.NEIGHBOURHOODS, "neighbourhood")
        #: Latest indicator per "<scope>|<period>": the leader rolls kelurahan up from here.
        self.indicators = self._view(catalog.NEIGHBOURHOOD_INDICATORS, "indicator")
        #: Called with (scope_code, situation or None) for every situation record read, in
        #: topic order, on the worker's loop: the board's live feed hangs here.
        self.situation_listeners: list[OnChange] = []
        self.situations = self._view(catalog.SITUATIONS, "situation", self._situation_changed)
        #: More topics to follow with the others (added before the worker starts): the board's
        #: smart-village layer follows the RT verdicts (streams/neighbourhood_web.py).
        self.extra_views: list[CompactedTopicView] = []
        #: The highest `sequence` read per scope code (never lowered, not even by a
        #: tombstone): where a ward or rollup that changes owner continues (issue 12, hole 7).
        self.published_sequences: dict[str, int] = {}
        self._data: ReferenceData | None = None
        self._built_from = -1
        self._assets_counted = -1

    def _situation_changed(self, key: str, record: dict[str, Any] | None) -> None:
        if record is not None and record["sequence"] > self.published_sequences.get(key, 0):
            self.published_sequences[key] = record["sequence"]
        for listener in self.situation_listeners:
            try:
                listener(key, record)
            except Exception:  # a listener must never stop the reference join
                log.exception("situation listener %r failed on %s", listener, key)

    def _view(self, spec: catalog.TopicSpec, kind: str,
              on_change: OnChange | None = None) -> CompactedTopicView:
        def rejected(error: Exception) -> None:
            reason = error.reason if isinstance(error, CodecError) else "undecodable"
            self.metrics.reference_rejected.labels(kind, reason).inc()

        return CompactedTopicView(self.topics.name(spec), _decoder(spec.value_schema),
                                  on_reject=rejected,
                                  on_change=on_change)

    async def follow(self) -> None:
        await follow(self.settings.bootstrap, [self.wards, self.assets, self.situations,
                                               self.neighbourhoods, self.indicators,
                                               *self.extra_views],
                     client_id=f"{self.settings.app_id}-reference")

    async def wait_ready(self) -> None:
        """Block until wards and assets were read to the end offsets seen at start (the ward
        agent also waits for the situations: `situations.caught_up`)."""
        await self.wards.ready.wait()
        await self.assets.ready.wait()
        while not self.wards.values:
            log.warning("no kelurahan in %s yet: run `cityops wards load`", self.wards.topic)
            await asyncio.sleep(5.0)
        self.metrics.ready.set(1)
        log.info("reference data ready: %d wards, %d assets", len(self.wards.values),
                 len(self.assets.values))

    def data(self) -> ReferenceData:
        if self._data is None or self._built_from != self.wards.version:
            self._built_from = self.wards.version
            self._data = ReferenceData(
                wards=self.wards.values,
                assets=self.assets.values,
                locator=WardLocator.from_ward_records(list(self.wards.values.values())),
                cabinets=cabinet_ids(self.assets.values.values()),
            )
            self._assets_counted = self.assets.version
            self.metrics.reference_records.labels("ward").set(len(self.wards.values))
            self.metrics.reference_records.labels("asset").set(len(self.assets.values))
        elif self._assets_counted != self.assets.version:  # per event: only when it changed
            self._assets_counted = self.assets.version
            self._data = dataclasses.replace(
                self._data, cabinets=cabinet_ids(self.assets.values.values()))
            self.metrics.reference_records.labels("asset").set(len(self.assets.values))
        return self._data
