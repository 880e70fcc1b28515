"""Log every asyncio task's await chain and every suspended async generator (diagnostics)."""
from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import signal
import sys
from typing import Any

log = logging.getLogger(__name__)


def _chain(obj: Any, depth: int = 0) -> list[str]:
    out: list[str] = []
    while obj is not None and depth < 40:
        depth += 1
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None) or getattr(
            obj, "ag_frame", None)
        if frame is not None:
            out.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        nxt = (getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
               or getattr(obj, "ag_await", None))
        if nxt is None:
            if frame is None:
                out.append(repr(obj)[:200])
            break
        obj = nxt
    return out


def dump() -> None:
    lines = []
    for task in asyncio.all_tasks():
        lines.append(f"TASK {task.get_name()}")
        lines.extend("   " + s for s in _chain(task.get_coro()))
    for obj in gc.get_objects():
        if inspect.isasyncgen(obj) and obj.ag_frame is not None:
            lines.append(f"ASYNCGEN {obj.ag_code.co_qualname} running={obj.ag_running}")
            lines.extend("   " + s for s in _chain(obj))
    if _APP is not None:
        lines.extend("STATE " + s for s in consumer_state())
    print("\n".join(lines), file=sys.stderr, flush=True)


_APP: Any = None


def _n(topic: str) -> str:
    return topic.split('.', 1)[-1] if '.' in topic else topic[-30:]


def consumer_state() -> list[str]:
    app = _APP
    out: list[str] = []
    try:
        c = app.consumer
        short = lambda tps: sorted(f"{_n(t.topic)}[{t.partition}]" for t in tps)  # noqa: E731
        out.append(f"flow_active={c.flow_active} active={short(c._active_partitions or [])}")
        out.append(f"buffered={short(c._buffered_partitions)} paused={short(c._paused_partitions)}")
        out.append(f"assignment={short(c.assignment())}")
        for tp, chans in app.topics._tp_index.items():
            sizes = [ch.queue.qsize() for ch in chans]
            out.append(f"tp_index {_n(tp.topic)}[{tp.partition}] -> {sizes}")
        out.append(f"tp_to_callback={short(app.topics._tp_to_callback)}")
        thread = c._thread
        ak = thread._consumer
        sub = ak._subscription.subscription
        if sub is not None and sub.assignment is not None:
            for tp in sorted(sub.assignment.tps, key=str):
                st = sub.assignment.state_value(tp)
                out.append(f"ak {_n(tp.topic)}[{tp.partition}] pos={st.position} "
                           f"paused={st.paused} has_valid={st.has_valid_position}")
        out.append(f"fetcher records: {short(ak._fetcher._records.keys())}")
    except Exception as error:  # diagnostics only
        out.append(f"consumer_state failed: {error!r}")
    return out


def install(loop: asyncio.AbstractEventLoop, app: Any = None) -> None:
    global _APP
    _APP = app
    loop.add_signal_handler(signal.SIGRTMIN + 2, dump)
