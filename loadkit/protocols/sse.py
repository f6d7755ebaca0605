"""Incremental Server-Sent Events decoder (the `data:` field only).

aiohttp has no SSE reader and httpx-sse's decoder is private API, so this
follows the WHATWG event-stream rules for the one field OpenAI-style servers
use: lines split on CR/LF, `data:` values joined by newlines, an empty line
ends the event, comments (`:`) and other fields are ignored.
"""

from __future__ import annotations


class SSEDecoder:
    __slots__ = ("_buf", "_data")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the data of every event completed by this chunk."""
        buf = self._buf + chunk
        if b"\r" in buf:
            held = buf.endswith(b"\r")  # may be the first half of a CRLF
            buf = buf[:-1] if held else buf
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            *lines, rest = buf.split(b"\n")
            self._buf = rest + b"\r" if held else rest
        else:
            *lines, self._buf = buf.split(b"\n")
        events = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        return events

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are left over."""
        return bool(self._buf.strip() or self._data)
