"""Baselines in one shape: ``fit(table) -> self``, ``predict_proba(table) -> [N]`` on a FeatureTable.

Every baseline is a small class with a ``name``; the method (:class:`NeuroSymMethod`, the CCN on all
features) has the same shape, so a bench compares them in one loop (kvpress style).

=========================  ========================================================================
``self_consistency``       ``sc_top`` as is (the saturating signal)
``sc_temperature``         σ(logit(sc_top)/T), T fitted by NLL (temperature scaling; sc_top clipped to
                           [0.5/K, 1 − 0.5/K] so logit(1) is finite)
``sc_isotonic``            scikit-learn ``IsotonicRegression`` on sc_top (clipped, increasing)
``seq_logprob``            Platt scaling (1-d logistic regression) of ``logprob_mean`` of c*
``consensus_logprob``      logistic regression on sc_top, sc_margin, logprob_mean, logprob_cluster
``cluster_entropy``        Platt scaling of the execution-cluster entropy
``extrinsic_only``         the CCN with ``use_int=False`` (no RSA columns)
``logreg_all``             logistic regression on every column (extrinsic + log-prob + meta + RSA)
=========================  ========================================================================

Missing values (NaN) are imputed with the training median; logistic regressions standardise their
inputs with training statistics (scikit-learn ``Pipeline``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from neurosym_cal.calibrator import FeatureTable, NeuroSymCalibrator
from neurosym_cal.ccn import CCNConfig, check_binary_labels
from neurosym_cal.errors import NeuroSymCalError

logger = logging.getLogger(__name__)


class Calibrator(Protocol):
    name: str

    def fit(self, table: FeatureTable) -> Any: ...

    def predict_proba(self, table: FeatureTable) -> np.ndarray: ...


def _labels(table: FeatureTable) -> np.ndarray:
    if table.labels is None:
        raise NeuroSymCalError("fitting a baseline needs a labelled feature table")
    return check_binary_labels(table.labels, len(table))


def _sc(table: FeatureTable) -> np.ndarray:
    return np.clip(table.column("sc_top"), 0.0, 1.0)


class SelfConsistency:
    """Confidence = ``sc_top`` (share of the largest execution cluster); nothing is fitted."""

    name = "self_consistency"

    def fit(self, table: FeatureTable) -> SelfConsistency:
        return self

    def predict_proba(self, table: FeatureTable) -> np.ndarray:
        return _sc(table)


def _clipped_logit(p: np.ndarray, k: int) -> np.ndarray:
    lo = 0.5 / max(k, 2)
    p = np.clip(p, lo, 1 - lo)
    return np.log(p / (1 - p))


class SCTemperature:
    """σ(logit(sc_top)/T) with T minimising the training NLL (``k``: samples per problem, for clipping)."""

    name = "sc_temperature"

    def __init__(self, k: int = 8):
        self.k = k
        self.temperature = 1.0

    def fit(self, table: FeatureTable) -> SCTemperature:
        from neurosym_cal.ccn import fit_temperature

        self.temperature = fit_temperature(_clipped_logit(_sc(table), self.k), _labels(table))
        return self

    def predict_proba(self, table: FeatureTable) -> np.ndarray:
        return 1 / (1 + np.exp(-_clipped_logit(_sc(table), self.k) / self.temperature))


class SCIsotonic:
    """Isotonic regression (increasing, clipped to [0, 1]) of the labels on ``sc_top``."""

    name = "sc_isotonic"

    def __init__(self) -> None:
        self.iso: Any = None

    def fit(self, table: FeatureTable) -> SCIsotonic:
        from sklearn.isotonic import IsotonicRegression

        self.iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
        self.iso.fit(_sc(table), _labels(table))
        return self

    def predict_proba(self, table: FeatureTable) -> np.ndarray:
        if self.iso is None:
            raise NeuroSymCalError("sc_isotonic is not fitted")
        return np.clip(self.iso.predict(_sc(table)), 0.0, 1.0)


class LogisticOn:
    """Logistic regression (median imputation + standardisation) on the named columns.

    ``columns=None`` uses every column of the training table. ``C`` is the inverse L2 strength.
    """

    def __init__(self, columns: Sequence[str] | None, name: str, C: float = 1.0):
        self.columns = None if columns is None else list(columns)
        self.name = name
        self.C = C
        self.pipe: Any = None
        self.used: list[str] = []

    def fit(self, table: FeatureTable) -> LogisticOn:
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.used = list(table.names) if self.columns is None else list(self.columns)
        X = np.column_stack([table.column(c) for c in self.used])
        X = np.where(np.isfinite(X), X, np.nan)
        all_nan = np.isnan(X).all(axis=0)
        if all_nan.any():
            dropped = [c for c, b in zip(self.used, all_nan, strict=True) if b]
            logger.warning(
                "%s: columns without any finite training value are dropped: %s", self.name, dropped
            )
            self.used = [c for c, b in zip(self.used, all_nan, strict=True) if not b]
            X = X[:, ~all_nan]
        self.pipe = make_pipeline(
            SimpleImputer(strategy="median"),
            StandardScaler(),
            LogisticRegression(C=self.C, max_iter=2000),
        )
        self.pipe.fit(X, _labels(table))
        return self

    def predict_proba(self, table: FeatureTable) -> np.ndarray:
        if self.pipe is None:
            raise NeuroSymCalError(f"{self.name} is not fitted")
        X = np.column_stack([table.column(c) for c in self.used])
        X = np.where(np.isfinite(X), X, np.nan)
        return self.pipe.predict_proba(X)[:, 1]


def seq_logprob() -> LogisticOn:
    """Platt scaling of the selected program's mean token log-prob."""
    return LogisticOn(["logprob_mean"], "seq_logprob")


