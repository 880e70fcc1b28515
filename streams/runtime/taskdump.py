"""`kill -s RTMIN+2 <worker pid>` writes every asyncio task's await chain and every suspended
async generator to the worker's stderr.

Faust's own dump (SIGUSR1, mode's `cry`) stops at each task's top frame; a worker that
stops consuming is usually waiting several awaits deeper, often inside an async generator
(`Stream.take_events`), which no task names. This walks `cr_await` / `ag_await` chains instead.
Public Python APIs only (asyncio, gc, inspect).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import signal
import sys
from typing import Any

SIGNAL = signal.SIGRTMIN + 2


def _chain(awaitable: Any, limit: int = 40) -> list[str]:
    out: list[str] = []
    while awaitable is not None and len(out) < limit:
        frame = (getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
                 or getattr(awaitable, "ag_frame", None))
        if frame is None:
            out.append(repr(awaitable)[:200])
            break
        out.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        awaitable = (getattr(awaitable, "cr_await", None)
                     or getattr(awaitable, "gi_yieldfrom", None)
                     or getattr(awaitable, "ag_await", None))
    return out


def dump_lines() -> list[str]:
    lines: list[str] = []
    for task in asyncio.all_tasks():
        lines.append(f"TASK {task.get_name()}")
        lines.extend("   " + line for line in _chain(task.get_coro()))
    for obj in gc.get_objects():
        if inspect.isasyncgen(obj) and obj.ag_frame is not None:
            lines.append(f"ASYNCGEN {obj.ag_code.co_qualname}")
            lines.extend("   " + line for line in _chain(obj))
    return lines


def dump() -> None:
    print("\n".join(["=== cityops task dump ===", *dump_lines(), "=== end ==="]),
          file=sys.stderr, flush=True)


def install(loop: asyncio.AbstractEventLoop) -> None:
    loop.add_signal_handler(SIGNAL, dump)
