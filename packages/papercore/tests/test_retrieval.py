"""papercore.retrieval: faiss retriever, BEIR IO, ir_measures metrics, TREC runs, synthetic data."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import stat
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest

from papercore.errors import BackendUnavailableError, MalformedInputError
from papercore.retrieval import (
    FaissRetriever,
    RetrievalData,
    as_qrels,
    default_nlist,
    evaluate_run,
    load_beir,
    load_corpus,
    load_qrels,
    make_synthetic_retrieval,
    per_query,
    read_trec_run,
    save_beir,
    write_trec_run,
)

WORD = re.compile(r"[a-z0-9]+")

# faiss and ir_measures come with the extra papercore[retrieval]; without it (e.g. papercore's own
# isolated test environment) the tests that need them are reported as skipped with this reason.
needs_faiss = pytest.mark.skipif(
    importlib.util.find_spec("faiss") is None,
    reason='needs faiss: pip install "papercore[retrieval]"',
)
needs_ir_measures = pytest.mark.skipif(
    importlib.util.find_spec("ir_measures") is None,
    reason='needs ir_measures: pip install "papercore[retrieval]"',
)


class HashBowEncoder:
    """Deterministic toy encoder: hashed bag of words (crc32 of each lower-cased word → a bucket)."""

    def __init__(self, dim: int = 64):
        self.dim = dim
        self.calls: list[int] = []

    def encode(self, texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False):
        self.calls.append(batch_size)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for w in WORD.findall(text.lower()):
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        return out


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ranked(run: dict[str, dict[str, float]], qid: str) -> list[str]:
    return sorted(run[qid], key=lambda d: -run[qid][d])


# --------------------------------------------------------------------------- import hygiene
def test_import_does_not_load_torch_faiss_or_ir_measures():
    code = (
        "import sys, papercore.retrieval as r; "
        "print(sorted(m for m in ('torch', 'faiss', 'ir_measures') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_faiss_raises_backend_unavailable_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    r = FaissRetriever(None)
    with pytest.raises(BackendUnavailableError, match=r'pip install "papercore\[retrieval\]"'):
        r.add(["a"], np.ones((1, 4), dtype=np.float32))


def test_missing_ir_measures_raises_backend_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "ir_measures", None)
    with pytest.raises(BackendUnavailableError, match=r"papercore\[retrieval\]"):
        evaluate_run({"q": {"d": 1.0}}, {"q": {"d"}})


# --------------------------------------------------------------------------- FaissRetriever
@needs_faiss
def test_flat_exact_topk_on_hand_built_vectors():
    r = FaissRetriever(None, "flat")
    docs = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=np.float32)
    r.add(["x", "y", "z", "xy"], docs * 5.0)  # scale must not matter: normalised inside
    assert (r.ntotal, r.dim) == (4, 3)
    ids, scores = r.search_embeddings(np.array([[1.0, 0.2, 0.0], [0.0, 0.0, 3.0]]), k=3)
    q0 = np.array([1.0, 0.2, 0.0]) / math.hypot(1.0, 0.2)
    expected0 = {"x": q0[0], "y": q0[1], "z": 0.0, "xy": (q0[0] + q0[1]) / math.sqrt(2)}
    assert ids[0] == ["x", "xy", "y"]
    np.testing.assert_allclose(scores[0], [expected0[d] for d in ids[0]], rtol=1e-5)
    assert ids[1][0] == "z" and scores[1][0] == pytest.approx(1.0)
    assert scores.dtype == np.float32 and scores.shape == (2, 3)


@needs_faiss
def test_add_does_not_modify_caller_array_and_appends():
    r = FaissRetriever(None)
    x = np.array([[3.0, 4.0]], dtype=np.float32)
    r.add(["a"], x)
    np.testing.assert_array_equal(x, [[3.0, 4.0]])
    r.add(["b"], np.array([[0.0, 1.0]]))
    assert r.ntotal == 2 and r.ids == ["a", "b"]


@needs_faiss
def test_index_and_search_with_encoder_returns_run_of_k():
    corpus = {
        "d1": "the telescope saw a comet",
        "d2": "bake bread in the oven",
        "d3": "sail the boat in the harbor",
    }
    enc = HashBowEncoder()
    r = FaissRetriever(enc, batch_size=7)
    r.index(corpus)
    run = r.search({"q1": "comet telescope", "q2": "oven bread"}, k=2)
    assert ranked(run, "q1")[0] == "d1" and ranked(run, "q2")[0] == "d2"
    assert all(len(v) == 2 for v in run.values())
    assert enc.calls == [7, 7]  # batch_size passed through to encode
    r.index({"e1": "new corpus"})  # index() replaces the previous index
    assert r.ids == ["e1"]


@needs_faiss
def test_ivf_with_nprobe_equal_nlist_equals_flat_top10():
    x, q = unit_rows(400, 16, seed=1), unit_rows(20, 16, seed=2)
    ids = [f"d{i}" for i in range(len(x))]
    flat = FaissRetriever(None, "flat")
    flat.add(ids, x)
    ivf = FaissRetriever(None, "ivf", nlist=8, nprobe=8)
    ivf.add(ids, x)
    f_ids, f_scores = flat.search_embeddings(q, k=10)
    i_ids, i_scores = ivf.search_embeddings(q, k=10)
    assert i_ids == f_ids
    np.testing.assert_allclose(i_scores, f_scores, rtol=1e-5)


@needs_faiss
def test_set_search_params_after_load_changes_recall(tmp_path):
    x, q = unit_rows(400, 16, seed=1), unit_rows(20, 16, seed=2)
    ids = [f"d{i}" for i in range(len(x))]
    flat = FaissRetriever(None, "flat")
    flat.add(ids, x)
    ivf = FaissRetriever(None, "ivf", nlist=8, nprobe=1)
    ivf.add(ids, x)
    loaded = FaissRetriever.load(ivf.save(tmp_path / "ivf"))
    assert loaded.search_embeddings(q, k=10)[0] != flat.search_embeddings(q, k=10)[0]
    loaded.set_search_params(nprobe=8)
    assert loaded.faiss_index.nprobe == 8
    assert loaded.search_embeddings(q, k=10)[0] == flat.search_embeddings(q, k=10)[0]
    with pytest.warns(UserWarning, match="clamped to 8"):
        loaded.set_search_params(nprobe=99)
    with pytest.raises(MalformedInputError, match="nprobe must be ≥ 1"):
        loaded.set_search_params(nprobe=0)


@needs_faiss
def test_ivf_default_nlist_never_triggers_the_few_points_warning():
    # min(4·√N, N/39): N/39 below N ≈ 24 300, the paper's 4·√N above
    assert [default_nlist(n) for n in (1, 38, 39, 100, 10_000, 24_336, 40_000, 10**6)] == [
        1, 1, 1, 2, 256, 624, 800, 4000,
    ]  # fmt: skip
    for n in (39, 100, 1000, 5000):
        r = FaissRetriever(None, "ivf")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # neither ours nor a default-nprobe clamp warning
            r.add([str(i) for i in range(n)], unit_rows(n, 8))
        assert r.nlist == default_nlist(n) and n >= 39 * r.nlist
        assert r.nprobe == min(16, r.nlist) == r.faiss_index.nprobe
    r = FaissRetriever(None, "ivf", nlist=40)  # an explicit nlist still warns
    with pytest.warns(UserWarning, match="faiss wants"):
        r.add([str(i) for i in range(100)], unit_rows(100, 8))


@needs_faiss
def test_rebuilds_start_from_the_requested_nlist_and_nprobe(tmp_path):
    big, small = unit_rows(4000, 8, seed=1), unit_rows(200, 8, seed=2)
    r = FaissRetriever(None, "ivf", nprobe=50)
    assert (r.requested_nlist, r.requested_nprobe, r.nlist, r.nprobe) == (None, 50, None, 50)
    with pytest.warns(UserWarning, match=r"nprobe=50 > nlist=5: clamped to 5"):
        r.add([f"s{i}" for i in range(200)], small)
    assert (r.nlist, r.nprobe, r.faiss_index.nprobe) == (5, 5, 5)
    assert (r.requested_nlist, r.requested_nprobe) == (None, 50)
    r.reset()
    r.add([f"b{i}" for i in range(4000)], big)  # a fresh default nlist, the asked-for nprobe
    assert (
        (r.nlist, r.nprobe, r.faiss_index.nprobe) == (default_nlist(4000), 50, 50) == (102, 50, 50)
    )
    r.reset()
    with pytest.warns(UserWarning, match=r"nprobe=50 > nlist=2: clamped") as record:
        r.add([str(i) for i in range(80)], unit_rows(80, 8))  # big then small works
    assert record[0].filename == __file__  # the warning points at the caller
    assert r.nlist == default_nlist(80) == 2
    # the same through index(corpus), which resets itself
    enc = HashBowEncoder(16)
    r = FaissRetriever(enc, "ivf")
    r.index({f"d{i}": f"doc {i} w{i % 13}" for i in range(3000)})
    assert r.nlist == default_nlist(3000) == 76
    r.index({f"d{i}": f"doc {i} w{i % 13}" for i in range(100)})
    assert r.nlist == default_nlist(100) == 2
    # save / load keeps the requested settings apart from the built ones
    r = FaissRetriever(None, "ivf", nprobe=50)
    with pytest.warns(UserWarning, match="clamped"):
        r.add([f"s{i}" for i in range(200)], small)
    loaded = FaissRetriever.load(r.save(tmp_path / "ivf"))
    assert (loaded.nlist, loaded.nprobe, loaded.faiss_index.nprobe) == (5, 5, 5)
    assert (loaded.requested_nlist, loaded.requested_nprobe) == (None, 50)
    loaded.reset()
    loaded.add([f"b{i}" for i in range(4000)], big)
    assert (loaded.nlist, loaded.nprobe) == (102, 50)


@needs_faiss
def test_hnsw_returns_k_results():
    r = FaissRetriever(None, "hnsw", hnsw_m=8, ef_search=32)
    r.add([f"d{i}" for i in range(300)], unit_rows(300, 16))
    ids, scores = r.search_embeddings(unit_rows(5, 16, seed=9), k=25)
    assert [len(row) for row in ids] == [25] * 5
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # sorted by score


@needs_faiss
@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip_gives_identical_results(tmp_path, kind):
    corpus = {f"d{i}": f"doc {i} word{i % 7} topic{i % 3} extra{i % 11}" for i in range(80)}
    queries = {f"q{i}": f"word{i % 7} topic{i % 3}" for i in range(6)}
    enc = HashBowEncoder(32)
    r = FaissRetriever(enc, kind, nlist=4, nprobe=2, hnsw_m=8, ef_search=16)
    few_points = pytest.warns(UserWarning, match="faiss wants")
    with few_points if kind == "ivf" else contextlib.nullcontext():
        r.index(corpus)
    before = r.search(queries, k=10)
    path = r.save(tmp_path / "idx")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "ids.json", "index.faiss"]
    loaded = FaissRetriever.load(path, encoder=enc)
    assert (loaded.index_type, loaded.ntotal, loaded.dim) == (kind, 80, 32)
    assert (loaded.nprobe, loaded.ef_search) == (r.nprobe, r.ef_search)
    assert loaded.search(queries, k=10) == before


@needs_faiss
@pytest.mark.slow  # importing sentence-transformers alone takes 10-30 s on a busy 2-core machine
def test_tiny_sentence_transformer_end_to_end(tmp_path):
    from papercore.testing import tiny_sentence_transformer

    model = tiny_sentence_transformer(tmp_path / "st")
    corpus = {f"d{i}": text for i, text in enumerate(["red apple", "blue sky", "green tree"])}
    r = FaissRetriever(model, "flat", batch_size=2)
    r.index(corpus)
    assert r.dim == model.get_embedding_dimension()
    run = r.search({"q": "red apple"}, k=3)
    assert ranked(run, "q")[0] == "d0"  # identical text → cosine 1
    assert run["q"]["d0"] == pytest.approx(1.0, abs=1e-5)
    loaded = FaissRetriever.load(r.save(tmp_path / "idx"), encoder=model)
    assert loaded.search({"q": "red apple"}, k=3) == run


# --------------------------------------------------------------------------- bad inputs
@needs_faiss
def test_ivf_with_fewer_points_than_nlist_raises_with_advice():
    r = FaissRetriever(None, "ivf", nlist=64)
    with pytest.raises(MalformedInputError, match=r"nlist ≤ N/39.*index='flat'"):
        r.add([str(i) for i in range(50)], unit_rows(50, 8))


@needs_faiss
@pytest.mark.filterwarnings("ignore:IVF with nlist")
def test_nprobe_above_nlist_is_clamped_with_warning():
    with pytest.warns(UserWarning, match="clamped to 4"):
        r = FaissRetriever(None, "ivf", nlist=4, nprobe=16)
    assert r.nprobe == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r.add([str(i) for i in range(200)], unit_rows(200, 8))  # warned once, not again
    assert r.nprobe == 4 == r.faiss_index.nprobe and r.requested_nprobe == 16
    r2 = FaissRetriever(None, "ivf", nprobe=50)  # default nlist decided at add() time
    with pytest.warns(UserWarning, match=r"nprobe=50 > nlist=25: clamped"):
        r2.add([str(i) for i in range(1000)], unit_rows(1000, 8))
    assert r2.nprobe == 25 == r2.faiss_index.nprobe


@needs_faiss
def test_save_replaces_the_whole_directory(tmp_path, monkeypatch):
    import papercore.retrieval.faiss_index as fi

    path = tmp_path / "idx"
    r = FaissRetriever(None, "flat")
    r.add([f"old{i}" for i in range(80)], unit_rows(80, 8))
    r.save(path)
    (path / "quadbert.json").write_text('{"model": "m"}')  # a package's file beside the index
    q = unit_rows(3, 8, seed=5)
    old_result = r.search_embeddings(q, k=5)[0]

    new = FaissRetriever(None, "flat")
    new.add([f"new{i}" for i in range(60)], unit_rows(60, 8, seed=3))
    real_write_json = fi.write_json

    def crash_on_ids(target, obj, **kw):
        if target.name == "ids.json":
            raise OSError("disk full")
        return real_write_json(target, obj, **kw)

    monkeypatch.setattr(fi, "write_json", crash_on_ids)
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    monkeypatch.undo()
    # the crash left the old index, ids and config together, and no temporary directory
    loaded = FaissRetriever.load(path)
    assert loaded.ntotal == 80 and loaded.search_embeddings(q, k=5)[0] == old_result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]

    new.save(path)
    loaded = FaissRetriever.load(path)
    assert loaded.ntotal == 60 and loaded.ids[0] == "new0"
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json", "ids.json", "index.faiss", "quadbert.json",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~mask  # not mkdtemp's 0700
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="it is a file"):
        new.save(tmp_path / "file")


@needs_faiss
def test_load_names_the_file_and_key_of_a_bad_config(tmp_path):
    r = FaissRetriever(None, "flat")
    r.add([f"d{i}" for i in range(50)], unit_rows(50, 8))
    path = r.save(tmp_path / "idx")
    good = json.loads((path / "config.json").read_text())

    def load_with(config):
        (path / "config.json").write_text(json.dumps(config))
        return FaissRetriever.load(path)

    cfg = path / "config.json"
    for key in ("index", "dim", "nprobe"):
        bad = {k: v for k, v in good.items() if k != key}
        with pytest.raises(
            MalformedInputError, match=rf"{re.escape(str(cfg))}: missing key\(s\) \['{key}'\]"
        ):
            load_with(bad)
    with pytest.raises(
        MalformedInputError, match=r"config\.json: expected a JSON object, got list"
    ):
        load_with([good])
    with pytest.raises(MalformedInputError, match=r"key 'index' is 'pq'"):
        load_with(good | {"index": "pq"})
    with pytest.raises(MalformedInputError, match=r"key 'dim' must be an integer ≥ 1, got '8'"):
        load_with(good | {"dim": "8"})
    with pytest.raises(
        MalformedInputError,
        match=r"index\.faiss holds a IndexFlatIP .*config\.json says index='ivf'",
    ):
        load_with(good | {"index": "ivf", "nlist": 2})
    with pytest.raises(
        MalformedInputError, match=r"index\.faiss holds a IndexFlatIP .*index='hnsw'"
    ):
        load_with(good | {"index": "hnsw"})
    load_with(good)
    (path / "ids.json").write_text('{"d0": 0}')
    with pytest.raises(MalformedInputError, match=r"ids\.json: expected a JSON list"):
        FaissRetriever.load(path)
    (path / "ids.json").write_text("[1, 2")
    with pytest.raises(MalformedInputError, match=r"ids\.json: invalid JSON"):
        FaissRetriever.load(path)


def test_search_before_index_raises_runtime_error():
    r = FaissRetriever(HashBowEncoder())
    with pytest.raises(RuntimeError, match="before searching"):
        r.search({"q": "x"})
    with pytest.raises(RuntimeError, match="before searching"):
        r.search_embeddings(np.ones((1, 4)))


@needs_faiss
def test_dim_mismatch_on_add_search_and_load_names_both_dims(tmp_path):
    r = FaissRetriever(None)
    r.add(["a", "b"], unit_rows(2, 8))
    with pytest.raises(MalformedInputError, match=r"dimension 6.*dimension 8"):
        r.add(["c"], unit_rows(1, 6))
    with pytest.raises(MalformedInputError, match=r"dimension 5.*dimension 8"):
        r.search_embeddings(unit_rows(1, 5))
    path = r.save(tmp_path / "idx")
    with pytest.raises(MalformedInputError, match=r"16-dimensional.*dimension 8"):
        FaissRetriever.load(path, encoder=HashBowEncoder(16))


@needs_faiss
def test_empty_texts_raise_listing_ids():
    r = FaissRetriever(HashBowEncoder())
    with pytest.raises(MalformedInputError, match=r"corpus: 2 empty text\(s\), ids \['b', 'c'\]"):
        r.index({"a": "fine", "b": "", "c": "   "})
    r.index({"a": "fine"})
    with pytest.raises(MalformedInputError, match=r"queries: 1 empty text\(s\), ids \['q2'\]"):
        r.search({"q1": "ok", "q2": ""})


@needs_faiss
def test_duplicate_ids_raise():
    r = FaissRetriever(None)
    with pytest.raises(MalformedInputError, match=r"duplicate document id\(s\) \['a'\]"):
        r.add(["a", "b", "a"], unit_rows(3, 4))
    r.add(["a", "b"], unit_rows(2, 4))
    with pytest.raises(MalformedInputError, match=r"duplicate document id\(s\) \['b'\]"):
        r.add(["b"], unit_rows(1, 4))


@needs_faiss
def test_k_above_ntotal_is_clamped_and_missing_results_never_reach_the_run():
    r = FaissRetriever(HashBowEncoder())
    r.index({"a": "one", "b": "two", "c": "three"})
    run = r.search({"q": "one"}, k=100)
    assert sorted(run["q"]) == ["a", "b", "c"]
    # IVF with nprobe=1 over 4 lists can find fewer than k vectors: faiss pads with id -1
    ivf = FaissRetriever(None, "ivf", nlist=4, nprobe=1)
    x = np.concatenate([unit_rows(40, 8, seed=s) + 4 * np.eye(8)[s] for s in range(4)])
    ivf.add([f"d{i}" for i in range(len(x))], x)  # 40 points per list: no warning
    ids, scores = ivf.search_embeddings(x[:3], k=160)
    assert all(0 < len(row) < 160 for row in ids)
    assert all(i in set(ivf.ids) for row in ids for i in row)
    assert np.isneginf(scores[0, len(ids[0]) :]).all()


def test_bad_constructor_arguments():
    with pytest.raises(MalformedInputError, match="'flat', 'ivf' or 'hnsw'"):
        FaissRetriever(None, "pq")
    with pytest.raises(MalformedInputError, match=r"\.encode"):
        FaissRetriever(object())


@needs_faiss
def test_k_below_one_raises():
    r = FaissRetriever(None)
    r.add(["a"], unit_rows(1, 4))
    with pytest.raises(MalformedInputError, match="k must be ≥ 1, got 0"):
        r.search_embeddings(unit_rows(1, 4), k=0)


# --------------------------------------------------------------------------- BEIR layout
def write_beir_folder(folder):
    (folder / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "Comets", "text": "A comet has a tail."},
        {"_id": "d2", "title": "", "text": "Bread needs an oven."},
        {"_id": "d3", "text": "Harbors shelter boats."},
    ]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    queries = [
        {"_id": "q1", "text": "what is a comet"},
        {"_id": "q2", "text": "how to bake"},
        {"_id": "q3", "text": "unjudged query"},
    ]
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td3\t0\n"
    )


def test_load_beir_reads_the_real_layout(tmp_path):
    write_beir_folder(tmp_path / "beir")
    data = load_beir(tmp_path / "beir")
    assert data.corpus == {
        "d1": "Comets A comet has a tail.",
        "d2": "Bread needs an oven.",
        "d3": "Harbors shelter boats.",
    }
    assert data.queries == {"q1": "what is a comet", "q2": "how to bake"}  # q3 has no qrels
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}}  # score 0 dropped


def test_beir_save_load_round_trip(tmp_path):
    write_beir_folder(tmp_path / "beir")
    data = load_beir(tmp_path / "beir")
    out = save_beir(data, tmp_path / "copy", split="dev")
    assert (out / "qrels" / "dev.tsv").read_text().splitlines()[0] == "query-id\tcorpus-id\tscore"
    again = load_beir(out, split="dev")
    assert again == data


def test_missing_beir_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_beir(tmp_path / "nowhere")
    write_beir_folder(tmp_path / "beir")
    with pytest.raises(FileNotFoundError, match=r"qrels.dev\.tsv"):
        load_beir(tmp_path / "beir", split="dev")
    (tmp_path / "beir" / "queries.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"queries\.jsonl"):
        load_beir(tmp_path / "beir")


def test_malformed_qrels_line_names_file_and_line(tmp_path):
    p = tmp_path / "qrels.tsv"
    p.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1 d2\n")
    with pytest.raises(MalformedInputError, match=r"qrels\.tsv, line 3: expected 3"):
        load_qrels(p)
    p.write_text("q1\td1\thigh\n")
    with pytest.raises(MalformedInputError, match=r"line 1: score must be an integer"):
        load_qrels(p)
    for bad in ("inf", "-inf", "nan", "1e400"):
        p.write_text(f"q1\td1\t1\nq2\td2\t{bad}\n")
        with pytest.raises(
            MalformedInputError, match=r"qrels\.tsv, line 2: score must be a finite"
        ):
            load_qrels(p)


def test_duplicate_corpus_id_raises(tmp_path):
    p = tmp_path / "corpus.jsonl"
    p.write_text('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n')
    with pytest.raises(MalformedInputError, match="duplicate document id 'a'"):
        load_corpus(p)


def test_as_qrels_and_subset():
    assert as_qrels({"q1": {"a", "b"}, "q2": ["c"], "q3": {"d": 2, "e": 0}, "q4": {"f": 0}}) == {
        "q1": {"a": 1, "b": 1},
        "q2": {"c": 1},
        "q3": {"d": 2},
    }
    data = RetrievalData({"a": "x", "b": "y"}, {"q1": "x", "q2": "y"}, {"q1": {"a": 1}})
    sub = data.subset(["q2"])
    assert sub.corpus is data.corpus and sub.queries == {"q2": "y"} and sub.qrels == {}
    with pytest.raises(MalformedInputError, match="unknown query id"):
        data.subset(["q9"])


# --------------------------------------------------------------------------- metrics
QRELS = {"q1": {"d1": 1, "d2": 1}, "q2": {"d3": 1}, "q3": {"d7": 1}}
RUN = {
    "q1": {"d5": 3.0, "d2": 2.0, "d9": 1.0, "d1": 0.5},  # relevant at ranks 2 and 4
    "q2": {"d4": 1.0, "d3": 0.9},  # relevant at rank 2
    # q3 is missing from the run → counts as 0
    "q_unjudged": {"d1": 1.0},  # not in qrels → ignored
}


@needs_ir_measures
def test_evaluate_run_hand_computed():
    res = evaluate_run(RUN, QRELS, metrics=("MRR@10", "R@10", "nDCG@10"))
    assert list(res) == ["MRR@10", "R@10", "nDCG@10"]
    mrr = (1 / 2 + 1 / 2 + 0) / 3
    recall = (2 / 2 + 1 / 1 + 0) / 3
    idcg_q1 = 1 / math.log2(2) + 1 / math.log2(3)
    ndcg_q1 = (1 / math.log2(3) + 1 / math.log2(5)) / idcg_q1
    ndcg_q2 = 1 / math.log2(3)
    assert res["MRR@10"] == pytest.approx(mrr)
    assert res["R@10"] == pytest.approx(recall)
    assert res["nDCG@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 3)


@needs_ir_measures
def test_missing_queries_count_as_zero():
    only_q1 = {"q1": RUN["q1"]}
    full = evaluate_run(only_q1, {"q1": QRELS["q1"]}, ["MRR@10"])["MRR@10"]
    diluted = evaluate_run(only_q1, QRELS, ["MRR@10"])["MRR@10"]
    assert full == pytest.approx(0.5) and diluted == pytest.approx(0.5 / 3)
    assert evaluate_run({"q1": {}}, {"q1": {"d1"}}, ["R@10"]) == {"R@10": 0.0}
    assert per_query(only_q1, QRELS) == pytest.approx({"q1": 0.5, "q2": 0.0, "q3": 0.0})


@needs_ir_measures
def test_evaluate_run_accepts_set_qrels_and_default_metrics():
    res = evaluate_run(RUN, {q: set(v) for q, v in QRELS.items()})
    assert set(res) == {"MRR@10", "R@10", "R@100", "nDCG@10"}
    assert res["R@100"] == pytest.approx(2 / 3)


@needs_ir_measures
def test_unknown_metric_raises():
    with pytest.raises(MalformedInputError, match="unknown IR metric 'Bogus@3'"):
        evaluate_run(RUN, QRELS, ["Bogus@3"])


def test_trec_run_round_trip(tmp_path):
    run = {"q1": {"d1": 0.123456789, "d2": -1.5, "d3": 2.0}, "q2": {"x": 1e-9}}
    path = write_trec_run(run, tmp_path / "run.trec", tag="mine")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 d3 1 2.0 mine" and lines[2].split()[:4] == ["q1", "Q0", "d2", "3"]
    assert read_trec_run(path) == run


def test_malformed_trec_line_names_file_and_line(tmp_path):
    p = tmp_path / "run.trec"
    p.write_text("q1 Q0 d1 1 0.5 t\nq1 Q0 d2 2\n")
    with pytest.raises(MalformedInputError, match=r"run\.trec, line 2: expected 6 fields"):
        read_trec_run(p)


# --------------------------------------------------------------------------- synthetic data
STOP = {"a", "an", "the", "and", "or", "of", "for", "with", "its", "is", "it", "to", "in", "at"}


def words(text: str) -> set[str]:
    return set(WORD.findall(text.lower())) - STOP


def test_generator_is_deterministic():
    a, b = make_synthetic_retrieval(seed=3), make_synthetic_retrieval(seed=3)
    assert a == b
    c = make_synthetic_retrieval(seed=4)
    assert c.corpus != a.corpus and c.test.queries != a.test.queries


def test_generator_sizes_and_entity_disjoint_split():
    s = make_synthetic_retrieval()
    assert len(s.corpus) == 12 * 6 * 4 and len(set(s.doc_topic.values())) == 12
    assert len(s.train.queries) + len(s.test.queries) == 12 * 6 * 2
    train_ents = {s.query_entity[q] for q in s.train.queries}
    test_ents = {s.query_entity[q] for q in s.test.queries}
    assert not train_ents & test_ents
    assert len(test_ents) == round(0.3 * 72)
    assert s.train.corpus is s.corpus and s.test.corpus is s.corpus
    for data in (s.train, s.test):
        for q, rel in data.qrels.items():
            assert set(rel) == {d for d, e in s.doc_entity.items() if e == s.query_entity[q]}
            assert set(rel.values()) == {1}


def test_generator_has_hard_negatives_and_learnable_signal():
    """Word overlap with a query: relevant docs > same-topic other-entity docs > other-topic docs."""
    s = make_synthetic_retrieval(seed=0)
    doc_words = {d: words(t) for d, t in s.corpus.items()}
    rel, same, other = [], [], []
    for q, text in {**s.train.queries, **s.test.queries}.items():
        qw, ent = words(text), s.query_entity[q]
        topic = s.entity_topic[ent]
        for d, dw in doc_words.items():
            overlap = len(qw & dw)
            if s.doc_entity[d] == ent:
                rel.append(overlap)
            elif s.doc_topic[d] == topic:
                same.append(overlap)
            else:
                other.append(overlap)
    assert np.mean(rel) > np.mean(same) + 0.5
    assert np.mean(same) > np.mean(other) + 1.0


def test_generator_bad_arguments():
    with pytest.raises(MalformedInputError, match="n_topics"):
        make_synthetic_retrieval(n_topics=99)
    with pytest.raises(MalformedInputError, match="test_fraction"):
        make_synthetic_retrieval(test_fraction=1.0)
    with pytest.raises(MalformedInputError, match="docs_per_entity"):
        make_synthetic_retrieval(docs_per_entity=0)


@needs_faiss
@needs_ir_measures
def test_synthetic_retrieval_with_toy_encoder_is_far_from_random():
    s = make_synthetic_retrieval(seed=0)
    r = FaissRetriever(HashBowEncoder(256))
    r.index(s.corpus)
    res = evaluate_run(r.search(s.test.queries, k=100), s.test.qrels)
    random_mrr = 4 / len(s.corpus) * 3  # generous bound for a random ranking
    assert res["MRR@10"] > random_mrr and res["R@100"] > 0.5
