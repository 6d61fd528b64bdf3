"""The adult filter at the catalog's base rate: the score mixture, its label-free threshold,
the concept set, the margin, and the text columns read by default."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from eclip.classify import (
    ADULT_CONCEPTS,
    adult_margins,
    fit_score_mixture,
    general_concepts,
    threshold_for_expected_precision,
)
from eclip.errors import EclipError


def synthetic_scores(n: int, rate: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Margins shaped like a catalog's: a skewed null of two Gaussians below 0, and positives
    around 0.15 above it, at base rate ``rate``."""
    rng = np.random.default_rng(seed)
    k = int(round(rate * n))
    bulk = rng.random(n - k) < 0.6
    null = np.where(bulk, rng.normal(-0.30, 0.09, n - k), rng.normal(-0.15, 0.07, n - k))
    pos = rng.normal(0.15, 0.03, k)
    return np.r_[pos, null], np.r_[np.ones(k, bool), np.zeros(n - k, bool)]


@pytest.mark.parametrize("rate", [0.002, 0.01, 0.1])
def test_base_rate_recovers_a_known_rate(rate):
    scores, y = synthetic_scores(60_000, rate, seed=1)
    mixture = fit_score_mixture(scores)
    assert mixture.base_rate == pytest.approx(rate, rel=0.25)
    assert 0.1 < mixture.positive[0] < 0.2 and all(m <= 0 for m in mixture.null_means)
    post = mixture.posterior(scores)
    point = threshold_for_expected_precision(scores, post, 0.9, floor=0.0)
    flagged = scores >= point.threshold
    precision = (flagged & y).sum() / flagged.sum()
    assert point.met_target and point.expected_precision >= 0.9
    assert precision >= 0.85, precision  # measured precision near the expected one
    assert (flagged & y).sum() / y.sum() > 0.5


def test_a_catalog_without_positives_flags_close_to_none():
    scores, y = synthetic_scores(60_000, 0.0, seed=2)
    assert not y.any()
    mixture = fit_score_mixture(scores)
    assert mixture.base_rate < 0.0005
    point = threshold_for_expected_precision(scores, mixture.posterior(scores), 0.9, floor=0.0)
    assert point.flagged <= 3 and int((scores >= point.threshold).sum()) == point.flagged


def test_posterior_never_falls_as_the_score_rises():
    scores, _ = synthetic_scores(20_000, 0.01, seed=3)
    mixture = fit_score_mixture(scores)
    grid = np.linspace(-1, 1, 2001)
    post = mixture.posterior(grid)
    assert np.all(np.diff(post) >= 0) and post[-1] > 0.99 and post[0] < 1e-6


def test_threshold_for_expected_precision_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.7, 0.1])
    post = np.array([1.0, 0.9, 0.8, 0.6, 0.0])
    point = threshold_for_expected_precision(scores, post, 0.85)
    # 0.9: 1.0; 0.8: 0.95; 0.7 (both tied rows): 0.825 < 0.85 -> 0.8 is the lowest
    assert point.threshold == 0.8 and point.flagged == 2 and point.expected_precision == pytest.approx(0.95)
    assert point.expected_recall == pytest.approx(1.9 / 3.3)
    assert not threshold_for_expected_precision(scores, post * 0.5, 0.9).met_target
    assert threshold_for_expected_precision(scores, post, 0.5, floor=0.75).threshold == 0.8


def test_mixture_refuses_too_few_or_equal_scores():
    with pytest.raises(EclipError, match="at least 10 distinct scores"):
        fit_score_mixture(np.zeros(5))
    with pytest.raises(EclipError, match="all equal"):
        fit_score_mixture(np.full(100, 0.3))


def test_general_concepts_cover_the_taxonomy_without_adult_ones():
    names = general_concepts()
    assert len(names) > 5000 and len(set(names)) == len(names)
    assert {"Thongs & Flip-Flops", "Dog Beds", "Vitamins & Supplements"} <= set(names)
    assert not set(names) & set(ADULT_CONCEPTS)
    assert "Erotic" not in names and "Guns" not in names  # the Mature branch is left out


