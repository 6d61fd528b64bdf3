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
    assert m["threshold"]["source"] == "base rate" and m["threshold"]["on"] == "zero-shot margin"
    assert 0.0 <= m["base_rate"]["estimated"] < 0.2 and m["base_rate"]["mixture"]["rows"] == 81
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
    assert len(list((tmp_path / "cache" / "concepts").glob("*.npy"))) == 1
    # a given threshold applies to the margin, and the mixture says what it expects of it
    m2 = filter_adult(
        tmp_path / "run" / "embeddings", tmp_path / "run2", AdultFilterConfig(model="minilm-static", threshold=-2.0)
    )
    assert (
        m2["summary"]["flagged"] == 81
        and m2["threshold"]["source"] == "given"
        and m2["threshold"]["expected_precision"] < 0.5
    )


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
