import numpy as np
import pytest

from eclip.matcher import group


def arr(*x):
    return np.array(x)


def test_components_chain_through_a_middle_row():
    g = group(4, arr(0, 1), arr(1, 2), arr(0.9, 0.8), threshold=0.5, method="components")
    assert g.labels.tolist() == [0, 0, 0, 3]
    assert g.sizes.tolist() == [3, 3, 3, 1]
    assert g.best.tolist() == [1, 0, 1, -1]


def test_mutual_keeps_only_reciprocal_best():
    # 1's best is 0 (0.9); 2's best is 1 (0.8) but 1 prefers 0: 2 stays alone.
    g = group(3, arr(0, 1), arr(1, 2), arr(0.9, 0.8), threshold=0.5, method="mutual")
    assert g.labels.tolist() == [0, 0, 2]
    assert g.accepted.tolist() == [True, False]
    assert g.best_score[0] == pytest.approx(0.9)
    assert np.isnan(g.best_score[2])


def test_threshold_blocks_weak_pairs():
    for method in ("mutual", "components"):
        g = group(2, arr(0), arr(1), arr(0.4), threshold=0.5, method=method)
        assert g.labels.tolist() == [0, 1]
        assert not g.accepted.any()


def test_mutual_best_is_not_spoiled_by_a_weaker_better_pair_below_threshold():
    # 0-1 is each other's best but below threshold: no match even though 0-2 is above it.
    g = group(3, arr(0, 0), arr(1, 2), arr(0.95, 0.7), threshold=0.96, method="mutual")
    assert g.labels.tolist() == [0, 1, 2]


def test_mutual_ties_go_to_lower_row():
    g = group(3, arr(0, 0), arr(1, 2), arr(0.9, 0.9), threshold=0.5, method="mutual")
    assert g.labels.tolist() == [0, 0, 2]


def test_rows_in_no_pair_are_singletons():
    g = group(5, arr(), arr(), arr(), threshold=0.0, method="mutual")
    assert g.labels.tolist() == [0, 1, 2, 3, 4]


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown grouping method 'x'"):
        group(2, arr(0), arr(1), arr(1.0), 0.5, "x")