def test_margin_is_nearest_adult_minus_nearest_ordinary():
    concepts = np.eye(4, dtype=np.float32)  # 2 adult, then 2 ordinary
    x = np.array([[0.8, 0.1, 0.6, 0.0], [0.0, 0.6, 0.0, 0.8]], dtype=np.float32)
    margin, nearest = adult_margins(x, concepts, n_adult=2)
    assert margin == pytest.approx([0.2, -0.2]) and nearest.tolist() == [0, 3]


def test_category_columns_found_by_name(tmp_path):
    from eclip.catalog import pick_category_columns
    from eclip.jobs.adult import AdultFilterConfig, text_signals

    schema = {
        "product": pl.String,
        "category": pl.String,
        "sub_category": pl.String,
        "category_id": pl.String,
        "Breadcrumbs": pl.String,
        "productType": pl.String,
        "rating": pl.Float64,
        "category_rank": pl.Int64,
    }
    assert pick_category_columns(schema) == ["category", "sub_category", "Breadcrumbs", "productType"]
    # a BigBasket-like dump: the title is "product", the brand and categories are read too
    cat = tmp_path / "bb.csv"
    pl.DataFrame(
        {
            "index": [1, 2],
            "product": ["Durex Extra Thin", "Basmati Rice"],
            "category": ["Beauty & Hygiene", "Foodgrains"],
            "sub_category": ["Sexual Wellness", "Rice"],
            "brand": ["Durex", "India Gate"],
            "sale_price": [300.0, 99.0],
        }
    ).write_csv(cat)
    sig = text_signals(cat, AdultFilterConfig(id_col="index"))
    assert sig == {
        "text_cols": ["product", "brand", "category", "sub_category"],
        "chosen": "by name",
        "title": ["product"],
        "brand": ["brand"],
        "category": ["category", "sub_category"],
    }
    assert text_signals(cat, AdultFilterConfig(id_col="index", text_cols=["product"])) == {
        "text_cols": ["product"],
        "chosen": "given",
    }
    emb = tmp_path / "emb"
    emb.mkdir()
    (emb / "manifest.json").write_text(json.dumps({"job": "embed", "settings": {"text_cols": ["title", "brand"]}}))
    assert text_signals(emb, AdultFilterConfig()) == {"text_cols": ["title", "brand"], "chosen": "embedded"}


