"""papercore.testing.build_word_tokenizer: one token per digit / punctuation / whitespace / word."""

from __future__ import annotations

import subprocess
import sys

import pytest

from papercore.testing import CAUSAL_SPECIAL_TOKENS, build_causal_tokenizer, build_word_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_word_tokenizer(["add", "mul"], texts=["x = 12 + 7", "hello world!"])


def test_one_token_per_digit_keyword_and_space(tok):
    ids = tok("add 3 4 = 7", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["add", " ", "3", " ", "4", " ", "=", " ", "7"]
    assert tok.convert_ids_to_tokens(tok("12 + 7")["input_ids"]) == ["1", "2", " ", "+", " ", "7"]
    calls = build_word_tokenizer(["mul"], texts=["f(a, b)"])
    assert calls.convert_ids_to_tokens(calls("mul(a,9)")["input_ids"]) == [
        "mul",
        "(",
        "a",
        ",",
        "9",
        ")",
    ]


@pytest.mark.parametrize(
    "text",
    ["add 3 4 = 7", "12 + 7", "x = 12 + 7", "hello  world!\n", "mul 905 = 0\tadd", "x+12=7!"],
)
def test_decode_round_trips_known_text_exactly(tok, text):
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text


def test_vocabulary_order_and_special_tokens(tok):
    vocab = tok.get_vocab()
    by_id = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    assert by_id == [
        *CAUSAL_SPECIAL_TOKENS,
        "[UNK]",
        " ",
        "\n",
        "\t",
        *"0123456789",
        *"!+=",  # punctuation seen, sorted
        *("system", "user", "assistant", "tool"),  # chat roles (there is a chat template)
        "add",  # the given words, in order
        "mul",
        "x",  # then the words of texts, by first appearance
        "hello",
        "world",
    ]
    assert len(tok) == len(vocab)
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"
    assert tok.eos_token_id == tok.pad_token_id == 0
    assert tok.unk_token == "[UNK]"
    # special tokens are never split, and they are not words of the texts
    ids = tok("add<|im_end|>3", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["add", "<|im_end|>", "3"]
    assert "im_end" not in build_word_tokenizer(texts=["<|im_start|>user hi<|im_end|>"]).get_vocab()


def test_unknown_words_become_unk(tok):
    ids = tok("zebra 3")["input_ids"]
    assert ids[0] == tok.unk_token_id
    assert tok.decode(ids) == "[UNK] 3"
    assert tok.decode(tok("(3)")["input_ids"]) == "[UNK]3[UNK]"  # punctuation never seen
    assert tok.decode(ids, skip_special_tokens=True) == " 3"


def test_deterministic_across_processes(tok):
    code = (
        "from papercore.testing import build_word_tokenizer;"
        "import json;"
        "t = build_word_tokenizer(['add', 'mul'], texts=['x = 12 + 7', 'hello world!']);"
        "print(json.dumps(sorted(t.get_vocab().items(), key=lambda kv: kv[1])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    import json

    assert [tuple(x) for x in json.loads(out.stdout)] == sorted(
        tok.get_vocab().items(), key=lambda kv: kv[1]
    )


def test_chat_template_and_save_load(tok, tmp_path):
    from transformers import AutoTokenizer

    msgs = [{"role": "user", "content": "add 3 4"}, {"role": "assistant", "content": "7"}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text == "<|im_start|>user\nadd 3 4<|im_end|>\n<|im_start|>assistant\n7<|im_end|>\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids) == text
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.get_vocab() == tok.get_vocab()
    assert again.decode(again("12 + 7")["input_ids"]) == "12 + 7"
    assert again.eos_token == "<|endoftext|>" and again.unk_token == "[UNK]"
    assert build_word_tokenizer(chat_template=None).chat_template is None


def test_digits_are_single_tokens_unlike_bpe(tok):
    # BPE merges digit runs unpredictably ("12" may be one token, "13" two); the word tokenizer never does
    bpe = build_causal_tokenizer()
    lengths = {len(bpe(str(n), add_special_tokens=False)["input_ids"]) for n in range(10, 100)}
    assert lengths != {2}  # BPE: some two-digit numbers are single merges
    assert {len(tok(str(n))["input_ids"]) for n in range(10, 100)} == {2}


def test_bad_input_is_named():
    with pytest.raises(
        ValueError, match=r"word \"don't\" is not one pre-token.*\['don', \"'\", 't'\]"
    ):
        build_word_tokenizer(["don't"])
    with pytest.raises(ValueError, match=r"'x1' is not one pre-token"):
        build_word_tokenizer(["x1"])
    with pytest.raises(TypeError, match="words must be strings, got int 3"):
        build_word_tokenizer([3])
    with pytest.raises(ValueError, match="special_tokens is empty"):
        build_word_tokenizer(special_tokens=())
    custom = build_word_tokenizer(special_tokens=("<eos>", "<sep>"), chat_template=None)
    assert custom.eos_token == custom.pad_token == "<eos>" and custom.eos_token_id == 0
