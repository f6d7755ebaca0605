"""Locust's side of a distributed run: the control channel, and nothing else.

Locust patches the standard library with gevent on import, so this module is
only ever imported in processes that carry the channel:

- the master relay (`python -m loadkit.distributed.relay master`), a child of
  `loadkit run --workers/--master` (fleet.py): Locust's MasterRunner, which
  accepts workers, tracks their heartbeats and notices a lost one. It speaks
  JSON lines with its parent on stdin/stdout;
- `loadkit worker` (worker_main): Locust's WorkerRunner, which starts the
  shard's engine in a child that never imports Locust (shard.py) and relays
  its lines as Locust custom messages.

Messages (Locust custom messages, `lk_` prefix): worker -> master `lk_hello`
(token, host, pid) then `lk_pong`, `lk_ready`, `lk_part`, `lk_done`,
`lk_failed`; master -> worker `lk_ping`, `lk_refused`, `lk_job`, `lk_go`,
`lk_stop`. A worker
whose hello lacks the token is refused, told why and dropped.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import gevent
import zmq
from gevent.fileobject import FileObjectPosix
from locust.env import Environment  # first: Locust patches the standard library on import
from locust.exception import RPCError
from locust.runners import STATE_MISSING

from loadkit.errors import ExitCode
from loadkit.processes import die_with_parent

PINGS = 5  # round trips per worker for its clock offset
LOST_POLL_S = 0.25

log = logging.getLogger("loadkit.distributed")


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def master_main(bind_host: str, bind_port: int) -> int:
    """The master relay: events out on stdout, commands in on stdin."""
    token = os.environ.get("LOADKIT_TOKEN", "")
    env = Environment(user_classes=[])
    try:
        runner = env.create_master_runner(bind_host, bind_port)
    except (RPCError, zmq.error.ZMQError) as exc:  # said, not raised: the port taken, an
        # address not this host's (a random port's bind raises zmq's own error)
        _emit({"ev": "bind-failed", "why": str(exc)})
        return ExitCode.BAD_INPUT
    accepted: dict[str, dict[str, Any]] = {}  # Locust client id -> facts
    finished: set[str] = set()  # done, failed or lost: no longer watched
    pings: dict[str, list[tuple[float, float, float]]] = {}

    def hello(environment: Environment, msg: Any) -> None:
        data, wid = msg.data or {}, msg.node_id
        if token and not hmac.compare_digest(str(data.get("token", "")), token):
            runner.send_message("lk_refused", {"why": "wrong or missing token"}, client_id=wid)
            runner.clients.pop(wid, None)  # never counted, never sent work
            _emit({"ev": "refused", "worker": wid, "host": data.get("host"),
                   "why": "wrong or missing token"})
            return
        accepted[wid] = {"host": data.get("host"), "pid": data.get("pid")}
        pings[wid] = []
        runner.send_message("lk_ping", {"t": time.time()}, client_id=wid)

    def pong(environment: Environment, msg: Any) -> None:
        wid, now = msg.node_id, time.time()
        samples = pings.get(wid)
        if samples is None:
            return
        samples.append((msg.data["t"], msg.data["their"], now))
        if len(samples) < PINGS:
            runner.send_message("lk_ping", {"t": time.time()}, client_id=wid)
            return
        from loadkit.distributed.wire import clock_offset
        offset, rtt = clock_offset(samples)
        _emit({"ev": "worker", "worker": wid, **accepted[wid], "offset_s": offset, "rtt_s": rtt})

    def relay(kind: str) -> Callable[[Environment, Any], None]:
        def handler(environment: Environment, msg: Any) -> None:
            if kind in ("done", "failed"):
                finished.add(msg.node_id)
            _emit({"ev": kind, "worker": msg.node_id, **(msg.data or {})})
        return handler

    runner.register_message("lk_hello", hello)
    runner.register_message("lk_pong", pong)
    for kind in ("ready", "part", "done", "failed"):
        runner.register_message(f"lk_{kind}", relay(kind))

    def watch() -> None:
        """Locust's heartbeats mark a silent worker missing, a quitting one
        leaves its clients table: either way it is lost to the run."""
        while True:
            gevent.sleep(LOST_POLL_S)
            for wid in list(accepted):
                if wid in finished:
                    continue
                client = runner.clients.get(wid)
                if client is None or client.state == STATE_MISSING:
                    finished.add(wid)
                    _emit({"ev": "lost", "worker": wid, "at": time.time(),
                           "why": "it left" if client is None else "its heartbeats stopped"})
                    if client is not None:  # should it come back, it stops: it is counted lost
                        runner.send_message("lk_stop", {"stop": "its loss to the master"},
                                            client_id=wid)

    gevent.spawn(watch)
    _emit({"ev": "listening", "port": runner.server.port})
    commands = FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
    for line in commands:
        order = json.loads(line)
        if order["op"] in ("job", "go"):
            runner.send_message(f"lk_{order['op']}", order["order"], client_id=order["worker"])
        elif order["op"] == "stop":
            for wid in accepted:
                if wid not in finished:
                    runner.send_message("lk_stop", {"stop": order.get("cause"),
                                                    "finish": order.get("finish", False)},
                                        client_id=wid)
        elif order["op"] == "refuse":
            runner.send_message("lk_refused", {"why": order["why"]}, client_id=order["worker"])
        elif order["op"] == "quit":
            break
    runner.quit()
    return 0


def worker_main(master_host: str, master_port: int, token: str) -> int:
    """`loadkit worker`: connect, run the shard it is given, relay, repeat
    nothing: one run per worker process. Returns the exit code."""
    env = Environment(user_classes=[])
    runner = env.create_worker_runner(master_host, master_port)
    outcome: dict[str, Any] = {"code": 0}
    child: dict[str, subprocess.Popen] = {}

    def refused(environment: Environment, msg: Any) -> None:
        print(f"loadkit worker: the master refused this worker: {msg.data['why']}",
              file=sys.stderr)
        outcome["code"] = 2
        runner.greenlet.kill(block=False)

    def ping(environment: Environment, msg: Any) -> None:
        runner.send_message("lk_pong", {"t": msg.data["t"], "their": time.time()})

    def job(environment: Environment, msg: Any) -> None:
        proc = child["shard"] = subprocess.Popen(
            [sys.executable, "-m", "loadkit.distributed.shard"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(msg.data) + "\n")
        proc.stdin.flush()
        ended = False
        for line in proc.stdout:
            event = json.loads(line)
            kind = event.pop("type")
            ended = ended or kind in ("done", "failed")
            if kind == "failed":  # said here too, and this worker exits with its code
                print(f"loadkit worker: {event.get('error')}", file=sys.stderr)
                outcome["code"] = int(event.get("exit") or ExitCode.UNTRUSTED)
            runner.send_message(f"lk_{kind}", event)
        code = proc.wait()
        if not ended:  # it died without a word (a crash, a kill): the master must know
            error = f"the shard's engine exited {code}"
            print(f"loadkit worker: {error}", file=sys.stderr)
            outcome["code"] = ExitCode.UNTRUSTED
            runner.send_message("lk_failed", {"error": error})

    def to_shard(environment: Environment, msg: Any) -> None:
        """A start or a stop, for the shard's stdin."""
        proc = child.get("shard")
        if proc is not None and proc.stdin is not None and proc.poll() is None:
            proc.stdin.write(json.dumps(msg.data) + "\n")
            proc.stdin.flush()

    runner.register_message("lk_refused", refused)
    runner.register_message("lk_ping", ping)
    runner.register_message("lk_job", job, concurrent=True)
    runner.register_message("lk_go", to_shard)
    runner.register_message("lk_stop", to_shard)
    runner.send_message("lk_hello", {"token": token, "host": socket.gethostname(),
                                     "pid": os.getpid()})
    try:
        runner.greenlet.join()
    finally:
        proc = child.get("shard")
        if proc is not None and proc.poll() is None:
            proc.kill()
    return outcome["code"]


def main(argv: list[str]) -> int:
    """`python -m loadkit.distributed.relay master|worker HOST PORT`"""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    role, host, port = argv
    if role == "master":
        return master_main(host, int(port))
    try:
        return worker_main(host, int(port), os.environ.get("LOADKIT_TOKEN", ""))
    except ConnectionError:
        print(f"loadkit worker: cannot reach the master at {host}:{port}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
