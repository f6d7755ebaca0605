"""The JSON Schema of run.json, generated from the model.

    python -m loadkit.result.schema > docs/run.schema.json

A test checks the file in docs/ is what the model generates today.
"""

from __future__ import annotations

import json

from loadkit.result.model import SCHEMA_VERSION, RunResult


def run_schema() -> dict:
    schema = RunResult.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://loadkit.dev/schema/run-v{SCHEMA_VERSION}.json", **schema}


def render() -> str:
    return json.dumps(run_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
