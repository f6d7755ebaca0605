"""`--ui [HOST:]PORT`: the run's live page, served from a thread while it goes.

The page (outputs/live_page.py) is one self-contained file: its script draws
what it is sent and fetches nothing but this server. Updates are pushed as
Server-Sent Events (`GET /events`): the recorder thread's listener
(run/live_feed.py) stores each interval's frame here and wakes the streams;
each stream's own server thread encodes and writes what changed since it
last wrote. So a browser costs the run one small dict per interval on the
recorder's thread, and nothing on the loop that releases requests.

Endpoints: `/` the page, `/events` the stream, `/state.json` the same state
at once, `/report` the final report.html once written; `POST /stop` (the
Ctrl-C path: partial results, exit 3) and `POST /note` (text stamped at the
run's time, kept in run.json's `notes`). The token rule is the other served
endpoints' (served.py): loopback without one; any other address needs it,
as a bearer token or `?token=` (an EventSource cannot send headers); a
wrong one gets 401 and nothing else. Without a token, a request must name a
loopback host (`Host`), so a site that rebinds its name to 127.0.0.1 gets
403, not the run. The POSTs also need the header
`X-Loadkit-UI` (a cross-site form cannot send it), so another page in the
same browser cannot stop a run on loopback.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from loadkit import __version__
from loadkit.auth import authorized
from loadkit.outputs.live_page import render_live_page
from loadkit.run.live_feed import Frames, LiveFeed, slo_row
from loadkit.served import QuietHandler, Served

if TYPE_CHECKING:
    from loadkit.record.recorder import Recorder
    from loadkit.result.model import PhaseInfo, RunResult
    from loadkit.slo.live import LiveJudge
    from loadkit.slo.scopes import Phases
    from loadkit.workload.slo_spec import Objective

__all__ = ["MAX_NOTE", "LiveView"]

MAX_NOTE = 500  # characters of one note
MAX_NOTES = 200
KEEPALIVE_S = 15.0
REPORT_GRACE_S = 3.0  # at the end, how long an open page has to fetch the report
_PIECES = ("info", "slos", "extras", "notes", "probes", "state", "final")


class LiveView:
    """The live page's state and its server. Made (and started) before the
    run, so a refused address or a taken port exits 2 before anything is
    sent; `attach` per run (a capacity search attaches once per probe)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 kind: str = "run") -> None:
        self._cond = threading.Condition()
        self._versions = dict.fromkeys(_PIECES, 0)
        self.frames = Frames()
        self.info: dict[str, Any] = {"kind": kind, "version": __version__}
        self.slos: list[dict[str, Any]] = []
        self._so_far: dict[str, dict[str, Any]] = {}
        self.extras: dict[str, Any] = {}
        self.notes: list[dict[str, Any]] = []
        self.probes: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {"running": False, "stopping": False, "finished": False}
        self.report: Path | None = None
        self.report_fetched = threading.Event()
        self._streams = 0
        self._closing = False
        self._feed: LiveFeed | None = None
        self._start_ns = 0
        self._stop: Callable[[], None] | None = None
        self._notes_from = 0
        # Each note as it is taken, to the run's journal (a killed run keeps it).
        self.on_note: Callable[[dict[str, Any]], None] | None = None
        self._page = render_live_page().encode()
        handler = type("Handler", (_Handler,), {"view": self, "token": token})
        self._served = Served(
            handler, host, port, token, name="loadkit-ui",
            refusal=f"refusing to serve the live view on non-loopback address {host!r} without "
                    "a token: set LOADKIT_UI_TOKEN (or --ui-token), and open the page as "
                    "http://HOST:PORT/?token=TOKEN")
        self.url = self._served.base + "/"

    # -- life cycle (the CLI's thread) ----------------------------------------------

    def start(self) -> LiveView:
        self._served.start()
        return self

    def close(self) -> None:
        """Stop serving; a page still open gets a moment to fetch the report first."""
        if self.report is not None and self._streams:
            self.report_fetched.wait(REPORT_GRACE_S)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._feed is not None:
            self._feed.close()
        self._served.close()

    # -- the run's side --------------------------------------------------------------

    def attach(self, recorder: Recorder, *, phases: Phases, phase_info: Sequence[PhaseInfo],
               objectives: Sequence[Objective], judge: LiveJudge | None, strict: bool,
               in_flight: Callable[[], int], info: dict[str, Any], planned_s: float,
               lateness_bound_ms: float, interval_s: float, telemetry: Any = None,
               workers: Callable[[], Any] | None = None,
               stop: Callable[[], None] | None = None) -> None:
        """Listen to `recorder`'s intervals (subscribe last: it reads the
        health probe's CPU and the live judge's windows)."""
        if self._feed is not None:
            self._feed.close()
        with self._cond:
            self.frames = Frames()
            self.info.update(info, planned_s=planned_s, lateness_bound_ms=lateness_bound_ms,
                             interval_s=interval_s,
                             phases=[p.model_dump(mode="json") for p in phase_info],
                             slos=[{"name": o.name, "scope": o.scope} for o in objectives])
            self.slos, self._so_far, self.extras = [], {}, {}
            self._start_ns, self._stop = recorder.start_ns, stop
            self._notes_from = len(self.notes)
            self.state = {"running": True, "stopping": False, "finished": False,
                          "can_stop": stop is not None}
            self._bump("info", "slos", "extras", "state")
        self._feed = LiveFeed(recorder, publish=self._publish, publish_slos=self._publish_slos,
                              phases=phases, objectives=objectives, judge=judge, strict=strict,
                              in_flight=in_flight, telemetry=telemetry, workers=workers)
        recorder.events.run_stopped.add_listener(self._run_stopped)

    def run_notes(self) -> list[dict[str, Any]]:
        """The notes taken since the last `attach`: the run's, for run.json."""
        with self._cond:
            return [{"at_s": n["at_s"], "text": n["text"]} for n in self.notes[self._notes_from:]]

    def finish(self, result: RunResult) -> None:
        """The run is judged: every SLO's final verdict."""
        if self._feed is not None:
            self._feed.close()
        with self._cond:
            self.slos = [{**slo_row(r, None), "final": True} for r in result.slos]
            self.state = {**self.state, "running": False, "finished": True,
                          "verdict": str(result.verdict), "trusted": result.trusted}
            self._bump("slos", "state")

    def add_probe(self, point: dict[str, Any]) -> None:
        """A capacity probe done: its load, throughput, latency p99 and status."""
        with self._cond:
            self.probes.append(point)
            self._bump("probes")

    def show_report(self, path: Path) -> None:
        """The final report is written: open pages switch to it."""
        with self._cond:
            self.report = path
            self._bump("final")

    def _publish(self, frame: dict[str, Any], extras: dict[str, Any]) -> None:
        with self._cond:
            self.frames.add(frame)
            self.extras = extras
            self.state = {**self.state, "elapsed_s": frame["t1"]}
            self._bump("extras", "state")

    def _publish_slos(self, rows: list[dict[str, Any]]) -> None:
        with self._cond:
            if not self.state.get("finished"):
                self.slos = rows
                self._bump("slos")

    def _run_stopped(self, _stopped: bool) -> None:
        with self._cond:
            self.state = {**self.state, "running": False, "can_stop": False}
            self._stop = None
            self._bump("state")

    def _bump(self, *pieces: str) -> None:
        """Under the lock: these pieces changed; wake the streams."""
        for p in pieces:
            self._versions[p] += 1
        self._cond.notify_all()

    # -- the server's side (its threads) ------------------------------------------------

    def stop(self) -> tuple[int, str]:
        with self._cond:
            if self._stop is None:
                return 409, "the run is not going: nothing to stop"
            if self.state.get("stopping"):
                return 202, "already stopping"
            self.state = {**self.state, "stopping": True}
            self._bump("state")
            stop = self._stop
        stop()
        return 202, "stopping: the run writes what it measured (exit 3)"

    def note(self, text: str) -> tuple[int, dict[str, Any] | str]:
        text = "".join(c for c in text if c.isprintable() or c == " ").strip()
        if not text:
            return 400, "a note needs some text"
        if len(text) > MAX_NOTE:
            return 400, f"a note is at most {MAX_NOTE} characters"
        with self._cond:
            if not self.state.get("running"):
                return 409, "notes are taken while the run goes"
            if len(self.notes) - self._notes_from >= MAX_NOTES:
                return 409, f"a run keeps at most {MAX_NOTES} notes"
            note = {"at_s": round((time.monotonic_ns() - self._start_ns) / 1e9, 3), "text": text}
            self.notes.append(note)
            self._bump("notes")
        if self.on_note is not None:
            self.on_note(note)
        return 201, note

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return {"info": self.info, "points": self.frames.points(), "slos": self.slos,
                    "extras": self.extras, "notes": list(self.notes), "probes": list(self.probes),
                    "state": self.state, "final": self.report is not None}

    def stream(self, write: Callable[[bytes], None]) -> None:
        """Write events until the view closes or the client goes (OSError)."""
        cursor = _Cursor(dict.fromkeys(_PIECES, -1))
        with self._cond:
            self._streams += 1
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._closing or self._moved(cursor), KEEPALIVE_S)
                    if self._closing:
                        return
                    changed = {p: self._piece(p) for p in _PIECES
                               if self._versions[p] != cursor.seen[p]}
                    cursor.seen = dict(self._versions)
                    frames = self.frames
                    reset = frames is not cursor.frames or cursor.gen != frames.gen
                    closed = frames.closed[0 if reset else cursor.closed:]
                    cursor.frames, cursor.gen, cursor.closed = frames, frames.gen, len(closed) \
                        + (0 if reset else cursor.closed)
                    points = {"reset": reset, "closed": closed, "open": frames.open,
                              "size": frames.size}
                out = [_event(p, v) for p, v in changed.items() if p != "final"]
                if reset or closed or points["open"] is not None:
                    out.append(_event("points", points))
                if "final" in changed and self.report is not None:
                    out.append(_event("final", {"report": "report"}))
                write(b"".join(out) if out else b": keepalive\n\n")
        finally:
            with self._cond:
                self._streams -= 1

    def _moved(self, cursor: _Cursor) -> bool:
        """Under the lock: has anything changed since `cursor` was written?"""
        f = self.frames
        return f is not cursor.frames or f.gen != cursor.gen or len(f.closed) != cursor.closed \
            or self._versions != cursor.seen

    def _piece(self, name: str) -> Any:
        if name == "slos":
            return self.slos
        return {"info": self.info, "extras": self.extras, "notes": self.notes,
                "probes": self.probes, "state": self.state, "final": None}[name]


