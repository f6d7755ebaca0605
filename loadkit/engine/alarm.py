"""A wake-up at an exact monotonic instant for the dispatcher, without spinning.

The event loop's own timers count whole milliseconds from a cached clock
(libuv, and asyncio's 1-ms resolution): a slot waited for that way is sent up
to ~1 ms late, or the dispatcher has to spin on `sleep(0)` for the last
stretch, burning its core. On Linux a timerfd armed at the slot's absolute
CLOCK_MONOTONIC time (the clock of `time.monotonic_ns`) wakes the loop's
poll within microseconds, and costs one readable file descriptor. Python
3.13 has `os.timerfd_*`; 3.11 and 3.12 reach the same two system calls
through ctypes. Elsewhere `open_alarm` returns None and the dispatcher keeps
its timer-then-spin wait.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sys
import time
from collections.abc import Callable

CLOCK_MONOTONIC = 1  # Linux's clockid_t for time.monotonic_ns
TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc_timerfd() -> tuple[int, Callable[[int], None]] | None:
    """A non-blocking timerfd and its absolute arm(ns), via libc; None where absent."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    create.argtypes, create.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
    settime.restype = ctypes.c_int
    fd = create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        return None
    spec = _Itimerspec()  # one, reused: arming allocates nothing
    ref = ctypes.byref(spec)

    def arm(at_ns: int) -> None:
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(at_ns, 1_000_000_000)
        if settime(fd, TFD_TIMER_ABSTIME, ref, None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    return fd, arm


def _os_timerfd() -> tuple[int, Callable[[int], None]]:
    fd = os.timerfd_create(time.CLOCK_MONOTONIC,  # type: ignore[attr-defined]
                           flags=os.TFD_NONBLOCK | os.TFD_CLOEXEC)  # type: ignore[attr-defined]

    def arm(at_ns: int) -> None:
        os.timerfd_settime_ns(fd, flags=os.TFD_TIMER_ABSTIME,  # type: ignore[attr-defined]
                              initial=at_ns)

    return fd, arm


class Alarm:
    """One waiter at a time (the dispatcher): `await alarm.until(at_ns)`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int,
                 arm: Callable[[int], None]) -> None:
        self._loop, self._fd, self._arm = loop, fd, arm
        self._waiter: asyncio.Future[None] | None = None
        loop.add_reader(fd, self._fired)

    async def until(self, at_ns: int) -> None:
        """Return at `at_ns` (monotonic) or just after; at once if it is past."""
        self._waiter = self._loop.create_future()
        self._arm(max(at_ns, 1))  # 0 would disarm it
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)  # the expiry count; reading re-arms readiness
        except BlockingIOError:
            return
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        os.close(self._fd)


def open_alarm(loop: asyncio.AbstractEventLoop) -> Alarm | None:
    """A timerfd alarm on `loop`, or None off Linux (or where it fails)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        made = _os_timerfd() if hasattr(os, "timerfd_create") else _libc_timerfd()
    except OSError:
        return None
    if made is None:
        return None
    fd, arm = made
    try:
        return Alarm(loop, fd, arm)
    except (OSError, NotImplementedError):  # a loop that cannot watch it
        os.close(fd)
        return None
