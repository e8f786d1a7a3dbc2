"""The OpenAI-compatible backend's concurrent requests and per-prompt models, against fake servers."""

import asyncio
import json
import threading
import time

import httpx
import pytest

from papercore.errors import BackendResponseError
from papercore.generation import AdapterError, SamplingConfig
from papercore.generation.openai import OpenAIBackend


class FakeServer:
    """An OpenAI-compatible ``/completions`` + ``/chat/completions`` endpoint behind
    ``httpx.MockTransport``. Each request sleeps a little (longer for some prompts, so replies come
    back out of order) and counts the requests in flight; the reply echoes the prompt, the model
    and the seed. ``choices``: how many choices it returns (a server that ignores ``n`` returns 1).
    ``fail_on``: prompts answered with HTTP 500."""

    def __init__(self, choices: int | None = None, fail_on: tuple[str, ...] = (), delay=0.02):
        self.choices, self.fail_on, self.delay = choices, fail_on, delay
        self.lock = threading.Lock()
        self.in_flight = self.peak = 0
        self.bodies: list[dict] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        prompt = body.get("prompt") or body["messages"][-1]["content"]
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.bodies.append(body)
        try:
            time.sleep(self.delay * (1 + (sum(map(ord, prompt)) % 4)))
            if prompt in self.fail_on:
                return httpx.Response(500, text=f"boom on {prompt}")
            text = f"{prompt}|{body['model']}|{body.get('seed')}"
            n = body["n"] if self.choices is None else self.choices
            if "messages" in body:
                return httpx.Response(200, json={"choices": [{"message": {"content": text}}] * n})
            return httpx.Response(200, json={"choices": [{"text": text}] * n})
        finally:
            with self.lock:
                self.in_flight -= 1

    def backend(self, **kwargs) -> OpenAIBackend:
        http = httpx.Client(
            base_url="http://fake.test/v1", transport=httpx.MockTransport(self.handler)
        )
        return OpenAIBackend("http://fake.test/v1", model="base", client=http, **kwargs)


PROMPTS = [f"p{i}" for i in range(24)]


@pytest.mark.parametrize("limit", [1, 4, 16])
def test_order_is_kept_and_concurrency_is_bounded(limit):
    server = FakeServer()
    outs = server.backend(max_concurrency=limit).generate(PROMPTS, SamplingConfig(n=2, seed=5))
    assert [[c.text for c in g] for g in outs] == [[f"{p}|base|5"] * 2 for p in PROMPTS]
    assert len(server.bodies) == len(PROMPTS)
    assert server.peak <= limit
    assert server.peak == 1 if limit == 1 else server.peak > 1


def test_follow_up_requests_when_the_server_ignores_n():
    server = FakeServer(choices=1)
    outs = server.backend(max_concurrency=8).generate(PROMPTS[:6], SamplingConfig(n=3, seed=10))
    # each prompt: requests with seeds 10, 11, 12 (asking for 3, 2, 1 more), in its own order
    assert [[c.text for c in g] for g in outs] == [
        [f"{p}|base|{s}" for s in (10, 11, 12)] for p in PROMPTS[:6]
    ]
    for p in PROMPTS[:6]:
        assert [b["n"] for b in server.bodies if b["prompt"] == p] == [3, 2, 1]
    assert 1 < server.peak <= 6


def test_a_failed_request_raises_and_the_rest_are_cancelled():
    server = FakeServer(fail_on=("p3",))
    prompts = [f"p{i}" for i in range(60)]
    with pytest.raises(BackendResponseError, match="HTTP 500: boom on p3") as info:
        server.backend(max_concurrency=4).generate(prompts, SamplingConfig(max_new_tokens=2))
    assert server.in_flight == 0  # requests in flight were awaited before raising
    assert len(server.bodies) < 20  # the queued prompts were never sent
    notes = "\n".join(info.value.__notes__)
    assert "while sampling prompt 3 of 60" in notes
    assert "prompt(s) were cancelled after the failure" in notes
    # several failures: the first raises, the others are attached, none is dropped
    server = FakeServer(fail_on=("p0", "p1"), delay=0.05)
    with pytest.raises(BackendResponseError, match=r"boom on p[01]") as info:
        server.backend(max_concurrency=2).generate(["p0", "p1", "p2"], SamplingConfig())
    assert any("failed too" in n and "boom on p" in n for n in info.value.__notes__)


def test_works_inside_a_running_event_loop():
    """A notebook calls the synchronous generate from inside a running asyncio loop."""
    server = FakeServer()
    backend = server.backend(max_concurrency=8)

    async def main():
        assert asyncio.get_running_loop().is_running()
        return backend.generate(PROMPTS, SamplingConfig(seed=1))

    outs = asyncio.run(main())
    assert [g[0].text for g in outs] == [f"{p}|base|1" for p in PROMPTS]
    assert server.peak > 1


def test_per_prompt_adapter_is_the_request_model():
    server = FakeServer()
    chat = [{"role": "user", "content": "chat"}]
    outs = server.backend().generate(
        ["p0", chat, "p2", "p3"], SamplingConfig(seed=0), adapters=["math", "code", None, "math"]
    )
    assert [g[0].text for g in outs] == ["p0|math|0", "chat|code|0", "p2|base|0", "p3|math|0"]
    sent = {b.get("prompt") or b["messages"][-1]["content"]: b["model"] for b in server.bodies}
    assert sent == {"p0": "math", "chat": "code", "p2": "base", "p3": "math"}
    with pytest.raises(AdapterError, match="got 1 adapter names for 2 prompts"):
        server.backend().generate(["p0", "p1"], adapters=["math"])
    assert len(server.bodies) == 4  # the bad call sent nothing


def test_token_ids_recovered_with_the_tokenizer(tiny_tokenizer):
    server = FakeServer()
    outs = server.backend(tokenizer=tiny_tokenizer).generate(PROMPTS, SamplingConfig(seed=2))
    for g in outs:
        assert g[0].token_ids == tiny_tokenizer(g[0].text, add_special_tokens=False)["input_ids"]


def test_max_concurrency_is_checked():
    with pytest.raises(ValueError, match="max_concurrency must be >= 1, got 0"):
        OpenAIBackend("http://x/v1", "m", max_concurrency=0)
    with pytest.raises(TypeError, match="max_concurrency must be an int, got float"):
        OpenAIBackend("http://x/v1", "m", max_concurrency=2.0)
