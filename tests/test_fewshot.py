"""The few-shot adult probe: the exemplar margin, leave-one-out, the stacked fit, its file,
the EM prior adjustment, and `filter-adult --fit-probe` / `--probe` end to end."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from scipy.special import expit

from eclip.classify import (
    AdultProbe,
    LinearProbe,
    adjust_to_base_rate,
    exemplar_margin,
    fit_adult_probe,
    prior_log_odds,
)
from eclip.errors import EclipError, RunDirError


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_exemplar_margin_by_hand():
    """Top-2 mean cosine to adult exemplars minus top-2 mean cosine to other exemplars."""
    ex = unit([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0.6, 0.8], [0, 0, 1]])
    positive = np.array([True, True, False, False, False])
    x = unit([[1, 0, 0]])
    cos = (x @ ex.T)[0]
    want = cos[:2].mean() - np.sort(cos[2:])[-2:].mean()
    assert exemplar_margin(x, ex, positive)[0] == pytest.approx(want, abs=1e-6)
    assert exemplar_margin(x, ex, positive, top=1)[0] == pytest.approx(1.0 - max(cos[2:]), abs=1e-6)


def test_exemplar_margin_leaves_each_labelled_row_out():
    """With ``exclude``, a labelled row is scored as if it were not an exemplar: the same as
    computing its margin against the other exemplars only."""
    rng = np.random.default_rng(0)
    ex = unit(rng.normal(size=(12, 8)))
    positive = np.arange(12) < 5
    loo = exemplar_margin(ex, ex, positive, exclude=np.arange(12))
    for i in range(12):
        rest = np.arange(12) != i
        assert loo[i] == pytest.approx(exemplar_margin(ex[i : i + 1], ex[rest], positive[rest])[0], abs=1e-6)
    # without exclusion a labelled row sees itself at cosine 1
    assert (exemplar_margin(ex, ex, positive)[positive] > loo[positive]).all()


def test_exemplar_margin_refuses_a_missing_class():
    ex = unit(np.eye(3))
    with pytest.raises(EclipError, match=r"1 adult and 2 other"):
        exemplar_margin(ex, ex, np.array([True, False, False]), exclude=np.arange(3))
    with pytest.raises(EclipError, match=r"0 adult"):
        exemplar_margin(ex, ex, np.zeros(3, bool))


def synthetic_catalog(seed: int = 0):
    """Two adult families and an ordinary bulk in 16-d; the zero-shot prior knows family A
    (log-odds +4) but not family B (log-odds -4, like the bulk)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(6, 16)))
    fam = rng.integers(0, 6, 600)  # 0: family A, 1: family B, 2-5: ordinary
    x = unit(centres[fam] + 0.25 * rng.normal(size=(600, 16)))
    y = fam < 2
    prior = np.where(fam == 0, 4.0, -4.0).astype(np.float32) + rng.normal(0, 0.5, 600).astype(np.float32)
    return x, y, prior, fam


def test_stacked_probe_learns_what_the_prior_misses():
    """Labelled rows of family B teach the probe what the zero-shot prior cannot: unlabelled
    family-B rows score high; the exemplar weight is positive; out-of-fold scores separate."""
    x, y, prior, fam = synthetic_catalog()
    labelled = np.r_[np.flatnonzero(fam == 1)[:5], np.flatnonzero(fam == 0)[:5], np.flatnonzero(~y)[:60]]
    probe, oof, cv = fit_adult_probe(x[labelled], y[labelled], prior[labelled])
    assert len(oof) == len(labelled) and cv["positives"] == 10 and cv["rows"] == 70
    assert probe.coef[1] > 0 and probe.coef[0] > 0
    assert cv["average_precision"] > 0.9
    rest = np.setdiff1d(np.arange(len(y)), labelled)
    p = probe.proba(x[rest], prior[rest])
    b = fam[rest] == 1
    assert np.median(p[b]) > 0.5 and np.median(p[~y[rest]]) < 0.2
    assert (p[b][:, None] > p[~y[rest]][None, :]).mean() > 0.95  # AUC of family B against the bulk
    # the prior alone ranks family B with the bulk
    assert np.median(expit(prior[rest][b])) < 0.1


