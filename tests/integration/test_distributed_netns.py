"""A master on a non-loopback address, a worker on another "host": a network
namespace the test creates (`ip netns`, a veth pair, private addresses that
exist inside this sandbox only). The load itself stays on loopback: the
simulator runs on the same port in both namespaces, one for the master's
pre-flight, one for the worker's load."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from support.run import ROOT

HOST_IP, PEER_IP = "10.213.7.1", "10.213.7.2"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@contextmanager
def namespace() -> Iterator[str]:
    name = f"lk-{uuid.uuid4().hex[:8]}"
    try:
        sh("ip", "netns", "add", name)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot create a network namespace here (root and iproute2 needed): {exc}")
    try:
        host, peer = f"{name}-a", f"{name}-b"[:15]
        sh("ip", "link", "add", host[:15], "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", name)
        sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", host[:15])
        sh("ip", "link", "set", host[:15], "up")
        sh("ip", "netns", "exec", name, "ip", "addr", "add", f"{PEER_IP}/30", "dev", peer)
        sh("ip", "netns", "exec", name, "ip", "link", "set", peer, "up")
        sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", f"{name}-a"[:15]], capture_output=True, timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def simulator(prefix: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "loadkit.sim", "--port", str(port),
                             "--preset", "fast"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None and proc.stdout.readline().startswith("LOADKIT_SIM")
    return proc


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_a_worker_on_another_host_joins_with_the_token_and_one_without_is_refused(
        tmp_path: Path) -> None:
    spec = {"name": "netns", "duration": "3s", "warmup": "0s", "seed": 2,
            "arrival": {"process": "constant", "rate": 20},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                           "max_tokens": 4}]}
    (tmp_path / "w.yaml").write_text(json.dumps(spec))
    sim_port, master_port, out = free_port(), free_port(), tmp_path / "out"
    env = {**os.environ, "LOADKIT_TOKEN": "shared-secret"}
    with namespace() as ns:
        inside = ["ip", "netns", "exec", ns]
        sims = [simulator([], sim_port), simulator(inside, sim_port)]
        master = subprocess.Popen(
            [sys.executable, "-m", "loadkit", "run", str(tmp_path / "w.yaml"), "--master",
             "--expect-workers", "1", "--master-bind-host", HOST_IP, "--master-bind-port",
             str(master_port), "--worker-timeout", "60s", "--target",
             f"http://127.0.0.1:{sim_port}", "--out", str(out), "--inconclusive", "pass",
             # what is tested is joining across hosts, not this busy host's lateness
             "--allow-saturated"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            worker = [*inside, sys.executable, "-m", "loadkit", "worker", "--master",
                      f"{HOST_IP}:{master_port}"]
            refused = subprocess.run(worker, cwd=ROOT, env={**env, "LOADKIT_TOKEN": "wrong"},
                                     capture_output=True, text=True, timeout=90)
            assert refused.returncode == 2 and "refused" in refused.stderr, refused.stderr
            joined = subprocess.run(worker, cwd=ROOT, env=env, capture_output=True, text=True,
                                    timeout=90)
            _, stderr = master.communicate(timeout=90)
        finally:
            for p in [master, *sims]:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    assert joined.returncode == 0, joined.stderr
    assert master.returncode == 0, stderr
    assert "refused worker" in stderr and "wrong or missing token" in stderr
    result = json.loads((out / "run.json").read_text())
    (row,) = result["distribution"]["workers"]
    assert row["status"] == "done" and row["sent"] == row["shard"] == 60
    assert result["counts"]["completed"] == 60 and result["counts"]["errors"] == 0
