"""Images and audio in a generation scenario's requests, as workload files write them.

    media:
      images:
        per_request: {dist: uniform, min: 1, max: 3}   # or a number (0 allowed)
        sizes: [512x512, {size: 1024x768, weight: 0.2}]
        formats: [png, jpeg]                            # drawn uniformly
        # folder: ./pictures   (files instead of synthetic images)
        # urls: [https://...]  (the server fetches them)
      audio:
        per_request: 1
        seconds: {min: 2s, max: 10s}

Synthetic media are made locally with Pillow (images) and the standard
library (WAV), seeded, and cached per run; the results keep only counts,
sizes, formats, bytes and hashes, never the media.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from loadkit.workload.dataset_columns import Column
from loadkit.workload.units import Seconds, Strict, ordered

_SIZE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")
MAX_SIDE = 8192


class ImageSize(Strict):
    size: str  # WIDTHxHEIGHT
    weight: float = Field(default=1.0, gt=0)

    @field_validator("size")
    @classmethod
    def _size(cls, v: str) -> str:
        m = _SIZE.match(v)
        if not m or not all(0 < int(x) <= MAX_SIDE for x in m.groups()):
            raise ValueError(f"an image size is WIDTHxHEIGHT, each 1..{MAX_SIDE}: not {v!r}")
        return f"{int(m[1])}x{int(m[2])}"

    @property
    def pixels(self) -> tuple[int, int]:
        w, h = self.size.split("x")
        return int(w), int(h)


class Count(Strict):
    """A number per request, uniform between `min` and `max` inclusive."""

    min: int = Field(ge=0, le=64)
    max: int = Field(ge=0, le=64)

    @model_validator(mode="after")
    def _order(self) -> Count:
        return ordered(self)


PerRequest = Annotated[int, Field(ge=0, le=64)] | Count


class Images(Strict):
    per_request: PerRequest = 1
    sizes: list[ImageSize | str] = ["512x512"]
    formats: list[Literal["png", "jpeg", "webp"]] = ["png"]
    folder: Path | None = None  # image files instead of synthetic ones
    urls: list[str] = []  # URLs the server fetches, instead of bytes sent
    dataset: Column | None = None  # a JSONL dataset's image column instead
    variants: int = Field(default=8, ge=1, le=1024)  # distinct synthetic images per size

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: list[ImageSize | str]) -> list[ImageSize | str]:
        if not v:
            raise ValueError("give at least one size")
        return [ImageSize(size=s) if isinstance(s, str) else s for s in v]

    @model_validator(mode="after")
    def _one_source(self) -> Images:
        if sum((self.folder is not None, bool(self.urls), self.dataset is not None)) > 1:
            raise ValueError("give one of `folder`, `urls` and `dataset`")
        if any(not u.startswith(("http://", "https://")) for u in self.urls):
            raise ValueError("`urls` are http(s) URLs the server fetches")
        if not self.formats:
            raise ValueError("give at least one format")
        return self

    def size_list(self) -> list[ImageSize]:
        return [s if isinstance(s, ImageSize) else ImageSize(size=s) for s in self.sizes]


class Span(Strict):
    min: Seconds = Field(gt=0, le=600)
    max: Seconds = Field(gt=0, le=600)

    @model_validator(mode="after")
    def _order(self) -> Span:
        return ordered(self)


class Audio(Strict):
    per_request: PerRequest = 1
    seconds: Annotated[Seconds, Field(gt=0, le=600)] | Span = 5.0  # or {min, max}: uniform
    rate: int = Field(default=16_000, ge=8_000, le=48_000)  # samples per second (mono PCM16)
    # `clips` lengths made before the run across `seconds`, each request's the
    # nearest to its draw; mp3 is encoded with lameenc (`pip install 'loadkit[media]'`).
    format: Literal["wav", "mp3"] = "wav"
    clips: int = Field(default=8, ge=1, le=256)
    dataset: Column | None = None  # a JSONL dataset's audio column instead


class Media(Strict):
    images: Images | None = None
    audio: Audio | None = None

    @model_validator(mode="after")
    def _some(self) -> Media:
        if self.images is None and self.audio is None:
            raise ValueError("give `images`, `audio` or both")
        return self