def test_filter_adult_job_records_its_base_rate_and_columns(tmp_path, monkeypatch):
    """The whole job on a small made-up catalog with the fast static model: the manifest names
    the text columns, the estimated base rate and the threshold's source; the columns of
    flagged.parquet are as documented; the concept vectors are cached once per model."""
    from eclip.jobs.adult import AdultFilterConfig, filter_adult

    monkeypatch.setattr("eclip.jobs.adult.default_cache_dir", lambda: tmp_path / "cache")
    rng = np.random.default_rng(0)
    goods = [
        "Basmati Rice 5 kg",
        "Organic Green Tea 100 bags",
        "Men Blue Running Shoes",
        "Steel Water Bottle 1 L",
        "Kids Cotton T-Shirt",
        "Wooden Dining Chair",
    ]
    rows = [
        {
            "id": f"r{i}",
            "title": f"{goods[i % len(goods)]} pack {rng.integers(1, 9)}",
            "brand": "Acme",
            "sub_category": "Home",
        }
        for i in range(80)
    ]
    rows += [{"id": "a1", "title": "Durex Extra Thin Condoms 10", "brand": "Durex", "sub_category": "Sexual Wellness"}]
    cat = tmp_path / "catalog.csv"
    pl.DataFrame(rows).write_csv(cat)
    m = filter_adult(cat, tmp_path / "run", AdultFilterConfig(model="minilm-static"))
    assert m["text_signals"]["text_cols"] == ["title", "brand", "sub_category"] and m["text_signals"]["category"] == [
        "sub_category"
    ]
    # 81 rows: too few sure rows for the second pass, so the threshold is on the zero-shot posterior
    assert m["threshold"]["source"] == "base rate" and m["threshold"]["on"] == "zero-shot posterior"
    assert m["base_rate"]["second_pass"] is None
    assert 0.0 <= m["base_rate"]["estimated"] < 0.2 and m["base_rate"]["mixture"]["rows"] == 81
    iv = m["base_rate"]["interval"]
    assert iv["low"] <= m["base_rate"]["estimated"] <= iv["high"] and iv["level"] == 0.9
    assert "expected_recall" not in m["threshold"] and "expected_recall" not in m["base_rate"]["label_free_threshold"]
    assert m["concepts"]["vectors"]["source"] == "embedded" and m["concepts"]["vectors"]["runtime"] == "model2vec"
    flags = pl.read_parquet(tmp_path / "run" / "flagged.parquet")
    assert flags.columns == [
        "id",
        "adult_score",
        "adult_probability",
        "zero_shot_score",
        "flagged",
        "nearest_concept",
        "status",
    ]
    assert flags["adult_probability"].is_between(0, 1).all() and flags.height == 81
    threshold = m["threshold"]["value"]
    assert flags["flagged"].to_list() == [
        threshold is not None and s >= threshold for s in flags["adult_score"].to_list()
    ]
    assert flags["adult_score"].to_list() == flags["adult_probability"].to_list()  # what the threshold applies to
    assert len(list((tmp_path / "cache" / "concepts").glob("*.npy"))) == 1
    assert not list((tmp_path / "cache" / "concepts").glob("*.parts"))  # the resumable chunks are gone
    # a given threshold applies to the margin, and the mixture says what it expects of it
    m2 = filter_adult(
        tmp_path / "run" / "embeddings", tmp_path / "run2", AdultFilterConfig(model="minilm-static", threshold=-2.0)
    )
    assert (
        m2["summary"]["flagged"] == 81
        and m2["threshold"]["source"] == "given"
        and m2["threshold"]["on"] == "zero-shot margin"
        and m2["threshold"]["expected_precision"] < 0.5
    )
    t = m2["threshold"]
    assert t["recall_interval"] is None or t["recall_interval"][1] == 1.0  # everything flagged holds every adult row
    assert m2["concepts"]["vectors"]["source"] == "cache"  # embedded once per model and runtime


def test_filter_adult_scores_image_rows_through_the_fused_vectors(fashion_subset, tiny_clip_dir, tmp_path, monkeypatch):
    """A model with an image tower: rows are scored on their fused image + title vectors
    (the vectors classify uses) against concept vectors from the same model's text tower."""
    from eclip.jobs.adult import AdultFilterConfig, filter_adult

    monkeypatch.setattr("eclip.jobs.adult.default_cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(
        "eclip.classify.adult.general_concepts", lambda: ("Shirts & Tops", "Shoes", "Watches", "Handbags")
    )  # wiring, not quality
    cat = fashion_subset / "catalog.csv"
    few = tmp_path / "few.csv"
    pl.read_csv(cat, infer_schema=False).head(60).write_csv(few)
    cfg = AdultFilterConfig(model=str(tiny_clip_dir), image_col="image", image_root=fashion_subset, text_cols=["title"])
    m = filter_adult(few, tmp_path / "run", cfg)
    assert m["embeddings"]["vectors"] == "fused" and m["summary"]["scored"] == 60
    m_img = filter_adult(
        tmp_path / "run" / "embeddings", tmp_path / "img", AdultFilterConfig(model=str(tiny_clip_dir), vectors="image")
    )
    fused = pl.read_parquet(tmp_path / "run" / "flagged.parquet")["zero_shot_score"].to_numpy()
    image = pl.read_parquet(tmp_path / "img" / "flagged.parquet")["zero_shot_score"].to_numpy()
    assert m_img["embeddings"]["vectors"] == "image" and not np.allclose(fused, image)


