"""One worker's shard of a distributed run, in a process that never imports Locust.

Locust patches the standard library with gevent when imported; loadkit's
engine runs on asyncio/uvloop with a recorder thread. So the Locust worker
(`loadkit worker`, relay.py) only carries the control channel, and starts
this process for the load itself:

    python -m loadkit.distributed.shard   (a job on stdin, JSON lines out)

stdin: the first line is the job ({job, k, n, worker}); once the shard is
ready (imports done, requests prepared: {"type": "ready"} on stdout) the
next is the common start ({"start_at": its wall clock}); later lines are
stops ({"stop": cause or null, "finish": true to drain as at the schedule's
end}). EOF means the Locust worker died: the shard stops at once. stdout:
one {"type": "part"} line per closed interval (wire.PartWriter), then
{"type": "done"}. Nothing else is printed there; errors go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from typing import IO, Any

from loadkit.arrivals import closed_loops, schedule
from loadkit.distributed.wire import PartWriter, loaded_from, shard
from loadkit.engine import Engine
from loadkit.engine.loop import quiet_collector, run_async
from loadkit.errors import LoadkitError
from loadkit.protocols.media import plan_ledgers
from loadkit.protocols.plan import plan_for
from loadkit.record.health import HealthProbe
from loadkit.record.recorder import Interval, Recorder
from loadkit.record.worker import RecorderThread

CHANNEL_CLOSED = "the loss of its Locust worker (the control channel closed)"


def run_shard(order: dict[str, Any], out: IO[str], commands: IO[str]) -> None:
    loaded = loaded_from(order["job"])
    w = loaded.workload
    if closed_loops(w):
        raise LoadkitError("closed-loop phases are not distributed; run them in one process")
    plan = plan_for(loaded, order["job"]["base_url"])
    k, n = order["k"], order["n"]
    lock = threading.Lock()
    channel = {"open": True}

    def send(message: dict[str, Any]) -> None:
        with lock:
            if not channel["open"]:
                return
            try:
                out.write(json.dumps(message, separators=(",", ":")) + "\n")
                out.flush()
            except (BrokenPipeError, ValueError):  # the Locust worker died: stop quietly
                channel["open"] = False
                with contextlib.suppress(OSError, ValueError):  # no flush error at exit
                    os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
                if engine is not None:
                    engine.halt_threadsafe(CHANNEL_CLOSED)

    engine: Engine | None = None

    send({"type": "ready"})
    go = json.loads(commands.readline() or "{}")
    if "start_at" not in go:
        return  # stopped (or the worker died) before the start
    with quiet_collector():
        # The common start, given in this host's wall clock (the master
        # measured the offset), on this process's monotonic clock.
        start_ns = time.monotonic_ns() + int((go["start_at"] - time.time()) * 1e9)
        recorder = Recorder(start_ns, goodput=tuple((c.metric, c.op, c.threshold_ns)
                                                    for c in w.goodput_rule()),
                            phases=tuple((p.name, p.duration) for p in w.phase_list))
        writer = PartWriter(recorder)
        recorder.events.interval_closed.add_listener(HealthProbe.start().mark)
        whole_run = HealthProbe.start()
        recording = RecorderThread(recorder)
        engine = Engine(plan, recording, seq_first=k + 1, seq_step=n)
        seen_scheduled: Counter = Counter()

        def closed(iv: Interval, histograms: dict, _keyed: object) -> None:
            scheduled = Counter(dict(engine.scheduled))  # a copy: the loop adds to it
            grown = scheduled - seen_scheduled
            seen_scheduled.update(grown)
            send({"type": "part", **writer.part(iv.start_s, iv.end_s, histograms),
                  "cpu_percent": iv.cpu_percent, "lateness_p99_ms": iv.lateness_p99_ms,
                  "in_flight": len(engine._tasks), "sent": engine.progress.scheduled,
                  "slots": engine.slots_sent, "dropped": engine.progress.dropped,
                  "scheduled": [[p, t, c] for (p, t), c in grown.items()]})

        recorder.events.interval_closed.add_listener(closed)

        def listen() -> None:
            for line in commands:
                if line.strip():
                    order = json.loads(line)
                    cause = order.get("stop")
                    if cause and order.get("finish"):
                        engine.finish_threadsafe(cause)
                    elif cause:
                        engine.halt_threadsafe(cause)
                    else:
                        engine.interrupt_threadsafe()
                    return
            engine.halt_threadsafe(CHANNEL_CLOSED)

        threading.Thread(target=listen, name="loadkit-shard-commands", daemon=True).start()
        with recording:
            run_async(engine.run(shard(schedule(w, loaded.traces), k, n)))
    send({"type": "done", "sent": engine.progress.scheduled, "unfinished": engine.unfinished,
          "slots": engine.slots_sent,
          "scheduled": [[p, t, c] for (p, t), c in (engine.scheduled - seen_scheduled).items()],
          "stop_cause": engine.stop_cause, **whole_run.finish(),
          "media": plan_ledgers(plan.requests, plan.scenario_names)})


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker relays a Ctrl-C as a stop
    first = sys.stdin.readline()
    if not first.strip():
        return 0  # the worker ended before it sent the job
    order = json.loads(first)
    try:
        run_shard(order, sys.stdout, sys.stdin)
    except LoadkitError as exc:  # its exit code travels: 2 is bad input (an unset ${VAR})
        print(json.dumps({"type": "failed", "error": str(exc), "exit": int(exc.exit_code)}),
              flush=True)
        return int(exc.exit_code)
    except Exception as exc:
        print(json.dumps({"type": "failed", "error": f"{type(exc).__name__}: {exc}"}),
              flush=True)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
