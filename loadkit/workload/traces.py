"""Request trace formats: read and checked once, at load time (the schedule
replays them: arrivals/trace.py).

Formats:
- `azure`: the Azure LLM inference trace CSV, `TIMESTAMP,ContextTokens,
  GeneratedTokens` with timestamps like `2023-11-16 18:15:46.6805900`;
- `csv`: a `timestamp` column (seconds, or an ISO date-time) and optional
  `prompt_tokens` / `output_tokens` columns;
- `jsonl`: one object per line with the same keys, and an optional
  `session_id`: rows of one session are replayed as the turns of one
  conversation (each sent at its own offset, never before the previous answer);
- `mooncake`: the Mooncake trace JSONL, `timestamp` (milliseconds),
  `input_length`, `output_length`, `hash_ids` (one id per 512-token block
  of the prompt: requests that share leading ids share that prefix).
`auto` picks by extension and keys (`hash_ids`: mooncake). A bad row raises
TraceError naming it.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from loadkit.workload.units import MAX_TOKENS

_AZURE = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_KEYS = {"timestamp": ("timestamp", "TIMESTAMP"),
         "prompt": ("prompt_tokens", "ContextTokens"),
         "output": ("output_tokens", "GeneratedTokens")}


class TraceError(ValueError):
    def __init__(self, path: str, row: int | None, message: str):
        self.path, self.row, self.message = path, row, message
        where = f"row {row}: " if row is not None else ""
        super().__init__(f"trace {path}: {where}{message}")


class TraceRow(NamedTuple):
    time: float  # seconds, absolute or relative as the trace gives them
    prompt_tokens: int | None
    output_tokens: int | None
    blocks: tuple[int, ...] = ()  # the prompt's block ids (mooncake), in order
    session: str | None = None  # `session_id`: rows of one conversation
    # The session's later turns, on its first row: (offset s, prompt, output).
    script: tuple[tuple[float, int | None, int | None], ...] = ()


MOONCAKE_BLOCK_TOKENS = 512
DATED_S = 1e8  # a timestamp past this (1973 as a date; 3 years as seconds) is a date


def load_trace(path: Path, fmt: str = "auto") -> list[TraceRow]:
    """Every row of a trace file, sorted by time; TraceError on any bad row."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's export starts with a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(name, None, f"cannot read: {exc}") from None
    if fmt == "auto":
        fmt = "jsonl" if path.suffix == ".jsonl" else "csv"
        if fmt == "jsonl" and '"hash_ids"' in text[:4096]:
            fmt = "mooncake"
    records = _jsonl(name, text) if fmt in ("jsonl", "mooncake") else _csv(name, text, fmt)
    rows = [_mooncake(name, n, rec) if fmt == "mooncake" else _row(name, n, rec)
            for n, rec in records]
    if not rows:
        raise TraceError(name, None, "has no requests")
    _one_clock(name, rows)
    rows.sort(key=lambda r: r.time)
    return _sessions(rows)


def _sessions(rows: list[TraceRow]) -> list[TraceRow]:
    """Rows with a `session_id` become one session each: its first row, which
    carries the later rows as its script (offsets from the first)."""
    if all(r.session is None for r in rows):
        return rows
    later: dict[str, list[TraceRow]] = {}
    firsts: dict[str, int] = {}
    out: list[TraceRow] = []
    for r in rows:
        if r.session is None:
            out.append(r)
        elif r.session in firsts:
            later[r.session].append(r)
        else:
            firsts[r.session], later[r.session] = len(out), []
            out.append(r)
    for session, i in firsts.items():
        first = out[i]
        out[i] = first._replace(script=tuple(
            (r.time - first.time, r.prompt_tokens, r.output_tokens) for r in later[session]))
    return out


def _one_clock(name: str, rows: list[TraceRow]) -> None:
    """Seconds and dates in one file are two clocks: a row stamped with a
    date lands some 1.7e9 s after one stamped in seconds, past any run."""
    dated = [r.time > DATED_S for r in rows]
    if any(dated) and not all(dated):
        n = dated.index(not dated[0]) + 1
        raise TraceError(name, None, f"mixes timestamps in seconds with dates (its request "
                         f"{n} differs from its first): one clock per file")


_COLUMNS = {k for keys in _KEYS.values() for k in keys} | {"session_id"}


