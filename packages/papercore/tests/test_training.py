"""train_tiny_lm with a given tokenizer, on one torch thread; a word-level tiny Llama learns mod-10 sums."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
import torch

from papercore.testing import build_causal_tokenizer, build_word_tokenizer, tiny_causal_lm
from papercore.testing.training import (
    TRAINER_VERSION,
    ModSumTask,
    TrainSettings,
    greedy_accuracy,
    tokenizer_fingerprint,
    train_tiny_lm,
)

TINY = dict(hidden_size=32, num_hidden_layers=1, intermediate_size=64)


@dataclass(frozen=True)
class _ThreadProbe(ModSumTask):
    """ModSumTask that records the torch thread count each time a training sample is drawn."""

    name: str = "thread-probe"
    seen: list = field(default_factory=list, compare=False, hash=False)

    def params(self):
        return {"modulus": self.modulus, "max_operand": self.max_operand}

    def sample(self, rng):
        self.seen.append(torch.get_num_threads())
        return super().sample(rng)


def test_tokenizer_argument_threads_and_cache_key(tmp_path):
    assert TRAINER_VERSION >= 2
    word = build_word_tokenizer(texts=["0 + 1 ="])
    before = torch.get_num_threads()
    probe = _ThreadProbe()
    settings = TrainSettings(steps=3, batch_size=4)
    out = train_tiny_lm(
        probe, cache_dir=tmp_path, settings=settings, model_kwargs=TINY, tokenizer=word
    )
    assert set(probe.seen) == {1}  # trained on one torch thread (the default)
    assert torch.get_num_threads() == before  # and the caller's count is restored

    from transformers import AutoModelForCausalLM, AutoTokenizer

    saved = AutoTokenizer.from_pretrained(out)
    assert saved.get_vocab() == word.get_vocab()  # the given tokenizer is the one saved
    assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size == len(word)

    # same tokenizer → cached (no training); another tokenizer (or none) → another model
    n = len(probe.seen)
    again = train_tiny_lm(
        probe, cache_dir=tmp_path, settings=settings, model_kwargs=TINY, tokenizer=word
    )
    assert again == out and len(probe.seen) == n
    other = build_word_tokenizer(["plus"], texts=["0 + 1 ="])
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(word)
    assert tokenizer_fingerprint(build_word_tokenizer(texts=["0 + 1 ="])) == (
        tokenizer_fingerprint(word)
    )
    out2 = train_tiny_lm(
        probe, cache_dir=tmp_path, settings=settings, model_kwargs=TINY, tokenizer=other
    )
    assert out2 != out and len(probe.seen) > n
    # threads=2 is honoured during training (thread count is not part of the cache key)
    probe.seen.clear()
    train_tiny_lm(
        probe,
        cache_dir=tmp_path / "two",
        settings=settings,
        model_kwargs=TINY,
        tokenizer=word,
        threads=2,
    )
    assert set(probe.seen) == {2} and torch.get_num_threads() == before


def test_bad_arguments_are_named(tmp_path):
    word = build_word_tokenizer()
    with pytest.raises(ValueError, match="either tokenizer= or tokenizer_kwargs="):
        train_tiny_lm(
            ModSumTask(), cache_dir=tmp_path, tokenizer=word, tokenizer_kwargs={"vocab_size": 300}
        )
    with pytest.raises(ValueError, match="threads must be ≥ 1, got 0"):
        train_tiny_lm(ModSumTask(), cache_dir=tmp_path, tokenizer=word, threads=0)
    with pytest.raises(ValueError, match="no held-out pairs"):
        ModSumTask(holdout=0).heldout_sample(random.Random(0))
    with pytest.raises(ValueError, match="samples is empty"):
        greedy_accuracy(None, word, [])


def test_mod_sum_task_holds_pairs_out():
    task = ModSumTask(max_operand=99)
    rng = random.Random(0)
    train = [task.sample(rng) for _ in range(500)]
    held = [task.heldout_sample(rng) for _ in range(200)]

    def pair(prompt):
        a, _, b, _ = prompt.split()
        return int(a), int(b)

    assert not any(task.is_heldout(*pair(p)) for p, _ in train)
    assert all(task.is_heldout(*pair(p)) for p, _ in held)
    for p, answer in train + held:
        x, y = pair(p)
        assert answer == f" {x + y} mod 10 = {(x + y) % 10}"
    assert ModSumTask(show_sum=False).render(8, 5) == ("8 + 5 =", " 3")
    small = ModSumTask().heldout_samples()  # single digits: 15 of the 100 pairs
    assert len(small) == 15 and small[0] == ("0 + 0 =", " 0 mod 10 = 0")
    word = build_word_tokenizer(["mod"], texts=["0 + 1 ="])
    ids = word(small[3][1], add_special_tokens=False)["input_ids"]
    assert word.unk_token_id not in ids and word.decode(ids) == small[3][1]


def test_greedy_accuracy_counts_exact_matches():
    tok = build_word_tokenizer(texts=["0 + 1 ="])

    class Oracle(torch.nn.Module):
        """Logits that put all mass on the true next token of each row (and on "9" for row 1's answer)."""

        def forward(self, input_ids, attention_mask):
            logits = torch.zeros(*input_ids.shape, len(tok))
            nxt = torch.roll(input_ids, -1, dims=1)
            logits.scatter_(2, nxt.unsqueeze(-1), 1.0)
            logits[1, -2] = 0
            logits[1, -2, tok.convert_tokens_to_ids("9")] = 1.0
            return type("Out", (), {"logits": logits})()

    samples = [("3 + 4 =", " 7"), ("5 + 5 =", " 0")]  # same length: row 1's answer digit is at -1
    assert greedy_accuracy(Oracle(), tok, samples) == 0.5


def test_bpe_and_word_tokenizers_both_fit_the_builders():
    # the builders size the model from the tokenizer given: word-level vocabularies are tiny
    word = build_word_tokenizer(texts=["0 + 1 ="])
    assert tiny_causal_lm(tokenizer=word, **TINY).config.vocab_size == len(word) < 40
    assert tiny_causal_lm(**TINY).config.vocab_size == len(build_causal_tokenizer())


@pytest.mark.slow
def test_word_level_tiny_llama_learns_mod10_sums_on_one_thread(tmp_path):
    """Pairs never trained on answered ≥ 90 % right (measured 14/15 after 1,200 steps, ~60–120 s on one thread).

    FACTS.md: with the byte-level BPE tokenizer the same kind of model reached 0.02 in 2,000 steps; the bare
    residue (``show_sum=False``) stays at chance for this budget (see ModSumTask).
    """
    task = ModSumTask(max_operand=9, holdout=7, show_sum=True)
    tok = build_word_tokenizer(["mod"], texts=["0 + 1 ="])
    out = train_tiny_lm(
        task,
        cache_dir=tmp_path,
        settings=TrainSettings(steps=1200, batch_size=32, lr=3e-3, weight_decay=0.1),
        model_kwargs=dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128),
        tokenizer=tok,
    )
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out).eval()
    held = task.heldout_samples()
    assert len(held) == 15
    assert greedy_accuracy(model, tok, held) >= 0.9
    every = [task.render(a, b) for a in range(10) for b in range(10)]
    assert greedy_accuracy(model, tok, every) >= 0.95
