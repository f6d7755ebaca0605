"""The HTML report of real runs against the simulator, opened in headless Chromium.

- it opens offline: no console errors, no request but the file itself;
- the verdict, the SLO table and every chart are visible (screenshot saved
  to tests/browser/artifacts/ for a human to look at);
- `loadkit report RUN_DIR` re-renders byte-identical files;
- server-sent `<script>` and event-handler payloads stay inert text.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.chromium import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    OpenReport,
    browser,
    open_report,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ["chart-spectrum", "chart-latency-time", "chart-throughput", "chart-tokens",
          "chart-tenants", "chart-health"]
PAYLOAD = "<script>alert(1)</script><img src=x onerror=alert(1)>"


def _run(tmp: Path, spec: dict) -> Path:
    """`loadkit run` as a user runs it (its own process: playwright's event
    loop in this one would refuse the engine's)."""
    path = tmp / "w.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp / "out"
    done = subprocess.run([sys.executable, "-m", "loadkit", "run", str(path), "--out", str(out),
                           "-q"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode in (0, 1, 3), done.stderr  # a verdict (3: untrusted, still written)
    return out


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tenants, one spiking; streaming chat; four SLOs (one failing)."""
    return _run(tmp_path_factory.mktemp("noisy"), {
        "name": "browser-noisy", "seed": 11, "interval": "250ms", "lateness_bound": "500ms",
        "phases": [{"name": "warmup", "duration": "1s", "warmup": True},
                   {"name": "quiet", "duration": "2s"}, {"name": "spike", "duration": "2s"}],
        "tenants": [{"name": "steady-co", "arrival": {"rate": 20},
                     "slos": ["ttft p99 < 1s"]},
                    {"name": "burst-inc", "arrival": {"rate": 3},
                     "phases": {"spike": {"rate": 40}}}],
        "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                       "prompt_tokens": 50, "max_tokens": 16}],
        "simulator": {"ttft_ms": 10, "itl_ms": 2},
        "slos": ["latency p50 < 1s", "error_rate < 1%", "latency max < 1ms"],
    })


@pytest.mark.slow
def test_report_opens_offline_with_verdict_table_and_charts(
        noisy_run: Path, open_report: OpenReport) -> None:  # noqa: F811 - the fixture
    report = noisy_run / "report.html"
    seen = open_report(report)
    page = seen.page
    assert seen.errors == []
    assert seen.requests == [report.resolve().as_uri()]
    verdict = page.locator("#verdict")
    assert verdict.is_visible()
    assert verdict.inner_text().startswith("Verdict: FAIL.")
    assert "latency max < 1ms" in verdict.inner_text()
    table = page.locator("table.slos")
    assert table.is_visible()
    assert table.locator("tbody tr").count() == 4
    assert table.locator(".badge.fail").first.inner_text().strip() == "✗ FAIL"
    ids = page.eval_on_selector_all("figure.chart", "els => els.map(e => e.id)")
    assert set(CHARTS) <= set(ids), ids
    assert page.locator(".chart-error").count() == 0
    for chart_id in ids:
        svg = page.locator(f"#{chart_id} svg")
        svg.scroll_into_view_if_needed()
        assert svg.is_visible(), chart_id
        box = svg.bounding_box()
        assert box is not None, chart_id
        assert box["width"] > 600 and box["height"] > 150, (chart_id, box)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    # every link to a section lands on one
    for href in page.eval_on_selector_all("a[href^='#']", "els => els.map(e => e.hash)"):
        assert page.locator(href).count() == 1, href


@pytest.mark.slow
def test_loadkit_report_rerenders_the_same_bytes(noisy_run: Path) -> None:
    names = ["report.html", "summary.md", "junit.xml", "run.json"]
    before = {n: (noisy_run / n).read_bytes() for n in names}
    (noisy_run / "report.html").unlink()
    done = subprocess.run([sys.executable, "-m", "loadkit", "report", str(noisy_run)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "report.html" in done.stdout
    for n in names:
        assert (noisy_run / n).read_bytes() == before[n], n


@pytest.mark.slow
def test_server_payloads_stay_inert(
        tmp_path: Path, open_report: OpenReport) -> None:  # noqa: F811 - the fixture
    """The simulator's 429 body echoes the tenant header: the payload reaches
    errors.examples verbatim, and the report shows it as text."""
    out = _run(tmp_path, {
        "name": "browser-inject", "seed": 3, "duration": "2s", "interval": "500ms",
        "lateness_bound": "500ms",
        "arrival": {"process": "constant", "rate": 20},
        "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": False,
                       "prompt_tokens": 10, "max_tokens": 4,
                       "headers": {"x-tenant": PAYLOAD}}],
        "simulator": {"ttft_ms": 1, "itl_ms": 1,
                      "faults": [{"kind": "rate_limit", "per_second": 1, "burst": 1}]},
    })
    examples = json.loads((out / "run.json").read_text())["errors"]["examples"]
    assert any(PAYLOAD in e for e in examples.get("http_4xx", [])), examples
    html = (out / "report.html").read_text()
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    seen = open_report(out / "report.html")
    page = seen.page
    assert seen.dialogs == [] and seen.errors == []
    assert page.locator("script").count() == 0
    assert page.locator("img").count() == 0
    assert PAYLOAD in page.locator("#errors").inner_text()
