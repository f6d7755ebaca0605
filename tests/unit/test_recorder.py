"""The recorder (loadkit.record.recorder): each metric derived from a request's
timestamps as the timing model defines it, errors counted, intervals closed."""

from __future__ import annotations

from loadkit.errors import ErrorKind
from loadkit.record.recorder import Recorder, RequestRecord


def test_recorder_metrics_from_the_timing_model() -> None:
    rec = Recorder(start_ns=0)
    ms = 1_000_000
    rec.record(RequestRecord("t", "s", "measure", intended=0, sent=2 * ms, end=100 * ms,
                             first=30 * ms, events=[30 * ms, 40 * ms, 60 * ms, 100 * ms],
                             output_tokens=4, token_source="usage"))
    rec.record(RequestRecord("t", "s", "measure", intended=5 * ms, sent=5 * ms, end=9 * ms,
                             error=ErrorKind.HTTP_5XX, message="HTTP 503"))
    rec.rotate(1000 * ms)

    def values(metric: str) -> tuple[int, int, int]:
        h = rec.cumulative[(metric, "measure", "s", "t")]
        return h.get_total_count(), h.get_min_value(), h.get_max_value()

    assert values("latency")[0] == 1 and values("latency")[2] // 1000 == 100
    assert values("service_time")[2] // 1000 == 98
    assert values("ttft")[2] // 1000 == 28
    assert values("itl")[0] == 3  # each gap: 10, 20, 40 ms
    assert (values("itl")[1] // 1000, values("itl")[2] // 1000) == (10, 40)
    assert values("tpot")[2] // 1000 == 23  # (100-30)/(4-1)
    assert values("lateness")[0] == 2  # errors have lateness too
    assert rec.errors[("http_5xx", "measure", "s", "t")] == 1
    assert rec.intervals[0].completed == 1 and rec.intervals[0].errors == 1


def test_itl_is_per_token_and_inter_chunk_per_event() -> None:
    """Events of 1, 4 and 2 tokens after gaps of 40 and 10 ms: inter_chunk has
    the two gaps; itl has 4 samples of 10 ms and 2 of 5 ms."""
    from loadkit.record.recorder import Recorder, RequestRecord
    rec = Recorder(0)
    ms = 1_000_000
    r = RequestRecord("t", "s", "p", 0, 0, end=60 * ms, first=10 * ms,
                      events=[10 * ms, 50 * ms, 60 * ms], output_tokens=7,
                      token_source="usage", event_tokens=[1, 4, 2])
    rec.record(r)
    rec.rotate(100 * ms)
    itl = rec.cumulative[("itl", "p", "s", "t")]
    chunk = rec.cumulative[("inter_chunk", "p", "s", "t")]
    assert itl.get_total_count() == 6 and chunk.get_total_count() == 2
    assert itl.get_value_at_percentile(50) // 1000 == 10  # 4 of 6 samples at 10 ms
    assert itl.get_min_value() // 1000 == 5 and chunk.get_max_value() // 1000 == 40
    assert rec.itl_sources == {"usage": 1}


def test_a_reasoned_stream_has_each_phase_s_itl_and_a_tool_call_its_time() -> None:
    """Reasoning events at 10 and 20 ms (one token each), answer events of 1, 3
    and 2 tokens at 30, 60 and 70 ms: reasoning_itl one 10 ms gap; answer_itl
    the 10 ms into the first answer token, then 3 samples of 10 ms and 2 of
    5 ms. A call complete at 80 ms of a request sent at 2 ms: 78 ms."""
    rec = Recorder(0)
    ms = 1_000_000
    rec.record(RequestRecord("t", "s", "p", 0, 2 * ms, end=90 * ms, first=10 * ms,
                             events=[10 * ms, 20 * ms, 30 * ms, 60 * ms, 70 * ms],
                             output_tokens=8, token_source="usage",
                             event_tokens=[1, 1, 1, 3, 2], answer_event=2, tool_done=80 * ms))
    rec.rotate(100 * ms)

    def samples(metric: str) -> list[tuple[int, int]]:
        h = rec.cumulative[(metric, "p", "s", "t")]
        return [(v.value_iterated_to // 1000, v.count_at_value_iterated_to)
                for v in h.get_recorded_iterator()]
    assert samples("reasoning_itl") == [(10, 1)]
    assert samples("answer_itl") == [(5, 2), (10, 4)]
    assert samples("tool_call_time") == [(78, 1)]
    assert samples("ttfo") == [(28, 1)] and samples("reasoning_time") == [(20, 1)]


def test_only_a_total_known_the_first_event_takes_its_share_of_the_text() -> None:
    """8 events, 32 tokens, no count per event, 40-ms gaps. A server that sends
    4 tokens in every event (the first included: its text is 1/8 of the
    answer's) has a per-token ITL of 10 ms; one that sends the first token
    alone (vLLM's stream interval) has 31 tokens over the 7 later events. Read
    as the latter, the former's ITL came out 9.0 ms; unseen text stays 1."""
    ms = 1_000_000

    def itl(first_share: float | None) -> list[tuple[int, int]]:
        rec = Recorder(0)
        rec.record(RequestRecord("t", "s", "p", 0, 0, end=300 * ms, first=20 * ms,
                                 events=[20 * ms + 40 * ms * i for i in range(8)],
                                 output_tokens=32, token_source="usage",
                                 first_share=first_share))
        rec.rotate(400 * ms)
        assert rec.itl_sources == {"estimated": 1}
        h = rec.cumulative[("itl", "p", "s", "t")]
        return [(v.value_iterated_to // 1000, v.count_at_value_iterated_to)
                for v in h.get_recorded_iterator()]

    assert itl(4 / 32) == [(10, 28)]  # 7 gaps x 4 tokens of 10 ms
    assert itl(1 / 29) == itl(None) == [(9, 31)]  # 40 / (31 / 7) = 9.03 ms, one a token


def test_served_counts_each_request_in_the_phase_it_ended_in() -> None:
    """Phases warm (1 s) then main (2 s), run zero at 5 s on the clock: a
    request sent for warm that ends in main is served in main; one sent for
    main that ends in the drain (after 3 s), as a session's later turn after
    a long think does, is served in none; an error is served nowhere. Tokens
    and good requests follow."""
    s = 1_000_000_000
    rec = Recorder(5 * s, goodput=(("latency", "<", s),), phases=(("warm", 1.0), ("main", 2.0)))
    rec.record(RequestRecord("t", "c", "warm", intended=5 * s + 8 * s // 10,
                             sent=5 * s + 8 * s // 10, end=6 * s + s // 2,
                             output_tokens=3))  # sent 0.8 s in, ends 1.5 s in: main, good
    rec.record(RequestRecord("t", "c", "warm", intended=5 * s, sent=5 * s, end=5 * s + s // 2,
                             output_tokens=2))  # 0.5 s in: warm
    rec.record(RequestRecord("t", "c", "main", intended=7 * s, sent=7 * s, end=8 * s + s // 10,
                             output_tokens=7))  # 3.1 s in: the drain; 1.1 s: not good
    rec.record(RequestRecord("t", "c", "main", intended=7 * s, sent=7 * s, end=7 * s + 1,
                             error=ErrorKind.TIMEOUT))
    assert rec.served == {("completed", "main", "c", "t"): 1, ("tokens", "main", "c", "t"): 3,
                          ("good", "main", "c", "t"): 1, ("completed", "warm", "c", "t"): 1,
                          ("tokens", "warm", "c", "t"): 2, ("good", "warm", "c", "t"): 1}
    assert rec.completed == {("warm", "c", "t"): 2, ("main", "c", "t"): 1}  # by the phase sent for
