"""Sparse TF-IDF kNN candidates (eclip.index.sparse_knn) against an exact dense top-k."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from eclip.encoders import CharNgramTfidf
from eclip.index.sparse_knn import tfidf_knn_table
from eclip.matcher.candidates import knn_pairs, tfidf_knn

BASES = [
    "Sepatu Lari Pria Hitam Ukuran 42",
    "Tas Ransel Laptop Wanita Anti Air",
    "Kemeja Batik Lengan Panjang Katun",
    "Minyak Goreng Kelapa Sawit 2 Liter",
    "Kühlschrank mit Gefrierfach Edelstahl 300 L",
    "Waschmaschine Frontlader 8 kg A+++ weiß",
    "Kaffeevollautomat mit Milchaufschäumer schwarz",
    "Crème hydratante visage peaux sèches 50 ml",
    "Écouteurs sans fil réduction de bruit",
    "Zapatillas de running para mujer talla 38",
    "Điện thoại thông minh màn hình 6.5 inch",
    "Ноутбук игровой 16 ГБ ОЗУ 512 ГБ SSD",
    "Sony WH-1000XM3 Wireless Noise Cancelling Headphones",
    "Samsung Galaxy S21 128GB Phantom Grey",
    "Logitech MX Master 3 Advanced Wireless Mouse",
]
ALPHABET = "abcdefghijklmnopqrstuvwxyzäöüéèàñ0123456789 "


def _edit(title: str, rng: np.random.Generator) -> str:
    chars = list(title)
    for _ in range(int(rng.integers(1, 6))):
        i = int(rng.integers(0, len(chars)))
        op = rng.integers(0, 3)
        if op == 0:
            chars[i] = str(rng.choice(list(ALPHABET)))
        elif op == 1:
            chars.insert(i, str(rng.choice(list(ALPHABET))))
        elif len(chars) > 5:
            del chars[i]
    return "".join(chars)


def _titles(n: int = 200, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add(_edit(BASES[int(rng.integers(0, len(BASES)))], rng))
    return sorted(out)


def _brute(x: sp.csr_matrix, rows: np.ndarray, k: int, min_cosine: float = 0.0):
    """Exact dense top-k (float64): per query row, [(catalog id, cosine)] best first, cosine > 0."""
    d = x[rows].toarray().astype(np.float64)
    s = d @ d.T
    np.fill_diagonal(s, -np.inf)
    out = []
    for i in range(len(rows)):
        order = np.argsort(-s[i], kind="stable")[:k]
        out.append([(int(rows[j]), float(s[i, j])) for j in order if s[i, j] > 0 and s[i, j] >= min_cosine])
    return out, s


def _brute_pairs(table, rows: np.ndarray) -> dict[tuple[int, int], int]:
    pairs: dict[tuple[int, int], int] = {}
    for q, nbrs in zip(rows, table):
        for rank, (j, _) in enumerate(nbrs, start=1):
            key = (min(int(q), j), max(int(q), j))
            pairs[key] = min(rank, pairs.get(key, rank))
    return pairs


@pytest.fixture(scope="module")
def x() -> sp.csr_matrix:
    return CharNgramTfidf().fit_transform(_titles())


def test_equals_exact_brute_force(x: sp.csr_matrix) -> None:
    k = 10
    rows = np.random.default_rng(1).permutation(x.shape[0])[:150]  # a shuffled subset: ids are catalog rows
    table, s = _brute(x, rows, k)
    # the data set must have no near-tie across the k-th place, or "the" exact top-k is ill-defined
    top = -np.sort(-s, axis=1)[:, : k + 1]
    # (ties at cosine 0 do not count: rows sharing no n-gram are never neighbours)
    assert np.all((np.abs(np.diff(top, axis=1)) > 1e-6) | (top[:, 1:] <= 0)), "ties in the test data: change the seed"

    scores, ids = tfidf_knn_table(x, rows, k)
    for i, nbrs in enumerate(table):
        assert ids[i, : len(nbrs)].tolist() == [j for j, _ in nbrs]
        np.testing.assert_allclose(scores[i, : len(nbrs)], [c for _, c in nbrs], rtol=0, atol=1e-5)
        assert (ids[i, len(nbrs) :] == -1).all()

    a, b, rank = tfidf_knn(x, rows, k)
    assert a.dtype == b.dtype == rank.dtype == np.int64
    got = {(int(p), int(q)): int(r) for p, q, r in zip(a, b, rank)}
    assert got == _brute_pairs(table, rows)
    assert len(got) > len(rows)  # it did find pairs; most rows have several near edits


def test_pairs_well_formed(x: sp.csr_matrix) -> None:
    rows = np.arange(x.shape[0])
    a, b, rank = tfidf_knn(x, rows, 5)
    assert len(a) > 0
    assert (a < b).all()  # no self pairs, ordered
    keys = a * x.shape[0] + b
    assert np.unique(keys).size == keys.size  # each pair once
    assert (np.diff(keys) > 0).all()  # sorted by (a, b)
    assert rank.min() >= 1 and rank.max() <= 5
    assert len(a) <= 5 * x.shape[0]  # each row lists at most 5 others; a pair found both ways is listed once
    assert len(a) < 5 * x.shape[0]  # ... and mutual neighbours are common on near-duplicate titles


def test_knn_pairs_layout(x: sp.csr_matrix) -> None:
    rows = np.arange(x.shape[0])
    _, ids = tfidf_knn_table(x, rows, 7)
    frame = knn_pairs(ids)
    for got, col in zip(tfidf_knn(x, rows, 7), ("a", "b", "rank")):
        np.testing.assert_array_equal(got, frame[col].to_numpy())


def test_blocks_and_threads_do_not_change_the_result(x: sp.csr_matrix) -> None:
    rows = np.arange(0, x.shape[0], 2)
    ref = tfidf_knn_table(x, rows, 6, block=10_000, n_threads=1)
    for block, threads in ((7, 2), (1, 1), (64, 2)):
        got = tfidf_knn_table(x, rows, 6, block=block, n_threads=threads)
        np.testing.assert_array_equal(got[0], ref[0])  # each row's heap is the same whatever the split
        np.testing.assert_array_equal(got[1], ref[1])


def test_k_larger_than_rows(x: sp.csr_matrix) -> None:
    rows = np.arange(40, 70)
    a, b, rank = tfidf_knn(x, rows, 500)
    table, s = _brute(x, rows, 500)
    want = {(int(rows[i]), int(rows[j])) for i in range(30) for j in range(i + 1, 30) if s[i, j] > 0}
    assert set(zip(a.tolist(), b.tolist())) == want
    assert rank.max() <= 29
    scores, ids = tfidf_knn_table(x, rows, 500)
    assert ids.shape == (30, 500) and (ids[:, 29:] == -1).all()


def test_empty_and_single_rows(x: sp.csr_matrix) -> None:
    for rows in (np.array([], dtype=np.int64), np.array([]), np.array([3])):
        a, b, rank = tfidf_knn(x, rows, 10)
        assert a.size == b.size == rank.size == 0
        assert a.dtype == b.dtype == rank.dtype == np.int64
    scores, ids = tfidf_knn_table(x, np.array([], dtype=np.int64), 4)
    assert scores.shape == ids.shape == (0, 4)


def test_min_cosine_filter(x: sp.csr_matrix) -> None:
    rows = np.arange(x.shape[0])
    d = x.toarray().astype(np.float64)
    s = d @ d.T
    for t in (0.3, 0.6, 0.9):
        a, b, _ = tfidf_knn(x, rows, 1000, min_cosine=t)  # k covers every row: exactly the pairs >= t
        assert (s[a, b] >= t - 1e-6).all()
        iu = np.triu_indices(len(rows), 1)
        want = {(int(i), int(j)) for i, j in zip(*iu) if s[i, j] >= t + 1e-6}
        assert want <= set(zip(a.tolist(), b.tolist()))
        # with a small k, min_cosine only removes pairs
        a5, b5, _ = tfidf_knn(x, rows, 5, min_cosine=t)
        a0, b0, _ = tfidf_knn(x, rows, 5)
        assert set(zip(a5.tolist(), b5.tolist())) <= set(zip(a0.tolist(), b0.tolist()))
        assert (s[a5, b5] >= t - 1e-6).all()
    assert len(tfidf_knn(x, rows, 5, min_cosine=1.0)[0]) == 0  # the titles are distinct


def test_identical_titles_and_empty_titles() -> None:
    texts = ["Sepatu Lari Pria"] * 6 + ["", "Kühlschrank Edelstahl", "kühlschrank edelstahl!"]
    x = CharNgramTfidf().fit_transform(texts)
    scores, ids = tfidf_knn_table(x, np.arange(len(texts)), 2)
    for i in range(6):  # ties at cosine 1: still k neighbours, never the row itself
        assert set(ids[i].tolist()) <= set(range(6)) - {i} and (ids[i] >= 0).all()
        np.testing.assert_allclose(scores[i], 1.0, atol=1e-5)
    assert (ids[6] == -1).all()  # an empty title shares no n-gram with anything
    assert ids[7, 0] == 8 and ids[8, 0] == 7
    a, b, _ = tfidf_knn(x, np.arange(len(texts)), 2)
    assert 6 not in a and 6 not in b and (a < b).all()


def test_knn_pairs_with_query_rows() -> None:
    ids = np.array([[1, 2], [0, -1], [2, 0]])  # row 2 lists itself
    pairs = knn_pairs(ids, np.array([10, 11, 12]) - 10)
    assert pairs["a"].to_list() == [0, 0] and pairs["b"].to_list() == [1, 2] and pairs["rank"].to_list() == [1, 2]
    # lines that hold other rows than their position: ids are catalog positions
    sub = knn_pairs(np.array([[7, -1], [3, 9], [7, 3]]), np.array([3, 7, 9]))
    assert list(zip(sub["a"], sub["b"], sub["rank"])) == [(3, 7, 1), (3, 9, 2), (7, 9, 1)]


def test_errors(x: sp.csr_matrix) -> None:
    rows = np.arange(10)
    with pytest.raises(TypeError):
        tfidf_knn(x.toarray(), rows, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tfidf_knn(sp.csr_matrix(np.ones((3, 3), dtype=np.int64)), np.arange(3), 1)
    with pytest.raises(ValueError, match="L2"):
        tfidf_knn(x * 2.0, rows, 3)
    with pytest.raises(ValueError, match="lie in"):
        tfidf_knn(x, np.array([0, x.shape[0]]), 3)
    with pytest.raises(ValueError, match="repeat"):
        tfidf_knn(x, np.array([1, 2, 1]), 3)
    with pytest.raises(ValueError, match="1-D"):
        tfidf_knn(x, np.array([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="k must"):
        tfidf_knn(x, rows, 0)
    with pytest.raises(ValueError, match="min_cosine"):
        tfidf_knn(x, rows, 3, min_cosine=1.5)
    with pytest.raises(ValueError, match="block"):
        tfidf_knn(x, rows, 3, block=0)
