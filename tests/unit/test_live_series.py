"""The live view's server and series (run/live_view.py, run/live_feed.py),
without a browser: bounded memory over a long run fed on a fake clock, the
token rule, the POSTs' guard, notes, and frames merged so spikes stay."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from loadkit.errors import InputError
from loadkit.run.live_feed import Frames, merge_frames
from loadkit.run.live_view import MAX_NOTE, LiveView


def _frame(i: int, spike: bool = False) -> dict[str, Any]:
    p99 = 900.0 if spike else 40.0
    return {"t0": float(i), "t1": i + 1.0, "rps": 40.0, "tok": 300.0, "inflight": 3,
            "lat": [20.0, 30.0, p99, p99 + 5], "ttft": [5.0, 6.0, 8.0, 9.0], "late": 0.4,
            "cpu": 12.0, "err": {"timeout": 1} if i % 100 == 0 else {},
            "ten": {"a": p99, "b": 35.0}, "tele": {"gpu.util (%)": 50.0 + i % 10}}


def test_merge_keeps_the_worst_tail_and_sums_counts() -> None:
    m = merge_frames([_frame(0), _frame(1, spike=True)])
    assert (m["t0"], m["t1"], m["k"]) == (0.0, 2.0, 2)
    assert m["lat"] == [20.0, 30.0, 900.0, 905.0]  # p50/p90 averaged, p99/max the worst
    assert m["err"] == {"timeout": 1} and m["rps"] == 40.0 and m["ten"]["a"] == 900.0
    assert m["tele"] == {"gpu.util (%)": 50.5}


def _mirror(view: LiveView, ready: threading.Event, seen: dict[str, Any]) -> None:
    """A page's side of /events, as live.js keeps it: closed points and the open one."""
    buffer = b""

    def write(data: bytes) -> None:
        nonlocal buffer
        buffer += data
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            lines = dict(line.split(": ", 1) for line in block.decode().split("\n")
                         if not line.startswith(":"))
            if lines.get("event") == "points":
                d = json.loads(lines["data"])
                seen["closed"] = d["closed"] if d["reset"] else seen["closed"] + d["closed"]
                seen["open"] = d["open"]
                seen["most"] = max(seen["most"], len(seen["closed"]) + 1)
        ready.set()

    view.stream(write)


def test_two_hours_of_intervals_keep_server_and_page_bounded() -> None:
    """7,200 one-second intervals on a fake clock (no 2-hour run): the
    server's series and a page's copy stay under 2 x limit + 1 points, the
    snapshot's JSON stays small, and a one-interval spike stays visible."""
    view = LiveView()
    view.frames = Frames(limit=100)
    seen: dict[str, Any] = {"closed": [], "open": None, "most": 0}
    ready = threading.Event()
    page = threading.Thread(target=_mirror, args=(view, ready, seen), daemon=True)
    page.start()
    assert ready.wait(5)
    sizes = []
    for i in range(7200):
        view._publish(_frame(i, spike=i == 4321), {})
        if i % 600 == 599:
            sizes.append(len(json.dumps(view.snapshot()["points"])))
    points = view.frames.points()
    deadline = time.monotonic() + 5  # the page's thread catches up with the last frame
    while seen["closed"] + ([seen["open"]] if seen["open"] else []) != points \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    view.close()
    page.join(5)
    assert len(points) <= 2 * 100 + 1
    assert max(sizes) < 2 * min(sizes) + 20_000  # flat, not growing with the run
    assert sum(p.get("k", 1) for p in points) == 7200
    assert max(p["lat"][2] for p in points) == 900.0
    assert seen["most"] <= 2 * 100 + 1
    assert seen["closed"] + ([seen["open"]] if seen["open"] else []) == points


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post(url: str, body: dict[str, Any], guard: bool = True) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", **({"X-Loadkit-UI": "1"} if guard else {})}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        return exc.code, json.loads(text) if text.startswith(b"{") else {"text": text.decode()}


def test_off_loopback_without_a_token_is_refused() -> None:
    with pytest.raises(InputError, match="LOADKIT_UI_TOKEN"):
        LiveView("0.0.0.0", 0, None)


def test_a_wrong_token_gets_401_and_no_data() -> None:
    view = LiveView("127.0.0.1", 0, "s3cret").start()
    view.info["workload"] = "secret-workload-name"
    try:
        for path in ("", "state.json", "events", "report"):
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                status, body = _get(view.url + path, headers)
                assert status == 401 and b"secret-workload" not in body and len(body) < 40
            assert _get(view.url + path + "?token=wrong")[0] == 401
        assert _post(view.url + "stop", {})[0] == 401
        status, body = _get(view.url + "state.json", {"Authorization": "Bearer s3cret"})
        assert status == 200 and json.loads(body)["info"]["workload"] == "secret-workload-name"
        assert _get(view.url + "?token=s3cret")[0] == 200
    finally:
        view.close()


def test_without_a_token_only_loopback_names_are_answered() -> None:
    """DNS rebinding: a site's page whose name now points at 127.0.0.1 sends
    its own name as Host; the view answers loopback names only."""
    view = LiveView().start()
    port = view.url.rstrip("/").rsplit(":", 1)[1]
    try:
        for host in (f"evil.example:{port}", "evil.example", f"10.0.0.1:{port}"):
            assert _get(view.url + "state.json", {"Host": host})[0] == 403, host
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            assert _get(view.url + "state.json", {"Host": host})[0] == 200, host
    finally:
        view.close()


def test_controls_need_their_header_and_a_running_run() -> None:
    view = LiveView().start()
    stops: list[int] = []
    try:
        assert _post(view.url + "note", {"text": "hi"})[0] == 409  # no run yet
        view._stop = lambda: stops.append(1)
        view.state = {"running": True}
        assert _post(view.url + "stop", {}, guard=False)[0] == 403  # a cross-site form
        assert _post(view.url + "note", {"text": "x"}, guard=False)[0] == 403
        assert _post(view.url + "note", {"text": "  "})[0] == 400
        assert _post(view.url + "note", {"text": "x" * (MAX_NOTE + 1)})[0] == 400
        status, note = _post(view.url + "note", {"text": "deployed <b>v2</b>\x07"})
        assert status == 201 and note["text"] == "deployed <b>v2</b>"
        assert view.run_notes() == [{"at_s": note["at_s"], "text": "deployed <b>v2</b>"}]
        assert _post(view.url + "stop", {})[0] == 202
        assert _post(view.url + "stop", {})[1]["message"] == "already stopping"
        assert stops == [1]  # one Ctrl-C, never the second that exits at once
    finally:
        view.close()


def test_the_report_route_says_whether_the_run_goes_or_its_report_is_being_written(
        tmp_path: Path) -> None:
    view = LiveView().start()
    try:
        view.state = {"running": True, "finished": False}
        assert _get(view.url + "report") == (404, b"no report yet: the run is going\n")
        view.state = {"running": False, "finished": True}  # judged, report not yet written
        assert _get(view.url + "report") == (
            404, b"no report yet: the run is over, its report is being written\n")
        (tmp_path / "report.html").write_text("<p>done</p>")
        view.show_report(tmp_path / "report.html")
        assert _get(view.url + "report") == (200, b"<p>done</p>")
    finally:
        view.close()
