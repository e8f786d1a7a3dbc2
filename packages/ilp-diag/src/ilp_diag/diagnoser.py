"""``ILPDiagnoser``: compute every signal from a base and an SFT model, then attribute causes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from ilp_diag.callback import trajectory_summary
from ilp_diag.detect import Criterion, detect_unlearned
from ilp_diag.judges import ExactMatchJudge, Judge
from ilp_diag.nll import check_same_tokenizer, token_nll
from ilp_diag.records import SampleRecord, validate_records
from ilp_diag.rules import DiagnosisConfig, diagnose, report, report_markdown
from ilp_diag.signals import (
    base_consistency,
    build_signals,
    complexity_scores,
    conflict_scores,
    rarity_scores,
)
from papercore.generation import make_backend

logger = logging.getLogger(__name__)

__all__ = ["ILPDiagnoser"]


class ILPDiagnoser:
    """Detect unlearned SFT samples and attribute them to causes (spec §3).

    Args:
        base_model: the pre-SFT model (transformers causal LM), or None (C1/C2 rules then disabled).
        sft_model: the model after SFT.
        tokenizer: the SFT tokenizer.
        judge: correctness judge (default normalised exact match).
        config: rule thresholds (:class:`DiagnosisConfig`).
        embedder: prompt embedder for conflict / rarity (None = MiniLM, ``"hash"`` = no model).
        base_tokenizer: the base model's tokenizer when separate; must equal ``tokenizer`` (else ValueError).
        n, temperature, criterion, seed: detection settings (see :func:`detect_unlearned`).
        batch_size: generation / NLL batch size.
    """

    def __init__(
        self,
        base_model: Any,
        sft_model: Any,
        tokenizer: Any,
        judge: Judge | None = None,
        config: DiagnosisConfig | None = None,
        embedder: Any = None,
        *,
        base_tokenizer: Any = None,
        n: int = 8,
        temperature: float = 0.7,
        criterion: Criterion = "graded",
        seed: int = 0,
        batch_size: int = 16,
        max_new_tokens: int | None = None,
    ):
        if base_tokenizer is not None:
            check_same_tokenizer(base_tokenizer, tokenizer)
        self.base_model = base_model
        self.sft_model = sft_model
        self.tokenizer = tokenizer
        self.judge = judge or ExactMatchJudge()
        self.config = config or DiagnosisConfig()
        self.embedder = embedder
        self.n, self.temperature, self.criterion, self.seed = n, temperature, criterion, seed
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens

    def _backend(self, model: Any) -> Any:
        return make_backend(
            "transformers", model=model, tokenizer=self.tokenizer, batch_size=self.batch_size
        )

    def detect(
        self, records: Iterable[SampleRecord | Mapping[str, Any]], model: Any = None, **kw: Any
    ) -> pd.DataFrame:
        """:func:`detect_unlearned` on ``model`` (default the SFT model) with this diagnoser's settings."""
        return detect_unlearned(
            self._backend(model if model is not None else self.sft_model),
            records,
            self.judge,
            n=self.n,
            temperature=self.temperature,
            criterion=self.criterion,
            seed=self.seed,
            max_new_tokens=self.max_new_tokens,
            **kw,
        )

    def base_signals(self, records: list[SampleRecord]) -> pd.DataFrame:
        """``base_pass, base_conf, base_nll, base_pref_margin`` from the base model."""
        det = self.detect(records, model=self.base_model, keep_completions=True)
        prompts = [r.prompt for r in records]
        gold = token_nll(
            self.base_model, self.tokenizer, prompts, [r.target for r in records], self.batch_size
        )
        greedy = det["greedy"].tolist()
        # the base greedy answer may be empty (immediate EOS); its NLL is then that of EOS alone
        own = token_nll(self.base_model, self.tokenizer, prompts, greedy, self.batch_size)
        return pd.DataFrame(
            {
                "idx": [r.idx for r in records],
                "base_pass": det["pass_at_n"].to_numpy(bool),
                "base_greedy_ok": det["greedy_ok"].to_numpy(bool),
                "base_conf": base_consistency(greedy, det["samples"].tolist()),
                "base_nll": gold.mean,
                # log p(own greedy answer) − log p(y_i)  (spec base_pref_margin)
                "base_pref_margin": gold.sum - own.sum,
                "truncated": gold.truncated,
            }
        )

    def collect_signals(
        self,
        records: Iterable[SampleRecord | Mapping[str, Any]],
        loss_log: pd.DataFrame | Iterable[Mapping[str, Any]] | None = None,
        stage_checkpoints: Mapping[int, Any] | None = None,
        detection: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Signals table (one row per record; see :mod:`ilp_diag.signals`).

        Args:
            records: the SFT training set.
            loss_log: a :class:`~ilp_diag.callback.LossTrajectoryCallback` log (None disables C5 with a warning).
            stage_checkpoints: ``{stage_id: model at the end of that stage}`` for sequential SFT; each earlier
                stage's samples are re-detected on its checkpoint (``learned_at_stage_end``). None disables C4.
            detection: a precomputed :func:`detect_unlearned` table for the SFT model (else computed).
        """
        recs = validate_records(records)
        det = detection if detection is not None else self.detect(recs)
        parts: list[pd.DataFrame | None] = []
        fin = token_nll(
            self.sft_model,
            self.tokenizer,
            [r.prompt for r in recs],
            [r.target for r in recs],
            self.batch_size,
        )
        parts.append(pd.DataFrame({"idx": [r.idx for r in recs], "final_nll": fin.mean}))
        if self.base_model is not None:
            parts.append(self.base_signals(recs))
        else:
            logger.warning(
                "no base model: base_pass / base_conf / base_nll missing, rules C1 and C2 disabled"
            )
        parts.append(conflict_scores(recs, self.embedder, judge=self.judge))
        parts.append(rarity_scores(recs, self.embedder, seed=self.seed))
        parts.append(complexity_scores(recs))
        if loss_log is not None:
            parts.append(trajectory_summary(loss_log))
        else:
            logger.warning("no loss log: loss_slope missing, rule C5 disabled")
        stages = sorted({r.stage_id for r in recs})
        if stage_checkpoints:
            rows = []
            for s in stages[:-1]:
                if s not in stage_checkpoints:
                    logger.warning(
                        "no checkpoint for stage %d: its samples get no learned_at_stage_end", s
                    )
                    continue
                sub = [r for r in recs if r.stage_id == s]
                d = self.detect(sub, model=stage_checkpoints[s])
                rows.append(
                    pd.DataFrame(
                        {"idx": d["idx"], "learned_at_stage_end": ~d["unlearned"].astype(bool)}
                    )
                )
            if rows:
                parts.append(pd.concat(rows, ignore_index=True))
        elif len(stages) > 1:
            logger.warning("several stages but no stage checkpoints: rule C4 disabled")
        out = build_signals(recs, det, *parts)
        if "learned_at_stage_end" in out:
            out["learned_at_stage_end"] = out["learned_at_stage_end"].astype("boolean")
        out.attrs["generation"] = det.attrs.get("generation", {})
        return out

    def diagnose(self, signals: pd.DataFrame) -> pd.DataFrame:
        """Apply the rules (:func:`ilp_diag.rules.diagnose`) with this diagnoser's config."""
        return diagnose(signals, self.config)

    def report(self, diag: pd.DataFrame, markdown: bool = False) -> dict[str, Any] | str:
        """The report dict (or its markdown rendering)."""
        rep = report(diag)
        return report_markdown(rep) if markdown else rep
