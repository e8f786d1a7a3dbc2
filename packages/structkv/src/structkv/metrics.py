"""LongBench's official per-task metrics, in pure Python (no ``rouge`` / ``fuzzywuzzy`` / ``jieba`` needed).

Semantics follow LongBench's ``metrics.py`` and ``eval.py`` (THUDM/LongBench):

* ``qa_f1``: token F1 after SQuAD normalisation (lower case, drop ASCII punctuation, drop the articles
  a/an/the, collapse white space); Counter overlap of the two token lists.
* ``rouge``: ROUGE-L F of the ``rouge`` package as LongBench calls it (``Rouge().get_scores([pred],
  [gt], avg=True)["rouge-l"]["f"]``): sentences split on ``"."``, words split on ``" "``, summary-level
  union LCS with *distinct* words (the package's ``exclusive=True``), F = 2PR / (P + R + 1e-8); any error
  (e.g. an empty prediction) scores 0. Here the LCS is iterative, so long texts cannot hit Python's
  recursion limit (where the package raises and LongBench scores 0).
* ``code_sim``: the first prediction line without a back-tick, ``#`` or ``//``, compared by
  ``fuzz.ratio / 100`` — fuzzywuzzy's pure-Python ratio, ``round(100 · difflib.SequenceMatcher.ratio())``,
  0 when either string is empty. (With ``python-Levenshtein`` installed fuzzywuzzy uses a Levenshtein
  ratio instead, which can differ by a point or two.)
* ``classification``: the class names found in the prediction, minus those that are a strict substring
  of the gold label; 1 / |matches| if the gold label is among them, else 0.
* ``retrieval``: the fraction of integers in the prediction equal to the paragraph number in the gold
  answer (``Paragraph N``; ``段落N`` for the Chinese variant).
* ``count``: the fraction of integers in the prediction equal to the gold count.
* ``qa_f1_zh`` / ``rouge_zh``: the Chinese variants; they segment with ``jieba`` (an optional
  dependency: ``pip install jieba``; a clear ImportError otherwise).

A sample's score is the maximum over its gold answers; for trec, triviaqa, samsum and lsht only the first
line of the prediction is scored (LongBench's ``scorer``). Scores are fractions in [0, 1] (LongBench
prints 100 ×). Plus ``substring``: 1 if any gold answer (stripped, non-empty) occurs in the prediction.
"""

from __future__ import annotations

import difflib
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

from structkv.errors import StructKVError

__all__ = [
    "DATASET_METRIC",
    "METRICS",
    "MetricError",
    "classification_score",
    "code_sim_score",
    "count_score",
    "longbench_score",
    "metric_for",
    "normalize_answer",
    "qa_f1_score",
    "retrieval_score",
    "rouge_l",
    "rouge_score",
    "substring_score",
]


