"""Groups of any size: average linkage, the per-catalog mixture, auto's choice, and the
Fellegi-Sunter EM on synthetic comparison vectors."""

import numpy as np
import polars as pl
import pytest

from eclip.matcher import group
from eclip.matcher.comparisons import Comparison
from eclip.matcher.fellegi_sunter import fit_fellegi_sunter
from eclip.matcher.frames import groups_frame
from eclip.matcher.grouping import choose_method
from eclip.matcher.linkage import average_linkage
from eclip.matcher.mixture import fit_score_mixture, learn_settings
from eclip.matcher.pair_scoring import score_before_penalties
from eclip.matcher.signals import ModalityThresholds, ScoreWeights, conflict_penalty


def _clique(rows, score):
    a, b = np.triu_indices(len(rows), 1)
    return np.array(rows)[a], np.array(rows)[b], np.full(len(a), score)


def test_average_linkage_keeps_two_products_apart_where_components_chain():
    # two products of 4 offers each, every pair inside a product scored 0.9; one look-alike
    # pair (3, 4) bridges them at 0.8: components chain all 8 rows, average linkage does not
    a1, b1, s1 = _clique([0, 1, 2, 3], 0.9)
    a2, b2, s2 = _clique([4, 5, 6, 7], 0.9)
    a = np.concatenate([a1, a2, [3]])
    b = np.concatenate([b1, b2, [4]])
    s = np.concatenate([s1, s2, [0.8]])
    comp = group(8, a, b, s, 0.5, "components").labels
    assert len(set(comp.tolist())) == 1
    avg = average_linkage(8, a, b, s, 0.5)
    assert avg.tolist() == [0, 0, 0, 0, 4, 4, 4, 4]
    g = group(8, a, b, s, 0.5, "average")
    assert g.labels.tolist() == avg.tolist()
    assert not g.accepted[-1] and g.accepted[:-1].all()  # the bridge is no edge of a group
    assert g.sizes.tolist() == [4] * 8


def test_average_linkage_grows_groups_past_two_where_mutual_stops():
    a, b, s = _clique([0, 1, 2, 3, 4], 0.8)
    assert len(set(group(5, a, b, s, 0.5, "mutual").labels.tolist())) == 4  # one pair + 3 singletons
    assert set(average_linkage(5, a, b, s, 0.5).tolist()) == {0}


def test_average_linkage_counts_missing_pairs_as_no_evidence():
    # a path 0-1-2-3 of strong pairs: the end rows never met, so the four do not form one group
    a, b, s = np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([0.9, 0.9, 0.9])
    labels = average_linkage(4, a, b, s, 0.6)
    assert len(set(labels.tolist())) == 2
    assert labels.tolist() in ([0, 0, 2, 2], [0, 1, 1, 3])


@pytest.mark.parametrize("dense_max, pack", [(2000, 256), (6, 4), (2000, 1)])
def test_block_linkage_makes_the_heaps_groups(dense_max, pack, monkeypatch):
    """Blocks (dense UPGMA, packed or alone, or the heap on a large block) give the groups the
    heap makes over every pair, on random graphs without exact ties (repeated pairs, NaN and
    -inf scores included)."""
    from eclip.matcher import linkage

    monkeypatch.setattr(linkage, "DENSE_MAX", dense_max)
    monkeypatch.setattr(linkage, "PACK", pack)
    rng = np.random.default_rng(0)
    for _ in range(150):
        n, p = int(rng.integers(2, 50)), int(rng.integers(1, 150))
        a, b = rng.integers(0, n, p), rng.integers(0, n, p)
        s = rng.random(p).astype(np.float32) * 1.3
        s[rng.random(p) < 0.05] = np.nan
        s[rng.random(p) < 0.02] = -np.inf
        t = float(rng.choice([0.3, 0.5, 0.8]))
        assert average_linkage(n, a, b, s, t).tolist() == linkage.heap_average_linkage(n, a, b, s, t).tolist()


def test_average_linkage_respects_cannot_link():
    a, b, s = _clique([0, 1, 2], 0.9)
    labels = average_linkage(3, a, b, s, 0.5, cannot={(0, 2)})
    assert labels[0] != labels[2]


def test_groups_frame_holds_every_row_once_for_every_method():
    rng = np.random.default_rng(0)
    n = 50
    a = rng.integers(0, n, 200)
    b = rng.integers(0, n, 200)
    keep = a < b
    a, b = a[keep], b[keep]
    s = rng.random(len(a)).astype(np.float32)
    ids = [f"r{i}" for i in range(n)]
    for method in ("mutual", "average", "components", "auto"):
        frame = groups_frame(ids, group(n, a, b, s, 0.5, method), np.ones(n, bool))
        assert frame["id"].to_list() == ids
        assert frame["id"].n_unique() == n
        sizes = frame.group_by("group_id").agg(pl.len().alias("k"), pl.col("group_size").first())
        assert (sizes["k"] == sizes["group_size"]).all()


