"""Pluggable tokenisation for the count statistics of KLS and the term weighters.

The reference KLS splits on whitespace, so that is the default. A transformers tokenizer (anything
with a ``.tokenize`` method) or any callable ``str -> list[str]`` can be passed instead. Whitespace
splitting is wrong for Chinese/Japanese/Korean text, so the default refuses CJK input
(:class:`~kls.errors.TokenizerRequiredError`) rather than silently treating a sentence as one word.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from kls.errors import TokenizerRequiredError

Tokenizer = Callable[[str], list[str]]

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


def whitespace_tokenize(text: str) -> list[str]:
    """The reference tokenisation: split on runs of whitespace."""
    return text.split()


class _Lower:
    def __init__(self, fn: Tokenizer):
        self.fn = fn

    def __call__(self, text: str) -> list[str]:
        return self.fn(text.lower())


def resolve_tokenizer(tokenizer: Any = None, *, lowercase: bool = False) -> Tokenizer:
    """Turn ``None`` (whitespace), a transformers tokenizer or a callable into ``str -> list[str]``."""
    if tokenizer is None:
        fn: Tokenizer = whitespace_tokenize
    elif hasattr(tokenizer, "tokenize") and callable(tokenizer.tokenize):
        fn = tokenizer.tokenize
    elif callable(tokenizer):
        fn = tokenizer
    else:
        raise TypeError(
            f"tokenizer must be None, a transformers tokenizer or a callable str -> list[str], "
            f"got {type(tokenizer).__name__}"
        )
    return _Lower(fn) if lowercase else fn


def is_default_tokenizer(tokenizer: Any) -> bool:
    return tokenizer is None


def check_script(texts: Iterable[str], tokenizer: Any) -> None:
    """Raise :class:`TokenizerRequiredError` when CJK text meets the whitespace default."""
    if tokenizer is not None:
        return
    for i, t in enumerate(texts):
        if _CJK.search(t):
            raise TokenizerRequiredError(
                f"text {i} contains CJK characters ({t[:20]!r}...), which whitespace splitting cannot "
                "tokenise; pass tokenizer= (e.g. the model's transformers tokenizer, or jieba.lcut)"
            )
