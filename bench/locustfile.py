"""Locust's FastHttpUser, closed loop, the peer in bench/bench.py: the same
non-streaming chat request loadkit sends, as fast as 50 users can."""

from locust import FastHttpUser, constant, task

BODY = {"model": "loadkit-sim", "max_tokens": 1, "stream": False,
        "messages": [{"role": "user", "content": "the of and to in is that for"}]}


class Chat(FastHttpUser):
    wait_time = constant(0)

    @task
    def chat(self) -> None:
        self.client.post("/v1/chat/completions", json=BODY)
