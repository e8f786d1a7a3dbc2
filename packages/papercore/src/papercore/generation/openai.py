"""Sampling from any OpenAI-compatible HTTP server (vLLM's server, ``transformers serve``, TGI, …).

Uses ``/v1/completions`` for string prompts and ``/v1/chat/completions`` for chat prompts.
Servers differ in what they honour; this client copes with the differences plainly:

* a server that returns fewer than ``n`` choices (``transformers serve`` ignores ``n``) gets
  follow-up requests until ``n`` completions are collected (seeds ``seed, seed+1, …`` so the
  follow-ups differ);
* when logprobs are requested and the server returns none, :class:`BackendResponseError` says so
  instead of returning made-up values;
* token ids come from vLLM's ``return_tokens_as_token_ids`` when present (pass
  ``extra_body={"return_tokens_as_token_ids": True}`` for a vLLM server; strict servers reject
  unknown fields, so it is not sent by default), otherwise from re-tokenising the text with
  ``tokenizer`` when one is given, otherwise ``None``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx

from papercore.errors import BackendResponseError
from papercore.generation.base import Completion, Prompt, SamplingConfig, check_prompts, cut_at_stop

logger = logging.getLogger(__name__)


class OpenAIBackend:
    """Client for an OpenAI-compatible server.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server knows.
        api_key: sent as a bearer token when given.
        tokenizer: optional, to recover token ids from text when the server does not return them.
        max_requests_per_prompt: bound on follow-up requests when a server ignores ``n``.
        extra_body: extra JSON fields sent with every request (server-specific options).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        tokenizer: Any = None,
        timeout: float = 120.0,
        max_requests_per_prompt: int | None = None,
        client: httpx.Client | None = None,
        extra_body: dict[str, Any] | None = None,
    ):
        self.extra_body = dict(extra_body or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.tokenizer = tokenizer
        self.max_requests_per_prompt = max_requests_per_prompt
        self.client = client or httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout
        )

    def close(self) -> None:
        self.client.close()

    def generate(
        self, prompts: Sequence[Prompt], config: SamplingConfig | None = None
    ) -> list[list[Completion]]:
        config = config or SamplingConfig()
        return [self._sample(p, config) for p in check_prompts(prompts)]

    def _sample(self, prompt: Prompt, config: SamplingConfig) -> list[Completion]:
        got: list[Completion] = []
        limit = self.max_requests_per_prompt or config.n
        for attempt in range(limit):
            need = config.n - len(got)
            seed = None if config.seed is None else config.seed + attempt
            got.extend(self._request(prompt, config, need, seed)[:need])
            if len(got) >= config.n:
                return got
        raise BackendResponseError(
            f"server at {self.base_url} returned {len(got)} completions after {limit} requests; expected n={config.n}"
        )

    def _request(
        self, prompt: Prompt, config: SamplingConfig, n: int, seed: int | None
    ) -> list[Completion]:
        chat = not isinstance(prompt, str)
        body: dict[str, Any] = {
            "model": self.model,
            "n": n,
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
        }
        if config.top_k:
            body["top_k"] = config.top_k
        if seed is not None:
            body["seed"] = seed
        if config.stop:
            body["stop"] = list(config.stop)
        if chat:
            body["messages"] = prompt
            if config.logprobs:
                body["logprobs"] = True
        else:
            body["prompt"] = prompt
            if config.logprobs:
                body["logprobs"] = 0
        body.update(self.extra_body)
        path = "/chat/completions" if chat else "/completions"
        try:
            resp = self.client.post(path, json=body)
        except httpx.HTTPError as e:
            raise BackendResponseError(
                f"request to {self.base_url}{path} failed: {type(e).__name__}: {e}"
            ) from e
        if resp.status_code != 200:
            raise BackendResponseError(
                f"{self.base_url}{path} answered HTTP {resp.status_code}: {resp.text[:500]}"
            )
        try:
            reply = resp.json()
        except ValueError:
            reply = None
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not isinstance(choices, list):
            raise BackendResponseError(
                f"{self.base_url}{path} answered without a 'choices' list: {resp.text[:500]}"
            )
        return [
            self._parse_choice(c, chat, config, where=f"{self.base_url}{path}") for c in choices
        ]

    def _parse_choice(
        self, choice: Any, chat: bool, config: SamplingConfig, where: str = ""
    ) -> Completion:
        """One reply choice → a :class:`Completion`; a malformed choice raises
        :class:`BackendResponseError` saying what is missing (never a KeyError / TypeError)."""
        where = where or self.base_url
        if not isinstance(choice, dict):
            raise BackendResponseError(
                f"{where} answered a choice that is not an object: {str(choice)[:200]}"
            )
        if chat:
            message = choice.get("message")
            if not isinstance(message, dict) or "content" not in message:
                raise BackendResponseError(
                    f"{where} answered a chat choice without a message with 'content': "
                    f"{str(choice)[:300]}"
                )
            text = message["content"]  # null when the reply is only tool calls
        else:
            if "text" not in choice:
                raise BackendResponseError(
                    f"{where} answered a completion choice without 'text': {str(choice)[:300]}"
                )
            text = choice["text"]
        if text is not None and not isinstance(text, str):
            raise BackendResponseError(
                f"{where} answered a completion text of type {type(text).__name__}, expected a string"
            )
        text, hit = cut_at_stop(text or "", config.stop)  # some servers return text past a stop
        reason = choice.get("finish_reason") or "stop"
        if hit:
            reason = "stop"
        logprobs, token_ids = None, None
        lp = choice.get("logprobs")
        if config.logprobs:
            if not isinstance(lp, dict) or not (
                lp.get("content") if chat else lp.get("token_logprobs") is not None
            ):
                raise BackendResponseError(
                    f"logprobs were requested but the server at {self.base_url} returned none "
                    "(some servers, e.g. `transformers serve`, ignore `logprobs`); use vLLM's server or "
                    "the transformers backend, or sample with logprobs=False"
                )
            try:
                if chat:
                    logprobs = [float(t["logprob"]) for t in lp["content"]]
                    token_ids = _ids_from_tokens([t.get("token", "") for t in lp["content"]])
                else:
                    logprobs = [float(x) for x in lp["token_logprobs"]]
                    token_ids = _ids_from_tokens(lp.get("tokens") or [])
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise BackendResponseError(
                    f"{where} answered malformed logprobs ({type(e).__name__}: {e}): {str(lp)[:300]}"
                ) from None
        if token_ids is None and self.tokenizer is not None:
            token_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return Completion(text=text, token_ids=token_ids, logprobs=logprobs, finish_reason=reason)


def _ids_from_tokens(tokens: list[str]) -> list[int] | None:
    """vLLM's ``return_tokens_as_token_ids`` renders tokens as ``token_id:123``."""
    if tokens and all(isinstance(t, str) and t.startswith("token_id:") for t in tokens):
        return [int(t.split(":", 1)[1]) for t in tokens]
    return None
