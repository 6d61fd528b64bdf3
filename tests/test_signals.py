import numpy as np
import polars as pl
import pytest

from eclip.encoders import CharNgramTfidf, extract_codes
from eclip.matcher import ScoreWeights, code_block_pairs, code_similarity, knn_pairs, merge_candidates, score_pairs


def test_extract_codes_normalises_separators():
    assert extract_codes("Sony Turntable - PS-LX350H") == {"pslx350h"}
    assert extract_codes("Sony WH-1000XM3/B headphones") == {"wh1000xm3b"}
    assert extract_codes("Samsung 128GB card EVO850") == {"evo850"}  # 128gb is a quantity, not a code
    assert extract_codes("Panasonic 1080p DVD Recorder - DMREA18K") == {"dmrea18k"}
    assert extract_codes("Red label whisky, 40 percent") == frozenset()
    assert "5012345678900" in extract_codes("EAN 5012345678900")


def test_code_similarity_cases():
    assert code_similarity(frozenset({"kdl40v"}), frozenset({"kdl40v", "x"})) == 1.0
    assert code_similarity(frozenset({"wh1000xm3"}), frozenset({"wh1000xm3b"})) == 0.5
    assert code_similarity(frozenset({"kdl40v"}), frozenset({"kdl46v"})) == -1.0
    assert code_similarity(frozenset(), frozenset({"kdl46v"})) == 0.0
    # a shared series code, but each side's own part number differs: two variants, no evidence
    assert code_similarity(frozenset({"s320", "3780001"}), frozenset({"s320", "3880001"})) == 0.0
    assert code_similarity(frozenset({"s320", "3780001"}), frozenset({"s320", "3780001"})) == 1.0
    # a shared code and one side's longer variant of the other's extra code still agree
    assert code_similarity(frozenset({"nsaw390", "nsaw390wh"}), frozenset({"nsaw390", "nsaw390"})) == 1.0


def test_extract_quantities_reads_units_into_base_units():
    from eclip.encoders.lexical import extract_quantities

    assert extract_quantities("SanDisk Ultra 128GB microSDXC") == {"storage_gb": {128.0}}
    assert extract_quantities("Samsung 850 EVO 1TB SSD") == {"storage_gb": {1000.0}, "number": {850.0}}
    assert extract_quantities("Corsair 16GB (2x8GB) DDR4 3200MHz") == {
        "storage_gb": {16.0, 8.0},
        "frequency_hz": {3.2e9},
    }
    assert extract_quantities("Samsung PN50A550 50' Plasma TV")["length_mm"] == {1270.0}
    assert extract_quantities("Pampers 3-pack") == {"count": {3.0}}
    assert extract_quantities("Sony WH1000XM3 headphones") == {}


def test_knn_pairs_are_undirected_with_best_rank():
    ids = np.array([[1, 2], [0, -1], [1, 0]])
    df = knn_pairs(ids)
    assert df.select("a", "b").rows() == [(0, 1), (0, 2), (1, 2)]
    assert df["rank"].to_list() == [1, 2, 1]


def test_code_blocks_skip_codes_shared_by_too_many_rows():
    codes = [frozenset({"abc123"}), frozenset({"abc123", "128gb"}), frozenset({"128gb"}), frozenset({"128gb"})]
    df = code_block_pairs(codes, max_block=2)
    assert df.rows() == [(0, 1)]
    merged = merge_candidates(
        pl.DataFrame(
            {"a": [0, 2], "b": [1, 3], "rank": [1, 1]}, schema={"a": pl.Int64, "b": pl.Int64, "rank": pl.UInt32}
        ),
        df,
    )
    assert merged["source"].to_list() == ["knn+code", "knn"]


