"""Load a workload YAML file into a validated :class:`Workload`.

Every problem is reported as `file:line: key.path: message` (a WorkloadError,
exit 2). Lines come from the YAML node tree, which PyYAML keeps with marks;
pydantic's error locations are walked along that tree to find them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from loadkit import envrefs
from loadkit.errors import InputError, WorkloadError
from loadkit.urls import base_url
from loadkit.workload import tokenizer as tokens
from loadkit.workload.arrival_specs import PROCESS_KINDS, Trace
from loadkit.workload.models import ErrorAt, Workload
from loadkit.workload.prompt_set import Prompt, PromptSetError, load_prompt_set
from loadkit.workload.scaling import time_scaled, with_measured_duration
from loadkit.workload.scenarios import SCENARIO_KINDS, GenerationScenario
from loadkit.workload.slo_file import SloFile, with_slo_file
from loadkit.workload.traces import TraceError, TraceRow, load_trace
from loadkit.workload.units import has_time_unit

# pydantic puts a discriminated union's tag into error locations; it is no key.
_TAGS = {*SCENARIO_KINDS, *PROCESS_KINDS, "fixed", "uniform", "normal", "lognormal", "int"}


@dataclass(frozen=True)
class Overrides:
    """Command-line flags that replace values of the file."""

    duration: float | None = None  # measured seconds; phases keep their proportions
    time_scale: float | None = None  # every time in the file, shapes included
    rate: float | None = None  # total rate, split over tenants in proportion
    seed: int | None = None
    target: str | None = None
    insecure: bool | None = None
    ca_bundle: str | None = None
    slo_files: tuple[str, ...] = ()
    model: str | None = None  # for every OpenAI scenario
    fail_fast: bool = True  # False: client.fail_fast off
    probe: bool = True  # False: client.probe off
    drain: float | None = None  # seconds: client.drain
    stop_when_decided: bool = False  # True: the run ends once its verdict is decided


@dataclass(frozen=True)
class LoadedWorkload:
    workload: Workload
    path: str
    sha256: str
    traces: dict[str, list[TraceRow]] = field(default_factory=dict)  # by path as written
    prompt_sets: dict[str, list[Prompt]] = field(default_factory=dict)
    tokenizer: str | None = None  # the tokenizer.json's text (workload `tokenizer:`)


def load_workload(path: str | os.PathLike[str], overrides: Overrides = Overrides(),
                  env: Mapping[str, str] | None = None) -> LoadedWorkload:
    """Read, validate and apply overrides; raise WorkloadError on any problem."""
    if overrides.target is not None:  # the flag's fault, not the file's: said so
        try:
            base_url(overrides.target)
        except ValueError as exc:
            raise InputError(f"--target: {exc}") from None
    raw, node, data = _read_yaml(path)
    data = _apply_overrides(data, overrides)
    workload = _validate(Workload, node, data, str(path))
    for slo_path in overrides.slo_files:
        _, s_node, s_data = _read_yaml(slo_path)
        def where(loc: tuple[str | int, ...], msg: str,
                  n: yaml.Node = s_node) -> tuple[int | None, str, str]:
            return _locate(n, {"loc": loc, "type": "slo", "msg": msg})
        workload = with_slo_file(workload, _validate(SloFile, s_node, s_data, str(slo_path)),
                                 str(slo_path), where)
    workload = _rescale(workload, overrides, str(path))
    missing = set(envrefs.missing(workload.env_refs(), os.environ if env is None else env))
    if missing:
        raise WorkloadError(str(path), [
            _locate(node, {"loc": where, "type": "env", "msg": envrefs.not_set(name)})
            for name, where in workload.env_ref_places() if name in missing])
    base = Path(path).parent
    workload = _data_paths(workload, base)
    prompt_sets = _prompt_sets(workload, base, node, str(path))
    _check_prompt_filters(workload, prompt_sets, node, str(path))
    return LoadedWorkload(workload, str(path), hashlib.sha256(raw).hexdigest(),
                          traces=_traces(workload, base, node, str(path)),
                          prompt_sets=prompt_sets,
                          tokenizer=_tokenizer(workload, base))


def _check_prompt_filters(w: Workload, prompt_sets: dict[str, list[Prompt]], node: yaml.Node,
                          name: str) -> None:
    """A `prompts_filter` that keeps none of its prompt set is refused now, so
    that `plan` refuses it as `run` does (not a schedule of requests that
    cannot be built)."""
    problems = []
    for i, s in enumerate(w.scenarios):
        if not isinstance(s, GenerationScenario) or (f := s.prompts_filter) is None:
            continue
        prompts = prompt_sets.get(s.prompts or "")
        if prompts and not s.kept_prompts(prompts):
            lengths = [p.length for p in prompts]
            problems.append(_locate(node, {
                "loc": ("scenarios", i, "prompts_filter"), "type": "filter",
                "msg": f"keeps none of the {len(lengths):,} prompts of {s.prompts} (their "
                       f"lengths run from {min(lengths):,} to {max(lengths):,} words; the "
                       f"filter keeps {f.min_tokens:,} to {f.max_tokens:,})"}))
    if problems:
        raise WorkloadError(name, problems)


def _data_paths(w: Workload, base: Path) -> Workload:
    """Media folders and datasets, and a rerank's query and document datasets,
    named relative to the workload file, made absolute."""
    def column(col: Any) -> Any:
        return None if col is None else col.model_copy(update={"path": base / col.path})

    def fixed(s: Any) -> Any:
        if getattr(s, "kind", None) == "rerank":
            return s.model_copy(update={"queries": column(s.queries),
                                        "corpus": column(s.corpus)})
        media = getattr(s, "media", None)
        if media is None:
            return s
        images, audio = media.images, media.audio
        if images is not None and images.folder is not None:
            images = images.model_copy(update={"folder": base / images.folder})
        if images is not None:
            images = images.model_copy(update={"dataset": column(images.dataset)})
        if audio is not None:
            audio = audio.model_copy(update={"dataset": column(audio.dataset)})
        return s.model_copy(update={"media": media.model_copy(
            update={"images": images, "audio": audio})})
    return w.model_copy(update={"scenarios": [fixed(s) for s in w.scenarios]})


def _tokenizer(w: Workload, base: Path) -> str | None:
    """The tokenizer.json's text, checked now (exit 2, not mid-run)."""
    if w.tokenizer is None:
        return None
    path = tokens.find_tokenizer(w.tokenizer, base)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"tokenizer {path}: cannot read: {exc}") from None
    tokens.load(text)
    return text


