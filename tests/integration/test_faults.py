"""Hostile and broken servers: every failure is recorded with its kind, none escapes."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import pytest

from support.run import RunWorkload, StartServer, cli


@pytest.fixture(params=["lean", "aiohttp"])
def transport(request: pytest.FixtureRequest) -> str:
    """Both load-path transports meet every fault the same way."""
    return request.param


def http_run(run: RunWorkload, url: str, path: str, transport: str,
             client: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    spec = {"name": "faults", "target": url, "duration": 1, "warmup": 0,
            "arrival": {"process": "constant", "rate": 10},
            "scenarios": [{"name": "s", "kind": "http", "method": "GET", "path": path}],
            "client": {**(client or {}), "transport": transport}}
    spec.update(extra)
    return run(spec, probe=False)[0]  # these targets refuse on purpose: measure it


# Runs whose timings are asserted are timed as `loadkit run` times them: the
# collector settled before the run's zero and collecting rarely during it
# (RunOptions.quiet_gc), so that no full collection of this long-lived pytest
# process's heap lands mid-run as latency or lateness.
TIMED = {"quiet_gc": True}


@pytest.mark.parametrize("path,kind", [
    ("/status/503", "http_5xx"),
    ("/status/429", "http_4xx"),
    ("/reset", "reset"),
    ("/garbage", "protocol"),
    ("/endless-header", "protocol"),  # cut at a bound, not parsed to the end
    ("/big", "protocol"),
    ("/gzip-bomb", "protocol"),
    ("/redirect", "protocol"),
    ("/hang", "timeout"),
])
def test_each_failure_is_classified(server: StartServer, run: RunWorkload, transport: str,
                                    path: str, kind: str) -> None:
    client = {"timeouts": {"first_byte": "300ms", "total": "2s"}, "max_response_bytes": "1MiB"}
    with server("faults") as url:
        r = http_run(run, url, path, transport, client=client)
    by_kind = {k: n for k, n in r["errors"]["by_kind"].items() if n}
    assert by_kind == {kind: 10}, r["errors"]
    assert r["counts"]["completed"] == 0
    assert r["errors"]["examples"][kind]  # an example message is kept for the report


@pytest.mark.parametrize("path", ["/gzip", "/close-delimited"])
def test_unusual_but_valid_answers_succeed(server: StartServer, run: RunWorkload, transport: str,
                                           path: str) -> None:
    with server("faults") as url:
        r = http_run(run, url, path, transport, scenarios=[
            {"name": "s", "kind": "http", "method": "GET", "path": path,
             "checks": {"json_path": [{"path": "ok", "equals": True}]}}])
    assert r["counts"]["completed"] == 10 and r["counts"]["errors"] == 0, r["errors"]


def test_redirects_followed_only_when_asked(server: StartServer, run: RunWorkload,
                                            transport: str) -> None:
    with server("faults") as url:
        r = http_run(run, url, "/redirect", transport, client={"follow_redirects": True})
    assert r["counts"]["completed"] == 10 and r["counts"]["errors"] == 0


def test_stalled_stream_times_out_and_keeps_other_measurements(server: StartServer,
                                                               run: RunWorkload,
                                                               transport: str) -> None:
    spec = {"scenarios": [{"name": "ok", "kind": "http", "method": "GET", "path": "/ok"},
                          {"name": "stuck", "kind": "openai-chat", "path": "/slow-stream",
                           "model": "m"}]}
    with server("faults") as url:
        r = http_run(run, url, "/", transport, client={"timeouts": {"first_byte": "300ms"}},
                     **spec)
    assert r["errors"]["by_kind"]["timeout"] > 0
    assert r["series"]["latency"]["scenario:ok"]["count"] == r["counts"]["completed"] > 0
    assert r["counts"]["completed"] + r["counts"]["errors"] == 10


def test_events_after_done_are_no_part_of_the_answer(server: StartServer, run: RunWorkload,
                                                    transport: str) -> None:
    """A server that sends 3 more token events a second after [DONE]: each
    answer is its 4 tokens (3 gaps), ending at [DONE] (its service time far
    under the server's second), and reading stops at the extra events (they
    once counted: 7 tokens, the end a second late)."""
    spec: dict[str, Any] = {"scenarios": [{"name": "chat", "kind": "openai-chat",
                                           "path": "/after-done", "model": "m",
                                           "stream": True, "max_tokens": 4}]}
    with server("faults") as url:
        r = http_run(run, url, "/", transport, **spec)
    assert r["counts"]["completed"] == 10 and r["counts"]["errors"] == 0
    assert r["tokens"]["output_total"] == 40 and r["series"]["itl"]["all"]["count"] == 30
    assert r["tokens"]["finish_reason"] == {"length": 10} and r["tokens"]["no_done"] == 0
    assert r["series"]["service_time"]["all"]["max"] < 500, r["series"]["service_time"]


def test_in_flight_cap_drops_instead_of_delaying(server: StartServer, run: RunWorkload,
                                                 transport: str) -> None:
    with server("faults") as url:
        r = http_run(run, url, "/hang", transport, client={"max_in_flight": 3,
                                                           "timeouts": {"total": "1.5s"}})
    assert r["counts"]["dropped"] == 7  # 10 arrivals, 3 slots held by hung requests
    assert r["errors"]["by_kind"]["timeout"] == 3
    # Nothing sent was held for a slot: held, the 4th arrival (due at 0.3 s)
    # would go out when the 1st timed out (1.5 s), 1.2 s late by the schedule
    # on any machine; half of that separates the two whatever this one's speed.
    held_ms = (1.5 - 3 / 10) * 1000
    assert r["health"]["lateness_p99_ms"] < held_ms / 2, r["health"]


@pytest.mark.slow
def test_tls_is_verified_unless_told_otherwise(tmp_path: Path, run: RunWorkload,
                                               transport: str) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file, chain = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadkit.sim", "--port", "0", "--ttft-ms", "1", "--itl-ms", "1"],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        tls = _tls_proxy(chain, port)
        url = f"https://127.0.0.1:{tls['port']}"
        spec = {"name": "tls", "target": url, "duration": 1, "client": {"transport": transport},
                "arrival": {"process": "constant", "rate": 5},
                "scenarios": [{"name": "c", "kind": "openai-chat", "max_tokens": 2}]}
        from loadkit.errors import TargetUnreachable
        with pytest.raises(TargetUnreachable, match="certificate|SSL"):
            run(spec)
        ok, _ = run({**spec, "client": {"ca_bundle": str(ca_file), "transport": transport}})
        assert ok["counts"]["completed"] == 5
        ok, _ = run({**spec, "client": {"insecure": True, "transport": transport}})
        assert ok["counts"]["completed"] == 5
    finally:
        proc.terminate()
        proc.wait()
        if "tls" in locals():
            tls["stop"]()


class _ProxyState(TypedDict, total=False):
    port: int
    loop: asyncio.AbstractEventLoop
    done: asyncio.Event
    stop: Callable[[], object]


def _tls_proxy(chain: Path, upstream_port: int) -> _ProxyState:
    """A TLS-terminating TCP proxy in a thread, in front of the plain simulator."""
    import threading

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(chain))
    state: _ProxyState = {}
    ready = threading.Event()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
        state["port"] = server.sockets[0].getsockname()[1]
        state["loop"] = asyncio.get_running_loop()
        state["done"] = asyncio.Event()
        ready.set()
        async with server:
            await state["done"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    ready.wait(10)
    state["stop"] = lambda: state["loop"].call_soon_threadsafe(state["done"].set)
    return state


@pytest.mark.slow
def test_saturated_generator_is_untrusted(tmp_path: Path, run: RunWorkload) -> None:
    """Ten times what this host can complete: lateness explodes, exit 3, reports
    still written. The overload is scaled to the host, so that a faster one
    is overloaded as much as this one: the reference, measured here, is a
    closed loop of 64 users against the same simulator, which completes
    requests as fast as generator and simulator together can."""
    request = {"simulator": {"ttft_ms": 0, "itl_ms": 0},
               "scenarios": [{"name": "c", "kind": "openai-chat", "stream": False,
                              "max_tokens": 1}]}
    flat_out, _ = run({"name": "capacity", "duration": 1,
                       "arrival": {"process": "closed", "concurrency": 64}, **request},
                      **TIMED)
    capacity = flat_out["throughput"]["requests_per_s"]
    assert flat_out["counts"]["errors"] == 0 and capacity > 0, flat_out["errors"]
    spec: dict[str, Any] = {"name": "flood", "duration": "1s", **request,
                            "arrival": {"process": "constant", "rate": round(10 * capacity)},
                            "client": {"max_in_flight": 2000}}
    path = tmp_path / "flood.yaml"
    path.write_text(json.dumps(spec))
    out = tmp_path / "out"
    proc = cli("run", str(path), "--out", str(out))
    assert proc.returncode == 3, proc.stderr
    assert "generator saturated" in proc.stderr
    result = json.loads((out / "run.json").read_text())
    print(f"capacity {capacity:.0f} req/s; at {spec['arrival']['rate']} req/s, lateness p99 "
          f"{result['health']['lateness_p99_ms']:.1f} ms")
    assert not result["trusted"] and result["health"]["saturated"]
    assert result["health"]["lateness_p99_ms"] > result["health"]["lateness_bound_ms"]
    for name in ("report.html", "summary.md", "junit.xml", "latency.hlog"):
        assert (out / name).stat().st_size > 0, name
    proc = cli("run", str(path), "--out", str(tmp_path / "o2"), "--allow-saturated")
    assert proc.returncode == 0, proc.stderr
