"""Validate a decoded partner event and join it to the ward and asset reference data.

Pure and per-event: no I/O, no clock (``now`` is passed in), no mutation of the input. An
event either comes out as an ``org.cityops.Enriched*Event`` dict or raises
:class:`~core.rejections.Rejection` naming the field and the rule, so the caller can
dead-letter it with a bounded reason.

Identifiers must mean something (VALIDATE): ``event_id`` is the retry key, so the nil UUID
or one digit repeated 32 times (ids a partner's default or placeholder produces, which would
merge unrelated events as "retries") is ``degenerate_uuid``; an incident, lamp, container,
cabinet, RW or RT id that is empty or only whitespace is ``blank_id`` (it would merge every
such incident into one); one holding a character outside :mod:`core.text`'s identifier set
(control, bidi, zero-width...) is ``forbidden_characters``.

Ward resolution order (the first that applies wins):

1. The asset registry (ASSET_REGISTRY) for lighting and waste events: ``lamp_id`` /
   ``container_id`` -> the asset's ward. The registry wins over the payload: a ``ward_code``
   sent as well that names another kelurahan is not used (an asset stands in one ward and is
   counted there only) and is reported by :func:`data_quality` as ``ward_code_mismatch``.
2. ``ward_code`` sent by the partner (WARD_CODE). An unknown code is rejected
   (``unknown_ward``), also on lighting and waste events whose asset decides the ward. If
   coordinates are sent too and fall in another kelurahan, the code is still kept: the
   partner's explicit word wins over a lookup in simplified polygons whose shared borders are
   only approximate. The coordinates are still validated.
3. ``latitude``/``longitude`` through the :class:`~processors.geo.WardLocator`
   (POINT_IN_POLYGON or NEAREST_BOUNDARY); no ward within tolerance -> ``unknown_ward``.
4. Nothing to go on -> ``missing_location``.

Lighting and waste events must name an asset the registry knows (``unknown_asset``
otherwise): the registry is the list of what the city runs, and situation ratios such as
"lamps working" are computed against it. The same holds for a ``cabinet_id`` a lighting event
sends: it must be the cabinet of some registered lamp, or every invented cabinet id would grow
the ward's state and its situation by one more cabinet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

from core.rejections import Rejection
from core.text import forbidden_id_characters
from core.vocabulary import MAX_EVENT_AGE
from processors.geo import DEFAULT_TOLERANCE_M, WardLocator
from processors.personal_data import REDACTED, redact_nik

LAMP_KINDS: Final = frozenset({"LAMP"})
WASTE_KINDS: Final = frozenset({"WASTE_CONTAINER", "TPS"})

_INCIDENT: Final = "IncidentEvent"
_LIGHTING: Final = "LightingEvent"
_WASTE: Final = "WasteEvent"


@dataclass(frozen=True, slots=True)
class EnrichmentRules:
    """Validation limits; the defaults are the production values and say why below."""

    max_future_skew: timedelta = timedelta(minutes=5)
    """Partner clocks drift; more than a few minutes ahead means a wrong clock or time zone
    (a WIB local time sent as UTC is 7 h ahead), which would corrupt event-time windows."""
    max_age: timedelta = MAX_EVENT_AGE
    """Matches the input topics' retention: anything older could not be replayed anyway and
    would reopen windows long closed."""
    bounds_margin_deg: float = 0.05
    """About 5.5 km around the polygons' bounding box: generous for GPS error and events just
    over the city border, tight enough to catch swapped lat/lon or a (0, 0) default."""
    temperature_min_c: float = -20.0
    """Below anything Cilegon's climate produces; a lower reading is a broken sensor."""
    temperature_max_c: float = 150.0
    """Above the fire-risk thresholds a container sensor must still report; higher readings
    are saturated or sentinel values of a broken sensor, not a temperature."""
    max_description_chars: int = 500
    """Free text is for operators to read, not a payload channel; capped after whitespace is
    collapsed."""
    max_id_chars: int = 64
    """Incident, cabinet, RW and RT identifiers are short codes. They end up in the ward's
    table value and situation text, so a megabyte "id" pushed those records over Kafka's 1 MB
    limit and crashed the worker (tests/e2e/test_hostile_input.py): rejected instead."""


