"""FaissRetriever at scale: chunked encoding, sampled training, index_factory strings, HNSW knobs, mmap load."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from papercore.errors import MalformedInputError
from papercore.retrieval import FaissRetriever
from papercore.retrieval.faiss_index import default_nlist, default_train_size

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("faiss") is None,
    reason='needs faiss: pip install "papercore[retrieval]"',
)


class RowEncoder:
    """Text ``"i"`` → row ``i`` of a fixed matrix; records the size of every encode call."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.calls: list[int] = []

    def get_embedding_dimension(self) -> int:
        return int(self.x.shape[1])

    def encode(self, texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False):
        self.calls.append(len(texts))
        return self.x[[int(t) for t in texts]].copy()


def clustered(n: int, d: int, seed: int = 0, k: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)).astype(np.float32)
    x = centers[rng.integers(0, k, n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def corpus_of(n: int) -> dict[str, str]:
    return {str(i): str(i) for i in range(n)}


def recall_at_10(r: FaissRetriever, exact: FaissRetriever, q: np.ndarray) -> float:
    got, _ = r.search_embeddings(q, k=10)
    ref, _ = exact.search_embeddings(q, k=10)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, ref, strict=True)]))


def test_index_encodes_and_adds_in_bounded_chunks():
    x = clustered(1000, 16)
    enc = RowEncoder(x)
    r = FaissRetriever(enc, "flat", chunk_size=300)
    r.index(corpus_of(1000))
    assert enc.calls == [300, 300, 300, 100]  # never the whole corpus at once
    assert r.ntotal == 1000 and r.ids[:3] == ["0", "1", "2"]
    whole = FaissRetriever(RowEncoder(x), "flat")
    whole.index(corpus_of(1000))
    q = clustered(20, 16, seed=1)
    assert r.search_embeddings(q, k=10)[0] == whole.search_embeddings(q, k=10)[0]


def test_ivf_is_trained_on_a_random_sample_not_the_first_chunk():
    # the corpus is sorted: the first chunk holds one cluster only. Trained on it, IVF puts every
    # other vector in a few lists; trained on a random sample, lists cover every cluster.
    x = clustered(3000, 16, k=30)
    order = np.argsort(np.argmax(x @ clustered(30, 16, seed=9).T, axis=1), kind="stable")
    x = x[order]
    enc = RowEncoder(x)
    r = FaissRetriever(enc, "ivf", nlist=30, nprobe=1, chunk_size=500, train_size=1200, seed=3)
    r.index(corpus_of(3000))
    # first call: the training sample (1200 random rows), then the chunks minus sampled rows
    assert enc.calls[0] == 1200 and sum(enc.calls) == 3000
    sizes = np.array([r.faiss_index.invlists.list_size(i) for i in range(30)])
    assert sizes.max() < 3000 / 30 * 3  # balanced lists: the sample spans the whole corpus
    exact = FaissRetriever(None, "flat")
    exact.add([str(i) for i in range(3000)], x)
    q = clustered(50, 16, seed=1)
    r.set_search_params(nprobe=30)
    assert recall_at_10(r, exact, q) == pytest.approx(1.0)
    # the default nlist follows the corpus size, not the training sample's
    d = FaissRetriever(RowEncoder(x), "ivf", chunk_size=500, train_size=1200)
    d.index(corpus_of(3000))
    assert d.nlist == default_nlist(3000) == 76 != default_nlist(1200)


def test_add_trains_on_a_bounded_seeded_sample():
    x = clustered(2000, 16)
    a = FaissRetriever(None, "ivf", nlist=8, train_size=400, seed=1)
    b = FaissRetriever(None, "ivf", nlist=8, train_size=400, seed=1)
    a.add([str(i) for i in range(2000)], x)
    b.train(x)
    b.add([str(i) for i in range(2000)], x)
    ca = a.faiss_index.quantizer.reconstruct_n(0, 8)
    cb = b.faiss_index.quantizer.reconstruct_n(0, 8)
    np.testing.assert_array_equal(ca, cb)  # same seeded sample → same centroids
    with (
        pytest.warns(UserWarning, match="IVF with nlist=8 trained on N=12"),
        pytest.raises(MalformedInputError, match="train_size=4 is smaller than nlist=8"),
    ):
        FaissRetriever(None, "ivf", nlist=8, train_size=4).add(list("abcdefghijkl"), x[:12])
    assert default_train_size(10**7, 4096) == 64 * 4096
    assert default_train_size(1000, 10) == 1000


