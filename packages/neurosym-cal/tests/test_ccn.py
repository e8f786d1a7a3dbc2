"""CCN: architecture invariants, training, persistence, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from neurosym_cal.ccn import (
    CCNCalibrator,
    CCNConfig,
    ContextualCalibrationNetwork,
    fit_temperature,
)
from neurosym_cal.errors import FeatureMismatchError, SingleClassError

torch.set_num_threads(1)  # tiny MLPs: thread overhead dominates

NAMES = ["sc_top", "sc_margin", "sem_entropy", "rsa_mean_curv", "rsa_mean_flip"]


def _data(n=64, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(NAMES)))
    y = (X[:, 0] + X[:, 3] * X[:, 4] + noise * rng.normal(size=n) > 0).astype(float)
    return X, y


def test_gate_sums_to_one_and_shapes():
    torch.manual_seed(0)
    net = ContextualCalibrationNetwork(3, 2, 7, CCNConfig())
    fe, fi, c = torch.randn(5, 3), torch.randn(5, 2), torch.randn(5, 7)
    alpha = net.gate_weights(fe, fi, c)
    assert alpha.shape == (5, 2)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(5))
    assert (alpha > 0).all()
    assert net(fe, fi, c).shape == (5,)
    # the context changes the gate (it is context dependent)
    assert not torch.allclose(alpha, net.gate_weights(fe, fi, c + 3.0))


@pytest.mark.parametrize("fusion", ["gated", "concat", "late_avg"])
def test_overfits_64_rows(fusion):
    X, y = _data(64)
    cfg = CCNConfig(
        fusion=fusion, dropout=0.0, weight_decay=0.0, lr=2e-2, epochs=150, val_fraction=0.0
    )
    cal = CCNCalibrator(cfg).fit(X, y, NAMES)
    p = cal.predict_proba(X, NAMES)
    assert ((p > 0.5) == (y == 1)).mean() == 1.0
    assert np.mean(np.abs(p - y)) < 0.1


def test_roundtrip_identical(tmp_path):
    X, y = _data(80, noise=0.5)
    ctx = np.random.default_rng(1).normal(size=(80, 6))
    cal = CCNCalibrator(CCNConfig(epochs=40)).fit(X, y, NAMES, context=ctx)
    assert cal.model.d_ctx == 6 and cal.history["n_val"] > 0
    p = cal.predict_proba(X, NAMES, ctx)
    loaded = CCNCalibrator.from_pretrained(cal.save_pretrained(tmp_path / "ccn"))
    np.testing.assert_array_equal(loaded.predict_proba(X, NAMES, ctx), p)
    assert float(loaded.model.temperature) == pytest.approx(cal.history["temperature"])
    # columns in another order give the same answer
    perm = [4, 2, 0, 1, 3]
    np.testing.assert_allclose(
        loaded.predict_proba(X[:, perm], [NAMES[i] for i in perm], ctx), p, atol=1e-12
    )


def test_feature_mismatch_names_missing_and_extra():
    X, y = _data(40)
    cal = CCNCalibrator(CCNConfig(epochs=3)).fit(X, y, NAMES)
    bad = [*NAMES[:-1], "rsa_other"]
    with pytest.raises(
        FeatureMismatchError, match=r"missing \['rsa_mean_flip'\].*extra \['rsa_other'\]"
    ):
        cal.predict_proba(X, bad)


def test_context_dim_mismatch():
    X, y = _data(40)
    cal = CCNCalibrator(CCNConfig(epochs=3)).fit(X, y, NAMES, context=np.zeros((40, 4)))
    with pytest.raises(FeatureMismatchError, match="4"):
        cal.predict_proba(X, NAMES, np.zeros((40, 5)))
    with pytest.raises(FeatureMismatchError, match="none was given"):
        cal.predict_proba(X, NAMES)


def test_single_class_labels():
    X, _ = _data(30)
    with pytest.raises(SingleClassError, match="all 30 labels are 1"):
        CCNCalibrator().fit(X, np.ones(30), NAMES)


def test_nan_features_imputed_with_train_median(caplog):
    X, y = _data(64, noise=0.3)
    X[::7, 3] = np.nan
    cal = CCNCalibrator(CCNConfig(epochs=5)).fit(X, y, NAMES)
    clean = X[~np.isnan(X[:, 3])]
    tr_med = cal.scaler.median[NAMES.index("rsa_mean_curv")]
    assert np.isfinite(tr_med)
    Xq = X[:3].copy()
    Xq[:, 3] = np.nan
    with caplog.at_level(logging.INFO, logger="neurosym_cal.ccn"):
        p = cal.predict_proba(Xq, NAMES)
    assert "imputing 3 NaN" in caplog.text
    Xm = Xq.copy()
    Xm[:, 3] = tr_med
    np.testing.assert_allclose(p, cal.predict_proba(Xm, NAMES))
    assert np.isfinite(p).all()
    assert min(clean[:, 3]) <= tr_med <= max(clean[:, 3])


def test_ablation_switches_drop_columns():
    X, y = _data(50)
    ext = CCNCalibrator(CCNConfig(use_int=False, epochs=3)).fit(X, y, NAMES)
    assert ext.feature_names == ["sc_top", "sc_margin", "sem_entropy"]
    # the intrinsic columns may then be absent at predict time
    p = ext.predict_proba(X[:, :3], NAMES[:3])
    assert p.shape == (50,)


def test_temperature_recovers_scale():
    rng = np.random.default_rng(0)
    true = rng.normal(scale=2.0, size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-true))).astype(float)
    assert fit_temperature(3.0 * true, y) == pytest.approx(3.0, rel=0.1)


def test_intrinsic_columns_are_log_scaled():
    rng = np.random.default_rng(0)
    X, y = _data(80)
    X[:, 3] = np.exp(rng.normal(-7, 1, size=80))  # tiny, heavy-tailed like RSA slopes
    cal = CCNCalibrator(CCNConfig(epochs=3)).fit(X, y, NAMES)
    assert cal.scaler.log_cols.tolist() == [False, False, False, True, True]
    far = X[:1].copy()
    far[0, 3] = 100 * X[:, 3].max()  # an out-of-distribution value
    z = cal.scaler.transform(far)[0, 3]
    plain = (far[0, 3] - X[:, 3].mean()) / X[:, 3].std()
    assert 0 < z < 0.1 * plain
    off = CCNCalibrator(CCNConfig(epochs=3, log_scale_int=False)).fit(X, y, NAMES)
    assert off.scaler.log_cols is None
