"""At-least-once in Faust's consumer loop: a record that was never processed is never committed.

Found by bench/chaos.py (docs/reliability.md): in about one run in six, after a SIGKILLed worker
was replaced, a few hundred input records were committed without ever reaching an agent. Faust
0.15's `Consumer._drain_messages` remembers the last offset it *read* per partition and drops
any record below it as "already read" (`DROPPED MESSAGE ROFF`), and it treats a jump in offsets
as a "gap" (`_add_gap`) that it later counts as acknowledged. Around a rebalance both go wrong:
a record prefetched from the old position arrives after the seek back to the committed offset,
so the jump from the committed offset to it is booked as a gap, the read offset moves up to it,
and the re-fetched records in between are dropped; the gap then lets the commit pass over them
(faust-streaming issues #216, #221, #606 describe the pieces).

Changes to Faust's `Consumer`, installed only under at_least_once:

1. `_add_gap` does nothing. Faust books gaps to step over offsets that hold no record (compacted
   topics, transaction markers). The topics our agents read and acknowledge, partner inputs and
   enriched topics, are delete-policy topics written without transactions under at_least_once:
   they have no holes, so a gap there only ever means records Faust did not deliver.
2. The "already read" test compares with the committed offset, not the last read one: after a
   seek, a record at or above the committed offset is delivered again instead of dropped. The
   stream still skips records of an old generation; a record delivered twice is processed twice,
   which at-least-once allows and the ward state's event_id dedupe absorbs.
3. No commit past a hole at the head of the acknowledged offsets. Faust's `_new_offset` stops
   only when the first acknowledged offset is more than one above the committed one, so a single
   missing record (offset == committed) was committed past.
4. A hole that stays (a record the stream skipped during a rebalance and the fetcher will not
   return again) is healed: after HEAL_AFTER_S the partition is sought back to its committed
   offset, so the missing records are fetched and processed (the others again: replays).
   Without this, 1 and 2 turn the loss into a partition whose commits stall until a restart.

5. An acknowledgement of a record the stream skipped is not booked. Faust's stream skips a
   record of an earlier consumer generation, or one read while the flow is suspended for a
   rebalance, and acks it "so the lag does not grow". Booked, that ack lets the next commit pass
   a record no agent processed; when the commit comes before the fetcher returns the record
   again, 2 then drops the re-fetched copy as already read: the record is lost (bench/chaos.py
   with 2 workers under CPU load, 15 records in one run). The same rule covers a record that
   was processed but acknowledged only after a rebalance: its offset becomes a hole that 4
   heals, so it is processed again (a replay the dedupe absorbs), never skipped.

6. A commit that did not happen does not move the committed offset. Faust's `_commit_offsets`
   records the offsets as committed even when the commit failed (aiokafka's "already
   rebalanced" CommitFailedError returns False quietly). When that late failure lands after the
   new generation's seek to the broker's committed offset, the worker believes a higher offset
   is committed than the broker has: 2 then drops the re-fetched records as already read, and
   nothing acks them again, so that partition's commit stays behind its end until new records
   arrive (the 2-worker chaos test's stall: 4 partitions 6-17 records short for 300 s). Reverted,
   the committed offset stays what the broker holds; at worst the records since are processed
   again.

Under exactly_once the worker's own transaction markers do leave holes in the enriched topics,
so Faust's behaviour is kept there (and exactly_once is not what we run, for the same reasons).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from faust.transport import consumer as faust_consumer
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from streams.runtime.versions import require_tested

log = logging.getLogger(__name__)

_MARK = "_cityops_committed_floor"
#: How long a hole in the acknowledged offsets may last before the partition is sought back:
#: about two of Faust's commit intervals (2.8 s), so records still being processed in a take()
#: batch are not mistaken for missing ones.
HEAL_AFTER_S = 6.0


class _CommittedFloor(dict[Any, Any]):
    """The consumer's `_read_offset` map; reads return the committed offset instead.

    Faust's loop looks offsets up with `[]` only to decide "already read"; everything else
    (`seek`, `perform_seek`, revocation) writes, updates or pops, which stays a plain dict.
    """

    def __init__(self, consumer: Any) -> None:
        super().__init__()
        self._committed: Any = consumer._committed_offset

    def __getitem__(self, tp: Any) -> Any:
        return self._committed.get(tp)

    def __missing__(self, tp: Any) -> None:
        return None


async def _no_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    """Our acknowledged topics have no holes: never book skipped offsets as done."""
    return None


def _holes(consumer: Any) -> dict[Any, tuple[int, float]]:
    holes: dict[Any, tuple[int, float]] | None = consumer.__dict__.get("_cityops_holes")
    if holes is None:
        holes = consumer.__dict__["_cityops_holes"] = {}
    return holes


def _wrap_new_offset(original: Any) -> Any:
    def new_offset(self: Any, tp: Any) -> int | None:
        acked = self._acked[tp]
        committed = self._committed_offset.get(tp)
        holes = _holes(self)
        if acked and committed is not None and min(acked) > committed:
            seen = holes.get(tp)
            if seen is None or seen[0] != committed:
                holes[tp] = (committed, time.monotonic())
            return None
        holes.pop(tp, None)
        result: int | None = original(self, tp)
        return result

    return new_offset


def _wrap_commit(original: Any) -> Any:
    async def commit(self: Any, *args: Any, **kwargs: Any) -> bool:
        did_commit: bool = await original(self, *args, **kwargs)
        holes = _holes(self)
        if holes and not self.app.rebalancing:
            now = time.monotonic()
            assigned = self.assignment()
            for tp, (committed, since) in list(holes.items()):
                if now - since < HEAL_AFTER_S:
                    continue
                del holes[tp]
                if tp not in assigned:
                    continue
                log.warning("%s: records from offset %d were never acknowledged; seeking back "
                            "to them (they and what follows are processed again)", tp, committed)
                try:
                    await self.seek(tp, committed)
                except Exception as error:  # revoked meanwhile: the next owner reads from there
                    log.warning("seek %s -> %d failed: %r", tp, committed, error)
        return did_commit

    return commit


def _log_unbooked(consumer: Any, message: Any) -> None:
    """Once per partition and generation: how often this happens is worth seeing in a log."""
    generation = consumer.app.consumer_generation_id
    seen: tuple[int, set[Any]] | None = consumer.__dict__.get("_cityops_unbooked_logged")
    if seen is None or seen[0] != generation:  # only the current generation's partitions
        seen = consumer.__dict__["_cityops_unbooked_logged"] = (generation, set())
    if message.tp not in seen[1]:
        seen[1].add(message.tp)
        log.info("%s: ack of offset %d (generation %d, now %d, flow %s) not booked; the "
                 "record is fetched and processed again", message.tp, message.offset,
                 message.generation_id, consumer.app.consumer_generation_id,
                 "active" if consumer.app.flow_control.is_active() else "suspended")


def _wrap_ack(original: Any) -> Any:
    def ack(self: Any, message: Any) -> bool:
        app = self.app
        if (message.generation_id == app.consumer_generation_id
                and app.flow_control.is_active()):
            result: bool = original(self, message)
            return result
        with ack_lock:  # skipped by the stream (or finished across a rebalance): not booked
            if not message.acked:
                _log_unbooked(self, message)
            message.acked = True
            self._unacked_messages.discard(message)
            notify(self._waiting_for_ack)
        return False

    return ack


def _wrap_commit_offsets(original: Any) -> Any:
    async def commit_offsets(self: Any, offsets: Any, *args: Any, **kwargs: Any) -> bool:
        committed = self._committed_offset
        before = {tp: committed.get(tp) for tp in offsets}
        did_commit: bool = await original(self, offsets, *args, **kwargs)
        if not did_commit:
            for tp, offset in offsets.items():
                if committed.get(tp) == offset and before[tp] != offset:  # booked, not done
                    committed[tp] = before[tp]
                    log.warning("%s: commit of offset %d did not happen; committed offset kept "
                                "at %s", tp, offset, before[tp])
        return did_commit

    return commit_offsets


def install(processing_guarantee: str) -> bool:
    """Patch Faust's Consumer for at_least_once; idempotent. True if the patch is active."""
    if processing_guarantee != "at_least_once":
        return False
    consumer_class = faust_consumer.Consumer
    if getattr(consumer_class, _MARK, False):
        return True
    require_tested("streams/runtime/offsets.py")
    for name in ("_add_gap", "_drain_messages", "_new_offset", "commit", "seek", "ack",
                 "_commit_offsets"):
        if not callable(getattr(consumer_class, name, None)):
            raise RuntimeError(f"faust Consumer.{name} is gone: re-check "
                               "streams/runtime/offsets.py against this Faust version")
    original_init = consumer_class.__init__

    def init_with_floor(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._read_offset = _CommittedFloor(self)

    consumer_class.__init__ = init_with_floor  # type: ignore[method-assign]
    consumer_class._add_gap = _no_gap  # type: ignore[method-assign]
    consumer_class._new_offset = _wrap_new_offset(  # type: ignore[method-assign]
        consumer_class._new_offset)
    consumer_class.commit = _wrap_commit(consumer_class.commit)  # type: ignore[method-assign]
    consumer_class.ack = _wrap_ack(consumer_class.ack)  # type: ignore[method-assign]
    consumer_class._commit_offsets = _wrap_commit_offsets(  # type: ignore[method-assign]
        consumer_class._commit_offsets)
    setattr(consumer_class, _MARK, True)
    return True
