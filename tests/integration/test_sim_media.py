"""Images and audio in the simulator's chat-like dialects, on a real loopback
socket: the declared token rules (an image's ceil(w/p) x ceil(h/p), capped;
audio's ceil(seconds x tokens/s)) in ``usage.prompt_tokens``, the server's
log of what each request carried and its counters, TTFT that grows with
image size at the prefill slope, and 400s for media a server cannot read."""

from __future__ import annotations

import base64
import io
import math
import statistics
import wave
from typing import Any

import httpx
import pytest
from PIL import Image

from loadkit.sim import SimConfig
from loadkit.sim.media import AudioSeen, ImageSeen
from support.sim import CHAT, Live, gauge, live_sim, run_async, timed_post

ANTHROPIC_VERSION = {"anthropic-version": "2023-06-01"}
MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def image(width: int, height: int, fmt: str = "PNG") -> str:
    """A base64 image of that size: a gradient, so that no format shrinks it to nothing."""
    img = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    out = io.BytesIO()
    img.save(out, fmt)
    return base64.b64encode(out.getvalue()).decode()


def data_url(width: int, height: int, fmt: str = "PNG") -> str:
    return f"data:{MIME[fmt]};base64,{image(width, height, fmt)}"


def wav(seconds: float, rate: int = 16000, channels: int = 1) -> str:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * channels * round(seconds * rate))
    return base64.b64encode(out.getvalue()).decode()


def chat_with(*parts: dict[str, Any], text: str = "describe this please",
              **extra: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": text}, *parts]
    return {"model": "x", "messages": [{"role": "user", "content": content}],
            "max_tokens": 2, **extra}


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def audio_part(data: str, fmt: str = "wav") -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


def tokens(width: int, height: int, patch: int = 28, cap: int = 16384) -> int:
    """The declared rule, written out here independently of the simulator."""
    return min(math.ceil(width / patch) * math.ceil(height / patch), cap)


SIZES = [(28, 28, "PNG"), (100, 60, "PNG"), (224, 224, "JPEG"), (640, 480, "WEBP"),
         (1000, 333, "JPEG"), (57, 1200, "WEBP")]


def test_image_tokens_follow_the_declared_rule_in_usage_and_the_log() -> None:
    """Each size and format: prompt tokens = 3 text words + the image's tokens;
    the log holds exactly what each request carried; /metrics counts them."""
    async def go() -> tuple[list[int], list[Any], dict[str, float]]:
        async with live_sim() as live:
            got = []
            for w, h, fmt in SIZES:
                _, status, _, doc = await timed_post(live, chat_with(image_part(data_url(w, h, fmt))))
                assert status == 200, doc
                got.append(doc["usage"]["prompt_tokens"])
            # Two images in one request, a cap, and an unfetched URL.
            two = chat_with(image_part(data_url(300, 300, "PNG")),
                            image_part(data_url(50, 50, "JPEG")))
            _, status, _, doc = await timed_post(live, two)
            got.append(doc["usage"]["prompt_tokens"])
            _, status, _, doc = await timed_post(live, chat_with(image_part("https://x.test/a.png")))
            got.append(doc["usage"]["prompt_tokens"])
            return got, list(live.sim.context.media), await live.metrics()

    got, log, m = run_async(go())
    want = [3 + tokens(w, h) for w, h, _ in SIZES]
    want += [3 + tokens(300, 300) + tokens(50, 50), 3 + tokens(512, 512)]
    assert got == want
    assert [(i.width, i.height, i.format) for r in log[:len(SIZES)] for i in r.images] == [
        (w, h, fmt.lower()) for w, h, fmt in SIZES]
    assert [len(r.images) for r in log] == [1] * len(SIZES) + [2, 1]
    assert [r.prompt_tokens for r in log] == want
    assert log[-1].images == (ImageSeen(512, 512, "url", 0, tokens(512, 512)),)
    assert all(i.bytes > 0 for r in log[:-1] for i in r.images)
    image_tokens = sum(w - 3 for w in want)
    assert gauge(m, "loadkit_sim_images_total") == len(SIZES) + 3
    assert gauge(m, "loadkit_sim_image_tokens_total") == image_tokens
    assert gauge(m, "vllm:prompt_tokens_total") == sum(want)


def test_patch_size_and_cap_are_knobs() -> None:
    async def go() -> list[int]:
        async with live_sim(image_patch_px=14, max_image_tokens=1000, url_image_px=100) as live:
            out = []
            for url in (data_url(140, 70), data_url(1400, 1400), "http://x.test/i.jpg"):
                _, status, _, doc = await timed_post(live, chat_with(image_part(url)))
                assert status == 200, doc
                out.append(doc["usage"]["prompt_tokens"] - 3)
            return out

    assert run_async(go()) == [10 * 5, 1000, tokens(100, 100, 14)]


def test_audio_tokens_come_from_the_wav_duration() -> None:
    """ceil(seconds x audio_tokens_per_s): 2.5 s at 25/s is 63 (62.5 up), stereo
    44.1 kHz alike; an MP3 is its size at mp3_kbps; 0.1 s at 30/s is 3, not 4."""
    mp3 = base64.b64encode(b"ID3" + bytes(16_000 - 3)).decode()  # 1.0 s at 128 kbit/s

    async def go(per_s: float, parts: list[dict[str, Any]]) -> tuple[list[int], list[Any],
                                                                     dict[str, float]]:
        async with live_sim(audio_tokens_per_s=per_s) as live:
            out = []
            for part in parts:
                _, status, _, doc = await timed_post(live, chat_with(part))
                assert status == 200, doc
                out.append(doc["usage"]["prompt_tokens"] - 3)
            return out, list(live.sim.context.media), await live.metrics()

    got, log, m = run_async(go(25, [audio_part(wav(2.5)), audio_part(wav(2.5, 44100, 2)),
                                    audio_part(mp3, "mp3")]))
    assert got == [63, 63, 25]
    assert [r.audio for r in log] == [
        (AudioSeen(2.5, "wav", len(base64.b64decode(wav(2.5))), 63),),
        (AudioSeen(2.5, "wav", len(base64.b64decode(wav(2.5, 44100, 2))), 63),),
        (AudioSeen(1.0, "mp3", 16_000, 25),)]
    assert gauge(m, "loadkit_sim_audio_seconds_total") == 6.0
    assert gauge(m, "loadkit_sim_audio_tokens_total") == 151
    got, _, _ = run_async(go(30, [audio_part(wav(0.1))]))
    assert got == [3]


def test_media_in_responses_and_messages() -> None:
    """Responses input_image/input_audio and Anthropic image blocks cost the same."""
    async def go() -> tuple[int, int, list[Any]]:
        async with live_sim() as live:
            body = {"model": "x", "max_output_tokens": 2, "input": [{"role": "user", "content": [
                {"type": "input_text", "text": "what is it"},
                {"type": "input_image", "image_url": data_url(300, 200, "WEBP")},
                audio_part(wav(1.0))]}]}
            _, status, _, resp = await timed_post(live, body, "/v1/responses")
            assert status == 200, resp
            msg = {"model": "x", "max_tokens": 2, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                             "data": image(300, 200, "JPEG")}},
                {"type": "text", "text": "what is it"}]}]}
            _, status, _, ant = await timed_post(live, msg, "/v1/messages", ANTHROPIC_VERSION)
            assert status == 200, ant
            return (resp["usage"]["input_tokens"], ant["usage"]["input_tokens"],
                    list(live.sim.context.media))

    responses, messages, log = run_async(go())
    assert responses == 3 + tokens(300, 200) + 25
    assert messages == 3 + tokens(300, 200)
    assert [r.dialect for r in log] == ["responses", "messages"]


