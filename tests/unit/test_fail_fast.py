"""Fail fast on a refusing target: judged per interval on the newest requests,
refusals (HTTP 4xx) only, never on what a load test is there to measure."""

from __future__ import annotations

from loadkit.engine.failfast import FailFastWatch
from loadkit.errors import ErrorKind
from loadkit.record.recorder import Recorder, RequestRecord
from loadkit.workload.models import FailFast


def drive(per_second: list[tuple[int, ErrorKind | None]], spec: FailFast | None = None
          ) -> tuple[FailFastWatch, int | None]:
    """Each second: (requests, error kind of all of them or None); returns the
    watch and the second at whose end it stopped the run (None: never)."""
    rec = Recorder(0)
    stopped: list[int] = []
    watch = FailFastWatch(spec or FailFast(), rec, lambda: stopped.append(1))
    rec.events.interval_closed.add_listener(watch.on_interval)
    for second, (n, kind) in enumerate(per_second, start=1):
        for _ in range(n):
            r = RequestRecord("t", "s", "measure", 0, 0, end=1)
            if kind is not None:
                r.error, r.message = kind, f"HTTP 4xx at {second}"
            rec.record(r)
        rec.rotate(second * 1_000_000_000)
        if stopped:
            return watch, second
    return watch, None


def test_refused_from_the_start_stops_after_the_first_100() -> None:
    watch, at = drive([(40, ErrorKind.HTTP_4XX)] * 20)
    assert at == 3  # 120 finished by then, all refused
    assert watch.reason is not None
    assert "120 of the last 120 requests got HTTP 4xx" in watch.reason


def test_refusing_from_a_moment_on_stops_once_the_newest_100_are_refused() -> None:
    watch, at = drive([(40, None)] * 5 + [(40, ErrorKind.HTTP_4XX)] * 20)
    # the newest intervals holding 100 requests: 3 s of them; 90% refused at 8 s
    assert at == 8, watch.reason


def test_a_slow_target_is_judged_after_within_seconds() -> None:
    watch, at = drive([(1, ErrorKind.HTTP_4XX)] * 40)
    assert watch.reason is not None
    assert at == 30 and "30 of the last 30" in watch.reason


def test_outages_and_a_minority_of_refusals_never_stop_a_run() -> None:
    for kind in (ErrorKind.HTTP_5XX, ErrorKind.TIMEOUT, ErrorKind.RESET, ErrorKind.CONNECT):
        assert drive([(40, kind)] * 40)[1] is None
    mixed = [(36, None), (4, ErrorKind.HTTP_4XX)] * 20  # 10% refused
    assert drive(mixed)[1] is None
