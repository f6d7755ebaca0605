"""Reading a saved run.json, with messages that say what is wrong and where."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from loadkit.errors import InputError
from loadkit.result.model import READABLE_VERSIONS, SCHEMA_VERSION, RunResult


def load_run(run_dir: Path) -> RunResult:
    """The run of a folder (or the run.json itself); InputError (exit 2) when
    there is none, it is not JSON, another schema version or damaged."""
    path = run_dir if run_dir.is_file() else run_dir / "run.json"
    if not run_dir.exists():
        raise InputError(f"{run_dir}: no such folder")
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        if (run_dir / "journal.jsonl").is_file():
            raise InputError(f"{run_dir}: no run.json here, but a journal: the run died "
                             f"before its end; `loadkit report {run_dir}` rebuilds it") \
                from None
        raise InputError(f"{run_dir}: no run.json here (is it a loadkit output folder?)") \
            from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        document = json.loads(text, parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError) as exc:
        hint = "" if path.name.endswith(".json") else \
            " (give a run's folder, or its run.json)"
        raise InputError(f"{path} is not valid JSON: {exc}{hint}") from None
    return parse_run(document, path)


def parse_run(document: object, path: Path | str = "run.json") -> RunResult:
    if not isinstance(document, dict) or "schema_version" not in document:
        raise InputError(f"{path} is not a loadkit run.json (no schema_version)")
    version = document["schema_version"]
    if version not in READABLE_VERSIONS:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        raise InputError(
            f"{path} has schema_version {version!r}; this loadkit reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
            + ("; upgrade loadkit to read it" if newer else ""))
    try:
        return RunResult.model_validate(document)
    except ValidationError as exc:
        raise InputError(f"{path} is not a complete loadkit run: "
                         + "; ".join(_problem(e) for e in exc.errors()[:3])) from None


def _problem(error: ErrorDetails) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    return f"{key}: {error['msg']}"


def _not_json(name: str) -> None:
    """NaN and Infinity: Python reads them, JSON has none, loadkit writes none."""
    raise ValueError(f"{name} is no JSON number (run.json never holds one)")
