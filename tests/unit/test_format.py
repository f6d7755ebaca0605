"""Human text: durations and rates rounded as a person would say them, and
errors summarised with an example each."""

from __future__ import annotations

from loadkit.outputs.format import error_line, error_summary, per_second, seconds
from loadkit.result.model import Errors


def test_durations_and_rates_are_rounded_sensibly() -> None:
    assert [seconds(v) for v in (4.615384615, 0.05, 30.0, 12.5, 59.99, 1800.0)] == \
        ["4.6 s", "0.05 s", "30 s", "12.5 s", "60 s", "1,800 s"]
    assert [per_second(v) for v in (41.34, 7.5, 12000.4, 0.0)] == \
        ["41 req/s", "7.5 req/s", "12,000 req/s", "0 req/s"]


def test_errors_most_first_with_one_cut_example_each() -> None:
    errors = Errors(by_kind={"timeout": 2, "http_4xx": 433, "reset": 0},
                    examples={"http_4xx": ["HTTP 401: Invalid\n API key " + "x" * 300],
                              "timeout": []})
    rows = error_summary(errors, width=40)
    assert [(k, n) for k, n, _ in rows] == [("http_4xx", 433), ("timeout", 2)]
    assert rows[0][2].startswith("HTTP 401: Invalid API key") and len(rows[0][2]) == 40
    assert rows[1][2] == ""
    assert error_line(errors).startswith("http_4xx 433 (e.g. HTTP 401: Invalid API key")
