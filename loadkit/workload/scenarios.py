"""Scenarios as written in workload files: request kinds, token counts, checks.

Token counts are a number or a distribution (`{dist: lognormal, median: 200,
sigma: 0.6}`); sampling happens in the schedule, seeded. A replayed trace's
own token counts take precedence where its rows have them. Checks ask "is the
model returning sensible output"; a failed one is a `check_failed` error.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from loadkit.workload.media_spec import Media
from loadkit.workload.prompt_set import Prompt
from loadkit.workload.units import MAX_TOKENS, Seconds, Strict, ordered


class Fixed(Strict):
    dist: Literal["fixed"]
    value: int = Field(gt=0, le=MAX_TOKENS)


class Uniform(Strict):
    dist: Literal["uniform"]
    min: int = Field(gt=0, le=MAX_TOKENS)
    max: int = Field(gt=0, le=MAX_TOKENS)

    @model_validator(mode="after")
    def _order(self) -> Uniform:
        return ordered(self)


class Normal(Strict):
    dist: Literal["normal"]
    mean: float = Field(gt=0, le=MAX_TOKENS)
    std: float = Field(ge=0, le=MAX_TOKENS)
    min: int = Field(default=1, gt=0, le=MAX_TOKENS)
    max: int = Field(default=MAX_TOKENS, gt=0, le=MAX_TOKENS)

    @model_validator(mode="after")
    def _order(self) -> Normal:
        return ordered(self)


class LogNormal(Strict):
    """Long-tailed lengths: `median` tokens, `sigma` the log-space spread."""

    dist: Literal["lognormal"]
    median: float = Field(gt=0, le=MAX_TOKENS)
    sigma: float = Field(ge=0, le=10)
    min: int = Field(default=1, gt=0, le=MAX_TOKENS)
    max: int = Field(default=MAX_TOKENS, gt=0, le=MAX_TOKENS)

    @model_validator(mode="after")
    def _order(self) -> LogNormal:
        return ordered(self)


Distribution = Annotated[Fixed | Uniform | Normal | LogNormal,
                         Field(discriminator="dist")]
Tokens = Annotated[int, Field(gt=0, le=MAX_TOKENS)] | Distribution


class JsonCheck(Strict):
    """A JMESPath expression that must find a value (and equal or match it)."""

    path: str
    equals: Any = None
    matches: str | None = None

    @field_validator("path")
    @classmethod
    def _compiles(cls, v: str) -> str:
        import jmespath
        from jmespath.exceptions import JMESPathError
        try:
            jmespath.compile(v)
        except JMESPathError as exc:
            raise ValueError(f"invalid JMESPath expression: {exc}") from None
        return v


class Checks(Strict):
    status: list[int] | int | None = None  # default: any 2xx
    json_path: list[JsonCheck] = []  # non-streaming answers only
    regex: str | None = None  # on the generated text
    min_output_tokens: int | None = Field(default=None, gt=0)

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return v

    @property
    def needs_body(self) -> bool:
        return bool(self.json_path) or self.regex is not None


class PrefixPool(Strict):
    """Shared prompt prefixes (system prompts, few-shot examples): each request
    starts with one of `count` distinct prefixes of `tokens` tokens, then its
    own `prompt_tokens` (the unique suffix). `pick`: uniform, or zipf (the
    i-th prefix with weight 1 / i^s, as a few prompts dominate real traffic)."""

    count: int = Field(gt=0, le=100_000)
    tokens: int = Field(gt=0, le=1_000_000)
    pick: Literal["uniform", "zipf"] = "uniform"
    s: float = Field(default=1.0, gt=0, le=10)

    def weights(self) -> list[float]:
        if self.pick == "uniform":
            return [1.0 / self.count] * self.count
        raw = [1.0 / (i + 1) ** self.s for i in range(self.count)]
        return [w / sum(raw) for w in raw]


class PromptsFilter(Strict):
    min_tokens: int = Field(default=1, gt=0)
    max_tokens: int = Field(default=MAX_TOKENS, gt=0, le=MAX_TOKENS)

    def keeps(self, length: int) -> bool:
        """Whether a prompt of `length` (in words) is kept."""
        return self.min_tokens <= length <= self.max_tokens


class ThinkTime(Strict):
    """Uniform between `min` and `max` (durations)."""

    min: Seconds = Field(ge=0, le=86_400)
    max: Seconds = Field(ge=0, le=86_400)

    @model_validator(mode="after")
    def _order(self) -> ThinkTime:
        return ordered(self)


class ExponentialWait(Strict):
    """Waits with this mean, memoryless: a client as likely to leave in the
    next instant however long it has waited."""

    dist: Literal["exponential"]
    mean: Seconds = Field(gt=0, le=86_400)


class LogNormalWait(Strict):
    dist: Literal["lognormal"]
    median: Seconds = Field(gt=0, le=86_400)
    sigma: float = Field(ge=0, le=10)


Wait = Seconds | ThinkTime | Annotated[ExponentialWait | LogNormalWait,
                                       Field(discriminator="dist")]


class Retry(Strict):
    """A client that left sends the same request again (the same bytes, so a
    prefix cache sees it) `after` its leaving, at most `max` times."""

    after: Wait = 1.0
    max: int = Field(default=1, ge=1, le=10)


class Abandon(Strict):
    """Clients that leave: of `share` of the requests (drawn per request,
    seeded), each leaves at the first of its rules that fires: no first
    token after `patience`, `read_tokens` answer tokens read, or (with
    `on_tool_call`) a tool call starting to stream. Leaving closes the
    connection at that instant; the request counts as abandoned, neither
    completed nor failed; with `retry`, it is sent again later."""

    share: float = Field(default=1.0, ge=0, le=1)
    patience: Wait | None = None
    read_tokens: Tokens | None = None
    on_tool_call: bool = False
    retry: Retry | None = None  # it comes back (not in sessions: a left session ends)

    @model_validator(mode="after")
    def _some_rule(self) -> Abandon:
        if self.patience is None and self.read_tokens is None and not self.on_tool_call:
            raise ValueError("give a rule: patience, read_tokens or on_tool_call")
        return self


class Session(Strict):
    """A conversation: it arrives by the tenant's arrival process (open loop);
    each later turn is sent `think_time` after the previous answer, with the
    whole history (the assistant's text as it came back). Each turn's user
    message has the scenario's `prompt_tokens`; `turns` counts every turn."""

    turns: Tokens
    think_time: Seconds | ThinkTime = 0.0


class _Scenario(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    weight: float = Field(default=1.0, gt=0, le=1e6)
    headers: dict[str, str] = {}
    checks: Checks = Checks()


class Tool(Strict):
    """A function the model may call: its name and its arguments' JSON Schema."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = {"type": "object", "properties": {}}

    @field_validator("parameters")
    @classmethod
    def _schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _valid_schema(v)


class ToolName(Strict):
    name: str


class ResponseFormat(Strict):
    """Structured output: the answer must be JSON valid against `schema`."""

    name: str = Field(default="answer", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    schema_: dict[str, Any] = Field(alias="schema")

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _valid_schema(v)


def _valid_schema(v: dict[str, Any]) -> dict[str, Any]:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError
    try:
        Draft202012Validator.check_schema(v)
    except SchemaError as exc:
        raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
    return v


GENERATION_KINDS = ("openai-chat", "openai-completions", "openai-responses",
                    "anthropic-messages")
_PATHS = {"openai-chat": "/v1/chat/completions", "openai-completions": "/v1/completions",
          "openai-responses": "/v1/responses", "anthropic-messages": "/v1/messages"}


class GenerationScenario(_Scenario):
    """A text-generation request in one of the dialects: OpenAI chat,
    completions or Responses, or Anthropic Messages."""

    kind: Literal["openai-chat", "openai-completions", "openai-responses",
                  "anthropic-messages"]
    stream: bool = True
    model: str | None = None  # None: the one model the target's GET /v1/models lists
    prompt_tokens: Tokens = 128
    max_tokens: Tokens = 64
    prompts: str | None = None  # prompt set (JSONL, ShareGPT); overrides prompt_tokens
    # Keep only the set's prompts of this many words (first user message).
    prompts_filter: PromptsFilter | None = None
    exact_output: bool = False  # ask vLLM-style servers for exactly max_tokens
    unique_prompts: bool = True  # defeat prefix caching, as distinct users would
    # Ask for usage in every streamed event (vLLM's stream_options.
    # continuous_usage_stats): ITL per token then counts each event's tokens
    # exactly. Off by default: other servers may refuse the unknown option.
    usage_per_event: bool = False
    prefix: PrefixPool | None = None  # shared prefixes before the unique part
    session: Session | None = None  # multi-turn conversations (not completions)
    # Agents: the functions offered, how the model may pick one, and (in a
    # session) the client's time to run a called tool before it sends the
    # result back, the result's text, and the most tool rounds per user turn.
    tools: list[Tool] = []
    tool_choice: Literal["auto", "required", "none"] | ToolName = "auto"
    tool_latency: Seconds | ThinkTime = 0.0
    tool_result: str = '{"ok": true}'
    max_tool_rounds: int = Field(default=4, ge=0, le=100)
    response_format: ResponseFormat | None = None  # structured output, checked
    # Responses API sessions: continue with `previous_response_id` instead of
    # sending the whole history again (the server keeps the conversation).
    previous_response_id: bool = False
    anthropic_version: str = "2023-06-01"  # the `anthropic-version` header
    abandon: Abandon | None = None  # clients that leave before the answer ends
    media: Media | None = None  # images and audio in each request (media_spec.py)
    path: str | None = None

    def kept_prompts(self, prompts: list[Prompt]) -> list[Prompt]:
        """The prompt set's prompts this scenario sends (`prompts_filter`)."""
        f = self.prompts_filter
        return [p for p in prompts if f.keeps(p.length)] if f else prompts

    @model_validator(mode="after")
    def _checks_can_pass(self) -> GenerationScenario:
        if self.stream and self.checks.json_path:
            raise ValueError("checks.json_path needs a JSON answer: use it with stream: false")
        if self.prefix and self.prompts:
            raise ValueError("prefix pools shape generated prompts: drop `prompts` or `prefix`")
        if self.kind == "openai-completions" and (self.session or self.tools
                                                  or self.response_format):
            raise ValueError("sessions, tools and response_format need a chat dialect, "
                             "not openai-completions")
        if self.prompts_filter and not self.prompts:
            raise ValueError("`prompts_filter` filters a prompt set: give `prompts`")
        if self.previous_response_id and self.kind != "openai-responses":
            raise ValueError("`previous_response_id` is the Responses API's: "
                             "kind openai-responses")
        if isinstance(self.tool_choice, ToolName) and \
                self.tool_choice.name not in {t.name for t in self.tools}:
            raise ValueError(f"tool_choice names {self.tool_choice.name!r}, which is not "
                             "among `tools`")
        if self.abandon and (self.abandon.read_tokens or self.abandon.on_tool_call) \
                and not self.stream:
            raise ValueError("abandon.read_tokens and on_tool_call read a stream: stream: true")
        if self.media is not None and self.kind == "openai-completions":
            raise ValueError("media go in a chat dialect's messages: not with "
                             "openai-completions")
        if self.media is not None and self.media.audio is not None \
                and self.kind == "anthropic-messages":
            raise ValueError("Anthropic Messages takes no audio: drop media.audio")
        if self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice: required needs `tools`")
        return self

    @property
    def request_path(self) -> str:
        return self.path or _PATHS[self.kind]


class EmbeddingsScenario(_Scenario):
    """An OpenAI embeddings request with `inputs` texts of `prompt_tokens` each."""

    kind: Literal["openai-embeddings"]
    model: str | None = None  # None: the one model the target's GET /v1/models lists
    prompt_tokens: Tokens = 64
    inputs: int = Field(default=1, gt=0, le=100_000)
    path: str = "/v1/embeddings"

    @model_validator(mode="after")
    def _checks_can_pass(self) -> EmbeddingsScenario:
        if self.checks.regex or self.checks.min_output_tokens:
            raise ValueError("embeddings generate no text: use checks.status or json_path")
        return self

    @property
    def request_path(self) -> str:
        return self.path


class HttpScenario(_Scenario):
    """Any JSON HTTP request; success is a 2xx status unless checks say otherwise."""

    kind: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "POST"
    path: str = "/"
    body: Any = None

    @property
    def request_path(self) -> str:
        return self.path


from loadkit.workload.kserve_spec import KServeScenario  # noqa: E402  (it builds on _Scenario)
from loadkit.workload.rerank_spec import RerankScenario  # noqa: E402  (the same)

Scenario = Annotated[GenerationScenario | EmbeddingsScenario | HttpScenario | KServeScenario
                     | RerankScenario, Field(discriminator="kind")]
SCENARIO_KINDS = (*GENERATION_KINDS, "openai-embeddings", "http", "kserve", "rerank")
