"""The sequential A → B lookup protocol with a tiny Llama inside ``transformers.Trainer`` (one seed).

Rows are ``<task tag> <key> = <value>`` (word-level tokenizer: one token each; loss on the value + EOS).
Phase A: ``Trainer`` + ``EPICallback`` tracking importance only (no mask yet). Phase B (one fresh ``Trainer``
per method, from the same end-of-A weights and EMA): plain, random mask, static mask (A's importance, built
at the start of B), EPI (the same mask, refreshed every ``update_interval`` steps from a gradient on A's
prompts labelled by the end-of-A model's predictions). Old-task accuracy is measured every 10 steps of B.

    uv run --all-packages --all-extras python packages/epi/bench/bench_llama.py
"""

from __future__ import annotations

import copy
import itertools
import json
import statistics
import time
import warnings
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    from papercore.machine import bench_parser, machine_info

    p = bench_parser(__doc__, HERE / "results" / "llama_trainer.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ratio", type=float, default=0.3)
    p.add_argument("--conflict", type=float, default=1.0)
    p.add_argument("--steps-a", type=int, default=300)
    p.add_argument("--steps-b", type=int, default=150)
    p.add_argument("--interval", type=int, default=10)
    p.add_argument("--lr-b", type=float, default=1e-3, help="learning rate of phase B")
    args = p.parse_args()

    import datasets
    import torch
    from transformers import Trainer, TrainerCallback

    from epi import (
        EPICallback,
        EPIConfig,
        EPIWarning,
        EvolvingIsolation,
        RandomIsolation,
        StaticIsolation,
    )
    from papercore.testing import build_word_tokenizer, tiny_causal_lm
    from papercore.trainer_args import training_args

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    n_keys, n_values = 64, 32
    letters = "abcdefghij"
    keys = ["k" + a + b for a, b in itertools.product(letters, repeat=2)][: 2 * n_keys]
    values = ["v" + a + b for a, b in itertools.product(letters, repeat=2)][:n_values]
    tok = build_word_tokenizer(["A", "B", *keys, *values], chat_template=None)
    ids = tok.convert_tokens_to_ids
    eq, eos = ids("="), tok.eos_token_id

    g = torch.Generator().manual_seed(args.seed)
    n_shared = round(args.conflict * n_keys)
    keys_b = torch.cat(
        [
            torch.randperm(n_keys, generator=g)[:n_shared],
            torch.arange(n_keys, 2 * n_keys - n_shared),
        ]
    )
    val_a = torch.randint(0, n_values, (n_keys,), generator=g)
    val_b = torch.randint(0, n_values, (n_keys,), generator=g)
    for i in range(n_shared):
        if val_b[i] == val_a[keys_b[i]]:
            val_b[i] = (val_a[keys_b[i]] + 1) % n_values

    def rows(tag: str, ks: list[int], vs: list[int]) -> dict[str, list]:
        inp = [
            [ids(tag), ids(keys[k]), eq, ids(values[v]), eos] for k, v in zip(ks, vs, strict=True)
        ]
        return {
            "input_ids": inp,
            "labels": [[-100, -100, -100, x[3], eos] for x in inp],
            "attention_mask": [[1] * 5 for _ in inp],
        }

    task_a = rows("A", list(range(n_keys)), val_a.tolist())
    task_b = rows("B", keys_b.tolist(), val_b.tolist())

    def accuracy(model, t: dict[str, list]) -> float:
        x = torch.tensor(t["input_ids"])
        with torch.no_grad():
            pred = model(input_ids=x[:, :3]).logits[:, -1].argmax(-1)
        return float((pred == x[:, 3]).float().mean())

    def targs(out: str, steps: int, lr: float = 3e-3):
        return training_args(
            output_dir=out,
            per_device_train_batch_size=32,
            learning_rate=lr,
            weight_decay=0.01,
            max_steps=steps,
            lr_scheduler_type="constant",
            save_strategy="no",
            logging_steps=10**6,
            disable_tqdm=True,
            seed=args.seed,
            data_seed=args.seed,
            max_grad_norm=1.0,
        )

    def data(t: dict[str, list], repeats: int) -> datasets.Dataset:
        return datasets.Dataset.from_dict({k: v * repeats for k, v in t.items()})

    model = tiny_causal_lm(
        "llama", tokenizer=tok, seed=args.seed, hidden_size=64, num_hidden_layers=2
    )
    cfg = EPIConfig(
        isolation_ratio=args.ratio, update_interval=10**6, warmup_steps=10**6, exclude=None
    )
    cb_a = EPICallback(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EPIWarning)
        Trainer(
            model=model,
            args=targs("/tmp/epi-llama-a", args.steps_a),
            train_dataset=data(task_a, 200),
            callbacks=[cb_a],
        ).train()
    acc_a_end = accuracy(model, task_a)
    weights_a = copy.deepcopy(model.state_dict())
    state_a = cb_a.isolation.state_dict()
    x_a = torch.tensor(task_a["input_ids"])
    with torch.no_grad():
        pseudo = x_a.clone()
        pseudo[:, 3] = model(input_ids=x_a[:, :3]).logits[:, -1].argmax(-1)
    pseudo_labels = torch.full_like(pseudo, -100)
    pseudo_labels[:, 3] = pseudo[:, 3]

    class Eval(TrainerCallback):
        def __init__(self) -> None:
            self.old: list[float] = []
            self.new: list[float] = []

        def on_step_end(self, a, state, control, model=None, **kw):
            if state.global_step % 10 == 0:
                self.old.append(accuracy(model, task_a))
                self.new.append(accuracy(model, task_b))

    class Refresh(TrainerCallback):
        """EPI in the sequential protocol: old-task importance from A's prompts (pseudo-labels), then rebuild."""

        def __init__(self, cb: EPICallback) -> None:
            self.cb = cb

        def on_step_begin(self, a, state, control, model=None, **kw):
            if state.global_step > 0 and state.global_step % args.interval == 0:
                model.zero_grad()
                model(input_ids=pseudo, labels=pseudo_labels).loss.backward()
                self.cb.isolation.after_backward()
                model.zero_grad()
                self.cb.isolation.rebuild_mask(step=state.global_step)

    results = {}
    for method in ("plain", "random", "static", "epi"):
        t1 = time.perf_counter()
        model.load_state_dict(weights_a)
        callbacks: list = [Eval()]
        cb = None
        if method != "plain":
            mcfg = copy.deepcopy(cfg)
            mcfg.capture = "manual"
            cls = {"random": RandomIsolation, "static": StaticIsolation, "epi": EvolvingIsolation}[
                method
            ]
            cb = EPICallback(mcfg, isolation_cls=cls)
            cb.isolation = cls(model, mcfg)
            cb.isolation.load_state_dict(state_a)
            cb.isolation.rebuild_mask(step=0)
            callbacks.append(cb)
            if method == "epi":
                callbacks.append(Refresh(cb))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EPIWarning)
            Trainer(
                model=model,
                args=targs(f"/tmp/epi-llama-{method}", args.steps_b, args.lr_b),
                train_dataset=data(task_b, 200),
                callbacks=callbacks,
            ).train()
        ev = callbacks[0]
        results[method] = {
            "mean_old_acc_during_b": statistics.mean(ev.old),
            "final_new_acc": ev.new[-1],
            "curve_old": ev.old,
            "jaccard": [h["jaccard"] for h in cb.isolation.history[1:]] if cb else [],
            "seconds": time.perf_counter() - t1,
        }
    print(f"machine: {machine_info(1)}")
    print(
        f"model: tiny Llama (2 layers, hidden 64, word-level vocab {len(tok)}), transformers.Trainer, AdamW lr 3e-3 (A) / {args.lr_b} (B)"
    )
    print(
        f"data: 64 lookup rows per task, conflict {args.conflict}, p={args.ratio}, seed {args.seed}; "
        f"A accuracy at end of A {acc_a_end:.3f}"
    )
    base = results["plain"]["mean_old_acc_during_b"]
    for m, r in results.items():
        print(
            f"{m:>7}: old acc during B {r['mean_old_acc_during_b']:.3f} (×{r['mean_old_acc_during_b'] / max(base, 1e-9):.2f} "
            f"plain)  new acc {r['final_new_acc']:.3f}"
        )
    e, s, rnd = (results[m]["mean_old_acc_during_b"] for m in ("epi", "static", "random"))
    print(f"EPI/static {e / s:.2f}, EPI/random {e / rnd:.2f}")
    seconds = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": machine_info(1),
                "seconds": seconds,
                "acc_a_end_of_a": acc_a_end,
                "settings": vars(args) | {"out": str(args.out)},
                "results": results,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out} in {seconds:.0f} s")


if __name__ == "__main__":
    main()
