"""The board at any past moment (issue 21, part 2): its JSON routes, read from the history store.

Kept apart from `streams/web.py` (the live board) like the smart-village layer: own routes,
registered by one call (`register_history_web`), own script (`static/history.js`). The routes
sit behind the board's sign-in like every other (`streams/auth.py` guards every path that is
not the sign-in page or a static file), and each call runs in a thread (`asyncio.to_thread`),
off the loop the agents share. The store is `CITYOPS_HISTORY_URL` (default: the embedded
SQLite file the demo's sink fills).

Routes (GET, documented in docs/board.md):

    /api/history/situations?at=T               every scope's situation as it was at T (ISO 8601
                                               or epoch ms): the same body as /api/situations
    /api/history/wards/{code}/timeline?hours=H  the kelurahan's level changes over the last H
                                               hours (24 or 168 on the board), with reasons
    /api/history/cases?kelurahan=&kecamatan=&agency=&category=&from=&to=&outcome=
                                               closed cases (outcome: closed, default; open;
                                               all) reported in [from, to) (YYYY-MM-DD, WIB)
    /api/reports/monthly?month=YYYY-MM&kecamatan=CODE
                                               the month's report (processors/reports.py) for
                                               a kecamatan, or the city without `kecamatan`
    /api/reports/monthly.csv?month=&kecamatan=&section=sla|incidents|assets|unemployment
                                               one section as a CSV download
    /board/report                              the printable report page (static/report.html)
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Final

from faust.web import Request, Response, View

from core.reference_data import load_ward_records
from processors.operations import AGENCY_NAMES
from processors.reports import ReportError, csv_rows
from processors.state import from_ms, to_ms
from processors.thresholds import SlaRules
from streams.history_store import HistoryError, HistoryStore
from streams.web import BOARD_PATH, STATIC_DIR, iso, situations_payload

if TYPE_CHECKING:
    from streams.context import WorkerContext

WIB: Final = timezone(timedelta(hours=7), "WIB")
#: Longest timeline the API gives (the board asks for 24 h and 7 days).
MAX_TIMELINE_HOURS: Final = 31 * 24
#: Cases one search returns at most (newest first).
MAX_CASES: Final = 500
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_CODE: Final = re.compile(r"36\.72(\.\d{2}(\.\d{4})?)?")


class QueryError(ValueError):
    """A query parameter is malformed; the message goes back with a 400."""


def parse_time(value: str | None, now: datetime) -> datetime:
    """T of `?at=`: epoch milliseconds or ISO 8601 (a time without zone is WIB, the command
    center's clock); absent means now."""
    if value in (None, ""):
        return now
    assert value is not None
    if value.isdigit():
        return from_ms(int(value))
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError("at must be ISO 8601 (e.g. 2026-11-23T14:05) or epoch ms") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=WIB)).astimezone(UTC)


def day_start(value: str | None, name: str) -> int | None:
    """Epoch ms of a YYYY-MM-DD's midnight in WIB."""
    if value in (None, ""):
        return None
    assert value is not None
    if _DATE.fullmatch(value) is None:
        raise QueryError(f"{name} must be YYYY-MM-DD")
    return to_ms(datetime.fromisoformat(value).replace(tzinfo=WIB))


def _code(value: str | None, name: str) -> str | None:
    if value in (None, ""):
        return None
    assert value is not None
    if _CODE.fullmatch(value) is None:
        raise QueryError(f"{name} must be a Kemendagri code such as 36.72.01.1001")
    return value


def _time_or_none(millis: int | None) -> str | None:
    return None if millis is None else iso(from_ms(millis))