@dataclass(frozen=True, slots=True)
class ReferenceData:
    """Everything enrichment joins against; immutable so workers can share one instance."""

    wards: Mapping[str, Mapping[str, Any]]
    """``org.cityops.Ward`` dicts by kelurahan code."""
    assets: Mapping[str, Mapping[str, Any]]
    """``org.cityops.Asset`` dicts by asset id."""
    locator: WardLocator
    cabinets: frozenset[str]
    """Every ``cabinet_id`` of a registered lamp (:func:`cabinet_ids` of ``assets``): the
    control cabinets a lighting event may name."""

    @property
    def city_bounds(self) -> tuple[float, float, float, float]:
        """``(min_lat, min_lon, max_lat, max_lon)`` of the ward polygons; the margin is a rule."""
        return self.locator.city_bounds()

    @classmethod
    def build(
        cls,
        ward_records: Iterable[Mapping[str, Any]],
        asset_records: Iterable[Mapping[str, Any]],
        *,
        tolerance_m: float = DEFAULT_TOLERANCE_M,
    ) -> ReferenceData:
        """Index the records; duplicate keys raise ValueError (a silent overwrite would hide
        a broken reference feed)."""
        wards: dict[str, Mapping[str, Any]] = {}
        ward_list = list(ward_records)
        for ward in ward_list:
            code = str(ward["kelurahan_code"])
            if code in wards:
                raise ValueError(f"Ward {code} appears twice in the ward records")
            wards[code] = MappingProxyType(dict(ward))
        assets: dict[str, Mapping[str, Any]] = {}
        for asset in asset_records:
            asset_id = str(asset["asset_id"])
            if asset_id in assets:
                raise ValueError(f"Asset {asset_id} appears twice in the asset records")
            assets[asset_id] = MappingProxyType(dict(asset))
        return cls(
            wards=MappingProxyType(wards),
            assets=MappingProxyType(assets),
            locator=WardLocator.from_ward_records(ward_list, tolerance_m=tolerance_m),
            cabinets=cabinet_ids(assets.values()),
        )