@pytest.mark.parametrize(
    ("spec", "min_recall"),
    [
        ("IVF16,Flat", 0.9),
        ("IVF16,SQ8", 0.85),
        ("IVF16,PQ8np", 0.3),
        ("HNSW16", 0.9),
        ("Flat", 1.0),
    ],
)
def test_factory_strings_build_search_save_and_mmap_load(tmp_path, spec, min_recall):
    x = clustered(2000, 32)
    q = clustered(40, 32, seed=1)
    exact = FaissRetriever(None, "flat")
    exact.add([str(i) for i in range(2000)], x)
    r = FaissRetriever(RowEncoder(x), spec, nprobe=16, ef_search=64, chunk_size=700)
    r.index(corpus_of(2000))
    assert r.ntotal == 2000 and r.dim == 32
    recall = recall_at_10(r, exact, q)
    assert recall >= min_recall
    if spec.startswith("IVF"):
        assert r.nlist == 16 and r.nprobe == 16
    r.save(tmp_path / "idx")
    for mmap in (False, True):
        back = FaissRetriever.load(tmp_path / "idx", mmap=mmap)
        assert back.index_type == spec
        assert back.search_embeddings(q, k=10)[0] == r.search_embeddings(q, k=10)[0]


def test_hnsw_ef_construction_and_ef_search_reach_faiss(tmp_path):
    x = clustered(300, 16)
    r = FaissRetriever(None, "hnsw", hnsw_m=8, ef_construction=77, ef_search=33)
    r.add([str(i) for i in range(300)], x)
    assert (r.faiss_index.hnsw.efConstruction, r.faiss_index.hnsw.efSearch) == (77, 33)
    f = FaissRetriever(None, "HNSW8", ef_construction=55, ef_search=21)
    f.add([str(i) for i in range(300)], x)
    assert (f.faiss_index.hnsw.efConstruction, f.faiss_index.hnsw.efSearch) == (55, 21)
    f.set_search_params(ef_search=99)
    assert f.faiss_index.hnsw.efSearch == 99
    f.save(tmp_path / "h")
    back = FaissRetriever.load(tmp_path / "h")
    assert (back.ef_construction, back.faiss_index.hnsw.efSearch) == (55, 99)


def test_bad_factory_strings_fail_before_encoding():
    with pytest.raises(MalformedInputError, match="not 'flat', 'ivf' or 'hnsw', nor a faiss"):
        FaissRetriever(None, "IVF16,Bogus")
    with pytest.raises(MalformedInputError, match="'hnws' is not 'flat'"):
        FaissRetriever(None, "hnws")
    enc = RowEncoder(clustered(100, 30))  # PQ8 needs d divisible by 8
    with pytest.raises(MalformedInputError, match=r"index_factory\(d=30, 'IVF4,PQ8'\) failed"):
        FaissRetriever(enc, "IVF4,PQ8").index(corpus_of(100))
    assert enc.calls == []  # nothing was encoded
    enc = RowEncoder(clustered(100, 32))
    with pytest.raises(MalformedInputError, match="nlist=256 but only N=100"):
        FaissRetriever(enc, "IVF256,Flat").index(corpus_of(100))
    assert enc.calls == []


def test_mmap_load_keeps_the_vectors_on_disk(tmp_path):
    def rss_mib() -> float:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    x = clustered(200_000, 64)  # 49 MiB of vectors
    r = FaissRetriever(None, "flat")
    r.add([str(i) for i in range(len(x))], x)
    r.save(tmp_path / "big")
    del r, x
    before = rss_mib()
    mapped = FaissRetriever.load(tmp_path / "big", mmap=True)
    mapped_growth = rss_mib() - before
    before = rss_mib()
    loaded = FaissRetriever.load(tmp_path / "big")
    loaded_growth = rss_mib() - before
    assert loaded_growth > 40 and mapped_growth < loaded_growth / 2, (mapped_growth, loaded_growth)
    q = clustered(5, 64, seed=2)
    assert mapped.search_embeddings(q, k=5)[0] == loaded.search_embeddings(q, k=5)[0]
