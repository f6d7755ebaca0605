"""Load a workload YAML file into a validated :class:`Workload`.

Every problem is reported as `file:line: key.path: message` (a WorkloadError,
exit 2). Lines come from the YAML node tree, which PyYAML keeps with marks;
pydantic's error locations are walked along that tree to find them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from loadkit.errors import WorkloadError
from loadkit.workload.models import Workload

# pydantic puts a discriminated union's tag into error locations; it is no key.
_SCENARIO_KINDS = {"openai-chat", "openai-completions", "http"}


@dataclass(frozen=True)
class Overrides:
    """Command-line flags that replace values of the file."""

    duration: float | None = None
    rate: float | None = None  # total rate, split over tenants in proportion
    seed: int | None = None
    target: str | None = None
    insecure: bool | None = None
    ca_bundle: str | None = None


@dataclass(frozen=True)
class LoadedWorkload:
    workload: Workload
    path: str
    sha256: str


def load_workload(path: str | os.PathLike[str], overrides: Overrides = Overrides(),
                  env: dict[str, str] | None = None) -> LoadedWorkload:
    """Read, validate and apply overrides; raise WorkloadError on any problem."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise WorkloadError(name, [(None, "", f"cannot read: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise WorkloadError(name, [(None, "", "not UTF-8 text")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise WorkloadError(name, [(line, "", f"invalid YAML: {problem}")]) from None
    if not isinstance(data, dict):
        raise WorkloadError(name, [(1, "", "a workload file must be a YAML mapping")])
    data = _apply_overrides(data, overrides)
    try:
        workload = Workload.model_validate(data)
    except ValidationError as exc:
        raise WorkloadError(name, [_locate(node, err) for err in exc.errors()]) from None
    env = os.environ if env is None else env
    missing = sorted(v for v in workload.env_refs() if v not in env)
    if missing:
        raise WorkloadError(name, [(None, "headers", f"environment variable ${{{v}}} is not set")
                                   for v in missing])
    return LoadedWorkload(workload, name, hashlib.sha256(raw).hexdigest())


def _apply_overrides(data: dict[str, Any], o: Overrides) -> dict[str, Any]:
    data = dict(data)
    if o.duration is not None:
        data["duration"] = o.duration
    if o.seed is not None:
        data["seed"] = o.seed
    if o.target is not None:
        data["target"] = o.target
    if o.rate is not None:
        data = _override_rate(data, o.rate)
    if o.insecure or o.ca_bundle:
        client = dict(data.get("client") or {})
        if o.insecure:
            client["insecure"] = True
        if o.ca_bundle:
            client["ca_bundle"] = o.ca_bundle
        data["client"] = client
    return data


def _override_rate(data: dict[str, Any], total: float) -> dict[str, Any]:
    """Set the total rate; several tenants keep their shares of it."""
    if not data.get("tenants"):
        arrival = dict(data.get("arrival") or {})
        arrival["rate"] = total
        return {**data, "arrival": arrival}
    tenants = [dict(t) if isinstance(t, dict) else t for t in data["tenants"]]
    rates = [float(t.get("arrival", {}).get("rate", 0) or 0) if isinstance(t, dict) else 0.0
             for t in tenants]
    base = sum(rates) or float(len(tenants))
    for t, r in zip(tenants, rates):
        if isinstance(t, dict):
            share = (r or base / len(tenants)) / base
            t["arrival"] = {**dict(t.get("arrival") or {}), "rate": total * share}
    return {**data, "tenants": tenants}


def _locate(root: yaml.Node | None, err: Any) -> tuple[int | None, str, str]:
    """Turn one pydantic error into (line, key path, message)."""
    node, line, keys = root, (root.start_mark.line + 1 if root else None), []
    loc = tuple(err["loc"])
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc += (err["ctx"]["discriminator"].strip("'"),)  # point at `kind:` itself
    for part in loc:
        if isinstance(part, int) and isinstance(node, yaml.SequenceNode):
            keys.append(f"[{part}]")
            node = node.value[part] if part < len(node.value) else node
        elif isinstance(node, yaml.MappingNode):
            child = next(((k, v) for k, v in node.value if k.value == part), None)
            if child is None:
                if part in _SCENARIO_KINDS:
                    continue  # a discriminator tag, not a key in the file
                keys.append(f".{part}")
                continue
            keys.append(f".{part}")
            line, node = child[0].start_mark.line + 1, child[1]
            continue
        else:
            keys.append(f"[{part}]" if isinstance(part, int) else f".{part}")
        if node is not None:
            line = node.start_mark.line + 1
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check its spelling)"
    elif err["type"] == "union_tag_invalid":
        msg = f"must be one of {err['ctx']['expected_tags']}, got {err['ctx']['tag']!r}"
    elif err["type"] == "union_tag_not_found":
        msg = "is required"
    elif err["type"] == "greater_than":
        msg = f"must be > {float(err['ctx']['gt']):g}"
    elif err["type"] == "greater_than_equal":
        msg = f"must be >= {float(err['ctx']['ge']):g}"
    return line, "".join(keys).lstrip("."), msg
