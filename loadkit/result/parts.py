"""The vocabulary every part of run.json is written in: verdicts, scopes,
series tags, and `Part`, the base of its frozen models (loadkit.result.model
assembles them into RunResult)."""

from __future__ import annotations

import enum
import re
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict
from pydantic_core import core_schema


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"

    @classmethod
    def overall(cls, verdicts: list[Verdict]) -> Verdict:
        """One failure fails the run; else one undecided SLO leaves it undecided."""
        for worst in (cls.FAIL, cls.INCONCLUSIVE):
            if worst in verdicts:
                return worst
        return cls.PASS


NOTHING_JUDGED = ("no request completed in the measured phases: nothing to judge, so the "
                  "verdict is inconclusive, never a pass")


class Scope(str):
    """Where a figure applies: `all`, `tenant:<name>`, `scenario:<name>` or
    `phase:<name>`. A string (dict keys, JSON, SLO text), parsed once."""

    KINDS = ("tenant", "scenario", "phase")

    def __new__(cls, text: str) -> Scope:
        kind, sep, name = text.partition(":")
        if text != "all" and not (sep and kind in cls.KINDS and name):
            raise ValueError(f"not a scope: {text!r} (all, tenant:NAME, scenario:NAME "
                             "or phase:NAME)")
        return super().__new__(cls, text)

    @classmethod
    def of(cls, kind: str, name: str) -> Scope:
        return cls(f"{kind}:{name}")

    @property
    def kind(self) -> str:
        return "all" if self == "all" else self.partition(":")[0]

    @property
    def name(self) -> str:
        """The tenant, scenario or phase named; "" for `all`."""
        return self.partition(":")[2]

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls, core_schema.str_schema(pattern=r"^(all|(tenant|scenario|phase):.+)$"),
            serialization=core_schema.plain_serializer_function_ser_schema(str))


ALL = Scope("all")

_UNSAFE_IN_TAG = re.compile(r"[^A-Za-z0-9_:\-]")


class SeriesTag(NamedTuple):
    """One series, as `histograms` in run.json and the hlog's `Tag=` name it:
    `metric.phase.scenario.tenant`, each part made safe (other characters
    are `_`, so a name's tag may differ from the name)."""

    metric: str
    phase: str
    scenario: str
    tenant: str

    @classmethod
    def of(cls, metric: str, phase: str, scenario: str, tenant: str) -> SeriesTag:
        return cls(*(safe_part(p) for p in (metric, phase, scenario, tenant)))

    @classmethod
    def parse(cls, tag: str) -> SeriesTag | None:
        """None when `tag` is not four non-empty parts."""
        parts = tag.split(".")
        return cls(*parts) if len(parts) == 4 and all(parts) else None

    def __str__(self) -> str:
        return ".".join(self)


def safe_part(name: str) -> str:
    """A name as a series tag spells it."""
    return _UNSAFE_IN_TAG.sub("_", name)


class Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)