@dataclass
class _Cursor:
    """What one stream has written: each piece's version, and the points."""

    seen: dict[str, int]
    frames: Frames | None = None
    gen: int = -1
    closed: int = 0


def _loopback_name(host: str) -> bool:
    """A Host header naming loopback: 127.x.y.z, ::1 or localhost (any port)."""
    name = host[1:host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    return name in ("localhost", "::1") or name.startswith("127.")


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _Handler(QuietHandler):
    view: LiveView
    token: str | None
    server_version = f"loadkit/{__version__}"

    def _allowed(self, query: dict[str, list[str]]) -> bool:
        if authorized(self.headers.get("Authorization"), self.token):
            return True
        given = (query.get("token") or [""])[0]
        return bool(self.token) and hmac.compare_digest(given.encode(), (self.token or "").encode())

    def _route(self) -> tuple[str, dict[str, list[str]]] | None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self.token and not _loopback_name(self.headers.get("Host") or ""):
            # No token (loopback): a page of another site that rebinds its
            # name to 127.0.0.1 would be same-origin; its Host header says so.
            self.send(403, b"this page answers to its loopback address only\n",
                      "text/plain; charset=utf-8")
            return None
        if not self._allowed(query):
            self.send(401, b"missing or wrong token\n", "text/plain; charset=utf-8",
                      {"WWW-Authenticate": 'Bearer realm="loadkit"'})
            return None
        return url.path, query

    def do_GET(self) -> None:  # the stdlib's name
        routed = self._route()
        if routed is None:
            return
        path, _query = routed
        view = self.view
        if path == "/":
            self.send(200, view._page, "text/html; charset=utf-8", _NO_STORE)
        elif path == "/favicon.ico":
            self.send(204, b"", "image/x-icon")
        elif path == "/state.json":
            self.send(200, json.dumps(view.snapshot()).encode(), "application/json", _NO_STORE)
        elif path == "/report":
            if view.report is None:
                said = b"no report yet: the run is over, its report is being written\n" \
                    if view.state.get("finished") else b"no report yet: the run is going\n"
                self.send(404, said, "text/plain; charset=utf-8")
                return
            try:
                body = view.report.read_bytes()
            except OSError:
                self.send(404, b"report.html was not written\n", "text/plain; charset=utf-8")
                return
            self.send(200, body, "text/html; charset=utf-8", _NO_STORE)
            view.report_fetched.set()
        elif path == "/events":
            self.send_response(200)
            for k, v in {"Content-Type": "text/event-stream", **_NO_STORE}.items():
                self.send_header(k, v)
            self.end_headers()
            with contextlib.suppress(OSError):  # the page went away
                view.stream(self._write)
        else:
            self.send(404, b"not found\n", "text/plain; charset=utf-8")

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def do_POST(self) -> None:  # the stdlib's name
        routed = self._route()
        if routed is None:
            return
        path, _query = routed
        if self.headers.get("X-Loadkit-UI") != "1":
            self.send(403, b"the live page's requests carry X-Loadkit-UI: 1\n",
                      "text/plain; charset=utf-8")
            return
        try:
            length = min(int(self.headers.get("Content-Length") or 0), 16384)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length else b""
        if path == "/stop":
            status, message = self.view.stop()
            self.send(status, json.dumps({"message": message}).encode(), "application/json")
        elif path == "/note":
            try:
                text = json.loads(body or b"{}").get("text", "")
            except (ValueError, AttributeError):
                text = None
            if not isinstance(text, str):
                self.send(400, b'{"message": "send {\\"text\\": \\"...\\"}"}', "application/json")
                return
            status, note = self.view.note(text)
            payload = note if isinstance(note, dict) else {"message": note}
            self.send(status, json.dumps(payload).encode(), "application/json")
        else:
            self.send(404, b"not found\n", "text/plain; charset=utf-8")


_NO_STORE = {"Cache-Control": "no-store"}
