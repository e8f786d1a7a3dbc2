"""bench/gpu_smoke.py runs end to end on CPU with a tiny saved model (the GPU run itself is owed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_smoke.py"


def _module():
    spec = importlib.util.spec_from_file_location("structkv_gpu_smoke", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_smoke_runs_on_cpu_with_a_tiny_model(model_dir8, tmp_path, capsys):
    out = tmp_path / "smoke.json"
    report = _module().main(
        [
            "--model", str(model_dir8), "--device", "cpu", "--dtype", "float32",
            "--n", "1", "--context-tokens", "200", "--window-size", "8", "--kv-budget", "0.3",
            "--output", str(out),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "skipped (no CUDA or no triton)" in printed and "peak_mem=n/a (CPU)" in printed
    rows = json.loads(out.read_text())["results"]
    assert [r["method"] for r in rows] == ["full", "snapkv", "structkv"]
    for r in rows:
        assert r["ttft_s"] > 0 and r["peak_memory_bytes"] is None and 0 <= r["accuracy"] <= 1
    # StructKV really dropped tokens after its pivot (the pivot may land past prefill_budget, then only
    # the memory budget propagates), and the smoke's prefill report is the press's own statistics
    assert rows[2]["prefill_cost"] < 1.0 and rows[1]["prefill_cost"] == 1.0
    assert report["prefill"]["structkv"]["pivot_layer"] is not None


def test_gpu_smoke_refuses_bad_options_before_loading(tmp_path):
    from structkv.errors import OptionError

    mod = _module()
    with pytest.raises(OptionError, match="CUDA"):
        mod.main(
            ["--model", str(tmp_path / "nowhere"), "--attn", "flash_attention_2", "--device", "cpu"]
        )
    with pytest.raises(OptionError, match="dtype"):
        mod.main(["--model", str(tmp_path / "nowhere"), "--dtype", "float8"])