def cabinet_ids(assets: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The cabinet ids of the registered lamps: a cabinet is known when some lamp has it."""
    return frozenset(
        asset["cabinet_id"]
        for asset in assets
        if asset.get("asset_kind") in LAMP_KINDS and asset.get("cabinet_id")
    )


# --------------------------------------------------------------------------- validation


def _check_occurred_at(
    kind: str, event: Mapping[str, Any], rules: EnrichmentRules, now: datetime
) -> None:
    occurred = event.get("occurred_at")
    if not isinstance(occurred, datetime) or occurred.tzinfo is None:
        raise Rejection(
            "VALIDATE",
            "schema_violation",
            f"{kind}.occurred_at={occurred!r} is not a timezone-aware datetime",
        )
    ahead = occurred - now
    if ahead > rules.max_future_skew:
        raise Rejection(
            "VALIDATE",
            "future_timestamp",
            f"{kind}.occurred_at={occurred.isoformat()} is {ahead} ahead of "
            f"now={now.isoformat()} (max {rules.max_future_skew})",
        )
    age = now - occurred
    if age > rules.max_age:
        raise Rejection(
            "VALIDATE",
            "too_old",
            f"{kind}.occurred_at={occurred.isoformat()} is {age} older than "
            f"now={now.isoformat()} (max {rules.max_age})",
        )


def _check_id_lengths(
    kind: str, event: Mapping[str, Any], rules: EnrichmentRules, names: tuple[str, ...]
) -> None:
    for name in names:
        value = event.get(name)
        if isinstance(value, str) and len(value) > rules.max_id_chars:
            raise Rejection(
                "VALIDATE",
                "oversized",
                f"{kind}.{name} is {len(value)} characters long (max {rules.max_id_chars}): "
                f"{value[:40]!r}...",
            )


MAX_LISTED_CHARACTERS: Final = 5
"""A forbidden-characters message names at most this many distinct characters."""


def _check_event_id(kind: str, event: Mapping[str, Any]) -> None:
    """The codec checked the UUID's form; here: is it an id at all? The nil UUID and a UUID of
    one digit repeated (``ffffffff-ffff-...``) are placeholders, not ids: every partner that
    sends them would have its events merged as retries of one event."""
    event_id = event.get("event_id")
    if not isinstance(event_id, str):
        return
    digits = set(event_id.replace("-", "").lower())
    if len(digits) == 1:
        what = "the nil UUID" if digits == {"0"} else "one hex digit repeated"
        raise Rejection(
            "VALIDATE",
            "degenerate_uuid",
            f"{kind}.event_id={event_id!r} is {what}, not an id that tells events apart",
        )


def _check_id_content(kind: str, event: Mapping[str, Any], names: tuple[str, ...]) -> None:
    """Identifiers that are present must be non-blank and stay within :mod:`core.text`'s
    identifier character set (call after the length check: the message quotes the value)."""
    for name in names:
        value = event.get(name)
        if not isinstance(value, str):
            continue
        if not value.strip():
            raise Rejection(
                "VALIDATE",
                "blank_id",
                f"{kind}.{name}={value!r} is empty or blank; send null when it is not known",
            )
        forbidden = forbidden_id_characters(value)
        if forbidden:
            listed = ", ".join(forbidden[:MAX_LISTED_CHARACTERS])
            more = len(forbidden) - MAX_LISTED_CHARACTERS
            tail = f" and {more} more" if more > 0 else ""
            raise Rejection(
                "VALIDATE",
                "forbidden_characters",
                f"{kind}.{name}={value[:40]!r} holds {listed}{tail}: identifiers may hold "
                "letters, digits, punctuation, symbols and spaces only",
            )


def _check_identifiers(
    kind: str, event: Mapping[str, Any], rules: EnrichmentRules, capped: tuple[str, ...],
    ids: tuple[str, ...],
) -> None:
    """``event_id``, then the length of the ``capped`` ids, then the content of all ``ids``."""
    _check_event_id(kind, event)
    _check_id_lengths(kind, event, rules, capped)
    _check_id_content(kind, event, ids)


def _double(kind: str, event: Mapping[str, Any], name: str) -> float | None:
    value = event.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejection("VALIDATE", "schema_violation", f"{kind}.{name}={value!r} is not a number")
    if not math.isfinite(value):
        raise Rejection("VALIDATE", "not_finite", f"{kind}.{name}={value!r} is not a finite number")
    return float(value)


def _check_range(
    kind: str, name: str, value: float | None, low: float, high: float, note: str = ""
) -> None:
    if value is not None and not low <= value <= high:
        raise Rejection(
            "VALIDATE",
            "out_of_range",
            f"{kind}.{name}={value!r} is outside {low:g}..{high:g}{note}",
        )


def _check_non_negative(kind: str, name: str, value: float | None) -> None:
    if value is not None and value < 0.0:
        raise Rejection("VALIDATE", "out_of_range", f"{kind}.{name}={value!r} is below 0")


def _coordinates(
    kind: str, event: Mapping[str, Any], ref: ReferenceData, rules: EnrichmentRules
) -> tuple[float, float] | None:
    lat = _double(kind, event, "latitude")
    lon = _double(kind, event, "longitude")
    if lat is None and lon is None:
        return None
    if lat is None or lon is None:
        present, missing = ("latitude", "longitude") if lon is None else ("longitude", "latitude")
        raise Rejection(
            "VALIDATE",
            "unpaired_coordinates",
            f"{kind}.{present}={event.get(present)!r} comes without {missing}; "
            "coordinates must come as a pair",
        )
    min_lat, min_lon, max_lat, max_lon = ref.city_bounds
    margin = rules.bounds_margin_deg
    note = f" (city bounds + {margin:g} deg)"
    if not min_lat - margin <= lat <= max_lat + margin:
        raise Rejection(
            "VALIDATE",
            "out_of_range",
            f"{kind}.latitude={lat!r} is outside "
            f"{min_lat - margin:.6f}..{max_lat + margin:.6f}{note}",
        )
    if not min_lon - margin <= lon <= max_lon + margin:
        raise Rejection(
            "VALIDATE",
            "out_of_range",
            f"{kind}.longitude={lon!r} is outside "
            f"{min_lon - margin:.6f}..{max_lon + margin:.6f}{note}",
        )
    return (lat, lon)


# --------------------------------------------------------------------------- resolution


def _resolve_ward(
    kind: str,
    event: Mapping[str, Any],
    ref: ReferenceData,
    coordinates: tuple[float, float] | None,
    asset: Mapping[str, Any] | None,
) -> tuple[Mapping[str, Any], str]:
    """Return (ward record, WardResolution symbol) following the module's resolution order."""
    ward_code = event.get("ward_code")
    sent: Mapping[str, Any] | None = None
    if ward_code is not None:
        sent = ref.wards.get(ward_code)
        if sent is None:
            raise Rejection(
                "ENRICH",
                "unknown_ward",
                f"{kind}.ward_code={ward_code!r} is not a kelurahan code of Kota Cilegon",
            )
    if asset is not None and asset.get("ward_code"):
        asset_ward = asset["ward_code"]
        ward = ref.wards.get(asset_ward)
        if ward is None:
            raise Rejection(
                "ENRICH",
                "unknown_ward",
                f"Asset {asset['asset_id']}.ward_code={asset_ward!r} (asset registry) is not a "
                "kelurahan code of Kota Cilegon",
            )
        return ward, "ASSET_REGISTRY"
    if sent is not None:
        return sent, "WARD_CODE"
    if coordinates is not None:
        lat, lon = coordinates
        location = ref.locator.locate(lat, lon)
        if location is None:
            raise Rejection(
                "ENRICH",
                "unknown_ward",
                f"{kind}.latitude/longitude=({lat!r}, {lon!r}) is in no kelurahan and more than "
                f"{ref.locator.tolerance_m:g} m from every kelurahan boundary",
            )
        return ref.wards[location.ward_code], location.method
    raise Rejection(
        "ENRICH",
        "missing_location",
        f"{kind} has no ward_code, no known asset and no latitude/longitude to place it",
    )


def _asset(
    kind: str,
    id_field: str,
    event: Mapping[str, Any],
    ref: ReferenceData,
    allowed_kinds: frozenset[str],
) -> Mapping[str, Any]:
    asset_id = event.get(id_field)
    asset = ref.assets.get(asset_id) if isinstance(asset_id, str) else None
    if asset is None:
        raise Rejection(
            "ENRICH",
            "unknown_asset",
            f"{kind}.{id_field}={asset_id!r} is not in the asset registry",
        )
    asset_kind = asset.get("asset_kind")
    if asset_kind not in allowed_kinds:
        raise Rejection(
            "ENRICH",
            "unknown_asset",
            f"{kind}.{id_field}={asset_id!r} is a {asset_kind} in the asset registry, "
            f"not one of {', '.join(sorted(allowed_kinds))}",
        )
    return asset


def _check_cabinet(kind: str, cabinet: Any, ref: ReferenceData) -> None:
    if cabinet is not None and cabinet not in ref.cabinets:
        raise Rejection(
            "ENRICH",
            "unknown_asset",
            f"{kind}.cabinet_id={cabinet!r} is the cabinet of no lamp in the asset registry",
        )


def _enriched(
    event: dict[str, Any], ward: Mapping[str, Any], resolution: str, now: datetime
) -> dict[str, Any]:
    return {
        "event": event,
        "ward_code": ward["kelurahan_code"],
        "kelurahan_name": ward["kelurahan_name"],
        "kecamatan_code": ward["kecamatan_code"],
        "kecamatan_name": ward["kecamatan_name"],
        "ingested_at": now,
        "ward_resolution": resolution,
    }


# --------------------------------------------------------------------------- public API


def normalise_description(text: str | None, max_chars: int) -> str:
    """Strip, collapse any run of whitespace (including newlines and tabs) to one space, cap."""
    if not text:
        return ""
    collapsed = " ".join(text.split())
    if len(collapsed) > max_chars:
        collapsed = collapsed[:max_chars].rstrip()
    return collapsed


def check_source(event: Mapping[str, Any], field: str, source: str, topic: str) -> None:
    """Reject a record whose payload names another source than the topic it was read from.

    A partner's own topic is writable by that partner's principal only, so the topic is who
    wrote the record; the payload field is what the record says. They must agree: overwriting a
    contradicting claim would hide an impersonation attempt (or a partner's misconfiguration),
    so it is dead-lettered instead (VALIDATE, ``source_mismatch``). An agreeing field is left as
    sent, so the enriched record's source is always the topic's.
    """
    claimed = event.get(field)
    if claimed != source:
        raise Rejection(
            "VALIDATE", "source_mismatch",
            f"{field} {claimed!r} on {topic}, which only {source} writes",
        )


def enrich_incident(
    event: Mapping[str, Any], ref: ReferenceData, rules: EnrichmentRules, now: datetime
) -> dict[str, Any]:
    """An ``org.cityops.EnrichedIncidentEvent`` dict, or raise Rejection.

    The embedded event is a copy with the description normalised; the input is not mutated.
    """
    _check_occurred_at(_INCIDENT, event, rules, now)
    ids = ("incident_id", "rw", "rt")
    _check_identifiers(_INCIDENT, event, rules, ids, ids)
    coordinates = _coordinates(_INCIDENT, event, ref, rules)
    ward, resolution = _resolve_ward(_INCIDENT, event, ref, coordinates, None)
    copy = dict(event)
    # the personal-data screen (issue 23): a NIK a dispatcher typed is replaced by a marker,
    # the incident itself is kept (nothing valid is lost); `data_quality` counts it
    copy["description"] = redact_nik(
        normalise_description(event.get("description"), rules.max_description_chars)
    )[0]
    return _enriched(copy, ward, resolution, now)


def enrich_lighting(
    event: Mapping[str, Any], ref: ReferenceData, rules: EnrichmentRules, now: datetime
) -> dict[str, Any]:
    """An ``org.cityops.EnrichedLightingEvent`` dict, or raise Rejection.

    ``cabinet_id`` comes from the event when sent (the field knows best which cabinet feeds a
    lamp after rewiring) and must then be a registered lamp's cabinet, else from the registry.
    """
    _check_occurred_at(_LIGHTING, event, rules, now)
    _check_identifiers(_LIGHTING, event, rules, ("cabinet_id",), ("lamp_id", "cabinet_id"))
    coordinates = _coordinates(_LIGHTING, event, ref, rules)
    _check_range(_LIGHTING, "dimming_level", _double(_LIGHTING, event, "dimming_level"), 0.0, 1.0)
    _check_non_negative(_LIGHTING, "energy_kwh", _double(_LIGHTING, event, "energy_kwh"))
    asset = _asset(_LIGHTING, "lamp_id", event, ref, LAMP_KINDS)
    cabinet = event.get("cabinet_id")
    _check_cabinet(_LIGHTING, cabinet, ref)
    ward, resolution = _resolve_ward(_LIGHTING, event, ref, coordinates, asset)
    out = _enriched(dict(event), ward, resolution, now)
    out["cabinet_id"] = cabinet if cabinet is not None else asset.get("cabinet_id")
    out["location_name"] = asset.get("location_name")
    return out


def enrich_waste(
    event: Mapping[str, Any], ref: ReferenceData, rules: EnrichmentRules, now: datetime
) -> dict[str, Any]:
    """An ``org.cityops.EnrichedWasteEvent`` dict, or raise Rejection."""
    _check_occurred_at(_WASTE, event, rules, now)
    _check_identifiers(_WASTE, event, rules, (), ("container_id",))
    coordinates = _coordinates(_WASTE, event, ref, rules)
    _check_range(_WASTE, "filling_level", _double(_WASTE, event, "filling_level"), 0.0, 1.0)
    _check_range(
        _WASTE,
        "temperature_celsius",
        _double(_WASTE, event, "temperature_celsius"),
        rules.temperature_min_c,
        rules.temperature_max_c,
        " (plausible sensor range)",
    )
    _check_non_negative(
        _WASTE, "collected_weight_kg", _double(_WASTE, event, "collected_weight_kg")
    )
    asset = _asset(_WASTE, "container_id", event, ref, WASTE_KINDS)
    ward, resolution = _resolve_ward(_WASTE, event, ref, coordinates, asset)
    out = _enriched(dict(event), ward, resolution, now)
    out["location_name"] = asset.get("location_name")
    out["container_capacity_l"] = asset.get("container_capacity_l")
    return out


def data_quality(enriched: Mapping[str, Any]) -> tuple[str, ...]:
    """What was corrected in an accepted event, as :data:`core.rejections.DATA_QUALITY_REASONS`.

    Read from the enriched record itself, which keeps the partner's payload: a
    ``ward_code_mismatch`` is an event placed by the asset registry whose payload named another
    kelurahan. The worker counts these per topic, so a partner with a stale ward table shows
    up on a dashboard instead of silently moving lamps between wards.
    """
    sent = enriched["event"].get("ward_code")
    if (
        enriched["ward_resolution"] == "ASSET_REGISTRY"
        and sent is not None
        and sent != enriched["ward_code"]
    ):
        return ("ward_code_mismatch",)
    if REDACTED in (enriched["event"].get("description") or ""):
        return ("personal_data_redacted",)
    return ()