def test_mixture_learns_a_threshold_between_two_populations():
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.normal(0.3, 0.08, 4000), rng.normal(0.85, 0.06, 1000)])
    mix = fit_score_mixture(scores)
    assert mix is not None
    assert 0.45 < mix.threshold < 0.7
    assert mix.weights[1] == pytest.approx(0.2, abs=0.03)
    p = mix.probability(np.array([0.2, mix.threshold, 0.95, 5.0, np.nan]))
    assert p[0] < 0.01 and p[1] >= 0.5 and p[2] > 0.99 and p[3] >= 0.5 and p[4] == 0.0
    shifted = fit_score_mixture(scores + 0.2)  # the same catalog scored on another scale
    assert shifted.threshold == pytest.approx(mix.threshold + 0.2, abs=0.02)


def test_mixture_needs_data():
    assert fit_score_mixture(np.array([0.5] * 20)) is None
    assert fit_score_mixture(np.array([0.1, 0.9])) is None
    s = learn_settings(3, np.array([0]), np.array([1]), np.array([0.9], np.float32), "auto", None, 0.6)
    assert (s.method, s.on, s.threshold) == ("mutual", "score", 0.6)


def test_given_threshold_overrides_the_learned_one():
    rng = np.random.default_rng(2)
    score = np.concatenate([rng.normal(0.3, 0.1, 300), rng.normal(0.9, 0.05, 100)]).astype(np.float32)
    a = np.arange(400)
    b = a + 1
    learned = learn_settings(401, a, b, score, "mutual", None, 0.6)
    assert learned.on == "match_probability" and learned.threshold == 0.5
    given = learn_settings(401, a, b, score, "mutual", 0.77, 0.6)
    assert given.on == "score" and given.threshold == 0.77 and given.learned["threshold_from"] == "given"


def test_auto_picks_mutual_for_pairs_and_average_for_groups():
    pa, pb, pp = [], [], []
    for base in range(0, 100, 2):  # 50 products, 2 rows each
        pa.append(base)
        pb.append(base + 1)
        pp.append(0.95)
    assert choose_method(100, np.array(pa), np.array(pb), np.array(pp), 0.5) == ("mutual", 0.0)
    ga, gb, gp = [], [], []
    for base in range(0, 100, 10):  # 10 products, 10 rows each
        a, b, s = _clique(list(range(base, base + 10)), 0.9)
        ga += a.tolist()
        gb += b.tolist()
        gp += s.tolist()
    method, share = choose_method(100, np.array(ga), np.array(gb), np.array(gp), 0.5)
    assert method == "average" and share == 1.0
    # the same groups below the threshold: no group at all, so a catalog of pairs
    assert choose_method(100, np.array(ga), np.array(gb), np.array(gp), 0.95) == ("mutual", 0.0)


def test_auto_hands_its_average_groups_to_grouping():
    rng = np.random.default_rng(5)
    ga, gb, gs = [], [], []
    for base in range(0, 120, 6):  # 20 products of 6 rows, and weak pairs across products
        a, b, s = _clique(list(range(base, base + 6)), 0.9)
        ga += a.tolist()
        gb += b.tolist()
        gs += (s + rng.normal(0, 0.03, len(s))).tolist()
    for _ in range(300):
        x, y = sorted(rng.choice(120, 2, replace=False).tolist())
        if x // 6 != y // 6:
            ga.append(x)
            gb.append(y)
            gs.append(float(rng.normal(0.3, 0.1)))
    a, b, score = np.array(ga), np.array(gb), np.array(gs, np.float32)
    s = learn_settings(120, a, b, score, "auto", None, 0.6, min_match_score=0.0)
    assert s.method == "average" and s.average_labels is not None
    on = s.probability
    fresh = group(120, a, b, on, s.threshold, "average")
    reused = group(120, a, b, on, s.threshold, "average", average_labels=s.average_labels)
    assert (fresh.labels == reused.labels).all() and (fresh.accepted == reused.accepted).all()
    assert len(np.unique(fresh.labels)) == 20
    assert learn_settings(120, a, b, score, "mutual", None, 0.6).average_labels is None


