"""The `kserve` scenario: the KServe v2 / Open Inference Protocol, which
Triton, KServe, Seldon MLServer and NVIDIA NIM serve, over HTTP or gRPC.

Two modes, because the protocol carries two kinds of traffic:

- `infer`: tensors in, tensors out (`POST /v2/models/{m}/infer`, gRPC
  `ModelInfer`); each tensor is declared here (name, datatype, shape, and
  where its data comes from), checked against the model's metadata at first
  contact;
- `generate`: an LLM behind Triton (`text_input` / `max_tokens` in,
  `text_output` out): the HTTP `generate` / `generate_stream` extension, or
  gRPC `ModelStreamInfer` for decoupled models, where every streamed message
  is a token event, timed as an SSE event is.

Kept apart from scenarios.py so that the request kinds of one protocol live
in one file; scenarios.py adds it to the union.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from loadkit.workload.scenarios import Abandon, Tokens, _Scenario
from loadkit.workload.units import Strict, ordered

DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
             "INT64", "FP16", "FP32", "FP64", "BYTES")
MAX_ELEMENTS = 64 * 2**20  # a tensor this large is a typo, not a load test


class RandomData(Strict):
    """Values drawn per element, seeded: `uniform` in [min, max), or `normal`
    (mean, std), rounded for integer types, clipped to the type's range."""

    dist: Literal["uniform", "normal"] = "uniform"
    min: float = 0.0
    max: float = 1.0
    mean: float = 0.0
    std: float = 1.0
    variants: int = Field(default=8, ge=1, le=1024)  # distinct bodies, sent in turn

    @model_validator(mode="after")
    def _order(self) -> RandomData:
        return ordered(self) if self.dist == "uniform" else self


class PromptData(Strict):
    """BYTES elements: generated text of the scenario's `prompt_tokens` words
    (a new text per request, as the generation scenarios build prompts)."""

    text: Literal["prompt"]


class FileData(Strict):
    """Values from a file: `.npy` (numpy), or `.json` (a flat or nested list),
    relative to the working directory; its element count must fit the shape."""

    file: str


class ValueData(Strict):
    """The same literal values in every request (flat; repeated to fill)."""

    values: list[float | int | bool | str] = Field(min_length=1)


TensorData = RandomData | PromptData | FileData | ValueData


class Tensor(Strict):
    name: str = Field(min_length=1)
    datatype: Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                      "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]
    shape: list[Annotated[int, Field(ge=1, le=MAX_ELEMENTS)]] = Field(min_length=1)
    data: TensorData = RandomData()

    @model_validator(mode="after")
    def _fits(self) -> Tensor:
        n = 1
        for d in self.shape:
            n *= d
        if n > MAX_ELEMENTS:
            raise ValueError(f"shape {self.shape} holds {n:,} elements; at most {MAX_ELEMENTS:,}")
        if isinstance(self.data, PromptData) and self.datatype != "BYTES":
            raise ValueError("`text: prompt` fills BYTES tensors only")
        return self

    @property
    def elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


class KServeScenario(_Scenario):
    """A KServe v2 / Open Inference Protocol request (Triton, KServe, MLServer, NIM)."""

    kind: Literal["kserve"]
    transport: Literal["http", "grpc"] = "http"
    mode: Literal["infer", "generate"] = "infer"
    # None: the one model the target's repository index lists (Triton's).
    model: str | None = None
    version: str = ""  # the model version; empty: the server's choice
    tensors: list[Tensor] = []  # infer: the inputs
    outputs: list[str] = []  # infer: the outputs asked for; empty: all of them
    stream: bool = True  # generate: generate_stream / ModelStreamInfer
    prompt_tokens: Tokens = 128  # generate: words of `text_input`; BYTES `text: prompt`
    max_tokens: Tokens = 64  # generate
    # gRPC: host:port; None: the target's host on Triton's port 8001, or the
    # embedded simulator's gRPC port.
    address: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$")
    abandon: Abandon | None = None  # clients that leave: a stream cancelled, a connection closed

    @model_validator(mode="after")
    def _consistent(self) -> KServeScenario:
        if self.mode == "infer" and not self.tensors:
            raise ValueError("mode infer sends tensors: declare them in `tensors`")
        if self.mode == "generate" and self.tensors:
            raise ValueError("mode generate sends text_input and max_tokens: drop `tensors`")
        names = [t.name for t in self.tensors]
        if len(set(names)) != len(names):
            raise ValueError("tensor names must be unique")
        if self.mode == "generate" and self.transport == "grpc" and not self.stream:
            raise ValueError("generate over gRPC is ModelStreamInfer: stream: true "
                             "(or transport: http for the non-streamed /generate)")
        if self.checks.json_path and (self.transport == "grpc" or self.stream
                                      and self.mode == "generate"):
            raise ValueError("checks.json_path reads a JSON answer: HTTP, not streamed")
        if self.abandon is not None and self.abandon.on_tool_call:
            raise ValueError("abandon.on_tool_call: KServe answers call no tools")
        if self.abandon is not None and self.abandon.read_tokens is not None and not (
                self.mode == "generate" and self.stream):
            raise ValueError("abandon.read_tokens reads a stream: mode generate, stream: true")
        if self.transport == "http" and self.address is not None:
            raise ValueError("`address` is the gRPC endpoint's: transport: grpc")
        return self

    @property
    def request_path(self) -> str:
        base = f"/v2/models/{self.model}" + (f"/versions/{self.version}" if self.version
                                              else "")
        if self.transport == "grpc":
            return "ModelStreamInfer" if self.mode == "generate" else "ModelInfer"
        if self.mode == "generate":
            return base + ("/generate_stream" if self.stream else "/generate")
        return base + "/infer"
