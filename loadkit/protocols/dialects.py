"""Where each text-generation dialect puts things in a request: the model,
the output limit, the messages, tools, tool choice and structured output,
and how a conversation's history reads after an answer or a tool call.

Plain text turns read alike in all three chat dialects (`{"role",
"content"}`); calls and their results do not: OpenAI chat has `tool_calls`
and `role: tool` messages, the Responses API `function_call` and
`function_call_output` items, Anthropic `tool_use` and `tool_result` blocks.
"""

from __future__ import annotations

from typing import Any

import orjson

from loadkit.engine.adapter import ToolCall
from loadkit.workload.scenarios import GenerationScenario, ToolName


class Dialect:
    """OpenAI chat completions; the other dialects override what differs."""

    max_key = "max_tokens"
    vllm_extras = True  # accepts vLLM's ignore_eos / min_tokens (exact_output)

    def fixed(self, s: GenerationScenario) -> dict[str, Any]:
        out: dict[str, Any] = {"model": s.model, "stream": s.stream}
        if s.stream:
            out["stream_options"] = {"include_usage": True}
            if s.usage_per_event:
                out["stream_options"]["continuous_usage_stats"] = True
        if s.tools:
            out["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in s.tools]
            out["tool_choice"] = self._choice(s.tool_choice)
        if (rf := s.response_format) is not None:
            out["response_format"] = {"type": "json_schema", "json_schema": {
                "name": rf.name, "schema": rf.schema_, "strict": True}}
        return out

    def _choice(self, choice: str | ToolName) -> object:
        if isinstance(choice, ToolName):
            return {"type": "function", "function": {"name": choice.name}}
        return choice

    def body(self, fixed: dict[str, Any], limits: dict[str, Any],
             messages: list[dict]) -> dict[str, Any]:
        return {**fixed, **limits, "messages": messages}

    def assistant(self, text: str | None, calls: tuple[ToolCall, ...]) -> list[dict]:
        """The answer as the next turn's history; none when it said nothing
        (it only reasoned): an empty assistant message is refused by some APIs."""
        if not calls:
            return [{"role": "assistant", "content": text}] if text else []
        return [{"role": "assistant", "content": text or None, "tool_calls": [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}} for c in calls]}]

    def tool_results(self, calls: tuple[ToolCall, ...], result: str) -> list[dict]:
        return [{"role": "tool", "tool_call_id": c.id, "content": result} for c in calls]


class Completions(Dialect):
    """A prompt, not messages: the messages' text, one per line."""

    def fixed(self, s: GenerationScenario) -> dict[str, Any]:
        return {k: v for k, v in super().fixed(s).items()
                if k in ("model", "stream", "stream_options")}

    def body(self, fixed: dict[str, Any], limits: dict[str, Any],
             messages: list[dict]) -> dict[str, Any]:
        return {**fixed, **limits, "prompt": "\n".join(str(m["content"]) for m in messages)}


class Responses(Dialect):
    """OpenAI's Responses API (`/v1/responses`): `input` items."""

    max_key = "max_output_tokens"
    vllm_extras = False

    def fixed(self, s: GenerationScenario) -> dict[str, Any]:
        out: dict[str, Any] = {"model": s.model, "stream": s.stream}
        if s.tools:
            out["tools"] = [{"type": "function", "name": t.name,
                             "description": t.description, "parameters": t.parameters}
                            for t in s.tools]
            out["tool_choice"] = self._choice(s.tool_choice)
        if (rf := s.response_format) is not None:
            out["text"] = {"format": {"type": "json_schema", "name": rf.name,
                                      "schema": rf.schema_, "strict": True}}
        return out

    def _choice(self, choice: str | ToolName) -> object:
        return {"type": "function", "name": choice.name} if isinstance(choice, ToolName) \
            else choice

    def body(self, fixed: dict[str, Any], limits: dict[str, Any],
             messages: list[dict]) -> dict[str, Any]:
        return {**fixed, **limits, "input": messages}

    def assistant(self, text: str | None, calls: tuple[ToolCall, ...]) -> list[dict]:
        said = [{"role": "assistant", "content": text}] if text else []
        return said + [{"type": "function_call", "call_id": c.id, "name": c.name,
                        "arguments": c.arguments} for c in calls]

    def tool_results(self, calls: tuple[ToolCall, ...], result: str) -> list[dict]:
        return [{"type": "function_call_output", "call_id": c.id, "output": result}
                for c in calls]


class AnthropicMessages(Dialect):
    """Anthropic's Messages API (`/v1/messages`): a top-level `system`,
    `max_tokens` required, content blocks for calls and their results."""

    vllm_extras = False

    def fixed(self, s: GenerationScenario) -> dict[str, Any]:
        out: dict[str, Any] = {"model": s.model, "stream": s.stream}
        if s.tools:
            out["tools"] = [{"name": t.name, "description": t.description,
                             "input_schema": t.parameters} for t in s.tools]
            out["tool_choice"] = self._choice(s.tool_choice)
        if (rf := s.response_format) is not None:
            out["output_format"] = {"type": "json_schema", "schema": rf.schema_}
        return out

    def _choice(self, choice: str | ToolName) -> object:
        if isinstance(choice, ToolName):
            return {"type": "tool", "name": choice.name}
        return {"type": {"required": "any"}.get(choice, choice)}

    def body(self, fixed: dict[str, Any], limits: dict[str, Any],
             messages: list[dict]) -> dict[str, Any]:
        system = [m for m in messages if m.get("role") in ("system", "developer")]
        body = {**fixed, **limits,
                "messages": [m for m in messages if m.get("role") not in ("system", "developer")]}
        if system:
            body["system"] = "\n".join(str(m["content"]) for m in system)
        return body

    def assistant(self, text: str | None, calls: tuple[ToolCall, ...]) -> list[dict]:
        if not calls:
            return [{"role": "assistant", "content": text}] if text else []
        blocks: list[dict] = [{"type": "text", "text": text}] if text else []
        return [{"role": "assistant", "content": blocks + [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": _input(c)}
            for c in calls]}]

    def tool_results(self, calls: tuple[ToolCall, ...], result: str) -> list[dict]:
        return [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": c.id, "content": result} for c in calls]}]


def _input(call: ToolCall) -> object:
    """A call's arguments as the object Anthropic takes back ({} when they
    were not a JSON object: the check already failed that turn)."""
    try:
        value = orjson.loads(call.arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


DIALECTS: dict[str, Dialect] = {
    "openai-chat": Dialect(), "openai-completions": Completions(),
    "openai-responses": Responses(), "anthropic-messages": AnthropicMessages()}