def test_fit_refuses_fewer_than_two_of_a_class():
    x, y, prior, _ = synthetic_catalog()
    rows = np.r_[np.flatnonzero(y)[:1], np.flatnonzero(~y)[:20]]
    with pytest.raises(EclipError, match=r"at least 2 labelled adult rows.*1 adult and 20 other"):
        fit_adult_probe(x[rows], y[rows], prior[rows])


def test_probe_file_round_trip_and_refusals(tmp_path):
    x, y, prior, fam = synthetic_catalog()
    rows = np.r_[np.flatnonzero(y)[:8], np.flatnonzero(~y)[:40]]
    probe, _, _ = fit_adult_probe(x[rows], y[rows], prior[rows])
    probe.meta.update(threshold=0.7, task="adult")
    path = probe.save(tmp_path / "adult_probe.npz")
    back = AdultProbe.load(path)
    assert back.meta["threshold"] == 0.7 and back.positive.dtype == bool
    assert np.allclose(back.proba(x, prior), probe.proba(x, prior), atol=1e-6)
    # a linear probe from before the stacked probe is refused in one line
    old = LinearProbe(["adult", "other"], np.zeros((2, 16), np.float32), np.zeros(2, np.float32), {"task": "adult"})
    old.save(tmp_path / "old.npz")
    with pytest.raises(RunDirError, match=r"not a current adult probe .*fit it again"):
        AdultProbe.load(tmp_path / "old.npz")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(RunDirError, match=r"not an eclip probe file \(a single array"):
        AdultProbe.load(tmp_path / "plain.npy")
    with pytest.raises(RunDirError, match=r"no such probe file"):
        AdultProbe.load(tmp_path / "missing.npz")


def test_prior_log_odds_are_finite():
    lo = prior_log_odds(np.array([0.0, 0.5, 1.0]))
    assert np.isfinite(lo).all() and lo[1] == 0 and lo[0] == pytest.approx(-lo[2]) and lo[2] > 9


@pytest.mark.parametrize("rate", [0.005, 0.05, 0.3])
def test_prior_adjustment_recovers_a_known_base_rate(rate):
    """Saerens et al.'s EM on probabilities calibrated at a 50 % prior: scores from two unit
    Gaussians at -1 and +1, whose balanced posterior is sigmoid(2s)."""
    rng = np.random.default_rng(1)
    n = 40_000
    y = rng.random(n) < rate
    s = np.where(y, rng.normal(1.0, 1.0, n), rng.normal(-1.0, 1.0, n))
    est, post = adjust_to_base_rate(expit(2 * s))
    assert est == pytest.approx(rate, rel=0.2, abs=0.003)
    assert post.mean() == pytest.approx(est, abs=1e-5) and np.all(np.diff(post[np.argsort(s)]) >= -1e-12)
    with pytest.raises(EclipError, match="training prior"):
        adjust_to_base_rate(expit(s), train_prior=1.0)


