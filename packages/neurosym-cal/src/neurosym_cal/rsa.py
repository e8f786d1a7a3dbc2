"""Reasoning Sensitivity Analysis (RSA): how sharply the model's commitment to its own answer changes
when its latent reasoning states are nudged (spec §2.2).

The selected completion ``y*`` (chain of thought + code) is teacher-forced once. At a decoder layer
``l`` the residual-stream states ``h_t`` of the perturbed positions ``R`` (the last
``max_perturb_tokens`` completion tokens before the answer, plus the answer tokens) are replaced by

    h'_t = h_t + ε · ||h_t||₂ · u_t / ||u_t||₂          (relative scale: layers with different norms compare)

through a forward hook, and the answer NLL ``L = −(1/|A|) Σ_{t∈A} log p(y*_t | y*_<t)`` is re-scored.
With antithetic pairs ``±u_s``:

    Δ⁺_s = L(h + εu_s) − L(h),    Δ⁻_s = L(h − εu_s) − L(h)
    κ  = mean_s (Δ⁺_s + Δ⁻_s) / ε²          curvature (symmetric 2nd difference ≈ uᵀHu, Hutchinson)
    g  = mean_s |Δ⁺_s − Δ⁻_s| / (2ε)        slope (first-order sensitivity)
    kl = mean_s mean_{t∈A} KL(p_t ‖ p'_t)   next-token distribution shift
    flip = mean_s frac_{t∈A}[argmax p'_t ≠ argmax p_t]

(The spec compares ``argmax p'_t`` with ``y*_t``; for a sampled ``y*`` that mixes in how often the
unperturbed greedy token already differs from ``y*``, so the flip here is relative to the unperturbed
argmax: it is 0 at ε = 0 and measures only what the nudge changed.)

Features per (layer, ε): ``sign(κ)·log1p(|κ|)``, ``g``, ``kl``, ``flip``; plus mean/max of each over
all (layer, ε). The perturbed copies of one (layer, ε) are stacked on the batch dimension (one
forward per ``batch_size`` copies); the unperturbed pass is shared. Hook arithmetic runs in fp32.

Intuition: a systematically wrong but confident trajectory tends to sit in a sharp region (small
latent nudges change the code tokens) while robust reasoning is flat; this signal exists even when
all K samples agree (``sc_top = 1``). It is a hypothesis of the paper, measured, not assumed, by
``bench/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch

from neurosym_cal.errors import NeuroSymCalError, UnsupportedArchitectureError

logger = logging.getLogger(__name__)

STATS = ("curv", "slope", "kl", "flip")


class RSAInputError(NeuroSymCalError, ValueError):
    """Bad input to RSA (empty answer span, layer out of range, bad config)."""


@dataclass(frozen=True)
class RSAConfig:
    """Settings of :func:`reasoning_sensitivity` (defaults: spec §2.2, all [INFERRED]).

    Attributes:
        layers: decoder layers to perturb; a float in (0, 1] is a relative depth
            (``round(depth·(n_layers−1))``), an int an absolute index (negative counts from the end).
        eps: relative perturbation scales ε.
        n_dirs: S random directions (with ``antithetic`` each is used as ±u: 2S passes per (l, ε)).
        antithetic: symmetric second difference with ±u; if False, 2S independent directions and the
            one-sided estimates κ = 2·mean Δ/ε², g = mean |Δ|/ε (unbiased only in expectation over u).
        mode: ``"random"`` (Gaussian directions) or ``"gradient"`` (the normalised ∇_h L per position,
            one backward pass; S is then 1).
        max_perturb_tokens: completion tokens before the answer that are perturbed (answer tokens always are).
        max_len: cap on the total sequence; the prompt/CoT is truncated from the left (logged).
        seed: seed of the random directions.
        batch_size: perturbed copies per forward pass.
    """

    layers: tuple[float | int, ...] = (0.5, 0.75, 0.9)
    eps: tuple[float, ...] = (0.01, 0.05)
    n_dirs: int = 4
    antithetic: bool = True
    mode: Literal["random", "gradient"] = "random"
    max_perturb_tokens: int = 256
    max_len: int = 4096
    seed: int = 0
    batch_size: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "eps", tuple(float(e) for e in self.eps))
        if not self.layers:
            raise RSAInputError("RSAConfig.layers must name at least one layer, got ()")
        for layer in self.layers:
            if isinstance(layer, bool) or not isinstance(layer, (int, float)):
                raise RSAInputError(f"RSAConfig.layers entries must be int or float, got {layer!r}")
            if isinstance(layer, float) and not 0.0 < layer <= 1.0:
                raise RSAInputError(
                    f"a relative layer depth must be in (0, 1], got {layer}; use an int for an index"
                )
        if not self.eps or any(not (e > 0 and np.isfinite(e)) for e in self.eps):
            raise RSAInputError(f"RSAConfig.eps must be positive finite scales, got {self.eps}")
        if self.n_dirs < 1:
            raise RSAInputError(f"RSAConfig.n_dirs must be >= 1, got {self.n_dirs}")
        if self.mode not in ("random", "gradient"):
            raise RSAInputError(f"RSAConfig.mode must be 'random' or 'gradient', got {self.mode!r}")
        if self.max_perturb_tokens < 0 or self.max_len < 2 or self.batch_size < 1:
            raise RSAInputError(
                "RSAConfig needs max_perturb_tokens >= 0, max_len >= 2, batch_size >= 1; got "
                f"{self.max_perturb_tokens}, {self.max_len}, {self.batch_size}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# the estimator, as pure functions (tested on an analytic quadratic)


def sensitivity_from_losses(
    base: float, plus: Sequence[float], minus: Sequence[float] | None, eps: float
) -> tuple[float, float]:
    """Curvature κ and slope g from losses at ``h``, ``h + εu_s`` and ``h − εu_s``.

    With ``minus`` (antithetic): κ = mean_s (Δ⁺_s + Δ⁻_s)/ε², g = mean_s |Δ⁺_s − Δ⁻_s|/(2ε).
    For ``L(h) = ½ hᵀAh`` and an absolute step ``εu`` this gives κ = mean_s u_sᵀAu_s exactly.
    Without ``minus`` (one-sided): κ = 2·mean_s Δ⁺_s/ε², g = mean_s |Δ⁺_s|/ε.
    """
    dp = np.asarray(plus, dtype=np.float64) - base
    if minus is None:
        return float(2.0 * dp.mean() / eps**2), float(np.abs(dp).mean() / eps)
    dm = np.asarray(minus, dtype=np.float64) - base
    if dm.shape != dp.shape:
        raise RSAInputError(f"plus/minus losses differ in shape: {dp.shape} vs {dm.shape}")
    return float(((dp + dm) / eps**2).mean()), float((np.abs(dp - dm) / (2 * eps)).mean())


def curvature_probe(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    h: torch.Tensor,
    directions: torch.Tensor,
    eps: float,
    *,
    antithetic: bool = True,
) -> tuple[float, float]:
    """κ and g of a scalar ``loss_fn`` at ``h`` along ``directions`` [S, *h.shape] with absolute steps ε·u."""
    base = float(loss_fn(h))
    plus = [float(loss_fn(h + eps * u)) for u in directions]
    minus = [float(loss_fn(h - eps * u)) for u in directions] if antithetic else None
    return sensitivity_from_losses(base, plus, minus, eps)


def feature_names(cfg: RSAConfig) -> list[str]:
    """The keys :func:`reasoning_sensitivity` returns, in order."""
    names = [
        f"rsa_{_layer_tag(layer)}_e{eps:g}_{s}"
        for layer in cfg.layers
        for eps in cfg.eps
        for s in STATS
    ]
    names += [f"rsa_{agg}_{s}" for agg in ("mean", "max") for s in STATS]
    return names


def _layer_tag(layer: float | int) -> str:
    return f"d{layer:g}" if isinstance(layer, float) else f"l{layer}"


def resolve_layers(layers: Sequence[float | int], n_layers: int) -> list[int]:
    """Absolute indices of the configured layers (relative depth → ``round(depth·(n−1))``)."""
    out = []
    for layer in layers:
        if isinstance(layer, float):
            idx = round(layer * (n_layers - 1))
        else:
            idx = layer + n_layers if layer < 0 else layer
        if not 0 <= idx < n_layers:
            raise RSAInputError(
                f"layer {layer!r} is out of range for a model with {n_layers} decoder layers"
            )
        out.append(idx)
    return out


# ----------------------------------------------------------------------------------------------
# teacher forcing with hooks


@dataclass
class _Sequence:
    ids: torch.Tensor  # [1, T]
    perturb: slice  # positions whose layer-l states are perturbed
    answer: slice  # positions of the answer tokens (targets)
    n_truncated: int = 0


def encode_for_rsa(
    tokenizer: Any,
    prompt: str,
    completion: str,
    answer_span: tuple[int, int] | None,
    cfg: RSAConfig,
) -> _Sequence:
    """Token ids of ``prompt + completion`` and the perturbed / answer token positions.

    ``answer_span`` is a character span ``(start, end)`` inside ``completion`` (None: the whole
    completion). The prompt is encoded with the tokenizer's special tokens (as a string prompt was
    generated); the completion is encoded in three pieces (before, answer, after) without special
    tokens, so the answer tokens are exactly those of the span.
    """
    if answer_span is None:
        answer_span = (0, len(completion))
    a, b = answer_span
    if not (0 <= a <= b <= len(completion)):
        raise RSAInputError(
            f"answer_span {answer_span} is not inside the completion of {len(completion)} characters"
        )
    bos = getattr(tokenizer, "bos_token", None)
    special = not (isinstance(bos, str) and bos and prompt.startswith(bos))
    p_ids = list(tokenizer.encode(prompt, add_special_tokens=special)) if prompt else []
    pre = list(tokenizer.encode(completion[:a], add_special_tokens=False)) if a else []
    ans = list(tokenizer.encode(completion[a:b], add_special_tokens=False)) if b > a else []
    if not ans:
        raise RSAInputError(
            f"the answer span {answer_span} of the completion has no tokens: RSA needs a non-empty answer"
        )
    if not p_ids and not pre:
        raise RSAInputError("RSA needs at least one token (prompt or CoT) before the answer")
    ids = p_ids + pre + ans  # tokens after the answer do not affect L: dropped
    n_trunc = max(0, len(ids) - cfg.max_len)
    if n_trunc:
        if len(ans) + 1 > cfg.max_len:
            raise RSAInputError(
                f"the answer alone has {len(ans)} tokens, more than max_len={cfg.max_len} allows"
            )
        logger.warning(
            "RSA: sequence of %d tokens exceeds max_len=%d; truncating %d prompt/CoT tokens from the left",
            len(ids),
            cfg.max_len,
            n_trunc,
        )
        ids = ids[n_trunc:]
    a0 = len(ids) - len(ans)
    c0 = max(0, len(p_ids) - n_trunc)  # completion start (after truncation)
    start = max(c0, a0 - cfg.max_perturb_tokens)
    start = min(start, a0 - 1)  # always perturb the position that predicts the first answer token
    return _Sequence(
        ids=torch.tensor([ids], dtype=torch.long),
        perturb=slice(start, len(ids) - 1),  # the last position predicts nothing
        answer=slice(a0, len(ids)),
        n_truncated=n_trunc,
    )


class _PerturbHook:
    """Forward hook adding ``ε·||h_t||·d_t`` (``d`` unit directions, zero outside R) to a layer output, in fp32.

    ``directions`` is [B, T, d] (B copies stacked on the batch dimension). With ``zero`` set, adds a
    zero tensor that requires grad instead (for ∇_h L in gradient mode).
    """

    def __init__(self) -> None:
        self.directions: torch.Tensor | None = None
        self.eps = 0.0
        self.zero: torch.Tensor | None = None

    def __call__(self, module: Any, args: Any, out: Any) -> Any:
        from papercore.layers import layer_hidden, replace_layer_hidden

        if self.zero is not None:
            h = layer_hidden(out)
            return replace_layer_hidden(out, h + self.zero.to(h.dtype))
        if self.directions is None:
            return None
        h = layer_hidden(out)
        h32 = h.float()
        norm = h32.norm(dim=-1, keepdim=True)
        h_new = h32 + self.eps * norm * self.directions.to(h32.device)
        return replace_layer_hidden(out, h_new.to(h.dtype))


def _answer_logits(model: Any, ids: torch.Tensor, seq: _Sequence) -> torch.Tensor:
    """Logits [B, |A|, V] of the positions that predict the answer tokens.

    Only the last ``|A| + 1`` positions are materialised when the model accepts ``logits_to_keep``
    (transformers ≥ 4.50 causal LMs): a long CoT with a 150k vocabulary would otherwise need
    ``B·T·V`` floats.
    """
    n_keep = seq.answer.stop - seq.answer.start + 1
    try:
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=n_keep).logits
    except TypeError:  # a model without logits_to_keep
        logits = model(input_ids=ids, use_cache=False).logits
    return logits[:, -n_keep:-1]


def _answer_scores(
    model: Any, ids: torch.Tensor, seq: _Sequence
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs [B, |A|, V] (fp32) of the answer-predicting positions and the targets [|A|]."""
    lp = torch.log_softmax(_answer_logits(model, ids, seq).float(), dim=-1)
    return lp, seq.ids[0, seq.answer].to(lp.device)


