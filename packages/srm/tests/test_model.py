"""StructuralRewardModel: attribution on a planted branch, branch-set checks, save/load, reward fn, diagnose."""

import pickle

import numpy as np
import pytest

from srm_reward import (
    SideBranchModel,
    SRMRewardTrainer,
    StructuralRewardModel,
    branch_attribution,
    diagnose,
    parse_verdict,
)
from srm_reward.errors import BranchSetMismatchError, DuplicateDimensionError
from srm_reward.synthetic import OracleFactCheck


def constant_style(prompt, response):
    return "fits"


@pytest.fixture(scope="module")
def trained_srm(world, word_tok, tmp_path_factory):
    from papercore.seeding import torch_threads
    from srm_reward.experiment import tiny_reward_model

    branches = [
        SideBranchModel("factcheck", generate_fn=OracleFactCheck(world)),
        SideBranchModel("style", generate_fn=constant_style),
    ]
    srm = StructuralRewardModel(
        tiny_reward_model(word_tok, seed=0, hidden_size=32), word_tok, branches, parallel="none"
    )
    pairs = [p for p in world.pairs(world.train_entities, 6, seed=0) if p["error"] == "fact"]
    with torch_threads(1):
        tr = SRMRewardTrainer.from_srm(
            srm,
            pairs,
            output_dir=str(tmp_path_factory.mktemp("rm")),
            branch_dropout=0.3,
            seed=0,
            max_steps=60,
            per_device_train_batch_size=8,
            learning_rate=3e-3,
        )
        tr.train()
    srm.reward_model.eval()
    return srm


def test_leave_one_out_moves_score_on_planted_branch(trained_srm, world):
    test = [p for p in world.pairs(world.test_entities, 1, seed=5) if p["error"] == "fact"][:6]
    moved = []
    for p in test:
        good = branch_attribution(trained_srm, p["prompt"], p["chosen"])
        bad = branch_attribution(trained_srm, p["prompt"], p["rejected"])
        # the contradicted verdict pulls the score down: removing it raises the score
        assert bad["factcheck"] < -0.1 and good["factcheck"] > bad["factcheck"]
        moved.append(abs(bad["factcheck"]) > 5 * abs(bad["style"]))
    assert all(moved)
    acc = np.mean(
        [
            trained_srm.compare(p["prompt"], p["chosen"], p["rejected"])["p_a_better"] > 0.5
            for p in test
        ]
    )
    assert acc == 1.0


def test_branch_set_mismatch_raises(trained_srm, world, tmp_path, word_tok):
    trained_srm.save_pretrained(tmp_path / "srm")
    fc = SideBranchModel("factcheck", generate_fn=OracleFactCheck(world))
    st = SideBranchModel("style", generate_fn=constant_style)
    with pytest.raises(BranchSetMismatchError, match=r"missing \['style'\]"):
        StructuralRewardModel.from_pretrained(tmp_path / "srm", branches=[fc])
    with pytest.raises(BranchSetMismatchError, match="different order"):
        StructuralRewardModel.from_pretrained(tmp_path / "srm", branches=[st, fc])
    again = StructuralRewardModel.from_pretrained(
        tmp_path / "srm", branches=[fc, st], parallel="none"
    )
    p = world.pairs(world.test_entities[:2], 1, seed=0)
    a = again.score([x["prompt"] for x in p], [x["chosen"] for x in p])
    b = trained_srm.score([x["prompt"] for x in p], [x["chosen"] for x in p])
    np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(DuplicateDimensionError):
        StructuralRewardModel(trained_srm.reward_model, word_tok, [fc, fc])


def test_reward_fn_plain_picklable_and_chat(trained_srm, world):
    fn = trained_srm.as_reward_fn()
    assert not hasattr(fn, "forward") and fn.__name__ == "srm"
    fn2 = pickle.loads(pickle.dumps(fn))
    p = world.pairs(world.test_entities[:3], 1, seed=0)
    prompts = [x["prompt"] for x in p]
    out = fn2(prompts=prompts, completions=[x["chosen"] for x in p])
    assert len(out) == 3 and all(isinstance(v, float) for v in out)
    chat = fn(
        prompts=[[{"role": "user", "content": q}] for q in prompts],
        completions=[[{"role": "assistant", "content": x["chosen"]}] for x in p],
    )
    assert len(chat) == 3
    np.testing.assert_allclose(
        out, fn(prompts=prompts, completions=[x["chosen"] for x in p]), atol=1e-6
    )


def test_rank_details_and_diagnose(trained_srm, world):
    p = next(x for x in world.pairs(world.test_entities[:9], 1, seed=0) if x["error"] == "fact")
    ranked = trained_srm.rank(p["prompt"], [p["rejected"], p["chosen"]])
    assert ranked[0][0] == 1
    d = trained_srm.score([p["prompt"]], [p["rejected"]], return_details=True)[0]
    assert d["verdicts"]["factcheck"] == "issue" and "total" in d["latency_ms"]
    df = diagnose(trained_srm, [p["prompt"], p["prompt"]], [p["chosen"], p["rejected"]])
    row = df.set_index("dimension").loc["factcheck"]
    assert row["issue_rate"] == 0.5 and row["ok_rate"] == 0.5
    assert (
        parse_verdict("UNAVAILABLE") == "unavailable"
        and parse_verdict("verdict : issue") == "issue"
    )
