"""FeatureTable persistence and the NeuroSymCalibrator pipeline (real sandbox, tiny Llama for RSA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurosym_cal.calibrator import FeatureTable, FeatureTableError, NeuroSymCalibrator, answer_span
from neurosym_cal.ccn import CCNConfig
from neurosym_cal.errors import FeatureMismatchError, NeuroSymCalError
from neurosym_cal.problems import CodeProblem
from neurosym_cal.rsa import RSAConfig
from neurosym_cal.sampling import SampleSet

torch.set_num_threads(1)


def _table(n=60, seed=0, with_ctx=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + 0.5 * X[:, 3] + 0.3 * rng.normal(size=n) > 0).astype(float)
    return FeatureTable(
        names=["sc_top", "logprob_mean", "meta_log_code_chars", "rsa_mean_curv"],
        matrix=X,
        task_ids=[f"t{i}" for i in range(n)],
        labels=y,
        groups=["id"] * n,
        context=rng.normal(size=(n, 3)) if with_ctx else None,
        meta={"made_by": "test"},
    )


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_feature_table_roundtrip(tmp_path, suffix):
    t = _table(with_ctx=True)
    t.matrix[3, 1] = np.nan
    back = FeatureTable.load(t.save(tmp_path / f"feats{suffix}"))
    assert back.names == t.names and back.task_ids == t.task_ids and back.groups == t.groups
    np.testing.assert_array_equal(back.matrix, t.matrix)  # NaN survives
    np.testing.assert_array_equal(back.labels, t.labels)
    np.testing.assert_array_equal(back.context, t.context)
    assert back.meta == {"made_by": "test"}


def test_feature_table_validation(tmp_path):
    with pytest.raises(FeatureTableError, match=r"\[2 task_ids, 1 names\]"):
        FeatureTable(["a"], np.zeros((3, 1)), ["x", "y"])
    with pytest.raises(FeatureTableError, match="duplicate"):
        FeatureTable(["a", "a"], np.zeros((1, 2)), ["x"])
    with pytest.raises(FeatureTableError, match=r"\.npz or \.json"):
        _table().save(tmp_path / "feats.csv")
    with pytest.raises(FeatureMismatchError, match="not in this table"):
        _table().column("nope")
    sub = _table().select(np.arange(60) < 10)
    assert len(sub) == 10 and sub.labels.shape == (10,)
    assert FeatureTable.concat([sub, sub]).matrix.shape == (20, 4)


def test_fit_predict_save_load(tmp_path):
    t = _table(with_ctx=True)
    enc = lambda texts: np.ones((len(texts), 3))  # noqa: E731
    cal = NeuroSymCalibrator(CCNConfig(epochs=30), context_encoder=enc).fit(t)
    p = cal.predict_proba(t)
    assert p.shape == (60,) and ((p > 0) & (p < 1)).all()
    path = cal.save_pretrained(tmp_path / "cal")
    with pytest.raises(NeuroSymCalError, match="custom context encoder"):
        NeuroSymCalibrator.from_pretrained(path)
    back = NeuroSymCalibrator.from_pretrained(path, context_encoder=enc)
    np.testing.assert_array_equal(back.predict_proba(t), p)
    with pytest.raises(FeatureMismatchError, match="missing"):
        back.predict_proba(t.drop(["rsa_mean_curv"]))


def test_answer_span():
    comp = "plan : add 1\n```python\ndef f(x):\n    return x+1\n```\n"
    code = "def f(x):\n    return x+1\n"
    a, b = answer_span(comp, code)
    assert comp[a:b] == code.strip()
    assert answer_span(comp, None) is None


# -- featurize on hand-made problems -------------------------------------------------------------

GOOD = "plan : double\n```python\ndef f(x):\n    return 2 * x\n```"
ALSO_GOOD = "plan : add\n```python\ndef f(x):\n    return x + x\n```"
BAD = "plan : square\n```python\ndef f(x):\n    return x * x\n```"


def _problem(tid, hidden):
    return CodeProblem(
        task_id=tid,
        prompt="def f(x):\n    '''Double x.'''\n",
        entry_point="f",
        public_tests=[],
        hidden_tests=hidden,
    )


def test_featurize_labels_from_hidden_tests_only(tiny_tokenizer):
    from neurosym_cal.sandbox import Sandbox
    from papercore.testing import tiny_causal_lm

    model = tiny_causal_lm("llama", tokenizer=tiny_tokenizer, seed=0)
    right = "def check(candidate):\n    assert candidate(3) == 6\n"
    wrong = "def check(candidate):\n    assert candidate(3) == 7\n"
    comps = [GOOD, ALSO_GOOD, BAD]
    probs = [_problem("p0", right), _problem("p1", wrong)]
    sets = [
        SampleSet(
            tid,
            "Write f.\n",
            comps,
            [c.split("```python\n")[1].split("```")[0] for c in comps],
            logprobs=[-0.1, -0.2, -0.3],
        )
        for tid in ("p0", "p1")
    ]
    cal = NeuroSymCalibrator(rsa_config=RSAConfig(layers=(1.0,), eps=(0.05,), n_dirs=2))
    table = cal.featurize(
        model,
        tiny_tokenizer,
        probs,
        sets,
        Sandbox(timeout_s=5.0),
        probe_inputs={"p0": [(1,), (2,), (3,)], "p1": [(1,), (2,), (3,)]},
    )
    assert table.names[:2] == ["sc_top", "sc_margin"]
    assert {"logprob_mean", "logprob_cluster", "meta_log_code_chars", "rsa_mean_curv"} <= set(
        table.names
    )
    # same public problem and samples, different hidden tests: identical features, different labels
    np.testing.assert_array_equal(table.matrix[0], table.matrix[1])
    assert table.labels.tolist() == [1.0, 0.0]
    assert table.column("sc_top")[0] == pytest.approx(2 / 3)
    assert table.column("logprob_mean")[0] == pytest.approx(
        -0.1
    )  # the selected: best of the top cluster
    assert table.column("logprob_cluster")[0] == pytest.approx(-0.15)
    assert np.isfinite(table.matrix).all()
