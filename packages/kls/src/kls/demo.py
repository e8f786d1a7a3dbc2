"""``papercore demo kls``: the classification miniature on a tiny BERT, KLS vs hard labels, same run.

Imbalanced (10:1) synthetic 6-class data (planted keywords, neighbouring classes share 30 % of
them), a 2-layer hidden-32 BERT built from config with a WordPiece tokenizer trained on the
training texts; the reference KLS (two heads, α = 1) vs plain cross-entropy; macro-F1 on the
balanced test split. About half a minute on 2 CPU cores.
"""

from __future__ import annotations

import time
from typing import Any

from papercore.demo import DemoResult


def wordpiece_tokenizer(texts: list[str], vocab_size: int = 2000) -> Any:
    """A BERT WordPiece tokenizer trained on ``texts`` (``tokenizers``' BertWordPieceTokenizer)."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import PreTrainedTokenizerFast

    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(texts, vocab_size=vocab_size, show_progress=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=wp._tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def tiny_bert_factory(tokenizer: Any, num_labels: int, hidden: int = 32, layers: int = 2):
    """``seed -> BertForSequenceClassification`` from config (hidden 32, 2 layers, 2 heads)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    def make(seed: int):
        cfg = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            max_position_embeddings=128,
            num_labels=num_labels,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(seed)
        return BertForSequenceClassification(cfg)

    return make


def run_classification_demo(
    seed: int = 0, epochs: float = 6, methods=("ce", "kls")
) -> dict[str, dict[str, float]]:
    from kls.data import make_synthetic_classification
    from kls.experiment import train_and_evaluate

    data = make_synthetic_classification(n_per_class=120, imbalance_ratio=10.0, seed=seed)
    tok = wordpiece_tokenizer(data["train"]["text"])
    make = tiny_bert_factory(tok, num_labels=6)
    return {
        m: train_and_evaluate(
            m, data, make, tok, seed=seed, epochs=epochs, lr=3e-3, batch_size=16, max_length=48
        )
        for m in methods
    }


def run_demo() -> DemoResult:
    from papercore.seeding import torch_threads

    t0 = time.perf_counter()
    with torch_threads(1):  # tiny models: a second thread only spin-waits
        res = run_classification_demo()
    return DemoResult(
        method="KLS (reference, two heads)",
        baseline="hard-label fine-tuning",
        metric="macro-F1, 10:1 imbalanced synthetic, tiny BERT",
        value=res["kls"]["macro_f1"],
        baseline_value=res["ce"]["macro_f1"],
        details={**res, "seconds": time.perf_counter() - t0},
    )
