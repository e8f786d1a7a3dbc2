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

Requests run concurrently: up to ``max_concurrency`` prompts are in flight at once (a thread
pool over one thread-safe ``httpx.Client``), so a batching server such as vLLM's sees them
together; results keep the prompts' order, and the follow-up requests of one prompt run one after
another. The first failed request raises (:class:`BackendResponseError`): requests not yet sent
are cancelled, requests already in flight are awaited, and their failures are attached to the
raised error as notes. It works the same when called from inside a running asyncio event loop
(a notebook): the pool uses threads, not the loop.

Per-prompt LoRA adapters: vLLM's server (``--enable-lora --lora-modules name=path``) serves each
adapter as a model name, so ``generate(..., adapters=[name or None, ...])`` sends the adapter
name as the request's ``model`` (``None`` → the backend's ``model``).

Per-prompt configs: ``generate(prompts, configs=[...])`` sends each prompt's requests with its own
:class:`SamplingConfig` (temperature, ``max_tokens``, ``n``, seed, …).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

import httpx

from papercore.errors import BackendResponseError
from papercore.generation.base import (
    Completion,
    Prompt,
    SamplingConfig,
    check_adapters,
    check_prompts,
    cut_at_stop,
    resolve_configs,
)

logger = logging.getLogger(__name__)


class _Cancelled(Exception):
    """A prompt's sampling stopped because another prompt's request failed."""


class OpenAIBackend:
    """Client for an OpenAI-compatible server.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server knows (also the base model for per-prompt adapters).
        api_key: sent as a bearer token when given.
        tokenizer: optional, to recover token ids from text when the server does not return them.
        timeout: seconds per request.
        max_requests_per_prompt: bound on follow-up requests when a server ignores ``n``.
        client: an ``httpx.Client`` to use instead of building one (tests, custom transports).
        extra_body: extra JSON fields sent with every request (server-specific options).
        max_concurrency: prompts in flight at once (``1`` = one request after another).
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
        max_concurrency: int = 16,
    ):
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise TypeError(f"max_concurrency must be an int, got {type(max_concurrency).__name__}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.extra_body = dict(extra_body or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.tokenizer = tokenizer
        self.max_requests_per_prompt = max_requests_per_prompt
        self.max_concurrency = max_concurrency
        self.client = client or httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max(100, max_concurrency),
                max_keepalive_connections=max(20, max_concurrency),
            ),
        )

    def close(self) -> None:
        self.client.close()

    def generate(
        self,
        prompts: Sequence[Prompt],
        config: SamplingConfig | None = None,
        *,
        adapters: Sequence[str | None] | None = None,
        configs: Sequence[SamplingConfig] | None = None,
    ) -> list[list[Completion]]:
        """Sample ``config.n`` completions per prompt, up to ``max_concurrency`` prompts at once.

        Args:
            prompts: strings (``/completions``) or chat message lists (``/chat/completions``).
            config: sampling settings (default ``SamplingConfig()``).
            adapters: one served model name per prompt, e.g. a LoRA module of vLLM's server
                (``None`` = ``self.model``).
            configs: one :class:`SamplingConfig` per prompt instead of ``config``; prompt ``i``'s
                requests use ``configs[i]``.

        Raises:
            SamplingConfigsError: both ``config`` and ``configs``, or a wrong-length ``configs``.
        """
        prompts = check_prompts(prompts)
        cfgs = resolve_configs(config, configs, len(prompts))
        names = check_adapters(adapters, len(prompts))
        models = [self.model] * len(prompts) if names is None else [a or self.model for a in names]
        groups = self._sample_all(prompts, models, cfgs)
        if self.tokenizer is not None:  # here, not in the pool: one thread uses the tokenizer
            for group in groups:
                for c in group:
                    if c.token_ids is None:
                        c.token_ids = self.tokenizer(c.text, add_special_tokens=False)["input_ids"]
        return groups

    def _sample_all(
        self, prompts: list[Prompt], models: list[str], configs: list[SamplingConfig]
    ) -> list[list[Completion]]:
        workers = min(self.max_concurrency, len(prompts))
        if workers <= 1:
            return [self._sample(p, m, c) for p, m, c in zip(prompts, models, configs, strict=True)]
        stop = threading.Event()
        failed: list[int] = []  # prompt indices in the order their requests failed

        def run(i: int) -> list[Completion]:
            try:
                return self._sample(prompts[i], models[i], configs[i], stop)
            except _Cancelled:
                raise
            except BaseException:
                failed.append(i)
                stop.set()  # no further requests from the other workers
                raise

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="papercore-openai")
        futures: list[Future[list[Completion]]] = []
        try:
            futures = [pool.submit(run, i) for i in range(len(prompts))]
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            # after a failure (or an interrupt) nothing new starts; requests in flight are awaited
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
        if failed:
            first = futures[failed[0]].exception()
            assert first is not None
            first.add_note(f"while sampling prompt {failed[0]} of {len(prompts)}")
            for j in failed[1:]:
                e = futures[j].exception()
                first.add_note(f"prompt {j} failed too: {type(e).__name__}: {e}")
            skipped = sum(f.cancelled() or isinstance(f.exception(), _Cancelled) for f in futures)
            if skipped:
                first.add_note(f"{skipped} prompt(s) were cancelled after the failure")
            logger.debug("sampling failed on prompt %d; %d prompt(s) cancelled", failed[0], skipped)
            raise first
        return [f.result() for f in futures]

    def _sample(
        self,
        prompt: Prompt,
        model: str,
        config: SamplingConfig,
        stop: threading.Event | None = None,
    ) -> list[Completion]:
        got: list[Completion] = []
        limit = self.max_requests_per_prompt or config.n
        for attempt in range(limit):
            if stop is not None and stop.is_set():
                raise _Cancelled
            need = config.n - len(got)
            seed = None if config.seed is None else config.seed + attempt
            got.extend(self._request(prompt, model, config, need, seed)[:need])
            if len(got) >= config.n:
                return got
        raise BackendResponseError(
            f"server at {self.base_url} returned {len(got)} completions after {limit} requests; expected n={config.n}"
        )

    def _request(
        self, prompt: Prompt, model: str, config: SamplingConfig, n: int, seed: int | None
    ) -> list[Completion]:
        chat = not isinstance(prompt, str)
        body: dict[str, Any] = {
            "model": model,
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
        return Completion(text=text, token_ids=token_ids, logprobs=logprobs, finish_reason=reason)


def _ids_from_tokens(tokens: list[str]) -> list[int] | None:
    """vLLM's ``return_tokens_as_token_ids`` renders tokens as ``token_id:123``."""
    if tokens and all(isinstance(t, str) and t.startswith("token_id:") for t in tokens):
        return [int(t.split(":", 1)[1]) for t in tokens]
    return None