def test_media_are_never_prefix_cached() -> None:
    """The same request twice with the prefix cache on: only text is cached."""
    async def go() -> list[dict[str, Any]]:
        async with live_sim(prefix_cache_blocks=64, block_tokens=4) as live:  # 4-word blocks
            body = chat_with(image_part(data_url(280, 280)), text=" ".join(["word"] * 40))
            out = []
            for _ in range(2):
                _, status, _, doc = await timed_post(live, body)
                assert status == 200, doc
                out.append(doc["usage"])
            return out

    first, second = run_async(go())
    assert first["prompt_tokens"] == second["prompt_tokens"] == 40 + 100
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    # All of the text's 10 blocks but its last token (vLLM always prefills one);
    # the image's 100 tokens are prefilled every time.
    assert second["prompt_tokens_details"]["cached_tokens"] == 39


def test_image_tokens_reserve_kv_cache() -> None:
    async def go() -> tuple[int, dict[str, Any]]:
        async with live_sim(kv_cache_tokens=500) as live:
            _, status, _, doc = await timed_post(live, chat_with(image_part(data_url(800, 800))))
            return status, doc

    status, doc = run_async(go())
    assert status == 400 and doc["error"]["code"] == "context_length_exceeded", doc


BAD = [
    ("bad base64", image_part("data:image/png;base64,@@@not-base64@@@"), "base64"),
    ("not an image", image_part("data:image/png;base64,"
                                + base64.b64encode(b"hello world").decode()), "decoded"),
    ("not base64 data url", image_part("data:image/png,rawbytes"), "base64"),
    ("ftp url", image_part("ftp://x.test/a.png"), "data: URL"),
    ("no url", {"type": "image_url", "image_url": {}}, "url"),
    ("wav garbage", audio_part(base64.b64encode(b"RIFFjunkjunkjunk").decode()), "WAV"),
    ("not mp3", audio_part(base64.b64encode(b"not an mp3 at all").decode(), "mp3"), "mp3"),
    ("flac", audio_part(wav(0.5), "flac"), "format"),
    ("empty", audio_part("", "wav"), "base64"),
]