def case_json(case: Mapping[str, Any], rules: SlaRules | None = None) -> dict[str, Any]:
    """A case for the API: times as ISO text, its stage durations in seconds and, with the SLA
    rules, each clock's limit and whether the stage came within it (None: not reached)."""
    body: dict[str, Any] = {key: (_time_or_none(value) if key.endswith("_ms") else value)
                            for key, value in case.items()}
    body = {key.removesuffix("_ms"): value for key, value in body.items()}
    start = case["reported_at_ms"]
    for stage in ("dispatched", "on_scene", "resolved"):
        done = case[f"{stage}_at_ms"]
        body[f"{stage}_after_s"] = None if done is None or start is None \
            else max(0, done - start) / 1000
    body["agency_name"] = AGENCY_NAMES.get(case["assigned_agency"] or "", None)
    if rules is not None:
        verdicts: dict[str, dict[str, Any]] = {}
        for clock, stage in (("dispatch", "dispatched"), ("on_scene", "on_scene"),
                             ("resolve", "resolved")):
            limit = rules.limit_seconds(clock, case["category"], case["assigned_agency"])
            taken: float | None = body[f"{stage}_after_s"]
            verdicts[clock] = {"limit_s": limit, "within": None if limit is None
                               or taken is None else taken <= limit}
        body["sla"] = verdicts
    return body


class HistoryApi:
    """The store queries behind the routes; plain methods so tests call them without a web
    server. `rules` gives the worker's current SLA rules (they are re-read with the
    thresholds file)."""

    def __init__(self, store: HistoryStore, rules: Callable[[], SlaRules] = SlaRules) -> None:
        self.store = store
        self.rules = rules

    def report(self, query: Mapping[str, str]) -> dict[str, Any]:
        month = query.get("month") or ""
        kecamatan = _code(query.get("kecamatan"), "kecamatan")
        if kecamatan is not None and kecamatan.count(".") != 2:
            raise QueryError("kecamatan must be a kecamatan code such as 36.72.01")
        try:
            body = self.store.monthly_report(month, kecamatan, self.rules())
        except ReportError as error:
            raise QueryError(str(error)) from None
        wards = {w["kelurahan_code"]: w for w in load_ward_records()}
        body["names"] = {code: w["kelurahan_name"] for code, w in wards.items()}
        body["names"].update({w["kecamatan_code"]: w["kecamatan_name"] for w in wards.values()})
        return body

    def report_csv(self, query: Mapping[str, str]) -> tuple[str, str]:
        """(file name, CSV text) of one section."""
        section = query.get("section") or "sla"
        report = self.report(query)
        try:
            header, rows = csv_rows(report, section)
        except ReportError as error:
            raise QueryError(str(error)) from None
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        scope = report["kecamatan"] or "36.72"
        return f"cityops-{section}-{report['month']}-{scope}.csv", out.getvalue()

    def situations_at(self, at: datetime) -> dict[str, Any]:
        found = self.store.situations_at(to_ms(at))
        payload = situations_payload({s["scope_code"]: s for s in found}, True, ())
        payload.pop("asset_registry")
        return {"at": iso(at), "history": True, **payload}

    def timeline(self, code: str, hours: float, now: datetime) -> dict[str, Any]:
        since = now - timedelta(hours=hours)
        changes = self.store.level_changes(code, to_ms(since), to_ms(now))
        return {"code": code, "since": iso(since), "until": iso(now), "changes": [
            {"at": iso(from_ms(c["at_ms"])), "sequence": c["sequence"], "level": c["level"],
             "reasons": c["reasons"], "kind": c["kind"], "opening": c["opening"]}
            for c in changes]}

    def cases(self, query: Mapping[str, str]) -> dict[str, Any]:
        kelurahan = _code(query.get("kelurahan"), "kelurahan")
        kecamatan = _code(query.get("kecamatan"), "kecamatan")
        agency = query.get("agency") or None
        if agency is not None and agency not in AGENCY_NAMES:
            raise QueryError(f"agency must be one of {', '.join(AGENCY_NAMES)}")
        category = query.get("category") or None
        if category is not None and not re.fullmatch(r"[A-Z_]{2,40}", category):
            raise QueryError("category must be an incident category such as FLOOD")
        outcome = query.get("outcome") or "closed"
        if outcome not in ("closed", "open", "all"):
            raise QueryError("outcome must be closed, open or all")
        since, until = day_start(query.get("from"), "from"), day_start(query.get("to"), "to")
        found = self.store.cases(ward_codes=[kelurahan] if kelurahan else (),
                                 since_ms=since, until_ms=until)
        chosen = [c for c in found
                  if (kecamatan is None or c["kecamatan_code"] == kecamatan)
                  and (agency is None or c["assigned_agency"] == agency)
                  and (category is None or c["category"] == category)
                  and (outcome == "all" or (c["outcome"] == "OPEN") == (outcome == "open"))]
        chosen.sort(key=lambda c: -(c["reported_at_ms"] or 0))
        rules = self.rules()
        return {"count": len(chosen),
                "cases": [case_json(c, rules) for c in chosen[:MAX_CASES]],
                "truncated": len(chosen) > MAX_CASES}


