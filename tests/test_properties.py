"""Property tests (hypothesis) for the invariants everything else rests on: grouping
partitions every row exactly once, mutual best matches never cross connected components,
metrics are perfect on identical inputs and symmetric, candidate pairs are unique with
``a < b`` (issue 22, item 11)."""

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from eclip.evaluation.metrics import cluster_metrics
from eclip.matcher import group, knn_pairs, union_candidates


@st.composite
def scored_pairs(draw, max_rows=25):
    """``n`` rows and distinct candidate pairs ``a < b`` with scores in [0, 1]."""
    n = draw(st.integers(1, max_rows))
    if n < 2:
        return n, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    pairs = draw(
        st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda t: t[0] < t[1]), max_size=60)
    )
    pairs = sorted(pairs)
    a = np.array([p[0] for p in pairs], np.int64)
    b = np.array([p[1] for p in pairs], np.int64)
    score = np.array(draw(st.lists(st.floats(0, 1, width=32), min_size=len(pairs), max_size=len(pairs))), np.float32)
    return n, a, b, score


@settings(max_examples=150, deadline=None)
@given(scored_pairs(), st.sampled_from(["mutual", "average", "components"]), st.floats(0.05, 0.95))
def test_grouping_partitions_every_row_once(data, method, threshold):
    n, a, b, score = data
    g = group(n, a, b, score, threshold, method)
    assert g.labels.shape == (n,)  # every row has exactly one group
    for label in np.unique(g.labels):  # a group is named by its smallest row, which is in it
        members = np.flatnonzero(g.labels == label)
        assert members.min() == label
    assert g.accepted.shape == a.shape
    # an accepted pair never links two groups
    assert (g.labels[a[g.accepted]] == g.labels[b[g.accepted]]).all()


@settings(max_examples=150, deadline=None)
@given(scored_pairs(), st.floats(0.05, 0.95))
def test_mutual_groups_lie_inside_connected_components(data, threshold):
    n, a, b, score = data
    mutual = group(n, a, b, score, threshold, "mutual").labels
    components = group(n, a, b, score, threshold, "components").labels
    for label in np.unique(mutual):
        assert len(np.unique(components[mutual == label])) == 1


labelings = st.integers(1, 30).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 5), min_size=n, max_size=n), st.lists(st.integers(0, 5), min_size=n, max_size=n)
    )
)


@settings(max_examples=150, deadline=None)
@given(labelings)
def test_metrics_are_perfect_on_identical_labels_and_symmetric(pair):
    pred, gold = np.array(pair[0]), np.array(pair[1])
    same = cluster_metrics(gold, gold)
    if same.gold_pairs:
        assert same.precision == same.recall == same.f1 == 1.0
    assert same.bcubed_f1 == 1.0
    m, swapped = cluster_metrics(pred, gold), cluster_metrics(gold, pred)
    assert m.precision == swapped.recall and m.recall == swapped.precision and m.f1 == swapped.f1
    assert m.bcubed_precision == swapped.bcubed_recall and m.true_pairs == swapped.true_pairs
    assert 0.0 <= m.f1 <= 1.0 and 0.0 <= m.bcubed_f1 <= 1.0


@st.composite
def knn_tables(draw):
    n = draw(st.integers(1, 20))
    k = draw(st.integers(1, 6))
    rows = draw(st.lists(st.lists(st.integers(-1, n - 1), min_size=k, max_size=k), min_size=n, max_size=n))
    return np.array(rows, np.int64)


@settings(max_examples=150, deadline=None)
@given(knn_tables(), knn_tables())
def test_candidate_pairs_are_unique_with_a_below_b(t1, t2):
    for table in (t1, t2):
        pairs = knn_pairs(table)
        a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
        assert (a < b).all() and pairs.select("a", "b").is_unique().all()
        listed = {(min(i, int(j)), max(i, int(j))) for i, row in enumerate(table) for j in row if j >= 0 and j != i}
        assert set(zip(a.tolist(), b.tolist())) == listed  # every neighbour, nothing else
    union = union_candidates(
        {
            "text": knn_pairs(t1),
            "image": knn_pairs(t2),
            "code": pl.DataFrame({"a": [0], "b": [1]}, schema={"a": pl.Int64, "b": pl.Int64}),
        }
    )
    assert (union["a"] < union["b"]).all() and union.select("a", "b").is_unique().all()
