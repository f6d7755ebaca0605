"""A real inference engine from PyPI on this CPU: `transformers serve` with a
tiny random model made here (tiny_model.py), in its own environment
(scripts/engines-venv.sh; LOADKIT_ENGINE_PYTHON names its python). Without it the
tier skips and says why, except under `.ci/run` (LOADKIT_REQUIRE_ENGINES=1),
where it must run. Fixtures for tests/engines/, a plugin of tests/conftest.py."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loadkit.protocols.text import WORDS

HERE = Path(__file__).parent.parent / "engines"


@pytest.fixture(scope="session")
def engine_python() -> str:
    python = os.environ.get("LOADKIT_ENGINE_PYTHON")
    if not python or not Path(python).exists():
        why = ("no engine environment: run `scripts/engines-venv.sh` and set "
               "LOADKIT_ENGINE_PYTHON to the python it prints")
        if os.environ.get("LOADKIT_REQUIRE_ENGINES"):
            pytest.fail(why)
        pytest.skip(why)
    return python


@pytest.fixture(scope="session")
def tiny_model(engine_python: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-model")
    words = out / "words.txt"
    words.write_text("\n".join(WORDS))
    subprocess.run([engine_python, str(HERE / "tiny_model.py"), str(out / "model"), str(words)],
                   check=True, capture_output=True, timeout=300)
    return out / "model"


@contextlib.contextmanager
def transformers_serve(python: str, model: Path, *flags: str) -> Iterator[str]:
    """`transformers serve MODEL` on a free loopback port; yields its base URL
    once /health answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = model.parent / f"serve-{port}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    with open(log, "w") as sink:
        proc = subprocess.Popen([str(Path(python).parent / "transformers"), "serve", str(model),
                                 "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                                 "--log-level", "warning", *flags],
                                stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"transformers serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def engines(engine_python: str, tiny_model: Path) -> Iterator[Callable[[str], str]]:
    """mode -> the URL of an engine started once per module in that mode (a
    continuous-batching server holds GBs of KV cache: it stops with the module)."""
    started: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        def get(mode: str) -> str:
            if mode not in started:
                # A small paged KV cache: sized for this model, it starts in
                # seconds (the default sizing takes ~40 s on this CPU).
                cache = (["--cb-num-blocks", "1024", "--cb-max-batch-tokens", "4096"]
                         if mode == "continuous-batching" else [])
                started[mode] = stack.enter_context(
                    transformers_serve(engine_python, tiny_model, f"--{mode}", *cache))
            return started[mode]
        yield get


@pytest.fixture(params=["no-continuous-batching", "continuous-batching"])
def engine(request: pytest.FixtureRequest, engines: Callable[[str], str]) -> str:
    return engines(request.param)


@pytest.fixture
def batching_engine(engines: Callable[[str], str]) -> str:
    return engines("continuous-batching")
