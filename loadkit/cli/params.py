"""Option values the commands share: durations within bounds, as click callbacks."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from loadkit.outputs.files import REPORTS, earlier_result, parse_outputs
from loadkit.workload.units import parse_duration

__all__ = ["LOAD", "duration"]


def duration(low: float = 0.0, high: float = math.inf, *, zero: bool = False,
             default: float | None = None, setting: str | None = None
             ) -> Callable[[click.Context, click.Parameter, str | None], float | None]:
    """A callback parsing '30s', '5m', '250ms' to seconds: more than `low` (or
    equal with `zero`), at most `high`. An absent value gives `default`;
    `setting` names the workload key the flag overrides, in the message."""
    def check(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
        if value is None:
            return default
        where = f" ({setting})" if setting else ""
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise click.BadParameter(f"{exc}{where}") from None
        if seconds < low or (seconds == low and not zero):
            raise click.BadParameter(f"must be {'>=' if zero else '>'} {low:g}"
                                     f"{' s' if low else ''}{where}")
        if seconds > high:
            raise click.BadParameter(f"must be at most {high:g} s{where}")
        return seconds
    return check


class _Load(click.FloatRange):
    """A load (req/s, users): a number in (0, 1e6]. NaN compares false with
    every bound, so click's FloatRange alone lets `nan` through (to fail
    later, blamed on the workload file, or to run a search over nothing)."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail("a number, not nan", param, ctx)
        return number


LOAD = _Load(min=0, min_open=True, max=1e6)


def outputs(_ctx: click.Context, _param: click.Parameter, value: str | None) -> frozenset[str]:
    """`--outputs md,junit`: the reports to write beside the result's JSON
    (default: all)."""
    if value is None:
        return REPORTS
    try:
        return parse_outputs(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def fresh_out(value: Path | None) -> Path | None:
    """`--out` of a run or a search: a new folder, or one without an earlier
    result (outputs.files.earlier_result)."""
    held = earlier_result(value) if value is not None else []
    if held:
        raise click.BadParameter(f"{value} already holds a result ({', '.join(held)}): "
                                 "give another folder, or remove that one", param_hint="'--out'")
    return value


def linger(what: str, url: str, seconds: float) -> None:
    """Serve `what` at `url` for `seconds` more after the run, or until
    Ctrl-C/SIGTERM (`--metrics-linger`, `--ui-linger`)."""
    done = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: done.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo(f"loadkit: serving {what} at {url} for {seconds:g}s (Ctrl-C ends)",
                   err=True)
        done.wait(seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
