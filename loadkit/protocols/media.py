"""Images and audio in generation requests: made before the run, spliced per request.

Synthetic images are seeded smooth colour fields (a small random grid scaled
up, so their encoded size is that of a photograph's, not of noise), made
with Pillow in each declared size and format, `variants` of each; a folder's
files or a dataset's column are read once; URLs are sent for the server to
fetch. Audio is seeded mono 16-bit noise, `clips` lengths spread over the
declared seconds (a request takes the nearest to its draw) as WAV or MP3,
or a dataset's clips. Every part is serialised once, before the clock starts
(encoding a megapixel PNG takes tens of milliseconds, which the load path
must never pay); a request joins the parts it drew. The ledger counts what was sent, never the bytes
themselves: results hold counts, sizes, formats and hashes only.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import wave
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from loadkit.engine.adapter import PreparedRequest
from loadkit.errors import InputError
from loadkit.workload.dataset_columns import column_values
from loadkit.workload.media_spec import Audio, Count, Images, Media, PerRequest

IMAGE_FILES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
MAX_FILES = 256
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}


@dataclass(frozen=True, slots=True)
class Item:
    """One image, serialised as its dialect's content part."""

    part: bytes  # JSON
    size: str | None  # WxH (None: a URL the server fetches)
    format: str
    nbytes: int
    digest: str  # sha256 of the media, 16 hex digits


@dataclass
class Ledger:
    """What the requests carried, counted as they were built (probe and
    warm-up included): no media, only their description."""

    requests: int = 0
    images: int = 0
    image_bytes: int = 0
    image_formats: Counter = field(default_factory=Counter)
    image_sizes: Counter = field(default_factory=Counter)
    image_urls: int = 0
    audio: int = 0
    audio_seconds: float = 0.0
    audio_bytes: int = 0
    digests: set[str] = field(default_factory=set)

    def add(self, other: Ledger) -> None:
        """Count `other`'s requests as these requests too (a session's turns
        re-send its first question's media)."""
        for f in fields(self):  # every field: a count, a Counter or the digests' set
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            setattr(self, f.name, mine | theirs if isinstance(mine, set) else mine + theirs)

    def section(self) -> dict[str, Any]:
        return {"requests": self.requests, "images": self.images,
                "image_bytes": self.image_bytes, "image_urls": self.image_urls,
                "image_formats": dict(sorted(self.image_formats.items())),
                "image_sizes": dict(sorted(self.image_sizes.items())),
                "digests": sorted(self.digests), "audio": self.audio,
                "audio_seconds": round(self.audio_seconds, 3), "audio_bytes": self.audio_bytes}


def add_ledgers(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two ledgers' sections added up: counts, the counts in their dicts, and
    the union of the images' hashes (two workers draw from the same images)."""
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict):
            out[key] = dict(Counter(out.get(key, {})) + Counter(value))
        elif isinstance(value, list):
            out[key] = sorted(set(out.get(key, [])) | set(value))
        else:
            out[key] = out.get(key, 0) + value
    return out


def media_sent(ledger: dict[str, Any]) -> dict[str, Any]:
    """A ledger as run.json keeps it: the distinct images counted, not listed."""
    out = {k: v for k, v in ledger.items() if k != "digests"}
    return {**out, "distinct_images": len(ledger.get("digests", ()))}


def plan_ledgers(requests: list[list[PreparedRequest]], names: list[str]
                 ) -> dict[str, dict[str, Any]]:
    """Each scenario's media ledger, tenants added up (a run's, or a shard's)."""
    out: dict[str, dict[str, Any]] = {}
    for row in requests:
        for name, req in zip(names, row, strict=False):
            if req.describe_media is not None:
                out[name] = add_ledgers(out.get(name, {}), req.describe_media())
    return out