def test_configs_check_their_own_values_for_any_caller():
    """Job configs refuse bad values in field terms when built, from Python as from the CLI."""
    from eclip.api import AdultFilterConfig, ClassifyConfig, DedupeConfig, EmbedConfig
    from eclip.checks import ConfigError

    with pytest.raises(ConfigError, match=r"DedupeConfig.k is 0; it must be at least 1\."):
        DedupeConfig(k=0)
    with pytest.raises(
        ConfigError, match=r"DedupeConfig.method is 'louvain'; choose one of auto, mutual, average, components\."
    ):
        DedupeConfig(method="louvain")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"DedupeConfig.signals holds 'audio'"):
        DedupeConfig(signals=("text", "audio"))
    with pytest.raises(ConfigError, match=r"AdultFilterConfig.target_precision is 1.5; it must be in \(0, 1\]\."):
        AdultFilterConfig(target_precision=1.5)
    with pytest.raises(ConfigError, match=r"ClassifyConfig.hierarchy is 'tree'"):
        ClassifyConfig(hierarchy="tree")  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"EmbedConfig.runtime is 'tensorrt'; choose one of auto, torch, onnx, onnx-int8\."
    ):
        EmbedConfig(runtime="tensorrt")  # type: ignore[arg-type]
    assert DedupeConfig(k=5, method="average", threshold=0.8).k == 5  # good values pass


def test_jobs_check_a_config_changed_after_it_was_made(tmp_path):
    """A field set after construction is not checked by the dataclass; each job checks its
    config again (``eclip.checks.recheck``) before any work."""
    from eclip.api import AdultFilterConfig, DedupeConfig, dedupe, filter_adult
    from eclip.checks import ConfigError

    cfg = DedupeConfig()
    cfg.method = "louvain"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"DedupeConfig.method is 'louvain'"):
        dedupe(tmp_path / "missing.csv", tmp_path / "run", cfg)
    adult = AdultFilterConfig()
    adult.holdout = 1.5
    with pytest.raises(ConfigError, match=r"AdultFilterConfig.holdout is 1.5"):
        filter_adult(tmp_path / "missing.csv", tmp_path / "adult", adult)
    assert not (tmp_path / "run").exists() and not (tmp_path / "adult").exists()


# --- intervals: what a label-free threshold may promise -------------------------------------


def test_base_rate_interval_covers_a_known_rate():
    from eclip.classify import base_rate_interval

    scores, y = synthetic_scores(20_000, 0.01, seed=5)
    iv = base_rate_interval(scores, draws=40)
    assert iv.low <= y.mean() <= iv.high and iv.low <= iv.estimate <= iv.high
    assert len(iv.resamples) == 40 and iv.widest.mean() >= iv.free.mean()  # the wider positive counts more
    with pytest.raises(EclipError, match="level"):
        base_rate_interval(scores, level=1.0)


def test_recall_interval_covers_positives_the_scores_do_not_show():
    """A quarter of the positives score like ordinary rows: the mixture's base rate misses them
    and a recall from its posteriors alone would read 1.0; the interval reaches the true 0.75."""
    from eclip.classify import base_rate_interval, flagged_interval

    rng = np.random.default_rng(3)
    null, _ = synthetic_scores(20_000, 0.0, seed=4)
    scores = np.r_[null, rng.normal(0.15, 0.03, 75), rng.normal(-0.2, 0.08, 25)]
    y = np.r_[np.zeros(len(null), bool), np.ones(100, bool)]
    mixture = fit_score_mixture(scores)
    point = threshold_for_expected_precision(scores, mixture.posterior(scores), 0.9, floor=0.0)
    flagged = scores >= point.threshold
    recall = (flagged & y).sum() / y.sum()
    assert mixture.base_rate < 0.8 * y.mean()  # the hidden quarter is not counted
    assert point.expected_recall > 0.95 and recall < 0.8  # the old promise
    fi = flagged_interval(base_rate_interval(scores, draws=60), scores[flagged], len(scores))
    assert fi.recall is not None and fi.recall[0] <= recall <= fi.recall[1]
    assert fi.precision is not None and fi.precision[0] <= (flagged & y).sum() / flagged.sum()
    assert fi.positives[0] <= y.sum() <= fi.positives[1]


