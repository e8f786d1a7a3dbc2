"""A tokenizer built by papercore survives save_model_dir → load_tokenizer with identical ids.

transformers 5's AutoTokenizer builds Qwen2's own BPE tokenizer for a qwen2 model directory,
whatever tokenizer.json holds: a word-level vocabulary then loses words and spaces.
"""

from __future__ import annotations

import json

import pytest

from papercore.models import load_tokenizer
from papercore.testing import (
    build_causal_tokenizer,
    build_word_tokenizer,
    save_model_dir,
    tiny_causal_lm,
)

TEXT = "add 3 4 mod 12 = 7"


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_roundtrip_keeps_ids(arch, kind, tmp_path, one_torch_thread):
    tok = build_word_tokenizer(["add", "mod"]) if kind == "word" else build_causal_tokenizer()
    save_model_dir(tiny_causal_lm(arch, tokenizer=tok), tok, tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    again = load_tokenizer(tmp_path)
    assert again(TEXT)["input_ids"] == tok(TEXT)["input_ids"]
    assert again.decode(again(TEXT)["input_ids"]) == tok.decode(tok(TEXT)["input_ids"])
    assert again.eos_token == tok.eos_token and again.chat_template == tok.chat_template


def test_autotokenizer_alone_changes_qwen2_word_ids(tmp_path, one_torch_thread):
    """Documents why load_tokenizer reads the declared class itself (fails once transformers
    honours tokenizer_class for qwen2; then the special case can go)."""
    from transformers import AutoTokenizer

    tok = build_word_tokenizer(["add", "mod"])
    save_model_dir(tiny_causal_lm("qwen2", tokenizer=tok), tok, tmp_path)
    auto = AutoTokenizer.from_pretrained(tmp_path)
    assert auto(TEXT)["input_ids"] != tok(TEXT)["input_ids"]