def test_filter_adult_fits_and_reuses_a_probe(tmp_path, monkeypatch):
    """`--fit-probe` on a made-up catalog with the static model: the manifest names the
    probe's features and exemplars and the base rate its scores imply; the labelled adult rows'
    relatives are flagged; `--probe` on the same rows gives the same scores and threshold, and
    on a dump without adult rows flags none; a probe for other vectors is refused in one line."""
    from eclip.jobs.adult import AdultFilterConfig, filter_adult

    monkeypatch.setattr("eclip.jobs.adult.default_cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(
        "eclip.classify.adult.general_concepts", lambda: ("Rice", "Tea", "Shoes", "Bottles", "Chairs", "Shirts")
    )  # wiring, not quality
    rng = np.random.default_rng(0)
    goods = ["Basmati Rice 5 kg", "Green Tea 100 bags", "Running Shoes", "Water Bottle 1 L", "Dining Chair"]
    rows = [{"id": f"r{i}", "title": f"{goods[i % 5]} pack {rng.integers(1, 9)}"} for i in range(100)]
    rows += [{"id": f"a{i}", "title": f"Haslab Sexon Vigour Drops {i} ml"} for i in range(12)]
    cat = tmp_path / "catalog.csv"
    pl.DataFrame(rows).write_csv(cat)
    labels = tmp_path / "labels.csv"
    pl.DataFrame(
        {"id": [f"a{i}" for i in range(4)] + [f"r{i}" for i in range(20)], "adult": [True] * 4 + [False] * 20}
    ).write_csv(labels)
    cfg = AdultFilterConfig(model="minilm-static", calibrate=labels, label_col="adult", fit_probe=True)
    m = filter_adult(cat, tmp_path / "fit", cfg)
    assert m["threshold"]["source"] == "calibrated" and m["threshold"]["on"] == "probe probability"
    assert m["probe"]["exemplars"] == {"adult": 4, "other": 20} and len(m["probe"]["features"]) == 2
    assert 0.0 < m["base_rate"]["with_probe"]["estimated"] < 0.5
    blended = m["calibration"]["blended"]
    assert blended["met_target"] and blended["threshold"] == pytest.approx(m["threshold"]["value"], abs=1e-5)
    flags = pl.read_parquet(tmp_path / "fit" / "flagged.parquet")
    unlabelled_adult = flags.filter(pl.col("id").is_in([f"a{i}" for i in range(4, 12)]))
    assert unlabelled_adult["flagged"].all()
    assert flags.filter(pl.col("id").str.starts_with("r"))["flagged"].sum() == 0
    assert flags["adult_probability"].is_between(0, 1).all()
    m2 = filter_adult(
        tmp_path / "fit" / "embeddings",
        tmp_path / "reuse",
        AdultFilterConfig(model="minilm-static", probe=tmp_path / "fit" / "adult_probe.npz"),
    )
    assert m2["threshold"]["source"] == "probe" and m2["threshold"]["value"] == pytest.approx(
        m["threshold"]["value"], abs=1e-6
    )
    again = pl.read_parquet(tmp_path / "reuse" / "flagged.parquet")
    assert np.allclose(again["adult_score"].to_numpy(), flags["adult_score"].to_numpy(), atol=1e-6)
    assert m2["probe"]["fitted_threshold"] == pytest.approx(m["threshold"]["value"], abs=1e-6)
    # on a dump without adult rows, the reused probe's threshold is chosen again at that
    # dump's base rate, and it flags none
    plain = tmp_path / "plain.csv"
    pl.DataFrame(
        [{"id": f"p{i}", "title": f"{goods[i % 5]} family pack {rng.integers(1, 99)}"} for i in range(300)]
    ).write_csv(plain)
    m3 = filter_adult(
        plain, tmp_path / "plain", AdultFilterConfig(model="minilm-static", probe=tmp_path / "fit" / "adult_probe.npz")
    )
    assert m3["summary"]["flagged"] == 0 and m3["base_rate"]["with_probe"]["estimated"] < 0.01
    assert m3["threshold"]["value"] is None and m3["threshold"]["source"] == "probe"  # no threshold reaches 0.9 here
    probe = AdultProbe.load(tmp_path / "fit" / "adult_probe.npz")
    assert probe.oof.shape == (24,) and probe.positive.sum() == 4
    probe.meta["vectors"] = "image"
    probe.save(tmp_path / "image_probe.npz")
    with pytest.raises(RunDirError, match=r"adult probe for image vectors of .*not text vectors"):
        filter_adult(
            tmp_path / "fit" / "embeddings",
            tmp_path / "bad",
            AdultFilterConfig(model="minilm-static", probe=tmp_path / "image_probe.npz"),
        )


def test_blended_precision_threshold_by_hand():
    """Each candidate threshold's precision is the mean of the labelled rows' measured
    precision and the catalog's expected precision (mean posterior above it)."""
    from eclip.classify import threshold_for_blended_precision

    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    posterior = np.array([1.0, 1.0, 0.8, 0.4, 0.1])
    lab_scores = np.array([0.95, 0.75, 0.65, 0.55])
    lab_y = np.array([True, True, False, True])
    # at 0.9: catalog 1.0, labelled 1/1 -> 1.0; at 0.8: 1.0 and 1/1; at 0.7: 0.933 and 2/2 -> 0.967;
    # at 0.6: 0.8 and 2/3 -> 0.733; at 0.5: 0.66 and 3/4 -> 0.705
    point = threshold_for_blended_precision(scores, posterior, lab_scores, lab_y, 0.9)
    assert point.threshold == 0.7 and point.flagged == 3 and point.met_target
    assert point.expected_precision == pytest.approx((2.8 / 3 + 1.0) / 2)
    assert point.expected_recall == pytest.approx(2.8 / 3.3)
    none = threshold_for_blended_precision(scores, np.zeros(5), lab_scores, ~lab_y, 0.9)
    assert not none.met_target and none.flagged == 0 and none.threshold == np.inf


