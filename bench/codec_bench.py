"""Encode/decode speed of the project's codec on the benchmark's event mix, against JSON.

The JSON baseline is the standard library's `json` on the same dicts (timestamps as epoch ms):
what the records would cost without Avro, schema checks or the canonical-bytes check. The two
fast paths the worker uses for its own records are measured too: encode without re-validating
(enriched events built from a checked record) and trusted decode (enriched topics, no partner
checks). Each figure is the best of three passes, on one core. `python -m bench codec`
(bench/decode_cost.py) breaks a decode down per record, before and after the compiled check.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from cityops.simulator import SimEvent
from schemas.codec import decode, encode


def _best_rate(count: int, run: Callable[[], None], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return count / best if best > 0 else 0.0


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    raise TypeError(type(value).__name__)


def measure(events: Sequence[SimEvent]) -> dict[str, Any]:
    records = [(e.schema, e.record) for e in events]
    payloads = [(schema, encode(schema, record)) for schema, record in records]
    texts = [json.dumps(record, default=_json_default).encode() for _, record in records]
    count = len(records)

    def codec_encode() -> None:
        for schema, record in records:
            encode(schema, record)

    def codec_decode() -> None:
        for schema, payload in payloads:
            decode(payload, expected=schema)

    def codec_encode_unvalidated() -> None:
        for schema, record in records:
            encode(schema, record, validate=False)

    def codec_decode_trusted() -> None:
        for schema, payload in payloads:
            decode(payload, expected=schema, trusted=True)

    def json_encode() -> None:
        for _, record in records:
            json.dumps(record, default=_json_default).encode()

    def json_decode() -> None:
        for text in texts:
            json.loads(text)

    result: dict[str, Any] = {
        "records": count,
        "codec_encode_per_s": round(_best_rate(count, codec_encode)),
        "codec_decode_per_s": round(_best_rate(count, codec_decode)),
        "codec_encode_unvalidated_per_s": round(_best_rate(count, codec_encode_unvalidated)),
        "codec_decode_trusted_per_s": round(_best_rate(count, codec_decode_trusted)),
        "json_encode_per_s": round(_best_rate(count, json_encode)),
        "json_decode_per_s": round(_best_rate(count, json_decode)),
        "avro_mean_bytes": round(sum(len(p) for _, p in payloads) / max(1, count), 1),
        "json_mean_bytes": round(sum(len(t) for t in texts) / max(1, count), 1),
    }
    return result