def _stats(lp_base: torch.Tensor, lp: torch.Tensor, targets: torch.Tensor):
    """Per-copy NLL, KL(p‖p') and greedy-flip rate (vs the unperturbed argmax) over the answer tokens: [B] each."""
    nll = -lp.gather(-1, targets.view(1, -1, 1).expand(lp.shape[0], -1, 1)).squeeze(-1).mean(-1)
    p = lp_base.exp()
    kl = (p * (lp_base - lp)).sum(-1).mean(-1)
    flip = (lp.argmax(-1) != lp_base.argmax(-1)).float().mean(-1)
    return nll, kl, flip


def perturbed_scores(
    model: Any,
    layer_module: Any,
    seq: _Sequence,
    directions: torch.Tensor,
    eps: float,
    batch_size: int,
    lp_base: torch.Tensor,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NLL, KL and flip rate of each perturbed copy (``directions``: [C, T, d] unit directions).

    The copies are stacked on the batch dimension ``batch_size`` at a time; the result does not depend
    on ``batch_size`` (up to float rounding, ~1e-6).
    """
    hook = _PerturbHook()
    hook.eps = eps
    handle = layer_module.register_forward_hook(hook)
    nlls, kls, flips = [], [], []
    device = seq.ids.device
    try:
        with torch.no_grad():
            for i in range(0, directions.shape[0], batch_size):
                d = directions[i : i + batch_size]
                hook.directions = d
                ids = seq.ids.expand(d.shape[0], -1).to(device)
                lp, targets = _answer_scores(model, ids, seq)
                nll, kl, flip = _stats(lp_base, lp, targets.to(lp.device))
                nlls.append(nll.double().cpu())
                kls.append(kl.double().cpu())
                flips.append(flip.double().cpu())
    finally:
        handle.remove()
    return tuple(torch.cat(x).numpy() for x in (nlls, kls, flips))  # type: ignore[return-value]


def _unit(x: torch.Tensor) -> torch.Tensor:
    n = x.norm(dim=-1, keepdim=True)
    return torch.where(n > 0, x / n.clamp_min(1e-30), torch.zeros_like(x))


def _random_directions(n: int, seq: _Sequence, d: int, seed: int, layer_idx: int) -> torch.Tensor:
    """[n, T, d] unit Gaussian directions on the perturbed positions, zero elsewhere (seeded per layer)."""
    T = seq.ids.shape[1]
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + layer_idx)
    out = torch.zeros(n, T, d)
    r = seq.perturb
    out[:, r] = _unit(torch.randn(n, r.stop - r.start, d, generator=g))
    return out


def _gradient_directions(
    model: Any, layers: Sequence[Any], idxs: Sequence[int], seq: _Sequence, d: int
) -> dict[int, torch.Tensor]:
    """Normalised ∇_h L at each layer (per position, on R; one backward pass): {idx: [1, T, d]}."""
    T = seq.ids.shape[1]
    device = seq.ids.device
    zeros, handles = {}, []
    for idx in idxs:
        hook = _PerturbHook()
        hook.zero = torch.zeros(1, T, d, device=device, requires_grad=True)
        zeros[idx] = hook.zero
        handles.append(layers[idx].register_forward_hook(hook))
    try:
        with torch.enable_grad():
            lp, targets = _answer_scores(model, seq.ids.to(device), seq)
            nll = -lp[0].gather(-1, targets.to(lp.device).view(-1, 1)).mean()
            grads = torch.autograd.grad(nll, [zeros[i] for i in idxs], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for idx, g in zip(idxs, grads, strict=True):
        g = torch.zeros(1, T, d) if g is None else g.detach().float().cpu()
        mask = torch.zeros(1, T, 1)
        mask[:, seq.perturb] = 1.0
        out[idx] = _unit(g) * mask
    return out


class _fp32_eval:
    """Run a model in eval mode and (on CPU) fp32; restore its mode and dtype afterwards."""

    def __init__(self, model: Any):
        self.model = model

    def __enter__(self):
        m = self.model
        self.training = m.training
        p = next(m.parameters())
        self.dtype = p.dtype
        self.cast = p.device.type == "cpu" and p.dtype in (torch.float16, torch.bfloat16)
        if self.cast:
            logger.warning(
                "RSA: %s model on CPU is cast to float32 for the duration of RSA", p.dtype
            )
            m.float()
        m.eval()
        return m

    def __exit__(self, *exc):
        if self.cast:
            self.model.to(self.dtype)
        self.model.train(self.training)


def reasoning_sensitivity(
    model: Any,
    tokenizer: Any,
    prompt: str,
    completion: str,
    answer_span: tuple[int, int] | None = None,
    cfg: RSAConfig | None = None,
) -> dict[str, float]:
    """RSA features of one teacher-forced completion (spec §2.2); keys as :func:`feature_names`.

    Args:
        model: a Hugging Face causal LM whose decoder layers ``papercore.layers.decoder_layers`` finds
            (Llama/Qwen2/Mistral ``model.model.layers``, GPT-2 ``transformer.h``, GPT-NeoX ...).
        tokenizer: its tokenizer.
        prompt: the prompt the completion was generated from (a string; render chats first).
        completion: the selected completion (CoT + code).
        answer_span: character span of the answer (code) inside ``completion``; None = all of it.
        cfg: :class:`RSAConfig`.

    Raises:
        UnsupportedArchitectureError: the model's decoder layers cannot be located.
        RSAInputError: empty answer span, layer out of range, answer longer than ``max_len``.
    """
    cfg = cfg or RSAConfig()
    layers = _decoder_layers(model)
    idxs = resolve_layers(cfg.layers, len(layers))
    seq = encode_for_rsa(tokenizer, prompt, completion, answer_span, cfg)
    with _fp32_eval(model) as m:
        device = next(m.parameters()).device
        seq.ids = seq.ids.to(device)
        with torch.no_grad():
            lp_base, targets = _answer_scores(m, seq.ids, seq)
        base_nll = float(-lp_base[0].gather(-1, targets.view(-1, 1)).mean())
        d = _hidden_size(m, layers)
        if cfg.mode == "gradient":
            grad_dirs = _gradient_directions(m, layers, sorted(set(idxs)), seq, d)
        feats: dict[str, float] = {}
        cache: dict[tuple[int, float], dict[str, float]] = {}
        for layer, idx in zip(cfg.layers, idxs, strict=True):
            if cfg.mode == "gradient":
                dirs = grad_dirs[idx]
            else:
                n = cfg.n_dirs if cfg.antithetic else 2 * cfg.n_dirs
                dirs = _random_directions(n, seq, d, cfg.seed, idx)
            antithetic = cfg.antithetic or cfg.mode == "gradient"
            stacked = torch.cat([dirs, -dirs]) if antithetic else dirs
            for eps in cfg.eps:
                if (idx, eps) not in cache:
                    nll, kl, flip = perturbed_scores(
                        m, layers[idx], seq, stacked.to(device), eps, cfg.batch_size, lp_base
                    )
                    half = dirs.shape[0]
                    if antithetic:
                        kappa, slope = sensitivity_from_losses(
                            base_nll, nll[:half], nll[half:], eps
                        )
                    else:
                        kappa, slope = sensitivity_from_losses(base_nll, nll, None, eps)
                    curv = float(np.sign(kappa) * np.log1p(abs(kappa)))
                    cache[(idx, eps)] = dict(
                        curv=curv, slope=slope, kl=float(kl.mean()), flip=float(flip.mean())
                    )
                for s in STATS:
                    feats[f"rsa_{_layer_tag(layer)}_e{eps:g}_{s}"] = cache[(idx, eps)][s]
    per_layer = dict(feats)
    for agg, fn in (("mean", np.mean), ("max", np.max)):
        for s in STATS:
            vals = [v for k, v in per_layer.items() if k.endswith(f"_{s}")]
            feats[f"rsa_{agg}_{s}"] = float(fn(np.asarray(vals, dtype=np.float64)))
    bad = [k for k, v in feats.items() if not np.isfinite(v)]
    if bad:
        logger.warning("RSA: non-finite features %s (set to NaN; imputed at fit/predict)", bad)
        for k in bad:
            feats[k] = float("nan")
    return feats


def _decoder_layers(model: Any) -> Any:
    from papercore.layers import decoder_layers

    try:
        return decoder_layers(model)
    except UnsupportedArchitectureError:
        raise
    except (AttributeError, TypeError, ValueError, LookupError) as e:
        raise UnsupportedArchitectureError(
            f"RSA cannot locate the decoder layers of {type(model).__name__}: {e}"
        ) from e


def _hidden_size(model: Any, layers: Any) -> int:
    cfg = getattr(model, "config", None)
    for attr in ("hidden_size", "n_embd", "d_model"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int):
            return v
    emb = model.get_input_embeddings()
    return int(emb.weight.shape[-1])


__all__ = [
    "RSAConfig",
    "RSAInputError",
    "curvature_probe",
    "encode_for_rsa",
    "feature_names",
    "perturbed_scores",
    "reasoning_sensitivity",
    "resolve_layers",
    "sensitivity_from_losses",
]
