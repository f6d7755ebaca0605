"""KServe v2 / Open Inference Protocol requests and answers (Triton, KServe,
MLServer, NIM), over HTTP and gRPC; the engine carries the bytes.

HTTP: `/infer` with JSON tensors, Triton's `generate` (one JSON answer) and
`generate_stream` (SSE events of `{"text_output": ...}`, no `[DONE]`: the
stream ends with the response). gRPC: `ModelInfer`, and `ModelStreamInfer`
whose every message is one token event, ended by the response that carries
`triton_final_response` (asked for with `triton_enable_empty_final_response`,
as perf_analyzer does) or by the stream's end.

gRPC bodies are spliced, not serialised per request: the request message
without its `raw_input_contents` is serialised once, and each request
appends its tensors' bytes as field 7 (protobuf fields may come in any
order, repeated ones in the order given), so building a body costs a copy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

from loadkit.engine.adapter import (
    BodyBuilder,
    GrpcCall,
    IncompleteAnswer,
    ParsedResponse,
    PreparedRequest,
    ProtocolError,
)
from loadkit.engine.grpc_stubs import SERVICE, service_pb2
from loadkit.errors import InputError
from loadkit.protocols.answer_json import answer_json
from loadkit.protocols.checks import make_check, ok_statuses
from loadkit.protocols.kserve_tensors import as_json, as_raw, bytes_elements, bytes_raw, values
from loadkit.protocols.kserve_tensors import variants as variant_count
from loadkit.protocols.leaving import leave_policy, retry_policy
from loadkit.protocols.sse import SSEDecoder, SSEError
from loadkit.protocols.text import PromptText
from loadkit.workload.kserve_spec import KServeScenario, PromptData

FINAL = "triton_final_response"
ASK_FINAL = "triton_enable_empty_final_response"
DEFAULT_MAX_TOKENS = 16  # the probe sends none


def prepare(scenario: KServeScenario, headers: dict[str, str], seed: str) -> PreparedRequest:
    key = f"{seed}:{scenario.name}"
    check, ok = make_check(scenario.checks), ok_statuses(scenario.checks.status)
    if scenario.transport == "grpc":
        if scenario.address is None:
            raise InputError(f"scenario {scenario.name!r}: no gRPC address (give `address: "
                             "host:port`)")
        metadata = tuple((k.lower(), v) for k, v in headers.items()
                         if k.lower() not in ("content-type", "user-agent"))
        call = GrpcCall(scenario.address, SERVICE + scenario.request_path,
                        scenario.mode == "generate", metadata)
        build = _grpc_generate(scenario, key) if scenario.mode == "generate" \
            else _grpc_infer(scenario, key)
        return PreparedRequest(method="POST", path=scenario.request_path, headers=headers,
                               build_body=build,
                               new_stream_parser=(lambda keep: GrpcStream(keep))
                               if scenario.mode == "generate" else None,
                               parse_body=_parse_grpc_infer(scenario), check=check,
                               ok_status=ok, grpc=call, **_leaving(scenario, key))
    json_headers = {"Content-Type": "application/json", **headers}
    if scenario.mode == "generate":
        text = PromptText(f"{key}:prompt")

        def build_generate(prompt_tokens: int | None, max_tokens: int | None, seq: int,
                           blocks: tuple[int, ...] = ()) -> tuple[bytes, int]:
            asked = max_tokens or DEFAULT_MAX_TOKENS
            prompt = f"{seq}: " + text.tokens(prompt_tokens or 1).decode()
            body: dict = {"text_input": prompt, "max_tokens": asked}
            if scenario.stream:
                body["stream"] = True
            return json.dumps(body).encode(), asked

        return PreparedRequest(method="POST", path=scenario.request_path, headers=json_headers,
                               build_body=build_generate,
                               new_stream_parser=(lambda keep: SseStream(keep))
                               if scenario.stream else None,
                               parse_body=_parse_generate, check=check, ok_status=ok,
                               **_leaving(scenario, key))
    return PreparedRequest(method="POST", path=scenario.request_path, headers=json_headers,
                           build_body=_http_infer(scenario, key), new_stream_parser=None,
                           parse_body=_parse_http_infer(scenario), check=check, ok_status=ok,
                           **_leaving(scenario, key))


def _leaving(scenario: KServeScenario, key: str) -> dict[str, Any]:
    """Clients that leave (`abandon:`): a gRPC stream is cancelled, an HTTP
    connection closed, at the instant the rule fires."""
    return {"leave": leave_policy(scenario.abandon, scenario.name, key),
            "retry": retry_policy(scenario.abandon, scenario.name, key)}


# -- bodies -------------------------------------------------------------------------


def _http_infer(scenario: KServeScenario, key: str) -> BodyBuilder:
    """JSON bodies: the fixed tensors' variants pre-encoded, prompt tensors per request."""
    n = max((variant_count(t) for t in scenario.tensors), default=1)
    fixed = [[None if isinstance(t.data, PromptData) else
              {"name": t.name, "shape": t.shape, "datatype": t.datatype,
               "data": as_json(t, values(t, key, v % variant_count(t)))}
              for t in scenario.tensors] for v in range(n)]
    texts = {t.name: PromptText(f"{key}:{t.name}") for t in scenario.tensors}
    outputs = [{"name": o} for o in scenario.outputs]
    if not any(isinstance(t.data, PromptData) for t in scenario.tensors):
        # Every body made now: a large tensor's JSON costs milliseconds to encode.
        made = [orjson.dumps({"inputs": row, **({"outputs": outputs} if outputs else {})})
                for row in fixed]

        def ready(prompt_tokens: int | None, max_tokens: int | None, seq: int,
                  blocks: tuple[int, ...] = ()) -> tuple[bytes, None]:
            return made[seq % n], None

        return ready

    def build(prompt_tokens: int | None, max_tokens: int | None, seq: int,
              blocks: tuple[int, ...] = ()) -> tuple[bytes, None]:
        inputs = []
        for t, made in zip(scenario.tensors, fixed[seq % n], strict=True):
            if made is None:
                one = f"{seq}: " + texts[t.name].tokens(prompt_tokens or 1).decode()
                made = {"name": t.name, "shape": t.shape, "datatype": t.datatype,
                        "data": [one] * t.elements}
            inputs.append(made)
        doc: dict = {"id": str(seq), "inputs": inputs}
        if outputs:
            doc["outputs"] = outputs
        return orjson.dumps(doc), None

    return build


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _raw_field(data: bytes) -> bytes:
    """One `raw_input_contents` entry (field 7, length-delimited)."""
    return b"\x3a" + _varint(len(data)) + data


