"""Media datasets read before the run: JSONL, Parquet and Arrow columns, and
the clear errors of a wrong column, an empty one or an unreadable file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loadkit.errors import InputError
from loadkit.workload.dataset_columns import MAX_ROWS, column_values
from loadkit.workload.media_spec import Column


def test_each_format_gives_the_column_s_first_values(tmp_path: Path) -> None:
    rows = [{"img": f"{i}.png", "other": i} for i in range(MAX_ROWS + 10)] + [{"other": 1}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.parquet"):
        values = column_values(Column(path=tmp_path / name, column="img"))
        assert values == [f"{i}.png" for i in range(MAX_ROWS)], name


@pytest.mark.parametrize("write,column,said", [
    (lambda p: pq.write_table(pa.table({"a": [1]}), p / "d.parquet"), "img",
     "no column `img` (it has a)"),
    (lambda p: (p / "d.jsonl").write_text('{"a": 1}\n'), "img", "no row has a `img`"),
    (lambda p: (p / "d.jsonl").write_text("{not json\n"), "img", "d.jsonl:1: not JSON"),
    (lambda p: (p / "d.arrow").write_bytes(b"not arrow"), "img", "cannot read"),
    (lambda p: (p / "d").mkdir(), "img", "a folder with no .arrow files"),
])
def test_a_bad_dataset_says_what_is_wrong(tmp_path: Path, write: Callable[[Path], object],
                                          column: str, said: str) -> None:
    write(tmp_path)
    name = next(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError) as info:
        column_values(Column(path=tmp_path / name, column=column))
    assert said in str(info.value)