class MediaParts:
    """Draws a request's media parts (a JSON fragment: `, part, part`)."""

    def __init__(self, spec: Media, kind: str, seed: str) -> None:
        if kind == "openai-completions":
            raise InputError("media need a chat dialect, not openai-completions")
        if kind == "anthropic-messages" and spec.audio is not None:
            raise InputError("Anthropic Messages takes no audio: drop `media.audio`")
        self.kind = kind
        self.ledger = Ledger()
        self.last = Ledger()
        self._rng = random.Random(f"{seed}:media")
        self._images = _images(spec.images, kind, seed) if spec.images else []
        self._image_count = spec.images.per_request if spec.images else 0
        self._weights = ([s.weight for s in spec.images.size_list()] if spec.images else [])
        self._audio = spec.audio
        noise = _noise(spec.audio, seed) if spec.audio and not spec.audio.dataset else b""
        self._clips = _clips(spec.audio, kind, noise) if spec.audio else []

    def __call__(self) -> bytes:
        """One request's parts, drawn; `last` describes them, and the run's
        `ledger` counts them."""
        rng, ledger, out = self._rng, Ledger(), []
        ledger.requests += 1
        for _ in range(_draw(self._image_count, rng)):
            item = self._pick(rng)
            out.append(item.part)
            ledger.images += 1
            ledger.image_formats[item.format] += 1
            if item.size is None:
                ledger.image_urls += 1
            else:
                ledger.image_sizes[item.size] += 1
                ledger.image_bytes += item.nbytes
                ledger.digests.add(item.digest)
        if (a := self._audio) is not None:
            for _ in range(_draw(a.per_request, rng)):
                seconds = a.seconds if isinstance(a.seconds, float) else \
                    rng.uniform(a.seconds.min, a.seconds.max)
                # Made before the run: the dataset's clips, or the nearest length.
                clip = self._clips[rng.randrange(len(self._clips))] if a.dataset else \
                    min(self._clips, key=lambda c: abs(c.seconds - seconds))
                out.append(clip.part)
                ledger.audio += 1
                ledger.audio_seconds += clip.seconds
                ledger.audio_bytes += clip.nbytes
        self.last = ledger
        self.ledger.add(ledger)
        return b"".join(b", " + p for p in out)

    def _pick(self, rng: random.Random) -> Item:
        """An image: a size by weight (synthetic), then one of its items."""
        groups = self._images
        group = rng.choices(groups, self._weights)[0] if len(groups) > 1 else groups[0]
        return group[rng.randrange(len(group))]


def text_part(kind: str, text: str) -> dict[str, str]:
    return {"type": "input_text" if kind == "openai-responses" else "text", "text": text}


def _draw(n: PerRequest, rng: random.Random) -> int:
    return rng.randint(n.min, n.max) if isinstance(n, Count) else n


def _images(spec: Images, kind: str, seed: str) -> list[list[Item]]:
    """Items grouped by size (synthetic: one group per declared size, so
    `sizes` weights pick a group), or one group (a folder, URLs)."""
    if spec.urls:
        return [[Item(json.dumps(_image_part(kind, url=u)).encode(), None, "url", 0,
                      hashlib.sha256(u.encode()).hexdigest()[:16]) for u in spec.urls]]
    if spec.folder is not None:
        return [[_item(kind, data) for data in _folder(spec.folder)]]
    if spec.dataset is not None:
        return [[_dataset_item(kind, v, spec.dataset.path) for v in column_values(spec.dataset)]]
    return [[_item(kind, _synthetic(size.pixels, fmt, f"{seed}:{size.size}:{fmt}:{v}"))
             for fmt in spec.formats for v in range(spec.variants)]
            for size in spec.size_list()]


def _item(kind: str, data: bytes) -> Item:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        fmt, (w, h) = (im.format or "").lower(), im.size
    b64 = base64.b64encode(data).decode()
    return Item(json.dumps(_image_part(kind, mime=_MIME.get(fmt, f"image/{fmt}"),
                                       b64=b64)).encode(),
                f"{w}x{h}", fmt, len(data), hashlib.sha256(data).hexdigest()[:16])


def _dataset_item(kind: str, value: Any, dataset: Path) -> Item:
    data = _media_bytes(value, dataset)
    if isinstance(data, str):  # a URL: the server fetches it
        return Item(json.dumps(_image_part(kind, url=data)).encode(), None, "url", 0,
                    hashlib.sha256(data.encode()).hexdigest()[:16])
    try:
        return _item(kind, data)
    except OSError as exc:  # Pillow: not an image
        raise InputError(f"media dataset {dataset}: a value that is not an image ({exc})") \
            from None


def _image_part(kind: str, mime: str = "", b64: str = "", url: str = "") -> dict[str, Any]:
    ref = url or f"data:{mime};base64,{b64}"
    if kind == "anthropic-messages":
        return {"type": "image", "source": {"type": "url", "url": url} if url else
                {"type": "base64", "media_type": mime, "data": b64}}
    if kind == "openai-responses":
        return {"type": "input_image", "image_url": ref}
    return {"type": "image_url", "image_url": {"url": ref}}