def test_flagged_interval_by_hand():
    """Rows sure to be positive: every resample counts them all, so precision is 1 and recall
    runs from the flagged count over the most positives to it over the fewest."""
    from eclip.classify.base_rate import ScoreMixture
    from eclip.classify.intervals import BaseRateInterval, flagged_interval, lift_odds

    sure = ScoreMixture(0.01, (0.5, 0.01), (-0.5,), (0.01,), (1.0,), 0.0, 1000, 1, True)
    iv = BaseRateInterval(0.01, 0.008, 0.02, 0.9, 30, 0, np.full(30, 0.01), np.full(30, 0.02), (sure,) * 30)
    fi = flagged_interval(iv, np.full(8, 0.5), 1000)
    assert fi.precision == (1.0, 1.0) and fi.positives == (8.0, 20.0)
    assert fi.recall == (pytest.approx(8 / 20), 1.0)
    lifted = flagged_interval(iv, np.full(8, 0.5), 1000, odds_ratio=np.ones(8), found_beyond=5.0)
    assert lifted.positives == (13.0, 25.0) and lifted.recall == (pytest.approx(8 / 25), pytest.approx(8 / 13))
    none = flagged_interval(iv, np.zeros(0), 1000)
    assert none.precision is None and none.recall == (0.0, 0.0)
    empty = BaseRateInterval(0.0, 0.0, 0.0005, 0.9, 30, 0, np.zeros(30), np.zeros(30), (sure,) * 30)
    assert flagged_interval(empty, np.zeros(0), 1000).recall is None  # under one adult row expected
    assert lift_odds(np.array([0.5, 1.0, 0.0]), np.array([3.0, 0.1, 5.0])).tolist() == [0.75, 1.0, 0.0]
    with pytest.raises(EclipError, match="odds ratios"):
        flagged_interval(iv, np.full(8, 0.5), 1000, odds_ratio=np.ones(3))


# --- the second pass: what the catalog's sure rows teach --------------------------------------


def _clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in 3 tight clusters (32 dims): 40 rows of an adult product family, 2,000
    ordinary rows in two other families; posteriors say 35 of the 40 are sure, 5 are hidden."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 32))
    sizes = (40, 1000, 1000)
    x = np.vstack([c + 0.35 * rng.normal(size=(k, 32)) for c, k in zip(centres, sizes)]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    posterior = np.r_[np.full(35, 0.999), np.full(5, 0.02), np.full(2000, 0.001)]
    return x, posterior


def test_second_pass_raises_the_hidden_members_of_a_sure_family():
    from eclip.classify import catalog_evidence
    from eclip.classify.second_pass import MAX_RATIO, MIN_RATIO

    x, posterior = _clusters()
    sp = catalog_evidence(x, posterior)
    assert sp is not None and sp.seeds == 35 and sp.negatives == 2000
    hidden, ordinary = sp.ratio[35:40], sp.ratio[40:]
    assert hidden.min() > 10 and np.median(ordinary) <= 1.0
    assert (sp.ratio >= MIN_RATIO**2).all() and (sp.ratio <= MAX_RATIO**2).all()
    assert set(sp.as_dict()["views"]) == {"neighbours", "probe"}
    # fewer sure rows than the pass learns from: nothing to learn, nothing changed
    few = posterior.copy()
    few[3:35] = 0.5
    assert catalog_evidence(x, few) is None


def test_seed_similarity_leaves_each_seed_out_and_ratios_never_fall():
    from eclip.classify.second_pass import likelihood_ratio, seed_similarity

    x = np.eye(4, dtype=np.float32)
    x[3] = np.array([0.6, 0.8, 0, 0], dtype=np.float32)
    sim = seed_similarity(x, np.array([0, 1]), top=2)
    # with 2 seeds each row averages its 1 nearest (a seed sees only the other one)
    assert sim.tolist() == pytest.approx([0.0, 0.0, 0.0, 0.8])
    assert seed_similarity(x, np.array([0, 1, 2]), top=2).tolist() == pytest.approx([0.0, 0.0, 0.0, 0.7])
    with pytest.raises(ValueError, match="2 seeds"):
        seed_similarity(x, np.array([0]))
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(0.8, 0.05, 50), rng.normal(0.3, 0.1, 2000)]
    ratio = likelihood_ratio(values, np.arange(50), np.arange(50, 2050))
    order = np.argsort(values)
    assert np.all(np.diff(ratio[order]) >= -1e-12) and ratio[:50].min() > 10 and ratio[order[0]] == 0.1


