"""The simulator's truth about clients that leave, on real loopback sockets.

A client here is a raw HTTP/1.1 connection (asyncio streams), so the test
knows the instant it closes, on the loop clock the in-process server shares.
What the server says it saw is read from its log (``sim.disconnects``, see
``loadkit/sim/disconnects.py``) and ``/metrics``:

* honoured (the default): a stream left after 10 of 100 tokens is noticed
  within one decode step of the close, 10 tokens sent, none generated after,
  its seat freed at once; a non-streamed answer is noticed as promptly, even
  in the middle of a 16-step sleep; a client that leaves before its first
  token is noticed at that instant in every dialect, streamed or not;
* ``ignore_disconnect``: the same stream decodes its 90 other tokens at the
  same pace, holding its seat until the 100th token's deadline, every token
  counted as generated; a fault on one replica spares the other;
* a connection the server cuts itself (a ``reset`` fault) is no hang-up.

The tests that bound an instant to a few milliseconds are marked ``alone``:
beside another timing file a starved loop noticed hang-ups 50-70 ms late.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from loadkit.engine.loop import quiet_collector
from loadkit.sim.disconnects import Disconnect
from loadkit.sim.faults import parse_faults
from support.sim import CHAT, COMPLETIONS, Live, finished, gauge, live_sim, run_async

ITL = 0.005  # decode step of the stream tests, seconds
TTFT = 0.020
IGNORE = [{"kind": "ignore_disconnect"}]
ANTHROPIC = {"anthropic-version": "2023-06-01"}
RUNNING = "vllm:num_requests_running"
GENERATED = "vllm:generation_tokens_total"
DISCONNECTS = "loadkit_sim_disconnects_total"
AFTER = "loadkit_sim_tokens_after_disconnect_total"


@pytest.fixture(autouse=True)
def _quiet_collector() -> Iterator[None]:
    """Client and server share this process: a full collection of a long
    pytest session's heap would land on their loop as a late notice (one did,
    2 ms over its bound, in a serial run of the fast tier). As for a run."""
    with quiet_collector():
        yield

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def post(live: Live, path: str, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> Streams:
    """Send one request on a connection of its own; return its streams."""
    host, port = live.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    raw = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()) + "\r\n")
    writer.write(head.encode() + raw)
    await writer.drain()
    return reader, writer


async def read_tokens(live: Live, reader: asyncio.StreamReader, k: int) -> list[float]:
    """Read a chat stream's status and headers, then until its k-th token;
    return each token's arrival (simulator's clock)."""
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    times: list[float] = []
    while len(times) < k:
        line = await reader.readline()
        assert line, "the stream ended early"
        if line.startswith(b"data: {"):  # a token (no usage was asked for)
            times.append(live.now())
    return times


async def close(live: Live, writer: asyncio.StreamWriter) -> float:
    """Hang up; return the instant (simulator's clock)."""
    at = live.now()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return at


async def until(check: Callable[[], bool], timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.001)


def rel(live: Live, t: float | None) -> float:
    """A loop time of the server's log on the simulator's clock."""
    assert t is not None
    return t - live.sim.context.origin


def chat(max_tokens: int, stream: bool = True) -> dict[str, Any]:
    return {"model": "x", "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": max_tokens, "stream": stream}


# -- streams left mid-answer ---------------------------------------------------------


@pytest.mark.timing
def test_a_stream_left_after_10_tokens_stops_and_frees_its_seat() -> None:
    async def go() -> tuple[Live, float, float, float, list[Disconnect], dict[str, float]]:
        async with live_sim(ttft_ms=TTFT * 1000, itl_ms=ITL * 1000) as live:
            sent = live.now()
            reader, writer = await post(live, CHAT, chat(100))
            await read_tokens(live, reader, 10)
            closed = await close(live, writer)
            await until(lambda: bool(live.sim.disconnects))
            m = await live.metrics()
            freed = live.now()
            return live, sent, closed, freed, list(live.sim.disconnects), m

    live, sent, closed, freed, log, m = run_async(go())
    assert len(log) == 1
    rec = log[0]
    assert 0 <= rel(live, rec.arrival) - sent < 0.01
    assert 0 <= rel(live, rec.noticed) - closed <= ITL + 0.003, (rec, closed)
    assert rec.sent in (10, 11)  # the 11th may have been on its way
    assert rec.after in (0, 1) and rec.ended == rec.noticed  # it stopped as noticed
    assert not rec.zombie and rec.stream and rec.dialect == "chat" and rec.replica == 0
    assert freed - closed < 0.05 and gauge(m, RUNNING) == 0  # the seat went back
    assert gauge(m, GENERATED) == rec.sent
    assert gauge(m, DISCONNECTS) == 1 and gauge(m, AFTER) == rec.after
    assert finished(m, "length") == 0 and finished(m, "abort") == 1  # aborted as noticed


@pytest.mark.timing
def test_ignore_disconnect_decodes_to_the_last_token_holding_its_seat() -> None:
    async def go() -> tuple[Live, float, list[float], list[Disconnect], dict[str, float]]:
        async with live_sim(ttft_ms=TTFT * 1000, itl_ms=ITL * 1000, faults=IGNORE) as live:
            reader, writer = await post(live, CHAT, chat(100))
            await read_tokens(live, reader, 10)
            closed = await close(live, writer)
            await until(lambda: bool(live.sim.disconnects))
            rec = live.sim.disconnects[0]
            assert rec.zombie and rec.ended is None  # decoding on
            last = rel(live, rec.arrival) + TTFT + 99 * ITL  # the 100th token's deadline
            running = []
            for t in (closed + 0.05, last - 0.2, last - 0.02):
                await live.at(t)
                running.append(gauge(await live.metrics(), RUNNING))
            await until(lambda: rec.ended is not None)
            m = await live.metrics()
            return live, closed, running, list(live.sim.disconnects), m

    live, closed, running, log, m = run_async(go())
    assert len(log) == 1
    rec = log[0]
    assert 0 <= rel(live, rec.noticed) - closed <= ITL + 0.003, (rec, closed)
    assert rec.sent in (10, 11) and rec.after in (89, 90, 91) and rec.sent + rec.after >= 99
    assert running == [1, 1, 1]  # its seat, held to the end
    # It ended, and gave its seat back, at its last token's deadline exactly.
    assert rec.ended is not None
    assert rec.ended - rec.arrival == pytest.approx(TTFT + 99 * ITL, abs=1e-6)
    assert gauge(m, RUNNING) == 0
    assert gauge(m, GENERATED) == 100  # every token, as if sent
    assert gauge(m, DISCONNECTS) == 1 and gauge(m, AFTER) == rec.after
    # Answered in full, to nobody: never aborted.
    assert finished(m, "length") == 1 and finished(m, "abort") == 0
    assert m['loadkit_sim_faults_injected_total{kind="ignore_disconnect"}'] == 1


@pytest.mark.timing  # the hang-up noticed within three 5-ms steps
def test_ignore_disconnect_on_one_replica_spares_the_other() -> None:
    async def go() -> list[Disconnect]:
        async with live_sim(ttft_ms=TTFT * 1000, itl_ms=ITL * 1000, replicas=2,
                            faults=[{"kind": "ignore_disconnect", "replica": 1}]) as live:
            a = await post(live, CHAT, chat(40))
            b = await post(live, CHAT, chat(40))
            for reader, _ in (a, b):
                await read_tokens(live, reader, 3)
            for _, writer in (a, b):
                await close(live, writer)
            await until(lambda: len(live.sim.disconnects) == 2
                        and all(r.ended is not None for r in live.sim.disconnects))
            return sorted(live.sim.disconnects, key=lambda r: r.replica or 0)

    spared, zombie = run_async(go())
    assert (spared.replica, spared.zombie, spared.after) == (0, False, 0)
    assert (zombie.replica, zombie.zombie) == (1, True) and zombie.after >= 35


# -- non-streamed answers --------------------------------------------------------------

# Steps of 20 ms: with a per-sequence cost the answer sleeps 16 steps (320 ms)
# at a time; without one, once for the whole answer.  Either sleep must be
# cut short by the hang-up.
PLAIN: dict[str, dict[str, Any]] = {"one sleep": {}, "16-step sleeps": {"itl_ms_per_seq": 0.001}}


@pytest.mark.timing
@pytest.mark.parametrize("shape", PLAIN)
@pytest.mark.parametrize("ignore", [False, True], ids=["honoured", "ignored"])
def test_a_non_streamed_answer_left_halfway_is_noticed_within_a_step(
        shape: str, ignore: bool) -> None:
    step = 0.020

    async def go() -> tuple[Live, float, list[Disconnect], dict[str, float]]:
        async with live_sim(ttft_ms=TTFT * 1000, itl_ms=step * 1000, **PLAIN[shape],
                            faults=IGNORE if ignore else []) as live:
            sent = live.now()
            _, writer = await post(live, CHAT, chat(30, stream=False))
            await live.at(sent + TTFT + 5.5 * step)  # in the middle of a step
            closed = await close(live, writer)
            await until(lambda: bool(live.sim.disconnects)
                        and live.sim.disconnects[0].ended is not None)
            return live, closed, list(live.sim.disconnects), await live.metrics()

    live, closed, log, m = run_async(go())
    assert len(log) == 1
    rec = log[0]
    assert 0 <= rel(live, rec.noticed) - closed <= step, (rec, closed)
    assert rec.sent == 0 and not rec.stream and rec.zombie == ignore
    assert rec.ended is not None
    if ignore:  # tokens 0..5 were due before the close, 24 after
        assert rec.after == 24
        assert rec.ended - rec.arrival == pytest.approx(TTFT + 29 * step, abs=1e-3)
        assert gauge(m, GENERATED) == 30
    else:
        assert rec.after == 0 and rec.ended == rec.noticed
        assert gauge(m, GENERATED) == 0
    assert gauge(m, RUNNING) == 0 and gauge(m, AFTER) == rec.after


# -- before the first token ------------------------------------------------------------

DIALECTS: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
    "chat": (CHAT, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}, {}),
    "completions": (COMPLETIONS, {"prompt": "hi", "max_tokens": 20}, {}),
    "responses": ("/v1/responses", {"input": "hi", "max_output_tokens": 20}, {}),
    "messages": ("/v1/messages", {"messages": [{"role": "user", "content": "hi"}],
                                  "max_tokens": 20}, ANTHROPIC),
}


