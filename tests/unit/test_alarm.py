"""The dispatcher's timerfd alarm: never early, at once for a past instant,
and the loop-timer fallback where it cannot be had."""

from __future__ import annotations

import asyncio
import random
import sys
import time

import pytest

from loadkit.engine import alarm as alarm_module
from loadkit.engine.alarm import open_alarm

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux's")


@linux
def test_alarm_never_wakes_before_its_instant() -> None:
    async def main() -> list[int]:
        alarm = open_alarm(asyncio.get_running_loop())
        assert alarm is not None
        rng, errors = random.Random(7), []
        try:
            for _ in range(200):
                at = time.monotonic_ns() + rng.randrange(20_000, 2_000_000)
                await asyncio.wait_for(alarm.until(at), 5)  # armed in the wrong clock: never
                errors.append(time.monotonic_ns() - at)
        finally:
            alarm.close()
        return errors

    errors = asyncio.run(main())
    # (How soon after is the machine's wake-up latency: bench/bench_lateness.py.)
    assert min(errors) >= 0, min(errors)


@linux
def test_alarm_for_a_past_instant_returns_at_once_and_can_be_rearmed() -> None:
    async def main() -> None:
        alarm = open_alarm(asyncio.get_running_loop())
        assert alarm is not None
        try:
            await asyncio.wait_for(alarm.until(time.monotonic_ns() - 5_000_000), 5)
            await asyncio.wait_for(alarm.until(0), 5)  # 0 would disarm a timerfd
            at = time.monotonic_ns() + 1_000_000
            await asyncio.wait_for(alarm.until(at), 5)
            assert time.monotonic_ns() >= at
        finally:
            alarm.close()

    asyncio.run(main())


def test_no_alarm_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alarm_module.sys, "platform", "darwin")

    async def main() -> None:
        assert open_alarm(asyncio.get_running_loop()) is None

    asyncio.run(main())
