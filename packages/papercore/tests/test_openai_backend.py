"""The OpenAI-compatible backend against a real server on localhost (`transformers serve`)."""

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from papercore.errors import BackendResponseError
from papercore.generation import SamplingConfig, make_backend

pytestmark = pytest.mark.server


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models on a shared CPU: one torch thread (more only spin-wait; 70x slower under load)."""
    from papercore.seeding import torch_threads

    with torch_threads(1):
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("`transformers serve` needs transformers[serving] (fastapi, uvicorn)")
    exe = Path(sys.executable).parent / "transformers"
    cmd = [str(exe)] if exe.exists() else [shutil.which("transformers") or "transformers"]
    port = _free_port()
    proc = subprocess.Popen(
        [
            *cmd,
            "serve",
            str(tiny_model_dir),
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited early:\n{proc.stdout.read()[-3000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("transformers serve did not become healthy within 120 s")
            time.sleep(0.5)
        yield base + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def client(server, tiny_model_dir, tiny_tokenizer):
    b = make_backend("openai", base_url=server, model=str(tiny_model_dir), tokenizer=tiny_tokenizer)
    yield b
    b.close()


def test_greedy_matches_transformers_backend(client, tiny_llama, tiny_tokenizer):
    cfg = SamplingConfig(temperature=0, max_new_tokens=6)
    prompts = ["count: 1 2 3", "SELECT name FROM"]
    served = client.generate(prompts, cfg)
    local = make_backend("transformers", model=tiny_llama, tokenizer=tiny_tokenizer).generate(
        prompts, cfg
    )
    assert [g[0].text for g in served] == [g[0].text for g in local]


def test_concurrent_requests_match_transformers_backend(
    server, tiny_model_dir, tiny_llama, tiny_tokenizer
):
    """Many prompts in flight at once (4 at a time, n=2 through follow-up requests): every prompt
    still gets its own greedy reply, in order."""
    prompts = [f"count: {i} {i + 1}" for i in range(8)] + ["SELECT name FROM", "The model reads"]
    cfg = SamplingConfig(n=2, temperature=0, max_new_tokens=5)
    b = make_backend(
        "openai",
        base_url=server,
        model=str(tiny_model_dir),
        tokenizer=tiny_tokenizer,
        max_concurrency=4,
    )
    try:
        served = b.generate(prompts, cfg)
    finally:
        b.close()
    local = make_backend("transformers", model=tiny_llama, tokenizer=tiny_tokenizer).generate(
        prompts, cfg
    )
    assert [[c.text for c in g] for g in served] == [[c.text for c in g] for g in local]


def test_n_is_honoured_even_when_the_server_ignores_it(client):
    outs = client.generate(
        ["The model reads"], SamplingConfig(n=3, temperature=1.0, max_new_tokens=5, seed=1)
    )
    assert len(outs) == 1 and len(outs[0]) == 3
    assert all(c.token_ids is not None for c in outs[0])  # recovered from text with the tokenizer


def test_chat_prompt_matches_transformers_backend(client, tiny_llama, tiny_tokenizer):
    """The server renders the same chat template: its greedy reply is the local greedy reply."""
    chat = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "count: 1 2"}]]
    cfg = SamplingConfig(temperature=0, max_new_tokens=6)
    served = client.generate(chat, cfg)
    local = make_backend("transformers", model=tiny_llama, tokenizer=tiny_tokenizer).generate(
        chat, cfg
    )
    assert [g[0].text for g in served] == [g[0].text for g in local]
    assert any(g[0].text for g in local)  # not two empty strings


def _fake_server(reply):
    """An OpenAI-compatible endpoint answering every request with ``reply`` (JSON, or raw text)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(reply, str):
            return httpx.Response(200, text=reply)
        return httpx.Response(200, json=reply)

    http = httpx.Client(base_url="http://fake.test/v1", transport=httpx.MockTransport(handler))
    return make_backend("openai", base_url="http://fake.test/v1", model="m", client=http)


