"""A dataset's column, as a workload names it, read before the run: images or
audio for media, texts for a rerank's queries and documents.

JSONL (one object a line), Parquet, or Arrow: a `.arrow` file or a folder
that Hugging Face `datasets` saved (`save_to_disk`: its `.arrow` files, in
the IPC stream format). Arrow and Parquet are read with pyarrow (`pip
install 'loadkit[media]'`), only the named column. The first `limit` values
that are not null are kept: what a run needs is a pool to draw from, not
the dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from loadkit.errors import InputError
from loadkit.workload.units import Strict


class Column(Strict):
    """A dataset's column (its path relative to the workload file). Media: each
    value a file path (relative to the dataset), a data URL, an http(s) URL
    (images: the server fetches it), or a Hugging Face Image/Audio value
    (`{bytes}` base64, `{path}`, or audio's `{array, sampling_rate}`). Rerank:
    each value a text."""

    path: Path
    column: str = Field(min_length=1)


MAX_ROWS = 256


def column_values(col: Column, limit: int = MAX_ROWS, what: str = "media dataset") -> list[Any]:
    """The column's first `limit` values (Arrow structs as dicts, binary as
    bytes); `what` names the dataset in messages."""
    path = col.path
    if path.is_dir() or path.suffix in (".parquet", ".arrow"):
        values = _arrow(col, limit, what)
    else:
        values = _jsonl(col, limit, what)
    if not values:
        raise InputError(f"{what} {path}: no row has a `{col.column}`")
    return values


def column_texts(col: Column, limit: int, what: str) -> list[str]:
    """The column's first `limit` values, each a text that is not empty."""
    values = column_values(col, limit, what)
    for n, v in enumerate(values, 1):
        if not isinstance(v, str) or not v.strip():
            raise InputError(f"{what} {col.path}: value {n} of `{col.column}` is not a text "
                             f"({type(v).__name__}: {str(v)[:40]!r})")
    return values


def _jsonl(col: Column, limit: int, what: str) -> list[Any]:
    values = []
    try:
        with open(col.path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    raise InputError(f"{what} {col.path}:{n}: not JSON") from None
                if isinstance(row, dict) and row.get(col.column) is not None:
                    values.append(row[col.column])
                if len(values) == limit:
                    break
    except OSError as exc:
        raise InputError(f"{what} {col.path}: cannot read: {exc.strerror or exc}") from None
    return values


def _arrow(col: Column, limit: int, what: str) -> list[Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{what} {col.path}: Parquet and Arrow are read with pyarrow: "
                         "pip install 'loadkit[media]'") from None
    files = sorted(col.path.glob("*.arrow")) if col.path.is_dir() else [col.path]
    if not files:
        raise InputError(f"{what} {col.path}: a folder with no .arrow files "
                         "(a Hugging Face `save_to_disk` folder has them)")
    values: list[Any] = []
    for file in files:
        try:
            if file.suffix == ".parquet":
                names = pq.read_schema(file).names
                tables = [pq.read_table(file, columns=[col.column])] if col.column in names \
                    else [pa.table({n: [] for n in names})]  # said below, as for Arrow
            else:
                tables = [_ipc(pa, file)]
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"{what} {file}: cannot read: {exc}") from None
        for table in tables:
            if col.column not in table.column_names:
                raise InputError(f"{what} {file}: no column `{col.column}` (it has "
                                 f"{', '.join(table.column_names)})")
            values += [v for v in table.column(col.column).to_pylist() if v is not None]
        if len(values) >= limit:
            break
    return values[:limit]


def _ipc(pa: Any, file: Path) -> Any:
    """An Arrow file in the IPC stream format (`datasets`), else the file format."""
    with pa.memory_map(str(file)) as source:
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            pass
    with pa.memory_map(str(file)) as source:
        return pa.ipc.open_file(source).read_all()
