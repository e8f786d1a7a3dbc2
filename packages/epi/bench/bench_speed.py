"""Step-time overhead of EPI, measured interleaved (plain step and EPI step alternate, order flipped each
round, same batch) on a tiny Llama in a plain torch loop (AdamW, clipping). EPI: p = 0.01, mask rebuilt every
10 steps (rebuild steps are included in the mean; the median shows the per-step hook cost).

    uv run --all-packages --all-extras python packages/epi/bench/bench_speed.py
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    from papercore.machine import bench_parser, machine_info

    p = bench_parser(__doc__, HERE / "results" / "speed.json")
    p.add_argument("--rounds", type=int, default=120)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    args = p.parse_args()

    import torch

    from epi import EPIConfig, EvolvingIsolation, wrap_optimizer
    from papercore.testing import build_causal_tokenizer, tiny_causal_lm

    torch.set_num_threads(1)
    tok = build_causal_tokenizer()

    def make():
        m = tiny_causal_lm(
            "llama",
            tokenizer=tok,
            seed=0,
            hidden_size=args.hidden,
            num_hidden_layers=args.layers,
            intermediate_size=2 * args.hidden,
        ).train()
        return m, torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.01)

    plain, opt_plain = make()
    epi, opt_epi = make()
    iso = EvolvingIsolation(epi, EPIConfig(isolation_ratio=0.01, update_interval=10))
    wrap_optimizer(opt_epi, iso)
    g = torch.Generator().manual_seed(0)

    def step(model, opt, x, use_iso: bool) -> float:
        t = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        if use_iso:
            iso.after_backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        return time.perf_counter() - t

    times: dict[str, list[float]] = {"plain": [], "epi": []}
    for r in range(args.rounds + 5):
        x = torch.randint(5, len(tok), (16, 32), generator=g)
        order = [("plain", plain, opt_plain, False), ("epi", epi, opt_epi, True)]
        if r % 2:
            order.reverse()
        for name, m, o, u in order:
            dt = step(m, o, x, u)
            if r >= 5:  # warm-up rounds dropped
                times[name].append(dt)
    n_params = sum(p.numel() for p in epi.parameters())
    res = {
        "machine": machine_info(1),
        "model": f"tiny Llama {args.layers} layers hidden {args.hidden} ({n_params / 1e6:.2f} M params), batch 16×32",
        "tracked_elements": iso.tracker.numel,
        "rounds": args.rounds,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "mean_s": {k: statistics.mean(v) for k, v in times.items()},
        "median_ratio": statistics.median(times["epi"]) / statistics.median(times["plain"]),
        "mean_ratio": statistics.mean(times["epi"]) / statistics.mean(times["plain"]),
        "mask_updates": len(iso.history),
    }
    print(f"machine: {res['machine']}")
    print(
        f"model: {res['model']}; EPI tracks {res['tracked_elements']} elements, p=0.01, rebuild every 10 steps"
    )
    print(
        f"step time plain {res['median_s']['plain'] * 1e3:.1f} ms, EPI {res['median_s']['epi'] * 1e3:.1f} ms (median); "
        f"ratio median {res['median_ratio']:.2f}, mean (incl. {res['mask_updates']} rebuilds) {res['mean_ratio']:.2f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
