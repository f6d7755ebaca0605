"""The server-sent events decoder (loadkit.protocols.sse): split chunks, CRLF,
comments, multi-line data, and a bound on a line that never ends."""

from __future__ import annotations

import pytest

from loadkit.protocols.sse import MAX_LINE, SSEDecoder, SSEError


def test_sse_decoder_handles_splits_crlf_comments_and_multiline() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: one\n") == []
    assert d.feed(b"\n: comment\r") == [b"one"]
    assert d.feed(b"\ndata: a\r\ndata:b\r\n\r\n") == [b"a\nb"]
    assert d.feed(b"event: x\nid: 3\ndata: [DONE]\n\n") == [b"[DONE]"]
    assert not d.pending


def test_sse_decoder_bounds_an_endless_line() -> None:
    d = SSEDecoder()
    fed = 0
    with pytest.raises(SSEError):
        while fed < 4 * MAX_LINE:  # a stream that never sends a newline
            d.feed(b"x" * 1024)
            fed += 1024
    assert fed <= MAX_LINE + 1024
