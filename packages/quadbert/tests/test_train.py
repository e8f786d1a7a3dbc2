"""train_quadbert: a real SentenceTransformerTrainer run with QuadrupletLoss, checkpoints and resume."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import TrainerCallback

from quadbert import QuadrupletLoss, TrainDataError, build_quadruplets, train_quadbert
from quadbert.train import as_quadruplet_dataset, default_training_args


class Recorder(TrainerCallback):
    def __init__(self):
        self.steps = 0
        self.evals: list[dict] = []

    def on_step_end(self, args, state, control, **kw):
        self.steps += 1

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        self.evals.append(dict(metrics or {}))


@pytest.fixture(scope="module")
def quads(synthetic):
    queries = dict(list(synthetic.train.queries.items())[:16])
    return build_quadruplets(
        queries, synthetic.corpus, synthetic.train.qrels, hard_k=20, n_per_query=2
    )


def full_loss(model, quads) -> float:
    loss = QuadrupletLoss(model)
    model.eval()
    with torch.no_grad():
        feats = [model.preprocess(list(quads[c])) for c in quads.column_names]
        return loss(feats, None).item()


def args_for(out, **kw):
    kw.setdefault("num_train_epochs", 2)
    return default_training_args(
        out, per_device_train_batch_size=4, learning_rate=1e-3, disable_tqdm=True, **kw
    )


def test_training_decreases_the_loss_and_evaluates(
    tiny_st, quads, synthetic, tmp_path, one_torch_thread
):
    before = full_loss(tiny_st, quads)
    rec = Recorder()
    test = synthetic.test.subset(list(synthetic.test.queries)[:8])
    model = train_quadbert(
        tiny_st,
        quads,
        eval_data=test,
        args=args_for(tmp_path, eval_strategy="epoch"),
        callbacks=[rec],
    )
    after = full_loss(model, quads)
    assert rec.steps == 16  # 32 quadruplets / batch 4 × 2 epochs
    assert after < 0.92 * before, (before, after)
    assert len(rec.evals) == 2 and 0.0 <= rec.evals[-1]["eval_cosine_ndcg@10"] <= 1.0
    assert (tmp_path / "modules.json").is_file()  # final model saved in output_dir
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == [
        "checkpoint-16",
        "checkpoint-8",
    ]


def test_resume_from_the_latest_checkpoint(st_model_dir, quads, tmp_path, one_torch_thread):
    train_quadbert(str(st_model_dir), quads, args=args_for(tmp_path, num_train_epochs=1))
    rec = Recorder()
    train_quadbert(
        str(st_model_dir),
        quads,
        args=args_for(tmp_path, num_train_epochs=2),
        resume_from_checkpoint=True,
        callbacks=[rec],
    )
    assert rec.steps == 8  # only the second epoch ran
    state = json.loads((tmp_path / "checkpoint-16" / "trainer_state.json").read_text())
    assert state["global_step"] == 16


def test_resume_without_checkpoint_raises(tiny_st, quads, tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no checkpoint-\\* folder"):
        train_quadbert(tiny_st, quads, args=args_for(tmp_path), resume_from_checkpoint=True)


def test_training_data_is_checked():
    with pytest.raises(TrainDataError, match=r"lacks column\(s\) \['simple_negative'\]"):
        as_quadruplet_dataset({"anchor": ["a"], "positive": ["b"], "hard_negative": ["c"]})
    with pytest.raises(TrainDataError, match="no rows"):
        as_quadruplet_dataset(
            [{"anchor": "a", "positive": "b", "hard_negative": "c", "simple_negative": "d"}][:0]
            or {"anchor": [], "positive": [], "hard_negative": [], "simple_negative": []}
        )
    with pytest.raises(TrainDataError, match="got str"):
        as_quadruplet_dataset("quads.jsonl")
    ds = as_quadruplet_dataset(
        {
            "simple_negative": ["d"],
            "query_id": ["q"],
            "anchor": ["a"],
            "positive": ["b"],
            "hard_negative": ["c"],
        }
    )
    assert ds.column_names == ["anchor", "positive", "hard_negative", "simple_negative"]


def test_bad_loss_kwargs_fail_before_training(tiny_st, quads, tmp_path):
    with pytest.raises(ValueError, match="quad_weight must be >= 0"):
        train_quadbert(tiny_st, quads, args=args_for(tmp_path), loss_kwargs={"quad_weight": -1})
