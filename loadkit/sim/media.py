"""Images and audio in chat-like requests: what they cost and what the
server saw.

The dialects find the media parts of a request (:func:`chat_part` for
OpenAI chat, :func:`responses_part` for the Responses API,
:func:`anthropic_block` for Anthropic Messages) and keep them undecoded in
``GenRequest.media``; :func:`priced` decodes them once the request is
parsed, adds their tokens to its prompt tokens, counts them on
``/metrics`` and logs what the request carried.  The dialects stay free of
knobs, and every media rule lives here.

The declared cost, so that a test knows the truth (``config.py`` knobs)::

    image tokens = min(ceil(w / image_patch_px) * ceil(h / image_patch_px),
                       max_image_tokens)        (max_image_tokens 0: no cap)
    audio tokens = ceil(seconds * audio_tokens_per_s)

Media tokens are prompt tokens: they cost ``prefill_ms_per_token`` each,
reserve KV-cache and appear in ``usage.prompt_tokens``; the prefix cache
never covers them (only the text is looked up).  Width and height come from
the image's header (Pillow; any format it reads: PNG, JPEG, WebP, GIF...);
a WAV's duration from its frames (the stdlib ``wave``: PCM only); an MP3's
is estimated from its size at ``mp3_kbps`` (0 refuses MP3).  An http(s)
image URL is never fetched: it counts as a square of ``url_image_px`` a side
(0 refuses it with 400).  Bad base64, bytes that are not an image or a WAV,
an unknown audio format: 400 in the dialect's error shape.

The log, for tests: ``app[SIMULATOR_KEY].context.media``, a ``deque`` of the
last :data:`LOG_SIZE` :class:`MediaRecord` (one per parsed request that
carried media, in arrival order, before admission: a request later turned
away by a fault is logged too).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import math
import wave
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .dialect import RequestError

if TYPE_CHECKING:
    from .context import SimContext
    from .dialect import GenRequest

LOG_SIZE = 10_000
IMAGE, AUDIO = "image", "audio"
_AUDIO_TYPES = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav",
                "audio/vnd.wave": "wav", "audio/mpeg": "mp3", "audio/mp3": "mp3"}
_ANTHROPIC_TYPES = {"image/jpeg": "jpeg", "image/png": "png", "image/gif": "gif",
                    "image/webp": "webp"}


@dataclass(frozen=True, slots=True)
class MediaPart:
    """One media part as a dialect found it, not yet decoded."""

    kind: str  # IMAGE or AUDIO
    data: str  # base64 payload (no data: prefix), or an http(s) URL
    format: str = ""  # audio: wav or mp3; image: a declared format that must match, or ""
    url: bool = False  # `data` is a URL (images only)
    param: str = "messages"  # where it was, for the error


@dataclass(frozen=True, slots=True)
class ImageSeen:
    width: int
    height: int
    format: str  # png, jpeg, webp... (Pillow's name, lower case); "url" for a URL
    bytes: int  # decoded size (0 for a URL)
    tokens: int


@dataclass(frozen=True, slots=True)
class AudioSeen:
    seconds: float
    format: str  # wav or mp3
    bytes: int
    tokens: int


@dataclass(frozen=True, slots=True)
class MediaRecord:
    """What one request carried (loop-clock arrival; see the module's docstring)."""

    arrival: float
    dialect: str
    images: tuple[ImageSeen, ...]
    audio: tuple[AudioSeen, ...]
    media_tokens: int  # images' and audio's tokens
    prompt_tokens: int  # the whole prompt: text + media (+ earlier context)


# -- finding parts (the dialects call these) ---------------------------------------------


def chat_part(part: Mapping[str, Any]) -> MediaPart | None:
    """An OpenAI chat content part: ``image_url``, ``input_audio`` (and vLLM's
    ``audio_url``); None for any other part."""
    kind = part.get("type")
    if kind == "image_url":
        inner = part.get("image_url")
        url = inner.get("url") if isinstance(inner, dict) else inner
        return _image_url(url, "messages")
    if kind == "input_audio":
        return _input_audio(part.get("input_audio"), "messages")
    if kind == "audio_url":
        inner = part.get("audio_url")
        url = inner.get("url") if isinstance(inner, dict) else inner
        return _audio_url(url, "messages")
    return None


def responses_part(part: Mapping[str, Any]) -> MediaPart | None:
    """A Responses content part: ``input_image`` (``image_url`` a data URL or
    an http(s) one; ``file_id`` refused) or ``input_audio`` (as chat's)."""
    kind = part.get("type")
    if kind == "input_image":
        if part.get("image_url") is None and part.get("file_id") is not None:
            raise RequestError("input_image: file_id is not supported here; send "
                               "image_url", "input")
        return _image_url(part.get("image_url"), "input")
    if kind == "input_audio":
        return _input_audio(part.get("input_audio"), "input")
    return None


def anthropic_block(block: Mapping[str, Any]) -> MediaPart | None:
    """An Anthropic ``image`` block (source base64 with a media_type the
    image must match, or url); None for any other block."""
    if block.get("type") != "image":
        return None
    source = block.get("source")
    if not isinstance(source, dict):
        raise RequestError("messages: an image block needs a source object", "messages")
    if source.get("type") == "url":
        return _image_url(source.get("url"), "messages", data_url=False)
    if source.get("type") != "base64":
        raise RequestError("messages: image source.type must be 'base64' or 'url'",
                           "messages")
    declared = _ANTHROPIC_TYPES.get(str(source.get("media_type")))
    if declared is None:
        raise RequestError("messages: image source.media_type must be one of "
                           + ", ".join(_ANTHROPIC_TYPES), "messages")
    data = source.get("data")
    if not isinstance(data, str) or not data:
        raise RequestError("messages: image source.data must be base64 text", "messages")
    return MediaPart(IMAGE, data, declared, param="messages")


def _image_url(url: Any, param: str, data_url: bool = True) -> MediaPart:
    if not isinstance(url, str) or not url:
        raise RequestError("an image part needs a url (a data: URL or an http(s) URL)",
                           param)
    if url.startswith(("http://", "https://")):
        return MediaPart(IMAGE, url, url=True, param=param)
    if data_url and url.startswith("data:"):
        return MediaPart(IMAGE, _data_payload(url, param), param=param)
    raise RequestError("an image url must be a data: URL (base64) or an http(s) URL", param)


def _input_audio(inner: Any, param: str) -> MediaPart:
    if not isinstance(inner, dict):
        raise RequestError("input_audio must be an object with data and format", param)
    data, fmt = inner.get("data"), inner.get("format")
    if not isinstance(data, str) or not data:
        raise RequestError("input_audio.data must be base64 text", param)
    if fmt not in ("wav", "mp3"):
        raise RequestError("input_audio.format must be 'wav' or 'mp3'", param)
    return MediaPart(AUDIO, data, fmt, param=param)


def _audio_url(url: Any, param: str) -> MediaPart:
    if not isinstance(url, str) or not url.startswith("data:"):
        raise RequestError("audio_url must be a data: URL (audio is never fetched here)",
                           param)
    mime = url[5:].split(";", 1)[0].split(",", 1)[0].lower()
    fmt = _AUDIO_TYPES.get(mime)
    if fmt is None:
        raise RequestError(f"audio_url: unsupported audio type {mime!r} (wav or mp3)",
                           param)
    return MediaPart(AUDIO, _data_payload(url, param), fmt, param=param)


def _data_payload(url: str, param: str) -> str:
    """The base64 payload of ``data:<type>;base64,<payload>``."""
    head, sep, payload = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise RequestError("a data: URL must be base64 (data:<type>;base64,<data>)", param)
    return payload


# -- pricing -----------------------------------------------------------------------------


def priced(ctx: SimContext, req: GenRequest, dialect: str, arrival: float) -> GenRequest:
    """The request with its media decoded and their tokens in its prompt;
    counted and logged.  Raises :class:`RequestError` on bad media."""
    cfg = ctx.config
    images: list[ImageSeen] = []
    audio: list[AudioSeen] = []
    for part in req.media:
        if part.kind == IMAGE:
            images.append(image_seen(part, cfg.image_patch_px, cfg.max_image_tokens,
                                     cfg.url_image_px))
        else:
            audio.append(audio_seen(part, cfg.audio_tokens_per_s, cfg.mp3_kbps))
    tokens = sum(i.tokens for i in images) + sum(a.tokens for a in audio)
    req = dataclasses.replace(req, prompt_tokens=req.prompt_tokens + tokens,
                              media_tokens=tokens)
    m = ctx.metrics
    m.images += len(images)
    m.image_tokens += sum(i.tokens for i in images)
    m.audio_seconds += sum(a.seconds for a in audio)
    m.audio_tokens += sum(a.tokens for a in audio)
    ctx.media.append(MediaRecord(arrival, dialect, tuple(images), tuple(audio), tokens,
                                 req.prompt_tokens))
    return req


def warm() -> None:
    """Load Pillow and its format plugins (~70 ms) when the server starts, not
    inside the first image request's time, nor at every import of the
    simulator's modules."""
    from PIL import Image

    Image.init()


def image_tokens(width: int, height: int, patch_px: int, cap: int) -> int:
    """The declared rule: one token per ``patch_px`` square, capped (0: no cap)."""
    tokens = math.ceil(width / patch_px) * math.ceil(height / patch_px)
    return min(tokens, cap) if cap else tokens


def audio_tokens(seconds: float, per_s: float) -> int:
    """ceil(seconds x per_s), read to a millionth of a token so that 0.1 s
    at 30 tokens/s is 3, not 4 (a float's last bit)."""
    return math.ceil(round(seconds * per_s, 6))


def image_seen(part: MediaPart, patch_px: int, cap: int, url_px: int) -> ImageSeen:
    if part.url:
        if not url_px:
            raise RequestError("image URLs are not fetched by this server; send the "
                               "image inline as a base64 data: URL", part.param)
        return ImageSeen(url_px, url_px, "url", 0, image_tokens(url_px, url_px, patch_px, cap))
    from PIL import Image  # loaded by warm(): a dictionary look-up here

    raw = _decoded(part)
    try:
        with Image.open(io.BytesIO(raw)) as img:  # reads the header only
            (width, height), fmt = img.size, (img.format or "").lower()
    except Exception:  # noqa: BLE001 - any decoder failure is the client's bad image
        raise RequestError("the image could not be decoded (not an image, or a format "
                           "this server does not read)", part.param) from None
    if part.format and part.format != fmt and {part.format, fmt} != {"jpeg", "mpo"}:
        raise RequestError(f"the image is {fmt or 'unknown'}, not the declared "
                           f"image/{part.format}", part.param)
    return ImageSeen(width, height, fmt, len(raw),
                     image_tokens(width, height, patch_px, cap))


def audio_seen(part: MediaPart, per_s: float, mp3_kbps: float) -> AudioSeen:
    raw = _decoded(part)
    if part.format == "mp3":
        if not mp3_kbps:
            raise RequestError("mp3 audio is not accepted by this server; send wav",
                               part.param)
        if not (raw[:3] == b"ID3" or (len(raw) > 1 and raw[0] == 0xFF and raw[1] & 0xE0 == 0xE0)):
            raise RequestError("the audio is not mp3 (no ID3 tag or MPEG frame sync)",
                               part.param)
        seconds = len(raw) * 8 / (mp3_kbps * 1000)
    else:
        try:
            with wave.open(io.BytesIO(raw)) as w:
                width = w.getsampwidth() * w.getnchannels()
                frames = len(w.readframes(w.getnframes())) // width
                seconds = frames / w.getframerate()
        except (wave.Error, EOFError, ValueError, ZeroDivisionError):
            raise RequestError("the audio could not be decoded as WAV (PCM)",
                               part.param) from None
    return AudioSeen(seconds, part.format, len(raw), audio_tokens(seconds, per_s))


def _decoded(part: MediaPart) -> bytes:
    try:
        raw = base64.b64decode(part.data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"the {part.kind} data is not valid base64", part.param) from None
    if not raw:
        raise RequestError(f"the {part.kind} data is empty", part.param)
    return raw
