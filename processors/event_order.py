"""Event-time order across partitions (issue 26): the rule both stages run, pure.

A backlog is read in fetches of many records per partition, so without a rule one partition's
later events reach a ward before another partition has delivered its earlier ones, and the
ward's watermark (the newest event time it saw) closes windows the slower partition still
feeds: its events are counted `late`. Two pieces, as Kafka Streams (KIP-353) and Flink do it:

- `PartitionMerge`, in the enrichment hop: a buffer per input partition, and always the record
  with the lowest event time among the partition heads next; a partition that has lag but an
  empty buffer is waited for at most `idle_s` (Kafka Streams' `max.task.idle.ms`). Its
  `low_watermark` is the lowest time a later record of the hop may carry: the minimum over the
  partitions that are not caught up of their head (or, empty, the last time they delivered);
  caught-up partitions do not hold it back (`LIVE` when all are caught up). A partition that
  holds it without delivering anything for `hold_max_s` stops holding (the bound).
- `WatermarkHolds`, in the ward stage: every enriched record carries its hop's low watermark
  (`encode_mark`); the ward stage keeps the last one per (enriched topic, partition, hop) and
  a ward's watermark may advance only up to the minimum over the channels and hops (`hold`),
  never to the maximum seen. An entry not refreshed for `expiry_s`
  (a hop that stopped) stops holding.

An event older than its window's grace against that minimum is genuinely late, as before.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

#: The low watermark of a hop all of whose partitions are caught up: it holds nothing back.
LIVE = -1
#: A partition (or channel) that has lag but has not delivered anything yet: it holds everything.
UNKNOWN = -2
#: The header of an enriched record that carries its hop's low watermark.
MARK_HEADER = "cityops-lw"

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def encode_mark(hop: str, low_watermark: int) -> bytes:
    """The header value: `<hop>:<epoch ms>`, `<hop>:live` or `<hop>:unknown`."""
    if low_watermark == LIVE:
        return f"{hop}:live".encode()
    if low_watermark == UNKNOWN:
        return f"{hop}:unknown".encode()
    return f"{hop}:{low_watermark}".encode()


def decode_mark(value: bytes) -> tuple[str, int] | None:
    """(hop, low watermark) of a header value; None for anything else (it then holds nothing:
    only workers write enriched topics, and a foreign header must not stop a ward)."""
    try:
        hop, _, mark = value.decode("ascii").rpartition(":")
    except UnicodeDecodeError:
        return None
    if not hop:
        return None
    if mark == "live":
        return hop, LIVE
    if mark == "unknown":
        return hop, UNKNOWN
    if not mark.isdigit() or len(mark) > 15:
        return None
    return hop, int(mark)


def lower(a: int | None, b: int) -> int | None:
    """The lower of two marks where LIVE (-1) means no bound and None means nothing known."""
    if b == LIVE:
        return a
    if a is None or a == LIVE:
        return b
    if a == UNKNOWN or b == UNKNOWN:
        return UNKNOWN
    return min(a, b)


@dataclass
class _Partition(Generic[T]):
    buffer: deque[tuple[int, int, T]] = field(default_factory=deque)
    """(event time ms, offset, item) in partition order."""
    caught_up: bool = False
    last: int | None = None
    """The event time of the last record released (None: none since assignment)."""
    waiting_since: float | None = None
    """When it last had an empty buffer and lag (None: it has records or no lag)."""
    delivered_at: float = 0.0
    """When it last delivered a record (or was assigned)."""
    expired: bool = False
    """It stopped holding the low watermark (silent for `hold_max_s`) since it last delivered."""


class PartitionMerge(Generic[K, T]):
    """Per-partition buffers, released lowest event time first (see the module docstring)."""

    def __init__(self, idle_s: float = 0.5, hold_max_s: float = 60.0,
                 buffer_max: int = 4_000, caught_up_hold_s: float = 1.0) -> None:
        self.idle_s = idle_s
        self.caught_up_hold_s = caught_up_hold_s
        self.hold_max_s = hold_max_s
        self.buffer_max = buffer_max
        self._partitions: dict[K, _Partition[T]] = {}
        #: Partitions that stopped holding the low watermark (bound reached), since the start.
        self.expired_holds = 0

    # -- membership --------------------------------------------------------------------------

    def assign(self, keys: Iterable[K], now: float) -> None:
        for key in keys:
            if key not in self._partitions:
                self._partitions[key] = _Partition(delivered_at=now)

    def revoke(self, keys: Iterable[K]) -> None:
        """Partitions gone: their buffered records were not committed, their next owner reads
        them again."""
        for key in keys:
            self._partitions.pop(key, None)

    def clear(self, key: K) -> None:
        """Forget a partition's buffer (it is read again from a committed or sought offset)."""
        part = self._partitions.get(key)
        if part is not None:
            part.buffer.clear()

    # -- input -------------------------------------------------------------------------------

    def add(self, key: K, clock: int, offset: int, item: T, now: float) -> None:
        part = self._partitions.get(key)
        if part is None:
            part = self._partitions[key] = _Partition(delivered_at=now)
        part.buffer.append((clock, offset, item))
        part.delivered_at = now
        part.expired = False
        part.waiting_since = None

    def fetched(self, key: K, caught_up: bool, now: float) -> None:
        """After a fetch: whether the partition has nothing more on the broker right now."""
        part = self._partitions.get(key)
        if part is None:
            return
        part.caught_up = caught_up
        if part.buffer or caught_up:
            part.waiting_since = None
        elif part.waiting_since is None:
            part.waiting_since = now

    # -- output ------------------------------------------------------------------------------

    def release(self, now: float) -> list[tuple[K, int, int, T]]:
        """(partition, event time, offset, item) in the order to process them: lowest head
        first, stopping at a head later than what a lagging partition with an empty buffer
        may still deliver, unless that partition was waited for `idle_s` already."""
        blockers = [part.last if part.last is not None else UNKNOWN
                    for part in self._partitions.values()
                    if not part.buffer and not part.caught_up
                    and (part.waiting_since is None or now - part.waiting_since < self.idle_s)]
        bound = min(blockers) if blockers else None
        heads = [(part.buffer[0][0], index, key)
                 for index, (key, part) in enumerate(self._partitions.items()) if part.buffer]
        heapq.heapify(heads)
        out: list[tuple[K, int, int, T]] = []
        while heads:
            clock, index, key = heads[0]
            if bound is not None and (bound == UNKNOWN or clock > bound):
                break
            part = self._partitions[key]
            _, offset, item = part.buffer.popleft()
            out.append((key, clock, offset, item))
            part.last = clock if part.last is None else max(part.last, clock)
            if part.buffer:
                heapq.heapreplace(heads, (part.buffer[0][0], index, key))
            else:
                heapq.heappop(heads)
                if not part.caught_up:  # its next records are still on the broker
                    part.waiting_since = now
                    bound = part.last if bound is None else min(bound, part.last)
        return out

    @staticmethod
    def marks(clocks: Sequence[int], low_watermark: int) -> list[int]:
        """The mark each released record carries: the lowest event time it and every record
        after it may have, i.e. the lowest of its own and the later ones of its release (the
        release goes up, but a partition out of order in itself may step down) and the low
        watermark after the release (which bounds every later release)."""
        out = [0] * len(clocks)
        floor = low_watermark
        for index in range(len(clocks) - 1, -1, -1):
            low = lower(floor, clocks[index])
            floor = clocks[index] if low is None else low
            out[index] = floor
        return out

    def low_watermark(self, now: float) -> int:
        """The lowest event time a later record of this hop may carry (LIVE: no bound).

        A partition that caught up holds at the last time it delivered for `caught_up_hold_s`
        more: records being written (a partner sending a backlog as fast as it can, or live)
        reach the partitions with the skew of the producer's batches, so what a caught-up
        partition gets next may be older than another partition's head. A partition silent
        for longer holds nothing back (LIVE when none holds)."""
        mark: int | None = None
        for part in self._partitions.values():
            if part.buffer:
                mark = lower(mark, part.buffer[0][0])
            elif part.caught_up:
                if part.last is not None and now - part.delivered_at < self.caught_up_hold_s:
                    mark = lower(mark, part.last)
            elif now - part.delivered_at >= self.hold_max_s:
                if not part.expired:  # counted once per silence
                    part.expired = True
                    self.expired_holds += 1
            else:
                mark = lower(mark, part.last if part.last is not None else UNKNOWN)
        return LIVE if mark is None else mark

    def first_offsets(self) -> dict[K, int]:
        """The offset of each partition's first buffered record: nothing from there on has been
        processed, so a commit may not pass it."""
        return {key: part.buffer[0][1] for key, part in self._partitions.items() if part.buffer}

    def full(self) -> list[K]:
        """Partitions whose buffer is at its bound (pause their fetches)."""
        return [key for key, part in self._partitions.items()
                if len(part.buffer) >= self.buffer_max]

    def buffered(self) -> int:
        return sum(len(part.buffer) for part in self._partitions.values())


