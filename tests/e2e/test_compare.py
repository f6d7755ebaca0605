"""`loadkit compare`: same seeded workload twice is no change; a simulator
made 20% slower is a regression; bad input exits 2. Real runs on the
embedded simulator, the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.run import cli

WORKLOAD = {
    "name": "cmp", "seed": 5, "duration": "4s",
    "simulator": {"ttft_ms": 30, "itl_ms": 5},
    "arrival": {"process": "poisson", "rate": 150},  # 600 samples a run
    "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                   "prompt_tokens": 50, "max_tokens": 10}],
}


def run_to(tmp_path: Path, name: str, spec: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    done = cli("run", str(path), "--out", str(tmp_path / name), "-q", "--allow-saturated")
    assert done.returncode == 0, done.stderr + done.stdout
    return tmp_path / name


@pytest.mark.slow  # three 4-s runs and three compares: ~30 s
@pytest.mark.timing
def test_same_workload_is_no_change_and_20_percent_slower_is_a_regression(tmp_path: Path) -> None:
    base = run_to(tmp_path, "base", WORKLOAD)
    again = run_to(tmp_path, "again", WORKLOAD)
    slow = run_to(tmp_path, "slow", {**WORKLOAD, "simulator": {"ttft_ms": 36, "itl_ms": 6}})

    same = cli("compare", str(base), str(again), "--out", str(tmp_path / "c1"))
    assert same.returncode == 0, same.stdout + same.stderr
    c1 = json.loads((tmp_path / "c1" / "compare.json").read_text())
    assert c1["verdict"] in ("no_change", "improvement"), c1
    assert not [r for r in c1["rows"] if r["decision"] == "regression"]

    worse = cli("compare", str(base), str(slow), "--out", str(tmp_path / "c2"))
    assert worse.returncode == 1, worse.stdout + worse.stderr
    c2 = json.loads((tmp_path / "c2" / "compare.json").read_text())
    assert c2["verdict"] == "regression"
    rows = {(r["metric"], r["stat"]): r for r in c2["rows"] if r["scope"] == "all"}
    for key in [("ttft", "p50"), ("tpot", "p50"), ("latency", "p50")]:
        r = rows[key]
        assert r["decision"] == "regression", r
        assert 14 <= r["change_pct"] <= 26, r  # the simulator is 20% slower
        assert r["ci_low_pct"] > 10 and r["p_value"] < 0.05
    # Every output a gate needs, rendered from the comparison.
    out = tmp_path / "c2"
    assert "REGRESSION" in (out / "compare.md").read_text()
    junit = (out / "compare-junit.xml").read_text()
    assert "<failure" in junit and "ttft p50 [all]" in junit
    assert (out / "compare.html").stat().st_size > 1000

    # A wide enough tolerance lets the same change pass.
    lenient = cli("compare", str(base), str(slow), "--out", str(tmp_path / "c3"),
                  "--max-regression", "p50=50%", "--max-regression", "p90=50%",
                  "--max-regression", "p99=500%")
    assert lenient.returncode in (0, 1), lenient.stderr
    c3 = json.loads((tmp_path / "c3" / "compare.json").read_text())
    assert not [r for r in c3["rows"] if r["decision"] == "regression"
                and r["stat"] in ("p50", "p90")], c3


def test_compare_bad_input_exits_2(tmp_path: Path) -> None:
    missing = cli("compare", str(tmp_path / "nope"), str(tmp_path / "nope2"))
    assert missing.returncode == 2 and "no such folder" in missing.stderr
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "run.json").write_text("{not json")
    junk = cli("compare", str(tmp_path / "junk"), str(tmp_path / "junk"))
    assert junk.returncode == 2 and "not valid JSON" in junk.stderr
    bad_tol = cli("compare", str(tmp_path / "junk"), str(tmp_path / "junk"),
                  "--max-regression", "p99=lots")
    assert bad_tol.returncode == 2 and "STAT=PCT" in bad_tol.stderr
    # a name compare does not know would tolerate nothing, silently: refused, naming the known
    typo = cli("compare", str(tmp_path / "junk"), str(tmp_path / "junk"),
               "--max-regression", "nosuch.p99=5%")
    assert typo.returncode == 2, typo.stderr
    assert "unknown metric 'nosuch' in 'nosuch.p99=5%'" in typo.stderr
    assert "latency, service_time, ttft, ttfo, itl, tpot (and error_rate)" in typo.stderr
    p95 = cli("compare", str(tmp_path / "junk"), str(tmp_path / "junk"),
              "--max-regression", "ttft.p95=5%")
    assert p95.returncode == 2 and "unknown statistic 'p95'" in p95.stderr
    assert "p50, p90, p99" in p95.stderr
    for out in (missing, junk, bad_tol, typo, p95):
        assert "Traceback" not in out.stderr