@pytest.mark.timing
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_client_out_of_patience_is_noticed_at_that_instant(dialect: str,
                                                             stream: bool) -> None:
    """A prefill of 300 ms; the client leaves 50 ms after sending."""
    path, body, headers = DIALECTS[dialect]

    async def go() -> tuple[Live, float, float, list[Disconnect], dict[str, float]]:
        async with live_sim(ttft_ms=300, itl_ms=5) as live:
            sent = live.now()
            _, writer = await post(live, path, {"model": "x", **body, "stream": stream},
                                   headers)
            await live.at(sent + 0.05)
            closed = await close(live, writer)
            await until(lambda: bool(live.sim.disconnects))
            return live, sent, closed, list(live.sim.disconnects), await live.metrics()

    live, sent, closed, log, m = run_async(go())
    assert len(log) == 1
    rec = log[0]
    assert 0 <= rel(live, rec.noticed) - closed <= 0.002, (rec, closed)
    assert 0 <= rel(live, rec.arrival) - sent < 0.01
    assert (rec.sent, rec.after, rec.zombie) == (0, 0, False)
    assert (rec.dialect, rec.stream) == (dialect, stream)
    assert gauge(m, DISCONNECTS) == 1 and gauge(m, GENERATED) == 0
    assert gauge(m, RUNNING) == 0


