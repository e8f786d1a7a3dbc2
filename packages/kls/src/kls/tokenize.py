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

_CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK = re.compile(f"[{_CJK_RANGES}]")
_CHAR_TOKEN = re.compile(f"[{_CJK_RANGES}]|[^\\W{_CJK_RANGES}]+")

#: tokenizer names :func:`resolve_tokenizer` (and ``kls --tokenizer``) take besides a transformers name
TOKENIZER_NAMES = ("whitespace", "char")


def whitespace_tokenize(text: str) -> list[str]:
    """The reference tokenisation: split on runs of whitespace."""
    return text.split()


def char_tokenize(text: str) -> list[str]:
    """One token per CJK character (Chinese, Japanese kana, Korean syllables), ``\\w+`` runs otherwise.

    A segmenter-free tokenisation for Chinese text (character unigrams are a standard baseline for
    Chinese keyword statistics); punctuation is dropped. ``"我喜欢NLP!"`` → ``["我", "喜", "欢", "NLP"]``.
    """
    return _CHAR_TOKEN.findall(text)


class _Lower:
    def __init__(self, fn: Tokenizer):
        self.fn = fn

    def __call__(self, text: str) -> list[str]:
        return self.fn(text.lower())


def resolve_tokenizer(tokenizer: Any = None, *, lowercase: bool = False) -> Tokenizer:
    """Turn a tokenizer spec into ``str -> list[str]``.

    ``None`` or ``"whitespace"`` (the reference), ``"char"`` (:func:`char_tokenize`), any other string
    (a transformers tokenizer name or directory, loaded offline first with
    :func:`papercore.models.load_tokenizer`; its ``.tokenize``), a transformers tokenizer object, or
    a callable.
    """
    if tokenizer is None or tokenizer == "whitespace":
        fn: Tokenizer = whitespace_tokenize
    elif tokenizer == "char":
        fn = char_tokenize
    elif isinstance(tokenizer, str):
        from papercore.models import load_tokenizer

        fn = load_tokenizer(tokenizer).tokenize
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
    return tokenizer is None or tokenizer == "whitespace"


def check_script(texts: Iterable[str], tokenizer: Any) -> None:
    """Raise :class:`TokenizerRequiredError` when CJK text meets the whitespace default."""
    if not is_default_tokenizer(tokenizer):
        return
    for i, t in enumerate(texts):
        if _CJK.search(t):
            raise TokenizerRequiredError(
                f"text {i} contains CJK characters ({t[:20]!r}...), which whitespace splitting cannot "
                "tokenise; pass tokenizer= ('char' for one token per character, the model's transformers "
                "tokenizer, or a segmenter such as jieba.lcut; CLI: --tokenizer char)"
            )