@pytest.mark.parametrize("part,needle", [(p, n) for _, p, n in BAD], ids=[b[0] for b in BAD])
def test_malformed_media_is_a_400(part: dict[str, Any], needle: str) -> None:
    async def go() -> tuple[int, dict[str, Any], int]:
        async with live_sim() as live:
            _, status, _, doc = await timed_post(live, chat_with(part))
            return status, doc, len(live.sim.context.media)

    status, doc, logged = run_async(go())
    assert status == 400, doc
    assert doc["error"]["type"] == "invalid_request_error" and needle in doc["error"]["message"]
    assert logged == 0


def test_refusals_by_knob_and_in_each_dialects_shape() -> None:
    """url_image_px 0 refuses URLs, mp3_kbps 0 refuses MP3; Anthropic's image
    must be its declared media type, in Anthropic's error shape."""
    async def go() -> list[tuple[int, dict[str, Any]]]:
        async with live_sim(url_image_px=0, mp3_kbps=0) as live:
            out = []
            for body in (chat_with(image_part("https://x.test/a.png")),
                         chat_with(audio_part(base64.b64encode(b"ID3" + bytes(99)).decode(),
                                              "mp3"))):
                _, status, _, doc = await timed_post(live, body)
                out.append((status, doc))
            msg = {"model": "x", "max_tokens": 2, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": image(30, 30, "JPEG")}}]}]}
            _, status, _, doc = await timed_post(live, msg, "/v1/messages", ANTHROPIC_VERSION)
            out.append((status, doc))
            body = {"model": "x", "input": [{"role": "user", "content": [
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]}
            _, status, _, doc = await timed_post(live, body, "/v1/responses")
            out.append((status, doc))
            return out

    (s1, url), (s2, mp3), (s3, ant), (s4, resp) = run_async(go())
    assert (s1, s2, s3, s4) == (400, 400, 400, 400)
    assert "not fetched" in url["error"]["message"]
    assert "mp3" in mp3["error"]["message"]
    assert ant["type"] == "error" and ant["error"]["type"] == "invalid_request_error"
    assert "not the declared image/png" in ant["error"]["message"]
    assert resp["error"]["param"] == "input"


# -- timing ------------------------------------------------------------------------------


@pytest.mark.timing
def test_ttft_grows_with_image_size_at_the_prefill_slope() -> None:
    """TTFT measured by a plain httpx client, streamed, images of 64 to 2304
    tokens in three formats: the least-squares slope of the per-size medians
    against image tokens is prefill_ms_per_token within 5%."""
    per_token = 0.05
    sizes = [(224, 224, "PNG"), (448, 448, "JPEG"), (896, 896, "WEBP"), (1344, 1344, "PNG")]
    bodies = {tokens(w, h): chat_with(image_part(data_url(w, h, fmt)), stream=True)
              for w, h, fmt in sizes}

    async def ttft(live: Live, client: httpx.AsyncClient, body: dict[str, Any]) -> float:
        sent = live.now()
        async with client.stream("POST", live.url + CHAT, json=body) as r:
            assert r.status_code == 200
            first = None
            async for line in r.aiter_lines():
                if first is None and line.startswith("data: {"):
                    first = live.now()
        assert first is not None
        return 1000 * (first - sent)

    async def go() -> dict[int, list[float]]:
        cfg = SimConfig(ttft_ms=5, prefill_ms_per_token=per_token, itl_ms=1)
        async with live_sim(cfg) as live, httpx.AsyncClient(timeout=10) as client:
            await ttft(live, client, bodies[64])  # the connection, warm
            out: dict[int, list[float]] = {n: [] for n in bodies}
            for _ in range(7):  # interleaved: every size meets the same conditions
                for n, body in bodies.items():
                    out[n].append(await ttft(live, client, body))
            return out

    got = run_async(go(), timeout=60)
    xs = sorted(got)
    ys = [statistics.median(got[x]) for x in xs]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = (sum((x - mx) * (y - my) for x, y in zip(xs, ys))
             / sum((x - mx) ** 2 for x in xs))
    print(f"TTFT medians {dict(zip(xs, [round(y, 2) for y in ys]))} ms; slope "
          f"{slope:.5f} ms/token (model {per_token})")
    assert abs(slope - per_token) <= 0.05 * per_token, (slope, ys)
    for x, y in zip(xs, ys):  # never faster than the model
        assert y >= 5 + per_token * (x + 3) - 0.1, (x, y)