# -- what is not a hang-up ---------------------------------------------------------------


def test_the_servers_own_cut_is_no_hang_up() -> None:
    async def go() -> tuple[bytes, list[Disconnect], dict[str, float]]:
        async with live_sim(ttft_ms=1, itl_ms=1, faults=[
                {"kind": "reset", "rate": 1, "after_tokens": 3}]) as live:
            reader, writer = await post(live, CHAT, chat(10))
            said = await reader.read()  # until the server closes it
            writer.close()
            await asyncio.sleep(0.05)
            return said, list(live.sim.disconnects), await live.metrics()

    said, log, m = run_async(go())
    assert said.count(b"data: {") == 3
    assert log == [] and gauge(m, DISCONNECTS) == 0


def test_the_fault_is_declared_like_the_others() -> None:
    fault, = parse_faults([{"kind": "ignore_disconnect", "replica": 1, "start": "1s",
                            "end": "2s"}])
    assert (fault.kind, fault.replica, fault.start, fault.end) == ("ignore_disconnect", 1,
                                                                  1.0, 2.0)
    assert fault.as_dict() == {"kind": "ignore_disconnect", "start": 1.0, "end": 2.0,
                               "replica": 1}
    with pytest.raises(ValueError, match="unknown key"):
        parse_faults([{"kind": "ignore_disconnect", "rate": 0.5}])
