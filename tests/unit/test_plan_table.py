"""`loadkit plan`'s table: columns as wide as their widest cell."""

from __future__ import annotations

from loadkit.cli.plan import _table


def test_a_day_long_plan_keeps_its_columns_apart() -> None:
    """A 200-hour plan's counts run to 13 digits: they ran into the req/s
    column ("40.017,373,817,088", an audit) at fixed widths."""
    rows = [("phase", "tenant", "requests", "req/s", "prompt tok", "output tok"),
            ("measure", "default", "28,806,336", "40.01", "7,373,817,088", "1,843,605,504"),
            ("total", "", "28,806,336", "", "7,373,817,088", "1,843,605,504")]
    lines = _table(rows)
    assert lines[1].split() == ["measure", "default", "28,806,336", "40.01", "7,373,817,088",
                                "1,843,605,504"]
    assert "40.01  7,373,817,088" in lines[1]
    # numbers right-aligned under their headings
    assert lines[0].index("prompt tok") + len("prompt tok") == \
        lines[1].index("7,373,817,088") + len("7,373,817,088")
    assert len({len(line) for line in lines}) == 1
