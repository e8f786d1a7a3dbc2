"""The structural reward model (spec §2.3–2.4): branches → renderer → scalar Bradley–Terry head.

``s = RM(render(p, r, {a_i}))`` with ``RM = AutoModelForSequenceClassification(num_labels=1)`` (last non-pad
token pooling) and ``P(r_a ≻ r_b | p) = σ(s_a − s_b)``. The RM's branch set (names and order) is stored with
it: loading it with different branches raises :class:`~srm_reward.errors.BranchSetMismatchError`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from srm_reward.branch import BranchRunStats, SideBranchModel, run_branches
from srm_reward.cache import BranchCache
from srm_reward.dims import check_unique
from srm_reward.errors import BranchSetMismatchError, PreferenceDataError, SRMConfigError
from srm_reward.render import UNAVAILABLE, StructuralInputRenderer

logger = logging.getLogger(__name__)

__all__ = ["SRMRewardFn", "StructuralRewardModel", "as_text", "check_branch_set"]

SRM_FILE = "srm.json"


def as_text(x: Any) -> str:
    """A prompt or completion as text: a string as is; chat messages joined as ``role: content`` lines
    (a completion list of assistant messages becomes their contents)."""
    if isinstance(x, str):
        return x
    if isinstance(x, Mapping) and "content" in x:
        return str(x["content"])
    if isinstance(x, Sequence) and all(isinstance(m, Mapping) and "content" in m for m in x):
        if all(m.get("role") == "assistant" for m in x):
            return "\n".join(str(m["content"]) for m in x)
        return "\n".join(f"{m.get('role', 'user')}: {m['content']}" for m in x)
    raise PreferenceDataError(
        f"expected a string or a list of {{'role', 'content'}} messages, got {type(x).__name__}"
    )


def check_branch_set(trained: Sequence[str], given: Sequence[str]) -> None:
    """Raise :class:`BranchSetMismatchError` when ``given`` differs from ``trained`` (names or order)."""
    trained, given = list(trained), list(given)
    if trained == given:
        return
    missing = [n for n in trained if n not in given]
    extra = [n for n in given if n not in trained]
    detail = (
        f"missing {missing}, unexpected {extra}"
        if missing or extra
        else "same names, different order"
    )
    raise BranchSetMismatchError(
        f"branch set differs from the one the RM was trained with: trained {trained}, got {given} ({detail})"
    )


class StructuralRewardModel:
    """Side branches + renderer + a sequence-classification reward model.

    Args:
        reward_model: ``AutoModelForSequenceClassification`` with ``num_labels=1``.
        tokenizer: its tokenizer.
        branches: side branches, in rendering order.
        renderer: default ``StructuralInputRenderer(tokenizer, branch_order=branch names)``.
        trained_branches: the branch names the RM was trained with (checked against ``branches``).
        parallel / max_workers / branch_timeout_s / strict: see :func:`~srm_reward.branch.run_branches`.
        cache: a :class:`BranchCache` (default: a fresh in-memory cache).
        batch_size: rows per RM forward.
    """

    def __init__(
        self,
        reward_model: Any,
        tokenizer: Any,
        branches: Sequence[SideBranchModel] = (),
        renderer: StructuralInputRenderer | None = None,
        *,
        trained_branches: Sequence[str] | None = None,
        parallel: str = "thread",
        max_workers: int = 5,
        branch_timeout_s: float | None = None,
        strict: bool = False,
        cache: BranchCache | None = None,
        batch_size: int = 16,
    ) -> None:
        names = check_unique([b.name for b in branches], "branch")
        if trained_branches is not None:
            check_branch_set(trained_branches, names)
        if getattr(getattr(reward_model, "config", None), "num_labels", 1) != 1:
            raise SRMConfigError(
                f"reward_model must have num_labels=1, got {reward_model.config.num_labels}"
            )
        self.reward_model = reward_model
        self.tokenizer = tokenizer
        self.branches = list(branches)
        self.renderer = renderer or StructuralInputRenderer(tokenizer, branch_order=names)
        if self.renderer.branch_order is None:
            self.renderer.branch_order = tuple(names)
        self.parallel = parallel
        self.max_workers = max_workers
        self.branch_timeout_s = branch_timeout_s
        self.strict = strict
        self.cache = cache if cache is not None else BranchCache()
        self.batch_size = batch_size
        self.last_stats: BranchRunStats | None = None
        if tokenizer.pad_token_id is not None:
            reward_model.config.pad_token_id = tokenizer.pad_token_id

    def __getstate__(self) -> dict[str, Any]:
        # trainers leave non-picklable hooks on the model: pickle the RM as (class, config, weights)
        state = dict(self.__dict__)
        m = state.pop("reward_model")
        state["_rm_parts"] = (
            type(m),
            m.config,
            {k: v.detach().cpu() for k, v in m.state_dict().items()},
        )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        cls, config, weights = state.pop("_rm_parts")
        self.__dict__.update(state)
        model = cls(config)
        model.load_state_dict(weights)
        self.reward_model = model.eval()

    @property
    def branch_names(self) -> list[str]:
        return [b.name for b in self.branches]

    # ------------------------------------------------------------------ pieces
    def aux(
        self, prompts: Sequence[str], responses: Sequence[str], *, skip: Sequence[str] = ()
    ) -> list[dict[str, str]]:
        """Aux texts per row (``{dim: text}``), from the cache or the branches (see :func:`run_branches`)."""
        out, stats = run_branches(
            self.branches,
            prompts,
            responses,
            cache=self.cache,
            parallel=self.parallel,
            max_workers=self.max_workers,
            timeout_s=self.branch_timeout_s,
            strict=self.strict,
            skip=skip,
        )
        self.last_stats = stats
        return [{k: v[i] for k, v in out.items()} for i in range(len(prompts))]

    def render(
        self, prompts: Sequence[str], responses: Sequence[str], aux: Sequence[Mapping[str, str]]
    ) -> list[str]:
        return [self.renderer(p, r, a) for p, r, a in zip(prompts, responses, aux, strict=True)]

    def score_texts(self, texts: Sequence[str]) -> np.ndarray:
        """RM scores ``[n]`` of rendered texts, tokenised as TRL's RewardTrainer does (text + EOS)."""
        import torch

        model = self.reward_model
        pad = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        scores: list[float] = []
        try:
            with torch.no_grad():
                for s in range(0, len(texts), self.batch_size):
                    ids = [self.renderer.encode(t) for t in texts[s : s + self.batch_size]]
                    width = max(map(len, ids))
                    input_ids = torch.tensor(
                        [x + [pad] * (width - len(x)) for x in ids], device=device
                    )
                    mask = torch.tensor(
                        [[1] * len(x) + [0] * (width - len(x)) for x in ids], device=device
                    )
                    logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits
                    scores.extend(logits.float().squeeze(-1).reshape(-1).tolist())
        finally:
            model.train(was_training)
        return np.asarray(scores, dtype=np.float64)

    # ------------------------------------------------------------------ scoring API
    def score(
        self,
        prompts: Sequence[Any],
        responses: Sequence[Any],
        return_details: bool = False,
        *,
        skip: Sequence[str] = (),
    ) -> np.ndarray | list[dict[str, Any]]:
        """Scores ``[n]`` of (prompt, response) pairs; with ``return_details`` one dict per row with
        ``score``, ``aux``, ``verdicts``, ``text`` and the batch's ``latency_ms``."""
        prompts = [as_text(p) for p in prompts]
        responses = [as_text(r) for r in responses]
        if len(prompts) != len(responses):
            raise SRMConfigError(f"got {len(prompts)} prompts but {len(responses)} responses")
        aux = self.aux(prompts, responses, skip=skip)
        texts = self.render(prompts, responses, aux)
        scores = self.score_texts(texts)
        if not return_details:
            return scores
        from srm_reward.diagnostics import parse_verdict

        lat = dict(self.last_stats.latency_ms) if self.last_stats else {}
        return [
            {
                "score": float(s),
                "aux": a,
                "verdicts": {k: parse_verdict(v) for k, v in a.items()},
                "text": t,
                "latency_ms": lat,
            }
            for s, a, t in zip(scores, aux, texts, strict=True)
        ]

    def compare(self, prompt: Any, response_a: Any, response_b: Any) -> dict[str, Any]:
        """``P(a ≻ b) = σ(s_a − s_b)`` with both scores and both sides' branch texts."""
        da, db = self.score([prompt, prompt], [response_a, response_b], return_details=True)
        diff = da["score"] - db["score"]
        return {
            "p_a_better": 1.0 / (1.0 + math.exp(-diff)),
            "score_a": da["score"],
            "score_b": db["score"],
            "aux_a": da["aux"],
            "aux_b": db["aux"],
        }

    def rank(self, prompt: Any, responses: Sequence[Any]) -> list[tuple[int, float]]:
        """``(index, score)`` of ``responses``, best first (ties keep input order)."""
        scores = self.score([prompt] * len(responses), list(responses))
        order = sorted(range(len(responses)), key=lambda i: (-scores[i], i))
        return [(i, float(scores[i])) for i in order]

    def as_reward_fn(self) -> SRMRewardFn:
        """A plain picklable callable ``(prompts, completions, **kw) -> list[float]`` for TRL's
        GRPO / RLOO / online-DPO ``reward_funcs`` (string or chat completions)."""
        return SRMRewardFn(self)

    # ------------------------------------------------------------------ data
    def enrich_pairs(
        self,
        pairs: Sequence[Mapping[str, Any]],
        *,
        branch_dropout: float = 0.0,
        seed: int = 0,
    ) -> list[dict[str, Any]]:
        """Rendered pairs ``{"chosen", "rejected", "prompt", "aux_chosen", "aux_rejected"}`` (implicit prompt:
        the prompt is inside each rendered text). ``branch_dropout``: probability that a branch's text is
        replaced by ``UNAVAILABLE`` on both sides of a pair (seeded), so the RM learns to do without it."""
        if not 0.0 <= branch_dropout < 1.0:
            raise SRMConfigError(f"branch_dropout must be in [0, 1), got {branch_dropout}")
        rng = np.random.default_rng(seed)
        prompts = [as_text(p["prompt"]) for p in pairs]
        chosen = [as_text(p["chosen"]) for p in pairs]
        rejected = [as_text(p["rejected"]) for p in pairs]
        aux = self.aux(prompts + prompts, chosen + rejected)
        n = len(pairs)
        out = []
        for i in range(n):
            ac, ar = dict(aux[i]), dict(aux[n + i])
            if branch_dropout > 0:
                for name in self.branch_names:
                    if rng.random() < branch_dropout:
                        ac[name] = ar[name] = UNAVAILABLE
            out.append(
                {
                    "prompt": prompts[i],
                    "chosen": self.renderer(prompts[i], chosen[i], ac),
                    "rejected": self.renderer(prompts[i], rejected[i], ar),
                    "aux_chosen": json.dumps(ac),
                    "aux_rejected": json.dumps(ar),
                }
            )
        return out

    def enrich_preference_dataset(
        self, ds: Any, *, branch_dropout: float = 0.0, seed: int = 0
    ) -> Any:
        """:meth:`enrich_pairs` on a ``datasets.Dataset`` (or list of dicts) → ``datasets.Dataset``."""
        from datasets import Dataset

        rows = list(ds) if not isinstance(ds, list) else ds
        return Dataset.from_list(self.enrich_pairs(rows, branch_dropout=branch_dropout, seed=seed))

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | Path, *, save_branches: bool = True) -> Path:
        """RM + tokenizer + ``srm.json`` (branch names/order, renderer config); model branches under
        ``branches/<name>/`` (callable branches are recorded by name and must be passed at load)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.reward_model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
        meta = {
            "branches": self.branch_names,
            "kinds": {b.name: b.kind for b in self.branches},
            "renderer": self.renderer.config(),
        }
        (path / SRM_FILE).write_text(json.dumps(meta, indent=2))
        if save_branches:
            for b in self.branches:
                if b.generate_fn is None:
                    b.save_pretrained(path / "branches" / b.name)
        return path

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        branches: Sequence[SideBranchModel] | None = None,
        *,
        branches_dir: str | Path | None = None,
        base: Any = None,
        **kwargs: Any,
    ) -> StructuralRewardModel:
        """Load an SRM saved by :meth:`save_pretrained`. ``branches``: the branch objects (required for
        callables); otherwise model branches are loaded from ``branches_dir`` (default ``path/branches``).
        The branch set must equal the trained one (:class:`BranchSetMismatchError`)."""
        from transformers import AutoModelForSequenceClassification

        from papercore.models import load_tokenizer

        path = Path(path)
        if not (path / SRM_FILE).is_file():
            raise SRMConfigError(f"{str(path)!r} is not a saved SRM: expected {SRM_FILE} in it")
        meta = json.loads((path / SRM_FILE).read_text())
        if branches is None:
            bdir = Path(branches_dir) if branches_dir is not None else path / "branches"
            loaded: dict[str, SideBranchModel] = {}
            shared = None
            for name in meta["branches"]:
                if (bdir / name).is_dir():
                    b = SideBranchModel.from_pretrained(bdir / name, base=base, backend=shared)
                    if b.kind == "lora":
                        shared = b.backend
                    loaded[name] = b
            branches = [loaded[n] for n in meta["branches"] if n in loaded]
        tok = load_tokenizer(str(path))
        rm = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1)
        rc = meta["renderer"]
        renderer = StructuralInputRenderer(
            tok,
            max_length=rc["max_length"],
            max_aux_tokens=rc["max_aux_tokens"],
            drop_order=rc["drop_order"],
            branch_order=meta["branches"],
            add_eos=rc["add_eos"],
        )
        return cls(rm.eval(), tok, branches, renderer, trained_branches=meta["branches"], **kwargs)


class SRMRewardFn:
    """``(prompts, completions, **kw) -> list[float]``: an SRM as a TRL reward function (not an ``nn.Module``,
    so GRPOTrainer calls it as a function). Picklable when the SRM's branches are (callables must be
    module-level functions or picklable objects)."""

    def __init__(self, srm: StructuralRewardModel) -> None:
        self.srm = srm
        self.__name__ = "srm"

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float]:
        if len(prompts) != len(completions):
            raise SRMConfigError(f"got {len(prompts)} prompts but {len(completions)} completions")
        return [float(s) for s in self.srm.score(list(prompts), list(completions))]
