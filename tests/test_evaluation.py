import numpy as np
import pytest

from eclip.errors import GoldError
from eclip.evaluation import blocking_recall, calibrate, cluster_metrics, load_gold


def test_pairwise_and_bcubed_on_a_hand_case():
    gold = np.array([0, 0, 0, 1, 2])
    pred = np.array([0, 0, 1, 1, 2])  # finds (0,1), wrongly pairs (2,3)
    m = cluster_metrics(pred, gold)
    assert (m.predicted_pairs, m.gold_pairs, m.true_pairs) == (2, 3, 1)
    assert m.precision == pytest.approx(0.5) and m.recall == pytest.approx(1 / 3)
    assert m.f1 == pytest.approx(0.4)
    # B-cubed precision: rows 0,1 -> 1; rows 2,3 -> 1/2; row 4 -> 1  => 4/5
    assert m.bcubed_precision == pytest.approx(0.8)
    # B-cubed recall: rows 0,1 -> 2/3; row 2 -> 1/3; rows 3,4 -> 1  => (4/3 + 1/3 + 2)/5
    assert m.bcubed_recall == pytest.approx((4 / 3 + 1 / 3 + 2) / 5)


def test_perfect_prediction():
    gold = np.array([3, 3, 5, 7])
    m = cluster_metrics(np.array([0, 0, 1, 2]), gold)
    assert m.f1 == 1.0 and m.bcubed_f1 == 1.0 and m.ari == pytest.approx(1.0)


def test_gold_pairs_file(tmp_path):
    f = tmp_path / "matches.csv"
    f.write_text("id_a,id_b\na,b\nb,c\n")
    labels = load_gold(f, ["a", "b", "c", "d"])
    assert labels[0] == labels[1] == labels[2] != labels[3]


def test_gold_pairs_with_unknown_ids(tmp_path):
    f = tmp_path / "matches.csv"
    f.write_text("id_a,id_b\na,zz\n")
    with pytest.raises(GoldError, match=r"1 gold id\(s\) are not in the predictions, e\.g\. \['zz'\]"):
        load_gold(f, ["a", "b"])


def test_gold_cluster_column_with_catch_all(tmp_path):
    f = tmp_path / "offers.csv"
    f.write_text("id,title,cluster_id\nA,x,1\nB,y,1\nC,z,99\nD,w,99\n")
    labels = load_gold(f, ["A", "B", "C", "D"], singleton_clusters=("99",))
    assert labels[0] == labels[1] and labels[2] != labels[3]


def test_gold_layout_not_understood(tmp_path):
    f = tmp_path / "g.csv"
    f.write_text("x,y,z\n1,2,3\n")
    with pytest.raises(GoldError, match="not a gold file eclip understands"):
        load_gold(f, ["1"])


def test_blocking_recall_at_k():
    gold = np.array([0, 0, 1, 1])
    a, b = np.array([0, 2, 0]), np.array([1, 3, 2])
    r = blocking_recall(a, b, np.array([1.0, np.nan, 2.0]), gold, ks=(1, 5))
    assert r == {"recall@1": 0.5, "recall@5": 0.5, "recall@candidates": 1.0}


def test_calibrate_picks_the_separating_threshold():
    gold = np.array([0, 0, 1, 1, 2, 3])
    a, b = np.array([0, 2, 4, 0]), np.array([1, 3, 5, 4])
    score = np.array([0.9, 0.8, 0.5, 0.4], dtype=np.float32)
    cal = calibrate(6, a, b, score, gold, "components")
    assert cal.f1 == 1.0 and 0.5 < cal.threshold <= 0.8
    strict = calibrate(6, a, b, score, gold, "components", target_precision=1.0)
    assert strict.precision == 1.0


def test_threshold_meaning_says_when_there_is_no_threshold_and_what_above_1_keeps():
    from eclip.evaluation.calibrate import threshold_meaning

    score = np.array([-0.16, 0.2, 0.9, 1.25])
    assert threshold_meaning(-0.16, score, "mutual").startswith("no threshold helps F1 here: every mutual pair is kept")
    assert threshold_meaning(-0.15996, score, "mutual").startswith("no threshold")  # rounded to 4 decimals by the sweep
    assert "only pairs whose codes agree" in threshold_meaning(1.2, score, "components")
    assert threshold_meaning(0.6, score, "mutual") == ""


def test_calibrate_methods_picks_the_best_method():
    from eclip.evaluation.calibrate import calibrate_methods

    # one product of 4 rows (a clique) and 4 singletons: only average/components find the group
    a = np.array([0, 0, 0, 1, 1, 2, 4])
    b = np.array([1, 2, 3, 2, 3, 3, 5])
    s = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.3], dtype=np.float32)
    gold = np.array([0, 0, 0, 0, 4, 5, 6, 7])
    best, per = calibrate_methods(8, a, b, s, gold, ("mutual", "average", "components"))
    assert per["mutual"].f1 < 1.0 and best.f1 == pytest.approx(1.0) and best.method in ("average", "components")