class HistoryView(View):
    api: ClassVar[HistoryApi]

    async def answer(self, call: Any, *args: Any) -> Response:
        try:
            return self.json(await asyncio.to_thread(call, *args))
        except QueryError as error:
            return self.json({"error": str(error)}, status=400)
        except HistoryError as error:
            return self.json({"error": f"history store unavailable: {error}"}, status=503)


class MonthlyReport(HistoryView):
    async def get(self, request: Request) -> Response:
        return await self.answer(self.api.report, dict(request.query))


class MonthlyReportCsv(HistoryView):
    async def get(self, request: Request) -> Response:
        try:
            name, text = await asyncio.to_thread(self.api.report_csv, dict(request.query))
        except QueryError as error:
            return self.json({"error": str(error)}, status=400)
        except HistoryError as error:
            return self.json({"error": f"history store unavailable: {error}"}, status=503)
        return self.bytes(text.encode(), content_type="text/csv",
                          headers={"Content-Disposition": f'attachment; filename="{name}"'})


class ReportPage(View):
    async def get(self, request: Request) -> Response:
        return self.bytes((STATIC_DIR / "report.html").read_bytes(), content_type="text/html",
                          headers={"Cache-Control": "no-cache"})


class PastSituations(HistoryView):
    async def get(self, request: Request) -> Response:
        try:
            at = parse_time(request.query.get("at"), datetime.now(UTC))
        except QueryError as error:
            return self.json({"error": str(error)}, status=400)
        return await self.answer(self.api.situations_at, at)


class WardTimeline(HistoryView):
    async def get(self, request: Request, code: str) -> Response:
        try:
            checked = _code(code, "code")
            hours = float(request.query.get("hours") or 24)
        except (QueryError, ValueError):
            return self.json({"error": "code must be a kelurahan code, hours a number"},
                             status=400)
        if checked is None or not 0 < hours <= MAX_TIMELINE_HOURS:
            return self.json({"error": f"hours must be in (0, {MAX_TIMELINE_HOURS}]"},
                             status=400)
        return await self.answer(self.api.timeline, checked, hours, datetime.now(UTC))


class CaseSearch(HistoryView):
    async def get(self, request: Request) -> Response:
        return await self.answer(self.api.cases, dict(request.query))


def register_history_web(context: WorkerContext, rules: Callable[[], SlaRules] = SlaRules,
                         store: HistoryStore | None = None) -> HistoryApi:
    """Serve the history routes on the worker's web server; call before it starts."""
    api = HistoryApi(store or HistoryStore.from_env(), rules)
    context.app.page(f"{BOARD_PATH}report", name="board-report")(ReportPage)
    for path, view, name in (
            ("/api/reports/monthly", MonthlyReport, "api-reports-monthly"),
            ("/api/reports/monthly.csv", MonthlyReportCsv, "api-reports-monthly-csv"),
            ("/api/history/situations", PastSituations, "api-history-situations"),
            ("/api/history/wards/{code}/timeline", WardTimeline, "api-history-timeline"),
            ("/api/history/cases", CaseSearch, "api-history-cases")):
        bound = type(view.__name__, (view,), {"api": api, "__module__": __name__})
        context.app.page(path, name=name)(bound)
    return api
