"""GPU smoke test: prefill + eval on a real model, full vs StructKV vs SnapKV, with TTFT / memory / accuracy.

    python bench/gpu_smoke.py --model /models/Llama-3.1-8B-Instruct --device cuda --dtype bfloat16 \
        --attn flash_attention_2 --context-tokens 16000 --n 20 --kv-budget 0.1

Steps, each printed:
1. on CUDA with triton installed, the Triton in-degree kernels against the PyTorch reference on the GPU
   (head dim 128, bf16, B = 2, strided window queries, n = 4096; the parity run the CPU interpreter
   tests cannot give);
2. one prefill of the first context per method: realised prefill cost, KV fraction, pivot layer;
3. ``evaluate_method`` over ``--n`` built-in multi-key needle-in-a-haystack records in the model's chat
   template: accuracy (needle found in the answer), its ratio to full, time to first token, decode
   latency per token, peak CUDA memory (n/a on CPU).
Writes every number to ``--output`` (JSON). Runs on CPU with a tiny model too (tests/test_gpu_smoke.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="Local model directory.")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N.")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16.")
    p.add_argument(
        "--attn", default="sdpa", help="sdpa, eager, flash_attention_2, flash_attention_3."
    )
    p.add_argument("--use-triton", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--question-mode", default="masked", choices=["masked", "tokenwise"])
    p.add_argument("--methods", default="full,snapkv,structkv")
    p.add_argument("--kv-budget", type=float, default=0.1, help="Fraction of the context KV kept.")
    p.add_argument("--prefill-budget", type=float, default=0.6, help="StructKV compute budget.")
    p.add_argument("--window-size", type=int, default=32)
    p.add_argument("--context-tokens", type=int, default=8000, help="Haystack length (tokens).")
    p.add_argument("--n", type=int, default=20, help="Number of haystacks.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-chat-template", action="store_true")
    p.add_argument("--output", type=Path, default=Path("bench/results/gpu_smoke.json"))
    return p.parse_args(argv)


def kernel_parity(device) -> dict | None:
    """Triton vs PyTorch in-degree on the GPU; None when not on CUDA or triton is missing."""
    import torch

    from structkv.kernels import triton_available, window_indegree, window_indegree_torch

    if device.type != "cuda" or not triton_available():
        return None
    g = torch.Generator(device=device).manual_seed(0)
    b, h, h_kv, n, d, w = 2, 32, 8, 4096, 128, 32
    q_all = torch.randn(b, n, h, d, generator=g, device=device).to(torch.bfloat16).transpose(1, 2)
    q = q_all[:, :, n - w :]
    k = torch.randn(b, h_kv, n, d, generator=g, device=device).to(torch.bfloat16)
    pos = torch.arange(n - w, n, device=device)
    tri = window_indegree(q, k, pos, d**-0.5, use_triton=True)
    ref = window_indegree_torch(q, k, pos, d**-0.5)
    return {
        "max_abs_diff_indegree": float((tri[0] - ref[0]).abs().max()),
        "max_abs_diff_entropy": float((tri[1] - ref[1]).abs().max()),
        "shape": [b, h, h_kv, n, d, w],
    }


def main(argv: list[str] | None = None) -> dict:
    import torch

    from papercore.io import write_json
    from papercore.models import load_model, load_tokenizer
    from structkv._compat import base_model
    from structkv.cli import _triton_kwargs, runtime_options
    from structkv.evaluate import build_press, evaluate_method, records_to_eval_samples
    from structkv.generation import prefill
    from structkv.registry import PRESSES
    from structkv.synthetic.text_tasks import niah_records

    args = parse_args(argv)
    opts = runtime_options(args.dtype, args.device, args.attn, args.use_triton, args.question_mode)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in PRESSES:
            raise SystemExit(f"unknown method {m!r}; expected one of {sorted(PRESSES)}")
    t0 = time.perf_counter()
    model = load_model(
        args.model, dtype=opts["dtype"], device=opts["device"], attn_implementation=opts["attn"]
    )
    tok = load_tokenizer(args.model)
    device = next(model.parameters()).device
    print(
        f"model {args.model}: {type(model).__name__}, {len(base_model(model).layers)} layers, "
        f"{next(model.parameters()).dtype}, attn={model.config._attn_implementation}, "
        f"device={device}, loaded in {time.perf_counter() - t0:.1f}s"
    )
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "device": str(device)}
    parity = kernel_parity(device)
    report["triton_parity"] = parity
    print(
        f"triton kernel parity on GPU: {parity if parity is not None else 'skipped (no CUDA or no triton)'}"
    )

    records = niah_records(args.n, args.context_tokens, tok, seed=args.seed)
    samples = records_to_eval_samples(records, tok, chat_template=not args.no_chat_template)
    n_layers = len(base_model(model).layers)
    print(f"{len(samples)} haystacks of {int(samples[0].context_ids.numel())} context tokens")

    report["prefill"] = {}
    for m in methods:
        kw = _triton_kwargs(m, opts["use_triton"])
        press = build_press(
            m, args.kv_budget, args.prefill_budget, n_layers, args.window_size, **kw
        )
        res = prefill(model, samples[0].context_ids[None].to(device), press)
        st = res.stats
        report["prefill"][m] = {
            k: st.get(k) for k in ("prefill_cost", "kv_fraction", "pivot_layer", "skipped")
        }
        print(
            f"prefill {m:10s} cost={st['prefill_cost']:.2f} kv_fraction={st['kv_fraction']:.3f} "
            f"pivot={st.get('pivot_layer')}"
        )
        del res
    rows = []
    decode = lambda ids: tok.decode(ids, skip_special_tokens=True)  # noqa: E731
    for m in methods:
        budget = 0.999999 if m == "full" else args.kv_budget
        r = evaluate_method(
            model,
            samples,
            m,
            budget,
            args.prefill_budget,
            args.window_size,
            decode=decode,
            eos_token_id=tok.eos_token_id,
            press_kwargs=_triton_kwargs(m, opts["use_triton"]),
            question_mode=opts["question_mode"],
        )
        if m == "full":
            r["kv_budget"] = 1.0
        rows.append(r)
    full = next((r["accuracy"] for r in rows if r["method"] == "full"), None)
    for r in rows:
        mem = r["peak_memory_bytes"]
        ratio = f"{r['accuracy'] / full:.2f}x full" if full else "n/a"
        dec = r["decode_s_per_token"]
        print(
            f"{r['method']:10s} kv={r['kv_budget']:<6g} acc={r['accuracy']:.3f} ({ratio}) "
            f"ttft={r['ttft_s']:.3f}s decode={'n/a' if dec is None else f'{1000 * dec:.1f}ms/token'} "
            f"peak_mem={'n/a (CPU)' if mem is None else f'{mem / 2**30:.2f} GiB'} "
            f"prefill_cost={r['prefill_cost']:.2f} kv_fraction={r['kv_fraction']:.3f}"
        )
    report["results"] = rows
    report["torch"] = torch.__version__
    write_json(args.output, report)
    print(f"wrote {args.output}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
