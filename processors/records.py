"""One record through each hop, as bytes: the code the worker and the test driver share.

`enrich_record` is the first hop (partner bytes -> the enriched record and its bytes),
`read_enriched` the start of the second (enriched bytes -> the record the ward step folds).
Failures raise `Rejection` (a `CodecError` is one, stage DECODE); anything else is a bug the
caller dead-letters as PROCESS/processing_error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from core.rejections import Rejection
from processors.enrich import EnrichmentRules, ReferenceData, check_source
from schemas.codec import CodecError, decode, encode

Enricher = Callable[[Mapping[str, Any], ReferenceData, EnrichmentRules, datetime], dict[str, Any]]
"""Validates one decoded partner record and places it in a ward; raises `Rejection` if not."""


def enrich_record(value: bytes | None, topic: str, schema: str, enriched_schema: str,
                  enricher: Enricher, reference: ReferenceData, rules: EnrichmentRules,
                  now: datetime, source: tuple[str, str] | None = None,
                  ) -> tuple[dict[str, Any], bytes]:
    """The enriched record of one partner record, and its bytes for the enriched topic.

    `source` is (field, value) when the topic is bound to one partner source: the record must
    name that source (checked before anything else, so an impersonation is reported as such).
    """
    if value is None:
        raise CodecError("undecodable", f"{topic}: record has no value (tombstone)")
    decoded = decode(value, expected=schema)
    if source is not None:
        check_source(decoded.record, source[0], source[1], topic)
    enriched = enricher(decoded.record, reference, rules, now)
    # Built from a record decode() just checked: skip re-validating it (the Avro writer still
    # refuses anything it cannot write).
    return enriched, encode(enriched_schema, enriched, validate=False)


def read_enriched(value: bytes | None, topic: str, enriched_schema: str) -> dict[str, Any]:
    """An enriched record read back. Only workers write these topics (docs/security.md), and only
    records `enrich_record` built from a fully checked partner record, so the partner checks
    (canonical bytes, UUID text) are skipped; the codec's structural checks stay (header,
    fingerprint, expected type, the body decodes and ends where the payload does)."""
    if value is None:
        raise CodecError("undecodable", f"{topic}: record has no value")
    return decode(value, expected=enriched_schema, trusted=True).record


ACTION_SCHEMA = "org.cityops.OperatorAction"


def read_action(value: bytes | None, topic: str, wards: Mapping[str, Any]) -> dict[str, Any]:
    """An operator action read from its topic (issue 14), fully checked: the web server writes
    them, but the topic is not the board's alone, so the canonical-bytes check stays. An action
    for a kelurahan the reference data does not know is an ENRICH/unknown_ward rejection."""
    if value is None:
        raise CodecError("undecodable", f"{topic}: record has no value")
    action = decode(value, expected=ACTION_SCHEMA).record
    if action["ward_code"] not in wards:
        raise Rejection("ENRICH", "unknown_ward", f"no kelurahan {action['ward_code']!r}")
    return action
