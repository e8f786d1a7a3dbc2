"""Fine-tune the committed recall model (attempt 10) so it also answers two-hop variable tracking.

The recall model never emits a key token (it learned that answers are values), so the two-hop question
``x_b`` → ``x_a v`` needs a fine-tune: every ``--recall-every``-th batch is the original associative-recall task
(``structkv.synthetic.tasks.training_batch``), the others two-hop chains with both hops supervised
(``structkv.tasks.two_hop_training_batch``); haystack lengths cycle through ``--lengths``. Eval every
``--eval-every`` steps at ``--eval-len`` tokens (full cache): key-value exact match (4 pairs) and two-hop
exact match (both answer tokens, teacher-forced first hop not used: greedy). Writes
``OUT/{model,history.json,train_config.json}``.

    uv run --locked python packages/structkv/bench/finetune_twohop.py      # 1 thread; see bench/train_recall.sh 11-12
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

HERE = Path(__file__).parent


def _eval(model, vocab, length: int, n: int, seed: int) -> dict[str, float]:
    import torch

    from structkv.tasks import kv_retrieval_samples, two_hop_samples

    model.eval()
    kv_hits = hop_hits = total_kv = total_hop = 0
    with torch.no_grad():
        for s in kv_retrieval_samples(n, length, 4, 4, vocab, seed):
            ids = torch.stack([torch.cat([s.context, torch.tensor(q)]) for q in s.questions])
            pred = model(ids).logits[:, -1].argmax(-1).tolist()
            kv_hits += sum(p == a[0] for p, a in zip(pred, s.answers, strict=True))
            total_kv += len(pred)
        for s in two_hop_samples(n, length, 2, vocab, seed + 1, n_distractors=2):
            for q, a in zip(s.questions, s.answers, strict=True):
                ids = torch.cat([s.context, torch.tensor(q)])[None]
                first = int(model(ids).logits[0, -1].argmax())
                second = int(
                    model(torch.cat([ids[0], torch.tensor([first])])[None]).logits[0, -1].argmax()
                )
                hop_hits += int([first, second] == a)
                total_hop += 1
    model.train()
    return {"kv": kv_hits / total_kv, "two_hop": hop_hits / total_hop}


def main() -> None:
    import torch
    from transformers import LlamaForCausalLM

    from structkv.synthetic.tasks import RecallVocab, training_batch
    from structkv.tasks import two_hop_training_batch

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--init", type=Path, default=HERE / "runs" / "recall10")
    p.add_argument("--out", type=Path, default=HERE / "runs" / "twohop")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--lengths", default="128,256,512")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-len", type=int, default=512)
    p.add_argument("--eval-samples", type=int, default=40)
    p.add_argument(
        "--recall-every", type=int, default=2, help="every K-th batch is recall (0: two-hop only)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = json.loads((a.init / "train_config.json").read_text())
    vocab = RecallVocab(cfg["n_keys"], cfg["n_values"], cfg["n_filler"])
    model = LlamaForCausalLM.from_pretrained(a.init / "model")
    model.config._attn_implementation = "sdpa"
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=0.01)
    gen = torch.Generator().manual_seed(a.seed)
    lengths = [int(x) for x in a.lengths.split(",")]
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "train_config.json").write_text(
        json.dumps({**cfg, "finetune": {k: str(v) for k, v in vars(a).items()}}, indent=2)
    )
    history = [{"step": 0, "seconds": 0.0, **_eval(model, vocab, a.eval_len, a.eval_samples, 777)}]
    print(json.dumps(history[-1]), flush=True)
    t0 = time.time()
    for step in range(a.steps):
        lr = (
            a.lr
            * min(1.0, (step + 1) / a.warmup)
            * (0.55 + 0.45 * math.cos(math.pi * step / a.steps))
        )
        for g in opt.param_groups:
            g["lr"] = lr
        length = lengths[(step // 2) % len(lengths)]
        if a.recall_every == 0 or step % a.recall_every != a.recall_every - 1:
            ids, labels = two_hop_training_batch(
                a.batch_size, length, 1 + step // 2 % 2, gen, vocab, n_distractors=2
            )
        else:
            ids, labels = training_batch(a.batch_size, length, 4 + 4 * (step // 2 % 2), gen, vocab)
        logits = model(ids).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % a.eval_every == 0 or step + 1 == a.steps:
            rec = {
                "step": step + 1,
                "seconds": round(time.time() - t0, 1),
                "loss": round(float(loss.detach()), 4),
                **_eval(model, vocab, a.eval_len, a.eval_samples, 777),
            }
            history.append(rec)
            print(json.dumps(rec), flush=True)
            (a.out / "history.json").write_text(json.dumps(history, indent=1))
            model.save_pretrained(a.out / "model")  # the latest evaluated weights


if __name__ == "__main__":
    main()
