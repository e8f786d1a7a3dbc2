"""KLSTrainer: reduction to plain fine-tuning, plain saved classifier, exact resume, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

from kls import KeywordLabelSmoother, KLSTrainer, KLSTrainingArguments, attach_aux_head
from kls.errors import InvalidSoftLabelError, KLSError, OutOfRangeError


@pytest.fixture(scope="module")
def train_ds(small_cls_data, tiny_encoder_tokenizer):
    tr = small_cls_data["train"]
    ds = KeywordLabelSmoother().fit(tr["text"], tr["label"]).to_dataset(tr)
    return ds.map(
        lambda b: tiny_encoder_tokenizer(b["text"], truncation=True, max_length=32), batched=True
    )


def _args(cls, out, **kw):
    base = dict(
        output_dir=str(out),
        per_device_train_batch_size=8,
        max_steps=4,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        seed=0,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
    base.update(kw)
    return cls(**base)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "kls_aux" not in k}


def test_alpha_zero_equals_plain_fine_tuning(
    tmp_path, tiny_cls_factory, train_ds, tiny_encoder_tokenizer
):
    plain = Trainer(
        model=tiny_cls_factory(3),
        args=_args(TrainingArguments, tmp_path / "p"),
        train_dataset=train_ds.remove_columns("soft_label"),
        processing_class=tiny_encoder_tokenizer,
    )
    plain.train()
    kls = KLSTrainer(
        model=tiny_cls_factory(3),
        args=_args(KLSTrainingArguments, tmp_path / "k", kls_alpha=0.0),
        train_dataset=train_ds,
        processing_class=tiny_encoder_tokenizer,
    )
    kls.train()
    a, b = _weights(plain.model), _weights(kls.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # with α = 1 the same run moves elsewhere
    kls1 = KLSTrainer(
        model=tiny_cls_factory(3),
        args=_args(KLSTrainingArguments, tmp_path / "k1", kls_alpha=1.0),
        train_dataset=train_ds,
        processing_class=tiny_encoder_tokenizer,
    )
    kls1.train()
    assert not torch.equal(_weights(kls1.model)["classifier.weight"], a["classifier.weight"])


def test_saved_model_is_a_plain_classifier_and_resume_is_exact(
    tmp_path, tiny_cls_factory, train_ds, tiny_encoder_tokenizer
):
    from safetensors.torch import load_file

    args = _args(KLSTrainingArguments, tmp_path / "run", save_strategy="steps", save_steps=2)
    t = KLSTrainer(
        model=tiny_cls_factory(3),
        args=args,
        train_dataset=train_ds,
        processing_class=tiny_encoder_tokenizer,
    )
    t.train()
    assert not hasattr(t.model, "kls_aux_head") and t.aux_head is not None  # detached after train
    ckpt = tmp_path / "run" / "checkpoint-2"
    assert (ckpt / "kls_aux_head.safetensors").is_file()
    assert not any("kls_aux" in k for k in load_file(ckpt / "model.safetensors"))
    t.save_model(str(tmp_path / "final"))
    assert not any("kls_aux" in k for k in load_file(tmp_path / "final" / "model.safetensors"))
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "final")
    assert not hasattr(reloaded, "kls_aux_head")
    assert torch.equal(reloaded.classifier.weight, t.model.classifier.weight)
    # resume from step 2 reproduces the uninterrupted run, aux head included
    t2 = KLSTrainer(
        model=tiny_cls_factory(3, seed=5),
        args=args,
        train_dataset=train_ds,
        processing_class=tiny_encoder_tokenizer,
    )
    t2.train(resume_from_checkpoint=str(ckpt))
    assert torch.allclose(t2.aux_head.weight, t.aux_head.weight, atol=1e-6)
    assert torch.allclose(t2.model.classifier.weight, t.model.classifier.weight, atol=1e-6)


def test_kl_and_soft_ce_objectives_train(
    tmp_path, tiny_cls_factory, train_ds, tiny_encoder_tokenizer
):
    for obj in ("kl", "soft_ce", "ce"):
        t = KLSTrainer(
            model=tiny_cls_factory(3),
            args=_args(KLSTrainingArguments, tmp_path / obj, kls_objective=obj, max_steps=2),
            train_dataset=train_ds,
            processing_class=tiny_encoder_tokenizer,
        )
        out = t.train()
        assert torch.isfinite(torch.tensor(out.training_loss))
        assert not hasattr(t.model, "kls_aux_head")


def test_missing_soft_labels_and_bad_arguments(
    tmp_path, tiny_cls_factory, train_ds, tiny_encoder_tokenizer
):
    t = KLSTrainer(
        model=tiny_cls_factory(3),
        args=_args(KLSTrainingArguments, tmp_path / "m"),
        train_dataset=train_ds.remove_columns("soft_label"),
        processing_class=tiny_encoder_tokenizer,
    )
    with pytest.raises(KLSError, match="soft_label"):
        t.train()
    bad = train_ds.remove_columns("soft_label").add_column(
        "soft_label", [[0.5, 0.5, 0.5]] + [[1.0, 0.0, 0.0]] * (len(train_ds) - 1)
    )
    with pytest.raises(InvalidSoftLabelError, match=r"row 0 sums to 1\.5"):
        KLSTrainer(
            model=tiny_cls_factory(3),
            args=_args(KLSTrainingArguments, tmp_path / "b"),
            train_dataset=bad,
        )
    short = train_ds.remove_columns("soft_label").add_column(
        "soft_label", [[1.0, 0.0]] * len(train_ds)
    )
    with pytest.raises(InvalidSoftLabelError, match="length 2, expected 3"):
        KLSTrainer(
            model=tiny_cls_factory(3),
            args=_args(KLSTrainingArguments, tmp_path / "b"),
            train_dataset=short,
        )
    with pytest.raises(OutOfRangeError):
        _args(KLSTrainingArguments, tmp_path / "x", kls_alpha=-1.0)
    with pytest.raises(OutOfRangeError):
        _args(KLSTrainingArguments, tmp_path / "x", kls_lambda=float("nan"))
    with pytest.raises(KLSError, match="kls_objective"):
        _args(KLSTrainingArguments, tmp_path / "x", kls_objective="nope")


def test_after_training_the_model_is_plain_and_inference_runs_no_aux_head(
    tmp_path, tiny_cls_factory, train_ds, tiny_encoder_tokenizer
):
    from safetensors.torch import load_file

    model = tiny_cls_factory(3)
    t = KLSTrainer(
        model=model,
        args=_args(KLSTrainingArguments, tmp_path / "r"),
        train_dataset=train_ds,
        processing_class=tiny_encoder_tokenizer,
    )
    t.train()
    assert t.model is model and not hasattr(model, "kls_aux_head")
    assert not model.classifier._forward_hooks  # no hook: inference does not run the aux head
    assert not any("kls_aux" in k for k in model.state_dict())
    model.save_pretrained(tmp_path / "direct")  # the model's own save, not the trainer's
    assert not any("kls_aux" in k for k in load_file(tmp_path / "direct" / "model.safetensors"))
    calls = []
    t.aux_head.register_forward_hook(lambda *a: calls.append(1))
    batch = tiny_encoder_tokenizer(["a b c"], return_tensors="pt")
    with torch.no_grad():
        model.eval()(**batch)
    assert calls == []
    metrics = t.evaluate(train_ds)  # evaluation after training: the plain classifier's CE
    assert math.isfinite(metrics["eval_loss"])
    # a second train() call continues with the same aux head (re-attached, then detached again)
    head = t.aux_head
    t.train()
    assert t.aux_head is head and not hasattr(model, "kls_aux_head")


def test_model_init_trains_with_a_fresh_aux_head_per_run(
    tmp_path, tiny_cls_factory, train_ds, tiny_encoder_tokenizer
):
    def model_init():
        return tiny_cls_factory(3, seed=0)

    t = KLSTrainer(
        model_init=model_init,
        args=_args(KLSTrainingArguments, tmp_path / "mi"),
        train_dataset=train_ds,
        processing_class=tiny_encoder_tokenizer,
    )
    assert not hasattr(t.model, "kls_aux_head")  # only while train() runs
    out = t.train()  # crashed before: the model_init model had no aux head
    assert math.isfinite(out.training_loss) and not hasattr(t.model, "kls_aux_head")
    first = (t.model.classifier.weight.detach().clone(), t.aux_head.weight.detach().clone())
    untrained = attach_aux_head(tiny_cls_factory(3, seed=0), seed=0).weight.detach().clone()
    assert not torch.equal(first[1], untrained)  # the aux head trained
    t.train()  # model_init again: a fresh model AND a fresh aux head, so the same run
    assert torch.equal(t.model.classifier.weight, first[0])
    assert torch.equal(t.aux_head.weight, first[1])


def test_hyperparameter_search_with_optuna(
    tmp_path, tiny_cls_factory, train_ds, tiny_encoder_tokenizer
):
    pytest.importorskip("optuna", reason="optuna is not installed (hyperparameter_search backend)")

    t = KLSTrainer(
        model_init=lambda: tiny_cls_factory(3),
        args=_args(KLSTrainingArguments, tmp_path / "hp", max_steps=2),
        train_dataset=train_ds,
        eval_dataset=train_ds,
        processing_class=tiny_encoder_tokenizer,
    )
    best = t.hyperparameter_search(
        hp_space=lambda trial: {"kls_alpha": trial.suggest_float("kls_alpha", 0.0, 2.0)},
        n_trials=2,
        direction="minimize",
        backend="optuna",
    )
    assert 0.0 <= best.hyperparameters["kls_alpha"] <= 2.0


def test_train_and_evaluate_warns_when_kls_was_fitted_on_the_test_texts(
    small_cls_data, tiny_cls_factory, tiny_encoder_tokenizer, caplog
):
    import datasets

    from kls.experiment import train_and_evaluate

    kw = dict(seed=0, epochs=1, lr=1e-3, batch_size=16, max_length=32)

    def make(seed):
        return tiny_cls_factory(3, seed)

    res = train_and_evaluate("kls", small_cls_data, make, tiny_encoder_tokenizer, **kw)
    assert res["leaked_fit_texts"] is False
    leaky = datasets.DatasetDict(train=small_cls_data["train"], test=small_cls_data["train"])
    with caplog.at_level("WARNING", logger="kls"):
        res = train_and_evaluate("kls", leaky, make, tiny_encoder_tokenizer, **kw)
    assert res["leaked_fit_texts"] is True and "keywords leak" in caplog.text
