"""The board's smart-village layer (issue 13, part 5): unemployment per kelurahan for a month,
reporting completeness beside it, and a kelurahan's RWs with the reports that need review.

Kept apart from `streams/web.py` (the situation layer) on purpose: its own routes, views and
state, registered by one call (`register_neighbourhood_web`), and its own static script
(`static/village.js`). Every worker already follows the compacted indicator topic (the leader
rolls kelurahan up from it), so any worker serves the layer for the whole city; the reports
needing review come from the validations topic, which this module follows itself.

Routes (GET, documented in docs/board.md):

    /api/neighbourhoods?period=YYYY-MM          every kelurahan's indicator for the month (the
                                                latest month with indicators by default), the
                                                city's, and the months there are
    /api/neighbourhoods/{kelurahan}?period=...  the kelurahan's indicator, its RWs', and its
                                                RTs' current reports that need review

Partner text (a reason may quote a report id) is only ever placed in the page as text
(`textContent`), never as markup. The review index keeps only registered RTs (a verdict with a
kelurahan) and the last `REVIEW_MONTHS` months, so partner data cannot grow it without bound.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

from faust.web import Request, Response, View

from core.vocabulary import CITY_CODE
from processors.neighbourhood import PERIOD_PATTERN
from schemas.codec import decode
from streams.compacted_topics import CompactedTopicView
from streams.web import situation_json
from topics import catalog

if TYPE_CHECKING:
    from streams.context import WorkerContext

log = logging.getLogger(__name__)

REVIEW_MONTHS: Final = 6
"""Months of reports needing review kept (the accepted window of 3 months plus margin)."""
REVIEW_FIELDS: Final = ("rt_code", "rw", "period", "report_id", "revision", "reason_codes",
                        "reasons", "residents", "labour_force", "unemployed", "validated_at")
WARD_FIELDS: Final = ("kelurahan_code", "kelurahan_name", "kecamatan_code", "kecamatan_name")


class ReviewIndex:
    """The current NEEDS_REVIEW verdict of each registered RT and month.

    Fed with every verdict in topic order (the validations topic is keyed by RT, so one RT's
    verdicts arrive in order): NEEDS_REVIEW makes the report one to review, a later VALID one
    for the same RT and month (a correction) takes it off; a REJECTED submission never
    replaced the RT's current report in the worker, so it changes nothing here either.
    """

    def __init__(self, months: int = REVIEW_MONTHS) -> None:
        self.months = months
        self.reviews: dict[tuple[str, str], dict[str, Any]] = {}

    def apply(self, record: Mapping[str, Any]) -> None:
        kelurahan = record.get("kelurahan_code")
        reviewed_out = "review_rejected" in record.get("reason_codes", ())
        if kelurahan is None or (record["verdict"] == "REJECTED" and not reviewed_out):
            return  # an unknown RT has no place on the map; see the class docstring
        key = (str(record["rt_code"]), str(record["period"]))
        if record["verdict"] == "NEEDS_REVIEW":
            self.reviews[key] = {"kelurahan_code": kelurahan,
                                 **{name: record.get(name) for name in REVIEW_FIELDS}}
            self._prune()
        else:
            self.reviews.pop(key, None)

    def _prune(self) -> None:
        periods = sorted({period for _, period in self.reviews})
        if len(periods) > self.months:
            kept = set(periods[-self.months:])
            self.reviews = {key: value for key, value in self.reviews.items()
                            if key[1] in kept}

    def of(self, kelurahan: str, period: str) -> list[dict[str, Any]]:
        return [situation_json(review) for (rt, month), review in sorted(self.reviews.items())
                if month == period and review["kelurahan_code"] == kelurahan]


class ValidationsView(CompactedTopicView):
    """Follows the validations topic into a `ReviewIndex` (nothing else is kept: the topic is
    not compacted and most verdicts are VALID)."""

    def __init__(self, topic: str, index: ReviewIndex) -> None:
        super().__init__(topic, self._decode_validation)
        self.index = index

    @staticmethod
    def _decode_validation(value: bytes) -> dict[str, Any]:
        return decode(value, expected=catalog.RT_VALIDATIONS.value_schema).record

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            return
        try:
            record = self._decode_validation(value)
        except Exception as error:  # a bad record must not stop the follower
            log.warning("%s: unusable verdict: %s", self.topic, error)
            return
        self.index.apply(record)
        self.version += 1


# -- JSON shapes (pure) ------------------------------------------------------------------------


def months(indicators: Iterable[Mapping[str, Any]]) -> list[str]:
    """The months with kelurahan indicators, newest first."""
    return sorted({r["period"] for r in indicators if r["scope_level"] == "KELURAHAN"},
                  reverse=True)


def chosen_month(available: list[str], period: str | None) -> str | None:
    if period is not None and period in available:
        return period
    return available[0] if available else None


def overview_payload(indicators: Mapping[str, Mapping[str, Any]],
                     wards: Mapping[str, Mapping[str, Any]], period: str | None
                     ) -> dict[str, Any]:
    """Body of /api/neighbourhoods: all 43 kelurahan (indicator null when no RT reported)."""
    available = months(indicators.values())
    month = chosen_month(available, period)

    def of(code: str) -> dict[str, Any] | None:
        record = indicators.get(f"{code}|{month}")
        return None if record is None else situation_json(record)

    city = of(CITY_CODE)
    return {
        "period": month, "periods": available,
        "synthetic": any(r["synthetic"] for r in indicators.values()),
        "city": city,
        "kelurahan": [{**{name: ward.get(name) for name in WARD_FIELDS},
                       "indicator": of(code)} for code, ward in sorted(wards.items())],
    }


def kelurahan_payload(code: str, indicators: Mapping[str, Mapping[str, Any]],
                      wards: Mapping[str, Mapping[str, Any]], reviews: ReviewIndex,
                      period: str | None) -> dict[str, Any] | None:
    """Body of /api/neighbourhoods/{kelurahan}; None for an unknown kelurahan."""
    ward = wards.get(code)
    if ward is None:
        return None
    month = chosen_month(months(indicators.values()), period)
    kelurahan = indicators.get(f"{code}|{month}")
    rws = sorted((r for r in indicators.values()
                  if r["scope_level"] == "RW" and r["period"] == month
                  and str(r["scope_code"]).startswith(f"{code}.")),
                 key=lambda r: str(r["scope_code"]))
    return {
        "kelurahan": {name: ward.get(name) for name in WARD_FIELDS},
        "period": month,
        "indicator": None if kelurahan is None else situation_json(kelurahan),
        "rws": [{**situation_json(r), "rw": str(r["scope_code"]).rsplit(".", 1)[1]}
                for r in rws],
        "review": [] if month is None else reviews.of(code, month),
    }


# -- Faust views -----------------------------------------------------------------------------


class VillageView(View):
    layer: ClassVar[NeighbourhoodLayer]

    def period(self, request: Request) -> str | Response | None:
        """The `period` query parameter, None when absent, a 400 response when malformed."""
        value = request.query.get("period")
        if value in (None, ""):
            return None
        if PERIOD_PATTERN.fullmatch(str(value)) is None:
            return self.json({"error": "period must be YYYY-MM"}, status=400)
        return str(value)


class Overview(VillageView):
    async def get(self, request: Request) -> Response:
        period = self.period(request)
        if isinstance(period, Response):
            return period
        return self.json(self.layer.overview(period))


class KelurahanDetail(VillageView):
    async def get(self, request: Request, code: str) -> Response:
        period = self.period(request)
        if isinstance(period, Response):
            return period
        payload = self.layer.kelurahan(code, period)
        if payload is None:
            return self.json({"error": "unknown kelurahan", "code": code[:40]}, status=404)
        return self.json(payload)


class NeighbourhoodLayer:
    """The layer's state (the review index) and routes on one worker's Faust app."""

    def __init__(self, context: WorkerContext) -> None:
        self.context = context
        self.reviews = ReviewIndex()
        self.view = ValidationsView(context.topics.name(catalog.RT_VALIDATIONS), self.reviews)

    def overview(self, period: str | None) -> dict[str, Any]:
        references = self.context.references
        return overview_payload(references.indicators.values, references.wards.values, period)

    def kelurahan(self, code: str, period: str | None) -> dict[str, Any] | None:
        references = self.context.references
        return kelurahan_payload(code, references.indicators.values, references.wards.values,
                                 self.reviews, period)

    def register(self) -> None:
        self.context.references.extra_views.append(self.view)
        for path, view, name in (
                ("/api/neighbourhoods", Overview, "api-neighbourhoods"),
                ("/api/neighbourhoods/{code}", KelurahanDetail, "api-neighbourhood")):
            bound = type(view.__name__, (view,), {"layer": self, "__module__": __name__})
            self.context.app.page(path, name=name)(bound)


def register_neighbourhood_web(context: WorkerContext) -> NeighbourhoodLayer:
    """Serve the smart-village layer's API; call before the worker starts (with the board)."""
    layer = NeighbourhoodLayer(context)
    layer.register()
    return layer
