"""`loadkit run --ui`: the addresses it refuses, before anything is sent (exit 2)."""

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