def _audio_part(kind: str, data: bytes, fmt: str) -> dict[str, Any]:
    return {"type": "input_audio",
            "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}}


@dataclass(frozen=True, slots=True)
class Clip:
    part: bytes  # JSON
    seconds: float  # 0 where not known (an MP3 from a dataset)
    nbytes: int


def _clips(spec: Audio, kind: str, noise: bytes) -> list[Clip]:
    """Audio serialised before the run: a dataset's clips, or `clips` clips
    (WAV or MP3) of lengths spread evenly over `seconds` (one for one length)."""
    if spec.dataset is not None:
        return [Clip(json.dumps(_audio_part(kind, data, fmt)).encode(), secs, len(data))
                for data, fmt, secs in (_audio_value(v, spec.dataset.path)
                                        for v in column_values(spec.dataset))]
    lo, hi = (spec.seconds, spec.seconds) if isinstance(spec.seconds, float) \
        else (spec.seconds.min, spec.seconds.max)
    n = 1 if lo == hi else spec.clips
    out = []
    for i in range(n):
        seconds = lo + (hi - lo) * i / max(n - 1, 1)
        samples = noise[:2 * round(seconds * spec.rate)]
        data = _mp3(samples, spec.rate) if spec.format == "mp3" else \
            _wav(samples, spec.rate, len(samples) / 2 / spec.rate)
        out.append(Clip(json.dumps(_audio_part(kind, data, spec.format)).encode(),
                        len(samples) / 2 / spec.rate, len(data)))
    return out


def _mp3(pcm16: bytes, rate: int) -> bytes:
    try:
        import lameenc
    except ImportError:
        raise InputError("media.audio.format mp3 is encoded with lameenc: "
                         "pip install 'loadkit[media]'") from None
    enc = lameenc.Encoder()
    enc.set_bit_rate(128)
    enc.set_in_sample_rate(rate)
    enc.set_channels(1)
    enc.set_quality(7)  # fast: the sound is noise
    return bytes(enc.encode(pcm16) + enc.flush())


def _media_bytes(value: Any, dataset: Path) -> bytes | str:
    """A column value's bytes, or the URL it names (images only)."""
    if isinstance(value, dict):  # a Hugging Face Image/Audio value
        if isinstance(value.get("bytes"), bytes):  # from Arrow or Parquet
            return value["bytes"]
        if value.get("bytes"):  # from JSON: base64
            value = "data:;base64," + value["bytes"]
        elif value.get("path"):
            value = value["path"]
    if not isinstance(value, str):
        raise InputError(f"media dataset {dataset}: a value is neither a path, a data URL, "
                         f"a URL nor a {{bytes}} or {{path}} object: {str(value)[:60]}")
    if value.startswith(("http://", "https://")):
        return value
    if value.startswith("data:"):
        try:
            return base64.b64decode(value.split(",", 1)[1], validate=True)
        except (ValueError, IndexError):
            raise InputError(f"media dataset {dataset}: a data URL that is not base64") \
                from None
    path = dataset.parent / value
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"media dataset {dataset}: {path}: {exc.strerror or exc}") from None


def _audio_value(value: Any, dataset: Path) -> tuple[bytes, str, float]:
    """(bytes, wav or mp3, seconds: 0 for MP3) of an audio column's value;
    a decoded Hugging Face Audio value (`array`, `sampling_rate`) becomes WAV."""
    if isinstance(value, dict) and "array" in value and "sampling_rate" in value:
        rate = int(value["sampling_rate"])
        pcm = b"".join(max(-32768, min(32767, round(float(x) * 32767))).to_bytes(
            2, "little", signed=True) for x in value["array"])
        return _wav(pcm, rate, len(pcm) / 2 / rate), "wav", len(pcm) / 2 / rate
    data = _media_bytes(value, dataset)
    if isinstance(data, str):
        raise InputError(f"media dataset {dataset}: audio by URL is not sent; give files")
    if data[:4] == b"RIFF":
        try:
            with wave.open(io.BytesIO(data)) as w:
                return data, "wav", w.getnframes() / w.getframerate()
        except (wave.Error, EOFError) as exc:
            raise InputError(f"media dataset {dataset}: a WAV it cannot read ({exc})") \
                from None
    if data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return data, "mp3", 0.0
    raise InputError(f"media dataset {dataset}: audio that is neither WAV nor MP3")


def _synthetic(pixels: tuple[int, int], fmt: str, seed: str) -> bytes:
    """A seeded smooth colour field: an 8x8 grid of random colours, scaled up."""
    from PIL import Image

    rng = random.Random(seed)
    small = Image.frombytes("RGB", (8, 8), bytes(rng.randrange(256) for _ in range(192)))
    big = small.resize(pixels, Image.Resampling.BICUBIC)
    out = io.BytesIO()
    # PNG at zlib level 1: three times faster to make, a little larger.
    big.save(out, format=fmt.upper(),
             **({"quality": 85} if fmt in ("jpeg", "webp") else {"compress_level": 1}))
    return out.getvalue()


def _folder(folder: Path) -> list[bytes]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_FILES) \
        if folder.is_dir() else []
    if not files:
        raise InputError(f"media.images.folder {folder}: no image files "
                         f"({', '.join(IMAGE_FILES)}) there")
    if len(files) > MAX_FILES:
        raise InputError(f"media.images.folder {folder}: {len(files)} images; at most "
                         f"{MAX_FILES} are read into memory before the run")
    from PIL import Image, UnidentifiedImageError

    out = []
    for p in files:
        data = p.read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.verify()
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"media.images.folder: {p} is not an image Pillow reads "
                             f"({exc})") from None
        out.append(data)
    return out


def _noise(spec: Audio, seed: str) -> bytes:
    """The longest clip's worth of seeded 16-bit noise."""
    longest = spec.seconds if isinstance(spec.seconds, float) else spec.seconds.max
    rng = random.Random(f"{seed}:audio")
    n = round(longest * spec.rate)
    return rng.randbytes(2 * n)


def _wav(noise: bytes, rate: int, seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(noise[:2 * round(seconds * rate)])
    return out.getvalue()
