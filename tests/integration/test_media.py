"""Images and audio in chat requests, against the simulator whose prefill
cost per media token is declared: TTFT grows with image size as modelled,
the server sees exactly the media the workload declared, and the results
hold no media (their size does not depend on it)."""

from __future__ import annotations

import base64
import io
import json
import statistics
import wave
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from support.recording import recording_sim
from support.run import ROOT, RunWorkload

pytestmark = [pytest.mark.slow]

PREFILL_MS = 0.05  # per prompt token, media tokens too
SIDES = {"small": 224, "mid": 896, "big": 1792}  # 64, 1024 and 4096 image tokens at 28 px


def chat(name: str, media: dict, kind: str = "openai-chat", **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "prompt_tokens": 16, "max_tokens": 2, "media": media,
            **extra}


def png(w: int, h: int) -> bytes:
    """A plain w x h PNG, as a dataset would hold one."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def workload(scenarios: list[dict], rate: float = 6, duration: float = 3) -> dict[str, Any]:
    return {"name": "vision", "duration": duration, "warmup": 0,
            "arrival": {"process": "constant", "rate": rate}, "scenarios": scenarios,
            "slos": ["error_rate < 1%"]}


@pytest.mark.timing
def test_ttft_grows_with_image_size_at_the_modelled_slope(run: RunWorkload) -> None:
    """Three scenarios, one image each of 224, 896 and 1792 px a side (JPEG):
    the median TTFT of each against its image tokens has the simulator's
    prefill slope within 5%."""
    scenarios = [chat(n, {"images": {"sizes": [f"{s}x{s}"], "formats": ["jpeg"],
                                     "variants": 2}}) for n, s in SIDES.items()]
    with recording_sim(proxied=False, ttft_ms=10, itl_ms=1,
                       prefill_ms_per_token=PREFILL_MS) as rec:
        result, _ = run({**workload(scenarios), "target": rec.url})
        assert rec.sim is not None
        seen = list(rec.sim.context.media)
    tokens = {n: (-(-s // 28)) ** 2 for n, s in SIDES.items()}
    assert {i.tokens for r in seen for i in r.images} == set(tokens.values())
    ttft = {n: result["series"]["ttft"][f"scenario:{n}"]["p50"] for n in SIDES}
    slope = statistics.linear_regression([tokens[n] for n in SIDES],
                                         [ttft[n] for n in SIDES]).slope
    print(f"TTFT p50 {ttft} ms against {tokens} image tokens: slope {slope:.5f} ms/token")
    assert slope == pytest.approx(PREFILL_MS, rel=0.05)


def test_the_server_sees_exactly_the_declared_media(run: RunWorkload) -> None:
    """0 to 3 images a request in two sizes and three formats, and one WAV
    clip of 1 to 3 s: the simulator's own log of what each request carried
    adds up to loadkit's ledger, image for image, and each clip's seconds
    are within the declared span."""
    media = {"images": {"per_request": {"min": 0, "max": 3},
                        "sizes": ["64x48", {"size": "320x200", "weight": 3}],
                        "formats": ["png", "jpeg", "webp"], "variants": 2},
             "audio": {"seconds": {"min": "1s", "max": "3s"}}}
    with recording_sim(proxied=False, ttft_ms=5, itl_ms=1) as rec:
        result, _ = run({**workload([chat("look", media)], rate=20, duration=2),
                         "target": rec.url})
        assert rec.sim is not None
        seen = list(rec.sim.context.media)
    sent = result["media"]["look"]
    images = [i for r in seen for i in r.images]
    assert sent["requests"] == len(seen)  # every request carried its clip, images or not
    assert sent["images"] == len(images) >= sent["requests"]  # 1.5 a request on average
    assert Counter(f"{i.width}x{i.height}" for i in images) == Counter(sent["image_sizes"])
    assert Counter(i.format for i in images) == Counter(sent["image_formats"])
    assert sent["image_bytes"] == sum(i.bytes for i in images)
    assert {len(r.images) for r in seen} == {0, 1, 2, 3}
    clips = [a for r in seen for a in r.audio]
    assert len(clips) == sent["audio"] == sent["requests"]
    assert all(1.0 <= a.seconds <= 3.0 and a.format == "wav" for a in clips)
    assert sum(a.seconds for a in clips) == pytest.approx(sent["audio_seconds"], abs=0.01)
    # The uploads: what the request bodies weighed, media included.
    assert result["counts"]["sent_bytes"] > sent["image_bytes"] * 4 / 3 * 0.9
    assert result["counts"]["errors"] == 0
    # The server's prompt counts hold the images' tokens: no text drift is read
    # from them (vision-chat warned of 4,150% drift).
    assert result["tokens"]["prompt_drift"] is None and result["tokens"]["prompt_total"] > 0


@pytest.mark.parametrize("kind", ["openai-responses", "anthropic-messages"])
def test_each_dialect_carries_its_images(run: RunWorkload, kind: str) -> None:
    media = {"images": {"sizes": ["100x50"], "formats": ["png"], "variants": 1}}
    with recording_sim(proxied=False, ttft_ms=5, itl_ms=1) as rec:
        result, _ = run({**workload([chat("look", media, kind=kind)], rate=10, duration=1),
                         "target": rec.url})
        assert rec.sim is not None
        seen = list(rec.sim.context.media)
    assert result["counts"]["errors"] == 0 and len(seen) == result["media"]["look"]["requests"]
    assert all([(i.width, i.height, i.format) for i in r.images] == [(100, 50, "png")]
               for r in seen)


def test_a_prompt_set_s_prompts_carry_the_media(run: RunWorkload, tmp_path: Path) -> None:
    """A prompt set's prompts (a text, and messages with a system prompt) carry
    1-2 images after their last user message's text; the simulator's own log
    adds up to loadkit's ledger."""
    rows = [{"prompt": "describe the picture please"},
            {"messages": [{"role": "system", "content": "be brief"},
                          {"role": "user", "content": "what is in it"}]}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    media = {"images": {"per_request": {"min": 1, "max": 2}, "sizes": ["64x64"],
                        "formats": ["png"], "variants": 2}}
    with recording_sim(ttft_ms=5, itl_ms=1) as rec:
        result, _ = run({**workload([chat("look", media, prompts="p.jsonl")], rate=10,
                                    duration=2), "target": rec.url})
        bodies = [e.body for e in rec.posts() if e.path == "/v1/chat/completions"]
        assert rec.sim is not None
        seen = list(rec.sim.context.media)
    sent = result["media"]["look"]
    assert result["counts"]["errors"] == 0 and sent["requests"] == len(seen) == len(bodies)
    for b in bodies:
        last = b["messages"][-1]
        text, *images = last["content"]
        assert last["role"] == "user" and text == {"type": "text", "text": text["text"]}
        assert text["text"] in ("describe the picture please", "what is in it")
        assert 1 <= len(images) <= 2 and {p["type"] for p in images} == {"image_url"}
    assert {len(b["messages"]) for b in bodies} == {1, 2}  # both prompts drawn
    assert sent["images"] == sum(len(r.images) for r in seen) == \
        sum(len(b["messages"][-1]["content"]) - 1 for b in bodies)


def test_a_dataset_s_conversations_carry_the_media_in_their_first_question(
        run: RunWorkload) -> None:
    """Sessions replaying ShareGPT conversations: the first question carries
    the images, the history re-sends them with it every turn, and the later
    questions are the conversation's, in order."""
    sharegpt = ROOT / "workloads" / "data" / "sharegpt-sample.json"
    conversations = {}
    for conv in json.loads(sharegpt.read_text()):
        humans = [t["value"] for t in conv["conversations"] if t["from"] == "human"]
        conversations[humans[0]] = humans
    media = {"images": {"sizes": ["64x64"], "formats": ["png"], "variants": 3}}
    scenario = chat("talk", media, prompts=str(sharegpt), stream=False,
                    session={"turns": 100, "think_time": "20ms"})
    with recording_sim(ttft_ms=2, itl_ms=0) as rec:
        result, _ = run({**workload([scenario], rate=6, duration=2), "target": rec.url},
                        probe=False)
        bodies = [e.body for e in rec.posts() if e.path == "/v1/chat/completions"]
    assert result["counts"]["errors"] == 0 and result["sessions"]["started"] >= 10
    later = 0
    for b in bodies:
        users = [m["content"] for m in b["messages"] if m["role"] == "user"]
        (first, image), rest = users[0], users[1:]
        assert image["type"] == "image_url" and image["image_url"]["url"].startswith(
            "data:image/png;base64,")
        assert users and [first["text"], *rest] == conversations[first["text"]][:len(users)]
        later += bool(rest)
    assert later > 0  # later turns came, the first question's image still with them

    """The same run with 32-px and 1024-px images: run.json, report.html and
    summary.md differ by far less than one large image would add (a tenth of
    it: their charts differ with the latencies), and none holds a data URL."""
    sizes, image = {}, 0
    for side in (32, 1024):
        media = {"images": {"sizes": [f"{side}x{side}"], "formats": ["png"], "variants": 1}}
        with recording_sim(proxied=False, ttft_ms=5, itl_ms=1) as rec:
            result, out = run({**workload([chat("look", media)], rate=10, duration=1),
                               "target": rec.url}, html=True)
        sent = result["media"]["look"]
        assert sent["image_sizes"] == {f"{side}x{side}": sent["images"]}
        image = sent["image_bytes"] // sent["images"]  # the last: a large one
        texts = {f: (out / f).read_text() for f in ("run.json", "report.html", "summary.md")}
        for text in texts.values():
            assert "base64" not in text and "data:image" not in text
        sizes[side] = {f: len(t) for f, t in texts.items()}
    small, large = sizes[32], sizes[1024]
    print(f"result sizes, 32 px: {small}; 1024 px: {large}; one 1024-px image {image} bytes")
    assert image > 20_000
    for f in small:
        assert abs(large[f] - small[f]) < image / 10, f


def test_media_from_a_dataset_s_columns(run: RunWorkload, tmp_path: Path) -> None:
    """A JSONL dataset's image column (a file path, a data URL, a Hugging Face
    `{bytes}` value) and audio column (a WAV file, a decoded Hugging Face
    `{array, sampling_rate}`): the server sees those very images and clips."""
    (tmp_path / "a.png").write_bytes(png(40, 20))
    wav = io.BytesIO()
    with wave.open(wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000 * 2)  # 2 s
    (tmp_path / "a.wav").write_bytes(wav.getvalue())
    rows = [{"img": "a.png", "clip": "a.wav"},
            {"img": "data:image/png;base64," + base64.b64encode(png(60, 30)).decode(),
             "clip": {"array": [0.0] * 4000, "sampling_rate": 8000}},  # 0.5 s
            {"img": {"bytes": base64.b64encode(png(80, 40)).decode(), "path": None}}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    media = {"images": {"dataset": {"path": "d.jsonl", "column": "img"}},
             "audio": {"dataset": {"path": "d.jsonl", "column": "clip"}}}
    with recording_sim(proxied=False, ttft_ms=5, itl_ms=1) as rec:
        result, _ = run({**workload([chat("look", media)], rate=20, duration=1),
                         "target": rec.url})
        assert rec.sim is not None
        seen = list(rec.sim.context.media)
    assert result["counts"]["errors"] == 0 and len(seen) == result["media"]["look"]["requests"]
    assert {(i.width, i.height) for r in seen for i in r.images} == {(40, 20), (60, 30), (80, 40)}
    assert {round(a.seconds, 3) for r in seen for a in r.audio} == {2.0, 0.5}
    assert result["media"]["look"]["distinct_images"] == 3


def test_mp3_audio_is_made_before_the_run(run: RunWorkload) -> None:
    """MP3 clips of 1 to 3 s (lameenc, 128 kb/s): the simulator estimates each
    clip's seconds from its size at 128 kb/s, within a frame of the truth."""
    media = {"audio": {"format": "mp3", "seconds": {"min": "1s", "max": "3s"}, "clips": 3}}
    with recording_sim(proxied=False, ttft_ms=5, itl_ms=1) as rec:
        result, _ = run({**workload([chat("hear", media)], rate=20, duration=1),
                         "target": rec.url})
        assert rec.sim is not None
        seen = [a for r in rec.sim.context.media for a in r.audio]
    assert result["counts"]["errors"] == 0 and seen and {a.format for a in seen} == {"mp3"}
    assert {round(a.seconds) for a in seen} <= {1, 2, 3}
    assert all(a.seconds == pytest.approx(round(a.seconds), abs=0.1) for a in seen)


def test_a_session_re_sends_its_first_question_s_images(run: RunWorkload) -> None:
    """Three-turn conversations about two images: every turn's request holds
    the session's two images (the history as it happened), so the server sees
    each image three times, and run.json's media counts every request that
    carried them, as the server saw them."""
    media = {"images": {"per_request": 2, "sizes": ["64x64", "128x96"], "variants": 4}}
    scenario = chat("talk", media, session={"turns": 3})
    with recording_sim(proxied=False, ttft_ms=5, itl_ms=1) as rec:
        result, _ = run({**workload([scenario], rate=5, duration=1), "target": rec.url,
                         "client": {"drain": "5s"}})
        assert rec.sim is not None
        seen = list(rec.sim.context.media)
    assert result["counts"]["errors"] == 0 and result["sessions"]["completed"] >= 4
    assert all(len(r.images) == 2 for r in seen)
    # Each session's images, by request: the same pair in each of its turns
    # (and the probe's one request before the clock: one pair seen once).
    assert len(seen) == 3 * result["sessions"]["started"] + 1
    sent = result["media"]["talk"]
    assert (sent["requests"], sent["images"]) == (len(seen), 2 * len(seen))
    assert sent["image_bytes"] == sum(i.bytes for r in seen for i in r.images)
    pairs = Counter(tuple(sorted((i.width, i.height, i.bytes) for i in r.images))
                    for r in seen)
    assert sum(n % 3 for n in pairs.values()) == 1  # two sessions may draw one pair


@pytest.mark.parametrize("layout", ["parquet", "arrow-folder"])
def test_media_from_a_hugging_face_dataset_on_disk(run: RunWorkload, tmp_path: Path,
                                                   layout: str) -> None:
    """Image and audio columns as Hugging Face `datasets` stores them (Image:
    a struct of bytes and path; Audio decoded: array and sampling rate), in
    a Parquet file or a `save_to_disk` folder of Arrow streams."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.table({
        "image": [{"bytes": png(48, 16), "path": None}, {"bytes": png(24, 24), "path": None}],
        "audio": [{"array": [0.0] * 1600, "sampling_rate": 16000},
                  {"array": [0.25] * 3200, "sampling_rate": 16000}]})
    if layout == "parquet":
        data = tmp_path / "d.parquet"
        pq.write_table(table, data)
    else:
        data = tmp_path / "saved"
        data.mkdir()
        with pa.ipc.new_stream(str(data / "data-00000-of-00001.arrow"), table.schema) as w:
            w.write_table(table)
    media = {"images": {"dataset": {"path": data.name, "column": "image"}},
             "audio": {"dataset": {"path": data.name, "column": "audio"}}}
    with recording_sim(proxied=False, ttft_ms=5, itl_ms=1) as rec:
        result, _ = run({**workload([chat("look", media)], rate=20, duration=1),
                         "target": rec.url})
        assert rec.sim is not None
        seen = list(rec.sim.context.media)
    assert result["counts"]["errors"] == 0 and len(seen) == result["media"]["look"]["requests"]
    assert {(i.width, i.height) for r in seen for i in r.images} == {(48, 16), (24, 24)}
    assert {round(a.seconds, 3) for r in seen for a in r.audio} == {0.1, 0.2}
