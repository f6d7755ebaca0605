"""The workload as outputs show it: no literal secret, references as written."""

from __future__ import annotations

from typing import Any

from loadkit.workload.public import public_spec


def test_literal_secrets_are_masked_and_references_kept() -> None:
    spec: dict[str, Any] = {
        "target": "http://alice:pa55@127.0.0.1:8000",
        "headers": {"Authorization": "Bearer ${KEY}", "X-Api-Key": "sk-literal",
                    "Cookie": "sid=abc", "X-Team": "search"},
        "tenants": [{"name": "acme", "api_key": "sk-tenant", "headers": {}},
                    {"name": "beta", "api_key": "${BETA_KEY}"}],
        "telemetry": {"agent_token": "t0k", "prometheus": [
            {"url": "http://u:p@127.0.0.1:9400/metrics", "headers": {"X-Auth-Token": "abc"}}]},
        "scenarios": [{"name": "vis", "media": {"images": {"urls": [
            "https://bucket.example/a.png?X-Amz-Signature=SIG123&X-Amz-Expires=60"]}},
            "prompts": ["tell me about http"], "max_tokens": 8}],
    }
    shown = public_spec(spec)
    assert shown["target"] == "http://127.0.0.1:8000"
    assert shown["headers"] == {"Authorization": "Bearer ${KEY}", "X-Api-Key": "***",
                                "Cookie": "***", "X-Team": "search"}
    assert [t["api_key"] for t in shown["tenants"]] == ["***", "${BETA_KEY}"]
    assert shown["telemetry"]["agent_token"] == "***"
    scrape = shown["telemetry"]["prometheus"][0]
    assert scrape == {"url": "http://127.0.0.1:9400/metrics", "headers": {"X-Auth-Token": "***"}}
    (url,) = shown["scenarios"][0]["media"]["images"]["urls"]
    assert "SIG123" not in url and url.startswith("https://bucket.example/a.png?")
    assert shown["scenarios"][0]["prompts"] == ["tell me about http"]
    assert shown["scenarios"][0]["max_tokens"] == 8
    assert spec["headers"]["X-Api-Key"] == "sk-literal"  # the spec itself is untouched


def test_a_reference_beside_a_literal_is_masked_and_a_path_s_query_too() -> None:
    shown = public_spec({
        "api_key": "sk-live-${SUFFIX}",  # its literal part would show
        "headers": {"X-Amz-Credential": "AKIA", "Authorization": "Basic ${B64}"},
        "path": "/v1beta/models/m:streamGenerateContent?key=AIzaSECRET&alt=sse",
        "eos_token": "</s>", "passwd": "hunter2"})
    assert shown["api_key"] == "***" and shown["passwd"] == "***"
    assert shown["headers"] == {"X-Amz-Credential": "***", "Authorization": "Basic ${B64}"}
    assert "AIzaSECRET" not in shown["path"] and shown["path"].startswith(
        "/v1beta/models/m:streamGenerateContent?key=")
    assert shown["eos_token"] == "</s>"  # a tokenizer's token is no credential
