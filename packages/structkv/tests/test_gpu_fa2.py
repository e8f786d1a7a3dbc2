"""FlashAttention-2 path of ragged-cache decoding, checked on CPU with a stand-in FA2 kernel.

The stand-in is registered as ``"flash_attention_2"`` in transformers' ``AttentionInterface`` and
behaves as FA2 does with what it is handed: ``attention_mask`` must be ``None`` or a 2-D padding mask
(FA2's unpadding path misreads a 4-D float mask: the stand-in refuses one), the causal flag aligns the
(q × k) block bottom-right (query i sees keys j ≤ k − q + i), and position ids that look packed would
send FA2 down its varlen path (one sequence per run starting at the minimum position; the stand-in
does the same). Real FA2 numerics are still owed on a
GPU (bench/gpu_smoke.py --attn flash_attention_2).
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers.modeling_flash_attention_utils import (
    _is_packed_sequence,
    prepare_fa_kwargs_from_position_ids,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

import structkv.generation as gen
from structkv import PyramidKVPress, SnapKVPress, generate, prefill, question_logits
from structkv.errors import UnsupportedAttentionError

CALLS: list[dict] = []


def fake_flash_attention_2(
    module, query, key, value, attention_mask, scaling=None, is_causal=None, **kwargs
):
    """FA2's contract on CPU: [B, H, q, d] in, [B, q, H, d] out, bottom-right causal alignment."""
    b, h, q, d = query.shape
    k_len = key.shape[2]
    pos = kwargs.get("position_ids")
    CALLS.append({"mask": None if attention_mask is None else attention_mask.dim(), "q": q})
    if attention_mask is not None and attention_mask.dim() != 2:
        raise AssertionError(
            f"FA2 reads attention_mask as a 2-D padding mask, got {attention_mask.dim()}-D"
        )
    packed = pos is not None and bool(_is_packed_sequence(pos, b))
    CALLS[-1]["packed"] = packed
    g = h // key.shape[1]
    k = key.repeat_interleave(g, dim=1).float()
    v = value.repeat_interleave(g, dim=1).float()
    s = torch.matmul(query.float(), k.transpose(-1, -2)) * (scaling or d**-0.5)
    causal = module.is_causal if is_causal is None else is_causal
    if causal and not (gen.flash_attention_top_left() and q == 1):
        offset = 0 if gen.flash_attention_top_left() else k_len - q
        hidden = torch.arange(k_len)[None, :] > torch.arange(q)[:, None] + offset
        s = s.masked_fill(hidden, float("-inf"))
    if packed:  # FA2's varlen path: a new sequence starts wherever the position equals the minimum
        (cu, _), _ = prepare_fa_kwargs_from_position_ids(pos)
        seq = torch.zeros(k_len, dtype=torch.long)
        for start in cu[1:-1].tolist():
            seq[start:] += 1
        s = s.masked_fill(seq[None, :] != seq[:q, None], float("-inf"))
    if attention_mask is not None:  # padding: 0 = pad
        s = s.masked_fill(attention_mask[:, None, None, -k_len:] == 0, float("-inf"))
    out = torch.matmul(torch.softmax(s, dim=-1), v).to(query.dtype)
    return out.transpose(1, 2).contiguous(), None


@pytest.fixture
def fa2(monkeypatch):
    """Register the stand-in as "flash_attention_2" for the test; restore the real one after."""
    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS, "flash_attention_2", fake_flash_attention_2)
    CALLS.clear()
    return CALLS


def _as(model, impl: str):
    m = copy.deepcopy(model)
    m.config._attn_implementation = impl
    return m


@pytest.mark.parametrize(
    "press",
    [
        None,
        SnapKVPress(compression_ratio=0.7, window_size=8),
        PyramidKVPress(compression_ratio=0.7, window_size=8, beta=2),  # ragged: 72 … 24 entries
    ],
    ids=["full", "snapkv", "pyramidkv"],
)
def test_flash_attention_2_question_block_equals_sdpa(make_model, context_ids, fa2, press):
    ref = make_model("llama", "sdpa")
    fa = _as(ref, "flash_attention_2")
    q = torch.tensor([[5, 17, 99, 3, 250]])
    res_ref = prefill(ref, context_ids, press)
    res_fa = prefill(fa, context_ids, press)
    assert res_fa.cache_lengths == res_ref.cache_lengths
    if isinstance(press, PyramidKVPress):
        assert len(set(res_fa.cache_lengths)) == 8  # one length per layer: a ragged cache
    fa2.clear()
    got = question_logits(fa, res_fa, q)
    # the question block reached FA2 with attention_mask=None in every layer, as one q = 5 block
    assert fa2 and all(c["mask"] is None and c["q"] == 5 for c in fa2)
    torch.testing.assert_close(got, question_logits(ref, res_ref, q), atol=1e-5, rtol=1e-4)
    # greedy decoding (q = 1 steps) gives the same tokens
    assert torch.equal(
        generate(fa, res_fa, q, max_new_tokens=4), generate(ref, res_ref, q, max_new_tokens=4)
    )


def test_top_left_flash_attention_refuses_question_block(make_model, context_ids, fa2, monkeypatch):
    fa = _as(make_model("llama", "sdpa"), "flash_attention_2")
    res = prefill(fa, context_ids, SnapKVPress(compression_ratio=0.7, window_size=8))
    monkeypatch.setattr(gen, "flash_attention_top_left", lambda: True)  # flash-attn < 2.1
    q = torch.tensor([[5, 17, 99]])
    with pytest.raises(UnsupportedAttentionError, match="tokenwise"):
        question_logits(fa, res, q, "masked")
    # one token at a time is right under top-left alignment too (q = 1 is not causal there)
    tokenwise = question_logits(fa, res, q, "tokenwise")
    monkeypatch.setattr(gen, "flash_attention_top_left", lambda: False)
    torch.testing.assert_close(
        tokenwise, question_logits(fa, res, q, "masked"), atol=1e-5, rtol=1e-4
    )


def test_unknown_attention_implementation_is_refused(make_model, context_ids):
    model = _as(make_model("llama", "sdpa"), "flex_attention")
    res = prefill(make_model("llama", "sdpa"), context_ids)
    with pytest.raises(UnsupportedAttentionError, match="flex_attention"):
        question_logits(model, res, torch.tensor([[5, 6]]))
    assert gen.question_mask_mode("sdpa", 4) == "additive"
    assert gen.question_mask_mode("eager", 1) == "additive"
    assert gen.question_mask_mode("flash_attention_3", 4) == "none"


@pytest.mark.parametrize("method", ["fastkv", "gemfilter", "structkv"])
def test_flash_attention_2_prefill_of_token_dropping_presses_equals_sdpa(
    make_model, context_ids, fa2, method
):
    """Presses that drop tokens mid-network gather position ids to the kept (sorted) positions, which
    FA2 takes for packed sequences: its varlen path must still see one causal sequence."""
    from structkv.registry import make_press

    ref = make_model("llama", "sdpa")
    fa = _as(ref, "flash_attention_2")
    res_fa = prefill(fa, context_ids, make_press(method, 0.2, window_size=8))
    res_ref = prefill(ref, context_ids, make_press(method, 0.2, window_size=8))
    assert res_fa.cache_lengths == res_ref.cache_lengths
    torch.testing.assert_close(res_fa.last_logits, res_ref.last_logits, atol=1e-5, rtol=1e-4)
    q = torch.tensor([[5, 17, 99]])
    assert torch.equal(
        generate(fa, res_fa, q, max_new_tokens=3), generate(ref, res_ref, q, max_new_tokens=3)
    )