class MetricError(StructKVError, ValueError):
    """An unknown metric or dataset name, or a record missing what its metric needs."""


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower case, no ASCII punctuation, no articles, single spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _token_f1(prediction: Sequence[str], ground_truth: Sequence[str]) -> float:
    same = sum((Counter(prediction) & Counter(ground_truth)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction), same / len(ground_truth)
    return 2 * precision * recall / (precision + recall)


def qa_f1_score(prediction: str, ground_truth: str, **_) -> float:
    """Token F1 of the normalised prediction and answer."""
    return _token_f1(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def _lcs_tokens(x: list[str], y: list[str]) -> list[str]:
    """One longest common subsequence of x and y (the ``rouge`` package's tie-breaking)."""
    n, m = len(x), len(y)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        xi, row, prev = x[i - 1], table[i], table[i - 1]
        for j in range(1, m + 1):
            row[j] = prev[j - 1] + 1 if xi == y[j - 1] else max(prev[j], row[j - 1])
    out, i, j = [], n, m
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            out.append(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return out[::-1]


def _sentences(text: str) -> list[str]:
    return [" ".join(piece.split()) for piece in text.split(".") if len(piece) > 0]


def _words(sentences: list[str]) -> list[str]:
    return [w for s in sentences for w in s.split(" ")]


def rouge_l(prediction: str, ground_truth: str) -> dict[str, float]:
    """Summary-level ROUGE-L ``{"f", "p", "r"}`` with distinct-word unions (``rouge`` package semantics).

    Raises:
        ValueError: the prediction or the reference holds no sentence.
    """
    hyp, ref = _sentences(prediction), _sentences(ground_truth)
    if not hyp or not ref:
        raise ValueError("Collections must contain at least 1 sentence.")
    m, n = len(set(_words(ref))), len(set(_words(hyp)))
    union: set[str] = set()  # LCS_u accumulated over reference sentences, distinct words
    for r in ref:
        r_words = r.split(" ")
        for h in hyp:
            union |= set(_lcs_tokens(r_words, h.split(" ")))
    llcs = len(union)
    r_lcs, p_lcs = llcs / m, llcs / n
    return {"f": 2.0 * (p_lcs * r_lcs) / (p_lcs + r_lcs + 1e-8), "p": p_lcs, "r": r_lcs}


def rouge_score(prediction: str, ground_truth: str, **_) -> float:
    """ROUGE-L F; 0 when it cannot be computed (LongBench catches every error)."""
    try:
        return rouge_l(prediction, ground_truth)["f"]
    except (ValueError, ZeroDivisionError):
        return 0.0


def _fuzz_ratio(a: str, b: str) -> int:
    if not a or not b:
        return 0
    return round(100 * difflib.SequenceMatcher(None, a, b).ratio())


def code_sim_score(prediction: str, ground_truth: str, **_) -> float:
    """Edit similarity of the first code line of the prediction with the gold line."""
    first = ""
    for line in prediction.lstrip("\n").split("\n"):
        if "`" not in line and "#" not in line and "//" not in line:
            first = line
            break
    return _fuzz_ratio(first, ground_truth) / 100


def classification_score(
    prediction: str, ground_truth: str, all_classes: Sequence[str] | None = None, **_
) -> float:
    """1 / |classes named in the prediction| when the gold class is among them (substrings of the gold
    label that are not the label itself are discounted), else 0."""
    if not all_classes:
        raise MetricError(
            "classification needs the record's 'all_classes' (the list of labels), got none"
        )
    matches = [c for c in all_classes if c in prediction]
    # LongBench removes from the list while iterating over it, so the entry after a removed one is
    # not examined; the index walk below reproduces that
    i = 0
    while i < len(matches):
        term = matches[i]
        if term in ground_truth and term != ground_truth:
            matches.remove(term)
        i += 1
    return 1.0 / len(matches) if ground_truth in matches else 0.0


def _fraction_equal(prediction: str, target: str) -> float:
    numbers = re.findall(r"\d+", prediction)
    return sum(num == target for num in numbers) / len(numbers) if numbers else 0.0


def retrieval_score(prediction: str, ground_truth: str, pattern: str = r"Paragraph (\d+)", **_):
    """Fraction of integers in the prediction equal to the gold paragraph number."""
    found = re.findall(pattern, ground_truth)
    if not found:
        raise MetricError(
            f"retrieval needs a gold answer matching {pattern!r}, got {ground_truth!r}"
        )
    return _fraction_equal(prediction, found[0])


def retrieval_zh_score(prediction: str, ground_truth: str, **_) -> float:
    return retrieval_score(prediction, ground_truth, pattern=r"段落(\d+)")


def count_score(prediction: str, ground_truth: str, **_) -> float:
    """Fraction of integers in the prediction equal to the gold count."""
    return _fraction_equal(prediction, str(ground_truth))


def _jieba_cut(text: str) -> list[str]:
    try:
        import jieba
    except ImportError:
        raise ImportError(
            "the Chinese LongBench metrics (qa_f1_zh, rouge_zh) segment words with jieba: "
            "pip install jieba"
        ) from None
    return list(jieba.cut(text, cut_all=False))


_ZH_PUNCT = "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏."


def _normalize_zh(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation + _ZH_PUNCT))
    return "".join(s.split())


def qa_f1_zh_score(prediction: str, ground_truth: str, **_) -> float:
    pred = [t for t in (_normalize_zh(w) for w in _jieba_cut(prediction)) if t]
    gold = [t for t in (_normalize_zh(w) for w in _jieba_cut(ground_truth)) if t]
    return _token_f1(pred, gold)


def rouge_zh_score(prediction: str, ground_truth: str, **_) -> float:
    return rouge_score(" ".join(_jieba_cut(prediction)), " ".join(_jieba_cut(ground_truth)))


def substring_score(prediction: str, ground_truth: str, **_) -> float:
    """1 if the stripped, non-empty gold answer occurs in the prediction."""
    gt = ground_truth.strip()
    return float(bool(gt) and gt in prediction)


METRICS: dict[str, Callable[..., float]] = {
    "substring": substring_score,
    "qa_f1": qa_f1_score,
    "qa_f1_zh": qa_f1_zh_score,
    "rouge": rouge_score,
    "rouge_zh": rouge_zh_score,
    "code_sim": code_sim_score,
    "classification": classification_score,
    "retrieval": retrieval_score,
    "retrieval_zh": retrieval_zh_score,
    "count": count_score,
}

#: LongBench's dataset → metric table (``dataset2metric``); ``_e`` (LongBench-E) names map the same way
DATASET_METRIC: dict[str, str] = {
    "narrativeqa": "qa_f1",
    "qasper": "qa_f1",
    "multifieldqa_en": "qa_f1",
    "multifieldqa_zh": "qa_f1_zh",
    "hotpotqa": "qa_f1",
    "2wikimqa": "qa_f1",
    "musique": "qa_f1",
    "dureader": "rouge_zh",
    "gov_report": "rouge",
    "qmsum": "rouge",
    "multi_news": "rouge",
    "vcsum": "rouge_zh",
    "trec": "classification",
    "triviaqa": "qa_f1",
    "samsum": "rouge",
    "lsht": "classification",
    "passage_retrieval_en": "retrieval",
    "passage_count": "count",
    "passage_retrieval_zh": "retrieval_zh",
    "lcc": "code_sim",
    "repobench-p": "code_sim",
}
_FIRST_LINE = ("trec", "triviaqa", "samsum", "lsht")


def _base_dataset(dataset: str | None) -> str | None:
    if dataset is None:
        return None
    return dataset[:-2] if dataset.endswith("_e") else dataset


def metric_for(dataset: str | None, metric: str = "auto") -> str:
    """The metric name for a record: ``metric`` itself, or with ``"auto"`` LongBench's choice for the
    record's ``dataset`` (``substring`` when the dataset is not a LongBench task or not given)."""
    if metric != "auto":
        if metric not in METRICS:
            raise MetricError(
                f"unknown metric {metric!r}; expected 'auto' or one of {sorted(METRICS)}"
            )
        return metric
    return DATASET_METRIC.get(_base_dataset(dataset) or "", "substring")


def longbench_score(
    prediction: str,
    answers: Sequence[str],
    metric: str,
    dataset: str | None = None,
    all_classes: Sequence[str] | None = None,
) -> float:
    """One sample's score: max over gold ``answers`` of ``metric`` (LongBench's ``scorer``).

    For trec / triviaqa / samsum / lsht only the first line of the prediction is scored.
    """
    if metric not in METRICS:
        raise MetricError(f"unknown metric {metric!r}; expected one of {sorted(METRICS)}")
    if not answers:
        raise MetricError("a sample needs at least one gold answer, got none")
    if _base_dataset(dataset) in _FIRST_LINE:
        prediction = prediction.lstrip("\n").split("\n")[0]
    fn = METRICS[metric]
    return max(fn(prediction, str(gt), all_classes=all_classes) for gt in answers)
