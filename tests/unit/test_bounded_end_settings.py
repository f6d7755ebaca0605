"""A bounded end (issue 12, item 1), the parts with no server: `client.drain`
and `--drain` validation, and the token cap that cuts a runaway stream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadkit.cli import main
from loadkit.engine.adapter import ProtocolError
from loadkit.engine.answer import Answer, stream_token_cap
from loadkit.errors import ErrorKind, ExitCode, WorkloadError
from loadkit.protocols import generation
from loadkit.record.recorder import RequestRecord
from loadkit.workload.loader import Overrides, load_workload
from loadkit.workload.models import Client
from loadkit.workload.prompt_set import Prompt
from loadkit.workload.scenarios import GenerationScenario

BASE = """\
name: t
duration: 1s
arrival: {rate: 1}
scenarios: [{name: ping, kind: http, method: GET, path: /}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    return path


def test_drain_defaults_to_30_s_and_reads_durations(tmp_path: Path) -> None:
    assert Client().drain == 30.0
    w = load_workload(write(tmp_path, BASE + "client: {drain: 250ms}\n")).workload
    assert w.client.drain == 0.25
    # The flag replaces the file's value; 0 cancels at the schedule's end.
    w = load_workload(write(tmp_path, BASE + "client: {drain: 5m}\n"),
                      Overrides(drain=0.0)).workload
    assert w.client.drain == 0.0
    assert ErrorKind("unfinished") is ErrorKind.UNFINISHED


@pytest.mark.parametrize("value,why", [("soon", "expected a duration"),
                                       ("-1", "must be >= 0"),
                                       ("[1s]", "expected a duration")])
def test_bad_drain_in_the_file_exits_2_naming_it(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str], value: str,
                                                 why: str) -> None:
    path = write(tmp_path, BASE + f"client:\n  drain: {value}\n")
    with pytest.raises(WorkloadError) as info:
        load_workload(path)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert f"w.yaml:6: client.drain: {why}" in str(info.value)
    assert main(["run", str(path), "-q"]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "client.drain" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["soon", "-1s", "1 parsec"])
def test_bad_drain_flag_exits_2_naming_the_setting(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   value: str) -> None:
    path = write(tmp_path, BASE)
    assert main(["run", str(path), "--drain", value, "-q"]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "--drain" in err and "(client.drain)" in err, err


def token(text: str = "tok") -> bytes:
    return b"data: " + json.dumps({"choices": [{"delta": {"content": text}}]}).encode() + b"\n\n"


def answer_for(asked: int | None, prompts: list[Prompt] | None = None) -> Answer:
    scenario = GenerationScenario.model_validate(
        {"name": "chat", "kind": "openai-chat", "model": "m", "max_tokens": 8})
    req = generation.prepare(scenario, {}, "seed", prompts)
    rec = RequestRecord("t", "chat", "p", 0, 0)
    a = Answer(req, rec, 1 << 30, asked)
    a.status(200, 1)
    return a


def test_a_stream_is_cut_past_four_times_max_tokens_plus_16() -> None:
    assert stream_token_cap(8) == 48 and stream_token_cap(1000) == 4016
    a = answer_for(8)
    for t in range(48):  # up to the cap: a server may split tokens over chunks
        a.body(token(), t)
    assert len(a.rec.events or ()) == 48
    with pytest.raises(ProtocolError) as info:
        a.body(token() + token(""), 48)  # an empty delta is no token (as counted)
    assert str(info.value) == ("stream cut after 49 tokens: more than 4 × max_tokens + 16 "
                               "(max_tokens 8)")
    # Several token events in one read: the message says how many arrived.
    a = answer_for(1000)
    with pytest.raises(ProtocolError, match=r"^stream cut after 4,020 tokens: .* "
                                            r"\(max_tokens 1,000\)$"):
        a.body(token() * 4020, 0)


def test_no_cap_without_a_max_tokens_and_a_prompt_lines_own_one_counts() -> None:
    a = answer_for(None)
    a.body(token() * 1000, 0)
    assert len(a.rec.events or ()) == 1000
    # A prompt set's line asks for its own max_tokens: that is what the cap uses.
    req = answer_for(None, [Prompt(None, "hello", 100)]).req
    body, asked = req.build_body(4, 8, 1)
    assert asked == 100 and json.loads(body or b"")["max_tokens"] == 100
    body, asked = answer_for(None).req.build_body(4, 8, 1)
    assert asked == 8 and json.loads(body or b"")["max_tokens"] == 8


def test_after_the_stream_s_end_a_blank_line_is_let_by_and_an_event_stops_reading() -> None:
    """Bytes after [DONE] are not the answer's: its end stays at [DONE]. A
    blank line keeps the connection (read on, to its end); another event
    stops the reading (wants_body off: the connection is not reused)."""
    a = answer_for(8)
    a.body(token() + token() + b"data: [DONE]\n\n", 5)
    a.body(b"\n", 9)
    assert a.wants_body and a.last == 5 and len(a.rec.events or ()) == 2
    a.body(token(), 12)
    assert not a.wants_body and a.last == 5 and len(a.rec.events or ()) == 2