def _grpc_infer(scenario: KServeScenario, key: str) -> BodyBuilder:
    pb = service_pb2()
    req = pb.ModelInferRequest(model_name=scenario.model or "",
                               model_version=scenario.version)
    for t in scenario.tensors:
        req.inputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
    for o in scenario.outputs:
        req.outputs.add(name=o)
    head = req.SerializeToString()
    n = max((variant_count(t) for t in scenario.tensors), default=1)
    fixed = [[None if isinstance(t.data, PromptData) else
              _raw_field(as_raw(t, values(t, key, v % variant_count(t))))
              for t in scenario.tensors] for v in range(n)]
    texts = {t.name: PromptText(f"{key}:{t.name}") for t in scenario.tensors}

    def build(prompt_tokens: int | None, max_tokens: int | None, seq: int,
              blocks: tuple[int, ...] = ()) -> tuple[bytes, None]:
        parts = [head]
        for t, made in zip(scenario.tensors, fixed[seq % n], strict=True):
            if made is None:
                one = f"{seq}: ".encode() + texts[t.name].tokens(prompt_tokens or 1)
                made = _raw_field(bytes_raw([one] * t.elements))
            parts.append(made)
        return b"".join(parts), None

    return build


def _grpc_generate(scenario: KServeScenario, key: str) -> BodyBuilder:
    """A decoupled LLM's request: text_input (BYTES), max_tokens (INT32), stream
    (BOOL), the inputs Triton's vLLM and TensorRT-LLM models take."""
    pb = service_pb2()
    req = pb.ModelInferRequest(model_name=scenario.model or "",
                               model_version=scenario.version)
    req.inputs.add(name="text_input", datatype="BYTES", shape=[1])
    req.inputs.add(name="max_tokens", datatype="INT32", shape=[1])
    req.inputs.add(name="stream", datatype="BOOL", shape=[1])
    req.parameters[ASK_FINAL].bool_param = True
    head = req.SerializeToString()
    stream_true = _raw_field(b"\x01")
    text = PromptText(f"{key}:prompt")

    def build(prompt_tokens: int | None, max_tokens: int | None, seq: int,
              blocks: tuple[int, ...] = ()) -> tuple[bytes, int]:
        asked = max_tokens or DEFAULT_MAX_TOKENS
        prompt = f"{seq}: ".encode() + text.tokens(prompt_tokens or 1)
        return (head + _raw_field(bytes_raw([prompt]))
                + _raw_field(asked.to_bytes(4, "little")) + stream_true), asked

    return build


# -- answers ------------------------------------------------------------------------


