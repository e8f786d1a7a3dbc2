"""Baselines: one shape, correct definitions, and the strong consensus + log-prob baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurosym_cal.baselines import (
    SCIsotonic,
    SCTemperature,
    SelfConsistency,
    all_baselines,
    consensus_logprob,
    extrinsic_only,
    seq_logprob,
)
from neurosym_cal.calibrator import FeatureTable
from neurosym_cal.ccn import CCNConfig
from neurosym_cal.errors import FeatureMismatchError, SingleClassError
from neurosym_cal.metrics import auroc

torch.set_num_threads(1)
NAMES = [
    "sc_top",
    "sc_margin",
    "cluster_entropy",
    "logprob_mean",
    "logprob_cluster",
    "rsa_mean_curv",
]


def _table(n=300, seed=0):
    """Saturated consensus (sc_top mostly 1) whose errors only the log-prob reveals."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.7).astype(float)
    sc = np.where(rng.random(n) < 0.8, 1.0, rng.choice([0.5, 0.625, 0.75], n))
    lp = -0.2 - 0.8 * (1 - y) + 0.2 * rng.normal(size=n)
    X = np.column_stack([sc, sc - 0.1, 1 - sc, lp, lp + 0.05, rng.normal(size=n)])
    return FeatureTable(NAMES, X, [f"t{i}" for i in range(n)], labels=y)


def test_all_baselines_same_shape():
    train, test = _table(seed=0), _table(seed=1)
    cfg = CCNConfig(epochs=20)
    names = set()
    for b in all_baselines(8, cfg):
        p = b.fit(train).predict_proba(test)
        assert p.shape == (len(test),) and np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all(), (
            b.name
        )
        names.add(b.name)
    assert len(names) == 8 and {"consensus_logprob", "sc_isotonic", "extrinsic_only"} <= names


def test_self_consistency_is_sc_top():
    t = _table()
    np.testing.assert_array_equal(SelfConsistency().fit(t).predict_proba(t), t.column("sc_top"))


def test_isotonic_monotone_and_temperature_finite_at_one():
    t = _table()
    iso = SCIsotonic().fit(t)
    grid = FeatureTable(
        NAMES,
        np.column_stack([np.linspace(0, 1, 11)] + [np.zeros(11)] * 5),
        [str(i) for i in range(11)],
    )
    p = iso.predict_proba(grid)
    assert (np.diff(p) >= -1e-12).all()
    temp = SCTemperature(k=8).fit(t)
    pt = temp.predict_proba(grid)
    assert pt[-1] < 1.0 and np.isfinite(temp.temperature) and (np.diff(pt) > 0).all()
    # at sc_top = 1 the fitted probability is near the empirical accuracy of the saturated rows
    sat = t.column("sc_top") == 1
    assert iso.predict_proba(grid)[-1] == pytest.approx(t.labels[sat].mean(), abs=1e-9)


def test_consensus_logprob_beats_sc_when_saturated():
    train, test = _table(seed=0), _table(seed=2)
    p_sc = SelfConsistency().predict_proba(test)
    p_cl = consensus_logprob().fit(train).predict_proba(test)
    p_lp = seq_logprob().fit(train).predict_proba(test)
    assert auroc(p_cl, test.labels) > auroc(p_sc, test.labels) + 0.1
    assert auroc(p_lp, test.labels) > 0.8


def test_extrinsic_only_ignores_rsa_columns():
    train = _table()
    m = extrinsic_only(CCNConfig(epochs=5)).fit(train)
    assert not any(n.startswith("rsa_") for n in m.cal.ccn.feature_names)
    assert m.predict_proba(train.drop(["rsa_mean_curv"])).shape == (len(train),)


def test_bad_inputs():
    t = _table()
    with pytest.raises(FeatureMismatchError, match="logprob_mean"):
        seq_logprob().fit(t.drop(["logprob_mean"]))
    one = t.select(t.labels == 1)
    with pytest.raises(SingleClassError):
        SCIsotonic().fit(one)