def test_mixture_boundary_never_falls_below_the_floor():
    rng = np.random.default_rng(3)
    # a catalog without duplicates: look-alikes only, which a mixture still splits in two
    scores = np.concatenate([rng.normal(0.2, 0.05, 3000), rng.normal(0.4, 0.08, 2000)])
    fitted = fit_score_mixture(scores)
    assert fitted is not None and fitted.threshold < 0.4
    floored = fitted.floored(0.65)
    assert floored.threshold == pytest.approx(0.65) and floored.moved_by == pytest.approx(0.65 - fitted.threshold)
    assert floored.floored(0.5) is floored  # already above
    p = floored.probability(scores.astype(np.float32))
    assert ((p >= 0.5) == (scores >= 0.65)).all()  # only what passes the floor is a match
    order = np.argsort(scores)
    assert (np.diff(p[order].astype(np.float64)) >= -1e-6).all()  # monotone in the score
    a = np.arange(len(scores))  # a ring: one pair per score
    s = learn_settings(
        len(scores), a, (a + 1) % len(a), scores.astype(np.float32), "auto", None, 0.6, min_match_score=0.65
    )
    assert s.learned["mixture"]["threshold_at_probability_0.5"] == pytest.approx(0.65)
    assert s.method == "mutual" and s.learned["expected_matches_per_row"] < 0.5


def test_the_mixture_is_fitted_before_conflict_penalties():
    rng = np.random.default_rng(4)
    # look-alikes, matches, and a quarter of all pairs with a quantity conflict (-0.8)
    raw = np.concatenate([rng.normal(0.4, 0.1, 6000), rng.normal(1.1, 0.15, 4000)])
    quantity = np.where(rng.random(len(raw)) < 0.25, -1.0, 0.0).astype(np.float32)
    signals = {"text_score": (raw + 0.8 * quantity).astype(np.float32), "quantity": quantity}
    w, t = ScoreWeights(), ModalityThresholds()
    assert conflict_penalty(signals, w) == pytest.approx(0.8 * quantity)
    before = score_before_penalties(signals, w, t)
    assert before == pytest.approx(raw, abs=1e-5)
    score = signals["text_score"]
    a = np.arange(len(raw))
    on_penalised = learn_settings(len(raw) + 1, a, a + 1, score, "mutual", None, 0.6, min_match_score=0.0)
    fitted = learn_settings(len(raw) + 1, a, a + 1, score, "mutual", None, 0.6, min_match_score=0.0, fit_on=before)
    boundary = fitted.learned["mixture"]["threshold_at_probability_0.5"]
    assert 0.6 < boundary < 0.85  # between the look-alikes and the matches
    # fitted to the penalised scores, the wide tail drags the match component up
    assert on_penalised.learned["mixture"]["threshold_at_probability_0.5"] > boundary + 0.1
    # the probabilities are read at the penalised score: a conflict still costs the match
    p = fitted.probability
    assert (p[(raw > 1.2) & (quantity == 0)] >= 0.5).all()
    assert (p[(raw < 1.4) & (quantity < 0)] < 0.5).all()


def test_em_recovers_known_m_and_u():
    rng = np.random.default_rng(3)
    comps = [Comparison("x", ("agree", "close", "far")), Comparison("y", ("same", "different"))]
    m_true = [np.array([0.7, 0.2, 0.1]), np.array([0.9, 0.1])]
    u_true = [np.array([0.05, 0.15, 0.8]), np.array([0.2, 0.8])]
    n_match, n_non = 3000, 7000

    def draw(probs, k):
        return np.stack([rng.choice(len(p), k, p=p) for p in probs], axis=1).astype(np.int8)

    cand = np.vstack([draw(m_true, n_match), draw(u_true, n_non)])
    cand[rng.random(cand.shape) < 0.05] = -1  # some comparisons do not apply
    random_pairs = draw(u_true, 20000)
    model = fit_fellegi_sunter(comps, cand, random_pairs, fix_u=True, max_iter=500, tol=1e-7)
    assert model.prior == pytest.approx(0.3, abs=0.03)
    for c in range(2):
        np.testing.assert_allclose(model.m[c], m_true[c], atol=0.04)
        np.testing.assert_allclose(model.u[c], u_true[c], atol=0.02)
    p = model.match_probability(cand)
    truth = np.arange(len(cand)) < n_match
    assert ((p >= 0.5) == truth).mean() > 0.85
    free = fit_fellegi_sunter(comps, cand, random_pairs, fix_u=False, max_iter=500, tol=1e-7)
    np.testing.assert_allclose(free.m[0], m_true[0], atol=0.06)
    assert "x" in model.as_dict()["comparisons"]


def test_oversized_groups_name_their_weakest_edges():
    from eclip.matcher import oversized_groups, size_bound

    assert size_bound(1_000) == 100 and size_bound(1_000_000) == 10_000
    n = 150
    a = np.arange(n - 1)
    b = a + 1  # a chain of 150 rows
    s = np.linspace(0.9, 0.6, n - 1)
    g = group(n, a, b, s, 0.5, "components")
    big = oversized_groups(g.labels, a, b, s, 100, g.accepted)
    assert len(big) == 1 and big[0]["size"] == 150 and big[0]["implied_pairs"] == 150 * 149 // 2
    assert big[0]["weakest"][0] == (148, 149, pytest.approx(0.6))
    assert oversized_groups(g.labels, a, b, s, 150) == []