@dataclass
class _Channel:
    mark: int
    seen_at: float


class WatermarkHolds(Generic[K]):
    """The ward stage's view of its upstream hops' low watermarks, per input channel."""

    def __init__(self, expiry_s: float = 30.0) -> None:
        self.expiry_s = expiry_s
        #: (topic, partition) -> hop -> its last mark read on that channel.
        self._channels: dict[K, dict[str, _Channel]] = {}

    def seen(self, channel: K, hop: str, mark: int, now: float) -> None:
        hops = self._channels.get(channel)
        if hops is None:
            hops = self._channels[channel] = {}
        entry = hops.get(hop)
        if entry is None:
            hops[hop] = _Channel(mark, now)
        else:
            entry.mark = mark
            entry.seen_at = now

    def hold(self, channels: Iterable[K], lagging: Callable[[K], bool],
             now: float) -> int | None:
        """The event time the wards fed by `channels` may advance to. None: no bound.
        UNKNOWN: a hop that has not delivered up to anything yet (no advance).

        Per hop: everything it sends after a record marked L carries at least L, so a channel
        read to its end is bounded by the highest mark read from the hop (on any of the
        channels), and a channel with records left to read by the last mark read on it (none
        read: the hop's records there may be older than anything read, no advance until it is
        read). The minimum over the hops not expired."""
        channels = list(channels)
        hops: dict[str, dict[K, int]] = {}
        for channel in channels:
            entries = self._channels.get(channel)
            if not entries:
                continue
            for hop, entry in list(entries.items()):
                if now - entry.seen_at >= self.expiry_s:
                    del entries[hop]  # bounded: a stopped hop is forgotten
                    continue
                hops.setdefault(hop, {})[channel] = entry.mark
        if not hops:
            return None
        lags = {channel: lagging(channel) for channel in channels}
        mark: int | None = None
        for marks in hops.values():
            values = list(marks.values())
            top = LIVE if LIVE in values else max(values)
            for channel in channels:
                if not lags[channel]:
                    mark = lower(mark, top)
                else:
                    mark = lower(mark, marks.get(channel, UNKNOWN))
        return None if mark is None or mark == LIVE else mark

    def forget(self, channels: Iterable[K]) -> None:
        for channel in channels:
            self._channels.pop(channel, None)
