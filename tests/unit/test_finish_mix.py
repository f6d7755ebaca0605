"""The finish_reason mix in the reports: totals, a shift between the run's
halves called out, streams without [DONE] noted; in report.html and
summary.md alike."""

from __future__ import annotations

from loadkit.outputs.finish_mix import finish_mix, finish_notes
from loadkit.outputs.html import render_html
from loadkit.outputs.markdown import render_markdown
from loadkit.result import RunResult
from support.synthetic_run import synthetic_day


def run_with(reasons_per_interval: list[dict[str, int]], no_done: int = 0) -> RunResult:
    doc = synthetic_day(len(reasons_per_interval))
    for iv, reasons in zip(doc["timeseries"], reasons_per_interval):
        iv["finish_reasons"] = reasons
    total: dict[str, int] = {}
    for reasons in reasons_per_interval:
        for k, n in reasons.items():
            total[k] = total.get(k, 0) + n
    doc["tokens"]["finish_reason"], doc["tokens"]["no_done"] = total, no_done
    return RunResult.model_validate(doc)


def test_a_steady_mix_is_counted_and_not_called_a_shift() -> None:
    r = run_with([{"length": 90, "stop": 10}] * 10)
    rows = finish_mix(r)
    assert [(f.reason, f.count, round(f.share, 3)) for f in rows] == [
        ("length", 900, 0.9), ("stop", 100, 0.1)]
    assert not any(f.shifted for f in rows)
    assert finish_notes(r) == ["Answers ended by finish_reason: length 900 (90.0%), "
                               "stop 100 (10.0%)."]


def test_answers_stopping_early_in_the_second_half_are_called_out() -> None:
    r = run_with([{"length": 100}] * 5 + [{"length": 60, "stop": 40}] * 5, no_done=1000)
    stop = next(f for f in finish_mix(r) if f.reason == "stop")
    assert (stop.first_half, stop.second_half, stop.shifted) == (0.0, 0.4, True)
    notes = finish_notes(r)
    assert "The share of `length` moved from 100.0% in the first half of the run to 60.0%" in \
        notes[1]
    assert "The share of `stop` moved from 0.0% in the first half of the run to 40.0%" in \
        notes[2]
    assert "1,000 streams ended after their finish_reason without `data: [DONE]`" in notes[3]
    html, md = render_html(r, points=50), render_markdown(r)
    assert 'id="finish-reasons"' in html and "(the mix shifted)" in html
    assert all(note in md for note in notes)


def test_no_finish_reason_no_table() -> None:
    r = run_with([{}] * 4)
    assert finish_mix(r) == [] and 'id="finish-reasons"' not in render_html(r, points=50)
