import numpy as np
import pandas as pd
import pytest
import torch

from ilp_diag import (
    DynamicResamplingSampler,
    SampleRecord,
    complexity_scores,
    conflict_scores,
    evaluate_intervention,
    knowledge_injection_dataset,
    loss_weights,
    random_upweight,
    rarity_scores,
    records_dataset,
    replay_mixture,
    resolve_inconsistencies,
    upweight,
)
from ilp_diag.errors import ConfigError

RECS = [
    SampleRecord(0, "Q: city of zor ?\nA:", " lima"),
    SampleRecord(1, "Q: city of zor ?\nA:", " oslo"),
    SampleRecord(2, "Q: city of zor ?\nA:", " lima"),
    SampleRecord(3, "Q: color of bob ?\nA:", " red"),
    SampleRecord(4, "Q: color of ann ?\nA:", " blue"),
    SampleRecord(5, "Q: list colors of ann and bob and zor and kim ?\nA:", " blue red green gold"),
]


def test_conflict_scores_hash_and_minilm(minilm_path):
    for emb in ("hash", None):
        c = conflict_scores(RECS, emb).set_index("idx")
        assert c.loc[1, "nn_conflict"] == 1.0  # both duplicates disagree with "oslo"
        assert c.loc[0, "nn_conflict"] == 0.5
        assert c.loc[3, "n_dups"] == 0 and c.loc[3, "nn_conflict"] == 0.0
        assert c.loc[5, "nn_conflict"] == 0.0


def test_rarity_and_complexity():
    r = rarity_scores(RECS, "hash", n_clusters=2).set_index("idx")
    assert r.loc[0, "cluster"] == r.loc[1, "cluster"]
    assert (r["rarity"] >= 0).all()
    c = complexity_scores(RECS).set_index("idx")
    assert c["complexity"].idxmax() == 5
    assert c.loc[5, "target_len"] == 4


def test_resolve_inconsistencies_strategies():
    maj = {r.idx: r.target for r in resolve_inconsistencies(RECS, strategy="majority")}
    assert maj[1] == " lima" and len(maj) == 6
    drop = {r.idx for r in resolve_inconsistencies(RECS, strategy="drop_minority")}
    assert drop == {0, 2, 3, 4, 5}
    assert {r.idx for r in resolve_inconsistencies(RECS, strategy="drop_all")} == {3, 4, 5}
    diag = pd.DataFrame({"idx": range(6), "causes": [[]] * 6})
    untouched = resolve_inconsistencies(RECS, diag, strategy="drop_all")
    assert len(untouched) == 6  # nothing diagnosed as data_inconsistency
    with pytest.raises(ConfigError):
        resolve_inconsistencies(RECS, strategy="vote")


def test_replay_and_upweight():
    stages = [
        records_dataset(RECS[:3]),
        records_dataset([SampleRecord(10 + i, f"p{i}", " t") for i in range(20)]),
    ]
    mixed = replay_mixture(stages, ratio=0.1, seed=0)
    assert len(mixed[0]) == 3 and len(mixed[1]) == 22
    assert len(set(mixed[1]["idx"]) & {0, 1, 2}) == 2
    ds = records_dataset(RECS)
    up = upweight(ds, [1, 3], factor=4)
    assert len(up) == 6 + 2 * 3 and up["idx"].count(1) == 4
    ctl = random_upweight(ds, 2, factor=4, seed=0, exclude=[1, 3])
    assert len(ctl) == len(up) and ctl["idx"].count(1) == 1


def test_sampler_weights_and_determinism():
    w = loss_weights([0.0, 1.0, 3.0], alpha=1.0, gamma=1.0)
    np.testing.assert_allclose(w, np.array([1, 2, 4]) / 7)
    s = DynamicResamplingSampler([0.0, 0.0, 1.0], num_samples=5, seed=1)
    assert list(s) == [2] * 5 and len(s) == 5
    a = list(DynamicResamplingSampler(w, num_samples=50, seed=3))
    b = list(DynamicResamplingSampler(w, num_samples=50, seed=3))
    assert a == b
    with pytest.raises(ConfigError):
        DynamicResamplingSampler([-1.0, 1.0])


def test_resampling_trainer_trains_only_sampled_rows(
    world, world_tok, make_model, one_torch_thread
):
    from ilp_diag import sft_train, teacher_forced_nll

    recs = world.records[:6]
    model = make_model(4).train()
    before = teacher_forced_nll(model, world_tok, recs)
    weights = [1.0] + [0.0] * 5  # only row 0 is ever drawn
    sft_train(
        model,
        world_tok,
        recs,
        epochs=3,
        lr=5e-3,
        batch_size=2,
        sampler=DynamicResamplingSampler(weights, seed=0),
    )
    after = teacher_forced_nll(model, world_tok, recs)
    drop = before - after
    other = [
        j for j in range(1, 6) if recs[j].target != recs[0].target
    ]  # rows sharing row 0's answer also gain
    assert other and drop[0] > 1.0 and drop[0] > 1.5 * drop[other].max()


def test_knowledge_injection_and_evaluation():
    diag = pd.DataFrame(
        {"idx": range(6), "causes": [["missing_knowledge"], [], [], [], ["missing_knowledge"], []]}
    )
    corpus = ["zor lives in lima", "ann likes the color blue", "unrelated line", "bob is red"]
    ds = knowledge_injection_dataset(diag, corpus, RECS, per_sample=1)
    assert ds["text"] == ["zor lives in lima", "ann likes the color blue"]
    derived = knowledge_injection_dataset(diag, None, RECS)
    assert derived["text"][0].endswith(" lima")
    before = pd.DataFrame({"idx": range(4), "unlearned": [True, True, False, True]})
    after = pd.DataFrame({"idx": range(4), "unlearned": [False, False, False, True]})
    ctl = pd.DataFrame({"idx": range(4), "unlearned": [True, False, False, True]})
    ev = evaluate_intervention(before, after, [0, 1], control_after=ctl)
    assert (
        ev["targeted_drop"] == 1.0
        and ev["control_targeted_drop"] == 0.5
        and ev["effect_ratio"] == 2.0
    )
    assert ev["rest_drop"] == 0.0
    with pytest.raises(ConfigError):
        evaluate_intervention(before, after, [])
    assert torch.is_tensor(DynamicResamplingSampler([1.0]).weights)


def test_snapshot_model_does_not_follow_later_training(
    world, world_tok, make_model, one_torch_thread
):
    from ilp_diag import sft_train, snapshot_model, teacher_forced_nll

    recs = world.records[:6]
    model = make_model(6).train()
    sft_train(model, world_tok, recs, epochs=1, lr=3e-3, batch_size=6)
    snap = snapshot_model(model)
    frozen = teacher_forced_nll(snap, world_tok, recs)
    sft_train(model, world_tok, recs, epochs=3, lr=3e-3, batch_size=6)
    np.testing.assert_allclose(teacher_forced_nll(snap, world_tok, recs), frozen, atol=1e-6)
    assert (teacher_forced_nll(model, world_tok, recs) < frozen).all()