def _csv(name: str, text: str, fmt: str) -> Iterator[tuple[int, dict]]:
    reader = csv.reader(text.splitlines())
    header = [h.strip() for h in next(reader, [])]
    if fmt == "azure" and tuple(header[:3]) != _AZURE:
        raise TraceError(name, 1, f"expected the Azure header {','.join(_AZURE)}")
    if not any(k in header for k in _KEYS["timestamp"]):
        raise TraceError(name, 1, "no `timestamp` (or Azure `TIMESTAMP`) column")
    # Columns it cannot read would leave every row to the scenario's counts.
    if "" in header:
        raise TraceError(name, 1, "a column has no name (a trailing comma, or an index "
                         "column?)")
    if twice := sorted({h for h in header if header.count(h) > 1}):
        raise TraceError(name, 1, f"column {', '.join(map(repr, twice))} is named twice")
    if unknown := [h for h in header if h not in _COLUMNS]:
        raise TraceError(name, 1, f"unknown column {', '.join(map(repr, unknown))} (the "
                         "columns: timestamp, prompt_tokens, output_tokens, session_id; or "
                         "Azure's TIMESTAMP, ContextTokens, GeneratedTokens)")
    for row in reader:
        n = reader.line_num  # the file's line, past any blank one
        if not row:  # a blank line
            continue
        if len(row) != len(header):
            raise TraceError(name, n, f"has {len(row)} fields, the header {len(header)}")
        rec = dict(zip(header, row, strict=True))
        for k in header:
            if k != "session_id" and not rec[k].strip():
                raise TraceError(name, n, f"empty {k}: give a value, or leave the column out")
        yield n, rec


def _jsonl(name: str, text: str) -> Iterator[tuple[int, dict]]:
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            raise TraceError(name, n, "not valid JSON") from None
        if not isinstance(rec, dict):
            raise TraceError(name, n, "must be a JSON object")
        yield n, rec


def _row(name: str, n: int, rec: dict) -> TraceRow:
    def field(kind: str) -> object:
        return next((rec[k] for k in _KEYS[kind] if rec.get(k) not in (None, "")), None)

    ts = field("timestamp")
    if ts is None:
        raise TraceError(name, n, "missing timestamp")
    session = rec.get("session_id")
    return TraceRow(_seconds(name, n, ts), _count(name, n, field("prompt"), "prompt tokens"),
                    _count(name, n, field("output"), "output tokens"),
                    session=None if session in (None, "") else str(session))


def _mooncake(name: str, n: int, rec: dict) -> TraceRow:
    ids = rec.get("hash_ids")
    if not isinstance(ids, list) or not all(type(i) is int and i >= 0 for i in ids):
        raise TraceError(name, n, "`hash_ids` must be a list of block ids (integers >= 0)")
    if rec.get("timestamp") is None:
        raise TraceError(name, n, "missing timestamp")
    prompt = _count(name, n, rec.get("input_length"), "input_length")
    if prompt is not None and ids and not (
            (len(ids) - 1) * MOONCAKE_BLOCK_TOKENS < prompt <= len(ids) * MOONCAKE_BLOCK_TOKENS):
        raise TraceError(name, n, f"input_length {prompt} does not fit {len(ids)} blocks of "
                         f"{MOONCAKE_BLOCK_TOKENS} tokens")
    return TraceRow(_seconds(name, n, rec["timestamp"]) / 1000.0, prompt,  # milliseconds
                    _count(name, n, rec.get("output_length"), "output_length"), tuple(ids))


def _seconds(name: str, n: int, value: object) -> float:
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not math.isfinite(seconds):
            raise TraceError(name, n, f"bad timestamp {text[:40]!r}")
        return seconds
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        raise TraceError(name, n, f"bad timestamp {text[:40]!r}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def _count(name: str, n: int, value: object, what: str) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        raise TraceError(name, n, f"bad {what} {text[:20]!r}") from None
    if not number.is_integer():  # 10.0 is a count (a spreadsheet's export), 10.5 is not
        raise TraceError(name, n, f"bad {what} {text[:20]!r}: not a whole number")
    if number < 0:
        raise TraceError(name, n, f"{what} must be >= 0")
    if number > MAX_TOKENS:  # a typo that would build a prompt of gigabytes
        raise TraceError(name, n, f"{what} must be <= {MAX_TOKENS:,}")
    return int(number)
