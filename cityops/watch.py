"""The command center's terminal board, and the reference consumer of situations.

Contract it demonstrates: read `city.situations.v1` from the beginning (it is compacted, so the
latest record per key is the current situation of that kelurahan, kecamatan or the city), keep
the newest record per `scope_code` (by `sequence`), and treat SNAPSHOT and CHANGE records alike:
both carry the whole situation, a SNAPSHOT only says nothing changed since.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from kafka import KafkaConsumer, TopicPartition

from core.connection import kafka_python_security
from core.text import terminal_safe
from core.vocabulary import level_rank
from schemas.codec import CodecError, decode
from topics.catalog import SITUATIONS, TopicCatalog

LEVEL_COLOUR = {"CRITICAL": "\033[41;97m", "ALERT": "\033[31;1m", "WATCH": "\033[33;1m",
                "NORMAL": "\033[32m", "UNKNOWN": "\033[37m"}
RESET = "\033[0m"


class SituationBoard:
    """Latest situation per scope; newer sequence wins so replays and snapshots never regress."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, Any]] = {}
        self.rejected = 0

    def apply(self, value: bytes | None, key: bytes | None) -> None:
        if value is None:
            if key is not None:
                self.latest.pop(key.decode(), None)
            return
        try:
            record = decode(value, expected="org.cityops.SituationEvent").record
        except CodecError:
            self.rejected += 1
            return
        code = record["scope_code"]
        previous = self.latest.get(code)
        if previous is None or record["sequence"] >= previous["sequence"]:
            self.latest[code] = record

    def rows(self, kecamatan: str | None = None) -> list[dict[str, Any]]:
        selected = [
            s for s in self.latest.values()
            if kecamatan is None
            or kecamatan.lower() in {str(s.get("kecamatan_code") or "").lower(),
                                     str(s.get("kecamatan_name") or "").lower()}
        ]
        scope_order = {"CITY": 0, "KECAMATAN": 1, "KELURAHAN": 2}
        return sorted(selected, key=lambda s: (
            scope_order.get(s["scope"], 3), -level_rank(s["level"]), s["scope_name"]))


def render(rows: Iterable[Mapping[str, Any]], colour: bool, now: datetime) -> str:
    """The board as text. Names and reasons carry partner text (a cabinet id, a ward name from
    the reference topic), so each goes through :func:`core.text.terminal_safe` before layout:
    partner bytes can never clear, recolour or retitle the operator's terminal."""
    lines = [f"Cilegon command center - situations at {now:%Y-%m-%d %H:%M:%S} UTC", ""]
    header = (f"{'scope':10} {'area':22} {'level':9} {'open':>4} {'lamps out':>10} "
              f"{'full bins':>9}  reasons")
    lines.append(header)
    lines.append("-" * len(header))
    for s in rows:
        level = s["level"]
        shown = f"{level:9}"
        if colour:
            shown = f"{LEVEL_COLOUR.get(level, '')}{level:9}{RESET}"
        lamps = f"{s['lamps_out']}/{s['lamps_total']}"
        reasons = "; ".join(terminal_safe(r) for r in s["reasons"]) if s["reasons"] else "-"
        name = terminal_safe(s["scope_name"])
        lines.append(f"{s['scope'].lower():10} {name[:22]:22} {shown} "
                     f"{s['open_incidents']:>4} {lamps:>10} {s['containers_full']:>9}  {reasons}")
    return "\n".join(lines)


class WatchError(Exception):
    """The situations topic cannot be read; the message says what to check."""


def _consumer(bootstrap: str) -> tuple[KafkaConsumer, list[TopicPartition]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", client_id="cityops-watch",
                             **kafka_python_security())
    situations_topic = TopicCatalog.from_env().name(SITUATIONS)
    found = consumer.partitions_for_topic(situations_topic)
    if not found:
        # kafka-python neither raises for a missing topic nor for one this principal may not
        # describe: it would poll nothing forever, an empty board that looks like a quiet city.
        consumer.close()
        raise WatchError(
            f"{situations_topic} is not visible on {bootstrap}: it does not exist (run `cityops "
            f"topics create`, or check CITYOPS_TOPIC_PREFIX) or this client's principal may "
            f"not read it (check CITYOPS_SASL_USERNAME and the ACLs, docs/security.md)")
    partitions = [TopicPartition(situations_topic, p) for p in sorted(found)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    return consumer, partitions


def read_to_end(bootstrap: str, board: SituationBoard, timeout_s: float = 30.0) -> None:
    """Load every situation present now: how a consumer that joins late builds the picture."""
    consumer, partitions = _consumer(bootstrap)
    try:
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(
            consumer.position(tp) < end for tp, end in ends.items()
        ):
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    board.apply(record.value, record.key)
    finally:
        consumer.close()


def watch(bootstrap: str, kecamatan: str | None = None, seconds: float = 0.0,
          once: bool = False, out: TextIO = sys.stdout, footer: str = "") -> int:
    """Print the situations; `footer` (e.g. the demo's board sign-in) under every redraw, so a
    cleared screen does not hide it."""
    board = SituationBoard()
    if once:
        read_to_end(bootstrap, board)
        print(render(board.rows(kecamatan), colour=False, now=datetime.now(UTC)), file=out)
        return 0
    consumer, _ = _consumer(bootstrap)
    colour = out.isatty()
    deadline = time.monotonic() + seconds if seconds > 0 else None
    last_draw = 0.0
    try:
        while deadline is None or time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                for record in records:
                    board.apply(record.value, record.key)
            if time.monotonic() - last_draw >= 1.0:
                last_draw = time.monotonic()
                screen = render(board.rows(kecamatan), colour, datetime.now(UTC))
                if colour:
                    out.write("\033[2J\033[H")
                out.write(screen + "\n\n" + (footer + "\n" if footer else ""))
                out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0