def test_score_combines_signals(hash_encoder):
    texts = ["Sony Turntable PSLX350H", "Sony PS-LX350H Belt Drive Turntable", "Sony Turntable PSLX300H"]
    emb = hash_encoder.encode(texts)
    tfidf = CharNgramTfidf().fit_transform(texts)
    codes = [extract_codes(t) for t in texts]
    a, b = np.array([0, 0]), np.array([1, 2])
    s = score_pairs(a, b, emb, tfidf, codes, ScoreWeights())
    assert s["code"].tolist() == [1.0, -1.0]
    # the shared model code outranks a near-identical title with another code
    assert s["score"][0] > s["score"][1]
    expected = 0.5 * s["cos_embedding"] + 0.5 * s["cos_tfidf"] + 0.3 * s["code"]
    assert np.allclose(s["score"], expected, atol=1e-6)
    only_emb = score_pairs(a, b, emb, None, None)
    assert set(only_emb) == {"cos_embedding", "score"}
    assert np.allclose(only_emb["score"], only_emb["cos_embedding"])


def test_a_quantity_conflict_splits_near_twins(hash_encoder):
    from eclip.encoders.lexical import extract_quantities
    from eclip.matcher import group

    # row 1 differs from row 0 only in its capacity; row 2 is row 0 reworded
    texts = [
        "Kingston DataTraveler Exodia 64GB USB stick",
        "Kingston DataTraveler Exodia 128GB USB stick",
        "Kingston USB stick DataTraveler Exodia, 64 GB",
    ]
    emb = hash_encoder.encode(texts)
    tfidf = CharNgramTfidf().fit_transform(texts)
    codes = [extract_codes(t) for t in texts]
    quantities = [extract_quantities(t) for t in texts]
    a, b = np.array([0, 0, 1]), np.array([1, 2, 2])
    plain = score_pairs(a, b, emb, tfidf, codes)
    assert plain["score"][0] > plain["score"][1]  # on words alone the twin looks closest
    assert group(3, a, b, plain["score"], 0.3, "mutual").labels.tolist() == [0, 0, 2]
    out = score_pairs(a, b, emb, tfidf, codes, quantities=quantities)
    assert out["quantity"].tolist() == [-1.0, 1.0, -1.0]
    np.testing.assert_allclose(out["score"][0], plain["score"][0] - ScoreWeights().quantity, rtol=1e-6)
    assert group(3, a, b, out["score"], 0.3, "mutual").labels.tolist() == [0, 1, 0]


def test_a_brand_conflict_counts_against_and_agreement_adds_nothing(hash_encoder):
    texts = ["Logitech H390 USB headset", "Logitech H390 USB headset", "Logitech H390 USB headset"]
    emb = hash_encoder.encode(texts)
    a, b = np.array([0, 0]), np.array([1, 2])
    out = score_pairs(a, b, emb, None, None, brands=["logitech", "logitech", "sony"])
    assert out["brand"].tolist() == [1.0, -1.0]
    assert out["score"][0] == pytest.approx(1.0, abs=1e-5) and out["score"][1] == pytest.approx(
        1.0 - ScoreWeights().brand, abs=1e-5
    )


def test_tfidf_above_exact_max_hashes_in_chunks_with_the_same_weighting():
    from eclip.encoders import CharNgramTfidf

    titles = [
        "Sony WH-1000XM4 headphones black",
        "sony wh1000xm4 headphones",
        "Samsung 870 EVO 1TB SSD",
        "Samsung 870 EVO 2TB SSD",
        "",
        "Logitech MX Master 3S",
    ] * 5
    exact = CharNgramTfidf().fit_transform(titles)
    vec = CharNgramTfidf(exact_max=10, chunk_rows=7)  # 30 rows: hashed, in 5 chunks
    hashed = vec.fit_transform(titles)
    assert vec.hashed and hashed.shape == (30, 2**22) and hashed.dtype == np.float32
    norms = np.asarray(hashed.multiply(hashed).sum(axis=1)).ravel()
    np.testing.assert_allclose(norms[[i for i, t in enumerate(titles) if t]], 1.0, rtol=1e-5)
    assert norms[4] == 0  # an empty title stays a zero row
    cos_exact = (exact @ exact.T).toarray()
    cos_hashed = (hashed @ hashed.T).toarray()
    np.testing.assert_allclose(cos_hashed, cos_exact, atol=0.02)  # only hash collisions differ
    assert vec.describe()["hashed_bits"] == 22
