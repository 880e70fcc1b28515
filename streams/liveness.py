"""A worker whose ward agent has stopped applying the events waiting for it stops itself, so
that its supervisor starts a fresh one (docs/reliability.md, "the 2-worker stall").

In about one 2-worker chaos run in three, after a rebalance a worker's Faust consumer went on
fetching while its ward agent received nothing, without an error or a log line, until the test
gave up; a restarted worker always went on. The cause is not isolated (docs/reliability.md).
This is the bounded answer an operator needs meanwhile: a worker that holds partitions with
records waiting after the group's committed offset, and has applied none of them for
`STALL_S`, writes a task dump to its log, counts `cityops_ward_agent_stalls_total`, and
stops with exit status 75 (EX_TEMPFAIL); docker compose and systemd restart it, and the group
hands its partitions to the others meanwhile. Nothing is lost: the records after the committed
offset are read again by the next owner.

Public APIs only: Faust's `Consumer.assignment()` and `highwater()`, the app's `rebalancing`
flag and rebalance signals, and aiokafka's admin client for the committed offsets.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from core.connection import aiokafka_security
from streams.context import WorkerContext
from streams.runtime import taskdump
from streams.runtime.batch_hop import group_offsets

log = logging.getLogger(__name__)

#: Nothing applied for this long while records wait: the worker stops itself.
STALL_S = 90.0
CHECK_INTERVAL_S = 10.0
#: Offsets after the committed one that may hold no record (transaction markers).
MARKER_SLACK = 3
#: The exit status of a worker that stopped itself for a stall (EX_TEMPFAIL).
EXIT_STALLED = 75


class WardLiveness:
    """Watches the ward agent of one worker; `fired` once it asked the worker to stop."""

    def __init__(self, context: WorkerContext, applied: Callable[[], int],
                 enriched_topics: Iterable[str], stall_s: float = STALL_S) -> None:
        self.context = context
        self.applied = applied
        self.enriched_topics = frozenset(enriched_topics)
        self.stall_s = stall_s
        self.fired = False
        self._last_applied = -1
        self._quiet_since = time.monotonic()
        self._admin: AIOKafkaAdminClient | None = None

    def wire(self) -> None:
        app = self.context.app
        app.timer(CHECK_INTERVAL_S)(self.check)

        @app.on_partitions_assigned.connect
        async def _assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            self._quiet_since = time.monotonic()

    async def check(self) -> None:
        now = time.monotonic()
        applied = self.applied()
        if applied != self._last_applied or self.context.app.rebalancing:
            self._last_applied = applied
            self._quiet_since = now
            return
        if now - self._quiet_since < self.stall_s or self.fired:
            return
        waiting = await self.waiting()
        if waiting is None or waiting == 0:
            self._quiet_since = now
            return
        self.fired = True
        self.context.metrics.ward_agent_stalls.inc()
        log.error("the ward agent applied nothing for %.0f s while %d enriched records wait "
                  "after the committed offsets of its partitions: stopping this worker (exit "
                  "status %d) so that it is restarted; task dump follows", now - self._quiet_since,
                  waiting, EXIT_STALLED)
        taskdump.dump()
        os.kill(os.getpid(), signal.SIGTERM)

    async def waiting(self) -> int | None:
        """Records after the group's committed offsets in the enriched partitions this worker
        owns (None when the broker cannot say)."""
        consumer = self.context.app.consumer
        owned = [tp for tp in consumer.assignment() if tp.topic in self.enriched_topics]
        if not owned:
            return 0
        try:
            committed = await self.committed(owned)
        except Exception as error:  # a broker restart: no verdict this time
            log.info("liveness check skipped: %r", error)
            return None
        waiting = 0
        for tp in owned:
            end = consumer.highwater(tp)
            done = committed.get(tp, 0)
            if end is not None and end - done > MARKER_SLACK:
                waiting += end - done
        return waiting

    async def committed(self, partitions: list[Any]) -> dict[Any, int]:
        """The app group's committed offsets of `partitions` (absent: none committed)."""
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.context.settings.bootstrap,
                                        client_id=f"{self.context.settings.app_id}-liveness",
                                        **aiokafka_security())
            await admin.start()
            self._admin = admin
        return await group_offsets(self._admin, self.context.settings.app_id, partitions)