@pytest.mark.slow  # MiniLM on all 2,154 netmeds rows and 1,200 clean rows, and its concept vectors
def test_cli_probe_with_20_labelled_adult_rows_on_netmeds(shared_data, tmp_path):
    """The issue's few-shot figure through the CLI: 20 labelled adult rows and 200 others from
    one half of netmeds (title + manufacturer; its category is the gold); on the other half
    the probe's own threshold is precise (>= 0.9) with recall near 0.8 (0.81 measured), above
    what no labels reach there. The saved probe, reused on fashion and grocery titles, chooses
    its threshold again at their base rate and flags close to none."""
    from typer.testing import CliRunner

    from eclip.cli import app

    runner = CliRunner()
    nm = pl.read_csv(shared_data / "netmeds" / "products.csv", infer_schema=False).with_row_index("id", 1)
    nm = nm.with_columns(pl.col("id").cast(pl.String))
    y = (nm["category"] == "Sexual Wellness").to_numpy()
    rng = np.random.default_rng(0)
    in_a = np.zeros(nm.height, dtype=bool)
    in_a[rng.permutation(nm.height)[: nm.height // 2]] = True
    pos = rng.choice(np.flatnonzero(in_a & y), 20, replace=False)
    neg = rng.choice(np.flatnonzero(in_a & ~y), 200, replace=False)
    cat, labels, held = tmp_path / "netmeds.csv", tmp_path / "labels.csv", tmp_path / "heldout.csv"
    nm.select("id", "title", "manufacturer").write_csv(cat)
    pl.DataFrame({"id": nm["id"].to_numpy()[np.r_[pos, neg]], "adult": y[np.r_[pos, neg]]}).write_csv(labels)
    nm.filter(pl.Series(~in_a)).select("id", "category").write_csv(held)
    fit = [
        "filter-adult",
        str(cat),
        "--calibrate",
        str(labels),
        "--label-col",
        "adult",
        "--fit-probe",
        "--out",
        str(tmp_path / "probe"),
    ]
    r = runner.invoke(app, fit)
    assert r.exit_code == 0, r.output
    assert "by the probe" in r.output and "exemplars" in r.output
    m = json.loads((tmp_path / "probe" / "manifest.json").read_text())
    assert 0.07 < m["base_rate"]["with_probe"]["estimated"] < 0.12  # true 0.093
    flags = pl.read_parquet(tmp_path / "probe" / "flagged.parquet").join(pl.read_csv(held, infer_schema=False), on="id")
    assert flags.height == nm.height - nm.height // 2
    f = flags["flagged"].to_numpy()
    yb = (flags["category"] == "Sexual Wellness").to_numpy()
    precision, recall = (f & yb).sum() / f.sum(), (f & yb).sum() / yb.sum()
    assert precision >= 0.9 and recall >= 0.75, (precision, recall)
    zero_shot = flags["zero_shot_score"].to_numpy()  # the best any margin threshold does at P 0.9
    order = np.argsort(-zero_shot)
    tp = np.cumsum(yb[order])
    best = (tp / yb.sum())[(tp / np.arange(1, len(tp) + 1)) >= 0.9].max()
    assert recall > best
    clean = tmp_path / "clean.csv"
    pl.concat(
        [
            pl.read_csv(shared_data / "fashion" / "catalog.csv", infer_schema=False)
            .select("title")
            .sample(900, seed=0),
            pl.read_csv(shared_data / "grocery" / "catalog.csv", infer_schema=False)
            .select("title")
            .sample(300, seed=0),
        ]
    ).write_csv(clean)
    r = runner.invoke(
        app,
        [
            "filter-adult",
            str(clean),
            "--id-col",
            "@row",
            "--probe",
            str(tmp_path / "probe" / "adult_probe.npz"),
            "--out",
            str(tmp_path / "clean"),
        ],
    )
    assert r.exit_code == 0, r.output
    m2 = json.loads((tmp_path / "clean" / "manifest.json").read_text())
    assert m2["threshold"]["source"] == "probe" and m2["summary"]["flagged"] <= 2