def _parse_http_infer(scenario: KServeScenario) -> Callable[[bytes], ParsedResponse]:
    wanted = set(scenario.outputs)

    def parse(raw: bytes) -> ParsedResponse:
        doc = answer_json(raw)
        outputs = doc.get("outputs") if isinstance(doc, dict) else None
        if not isinstance(outputs, list) or not outputs:
            raise ProtocolError(f"no `outputs` in the infer response: {raw[:120]!r}")
        names = {o.get("name") for o in outputs if isinstance(o, dict)}
        if missing := wanted - names:
            raise ProtocolError(f"outputs {sorted(missing)} asked for, not in the response")
        return ParsedResponse(doc=doc)

    return parse


def _parse_generate(raw: bytes) -> ParsedResponse:
    doc = answer_json(raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("text_output"), str):
        raise ProtocolError(f"no `text_output` in the generate response: {raw[:120]!r}")
    return ParsedResponse(text=doc["text_output"], doc=doc)


def _parse_grpc_infer(scenario: KServeScenario) -> Callable[[bytes], ParsedResponse]:
    pb, wanted = service_pb2(), set(scenario.outputs)

    def parse(raw: bytes) -> ParsedResponse:
        try:
            resp = pb.ModelInferResponse.FromString(raw)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError, by any name
            raise ProtocolError(f"not a ModelInferResponse: {raw[:80]!r}") from None
        if not resp.outputs:
            raise ProtocolError("the ModelInferResponse holds no outputs")
        if missing := wanted - {o.name for o in resp.outputs}:
            raise ProtocolError(f"outputs {sorted(missing)} asked for, not in the response")
        return ParsedResponse()

    return parse


class _Tokens:
    """What both streamed forms share: token events, text, completeness."""

    def __init__(self, keep: bool) -> None:
        self.keep, self.events = keep, 0
        self.pieces: list[str] = []
        self.final = False

    @property
    def answers(self) -> int:
        return self.events

    @property
    def calling(self) -> bool:
        return False

    @property
    def ended(self) -> bool:
        return self.final

    def _piece(self, text: str) -> int:
        if not text:
            return 0
        self.events += 1
        if self.keep:
            self.pieces.append(text)
        return 1

    def finish(self) -> ParsedResponse:
        if not self.events:
            raise IncompleteAnswer("the stream ended with no token")
        return ParsedResponse(output_tokens=self.events, token_source="chunks",
                              text="".join(self.pieces) if self.keep else None)


class SseStream(_Tokens):
    """Triton's generate_stream: SSE events of JSON, each with `text_output`."""

    def __init__(self, keep: bool) -> None:
        super().__init__(keep)
        self.sse = SSEDecoder()

    def feed(self, data: bytes) -> int:
        try:
            events = self.sse.feed(data)
        except SSEError as exc:
            raise ProtocolError(str(exc)) from None
        n = 0
        for raw in events:
            doc = answer_json(raw)
            if not isinstance(doc, dict):
                raise ProtocolError(f"event is not a JSON object: {raw[:80]!r}")
            if "error" in doc:
                raise ProtocolError(f"error in the stream: {str(doc['error'])[:200]}")
            text = doc.get("text_output")
            if not isinstance(text, str):
                raise ProtocolError(f"event without `text_output`: {raw[:80]!r}")
            n += self._piece(text)
        return n


class GrpcStream(_Tokens):
    """ModelStreamInfer: one ModelStreamInferResponse per message (the
    transport feeds whole messages); `text_output` a BYTES tensor."""

    def __init__(self, keep: bool) -> None:
        super().__init__(keep)
        self.pb = service_pb2()

    def feed(self, data: bytes) -> int:
        try:
            msg = self.pb.ModelStreamInferResponse.FromString(data)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError
            raise ProtocolError(f"not a ModelStreamInferResponse: {data[:80]!r}") from None
        if msg.error_message:
            raise ProtocolError(f"error in the stream: {msg.error_message[:200]}")
        resp = msg.infer_response
        param = resp.parameters.get(FINAL)
        if param is not None and param.bool_param:
            self.final = True
        for i, out in enumerate(resp.outputs):
            if out.name != "text_output":
                continue
            try:
                elements = (bytes_elements(resp.raw_output_contents[i])
                            if i < len(resp.raw_output_contents)
                            else list(out.contents.bytes_contents))
            except ValueError as exc:
                raise ProtocolError(f"text_output: {exc}") from None
            return self._piece(b"".join(elements).decode("utf-8", "replace"))
        if not self.final:
            raise ProtocolError("a streamed response without `text_output`")
        return 0
