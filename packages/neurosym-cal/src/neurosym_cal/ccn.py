"""The Contextual Calibration Network (CCN): fuses extrinsic and intrinsic features (spec §2.3, [INFERRED]).

    z_e = LN(W_e f_ext),  z_i = LN(W_i f_int),  c = MLP_c(e(x))          each → R^h (h = 32)
    α = softmax(W_g [c; z_e; z_i]) ∈ Δ²                                   context-dependent level weights
    z = α₁ z_e + α₂ z_i + W_x (z_e ⊙ z_i)                                  gated fusion + interaction term
    logit = wᵀ GELU(W_h [z; c]) + b,    p̂ = σ(logit / τ)

:class:`ContextualCalibrationNetwork` is the ``nn.Module``; :class:`CCNCalibrator` trains it on a
named feature matrix (median imputation and standardisation with train statistics only, AdamW with
early stopping on a held-out split, temperature τ fitted on that split's NLL) and
round-trips through ``save_pretrained`` / ``from_pretrained`` (``config.json`` + ``model.safetensors``
+ ``scaler.json``).

Which columns are "intrinsic" is decided by name: a column whose name starts with one of
``CCNConfig.int_prefixes`` (default ``"rsa_"``) goes to ``f_int``, every other to ``f_ext``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from neurosym_cal.errors import FeatureMismatchError, NeuroSymCalError, SingleClassError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
Fusion = Literal["gated", "concat", "late_avg"]


class CCNConfigError(NeuroSymCalError, ValueError):
    """Invalid CCN configuration or training input."""


@dataclass(frozen=True)
class CCNConfig:
    """Architecture and training settings of the CCN (defaults: spec §2.3).

    Attributes:
        hidden: width h of every level's embedding.
        dropout: dropout before the output head.
        fusion: ``"gated"`` (α-weighted + interaction), ``"concat"`` (linear on [z_e; z_i]) or
            ``"late_avg"`` (one head per level, logits averaged).
        use_ext / use_int / use_context: ablation switches for the three inputs.
        int_prefixes: feature-name prefixes of the intrinsic (RSA) columns.
        lr, weight_decay: AdamW.
        epochs: maximum epochs; early stopping after ``patience`` epochs without a better
            validation log-loss (the best state is restored).
        batch_size: mini-batch size.
        val_fraction: held-out share of the training rows (stratified) for early stopping and the
            temperature; 0 disables both (then all rows train, τ = 1).
        temperature_scaling: fit τ on the held-out split.
        log_scale_int: map intrinsic columns to ``sign(x)·log1p(|x|/m)`` (m = training median of
            ``|x|``) before standardising (see :class:`Scaler`).
        seed: seed of the split, the initialisation and the batch order.
    """

    hidden: int = 32
    dropout: float = 0.1
    fusion: Fusion = "gated"
    use_ext: bool = True
    use_int: bool = True
    use_context: bool = True
    int_prefixes: tuple[str, ...] = ("rsa_",)
    lr: float = 1e-3
    weight_decay: float = 1e-2
    epochs: int = 200
    batch_size: int = 64
    patience: int = 20
    val_fraction: float = 0.2
    temperature_scaling: bool = True
    log_scale_int: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "int_prefixes", tuple(self.int_prefixes))
        if self.fusion not in ("gated", "concat", "late_avg"):
            raise CCNConfigError(
                f"fusion must be 'gated', 'concat' or 'late_avg', got {self.fusion!r}"
            )
        if not (self.use_ext or self.use_int):
            raise CCNConfigError("at least one of use_ext / use_int must be True")
        if self.hidden < 1 or self.epochs < 1 or self.batch_size < 1:
            raise CCNConfigError(
                f"hidden, epochs and batch_size must be >= 1, got {self.hidden}, {self.epochs}, {self.batch_size}"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise CCNConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.dropout < 1.0:
            raise CCNConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["int_prefixes"] = list(self.int_prefixes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CCNConfig:
        known = {f.name for f in fields(cls)}
        return cls(
            **{k: (tuple(v) if k == "int_prefixes" else v) for k, v in d.items() if k in known}
        )


class ContextualCalibrationNetwork(nn.Module):
    """The CCN module (spec §2.3). ``forward(f_ext [B, d_e], f_int [B, d_i], ctx [B, d_c]) -> logits [B]``.

    A level whose dimension is 0 or whose switch is off is absent (its input may be None); the
    returned logits are *before* the temperature (``self.temperature``, a buffer, τ = 1 until fitted).
    """

    def __init__(self, d_ext: int, d_int: int, d_ctx: int, cfg: CCNConfig | None = None):
        super().__init__()
        cfg = cfg or CCNConfig()
        self.cfg = cfg
        self.d_ext, self.d_int, self.d_ctx = int(d_ext), int(d_int), int(d_ctx)
        h = cfg.hidden
        self.has_ext = cfg.use_ext and self.d_ext > 0
        self.has_int = cfg.use_int and self.d_int > 0
        self.has_ctx = cfg.use_context and self.d_ctx > 0
        if not (self.has_ext or self.has_int):
            raise CCNConfigError(
                f"the CCN needs extrinsic or intrinsic features: d_ext={d_ext}, d_int={d_int}, "
                f"use_ext={cfg.use_ext}, use_int={cfg.use_int}"
            )
        if self.has_ext:
            self.enc_ext = nn.Sequential(nn.Linear(self.d_ext, h), nn.LayerNorm(h))  # z_e
        if self.has_int:
            self.enc_int = nn.Sequential(nn.Linear(self.d_int, h), nn.LayerNorm(h))  # z_i
        if self.has_ctx:
            self.enc_ctx = nn.Sequential(nn.Linear(self.d_ctx, h), nn.GELU(), nn.Linear(h, h))  # c
        self.both = self.has_ext and self.has_int
        hc = h if self.has_ctx else 0
        if self.both and cfg.fusion == "gated":
            self.gate = nn.Linear(hc + 2 * h, 2)  # W_g
            self.interaction = nn.Linear(h, h, bias=False)  # W_x
        elif self.both and cfg.fusion == "concat":
            self.fuse = nn.Linear(2 * h, h)
        n_heads = 2 if (self.both and cfg.fusion == "late_avg") else 1
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(h + hc, h), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(h, 1))
            for _ in range(n_heads)
        )
        self.register_buffer("temperature", torch.ones(()))

    def _levels(self, f_ext, f_int, ctx):
        z_e = self.enc_ext(f_ext) if self.has_ext else None
        z_i = self.enc_int(f_int) if self.has_int else None
        c = self.enc_ctx(ctx) if self.has_ctx else None
        return z_e, z_i, c

    def gate_weights(
        self,
        f_ext: torch.Tensor | None,
        f_int: torch.Tensor | None,
        ctx: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """α = softmax(W_g [c; z_e; z_i]) [B, 2] (gated fusion with both levels only)."""
        if not (self.both and self.cfg.fusion == "gated"):
            raise CCNConfigError(
                "gate weights exist only for fusion='gated' with both feature levels"
            )
        z_e, z_i, c = self._levels(f_ext, f_int, ctx)
        parts = ([c] if c is not None else []) + [z_e, z_i]
        return torch.softmax(self.gate(torch.cat(parts, dim=-1)), dim=-1)

    def forward(
        self,
        f_ext: torch.Tensor | None,
        f_int: torch.Tensor | None,
        ctx: torch.Tensor | None = None,
    ) -> torch.Tensor:
        z_e, z_i, c = self._levels(f_ext, f_int, ctx)
        tail = [c] if c is not None else []
        if not self.both:
            z = z_e if z_e is not None else z_i
            return self.heads[0](torch.cat([z, *tail], dim=-1)).squeeze(-1)
        if self.cfg.fusion == "gated":
            alpha = torch.softmax(self.gate(torch.cat([*tail, z_e, z_i], dim=-1)), dim=-1)
            z = alpha[:, :1] * z_e + alpha[:, 1:] * z_i + self.interaction(z_e * z_i)
        elif self.cfg.fusion == "concat":
            z = self.fuse(torch.cat([z_e, z_i], dim=-1))
        else:  # late_avg
            le = self.heads[0](torch.cat([z_e, *tail], dim=-1)).squeeze(-1)
            li = self.heads[1](torch.cat([z_i, *tail], dim=-1)).squeeze(-1)
            return 0.5 * (le + li)
        return self.heads[0](torch.cat([z, *tail], dim=-1)).squeeze(-1)


# ----------------------------------------------------------------------------------------------


def check_binary_labels(y: Any, n_rows: int) -> np.ndarray:
    """Labels as a float array of 0/1 with both classes present, else a named error."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if y.shape[0] != n_rows:
        raise CCNConfigError(f"expected {n_rows} labels (one per row), got {y.shape[0]}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise CCNConfigError(f"labels must be 0/1, got values {sorted(set(y.tolist()))[:5]}")
    if len(np.unique(y)) < 2:
        raise SingleClassError(
            f"calibration needs both correct and incorrect examples; all {len(y)} labels are {int(y[0]) if len(y) else '?'}"
        )
    return y


def align_features(
    X: np.ndarray, names: Sequence[str], expected: Sequence[str], what: str = "model"
) -> np.ndarray:
    """Columns of ``X`` (named ``names``) reordered to ``expected``; FeatureMismatchError lists missing/extra."""
    X = np.asarray(X, dtype=np.float64)
    names = list(names)
    if X.ndim != 2 or X.shape[1] != len(names):
        raise FeatureMismatchError(
            f"feature matrix of shape {X.shape} does not match {len(names)} feature names"
        )
    if names == list(expected):
        return X
    missing = [n for n in expected if n not in names]
    extra = [n for n in names if n not in expected]
    if missing or extra or len(set(names)) != len(names):
        raise FeatureMismatchError(
            f"features differ from those the {what} was fitted on: missing {missing}, extra {extra}"
        )
    pos = {n: i for i, n in enumerate(names)}
    return X[:, [pos[n] for n in expected]]


@dataclass
class Scaler:
    """Train-split statistics: median (imputation), optional robust log scale, mean and std.

    Columns flagged in ``log_cols`` are mapped to ``sign(x)·log1p(|x|/m)`` (``m`` = the training
    median of ``|x|``) before standardisation: RSA statistics are tiny in absolute value and
    heavy-tailed, so plain standardisation turns one extreme OOD value into a 10σ input.
    """

    names: list[str]
    median: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    log_cols: np.ndarray | None = None  # bool [F]
    log_scale: np.ndarray | None = None  # [F]

    @classmethod
    def fit(
        cls, X: np.ndarray, names: Sequence[str], log_cols: Sequence[bool] | None = None
    ) -> Scaler:
        X = np.where(np.isfinite(X), X, np.nan)
        with np.errstate(all="ignore"):
            all_nan = np.isnan(X).all(axis=0)
            median = np.where(all_nan, 0.0, np.nanmedian(np.where(all_nan, 0.0, X), axis=0))
        if all_nan.any():
            logger.warning(
                "features with no finite training value (imputed 0): %s",
                [n for n, b in zip(names, all_nan, strict=True) if b],
            )
        Xi = np.where(np.isnan(X), median, X)
        self = cls(list(names), median, np.zeros(X.shape[1]), np.ones(X.shape[1]))
        if log_cols is not None and any(log_cols):
            self.log_cols = np.asarray(log_cols, dtype=bool)
            scale = np.median(np.abs(Xi), axis=0)
            self.log_scale = np.where(scale > 1e-12, scale, 1.0)
            Xi = self._log(Xi)
        std = Xi.std(axis=0)
        self.mean, self.std = Xi.mean(axis=0), np.where(std > 1e-8, std, 1.0)
        return self

    def _log(self, X: np.ndarray) -> np.ndarray:
        if self.log_cols is None or self.log_scale is None:
            return X
        X = X.copy()
        c = self.log_cols
        X[:, c] = np.sign(X[:, c]) * np.log1p(np.abs(X[:, c]) / self.log_scale[c])
        return X

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.where(np.isfinite(X), X, np.nan)
        bad = np.isnan(X)
        if bad.any():
            cols = [self.names[j] for j in np.flatnonzero(bad.any(axis=0))]
            logger.info(
                "imputing %d NaN/inf feature values with the train median (columns %s)",
                int(bad.sum()),
                cols,
            )
        X = np.where(bad, self.median, X)
        return (self._log(X) - self.mean) / self.std

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "median": self.median.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "log_cols": None if self.log_cols is None else self.log_cols.tolist(),
            "log_scale": None if self.log_scale is None else self.log_scale.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        self = cls(
            list(d["names"]),
            *(np.asarray(d[k], dtype=np.float64) for k in ("median", "mean", "std")),
        )
        if d.get("log_cols") is not None:
            self.log_cols = np.asarray(d["log_cols"], dtype=bool)
            self.log_scale = np.asarray(d["log_scale"], dtype=np.float64)
        return self


def fit_temperature(logits: np.ndarray, y: np.ndarray, tol: float = 1e-7) -> float:
    """τ minimising the NLL of σ(logit/τ) on held-out rows; 1.0 when they are single-class.

    The NLL is convex in β = 1/τ, so a golden-section search on β ∈ [0.05, 20] finds the minimum
    (a 1-d problem: no LBFGS needed, and no import of ``torch.optim``'s compiler machinery).
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    t = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(np.unique(t)) < 2:
        return 1.0

    def nll(beta: float) -> float:
        s = beta * z
        return float(np.mean(np.logaddexp(0.0, s) - t * s))  # BCE with logits

    lo, hi = 0.05, 20.0
    g = (np.sqrt(5.0) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    while hi - lo > tol:
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(1.0 / (0.5 * (lo + hi)))


def _split(y: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, val) indices; no validation split when it would be too small."""
    n = len(y)
    idx = np.arange(n)
    if frac <= 0 or n < 10:
        return idx, idx[:0]
    rng = np.random.default_rng(seed)
    val = []
    for cls in (0.0, 1.0):
        members = rng.permutation(idx[y == cls])
        k = round(frac * len(members))
        k = min(k, len(members) - 1)  # keep each class in the train part
        val.extend(members[:k].tolist())
    val_idx = np.sort(np.array(val, dtype=int))
    train_idx = np.setdiff1d(idx, val_idx)
    return train_idx, val_idx


class CCNCalibrator:
    """Fit / predict / save a :class:`ContextualCalibrationNetwork` on a named feature matrix.

    ``fit(X [N, F], y [N], feature_names, context [N, d_c] | None)``;
    ``predict_proba(X, feature_names, context) -> [N]`` probabilities of correctness.
    """

    def __init__(self, cfg: CCNConfig | None = None):
        self.cfg = cfg or CCNConfig()
        self.model: ContextualCalibrationNetwork | None = None
        self.scaler: Scaler | None = None
        self.feature_names: list[str] = []
        self.ext_names: list[str] = []
        self.int_names: list[str] = []
        self.history: dict[str, Any] = {}

    # -- helpers -------------------------------------------------------------------------------

    def _is_int(self, name: str) -> bool:
        return name.startswith(self.cfg.int_prefixes)

    def _tensors(self, Z: np.ndarray, ctx: np.ndarray | None):
        n_ext = len(self.ext_names)
        fe = torch.as_tensor(Z[:, :n_ext], dtype=torch.float32)
        fi = torch.as_tensor(Z[:, n_ext:], dtype=torch.float32)
        c = None if ctx is None else torch.as_tensor(ctx, dtype=torch.float32)
        return fe, fi, c

    def _check_context(self, context: Any, n: int) -> np.ndarray | None:
        d_ctx = self.model.d_ctx if self.model is not None else None
        if context is None:
            if d_ctx:
                raise FeatureMismatchError(
                    f"this calibrator was fitted with a {d_ctx}-d context embedding; none was given"
                )
            return None
        ctx = np.asarray(context, dtype=np.float64)
        if ctx.ndim != 2 or ctx.shape[0] != n:
            raise FeatureMismatchError(f"context must be [{n}, d], got shape {ctx.shape}")
        if d_ctx is not None and ctx.shape[1] != d_ctx:
            raise FeatureMismatchError(
                f"context embedding has {ctx.shape[1]} dims; the calibrator was fitted with {d_ctx}"
            )
        return np.nan_to_num(ctx)

    # -- API ------------------------------------------------------------------------------------

    def fit(
        self,
        X: np.ndarray,
        y: Any,
        feature_names: Sequence[str],
        context: np.ndarray | None = None,
    ) -> CCNCalibrator:
        """Train on ``X`` (standardised with these rows' statistics), early-stop and fit τ on a held-out split."""
        cfg = self.cfg
        X = np.asarray(X, dtype=np.float64)
        names = list(feature_names)
        if X.ndim != 2 or X.shape[1] != len(names):
            raise FeatureMismatchError(
                f"X of shape {X.shape} does not match {len(names)} feature names"
            )
        if len(set(names)) != len(names):
            raise FeatureMismatchError(f"duplicate feature names in {names}")
        y = check_binary_labels(y, X.shape[0])
        if X.shape[0] < 20:
            logger.warning("fitting the CCN on only %d examples", X.shape[0])
        self.ext_names = [n for n in names if not self._is_int(n)] if cfg.use_ext else []
        self.int_names = [n for n in names if self._is_int(n)] if cfg.use_int else []
        self.feature_names = self.ext_names + self.int_names
        if not self.feature_names:
            raise CCNConfigError(
                f"no usable feature columns: use_ext={cfg.use_ext}, use_int={cfg.use_int}, "
                f"intrinsic prefixes {cfg.int_prefixes}, names {names}"
            )
        unused = [n for n in names if n not in self.feature_names]
        if unused:
            logger.info(
                "CCN ignores %d columns switched off by the config: %s", len(unused), unused
            )
        X = align_features(
            X[:, [names.index(n) for n in self.feature_names]],
            self.feature_names,
            self.feature_names,
        )
        ctx = None
        if context is not None and cfg.use_context:
            ctx = np.nan_to_num(np.asarray(context, dtype=np.float64))
            if ctx.ndim != 2 or ctx.shape[0] != X.shape[0]:
                raise FeatureMismatchError(f"context must be [{X.shape[0]}, d], got {ctx.shape}")

        tr, va = _split(y, cfg.val_fraction, cfg.seed)
        log_cols = [cfg.log_scale_int and self._is_int(n) for n in self.feature_names]
        self.scaler = Scaler.fit(X[tr], self.feature_names, log_cols)
        Z = self.scaler.transform(X)
        torch.manual_seed(cfg.seed)
        self.model = ContextualCalibrationNetwork(
            len(self.ext_names), len(self.int_names), 0 if ctx is None else ctx.shape[1], cfg
        )
        fe, fi, c = self._tensors(Z, ctx)
        t = torch.as_tensor(y, dtype=torch.float32)
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)
        tr_t = torch.as_tensor(tr)
        best, best_state, bad_epochs, losses = float("inf"), None, 0, []
        sel = lambda ix: (fe[ix], fi[ix], None if c is None else c[ix])  # noqa: E731
        n_epochs = 0
        for _ in range(cfg.epochs):
            n_epochs += 1
            self.model.train()
            for b in tr_t[torch.randperm(len(tr_t), generator=gen)].split(cfg.batch_size):
                loss = nn.functional.binary_cross_entropy_with_logits(self.model(*sel(b)), t[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if len(va):
                self.model.eval()
                with torch.no_grad():
                    vl = float(
                        nn.functional.binary_cross_entropy_with_logits(self.model(*sel(va)), t[va])
                    )
                losses.append(vl)
                if vl < best - 1e-6:
                    best, bad_epochs = vl, 0
                    best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                else:
                    bad_epochs += 1
                    if bad_epochs >= cfg.patience:
                        break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.eval()
        tau = 1.0
        if len(va) and cfg.temperature_scaling:
            with torch.no_grad():
                vlog = self.model(*sel(va)).double().numpy()
            tau = fit_temperature(vlog, y[va])
        self.model.temperature.fill_(tau)
        self.history = {
            "epochs": n_epochs,
            "best_val_logloss": None if not len(va) else best,
            "temperature": tau,
            "n_train": len(tr),
            "n_val": len(va),
        }
        logger.info("CCN fitted: %s", self.history)
        return self

    def _require_fitted(self) -> None:
        if self.model is None or self.scaler is None:
            raise NeuroSymCalError(
                "the CCN calibrator is not fitted: call fit() or from_pretrained()"
            )

    def predict_logits(
        self, X: np.ndarray, feature_names: Sequence[str], context: np.ndarray | None = None
    ) -> np.ndarray:
        """Temperature-scaled logits ``logit / τ`` [N]."""
        self._require_fitted()
        X = np.asarray(X, dtype=np.float64)
        names = list(feature_names)
        if X.ndim != 2 or X.shape[1] != len(names):
            raise FeatureMismatchError(
                f"X of shape {X.shape} does not match {len(names)} feature names"
            )
        missing = [n for n in self.feature_names if n not in names]
        if missing:
            extra = [n for n in names if n not in self.feature_names]
            raise FeatureMismatchError(
                f"features differ from those the CCN was fitted on: missing {missing}, extra {extra}"
            )
        X = X[:, [names.index(n) for n in self.feature_names]]
        ctx = self._check_context(context if self.model.has_ctx else None, X.shape[0])
        Z = self.scaler.transform(X)
        with torch.no_grad():
            logits = self.model(*self._tensors(Z, ctx)) / self.model.temperature
        return logits.double().numpy()

    def predict_proba(
        self, X: np.ndarray, feature_names: Sequence[str], context: np.ndarray | None = None
    ) -> np.ndarray:
        """p̂ = σ(logit/τ) [N]."""
        return 1.0 / (1.0 + np.exp(-self.predict_logits(X, feature_names, context)))

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors`` and ``scaler.json`` into ``path``."""
        from safetensors.torch import save_file

        self._require_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {
            "format_version": FORMAT_VERSION,
            "ccn_config": self.cfg.to_dict(),
            "d_ext": self.model.d_ext,
            "d_int": self.model.d_int,
            "d_ctx": self.model.d_ctx,
            "ext_names": self.ext_names,
            "int_names": self.int_names,
            "feature_names": self.feature_names,
            "history": self.history,
        }
        (path / "config.json").write_text(json.dumps(config, indent=2))
        state = {k: v.detach().contiguous().clone() for k, v in self.model.state_dict().items()}
        save_file(state, str(path / "model.safetensors"))
        (path / "scaler.json").write_text(json.dumps(self.scaler.to_dict()))
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path) -> CCNCalibrator:
        """Load what :meth:`save_pretrained` wrote."""
        from safetensors.torch import load_file

        path = Path(path)
        for f in ("config.json", "model.safetensors", "scaler.json"):
            if not (path / f).exists():
                raise FileNotFoundError(f"{path} is not a saved CCN calibrator: {f} is missing")
        config = json.loads((path / "config.json").read_text())
        if config.get("format_version") != FORMAT_VERSION:
            raise NeuroSymCalError(
                f"{path}: format_version {config.get('format_version')!r}, expected {FORMAT_VERSION}"
            )
        self = cls(CCNConfig.from_dict(config["ccn_config"]))
        self.ext_names, self.int_names = list(config["ext_names"]), list(config["int_names"])
        self.feature_names = list(config["feature_names"])
        self.history = config.get("history", {})
        self.model = ContextualCalibrationNetwork(
            config["d_ext"], config["d_int"], config["d_ctx"], self.cfg
        )
        self.model.load_state_dict(load_file(str(path / "model.safetensors")))
        self.model.eval()
        self.scaler = Scaler.from_dict(json.loads((path / "scaler.json").read_text()))
        return self


__all__ = [
    "CCNCalibrator",
    "CCNConfig",
    "CCNConfigError",
    "ContextualCalibrationNetwork",
    "Scaler",
    "align_features",
    "check_binary_labels",
    "fit_temperature",
]
