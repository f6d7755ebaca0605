"""`--ui` from the command line: the addresses it refuses before anything is sent
(exit 2); a capacity search's probes and a distributed run's workers on the page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SPEC = {"name": "ui-refused", "duration": "1s", "arrival": {"rate": 5},
        "scenarios": [{"name": "chat", "kind": "openai-chat", "max_tokens": 4}]}


def _run(tmp_path: Path, *flags: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess:
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return subprocess.run([sys.executable, "-m", "loadkit", "run", str(path), "-q",
                           "--out", str(tmp_path / "out"), *flags],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**__import__("os").environ, **(env or {})})


@pytest.mark.parametrize(("flags", "message"), [
    (("--ui", "0.0.0.0:0"), "LOADKIT_UI_TOKEN"),
    (("--ui", "eight"), "expected [HOST:]PORT"),
    (("--ui", "70000"), "between 0 and 65535"),
])
def test_refused_addresses_exit_2_before_the_run(tmp_path: Path, flags: tuple[str, ...],
                                                 message: str) -> None:
    done = _run(tmp_path, *flags, env={"LOADKIT_UI_TOKEN": ""})
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "journal.jsonl").exists()  # nothing was sent


class Watched:
    """A command with `--ui 127.0.0.1:0`: its page's /state.json, read every
    0.2 s while it runs; what each piece of state held, at its most."""

    def __init__(self, args: list[str]) -> None:
        import json
        import threading
        import time
        import urllib.request

        self.proc = subprocess.Popen([sys.executable, "-m", "loadkit", *args, "--ui",
                                      "127.0.0.1:0"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.stderr: list[str] = []
        self.states: list[dict] = []
        url: list[str] = []

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.stderr.append(line)
                if "live view at " in line:
                    url.append(line.split("live view at ")[1].strip())

        def poll() -> None:
            while self.proc.poll() is None:
                if url:
                    try:
                        with urllib.request.urlopen(url[0] + "/state.json", timeout=2) as r:
                            self.states.append(json.loads(r.read()))
                    except OSError:
                        pass
                time.sleep(0.2)
        self.threads = [threading.Thread(target=f, daemon=True) for f in (read, poll)]
        for t in self.threads:
            t.start()

    def wait(self) -> int:
        code = self.proc.wait(timeout=240)
        for t in self.threads:
            t.join(timeout=5)
        return code


@pytest.mark.slow
def test_a_capacity_search_shows_its_probes_as_they_finish(tmp_path: Path) -> None:
    spec = {"name": "ui-capacity", "duration": "1s", "arrival": {"rate": 10},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "max_tokens": 4}],
            "slos": ["latency p90 < 5s"]}
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(spec))
    run = Watched(["capacity", str(tmp_path / "w.yaml"), "--min", "30", "--max", "60",
                   "--precision", "50%", "--probe", "1s", "--out", str(tmp_path / "out"),
                   "--full-probes"])
    # Beside busy workers the generator may be the limit (exit 3): the page is the point.
    assert run.wait() in (0, 3) and "Traceback" not in "".join(run.stderr), "".join(run.stderr)
    seen = [len(s["probes"]) for s in run.states]
    # Probes appeared one by one while the search went, each as it was written.
    assert seen and max(seen) >= 2 and 1 in seen, seen
    import json
    found = json.loads((tmp_path / "out" / "capacity.json").read_text())
    last = max(run.states, key=lambda s: len(s["probes"]))["probes"]
    assert [p["value"] for p in last] == [p["value"] for p in found["probes"]][:len(last)]


@pytest.mark.slow
def test_a_distributed_run_shows_its_workers(tmp_path: Path) -> None:
    spec = {"name": "ui-workers", "duration": "2s", "arrival": {"rate": 20},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "max_tokens": 4}],
            "slos": ["error_rate < 5%"]}
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(spec))
    run = Watched(["run", str(tmp_path / "w.yaml"), "--workers", "2", "-q",
                   "--out", str(tmp_path / "out"), "--allow-saturated"])
    assert run.wait() in (0, 1), "".join(run.stderr)
    rows = [s["extras"].get("workers") for s in run.states if s["extras"].get("workers")]
    assert rows, "no workers table was shown"
    assert len(rows[-1]) == 2 and all(r["sent"] >= 0 for r in rows[-1])
