"""PathScorer save/load round trips (both modes) and ScorerTrainer on grouped batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from egrm_reward import (
    GroupCollator,
    GroupSizeError,
    HybridRankRegLoss,
    PathGroup,
    PathScorer,
    PathScorerConfig,
    ScorerConfigError,
    TargetError,
    train_scorer,
)
from egrm_reward.metrics import best_of_n_accuracy, brier, pairwise_accuracy

PROMPTS = ["what is 2 + 3 ?", "name a colour"]
PATHS = ["2 + 3 = 5 so the answer is 5", "red is a colour, answer red"]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    pass


def test_mlp_scorer_round_trip(tiny_model_dir, tmp_path):
    sc = PathScorer(PathScorerConfig(mode="mlp", backbone=str(tiny_model_dir), hidden_dim=16))
    before = sc.score(PROMPTS, PATHS)
    sc.save_pretrained(tmp_path / "s")
    again = PathScorer.from_pretrained(tmp_path / "s")
    assert np.allclose(before, again.score(PROMPTS, PATHS), atol=1e-6)
    # a self-contained copy (backbone saved inside) loads after the original path is gone
    sc.save_pretrained(tmp_path / "s2", save_backbone=True)
    assert np.allclose(
        before, PathScorer.from_pretrained(tmp_path / "s2").score(PROMPTS, PATHS), atol=1e-6
    )


def test_sequence_classification_round_trip(tiny_model_dir, tmp_path):
    sc = PathScorer(PathScorerConfig(mode="sequence_classification", backbone=str(tiny_model_dir)))
    before, ntok = sc.score_with_cost(PROMPTS, PATHS)
    assert before.shape == (2,) and ntok > 0
    sc.save_pretrained(tmp_path / "c")
    again = PathScorer.from_pretrained(tmp_path / "c")
    assert np.allclose(before, again.score(PROMPTS, PATHS), atol=1e-5)


def test_scorer_errors(tmp_path):
    with pytest.raises(ScorerConfigError, match="mode"):
        PathScorerConfig(mode="tree")
    with pytest.raises(ScorerConfigError, match="feature_dim"):
        PathScorerConfig(mode="mlp")
    with pytest.raises(ScorerConfigError, match=r"egrm_scorer\.json"):
        PathScorer.from_pretrained(tmp_path)
    with pytest.raises(GroupSizeError):
        PathGroup("p", ["only one"], [1.0])
    with pytest.raises(TargetError):
        PathGroup("p", ["a", "b"], [1.0, float("nan")])


def synthetic_groups(n_groups, n=6, dim=8, seed=0):
    w = torch.randn(
        dim, generator=torch.Generator().manual_seed(123)
    )  # the same task for every split
    g = torch.Generator().manual_seed(seed)
    groups = []
    for i in range(n_groups):
        x = torch.randn(n, dim, generator=g)
        q = torch.sigmoid(2 * x @ w)
        groups.append(PathGroup(f"p{i}", None, q.tolist(), features=x))
    return groups


def test_collator_keeps_groups():
    groups = synthetic_groups(3, n=4)
    batch = GroupCollator()(groups)
    assert batch["features"].shape == (12, 8)
    assert batch["group_ids"].tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_scorer_trainer_learns_the_order(tmp_path):
    torch.manual_seed(0)
    train, test = synthetic_groups(64, seed=0), synthetic_groups(32, seed=1)
    sc = PathScorer(PathScorerConfig(mode="mlp", feature_dim=8, hidden_dim=32))

    def evaluate():
        with torch.no_grad():
            s = torch.cat([sc(features=g.features) for g in test]).numpy()
        q = np.concatenate([g.targets for g in test])
        gid = np.repeat(np.arange(len(test)), 6)
        return pairwise_accuracy(s, q, gid), brier(s, q), best_of_n_accuracy(s, q, gid)

    pa0, br0, _ = evaluate()
    trainer = train_scorer(
        sc,
        train,
        output_dir=str(tmp_path / "run"),
        loss=HybridRankRegLoss(lam=0.5),
        epochs=8,
        lr=3e-3,
        groups_per_batch=8,
    )
    pa1, br1, _ = evaluate()
    assert pa1 > max(pa0, 0.8) and br1 < br0
    trainer.save_model(str(tmp_path / "saved"))
    again = PathScorer.from_pretrained(tmp_path / "saved")
    x = test[0].features
    assert torch.allclose(again(features=x), sc(features=x), atol=1e-6)


def test_scorer_trainer_on_text_paths(tiny_model_dir, tmp_path):
    sc = PathScorer(PathScorerConfig(mode="sequence_classification", backbone=str(tiny_model_dir)))
    groups = [
        PathGroup("1 + 1 =", ["2 right", "3 wrong", "2 right again"], [1.0, 0.0, 1.0]),
        PathGroup("2 + 2 =", ["4 right", "5 wrong"], [1.0, 0.0]),
    ]
    trainer = train_scorer(
        sc, groups, output_dir=str(tmp_path / "t"), max_steps=2, groups_per_batch=2
    )
    assert trainer.state.global_step == 2
    assert all(np.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)


def test_bradley_terry_baseline_with_trl(tiny_model_dir, tmp_path):
    pytest.importorskip("trl")
    from egrm_reward import train_bradley_terry

    pairs = [
        {"chosen": f"{a} + {a} = {2 * a}", "rejected": f"{a} + {a} = {2 * a + 1}"} for a in range(8)
    ]
    trainer = train_bradley_terry(
        str(tiny_model_dir), pairs, output_dir=str(tmp_path / "bt"), max_steps=2, batch_size=4
    )
    assert trainer.state.global_step == 2
    with pytest.raises(ValueError, match="chosen"):
        train_bradley_terry(
            str(tiny_model_dir), [{"chosen": "x"}], output_dir=str(tmp_path / "bt2")
        )
