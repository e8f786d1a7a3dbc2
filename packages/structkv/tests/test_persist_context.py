"""Compress once, ask many, across processes: save_context / load_context."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from structkv import generate, prefill
from structkv.errors import PersistError
from structkv.persist import load_context, read_metadata, save_context

QUESTIONS = [[5, 17, 99, 3], [40, 41], [7, 8, 9, 10, 11, 12]]

_CHILD = r"""
import json, sys
import torch
from papercore.models import load_model
from structkv import generate
from structkv.persist import load_context
model = load_model(sys.argv[1], dtype="float32", device="cpu", attn_implementation="sdpa")
res = load_context(sys.argv[2], model)
answers = [generate(model, res, torch.tensor([q]), max_new_tokens=6)[0].tolist()
           for q in json.loads(sys.argv[3])]
print(json.dumps({"answers": answers, "lengths": res.cache_lengths, "pivot": res.pivot_layer,
                  "kv_fraction": res.stats.get("kv_fraction")}))
"""


@pytest.fixture(scope="module")
def saved(model_dir8, tmp_path_factory):
    """A StructKV-compressed context of the saved 8-layer model, its in-process answers, the file."""
    from papercore.models import load_model
    from structkv.registry import make_press

    model = load_model(model_dir8, dtype="float32", device="cpu", attn_implementation="sdpa")
    ids = torch.randint(3, 500, (1, 200), generator=torch.Generator().manual_seed(3))
    res = prefill(model, ids, make_press("structkv", 0.2, window_size=8))
    answers = [
        generate(model, res, torch.tensor([q]), max_new_tokens=6)[0].tolist() for q in QUESTIONS
    ]
    path = save_context(res, tmp_path_factory.mktemp("ctx") / "ctx.skv.safetensors", model)
    return model, res, answers, path


def test_answers_from_a_context_loaded_in_another_process_equal_in_process(saved, model_dir8):
    _model, res, answers, path = saved
    assert max(res.cache_lengths) < 200  # compressed
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(model_dir8), str(path), json.dumps(QUESTIONS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    assert child["answers"] == answers
    assert child["lengths"] == res.cache_lengths and child["pivot"] == res.pivot_layer
    assert child["kv_fraction"] == pytest.approx(res.stats["kv_fraction"])


def test_loaded_context_equals_the_saved_one_in_process(saved):
    model, res, answers, path = saved
    back = load_context(path, model)
    assert back.cache_lengths == res.cache_lengths and back.context_length == res.context_length
    for i in range(len(res.cache_lengths)):
        n = res.cache_lengths[i]
        torch.testing.assert_close(back.cache.layers[i].keys, res.cache.layers[i].keys[:, :, :n])
    for key, idx in res.kept_indices.items():
        if isinstance(idx, torch.Tensor):
            assert torch.equal(back.kept_indices[key], idx.cpu())
    # the loaded context serves many questions too (trimmed back between them)
    got = [
        generate(model, back, torch.tensor([q]), max_new_tokens=6)[0].tolist() for q in QUESTIONS
    ]
    assert got == answers
    meta = read_metadata(path)
    assert meta["model"]["n_layers"] == 8 and meta["stats"]["press"] == res.stats["press"]


def test_never_overwrites_without_overwrite_true(saved, tmp_path):
    model, res, _, path = saved
    before = path.read_bytes()
    with pytest.raises(PersistError, match="overwrite=True"):
        save_context(res, path, model)
    assert path.read_bytes() == before
    other = prefill(
        model, torch.randint(3, 500, (1, 64), generator=torch.Generator().manual_seed(9))
    )
    target = tmp_path / "c.safetensors"
    save_context(res, target, model)
    save_context(other, target, model, overwrite=True)
    assert read_metadata(target)["cache_lengths"] == [64] * 8
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp files left


def test_refuses_a_different_model_dtype_or_file(saved, make_model, tmp_path):
    from papercore.testing.builders import tiny_causal_lm

    model, _, _, path = saved
    with pytest.raises(PersistError, match="num_hidden_layers"):
        load_context(path, make_model("llama", "sdpa", layers=4))
    # same config, other weights
    twin = tiny_causal_lm("llama", num_hidden_layers=8, seed=12345)
    with pytest.raises(PersistError, match="same config but different weights"):
        load_context(path, twin)
    with pytest.raises(PersistError, match="dtype=float32"):
        load_context(path, model.to(torch.bfloat16))
    model.to(torch.float32)
    bad = tmp_path / "x.safetensors"
    bad.write_text("not a context")
    with pytest.raises(PersistError, match="not a safetensors file"):
        load_context(bad, model)
    with pytest.raises(PersistError, match="no saved context"):
        load_context(tmp_path / "missing.safetensors", model)
    # an ordinary safetensors file that is not a structkv context
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "y.safetensors"))
    with pytest.raises(PersistError, match="not a structkv context"):
        load_context(tmp_path / "y.safetensors", model)
