"""Conversations (issue 15, item 1): sessions arrive open loop; each later turn
goes out think time after the previous answer with the whole history. The
record server logs every body with its own arrival clock."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from loadkit.arrivals import schedule
from loadkit.workload.loader import load_workload
from support.run import ROOT, RunWorkload, StartServer
from support.truth import fetch

THINK_S, RATE, SECONDS = 0.2, 5, 6
ANSWER = "ok " * 3  # the record server's text for max_tokens 3


@pytest.mark.slow
def test_turns_carry_the_history_and_follow_the_answer_plus_think_time(server: StartServer,
                                                                       run: RunWorkload) -> None:
    spec = {"name": "sessions", "duration": SECONDS, "warmup": 0, "seed": 4,
            "arrival": {"process": "poisson", "rate": RATE},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": False,
                           "prompt_tokens": 5, "max_tokens": 3,
                           "session": {"turns": {"dist": "uniform", "min": 2, "max": 4},
                                       "think_time": f"{THINK_S * 1000:g}ms"}}]}
    with server("record") as url:
        result, out = run({**spec, "target": url}, probe=False)
        log = fetch(url + "/log")
    sessions: dict[str, list[dict]] = defaultdict(list)
    for entry in sorted(log, key=lambda e: e["t"]):
        sessions[entry["body"]["messages"][0]["content"]].append(entry)
    for turns in sessions.values():
        for i, (before, now) in enumerate(zip(turns, turns[1:]), start=1):
            messages, previous = now["body"]["messages"], before["body"]["messages"]
            # Turn i carries exactly the i exchanges before it, as they happened.
            assert len(messages) == 2 * i + 1
            assert messages[:-2] == previous
            assert messages[-2] == {"role": "assistant", "content": ANSWER}
            assert messages[-1]["role"] == "user" and messages[-1] not in messages[:-1]
            # Sent no earlier than the previous answer (after its arrival) + think time.
            assert now["t"] - before["t"] >= THINK_S, (now["t"] - before["t"])
    # The sessions are the schedule's: as many, with their planned turns.
    w = load_workload(out.parent / "w.yaml").workload
    planned = [s.turns for s in schedule(w)]
    assert Counter(len(t) for t in sessions.values()) == Counter(planned)
    n = len(planned)
    assert abs(n - RATE * SECONDS) <= 4 * math.sqrt(RATE * SECONDS) + 1, n  # open-loop arrivals
    assert result["sessions"] == {"started": n, "completed": n, "failed": 0, "abandoned": 0,
                                  "cut": 0}
    assert sum(result["counts"]["scheduled"].values()) == len(log) == sum(planned)
    lat = result["series"]["latency"]
    assert lat["scenario:chat"]["count"] == n and lat["scenario:chat:later"]["count"] == \
        sum(planned) - n
    # A session's latency spans its turns and think times.
    session = result["series"]["session"]["all"]
    assert session["count"] == n and session["p50"] >= THINK_S * 1000


SHAREGPT = ROOT / "workloads" / "data" / "sharegpt-sample.json"


@pytest.mark.slow
def test_sharegpt_conversations_become_sessions(server: StartServer, run: RunWorkload) -> None:
    """Each session replays one conversation's human turns in order, asks for
    each reply's length, and ends with the conversation; conversations the
    filter drops never appear."""
    low, high = 5, 80
    with server("record") as url:
        result, _ = run({"name": "sharegpt", "target": url, "duration": 4, "warmup": 0,
                         "arrival": {"process": "poisson", "rate": 6},
                         "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": False,
                                        "prompts": str(SHAREGPT),
                                        "prompts_filter": {"min_tokens": low, "max_tokens": high},
                                        "session": {"turns": 100, "think_time": "50ms"}}]},
                        probe=False)
        log = fetch(url + "/log")
    conversations = {}
    for conv in json.loads(SHAREGPT.read_text()):
        said = conv["conversations"]
        humans = [(t["value"], len(said[i + 1]["value"].split())) for i, t in enumerate(said)
                  if t["from"] == "human"]
        conversations[humans[0][0]] = humans
    # Sessions that drew the same conversation look alike: check each request
    # by its turn (its user messages so far), and the counts per conversation.
    opened: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    for entry in log:
        body = entry["body"]
        users = [m["content"] for m in body["messages"] if m["role"] == "user"]
        humans = conversations[users[0]]
        turn = len(users) - 1
        assert low <= len(users[0].split()) <= high  # the filter's
        assert users == [said for said, _ in humans[:turn + 1]]  # its turns, in order
        assert body["max_tokens"] == humans[turn][1]  # the reply's length
        opened[users[0]] += turn == 0
        sent[users[0]] += 1
    n = result["sessions"]["started"]
    assert sum(opened.values()) == n > 10 and result["sessions"]["completed"] == n
    for first, k in opened.items():  # every session ran its whole conversation
        assert sent[first] == k * len(conversations[first])


@pytest.mark.timing
def test_a_trace_with_session_ids_replays_each_session_as_one_conversation(
        server: StartServer, run: RunWorkload, tmp_path: Path) -> None:
    """Rows sharing a `session_id` are one conversation: each later turn at its
    trace offset (never before the previous answer), with the history and the
    row's own lengths; a row without one stays a single request."""
    rows = [("a", 0.0, 4, 3), ("b", 0.2, 5, 2), (None, 0.5, 6, 1), ("b", 0.25, 7, 4),
            ("a", 1.0, 8, 5), ("a", 1.5, 9, 6)]
    trace = tmp_path / "sessions.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": t, "prompt_tokens": p, "output_tokens": o,
                                         **({"session_id": s} if s else {})}) + "\n"
                             for s, t, p, o in rows))
    with server("record") as url:
        result, _ = run({"name": "traced", "target": url, "duration": 3, "warmup": 0,
                         "arrival": {"process": "trace", "path": str(trace)},
                         "scenarios": [{"name": "chat", "kind": "openai-chat",
                                        "stream": False}]}, probe=False)
        log = sorted(fetch(url + "/log"), key=lambda e: e["t"])
    assert len(log) == len(rows) and result["sessions"] == {"started": 2, "completed": 2,
                                                            "failed": 0, "abandoned": 0,
                                                            "cut": 0}
    by_first: dict[str, list[dict]] = defaultdict(list)
    for entry in log:
        first = next(m["content"] for m in entry["body"]["messages"] if m["role"] == "user")
        by_first[first].append(entry)
    turns = sorted((len(v) for v in by_first.values()), reverse=True)
    assert turns == [3, 2, 1]
    for entries in by_first.values():
        session = [r for r in rows if r[0] is not None and
                   len([x for x in rows if x[0] == r[0]]) == len(entries)]
        if len(entries) == 1:
            continue
        t0 = entries[0]["t"]
        # The first turn reached the server at most its own latency after its
        # send (a stall of 33 ms once, beside a busy worker): that is the slack.
        slack = result["series"]["latency"]["all"]["max"] / 1000
        for i, ((_, offset, prompt, output), entry) in enumerate(zip(session, entries)):
            body = entry["body"]
            assert body["max_tokens"] == output
            assert len(body["messages"]) == 2 * i + 1  # the history of the turns before
            assert len(body["messages"][-1]["content"].split()) == prompt  # "N:", then words
            # At its offset (the first turn's own send-to-arrival aside), never before.
            assert entry["t"] - t0 >= offset - session[0][1] - slack, (i, entry["t"] - t0, slack)


@pytest.mark.slow
def test_sessions_the_drain_cuts_between_turns_are_counted_as_cut(server: StartServer,
                                                                   run: RunWorkload) -> None:
    """3 turns 20 s of think time apart, a 1-s drain: every session is cut
    after its first turn by the drain's deadline. Each is counted as cut (they
    vanished: started 2, completed 0, nothing else), and the reports say so."""
    spec = {"name": "cut", "duration": 2, "warmup": 0, "seed": 4,
            "arrival": {"process": "constant", "rate": 2}, "client": {"drain": "1s"},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": False,
                           "prompt_tokens": 5, "max_tokens": 3,
                           "session": {"turns": 3, "think_time": "20s"}}]}
    with server("record") as url:
        result, out = run({**spec, "target": url}, probe=False)
        sent = len(fetch(url + "/log"))
    s = result["sessions"]
    assert s["started"] == sent == 4 and s["completed"] == s["failed"] == s["abandoned"] == 0
    assert s["cut"] == 4
    assert "4 sessions: 0 completed, 0 ended by a failed turn, 4 cut between turns by the " \
        "run's end" in (out / "summary.md").read_text()
