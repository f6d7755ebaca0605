"""stop_when_decided: a run ends once the always-valid test decides its
verdict (every SLO passes, or one fails; never before 5 whole intervals),
and a marginal one runs its full length.
The server's latencies are seeded (tests/servers.py `delay`: 5-60 ms, 3% at
250-400 ms), so which side of each threshold a request lands on is known."""

from __future__ import annotations

import pytest

from loadkit.errors import InputError
from loadkit.run.recover import rebuild
from loadkit.slo.confidence import always_valid_decides
from loadkit.slo.live import DECIDE_AFTER_INTERVALS
from loadkit.workload.loader import load_workload
from support.run import RunWorkload, StartServer, WriteWorkload

RATE, INTERVAL = 150, 0.5
# Verdicts are decided from counts, not timings: a busy machine may let the
# generator fall behind without changing what this file checks.
LOOSE = {"allow_saturated": True}


def workload(url: str, duration: float, slos: list[str]) -> dict:
    return {"name": "decided", "target": url, "duration": duration, "interval": INTERVAL,
            "stop_when_decided": True, "client": {"probe": False},
            "arrival": {"process": "constant", "rate": RATE},
            "scenarios": [{"name": "post", "kind": "http", "method": "POST", "path": "/x",
                           "body": {"q": 1}}],
            "slos": slos}


@pytest.mark.slow  # three runs: ~4, ~3 and 6 s
@pytest.mark.timing  # a p97 on its bound: a busy neighbour's delays decided it (CI, 4 workers)
def test_a_run_stops_once_decided_and_a_marginal_one_runs_its_length(server: StartServer,
                                                                     run: RunWorkload) -> None:
    with server("delay") as url:
        under, under_out = run(workload(url, 30, ["latency p99 < 1s", "error_rate < 5%"]),
                               **LOOSE)
        # One SLO clearly failing beside one on its bound: the failure decides.
        over, _ = run(workload(url, 30, ["latency p90 < 30ms", "latency p97 < 150ms"]),
                      **LOOSE)
        # P(latency >= 150 ms) is the server's 3%: the p97 SLO sits on its bound.
        marginal, _ = run(workload(url, 6, ["latency p97 < 150ms"]), **LOOSE)

    # Clearly under: no latency near 1 s, so the first decisive point is the
    # first interval (from the 5th) whose cumulative count passes the test.
    series = under["timeseries"]
    # (An interval in which nothing completed, as the drain's last can be, has no max.)
    assert max(m for iv in series if (m := iv["latency_max_ms"]) is not None) < 1000
    n, first = 0, None
    for iv in series:
        n += iv["completed"] + iv["errors"]
        if iv["end_s"] >= (DECIDE_AFTER_INTERVALS - 0.25) * INTERVAL \
                and always_valid_decides(0, 0, n, 0.01):
            first = iv["end_s"]
            break
    assert first is not None and under["decided"] is not None, under["decided"]
    assert under["decided"]["at_s"] == pytest.approx(first, abs=0.01)
    assert set(under["decided"]["verdicts"].values()) == {"pass"}
    assert series[-1]["end_s"] <= first + 3 * INTERVAL, series[-1]
    assert under["verdict"] == "pass" and under["trusted"], under["untrusted_reasons"]
    assert under["counts"]["unfinished"] == 0  # what was in flight drained, not cut
    # Rebuilt from its journal (run.json lost), it decides the same, at the same
    # interval, and is measured to that point.
    (under_out / "run.json").unlink()
    rebuilt = rebuild(under_out)
    assert rebuilt.decided is not None
    assert rebuilt.decided.model_dump() == under["decided"]
    assert rebuilt.throughput.model_dump() == under["throughput"]

    # Clearly over: ~57% of requests above 30 ms against the 10% allowed,
    # decided at the first interval the test may look, though the other SLO
    # is undecided: no verdict of its can undo the failure.
    d = over["decided"]
    assert d is not None and d["verdicts"] == {"latency p90 < 30ms [all]": "fail"}, d
    assert "`latency p90 < 30ms [all]` was decided failing" in d["reason"]
    assert d["at_s"] <= (DECIDE_AFTER_INTERVALS + 0.5) * INTERVAL, d
    assert over["timeseries"][-1]["end_s"] <= d["at_s"] + 3 * INTERVAL
    assert over["verdict"] == "fail" and over["trusted"], over["untrusted_reasons"]

    # On its bound the data never decide: the run goes to its end.
    assert marginal["decided"] is None
    assert marginal["timeseries"][-1]["end_s"] >= 6 - 0.5 * INTERVAL
    assert marginal["trusted"], marginal["untrusted_reasons"]


def test_slos_judged_at_the_end_cannot_stop_a_run_early(workload_file: WriteWorkload) -> None:
    """A throughput or windowed SLO is known only at the run's end: the
    workload is refused with the SLOs named (exit 2 at the CLI)."""
    spec = workload("http://127.0.0.1:9", 10, ["latency p99 < 1s", "throughput >= 5 req/s",
                                               "error_rate < 1% in every 5s window"])
    with pytest.raises(InputError) as caught:
        load_workload(workload_file(spec))
    message = str(caught.value)
    assert "stop_when_decided" in message and "throughput >= 5 req/s" in message
    assert "in every 5s window" in message and "latency p99" not in message.split(":")[-1]
