"""One measured fix to Faust's per-message path: hand a message to its stream without four tasks.

Faust 0.15's consumer loop (`Consumer._drain_messages`) delivers every message with
`await self.wait_first(callback(message), self.suspend_flow.wait())`, so that a rebalance
(which sets `suspend_flow`) can abandon a delivery stuck on a full stream buffer. `wait_first`
wraps both coroutines, plus the service's `stopped` and `crashed` events, in four asyncio tasks
and an `asyncio.wait` for every single message (~8 % of a worker's CPU before the other fixes;
skipping it raised the drain rate by about a third in an A/B run after them, docs/performance.md).

The fast path awaits the delivery directly when the flow is not suspended at that moment. What
the race with `suspend_flow` protected is still protected, by Faust itself:

- a delivery only blocks in the conductor's `acquire_flow_control()` (flow suspended),
  `wait_until_producer_ebb()` or a full stream queue;
- on a rebalance Faust suspends the flow and then stops the fetcher service
  (`App._stop_fetcher`), which cancels the task running `_drain_messages`, so a delivery blocked
  there is cancelled just as `wait_first` would have abandoned it;
- a message that still reaches a stream after the rebalance carries the old generation id and
  is skipped, untracked and uncommitted, by the stream (`Stream._c_aiter`), as before;
- with the flow already suspended, or for any other `wait_first` call, Faust's own code runs.

`install()` is idempotent and checks that the method it wraps is Faust's, so a Faust upgrade that
changes it fails loudly in tests instead of silently bypassing new logic.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport import consumer as faust_consumer
from mode.services import WaitResults

from streams.runtime.versions import require_tested

_MARK = "_cityops_fast_delivery"


def _is_suspend_wait(consumer: Any, awaitable: Any) -> bool:
    """True for the coroutine `consumer.suspend_flow.wait()` (and nothing else)."""
    frame = getattr(awaitable, "cr_frame", None)
    return frame is not None and frame.f_locals.get("self") is consumer.suspend_flow


def install() -> None:
    require_tested("streams/runtime/fast_delivery.py")
    consumer_class = faust_consumer.Consumer
    original = consumer_class.wait_first
    if getattr(original, _MARK, False):
        return
    if original.__qualname__ != "Service.wait_first":
        raise RuntimeError(f"unexpected Consumer.wait_first {original.__qualname__}: "
                           "re-check streams/runtime/fast_delivery.py against this Faust version")

    async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:
        if (len(coros) == 2 and timeout is None and asyncio.iscoroutine(coros[0])
                and not self.suspend_flow.is_set() and _is_suspend_wait(self, coros[1])):
            coros[1].close()  # never started: close it instead of leaving it un-awaited
            result = await coros[0]
            return WaitResults([coros[0]], [result], False)
        return await original(self, *coros, timeout=timeout)

    setattr(wait_first, _MARK, True)
    consumer_class.wait_first = wait_first  # type: ignore[method-assign]
