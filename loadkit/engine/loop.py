"""The event loop a run's engine drives, and the collector settings it runs
under (a local run and a distributed shard alike)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from loadkit.record.worker import responsive_gil

_T = TypeVar("_T")


def run_async(coro: Coroutine[Any, Any, _T]) -> _T:
    """On uvloop when installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """Collector pauses land on the event loop as lateness. Collect and
    freeze what exists now (it lives all run; in a long-lived process such as
    a pytest session the collection itself takes a while, so it happens
    before the run's zero) and collect the young generation less often.
    A caller that froze objects itself keeps them frozen afterwards. The
    GIL's switch interval is shortened too, so the loop waits less behind
    the recorder's thread (record/worker.py)."""
    caller_froze = gc.get_freeze_count() > 0
    gc.collect()
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        with responsive_gil():
            yield
    finally:
        gc.set_threshold(*threshold)
        if not caller_froze:
            gc.unfreeze()
