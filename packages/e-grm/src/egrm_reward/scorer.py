"""The lightweight discriminative path scorer (E-GRM §2.3; the architecture is [INFERRED]).

``Scorer(x, r) → s ∈ R`` scores one reasoning path (prompt + CoT + verdict). Two modes:

* ``"sequence_classification"``: ``AutoModelForSequenceClassification`` with ``num_labels=1`` on
  ``prompt + path`` (pooled last-token state → linear → scalar); fully trainable.
* ``"mlp"``: a frozen backbone (e.g. the GRM itself) gives mean-pooled (or last-token) hidden
  states; a 2-layer MLP maps them to a scalar. Only the MLP trains. ``backbone=None`` makes a
  head-only scorer over caller-supplied feature vectors (``forward(features=...)``).

Both round-trip with :meth:`PathScorer.save_pretrained` / :meth:`PathScorer.from_pretrained`
(a JSON config, ``egrm_scorer.json``, beside the weights).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from egrm_reward.errors import EmptyAnswersError, ScorerConfigError, ShapeMismatchError

logger = logging.getLogger(__name__)

CONFIG_NAME = "egrm_scorer.json"
HEAD_NAME = "head.safetensors"
MODES = ("sequence_classification", "mlp")


@dataclass
class PathScorerConfig:
    """Configuration of a :class:`PathScorer` (JSON-serialisable).

    Attributes:
        mode: ``"sequence_classification"`` or ``"mlp"``.
        backbone: model directory / name (the classifier to fine-tune, or the frozen feature model);
            ``None`` only in ``"mlp"`` mode for a head over given features.
        feature_dim: input size of the MLP (read from the backbone when ``None``).
        hidden_dim: hidden size of the MLP.
        pooling: ``"mean"`` or ``"last"`` (mlp mode).
        max_length: longest input in tokens; longer inputs keep their *end* (the verdict) and warn.
        separator: text between prompt and path.
    """

    mode: str = "mlp"
    backbone: str | None = None
    feature_dim: int | None = None
    hidden_dim: int = 128
    pooling: str = "mean"
    max_length: int = 1024
    separator: str = "\n"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ScorerConfigError(f"scorer mode must be one of {MODES}, got {self.mode!r}")
        if self.pooling not in ("mean", "last"):
            raise ScorerConfigError(f"pooling must be 'mean' or 'last', got {self.pooling!r}")
        if self.mode == "sequence_classification" and not self.backbone:
            raise ScorerConfigError("mode 'sequence_classification' needs a backbone model path")
        if self.mode == "mlp" and not self.backbone and not self.feature_dim:
            raise ScorerConfigError("mode 'mlp' needs a backbone or a feature_dim")
        if self.max_length < 2:
            raise ScorerConfigError(f"max_length must be >= 2, got {self.max_length}")


class PathScorer(nn.Module):
    """Scores reasoning paths; ``forward`` returns logits ``[B]`` (σ(s) is the quality estimate)."""

    def __init__(self, config: PathScorerConfig, *, model: Any = None, tokenizer: Any = None):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.backbone: nn.Module | None = None
        self.classifier: nn.Module | None = None
        self.head: nn.Module | None = None
        if config.mode == "sequence_classification":
            from transformers import AutoModelForSequenceClassification

            from papercore.models import load_tokenizer

            self.tokenizer = tokenizer or load_tokenizer(config.backbone)
            if model is None:
                model = AutoModelForSequenceClassification.from_pretrained(
                    config.backbone, num_labels=1, dtype=torch.float32
                )
            if getattr(model.config, "num_labels", 1) != 1:
                raise ScorerConfigError(
                    f"expected a classifier with num_labels=1, got {model.config.num_labels}"
                )
            if model.config.pad_token_id is None:
                model.config.pad_token_id = self._pad_id()
            self.classifier = model
        else:
            if config.backbone is not None:
                from transformers import AutoModel

                from papercore.models import load_tokenizer

                self.tokenizer = tokenizer or load_tokenizer(config.backbone)
                backbone = model or AutoModel.from_pretrained(config.backbone, dtype=torch.float32)
                backbone.eval()
                for p in backbone.parameters():
                    p.requires_grad_(False)
                self.backbone = backbone
                dim = int(backbone.config.hidden_size)
                if config.feature_dim not in (None, dim):
                    raise ScorerConfigError(
                        f"feature_dim {config.feature_dim} does not match the backbone's hidden size {dim}"
                    )
                config.feature_dim = dim
            assert config.feature_dim is not None
            self.head = nn.Sequential(
                nn.Linear(config.feature_dim, config.hidden_dim),
                nn.GELU(),
                nn.Linear(config.hidden_dim, 1),
            )

    # ---------------------------------------------------------------- encoding
    def _pad_id(self) -> int:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            raise ScorerConfigError("the scorer's tokenizer has neither a pad nor an eos token")
        return int(pad)

    def encode(self, prompts: list[str], paths: list[str]) -> dict[str, torch.Tensor]:
        """Token ids ``[B, T]`` of ``prompt + separator + path``, right-padded, each cut to keep its end."""
        if self.tokenizer is None:
            raise ScorerConfigError(
                "this scorer has no backbone/tokenizer: pass features instead of text"
            )
        if len(prompts) != len(paths):
            raise ShapeMismatchError(f"got {len(prompts)} prompts but {len(paths)} paths")
        rows = []
        for p, r in zip(prompts, paths, strict=True):
            ids = self.tokenizer(p + self.config.separator + r, add_special_tokens=True)[
                "input_ids"
            ]
            if len(ids) > self.config.max_length:
                logger.warning(
                    "scorer input of %d tokens truncated to its last %d",
                    len(ids),
                    self.config.max_length,
                )
                ids = ids[-self.config.max_length :]
            rows.append(ids)
        width = max(map(len, rows))
        pad = self._pad_id()
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        return {"input_ids": input_ids, "attention_mask": mask}

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled frozen-backbone hidden states ``[B, d]`` (mlp mode)."""
        if self.backbone is None:
            raise ScorerConfigError("features() needs a backbone (this scorer is head-only)")
        with torch.no_grad():
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
            h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            m = attention_mask.to(h.dtype)
            if self.config.pooling == "mean":
                return (h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1)
            last = attention_mask.sum(1) - 1
            return h[torch.arange(h.shape[0]), last]

    # ---------------------------------------------------------------- forward / score
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores (logits) ``[B]`` from token ids, or (mlp mode) from pooled features ``[B, d]``."""
        if self.classifier is not None:
            if input_ids is None:
                raise ScorerConfigError("a sequence-classification scorer needs input_ids")
            return self.classifier(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0]
        assert self.head is not None
        if features is None:
            if input_ids is None:
                raise ScorerConfigError("pass input_ids (with a backbone) or features")
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            features = self.features(input_ids, attention_mask)
        if features.dim() != 2 or features.shape[1] != self.config.feature_dim:
            raise ShapeMismatchError(
                f"features must be [B, {self.config.feature_dim}], got {tuple(features.shape)}"
            )
        return self.head(features.float())[:, 0]

    @torch.no_grad()
    def score_with_cost(
        self, prompts: list[str], paths: list[str], batch_size: int = 8
    ) -> tuple[np.ndarray, int]:
        """Scores of ``(prompt, path)`` pairs and the number of tokens the scorer read."""
        if not paths:
            raise EmptyAnswersError("score() needs at least one path")
        was = self.training
        self.eval()
        scores, n_tok = [], 0
        try:
            for s in range(0, len(paths), batch_size):
                enc = self.encode(
                    list(prompts[s : s + batch_size]), list(paths[s : s + batch_size])
                )
                n_tok += int(enc["attention_mask"].sum())
                scores.append(self(**enc).float().cpu())
        finally:
            self.train(was)
        return torch.cat(scores).numpy(), n_tok

    def score(self, prompts: list[str], paths: list[str], batch_size: int = 8) -> np.ndarray:
        """Scores (logits) of ``(prompt, path)`` pairs as a NumPy array ``[B]``."""
        return self.score_with_cost(prompts, paths, batch_size)[0]

    # ---------------------------------------------------------------- persistence
    def save_pretrained(self, path: str | Path, *, save_backbone: bool = False) -> Path:
        """Write ``egrm_scorer.json`` and the weights to ``path``.

        ``sequence_classification``: the classifier and tokenizer (``save_pretrained``).
        ``mlp``: the MLP head (``head.safetensors``); the frozen backbone is referenced by path, or
        copied into ``path/backbone`` with ``save_backbone=True``.
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = asdict(self.config)
        if self.classifier is not None:
            self.classifier.save_pretrained(path)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(path)
            cfg["backbone"] = "."
        else:
            assert self.head is not None
            save_file(
                {k: v.detach().contiguous() for k, v in self.head.state_dict().items()},
                str(path / HEAD_NAME),
            )
            if self.backbone is not None and save_backbone:
                self.backbone.save_pretrained(path / "backbone")
                self.tokenizer.save_pretrained(path / "backbone")
                cfg["backbone"] = "backbone"
            elif cfg["backbone"] is not None and Path(cfg["backbone"]).exists():
                cfg["backbone"] = str(Path(cfg["backbone"]).resolve())
        (path / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path) -> PathScorer:
        """Load a scorer written by :meth:`save_pretrained`."""
        from safetensors.torch import load_file

        path = Path(path)
        cfg_file = path / CONFIG_NAME
        if not cfg_file.is_file():
            raise ScorerConfigError(f"{path} is not a saved PathScorer: {CONFIG_NAME} is missing")
        raw = json.loads(cfg_file.read_text())
        if raw.get("backbone") in (".",) or (
            raw.get("backbone")
            and not Path(raw["backbone"]).is_absolute()
            and (path / raw["backbone"]).exists()
        ):
            raw["backbone"] = str((path / raw["backbone"]).resolve())
        config = PathScorerConfig(**raw)
        scorer = cls(config)
        if scorer.head is not None:
            head_file = path / HEAD_NAME
            if not head_file.is_file():
                raise ScorerConfigError(f"{path}: {HEAD_NAME} is missing")
            scorer.head.load_state_dict(load_file(str(head_file)))
        return scorer.eval()
