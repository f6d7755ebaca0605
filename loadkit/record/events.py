"""A run's events: named hooks that the run's services subscribe to
(Locust's `Events` is the model), so that one place wires them all.

    interval_closed(interval, histograms, keyed)   at every rotation, on the
        recorder's thread: the interval's summary, its histograms by series
        key and its counts by (what, phase, scenario, tenant)
    run_stopped(stopped)                           once the load is over
        (stopped: ended before its schedule), before the result is assembled

Handlers run in the order they subscribed, so one that reads another's
figures (the exporter reads the health probe's CPU) subscribes after it;
`first=True` puts a handler ahead of the others (a fleet's CPU figure).
None of them ever runs on the loop that releases requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, ParamSpec

from loadkit.result.model import Interval

P = ParamSpec("P")


class EventHook(Generic[P]):
    """The handlers of one event."""

    def __init__(self) -> None:
        self._handlers: list[Callable[P, None]] = []

    def add_listener(self, handler: Callable[P, None], first: bool = False) -> None:
        self._handlers.insert(0, handler) if first else self._handlers.append(handler)

    def fire(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for handler in self._handlers:
            handler(*args, **kwargs)

    def __iter__(self) -> Iterator[Callable[P, None]]:
        return iter(list(self._handlers))


@dataclass
class RunEvents:
    interval_closed: EventHook[[Interval, dict, Counter]] = field(default_factory=EventHook)
    run_stopped: EventHook[[bool]] = field(default_factory=EventHook)