# --- concept vectors: shipped, cached, embedded; never mixed ----------------------------------


def _fake_encoder(calls: list[int], fail_after: int | None = None):
    import zlib

    class Fake:
        dim = 8

        def encode(self, texts):
            if fail_after is not None and len(calls) >= fail_after:
                raise KeyboardInterrupt  # the run is killed here
            calls.append(len(texts))
            v = np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=8) for t in texts])
            return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

        def describe(self):
            return {"kind": "fake", "name": "fake", "dim": 8, "weights": "0"}

    return Fake()


def test_concept_keys_never_mix_models_runtimes_or_concepts():
    from eclip.classify.concepts import concepts_key, shipped_vectors

    model = {"kind": "sentence-transformers", "name": "m", "dim": 384, "weights": "abc"}
    base = concepts_key(model, "onnx", ("{}",), ["a", "b"])
    assert base == concepts_key(dict(model), "onnx", ["{}"], ("a", "b"))
    others = {
        concepts_key(model, "torch", ("{}",), ["a", "b"]),
        concepts_key(model, "onnx-int8", ("{}",), ["a", "b"]),
        concepts_key({**model, "weights": "abd"}, "onnx", ("{}",), ["a", "b"]),
        concepts_key(model, "onnx", ("{}", "buy {}"), ["a", "b"]),
        concepts_key(model, "onnx", ("{}",), ["b", "a"]),
    }
    assert base not in others and len(others) == 5
    assert shipped_vectors(base, 2) is None


def test_shipped_concept_vectors_are_current_for_the_bundled_model():
    """The shipped float16 vectors were made under the key this package computes for the
    bundled MiniLM through ONNX Runtime; a changed concept, template or weight file fails here
    (run ``ship_bundled`` again)."""
    from eclip.classify import DEFAULT_TEMPLATES, concept_names
    from eclip.classify.concepts import SHIPPED, SHIPPED_META, concepts_key, shipped_vectors
    from eclip.encoders.sentence import weights_digest
    from eclip.encoders.spec import DEFAULT_TEXT_MODEL, bundled_minilm_path

    model = {
        "kind": "sentence-transformers",
        "name": DEFAULT_TEXT_MODEL,
        "dim": 384,
        "weights": weights_digest(bundled_minilm_path()),
    }
    meta = json.loads(SHIPPED_META.read_text())
    key = concepts_key(model, "onnx", DEFAULT_TEMPLATES)
    assert meta["key"] == key and meta["model"] == model and meta["runtime"] == "onnx"
    raw = np.load(SHIPPED, allow_pickle=False)
    assert raw.dtype == np.float16 and raw.shape == (len(concept_names()), 384)
    v = shipped_vectors(key, len(concept_names()))
    assert v is not None and v.dtype == np.float32 and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert shipped_vectors(concepts_key(model, "torch", DEFAULT_TEMPLATES), len(concept_names())) is None