def consensus_logprob() -> LogisticOn:
    """Logistic regression on consensus + log-prob features (the strong baseline to beat)."""
    return LogisticOn(
        ["sc_top", "sc_margin", "logprob_mean", "logprob_cluster"], "consensus_logprob"
    )


def cluster_entropy() -> LogisticOn:
    """Platt scaling of the execution-cluster entropy (symbolic-cluster baseline, arXiv 2502.11620)."""
    return LogisticOn(["cluster_entropy"], "cluster_entropy")


def logreg_all() -> LogisticOn:
    """Logistic regression on every feature (the spec's "no-context fusion" baseline)."""
    return LogisticOn(None, "logreg_all")


class CCNMethod:
    """The CCN on a table (NeuroSym-Cal itself, or an ablation such as ``use_int=False``)."""

    def __init__(self, cfg: CCNConfig | None = None, name: str = "neurosym_cal"):
        self.cfg = cfg or CCNConfig()
        self.name = name
        self.cal = NeuroSymCalibrator(ccn_config=self.cfg, context_encoder="none")

    def fit(self, table: FeatureTable) -> CCNMethod:
        self.cal.fit(table)
        return self

    def predict_proba(self, table: FeatureTable) -> np.ndarray:
        return self.cal.predict_proba(table)


def extrinsic_only(cfg: CCNConfig | None = None) -> CCNMethod:
    """The CCN without the intrinsic (RSA) level."""
    return CCNMethod(replace(cfg or CCNConfig(), use_int=False), "extrinsic_only")


def all_baselines(k: int = 8, ccn_config: CCNConfig | None = None) -> list[Calibrator]:
    """Every baseline above, fresh (unfitted), in the order of the module doc."""
    return [
        SelfConsistency(),
        SCTemperature(k),
        SCIsotonic(),
        seq_logprob(),
        consensus_logprob(),
        cluster_entropy(),
        extrinsic_only(ccn_config),
        logreg_all(),
    ]


__all__ = [
    "CCNMethod",
    "Calibrator",
    "LogisticOn",
    "SCIsotonic",
    "SCTemperature",
    "SelfConsistency",
    "all_baselines",
    "cluster_entropy",
    "consensus_logprob",
    "extrinsic_only",
    "logreg_all",
    "seq_logprob",
]