def _read_yaml(path: str | os.PathLike[str]) -> tuple[bytes, yaml.Node, dict]:
    """(raw bytes, node tree for line numbers, data) of a YAML mapping file."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise WorkloadError(name, [(None, "", f"cannot read: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = _UniqueKeys(text).construct_document(node) if node is not None else None
    except UnicodeDecodeError:
        raise WorkloadError(name, [(None, "", "not UTF-8 text")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise WorkloadError(name, [(line, "", f"invalid YAML: {problem}")]) from None
    if node is None or not isinstance(data, dict):
        raise WorkloadError(name, [(1, "", "the file must be a YAML mapping")])
    return raw, node, data


_M = TypeVar("_M", bound=BaseModel)


def _validate(model: type[_M], node: yaml.Node, data: dict, name: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise WorkloadError(name, [_locate(node, err) for err in _branch_errors(exc)]) from None


# A value given to a field of several forms (a number or a distribution) fails
# each form: the form of another type says nothing of it ("should be a valid
# dictionary" for `max_tokens: "four"`), when a form of its own type spoke.
_SCALAR_TYPES = frozenset({"int_type", "int_parsing", "float_type", "float_parsing",
                           "string_type", "bool_type", "bool_parsing"})
_MAPPING_TYPES = frozenset({"dict_type", "model_type", "model_attributes_type"})


def _branch_errors(exc: ValidationError) -> list[Any]:
    by_field: dict[tuple, list[Any]] = {}
    for err in exc.errors():
        by_field.setdefault(tuple(p for p in err["loc"] if not _is_branch(p)), []).append(err)
    kept = []
    for group in by_field.values():
        other_form = _SCALAR_TYPES if isinstance(group[0]["input"], dict) else _MAPPING_TYPES
        kept += [e for e in group if e["type"] not in other_form] or group
    return kept


def _is_branch(part: Any) -> bool:
    """A pydantic union member's label in an error's location ("constrained-
    int", "tagged-union[...]", "function-after[...]"), not a key or index."""
    return isinstance(part, str) and (part in _TAGS or "[" in part or "-" in part)


class _UniqueKeys(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (the second would silently win)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _rescale(w: Workload, o: Overrides, name: str) -> Workload:
    if o.time_scale is None and o.duration is None:
        return w
    if o.time_scale is not None:
        w = time_scaled(w, o.time_scale)
    if o.duration is not None:
        w = with_measured_duration(w, o.duration)
    try:  # scaling may push a value past its bounds: check the result again
        return Workload.model_validate(w.model_dump(by_alias=True))
    except ValidationError as exc:
        raise WorkloadError(name, [(None, ".".join(map(str, e["loc"])),
                                    f"after --time-scale/--duration: {e['msg']}")
                                   for e in exc.errors()]) from None


def _traces(w: Workload, base: Path, node: yaml.Node, name: str) -> dict[str, list[TraceRow]]:
    """A trace that cannot be read, or whose window selects nothing, is the
    workload's key's fault (its line); a bad row is the trace's (its line)."""
    specs: list[tuple[tuple[str | int, ...], object]] = [
        (("arrival",), w.arrival),
        *((("tenants", i, "arrival"), t.arrival) for i, t in enumerate(w.tenants)),
        *((("phases", i, "arrival"), p.arrival) for i, p in enumerate(w.phases)),
        *((("tenants", i, "phases", k), a) for i, t in enumerate(w.tenants)
          for k, a in t.phases.items())]
    out: dict[str, list[TraceRow]] = {}
    for loc, spec in specs:
        if not isinstance(spec, Trace):
            continue
        if spec.path not in out:
            try:
                out[spec.path] = load_trace(base / spec.path, spec.format)
            except TraceError as exc:
                if exc.row is not None:
                    raise WorkloadError(exc.path, [(exc.row, "", exc.message)]) from None
                raise WorkloadError(name, [_locate(node, {
                    "loc": (*loc, "path"), "type": "file",
                    "msg": f"{exc.path}: {exc.message}"})]) from None
        if problem := _selects_none(out[spec.path], spec):
            raise WorkloadError(name, [_locate(node, {"loc": loc, "type": "trace",
                                                      "msg": f"{spec.path}: {problem}"})])
    return out


def _selects_none(rows: list[TraceRow], spec: Trace) -> str | None:
    """Why a trace's window and rate_scale would send nothing (the run then
    measured nothing, inconclusive), or None."""
    start, end = spec.bounds(rows[0].time)
    inside = sum(1 for r in rows if start <= r.time < end)
    if not inside:
        span = rows[-1].time - rows[0].time
        shown = f"{spec.window.start:g}-" + (f"{spec.window.end:g}" if spec.window.end else "")
        return (f"its window ({shown} s) selects none of its requests (they run from 0 "
                f"to {span:g} s after the first)")
    if inside * spec.rate_scale < 1:
        return (f"rate_scale {spec.rate_scale:g} keeps less than one of the {inside:,} "
                "requests its window selects")
    return None


def _prompt_sets(w: Workload, base: Path, node: yaml.Node, name: str
                 ) -> dict[str, list[Prompt]]:
    """A set that cannot be read is the workload's key's fault (its line);
    a bad line in one is the set's (its file and line)."""
    out = {}
    for i, s in enumerate(w.scenarios):
        path = getattr(s, "prompts", None)
        if path and path not in out:
            try:
                out[path] = load_prompt_set(base / path)
            except PromptSetError as exc:
                if exc.line is None:
                    raise WorkloadError(name, [_locate(node, {
                        "loc": ("scenarios", i, "prompts"), "type": "file",
                        "msg": f"{exc.path}: {exc}"})]) from None
                raise WorkloadError(exc.path, [(exc.line, "", str(exc))]) from None
    return out


def _apply_overrides(data: dict[str, Any], o: Overrides) -> dict[str, Any]:
    data = dict(data)
    if o.seed is not None:
        data["seed"] = o.seed
    if o.target is not None:
        data["target"] = o.target
    if o.stop_when_decided:
        data["stop_when_decided"] = True
    if o.rate is not None:
        data = _override_rate(data, o.rate)
    if o.model is not None and isinstance(data.get("scenarios"), list):
        data["scenarios"] = [
            {**s, "model": o.model}
            if isinstance(s, dict) and str(s.get("kind", "")).startswith("openai-") else s
            for s in data["scenarios"]]
    client = {key: value for key, value, given in (
        ("insecure", True, o.insecure), ("ca_bundle", o.ca_bundle, o.ca_bundle),
        ("fail_fast", False, not o.fail_fast), ("probe", False, not o.probe),
        ("drain", o.drain, o.drain is not None)) if given}
    if client:
        data["client"] = {**(data.get("client") or {}), **client}
    return data


def _override_rate(data: dict[str, Any], total: float) -> dict[str, Any]:
    """Set the total rate; several tenants keep their shares of it.

    Only for tenants with one `rate` each: other shapes have no single rate."""
    tenants = data.get("tenants") or [{"arrival": data.get("arrival")}]
    if not isinstance(tenants, list) or data.get("phases") or not all(
            isinstance(t, dict) and not t.get("phases") and isinstance(t.get("arrival"), dict)
            and "rate" in t["arrival"] for t in tenants):
        raise InputError("--rate applies to workloads whose tenants each have one arrival "
                         "with a `rate` (constant, poisson, gamma) and no phases; "
                         "edit the rates in the file instead")
    rates_given = [t["arrival"]["rate"] for t in tenants]
    if any(isinstance(r, bool) for r in rates_given):  # YAML's yes/no: no rate
        raise InputError("--rate: the file's rates are not numbers (true/false)")
    try:
        rates = [float(r or 0) for r in rates_given]
    except (TypeError, ValueError):
        raise InputError("--rate: the file's rates are not numbers") from None
    base = sum(rates) or 1.0
    scaled = [{**t, "arrival": {**t["arrival"], "rate": total * r / base}}
              for t, r in zip(tenants, rates)]
    if data.get("tenants"):
        return {**data, "tenants": scaled}
    return {**data, "arrival": scaled[0]["arrival"]}


_BOUNDS = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
           "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}


def _locate(root: yaml.Node | None, err: Any) -> tuple[int | None, str, str]:
    """Turn one pydantic error into (line, key path, message)."""
    node, line, keys = root, (root.start_mark.line + 1 if root else None), []
    loc = tuple(err["loc"])
    if isinstance(cause := err.get("ctx", {}).get("error"), ErrorAt):
        loc += cause.loc
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc += (err["ctx"]["discriminator"].strip("'"),)  # point at `kind:` itself
    for part in loc:
        if isinstance(part, int) and isinstance(node, yaml.SequenceNode):
            keys.append(f"[{part}]")
            node = node.value[part] if part < len(node.value) else node
        elif isinstance(node, yaml.MappingNode):
            child = next(((k, v) for k, v in node.value if k.value == part), None)
            if child is None:
                if _is_branch(part):
                    continue  # a union member's label, not a key in the file
                keys.append(f".{part}")
                continue
            keys.append(f".{part}")
            line, node = child[0].start_mark.line + 1, child[1]
            continue
        elif not _is_branch(part):
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
    elif err["type"] in _BOUNDS:
        op, key = _BOUNDS[err["type"]]
        # A duration written with its unit ('50ms') is bounded in seconds: say so.
        unit = " s" if isinstance(node, yaml.ScalarNode) and has_time_unit(node.value) else ""
        msg = f"must be {op} {float(err['ctx'][key]):g}{unit}"
    return line, "".join(keys).lstrip("."), msg
