"""The command-center situation board and its JSON API, served by the worker's own Faust web server.

Why it lives in the worker: every worker already holds the whole city's latest situations
(`context.references.situations`, a live copy of the compacted situation topic), so any worker
can serve the board for all 43 kelurahan, whichever partitions it processes; scaling out only
adds more places to open it. No second web framework: the routes are Faust views on Faust's
aiohttp driver, and the live feed is an aiohttp StreamResponse returned from a Faust view
(the driver hands whatever the view returns straight to aiohttp).

Routes (all GET, documented for partners in docs/board.md):

    /board/                        the page (static files in streams/static, no build step)
    /board/static/...              its script and stylesheet
    /board/wards.geojson           the packaged kelurahan boundaries, served as they are
    /board/kecamatan.geojson       kecamatan outlines derived from those boundaries
    /api/situations                every current situation: city, kecamatan, kelurahan
    /api/wards/{code}              one kelurahan: reference data, situation, recent changes
    /api/situations/stream         server-sent events: the full picture, then every change

Faust's built-in `/table` and `/router` endpoints are switched off here: `/table` serves raw
ward state (incident ids, container ids) to anyone who can reach the port, and `/router`
lists every worker's address; the board needs neither.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, cast

from aiohttp import web as aioweb
from faust.web import Request, Response, View
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from core.reference_data import BOUNDARIES_GEOJSON, load_kecamatan
from core.vocabulary import level_rank
from processors.geo import segment_distance
from processors.scopes import Scope, scoped_situation, scoped_situations, sees_situation, sees_ward

if TYPE_CHECKING:
    from streams.context import WorkerContext

log = logging.getLogger(__name__)

BOARD_PATH: Final = "/board/"
STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
#: Worst first; the order of the side list and of the legend.
#: Situation changes kept per kelurahan for the detail panel.
HISTORY_LENGTH: Final = 10
#: A comment line this often keeps proxies from closing an idle stream and lets the server
#: notice a browser that went away.
KEEPALIVE_S: Final = 15.0
#: Messages queued for one slow browser before it is dropped; it reconnects and gets a fresh
#: full picture, which is cheaper than buffering without bound.
MAX_PENDING: Final = 2000
#: What EventSource waits before reconnecting, in ms.
RETRY_MS: Final = 2000
#: Fields of a situation kept in a kelurahan's recent-changes list.
CHANGE_FIELDS: Final = (
    "sequence", "emitted_at", "last_event_at", "caused_by_event_id", "level", "reasons",
    "open_incidents", "lamps_out", "containers_full", "mean_dispatch_seconds",
    "mean_on_scene_seconds",
)
#: Ward record fields the API returns; the boundary is left out (it is /board/wards.geojson).
WARD_FIELDS: Final = (
    "kelurahan_code", "kelurahan_name", "kecamatan_code", "kecamatan_name", "centroid_lat",
    "centroid_lon", "postal_code", "bps_code", "population", "area_km2",
)

#: How far apart two kelurahan borders may run and still count as one shared border when
#: deriving kecamatan outlines (see `kecamatan_outlines`).
OUTLINE_SNAP_M: Final = 20.0
_M_PER_DEG_LAT: Final = 110_574.0
_M_PER_DEG_LON: Final = 111_320.0 * math.cos(math.radians(-6.0))  # Cilegon lies at about 6 S

Point = tuple[float, float]
Edge = tuple[Point, Point]


# -- JSON shapes (pure) --------------------------------------------------------------------------


def iso(value: datetime) -> str:
    """UTC ISO 8601 with milliseconds and a Z: what Avro timestamp-millis can hold, exactly."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def situation_json(situation: Mapping[str, Any]) -> dict[str, Any]:
    """A decoded SituationEvent as JSON: same field names and order, timestamps as ISO text
    (also inside its cases and timelines)."""
    return {key: _json_value(value) for key, value in situation.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    return value


def board_order(situations: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Worst level first, then by code, so wards of one kecamatan stay together."""
    return sorted(situations, key=lambda s: (-level_rank(s["level"]), s["scope_code"]))


def situations_payload(situations: Mapping[str, Mapping[str, Any]], ready: bool,
                       assets: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Body of /api/situations and of the stream's first `snapshot` event."""
    by_scope: dict[str, list[Mapping[str, Any]]] = {"CITY": [], "KECAMATAN": [], "KELURAHAN": []}
    for situation in situations.values():
        by_scope.setdefault(situation["scope"], []).append(situation)
    city = by_scope["CITY"][0] if by_scope["CITY"] else None
    registry = list(assets)
    return {
        "ready": ready,
        "city": situation_json(city) if city is not None else None,
        "kecamatan": [situation_json(s) for s in
                      sorted(by_scope["KECAMATAN"], key=lambda s: str(s["scope_code"]))],
        "kelurahan": [situation_json(s) for s in board_order(by_scope["KELURAHAN"])],
        "asset_registry": {
            "assets": len(registry),
            "synthetic": sum(1 for asset in registry if asset.get("synthetic")),
        },
    }


def ward_payload(ward: Mapping[str, Any], situation: Mapping[str, Any] | None,
                 changes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Body of /api/wards/{code}; `changes` newest first."""
    return {
        "ward": {name: ward.get(name) for name in WARD_FIELDS},
        "situation": situation_json(situation) if situation is not None else None,
        "recent_changes": [situation_json(change) for change in changes],
    }


def sse_message(event: str, data: Any) -> bytes:
    """One server-sent event; compact JSON has no newline, so one `data:` line suffices."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event}\ndata: {text}\n\n".encode()


def kecamatan_outlines(collection: Mapping[str, Any],
                       snap_m: float = OUTLINE_SNAP_M) -> dict[str, Any]:
    """Kecamatan outlines as a GeoJSON FeatureCollection of MultiLineStrings.

    An edge of a kelurahan lies on its kecamatan's outline unless another kelurahan of the same
    kecamatan shares it. Most shared borders share their vertices, so an edge met twice is
    inside; the simplified polygons were simplified one by one, though, so some shared borders
    run a few metres apart with different vertices: an edge whose midpoint lies within `snap_m`
    of a neighbour of the same kecamatan counts as inside too. Deriving the outlines keeps one
    boundary file as the only source, with no geometry library.
    """
    wards = [_WardEdges.of(feature) for feature in collection["features"]]
    counts: dict[str, Counter[Edge]] = {}
    for ward in wards:
        counter = counts.setdefault(ward.kecamatan, Counter())
        counter.update(_key(a, b) for a, b in ward.edges)
    centroids = {k.code: k for k in load_kecamatan()}
    features = []
    for code in sorted(counts):
        members = [w for w in wards if w.kecamatan == code]
        outline = [
            (a, b) for ward in members for a, b in ward.edges
            if counts[code][_key(a, b)] == 1
            and not any(other.near(_midpoint(a, b), snap_m) for other in members
                        if other is not ward)
        ]
        info = centroids.get(code)
        features.append({
            "type": "Feature",
            "properties": {
                "kecamatan_code": code,
                "kecamatan_name": info.name if info else code,
                "centroid_lat": info.centroid_lat if info else None,
                "centroid_lon": info.centroid_lon if info else None,
            },
            "geometry": {"type": "MultiLineString",
                         "coordinates": [[list(p) for p in line] for line in _chain(outline)]},
        })
    return {"type": "FeatureCollection", "source": collection.get("source"),
            "features": features}


def _key(a: Point, b: Point) -> Edge:
    return (a, b) if a < b else (b, a)


def _midpoint(a: Point, b: Point) -> Point:
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)


def _metres(point: Point) -> Point:
    """Local equirectangular metres: plenty for distances of a few metres inside one city."""
    return (point[0] * _M_PER_DEG_LON, point[1] * _M_PER_DEG_LAT)


@dataclass(frozen=True)
class _WardEdges:
    code: str
    kecamatan: str
    edges: list[Edge]
    metric: list[tuple[Point, Point]]
    bounds: tuple[float, float, float, float]

    @classmethod
    def of(cls, feature: Mapping[str, Any]) -> _WardEdges:
        edges: list[Edge] = []
        for ring in _rings(feature["geometry"]):
            points = [(float(p[0]), float(p[1])) for p in ring]
            edges.extend((a, b) for a, b in pairwise(points) if a != b)
        metric = [(_metres(a), _metres(b)) for a, b in edges]
        xs = [x for edge in metric for x, _ in edge]
        ys = [y for edge in metric for _, y in edge]
        return cls(feature["properties"]["kelurahan_code"],
                   feature["properties"]["kecamatan_code"], edges, metric,
                   (min(xs), min(ys), max(xs), max(ys)))

    def near(self, point: Point, distance_m: float) -> bool:
        px, py = _metres(point)
        x0, y0, x1, y1 = self.bounds
        if not (x0 - distance_m <= px <= x1 + distance_m
                and y0 - distance_m <= py <= y1 + distance_m):
            return False
        return any(segment_distance(px, py, *a, *b) <= distance_m for a, b in self.metric)


def _rings(geometry: Mapping[str, Any]) -> list[list[list[float]]]:
    if geometry["type"] == "Polygon":
        return list(geometry["coordinates"])
    if geometry["type"] == "MultiPolygon":
        return [ring for polygon in geometry["coordinates"] for ring in polygon]
    raise ValueError(f"unsupported boundary geometry {geometry['type']}")


def _chain(edges: list[Edge]) -> list[list[Point]]:
    """Join loose edges into as few polylines as possible (fewer, smoother SVG paths)."""
    neighbours: dict[Point, list[Point]] = {}
    for a, b in edges:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    unused = {_key(a, b) for a, b in edges}
    lines: list[list[Point]] = []
    # start at line ends (odd degree) first so open chains are not cut in the middle
    starts = sorted(p for p, n in neighbours.items() if len(n) % 2) + sorted(neighbours)
    for start in starts:
        while True:
            line = [start]
            point = start
            while True:
                step = next((n for n in neighbours[point] if _key(point, n) in unused), None)
                if step is None:
                    break
                unused.discard(_key(point, step))
                line.append(step)
                point = step
            if len(line) < 2:
                break
            lines.append(line)
    return lines


@cache
def _boundaries_bytes() -> bytes:
    return BOUNDARIES_GEOJSON.read_bytes()


@cache
def _kecamatan_bytes() -> bytes:
    outlines = kecamatan_outlines(json.loads(_boundaries_bytes()))
    return json.dumps(outlines, separators=(",", ":")).encode()


# -- live feed --------------------------------------------------------------------------------


@dataclass(eq=False)
class Subscriber:
    """One open event stream: messages waiting to be written, and a wake-up for its writer."""

    pending: deque[bytes | None] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False
    #: The digest of the board session the stream was opened with (None: an API token): the
    #: stream ends when the session does (issue 24).
    owner: str | None = None
    #: What the stream's account may see (issue 24, part 4): each change is filtered for it.
    scope: Scope = field(default_factory=Scope)

    def push(self, message: bytes | None) -> None:
        if message is not None and len(self.pending) >= MAX_PENDING:
            self.dropped = True
            self.pending.clear()
            self.pending.append(None)
        elif not self.dropped:
            self.pending.append(message)
        self.wake.set()


class SituationFeed:
    """Fans situation changes out to open streams and remembers each kelurahan's recent changes.

    Fed by the situation view's change hook, on the worker's event loop, with records in topic
    order; so a stream that registers and takes its snapshot in one synchronous step misses
    nothing and sees nothing twice.
    """

    def __init__(self, history_length: int = HISTORY_LENGTH) -> None:
        self.subscribers: set[Subscriber] = set()
        self.history: dict[str, deque[dict[str, Any]]] = {}
        self._history_length = history_length

    def on_change(self, key: str, record: dict[str, Any] | None) -> None:
        if record is None:
            self.history.pop(key, None)
            removed = sse_message("removed", {"scope_code": key})
            self._broadcast(lambda scope: removed if scope.whole_city or sees_situation(
                scope, {"scope": "KELURAHAN" if key.count(".") == 3 else "KECAMATAN",
                        "scope_code": key}) else None)
            return
        if record.get("scope") == "KELURAHAN" and record.get("kind") == "CHANGE":
            self._remember(key, record)
        if self.subscribers:
            self._broadcast(_scoped_messages(record))

    def _remember(self, key: str, record: Mapping[str, Any]) -> None:
        changes = self.history.setdefault(key, deque(maxlen=self._history_length))
        entry = {name: record.get(name) for name in CHANGE_FIELDS}
        for index, known in enumerate(changes):
            if known["sequence"] == entry["sequence"]:  # re-emitted after a worker restart
                changes[index] = entry
                return
        changes.append(entry)

    def recent_changes(self, key: str) -> list[dict[str, Any]]:
        return list(reversed(self.history.get(key, ())))

    def _broadcast(self, message_for: Callable[[Scope], bytes | None]) -> None:
        """Each stream gets the message its account may see (None: nothing)."""
        for subscriber in list(self.subscribers):
            message = message_for(subscriber.scope)
            if message is None:
                continue
            subscriber.push(message)
            if subscriber.dropped:
                self.subscribers.discard(subscriber)

    def subscribe(self, first: bytes, scope: Scope | None = None) -> Subscriber:
        subscriber = Subscriber(scope=scope or Scope())
        subscriber.push(first)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def close_owner(self, owner: str) -> None:
        """End the streams of one board session (it was ended, on this worker or another)."""
        for subscriber in [s for s in self.subscribers if s.owner == owner]:
            subscriber.push(None)
            self.subscribers.discard(subscriber)

    def close(self) -> None:
        """End every stream, so a stopping worker is not held up by open browsers."""
        for subscriber in list(self.subscribers):
            subscriber.push(None)
        self.subscribers.clear()


def _scoped_messages(record: Mapping[str, Any]) -> Callable[[Scope], bytes | None]:
    """The `situation` message of a change for each scope, encoded once per scope."""
    encoded: dict[Scope, bytes | None] = {}

    def message_for(scope: Scope) -> bytes | None:
        if scope not in encoded:
            shown = scoped_situation(scope, record)
            encoded[scope] = (sse_message("situation", situation_json(shown))
                              if shown is not None else None)
        return encoded[scope]
    return message_for


def request_scope(request: Any) -> Scope:
    """The scope of the request's principal (set by the board's middleware)."""
    principal = request.get("principal") if hasattr(request, "get") else None
    if principal is None:
        return Scope()
    return Scope.of(principal.agency, principal.kecamatan)


# -- Faust views -------------------------------------------------------------------------------


class BoardView(View):
    """A Faust view bound to one board (set on a per-board subclass by `Board._page`)."""

    board: ClassVar[Board]


class BoardPage(BoardView):
    async def get(self, request: Request) -> Response:
        return self.bytes((STATIC_DIR / "index.html").read_bytes(),
                          content_type="text/html", headers={"Cache-Control": "no-cache"})


class BoardRedirect(BoardView):
    async def get(self, request: Request) -> Response:
        return self.text("", status=308, headers={"Location": BOARD_PATH})


class WardBoundaries(BoardView):
    async def get(self, request: Request) -> Response:
        return self.bytes(_boundaries_bytes(), content_type="application/geo+json")


class KecamatanOutlines(BoardView):
    async def get(self, request: Request) -> Response:
        # derived once (a few hundred ms), off the loop the agents share
        body = await asyncio.to_thread(_kecamatan_bytes)
        return self.bytes(body, content_type="application/geo+json")


class Situations(BoardView):
    async def get(self, request: Request) -> Response:
        return self.json(self.board.snapshot(request_scope(request)))


class WardDetail(BoardView):
    async def get(self, request: Request, code: str) -> Response:
        payload = self.board.ward(code, request_scope(request))
        if payload is None:
            return self.json({"error": "unknown kelurahan", "code": code}, status=404)
        return self.json(payload)


class SituationStream(BoardView):
    async def head(self, request: Request) -> Response:
        return self.text("", content_type="text/event-stream")

    async def get(self, request: Request) -> aioweb.StreamResponse:
        return await self.board.stream(cast(aioweb.Request, request))


class Board:
    """The board's state and routes on one pipeline's Faust app."""

    def __init__(self, context: WorkerContext, feed: SituationFeed | None = None) -> None:
        self.context = context
        self.app = context.app
        self.feed = feed or SituationFeed()

    @property
    def url(self) -> str:
        settings = self.context.settings
        return f"http://{settings.web_host}:{settings.web_port}{BOARD_PATH}"

    def snapshot(self, scope: Scope | None = None) -> dict[str, Any]:
        """The city's situations as an account of `scope` may see them (issue 24, part 4)."""
        views = self.context.references
        return situations_payload(scoped_situations(scope or Scope(), views.situations.values),
                                  views.situations.ready.is_set(), views.assets.values.values())

    def ward(self, code: str, scope: Scope | None = None) -> dict[str, Any] | None:
        """One kelurahan, or None when it is unknown or outside `scope` (the same 404)."""
        scope = scope or Scope()
        views = self.context.references
        ward = views.wards.values.get(code)
        if ward is None or not sees_ward(scope, code):
            return None
        situation = views.situations.values.get(code)
        return ward_payload(ward, scoped_situation(scope, situation) if situation else None,
                            self.feed.recent_changes(code))

    async def stream(self, request: aioweb.Request) -> aioweb.StreamResponse:
        """Server-sent events: `snapshot` (the whole picture) first, then each change."""
        scope = request_scope(request)
        subscriber = self.feed.subscribe(
            f"retry: {RETRY_MS}\n".encode() + sse_message("snapshot", self.snapshot(scope)),
            scope)
        session = request.get("session")
        subscriber.owner = getattr(session, "digest", None)
        response = aioweb.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        })
        try:
            await response.prepare(request)
            while True:
                while subscriber.pending:
                    message = subscriber.pending.popleft()
                    if message is None:
                        return response
                    await response.write(message)
                subscriber.wake.clear()
                try:
                    await asyncio.wait_for(subscriber.wake.wait(), KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
        except ConnectionResetError:  # the browser went away
            return response
        finally:
            self.feed.unsubscribe(subscriber)

    # -- wiring ---------------------------------------------------------------------------

    def register(self) -> None:
        conf = self.app.conf
        if "web" in self.app.__dict__:
            log.warning("Faust web server built before the board: /table and /router stay on")
        conf.web_tables_enabled = False
        conf.web_router_enabled = False
        self._page(BOARD_PATH, BoardPage, "board")
        self._page(BOARD_PATH.rstrip("/"), BoardRedirect, "board-redirect")
        self._page(f"{BOARD_PATH}wards.geojson", WardBoundaries, "board-wards")
        self._page(f"{BOARD_PATH}kecamatan.geojson", KecamatanOutlines, "board-kecamatan")
        self._page("/api/situations", Situations, "api-situations")
        self._page("/api/situations/stream", SituationStream, "api-situations-stream")
        self._page("/api/wards/{code}", WardDetail, "api-ward")
        web = cast(AiohttpWeb, self.app.web)
        web.add_static(f"{BOARD_PATH}static", STATIC_DIR)
        web.web_app.on_shutdown.append(self._on_shutdown)
        self.context.references.situation_listeners.append(self.feed.on_change)
        self.app.task(self._announce)

    def _page(self, path: str, view: type[BoardView], name: str) -> None:
        bound = type(view.__name__, (view,), {"board": self, "__module__": __name__})
        page: Callable[[type[View]], type[View]] = self.app.page(path, name=name)
        page(bound)

    async def _on_shutdown(self, _: aioweb.Application) -> None:
        self.feed.close()

    async def _announce(self) -> None:
        base = self.url.removesuffix(BOARD_PATH)
        log.info("situation board on %s (JSON API %s/api/situations, %s/api/wards/{code})",
                 self.url, base, base)


def register_web(context: WorkerContext) -> Board:
    """Serve the board and its API on the worker's Faust web server; call before it starts."""
    board = Board(context)
    board.register()
    return board
