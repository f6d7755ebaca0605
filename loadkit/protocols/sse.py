"""Incremental Server-Sent Events decoder (the `data:` field only).

aiohttp has no SSE reader and httpx-sse's decoder is private API, so this
follows the WHATWG event-stream rules for the one field OpenAI-style servers
use: lines end with CR, LF or CRLF, `data:` values join with newlines, an
empty line ends the event, comments (`:`) and other fields are ignored.
Only new bytes are scanned, and an unfinished line longer than MAX_LINE is an
error, so a hostile stream cannot make parsing quadratic or unbounded.
"""

from __future__ import annotations

import orjson

from loadkit.protocols.answer_json import error_said

MAX_LINE = 1 << 20
HEAD = 512  # the first bytes of a body, kept to say what it was when it was no stream


class SSEError(ValueError):
    pass


class SSEDecoder:
    __slots__ = ("_buf", "_data", "_cr", "head")

    def __init__(self) -> None:
        self._buf = bytearray()  # the unfinished line
        self._data: list[bytes] = []
        self._cr = False  # the last chunk ended in CR: a following LF is its pair
        self.head = b""  # the body's first HEAD bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the data of every event completed by this chunk."""
        if len(self.head) < HEAD:
            self.head += chunk[:HEAD - len(self.head)]
        if self._cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._cr = chunk.endswith(b"\r")
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[bytes] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if self._buf:
                self._buf += chunk[start:end]
                line = bytes(self._buf)
                self._buf.clear()
            else:
                line = chunk[start:end]
            self._line(line, events)
            start = end + 1
        self._buf += chunk[start:]
        if len(self._buf) > MAX_LINE:
            raise SSEError(f"event-stream line longer than {MAX_LINE} bytes")
        return events

    def _line(self, line: bytes, events: list[bytes]) -> None:
        if not line:
            if self._data:
                events.append(b"\n".join(self._data))
                self._data = []
        elif line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)

    def not_a_stream(self) -> str | None:
        """What a body that held no event was, when it was JSON (a server's
        error object where a stream was asked: its message); None otherwise."""
        head = self.head.lstrip()
        if not head.startswith(b"{"):
            return None
        try:
            doc = orjson.loads(head)
        except ValueError:  # cut at HEAD bytes, or not JSON after all
            doc = None
        error = doc.get("error") if isinstance(doc, dict) else None
        if error is None:
            return f"the answer is JSON, not an event stream: {head[:120]!r}"
        return error_said(error)

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are left over."""
        return bool(self._buf.strip() or self._data)
