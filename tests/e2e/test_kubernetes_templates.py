"""The Kubernetes templates in examples/kubernetes/: named Kubernetes
objects whose loadkit commands use only real flags, with the token from a
Secret on both sides, workers that address the master's Service, and a
workload ConfigMap loadkit accepts; then the manifests' own commands, run
here on loopback (4 workers and a master against the simulator)."""

from __future__ import annotations

import functools
import json
import os
import re
import select
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadkit.workload.loader import load_workload
from support.run import ROOT

K8S = ROOT / "examples" / "kubernetes"


def documents() -> list[tuple[str, dict[str, Any]]]:
    """(file, document) for every YAML document under the folder."""
    found = []
    for path in sorted([*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")]):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found.append((str(path.relative_to(K8S)), doc))
    return found


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def loadkit_pod(subcommand: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(Job, pod spec, container) of the one container running `loadkit SUBCOMMAND`."""
    found = [(job, job["spec"]["template"]["spec"], c) for job in of_kind("Job")
             for c in job["spec"]["template"]["spec"]["containers"]
             if c.get("command") == ["loadkit"] and c.get("args", [None])[0] == subcommand]
    assert len(found) == 1, f"want one Job container running `loadkit {subcommand}`"
    return found[0]


def option(args: list[str], flag: str) -> str | None:
    """The value of `--flag VALUE` or `--flag=VALUE` in args."""
    for i, arg in enumerate(args):
        if arg == flag:
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


@functools.cache
def real_flags(subcommand: str) -> frozenset[str]:
    done = subprocess.run([sys.executable, "-m", "loadkit", subcommand, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", done.stdout))


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_every_document_is_a_named_kubernetes_object() -> None:
    docs = documents()
    kinds = {doc.get("kind") for _, doc in docs}
    assert {"Job", "Service", "ConfigMap"} <= kinds, kinds
    for name, doc in docs:
        assert isinstance(doc, dict), name
        assert doc.get("apiVersion") and doc.get("kind"), name
        assert doc.get("metadata", {}).get("name"), f"{name}: {doc.get('kind')} has no name"


@pytest.mark.slow
def test_master_and_worker_use_only_real_flags() -> None:
    for subcommand in ("run", "worker"):
        _, _, container = loadkit_pod(subcommand)
        used = {a.split("=", 1)[0] for a in container["args"] if a.startswith("--")}
        assert used, container["args"]
        unknown = used - real_flags(subcommand)
        assert not unknown, f"`loadkit {subcommand}` has no {sorted(unknown)}"
    _, _, master = loadkit_pod("run")
    assert "--master" in master["args"] and option(master["args"], "--expect-workers")
    assert option(master["args"], "--master-bind-host") not in (None, "127.0.0.1", "::1")


def test_the_token_comes_from_one_secret_on_both_sides() -> None:
    refs = []
    for subcommand in ("run", "worker"):
        _, _, container = loadkit_pod(subcommand)
        token = env_of(container).get("LOADKIT_TOKEN")
        assert token is not None, f"`loadkit {subcommand}` has no LOADKIT_TOKEN"
        assert "value" not in token, "the token must not be written in the manifest"
        ref = token["valueFrom"]["secretKeyRef"]
        assert ref["name"] and ref["key"] and not ref.get("optional"), ref
        refs.append((ref["name"], ref["key"]))
    assert refs[0] == refs[1], refs


def test_the_workers_reach_the_masters_service_and_match_its_count() -> None:
    master_job, master_pod, master = loadkit_pod("run")
    worker_job, _, worker = loadkit_pod("worker")
    address = option(worker["args"], "--master")
    assert address, f"the worker names no --master: {worker['args']}"
    host, _, port = address.rpartition(":")
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    assert host in services, f"--master {host}:{port}: no Service {host}"
    service = services[host]
    ports = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    assert ports, f"Service {host} does not expose port {port}"
    bind_port = int(option(master["args"], "--master-bind-port") or 5557)
    assert ports[0].get("targetPort", ports[0]["port"]) == bind_port
    labels = master_job["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items(), "Service misses the master"
    assert bind_port in [p["containerPort"] for p in master.get("ports", [])]
    assert master_pod["restartPolicy"] == "Never" and master_job["spec"]["backoffLimit"] == 0
    expect_workers = option(master["args"], "--expect-workers")
    assert expect_workers is not None, "the master must say how many workers it expects"
    expect = int(expect_workers)
    assert worker_job["spec"]["parallelism"] == worker_job["spec"]["completions"] == expect


def mounted_workload(pod: dict[str, Any], container: dict[str, Any],
                     path: str) -> tuple[str, str]:
    """(ConfigMap key, its text) mounted in container at path."""
    maps = {m["metadata"]["name"]: m["data"] for m in of_kind("ConfigMap")}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        folder = mount["mountPath"].rstrip("/") + "/"
        config = volumes[mount["name"]].get("configMap")
        if config and path.startswith(folder):
            key = path[len(folder):]
            return key, maps[config["name"]][key]
    raise AssertionError(f"{path} is not mounted from a ConfigMap")


def test_the_workload_is_valid_and_its_secrets_are_set_on_both_sides(tmp_path: Path) -> None:
    _, pod, master = loadkit_pod("run")
    _, _, worker = loadkit_pod("worker")
    key, text = mounted_workload(pod, master, master["args"][1])
    path = tmp_path / key
    path.write_text(text)
    for container in (master, worker):  # a ${VAR} it lacks would be exit 2 there
        env = dict.fromkeys(env_of(container), "x")
        loaded = load_workload(path, env=env)
    assert loaded.workload.target, "remote workers cannot reach the embedded simulator"
    for name in loaded.workload.env_refs():
        for container in (master, worker):
            assert "secretKeyRef" in env_of(container)[name]["valueFrom"], name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_simulator() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "loadkit", "sim", "--port", "0",
                             "--preset", "fast"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("LOADKIT_SIM_LISTENING "):
        proc.kill()
        raise RuntimeError(f"the simulator did not start: {line}")
    return proc, line.split()[1]


@pytest.mark.slow
def test_the_manifests_commands_run_a_distributed_run_here(tmp_path: Path) -> None:
    """The master's and workers' args as written, with only what the cluster
    provides replaced: the mounted paths, the Service's DNS name, and a free
    port; the run is shortened with `loadkit run` flags and aimed at the
    simulator."""
    _, pod, master = loadkit_pod("run")
    _, _, worker = loadkit_pod("worker")
    key, text = mounted_workload(pod, master, master["args"][1])
    (tmp_path / key).write_text(text)
    port = str(free_port())
    out = tmp_path / "reports" / "loadkit-master-abcde"
    env = {**os.environ, "LOADKIT_RUN_ALLOW_SATURATED": "1"}
    env.update({name: f"value-of-{name}" for name in {*env_of(master), *env_of(worker)}})
    bind_port = option(master["args"], "--master-bind-port") or "5557"
    here = {master["args"][1]: str(tmp_path / key), option(master["args"], "--out"): str(out),
            bind_port: port, option(worker["args"], "--master"): f"127.0.0.1:{port}"}
    sim, url = start_simulator()
    procs: list[subprocess.Popen] = []
    try:
        master_argv = [sys.executable, "-m", "loadkit", *[here.get(a, a) for a in master["args"]],
                       "--target", url, "--duration", "2s", "--rate", "40",
                       "--worker-timeout", "60s", "--inconclusive", "pass", "-q"]
        procs.append(subprocess.Popen(master_argv, cwd=ROOT, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        worker_argv = [sys.executable, "-m", "loadkit", *[here.get(a, a) for a in worker["args"]]]
        expect_workers = option(master["args"], "--expect-workers")
        assert expect_workers is not None
        expect = int(expect_workers)
        procs += [subprocess.Popen(worker_argv, cwd=ROOT, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                  for _ in range(expect)]
        stdout, stderr = procs[0].communicate(timeout=120)
        assert procs[0].returncode == 0, stdout + stderr
        for w in procs[1:]:
            _, w_err = w.communicate(timeout=30)
            assert w.returncode == 0, w_err
    finally:
        for p in [*procs, sim]:
            if p.poll() is None:
                p.kill()
                p.communicate()
    dist = json.loads((out / "run.json").read_text())["distribution"]
    assert len(dist["workers"]) == expect and {r["status"] for r in dist["workers"]} == {"done"}
    assert (out / "report.html").exists() and (out / "latency.hlog").exists()
