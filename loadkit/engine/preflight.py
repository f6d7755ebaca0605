"""Pre-flight: is the target there at all, and which model does it serve?
(control plane, httpx)

Any HTTP answer, even a 404, proves the target is reachable; a refused
connection, a DNS failure, a TLS failure or a timeout does not, and the run
stops before it starts (exit 3) rather than measuring a wall of errors.
"""

from __future__ import annotations

import json

import httpx

from loadkit.engine.bounded import read_bounded
from loadkit.engine.client import ssl_context
from loadkit.errors import AnswerTooLarge, InputError, TargetRejected, TargetUnreachable
from loadkit.urls import doubled_v1, without_credentials
from loadkit.workload.models import Client


def check_target(base_url: str, client: Client, path: str = "/") -> int:
    """Return the HTTP status of GET base_url+path, or raise TargetUnreachable."""
    verify = ssl_context(client)
    shown = without_credentials(base_url)
    timeout = httpx.Timeout(client.timeouts.first_byte, connect=client.timeouts.connect)
    try:
        with httpx.Client(verify=verify, timeout=timeout, follow_redirects=False) as c, \
                c.stream("GET", base_url + path) as resp:
            return resp.status_code  # the status line is the proof: the body is never read
    except httpx.ConnectError as exc:
        raise TargetUnreachable(f"cannot connect to {shown}: {exc}. Is the server "
                                "running, and is the URL right?") from None
    except httpx.TimeoutException:
        raise TargetUnreachable(f"{shown} did not answer within "
                                f"{client.timeouts.first_byte:g} s") from None
    except httpx.HTTPError as exc:
        said = str(exc).replace(base_url, shown)  # httpx may name the URL, credentials and all
        raise TargetUnreachable(f"{shown}: {type(exc).__name__}" + (f": {said}" if said else "")
                                + ". Is it an HTTP server, and is the URL right?") from None


RESETS = ("/reset_prefix_cache", "/flush_cache")  # vLLM's, SGLang's
MODELS_BYTES = 4 * 1024 * 1024  # a model list of thousands of models is still far under


def reset_prefix_cache(base_url: str, client: Client, headers: dict[str, str]) -> str:
    """`cache: cold`: empty the target's prefix cache (the first of RESETS it
    serves); RunError (exit 3) when it serves none: the run would measure a
    cache it was asked not to."""
    shown = without_credentials(base_url)
    timeout = httpx.Timeout(client.timeouts.first_byte, connect=client.timeouts.connect)
    said = []
    try:
        with httpx.Client(verify=ssl_context(client), timeout=timeout,
                          follow_redirects=False) as c:
            for path in RESETS:
                resp = c.post(base_url + path, headers=headers)
                if 200 <= resp.status_code < 300:
                    return f"prefix cache reset ({path})"
                said.append(f"{path}: HTTP {resp.status_code}")
    except httpx.HTTPError as exc:
        said.append(f"{type(exc).__name__}: {exc}")
    raise TargetRejected(f"`cache: cold`: {shown} reset no prefix cache ({'; '.join(said)}); "
                         "a vLLM server needs VLLM_SERVER_DEV_MODE=1 for /reset_prefix_cache")


def discover_model(base_url: str, client: Client, headers: dict[str, str],
                   key_from: str) -> str:
    """The one model the target lists at GET /v1/models (OpenAI, vLLM, TGI,
    SGLang, llama.cpp all serve it); bad input (exit 2) when it lists none,
    several, or cannot say: then the user names one. A 401/403 is the target
    refusing the key (`key_from` says where it comes from): TargetRejected
    (exit 3), as the probe would say, since naming a model would not help."""
    shown = without_credentials(base_url)
    how = "name it with --model NAME (every OpenAI scenario) or `model:` in a scenario"
    timeout = httpx.Timeout(client.timeouts.first_byte, connect=client.timeouts.connect)
    try:
        with httpx.Client(verify=ssl_context(client), timeout=timeout,
                          follow_redirects=False) as c, \
                c.stream("GET", base_url + "/v1/models", headers=headers) as resp:
            status = resp.status_code
            body = read_bounded(resp, MODELS_BYTES, client.timeouts.total)
    except (httpx.HTTPError, AnswerTooLarge) as exc:
        raise TargetUnreachable(f"{shown}/v1/models: {type(exc).__name__}: {exc}") from None
    said = body[:200].decode("utf-8", "replace")
    if status in (401, 403):
        raise TargetRejected(f"{shown}/v1/models answered HTTP {status} "
                             f"({said!r}): the target refuses the credentials -> "
                             f"check {key_from}, and that the ${{VAR}}s they name are set")
    if status != 200:
        raise InputError(f"the scenarios name no model, and {shown}/v1/models answered "
                         f"HTTP {status} ({said!r}): "
                         f"{doubled_v1(shown) if status == 404 else ''}{how}")
    try:
        ids = [m["id"] for m in json.loads(body)["data"] if isinstance(m["id"], str)]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"the scenarios name no model, and {shown}/v1/models is not an "
                         f"OpenAI model list ({said!r}): {how}") from None
    if len(ids) == 1:
        return ids[0]
    if not ids:
        raise InputError(f"{shown}/v1/models lists no model: {how}")
    listed = ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
    raise InputError(f"{shown} serves {len(ids)} models ({listed}): choose one: {how}")

