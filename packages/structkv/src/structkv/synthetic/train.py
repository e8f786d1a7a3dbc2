"""Train the tiny associative-recall Llama on CPU, checkpointed and resumable.

Recipe (MQAR-style, Zoology 2023): single-token keys and values from a small vocabulary, pairs planted
in a filler haystack, every pair queried once after the haystack with the loss on every query's answer.
Induction warm-up (``copy_steps``): during the first steps every other batch is a repeated random
sequence with the loss on its second half; the dense copy signal forms the induction heads the recall
task needs within a few hundred steps, where recall alone sits on a long plateau. Haystack lengths
either cycle through ``lengths`` or follow a linear curriculum from ``min_len`` to ``max_len``. ``python -m structkv.synthetic.train --out DIR`` resumes from
``DIR/ckpt.pt`` when it exists.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from structkv.synthetic.tasks import RecallVocab, make_recall_sample, training_batch

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    layers: int = 4
    hidden: int = 128
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 256
    n_keys: int = 64
    n_values: int = 64
    n_filler: int = 64
    steps: int = 6000
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: int = 100
    min_len: int = 32
    max_len: int = 256
    curriculum_start: int = 0
    curriculum_steps: int = 3000
    tokens_per_batch: int = 0
    adaptive: bool = (
        False  # grow the length by len_step whenever the training query accuracy EMA ≥ adapt_acc
    )
    len_step: int = 16
    adapt_acc: float = 0.9
    lengths: str = ""  # comma-separated haystack lengths cycled per step (overrides the curriculum)
    copy_steps: int = 0  # induction warm-up: every other batch is a repeated random sequence
    copy_len: int = 64
    init_from: str = ""  # a trained shallower run's model directory to grow from (depth growth)
    layer_map: str = (
        ""  # comma list, one entry per new layer: an old layer index or "-" for a new one
    )
    min_pairs: int = 4
    max_pairs: int = 8
    eval_every: int = 250
    eval_len: int = 256
    eval_samples: int = 200
    seed: int = 0
    threads: int = 1


def build_model(cfg: TrainConfig, attn_implementation: str = "sdpa"):
    """A Llama built from config (no hub access) sized for the recall task."""
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = RecallVocab(cfg.n_keys, cfg.n_values, cfg.n_filler)
    config = LlamaConfig(
        vocab_size=vocab.size,
        hidden_size=cfg.hidden,
        intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=4096,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(config)
    model.config._attn_implementation = attn_implementation
    return model


def copy_batch(batch_size: int, half: int, gen: torch.Generator, vocab: RecallVocab):
    """(input_ids, labels): BOS + a random sequence + the same sequence; loss on the repeat only."""
    seq = torch.randint(1, vocab.size, (batch_size, half), generator=gen)
    ids = torch.cat([torch.zeros(batch_size, 1, dtype=torch.long), seq, seq], 1)
    labels = torch.full_like(ids, -100)
    # position t predicts token t + 1; inside the repeat (from position half + 1) it is determined
    labels[:, half + 1 : -1] = ids[:, half + 2 :]
    return ids, labels


GROW_CONFIG_KEYS = (
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
)


def parse_layer_map(text: str, layers: int) -> list[int | None]:
    """``"0,-,-,1"`` -> ``[0, None, None, 1]``: one entry per layer of the grown model (``layers``)."""
    if not text.strip():
        raise ValueError(
            f"--init-from needs --layer-map: one comma-separated entry per new layer ({layers}), "
            'a source layer index or "-" for a new layer, e.g. "0,-,-,1" grows 2 layers to 4'
        )
    out: list[int | None] = []
    for i, x in enumerate(text.split(",")):
        x = x.strip()
        if x == "-":
            out.append(None)
            continue
        try:
            out.append(int(x))
        except ValueError:
            raise ValueError(
                f"--layer-map entry {i} is {x!r}: expected a source layer index or '-' (new layer)"
            ) from None
    if len(out) != layers:
        raise ValueError(f"--layer-map has {len(out)} entries for {layers} layers ({text!r})")
    return out


def check_growable(model, source, layer_map: list[int | None]) -> None:
    """ValueError naming what makes ``source`` impossible to grow into ``model`` with ``layer_map``."""
    n_new, n_old = len(model.model.layers), len(source.model.layers)
    if len(layer_map) != n_new:
        raise ValueError(f"layer_map has {len(layer_map)} entries for {n_new} layers")
    for i, j in enumerate(layer_map):
        if j is None:
            continue
        if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < n_old:
            raise ValueError(
                f"layer_map[{i}] = {j!r}: the source has {n_old} layers "
                f"(valid entries: 0..{n_old - 1}, or None for a new layer)"
            )
    a, b = source.config, model.config
    bad = [
        f"{k}: source {getattr(a, k, None)}, target {getattr(b, k, None)}"
        for k in GROW_CONFIG_KEYS
        if getattr(a, k, None) != getattr(b, k, None)
    ]
    if bad:
        raise ValueError("cannot grow: the source and target configs differ in " + "; ".join(bad))


def grow_from(model, source, layer_map: list[int | None]):
    """Copy a trained shallower Llama into ``model``: embeddings, final norm, LM head and the layers
    named by ``layer_map`` (new layer i <- old layer ``layer_map[i]``). New layers (``None``) keep
    their random attention and MLP inputs but get zero output projections, so they start as the
    identity on the residual stream and the grown model computes exactly the source's function.
    Every entry and the widths of the two configs are checked first (:func:`check_growable`).
    """
    check_growable(model, source, layer_map)
    sd = source.state_dict()
    own = model.state_dict()
    for k, v in sd.items():
        if ".layers." not in k:
            own[k] = v.clone()
    for i, j in enumerate(layer_map):
        prefix = f"model.layers.{i}."
        if j is None:
            for k in own:
                if k.startswith(prefix) and k.endswith(("o_proj.weight", "down_proj.weight")):
                    own[k] = torch.zeros_like(own[k])
            continue
        for k, v in sd.items():
            if k.startswith(f"model.layers.{j}."):
                own[prefix + k[len(f"model.layers.{j}.") :]] = v.clone()
    model.load_state_dict(own)
    return model


def _schedule(cfg: TrainConfig, step: int) -> tuple[int, int]:
    """(haystack length, pairs) at ``step``: cycled ``lengths``, else a linear length curriculum."""
    if cfg.lengths:
        lengths = [int(x) for x in cfg.lengths.split(",")]
        return lengths[step % len(lengths)], cfg.max_pairs
    span = max(1, cfg.curriculum_steps - cfg.curriculum_start)
    frac = min(1.0, max(0.0, (step - cfg.curriculum_start) / span))
    length = int(cfg.min_len + frac * (cfg.max_len - cfg.min_len))
    pairs = round(cfg.min_pairs + frac * (cfg.max_pairs - cfg.min_pairs))
    return length, pairs


@torch.no_grad()
def evaluate_recall(model, cfg: TrainConfig, length: int, n: int, seed: int = 1234) -> float:
    """Full-cache exact match of the answer to one query appended after a ``length``-token haystack."""
    vocab = RecallVocab(cfg.n_keys, cfg.n_values, cfg.n_filler)
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    correct = 0
    batch = []
    answers = []
    for _ in range(n):
        s = make_recall_sample(length, cfg.max_pairs, 1, gen, vocab)
        batch.append(torch.cat([s.context, torch.tensor(s.queries[:1])]))
        answers.append(s.answers[0])
    ids = torch.stack(batch)
    for i in range(0, n, 50):
        logits = model(ids[i : i + 50]).logits[:, -1]
        correct += int((logits.argmax(-1) == torch.tensor(answers[i : i + 50])).sum())
    model.train()
    return correct / n


def train(cfg: TrainConfig, out: Path) -> dict:
    lmap = None
    if cfg.init_from:
        lmap = parse_layer_map(cfg.layer_map, cfg.layers)
        if not Path(cfg.init_from).is_dir():
            raise FileNotFoundError(f"--init-from {cfg.init_from!r} is not a model directory")
    elif cfg.layer_map.strip():
        raise ValueError("--layer-map needs --init-from (the model directory to grow from)")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    model = build_model(cfg)
    if lmap is not None:
        from transformers import LlamaForCausalLM

        grow_from(model, LlamaForCausalLM.from_pretrained(cfg.init_from), lmap)
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
    )
    vocab = RecallVocab(cfg.n_keys, cfg.n_values, cfg.n_filler)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, elapsed, history = 0, 0.0, []
    cur_len, acc_ema = cfg.min_len, 0.0
    ckpt = out / "ckpt.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step, elapsed, history = state["step"], state["elapsed"], state["history"]
        cur_len, acc_ema = state.get("cur_len", cfg.min_len), state.get("acc_ema", 0.0)
        logger.info("resumed at step %d (%.0f s)", step, elapsed)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    model.train()
    t0 = time.time() - elapsed
    while step < cfg.steps:
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
        lr *= 0.5 * (1 + math.cos(math.pi * step / cfg.steps)) * 0.9 + 0.1
        for g in opt.param_groups:
            g["lr"] = lr
        length, pairs = _schedule(cfg, step)
        if cfg.adaptive:
            length, pairs = cur_len, cfg.max_pairs
        bs = cfg.batch_size
        if cfg.tokens_per_batch:  # constant tokens per step: short sequences get large batches
            bs = max(cfg.batch_size, cfg.tokens_per_batch // (length + 2 * pairs))
        if step < cfg.copy_steps and step % 2 == 0:
            ids, labels = copy_batch(cfg.batch_size, cfg.copy_len, gen, vocab)
        else:
            ids, labels = training_batch(bs, length, pairs, gen, vocab)
        logits = model(ids).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
        )
        with torch.no_grad():
            sel = labels != -100
            batch_acc = float((logits.argmax(-1)[sel] == labels[sel]).float().mean())
        acc_ema = 0.9 * acc_ema + 0.1 * batch_acc
        if cfg.adaptive and acc_ema >= cfg.adapt_acc and cur_len < cfg.max_len:
            cur_len = min(cfg.max_len, cur_len + cfg.len_step)
            acc_ema = 0.5 * cfg.adapt_acc  # re-earn the threshold at the new length
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % cfg.eval_every == 0 or step == cfg.steps:
            acc = evaluate_recall(model, cfg, cfg.eval_len, cfg.eval_samples)
            rec = {
                "step": step,
                "seconds": round(time.time() - t0, 1),
                "loss": round(float(loss.detach()), 4),
                "train_len": length,
                "train_acc_ema": round(acc_ema, 3),
                "pairs": pairs,
                f"acc@{cfg.eval_len}": acc,
            }
            history.append(rec)
            print(json.dumps(rec), flush=True)
            tmp = out / "ckpt.pt.tmp"
            torch.save(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "gen": gen.get_state(),
                    "step": step,
                    "elapsed": time.time() - t0,
                    "history": history,
                    "cur_len": cur_len,
                    "acc_ema": acc_ema,
                },
                tmp,
            )
            tmp.replace(ckpt)
            (out / "history.json").write_text(json.dumps(history, indent=1))
            if acc >= 0.99 and step >= cfg.copy_steps and (cfg.lengths or length >= cfg.max_len):
                break
    model.save_pretrained(out / "model")
    return {"steps": step, "seconds": time.time() - t0, "history": history}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    for name, field in TrainConfig.__dataclass_fields__.items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(field.default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        else:
            p.add_argument(flag, type=type(field.default), default=field.default)
    a = vars(p.parse_args(argv))
    out = a.pop("out")
    logging.basicConfig(level=logging.INFO)
    train(TrainConfig(**a), out)


if __name__ == "__main__":
    main()