def test_chat_reply_text_from_a_fake_server():
    reply = {
        "choices": [
            {
                "message": {"role": "assistant", "content": "SELECT 1;\nmore"},
                "finish_reason": "length",
            }
        ]
    }
    (group,) = _fake_server(reply).generate(
        [[{"role": "user", "content": "hi"}]], SamplingConfig(max_new_tokens=8, stop=("\n",))
    )
    assert [(c.text, c.finish_reason, c.token_ids) for c in group] == [("SELECT 1;", "stop", None)]
    tool_only = {"choices": [{"message": {"role": "assistant", "content": None}}]}
    (group,) = _fake_server(tool_only).generate([[{"role": "user", "content": "hi"}]])
    assert group[0].text == ""


@pytest.mark.parametrize(
    ("reply", "chat", "message"),
    [
        ("not json", False, "without a 'choices' list"),
        ([{"choices": []}], False, "without a 'choices' list"),  # JSON, but not an object
        ({"choices": {"text": "x"}}, False, "without a 'choices' list"),
        ({"choices": ["x"]}, False, "a choice that is not an object"),
        ({"choices": [{"finish_reason": "stop"}]}, False, "completion choice without 'text'"),
        ({"choices": [{"text": 5}]}, False, "completion text of type int"),
        ({"choices": [{"text": "x"}]}, True, "chat choice without a message"),
        ({"choices": [{"message": "x"}]}, True, "chat choice without a message"),
        ({"choices": [{"message": {"role": "assistant"}}]}, True, "with 'content'"),
    ],
)
def test_malformed_replies_raise_backend_response_error(reply, chat, message):
    prompt = [{"role": "user", "content": "hi"}] if chat else "count: 1"
    with pytest.raises(BackendResponseError, match=message):
        _fake_server(reply).generate([prompt], SamplingConfig(max_new_tokens=2))


def test_malformed_logprobs_raise_backend_response_error():
    reply = {"choices": [{"text": " 4", "logprobs": {"token_logprobs": ["x"], "tokens": [" 4"]}}]}
    with pytest.raises(BackendResponseError, match="malformed logprobs"):
        _fake_server(reply).generate(["count: 1"], SamplingConfig(logprobs=True))
    reply = {"choices": [{"message": {"content": "a"}, "logprobs": {"content": [{"token": "a"}]}}]}
    with pytest.raises(BackendResponseError, match="malformed logprobs"):
        _fake_server(reply).generate(
            [[{"role": "user", "content": "hi"}]], SamplingConfig(logprobs=True)
        )


def test_missing_logprobs_is_reported(client):
    with pytest.raises(BackendResponseError, match="logprobs were requested but the server"):
        client.generate(["count: 1"], SamplingConfig(max_new_tokens=3, logprobs=True))


def test_unknown_route_and_dead_server():
    dead = make_backend(
        "openai", base_url=f"http://127.0.0.1:{_free_port()}/v1", model="m", timeout=2
    )
    with pytest.raises(BackendResponseError, match=r"request to .* failed: ConnectError"):
        dead.generate(["x"], SamplingConfig(max_new_tokens=2))


def test_vllm_style_response_parsing():
    """vLLM's server returns n choices with `token_id:N` tokens and logprobs; parse them exactly."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert (
            body["return_tokens_as_token_ids"] is True and body["n"] == 2 and body["logprobs"] == 0
        )
        choice = {
            "text": " 4 5\nrest",
            "finish_reason": "stop",
            "logprobs": {
                "tokens": ["token_id:11", "token_id:12", "token_id:0"],
                "token_logprobs": [-0.5, -0.25, -1.0],
            },
        }
        return httpx.Response(200, json={"choices": [choice, {**choice, "text": " 6"}]})

    http = httpx.Client(base_url="http://vllm.test/v1", transport=httpx.MockTransport(handler))
    b = make_backend(
        "openai",
        base_url="http://vllm.test/v1",
        model="m",
        client=http,
        extra_body={"return_tokens_as_token_ids": True},
    )
    (group,) = b.generate(["count: 1 2 3"], SamplingConfig(n=2, logprobs=True, stop=("\n",)))
    assert [c.text for c in group] == [" 4 5", " 6"]
    assert group[0].token_ids == [11, 12, 0] and group[0].logprobs == [-0.5, -0.25, -1.0]
