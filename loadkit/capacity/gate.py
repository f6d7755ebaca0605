"""The gate on a capacity result: `--expect`, headroom, verdict and exit code. Pure.

The capacity is known as an interval: at least the highest load that passed,
less than the lowest that failed (either may be unknown). An expectation
passes when the whole interval meets it, fails when none of it does, and is
inconclusive when it straddles the threshold, like a percentile SLO whose
threshold lies inside its confidence interval.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, cast

from loadkit.capacity.model import RATE, USERS, CapacityResult, Expectation, Headroom
from loadkit.capacity.search import Conclusion
from loadkit.errors import ExitCode, InputError, gate
from loadkit.result.model import Verdict

_EXPECT = re.compile(r"^\s*(?P<subject>capacity|headroom)\s*(?P<op><=|>=|<|>)\s*"
                     r"(?P<num>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>req/s|rps|users|x)?\s*$")
_UNITS = {"req/s": RATE, "rps": RATE, "users": USERS}
ANSWERED = (Conclusion.FOUND, Conclusion.ABOVE_RANGE, Conclusion.BELOW_RANGE)


@dataclass(frozen=True)
class Expect:
    text: str
    subject: Literal["capacity", "headroom"]
    op: str
    threshold: float


def parse_expect(text: str, unit: str) -> Expect:
    """'capacity >= 120 req/s', 'capacity > 64 users', 'headroom >= 1.5x';
    InputError (exit 2) otherwise, or when the unit is not the search's."""
    m = _EXPECT.match(text)
    if not m:
        raise InputError(f"--expect {text!r}: expected e.g. 'capacity >= 120 req/s', "
                         "'capacity >= 64 users' (closed loops) or 'headroom >= 1.5x'")
    subject, op, given = m.group("subject"), m.group("op"), m.group("unit")
    if subject == "capacity" and given is not None and _UNITS.get(given) != unit:
        raise InputError(f"--expect {text!r}: this workload's capacity is in {unit}")
    if subject == "headroom" and given not in (None, "x"):
        raise InputError(f"--expect {text!r}: headroom is a ratio, e.g. 'headroom >= 1.5x'")
    return Expect(text.strip(), cast(Literal["capacity", "headroom"], subject), op,
                  float(m.group("num")))


def judge(expect: Expect, low: float | None, high: float | None) -> tuple[Verdict, str]:
    """The verdict of `expect` on a value known to lie in [low, high)."""
    lo, hi = low or 0.0, high if high is not None else math.inf
    t, op = expect.threshold, expect.op
    if op in (">=", ">"):
        passed = lo > t or (op == ">=" and lo >= t)
        failed = hi <= t
    else:
        passed = hi <= t
        failed = lo > t or (op == "<" and lo >= t)
    known = f"{expect.subject} in [{lo:.4g}, {_num(high)})"
    if passed:
        return Verdict.PASS, f"{known}: all of it {op} {t:g}"
    if failed:
        return Verdict.FAIL, f"{known}: none of it {op} {t:g}"
    return Verdict.INCONCLUSIVE, f"{known} straddles {t:g}: more probes would tell"


def headroom(result: CapacityResult, production: float) -> Headroom:
    c = result.capacity
    return Headroom(production=production,
                    low=round(c.passed / production, 4) if c.passed is not None else None,
                    high=round(c.failed / production, 4) if c.failed is not None else None)


def regate(result: CapacityResult, expect: str | None, production: float | None
           ) -> CapacityResult:
    """The result judged against `expect` (with headroom over `production`)."""
    if production is not None and production <= 0:
        raise InputError("--production-rate must be > 0")
    room = headroom(result, production) if production is not None else result.headroom
    expectation = None
    if expect is not None:
        e = parse_expect(expect, result.unit)
        if e.subject == "capacity":
            low, high = result.capacity.passed, result.capacity.failed
        elif room is None:
            raise InputError(f"--expect {expect!r} needs --production-rate")
        else:
            low, high = room.low, room.high
        verdict, reason = judge(e, low, high)
        expectation = Expectation(text=e.text, subject=e.subject, op=e.op,
                                  threshold=e.threshold, verdict=verdict, reason=reason)
    return result.model_copy(update={"headroom": room, "expectation": expectation,
                                     "verdict": verdict_of(result.conclusion, expectation)})


def verdict_of(conclusion: Conclusion, expectation: Expectation | None) -> Verdict:
    """The expectation's verdict; without one, whether the search reached an answer."""
    if expectation is not None:
        return expectation.verdict
    return Verdict.PASS if conclusion in ANSWERED else Verdict.INCONCLUSIVE


def exit_code(result: CapacityResult, inconclusive: str = "fail") -> ExitCode:
    """3 when the search was not trusted (the generator was the limit), 1 on a
    failed expectation (or an undecided one unless `inconclusive` is "pass")."""
    return gate(trusted=result.trusted, failed=result.verdict == Verdict.FAIL,
                undecided=result.verdict == Verdict.INCONCLUSIVE, inconclusive=inconclusive)


def _num(v: float | None) -> str:
    return "∞" if v is None else f"{v:.4g}"
