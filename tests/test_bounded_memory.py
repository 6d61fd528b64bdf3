"""A million rows in bounded memory (issue 35): every memory-saving path gives the numbers the
plain path gave, on small data made here."""

import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from eclip.matcher.candidates import code_block_pairs, knn_pairs, union_candidates


def _reference_union(lists: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """The polars group-by union this module used before (the reference)."""
    parts = [
        df.select(
            pl.col("a").cast(pl.Int64),
            pl.col("b").cast(pl.Int64),
            (pl.col("rank").cast(pl.UInt32) if "rank" in df.columns else pl.lit(None, pl.UInt32)).alias("rank"),
            pl.lit(name).alias("source"),
        )
        for name, df in lists.items()
    ]
    return (
        pl.concat(parts)
        .group_by("a", "b")
        .agg(pl.col("rank").min(), pl.col("source").unique().sort().str.join("+"))
        .sort("a", "b")
    )


def test_candidate_unions_match_the_group_by_reference():
    rng = np.random.default_rng(0)
    n, k = 300, 6
    nn = rng.integers(-1, n, (n, k))
    knn = knn_pairs(nn)
    ref = (
        pl.DataFrame(
            {
                "a": np.minimum(np.repeat(np.arange(n), k), nn.ravel()),
                "b": np.maximum(np.repeat(np.arange(n), k), nn.ravel()),
                "rank": np.tile(np.arange(1, k + 1, dtype=np.uint32), n),
            }
        )
        .filter((pl.col("a") >= 0) & (pl.col("a") != pl.col("b")))
        .group_by("a", "b")
        .agg(pl.col("rank").min())
        .sort("a", "b")
    )
    assert knn.equals(ref)
    codes = [
        frozenset(rng.choice(["ab12", "cd34", "ef56", "gh78"], rng.integers(0, 3), replace=False)) for _ in range(n)
    ]
    blocks = code_block_pairs(codes, max_block=90)
    assert blocks.height and (blocks["a"] < blocks["b"]).all() and blocks.is_unique().all()
    for a, b in blocks.iter_rows():
        assert codes[a] & codes[b]
    lists = {"text": knn, "code": blocks, "image": knn.sample(50, seed=1).with_columns(pl.col("rank") + 1)}
    assert union_candidates(lists).equals(_reference_union(lists))


def test_shared_values_give_one_verdict_per_distinct_pair():
    from eclip.matcher import signals

    rng = np.random.default_rng(1)
    kinds = [frozenset(), frozenset({"ab12"}), frozenset({"ab12", "cd34"}), frozenset({"cd35"})]
    values = [kinds[i] for i in rng.integers(0, 4, 400)] + [frozenset({"ab12"}) for _ in range(20)]  # equal, not same
    a, b = rng.integers(0, len(values), 2000), rng.integers(0, len(values), 2000)
    calls = []

    def verdict(x, y):
        calls.append(1)
        return signals.code_similarity(x, y)

    got = signals._verdicts(verdict, values, a, b)
    want = [signals.code_similarity(values[i], values[j]) if values[i] and values[j] else 0 for i, j in zip(a, b)]
    assert got.tolist() == pytest.approx(want)
    assert len(calls) < 200  # one call per distinct pair of objects, not one per pair


def test_codes_and_quantities_are_shared_between_rows():
    from eclip.encoders import codes_of_all, quantities_of_all

    texts = ["Sony KDL-40EX500 TV 64GB", "sony kdl40ex500 tv 64gb", "Canon EOS-70D DSLR 128GB"]
    codes, quantities = codes_of_all(texts), quantities_of_all(texts)
    assert codes[0] and codes[0] is codes[1] and codes[0] != codes[2]
    assert quantities[0] and quantities[0] is quantities[1] and quantities[0] != quantities[2]


def test_hashed_tfidf_is_weighted_in_place_as_scikit_learn_does():
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    from eclip.encoders import CharNgramTfidf

    texts = ["Sony Bravia KDL40 TV", "sony bravia 40in tv", "Bosch kettle 1.7 l", "", "Kettle Bosch TWK"] * 7
    x = CharNgramTfidf(exact_max=5, chunk_rows=4).fit_transform(texts)
    hv = HashingVectorizer(
        analyzer="char_wb", ngram_range=(3, 5), alternate_sign=False, norm=None, n_features=2**22, dtype=np.float32
    )
    y = TfidfTransformer(sublinear_tf=True).fit_transform(hv.transform(texts))
    assert x.shape == y.shape and x.nnz == y.nnz and abs(x - y).max() < 1e-6


def test_embeddings_read_shard_by_shard_and_fused_only_when_used(tmp_path, hash_encoder):
    from eclip.catalog import load_catalog
    from eclip.encoders import load_embeddings

    (tmp_path / "c.csv").write_text("id,title\n" + "".join(f"{i},item {i} title\n" for i in range(50)) + "50,\n")
    cat = load_catalog(tmp_path / "c.csv")
    from eclip.encoders.embed import EmbedSettings, embed_catalog

    embed_catalog(hash_encoder, cat, tmp_path / "emb", EmbedSettings(shard_rows=7))
    emb = load_embeddings(tmp_path / "emb")
    assert emb._fused is None  # not read yet
    assert emb.text.shape == (51, hash_encoder.dim) and len(emb.array_files["text"]) == 8
    np.testing.assert_allclose(emb.fused[:50], emb.text[:50], atol=1e-6)  # text-only: fused is the title
    assert not emb.fused[50].any() and emb._fused is not None  # no text, no image: a zero row
    direct = np.concatenate([np.load(p) for p in emb.array_files["text"]])
    assert np.array_equal(direct, emb.text)


def test_the_api_imports_no_job_until_asked():
    code = (
        "import sys\nfrom eclip import api\nassert 'torch' not in sys.modules and 'eclip.jobs.dedupe' not in sys.modules\n"
        "import eclip.jobs.dedupe\nassert api.dedupe.__name__ == 'dedupe' and callable(api.dedupe)\n"
        "assert 'torch' not in sys.modules, 'a static dedupe needs no PyTorch'\n"
        "print(sorted(type(getattr(api, n)).__name__ for n in api.__all__ if type(getattr(api, n)).__name__ == 'module'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # every public name is a function, class or value, none a module


def test_stages_record_their_memory():
    from eclip.jobs.run import StageTimer

    timer = StageTimer()
    with timer("fill"):
        block = np.ones(64 * 2**20 // 8)  # 64 MiB
    assert block.sum() > 0
    mem = timer.memory["fill"]
    assert 0 < mem["rss_gib"] <= mem["peak_gib"] and mem["peak_gib"] >= 64 / 1024
