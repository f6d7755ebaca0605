"""`loadkit run --ui`: the live page of real runs on the simulator, in headless Chromium.

- it loads offline: no request leaves the run's own origin, no console error;
- within 3 s of an interval closing (its journal line written), the chart's
  last point and the SLO table show that interval (values read from the
  page, compared with journal.jsonl);
- a note (markup in it stays text) is on the timeline, the charts and in
  run.json; at the end the page switches to the final report.html;
- "Stop now" ends the run the Ctrl-C way: partial results, exit 3;
- with one browser attached, the generator's lateness at 40 req/s streaming
  stays within the bar of the same run without one, measured in the test.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from loadkit.run.recover import rebuild
from support.chromium import ARTIFACTS, browser  # noqa: F401 (fixture)

if TYPE_CHECKING:  # imported where used: without playwright the tests skip
    from playwright.sync_api import Browser, Dialog, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = "deployed <img src=x onerror=alert(1)> v2"
DELAY_BAR_S = 3.0


def _spec(name: str, measure: str, rate: float = 20, **extra: Any) -> dict[str, Any]:
    return {"name": name, "seed": 5, "interval": "1s", "lateness_bound": "50ms",
            "phases": [{"name": "warmup", "duration": "1s", "warmup": True},
                       {"name": "measure", "duration": measure}],
            "arrival": {"rate": rate},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                           "prompt_tokens": 40, "max_tokens": 16}],
            "simulator": {"ttft_ms": 15, "itl_ms": 2},
            "slos": ["latency p99 < 1s", "error_rate < 1%"], **extra}


@dataclass
class Run:
    proc: subprocess.Popen
    out: Path
    url: str = ""
    stderr: list[str] = field(default_factory=list)

    def journal(self) -> list[dict[str, Any]]:
        try:
            lines = (self.out / "journal.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [r for line in lines if line.endswith("}")
                and (r := json.loads(line)).get("t") == "interval"]

    def wait(self, timeout: float = 90) -> int:
        return self.proc.wait(timeout)


def _start(tmp: Path, spec: dict[str, Any], *flags: str) -> Run:
    path = tmp / "w.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp / "out"
    proc = subprocess.Popen([sys.executable, "-m", "loadkit", "run", str(path), "--out", str(out),
                             "-q", *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    run = Run(proc, out)
    found = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            run.stderr.append(line)
            if "live view at " in line:
                run.url = line.split("live view at ", 1)[1].strip()
                found.set()

    threading.Thread(target=read, daemon=True).start()
    if "--ui" in flags:
        assert found.wait(30), "".join(run.stderr)
    return run


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, dict[str, list[str]]]]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    seen: dict[str, list[str]] = {"requests": [], "errors": [], "dialogs": []}
    p.on("request", lambda r: seen["requests"].append(r.url))
    p.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    p.on("pageerror", lambda e: seen["errors"].append(str(e)))
    def dialog(d: Dialog) -> None:  # noted, then dismissed: a page must never raise one
        seen["dialogs"].append(d.message)
        d.dismiss()
    p.on("dialog", dialog)
    yield p, seen
    context.close()


def _wait(check: Any, timeout: float, step: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (value := check()):
            return value
        time.sleep(step)
    return None


def _shown(p: Page, chart: str, series: str) -> tuple[float, float] | None:
    """(time the chart's last point ends, its value) as the legend says."""
    got = p.evaluate("""([c, s]) => { const e = document.querySelector(
        `#chart-${c} text.legend[data-series="${s}"]`);
        return e ? [e.dataset.t1, e.dataset.value] : null; }""", [chart, series])
    if not got or got[0] in (None, "", "null"):
        return None
    return float(got[0]), float(got[1])


def test_the_page_follows_the_run_offline_and_keeps_a_note(
        tmp_path: Path, page: tuple[Page, dict[str, list[str]]]) -> None:
    p, seen = page
    # The page is the point here, not the generator beside a browser and busy
    # workers (test_a_browser_attached_keeps_the_generator_within_its_bar).
    run = _start(tmp_path, _spec("live-page", "8s"), "--ui", "127.0.0.1:0", "--ui-linger", "30s",
                 "--allow-saturated")
    p.goto(run.url)
    assert _wait(lambda: len(run.journal()) >= 2, 20)
    delays = []
    for _ in range(3):
        n = len(run.journal())
        assert _wait(lambda n=n: len(run.journal()) > n, 5)
        closed = time.monotonic()
        iv = run.journal()[-1]["iv"]
        end = round(iv["end_s"], 3)
        shown = _wait(lambda end=end: (s := _shown(p, "latency", "p99")) and s[0] >= end and s,
                      DELAY_BAR_S + 2)
        delays.append(time.monotonic() - closed)
        assert shown and shown[0] == end and shown[1] == iv["latency_p99_ms"]
        late = _shown(p, "lateness", "lateness p99")
        assert late is not None and late[1] == iv["lateness_p99_ms"]
        row = p.locator('tr[data-slo="latency p99 < 1s [all]"] td.as-of')
        assert _wait(lambda end=end, row=row: float(row.get_attribute("data-as-of") or 0)
                     >= end - 1e-3,
                     DELAY_BAR_S)
    assert max(delays) < DELAY_BAR_S, delays
    print(f"page update delays after an interval closed: {[round(d, 3) for d in delays]} s")
    p.fill("#note-text", PAYLOAD)
    p.click("#note-add")
    p.locator("#notes li").first.wait_for(timeout=5000)
    assert PAYLOAD in p.locator("#notes li").first.inner_text()
    assert p.locator("#timeline .mark").count() == 1
    assert p.locator("#chart-latency line.note-mark").count() == 1
    p.screenshot(path=str(ARTIFACTS / "live-view.png"), full_page=True)
    p.wait_for_url("**/report", timeout=30000)
    assert p.locator("#verdict").is_visible()
    assert p.locator("table.notes").inner_text().count("deployed") == 1
    run.proc.send_signal(signal.SIGINT)  # ends the linger; the run's own code stands
    assert run.wait() in (0, 1), "".join(run.stderr)
    result = json.loads((run.out / "run.json").read_text())
    assert [n["text"] for n in result["notes"]] == [PAYLOAD]
    # Journalled as it was taken: a run killed after it keeps it when rebuilt.
    journalled = [r for r in map(json.loads, (run.out / "journal.jsonl").read_text()
                                 .splitlines()) if r["t"] == "note"]
    assert journalled == [{"t": "note", **result["notes"][0]}]
    assert [n.text for n in rebuild(run.out).notes] == [PAYLOAD]
    origin = run.url.rstrip("/")
    assert all(u.startswith(origin + "/") for u in seen["requests"]), seen["requests"]
    assert seen["errors"] == [] and seen["dialogs"] == []


def test_stop_now_ends_the_run_with_partial_results(
        tmp_path: Path, page: tuple[Page, dict[str, list[str]]]) -> None:
    p, _seen = page
    run = _start(tmp_path, _spec("live-stop", "60s"), "--ui", "127.0.0.1:0")
    p.goto(run.url)
    stop = p.locator("#stop")
    assert _wait(stop.is_enabled, 20)
    assert _wait(lambda: len(run.journal()) >= 3, 20)
    stop.click()
    stop.click()  # the second click within 5 s confirms
    assert run.wait(60) == 3, "".join(run.stderr)
    result = json.loads((run.out / "run.json").read_text())
    assert result["trusted"] is False
    assert any("interrupted" in r for r in result["untrusted_reasons"])
    assert result["timeseries"][-1]["end_s"] < 30
    assert (run.out / "report.html").exists()


@pytest.mark.timing
def test_a_browser_attached_keeps_the_generator_within_its_bar(
        tmp_path: Path, page: tuple[Page, dict[str, list[str]]]) -> None:
    """40 req/s streaming for 10 s, without then with the page open in
    Chromium (drawing every interval): lateness p99 from run.json."""
    p, _seen = page
    spec = _spec("live-cost", "10s", rate=40)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    alone = _start(tmp_path / "a", spec)
    assert alone.wait() in (0, 1), "".join(alone.stderr)
    watched = _start(tmp_path / "b", spec, "--ui", "127.0.0.1:0")
    p.goto(watched.url)
    assert watched.wait() in (0, 1), "".join(watched.stderr)
    p.wait_for_url("**/report", timeout=5000)  # it drew every interval, then this
    a = json.loads((alone.out / "run.json").read_text())["health"]
    b = json.loads((watched.out / "run.json").read_text())["health"]
    print(f"lateness p99 at 40 req/s: {a['lateness_p99_ms']:.3f} ms alone, "
          f"{b['lateness_p99_ms']:.3f} ms with a browser attached "
          f"(CPU {a['cpu_percent']}% / {b['cpu_percent']}%)")
    # The bar: the reference's own p99, with room for what one run differs
    # from the next on a shared 2-core machine (0.9-3.4 ms seen alone).
    assert not b["saturated"]
    assert b["lateness_p99_ms"] <= max(2 * a["lateness_p99_ms"], a["lateness_p99_ms"] + 3.0)