def test_concept_vectors_are_cached_and_a_killed_run_resumes(tmp_path, monkeypatch):
    from eclip.classify import adult
    from eclip.classify.concepts import embed_concepts, load_concept_vectors

    monkeypatch.setattr(adult, "general_concepts", lambda: tuple(f"Ordinary {i}" for i in range(20)))
    names = adult.concept_names()  # 16 adult + 20 ordinary
    calls: list[int] = []
    parts = tmp_path / "parts"
    with pytest.raises(KeyboardInterrupt):
        embed_concepts(_fake_encoder(calls, fail_after=2).encode, names, ("{}", "buy {}"), parts, chunk=8)
    assert calls == [16, 16] and len(list(parts.glob("*.npy"))) == 2  # two chunks of 8 names x 2 templates kept
    resumed: list[int] = []
    v = embed_concepts(_fake_encoder(resumed).encode, names, ("{}", "buy {}"), parts, chunk=8)
    assert resumed == [16, 16, 8]  # only the three chunks the kill left
    whole = embed_concepts(_fake_encoder([]).encode, names, ("{}", "buy {}"), chunk=8)
    assert np.allclose(v, whole)

    model = {"kind": "fake", "name": "fake", "dim": 8, "weights": "0"}
    loads: list[int] = []

    def loader():
        loads.append(1)
        return _fake_encoder([])

    v1, info1 = load_concept_vectors(model, "torch", tmp_path / "cache", loader)
    v2, info2 = load_concept_vectors(model, "torch", tmp_path / "cache", loader)
    assert (info1["source"], info2["source"]) == ("embedded", "cache") and loads == [1] and np.array_equal(v1, v2)
    assert v1.shape == (len(names), 8)
    _, info3 = load_concept_vectors(model, "onnx", tmp_path / "cache", loader)
    assert info3["source"] == "embedded" and info3["key"] != info1["key"] and loads == [1, 1]  # another runtime


def test_the_bundled_model_reads_its_shipped_concepts_without_embedding(tmp_path):
    from eclip.classify import concept_names
    from eclip.classify.concepts import SHIPPED_META, load_concept_vectors

    meta = json.loads(SHIPPED_META.read_text())

    def never():
        raise AssertionError("the shipped vectors fit: nothing is embedded")

    v, info = load_concept_vectors(meta["model"], "onnx", tmp_path, never, tuple(meta["templates"]))
    assert info["source"] == "shipped" and v.shape == (len(concept_names()), 384)
    assert not (tmp_path / "concepts").exists()


def test_filter_adult_summary_fits_the_80_column_command_list():
    from typer.testing import CliRunner

    from eclip.cli import app

    res = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"}, terminal_width=80)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("│ filter-adult"))
    assert lines[i + 1].split()[1] == "report", lines[i : i + 3]  # the next line is the next command


@pytest.mark.slow  # loads MiniLM through ONNX Runtime
def test_shipped_concepts_equal_those_embedded_now(tmp_path):
    """The shipped float16 vectors are the ones ONNX Runtime gives today, for a sample of
    concepts (float16 keeps cosines to 1e-3)."""
    from eclip.classify import DEFAULT_TEMPLATES, concept_names, label_vectors
    from eclip.classify.concepts import SHIPPED_META, concepts_key, shipped_vectors
    from eclip.encoders import load_encoder

    encoder = load_encoder("minilm", device="cpu", runtime="onnx", cache_dir=tmp_path)
    key = concepts_key(encoder.describe(), encoder.runtime, DEFAULT_TEMPLATES)
    assert key == json.loads(SHIPPED_META.read_text())["key"]
    names = concept_names()
    shipped = shipped_vectors(key, len(names))
    assert shipped is not None
    pick = np.random.default_rng(0).choice(len(names), 40, replace=False)
    fresh = label_vectors(encoder.encode, [names[i] for i in pick], DEFAULT_TEMPLATES)
    assert np.einsum("ij,ij->i", fresh, shipped[pick]).min() > 0.999
