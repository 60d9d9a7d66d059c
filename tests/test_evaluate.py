"""Retrieval metrics against hand-worked rankings."""

import numpy as np
import pytest

from rsir_stac.errors import InputError
from rsir_stac.evaluate import (average_precision, expand_queries, nmrr, precision_at_k, rank_all,
                                  retrieval_metrics)


def test_average_precision_hand_worked():
    # relevant at ranks 1, 3, 6: AP = (1/1 + 2/3 + 3/6) / 3
    r = np.array([1, 0, 1, 0, 0, 1, 0], bool)
    assert average_precision(r) == pytest.approx((1 + 2 / 3 + 0.5) / 3)
    assert average_precision(np.zeros(4, bool)) == 0.0
    assert average_precision(np.ones(4, bool)) == 1.0


def test_precision_at_k():
    r = np.array([1, 0, 1, 1, 0], bool)
    assert precision_at_k(r, 1) == 1.0
    assert precision_at_k(r, 4) == 0.75
    assert precision_at_k(r, 10) == 0.3  # k counts past the end of the list


def test_nmrr_hand_worked():
    # NG=2, GTM=2 -> K=min(8,4)=4; ranks 1 and 2 are perfect
    assert nmrr(np.array([1, 1, 0, 0, 0]), 2, 2) == pytest.approx(0.0)
    # ranks 2 and 6 -> 6 > K=4 so counts 1.25*4 = 5; AVR = 3.5; MRR = 3.5-0.5-1 = 2
    # NMRR = 2 / (5 - 0.5 - 1) = 2 / 3.5
    r = np.array([0, 1, 0, 0, 0, 1], bool)
    assert nmrr(r, 2, 2) == pytest.approx(2 / 3.5)
    # nothing retrieved within K: worst = 1
    assert nmrr(np.array([0, 0, 0, 0, 1, 1]), 2, 2) == pytest.approx(1.0)


def test_retrieval_metrics_small_set():
    # 1-D points: labels a a b b; ranking for each query is by distance
    X = np.array([[0.0], [1.0], [1.6], [3.0]])
    y = np.array([0, 0, 1, 1])
    order = rank_all(X)
    assert order.tolist() == [[1, 2, 3], [2, 0, 3], [1, 3, 0], [2, 1, 0]]
    m = retrieval_metrics(X, y, ks=(1, 2))
    # APs: q0 ranks [1,2,3] -> rel [1,0,0] -> 1; q1 [2,0,3] -> rel [0,1,0] -> 1/2
    #      q2 [1,3,0] -> [0,1,0] -> 1/2;   q3 [2,1,0] -> [1,0,0] -> 1
    assert m["mAP"] == pytest.approx(0.75)
    assert m["P@1"] == pytest.approx(0.5)
    assert m["P@2"] == pytest.approx(0.5)
    assert m["n_queries"] == 4 and m["dim"] == 1
    # NG=1, GTM=1: K=min(4,2)=2; ranks 1 -> 0; rank 2 -> AVR 2, MRR 2-0.5-0.5 = 1,
    # NMRR = 1/(2.5-1) = 2/3 -> ANMRR = (0 + 2/3 + 2/3 + 0)/4
    assert m["ANMRR"] == pytest.approx(1 / 3)


def test_perfect_clusters_score_one():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 100
    y = np.repeat(np.arange(4), 5)
    X = centres[y] + rng.normal(size=(20, 8))
    m = retrieval_metrics(X, y)
    assert m["mAP"] == pytest.approx(1.0)
    assert m["ANMRR"] == pytest.approx(0.0)


def test_query_expansion_hand_worked():
    X = np.array([[0.0], [1.0], [2.2], [3.0]])
    # nearest other row: 0 -> 1, 1 -> 0, 2.2 -> 3, 3 -> 2.2; each query is the mean with it
    np.testing.assert_allclose(expand_queries(X, 1)[:, 0], [0.5, 0.5, 2.6, 2.6])
    np.testing.assert_allclose(expand_queries(X, 0), X)
    # ranking from the expanded queries, the query's own row left out
    assert rank_all(X, queries=expand_queries(X, 1)).tolist() == [[1, 2, 3], [0, 2, 3], [3, 1, 0], [2, 1, 0]]
    y = np.array([0, 0, 1, 1])
    assert retrieval_metrics(X, y, ks=(1,), expand=1)["mAP"] == pytest.approx(1.0)
    assert retrieval_metrics(X, y, ks=(1,), expand=1)["expand"] == 1


def test_query_expansion_helps_on_noisy_classes():
    # five classes, each point its class centre plus strong noise: a query's nearest
    # neighbours are mostly its own class, so their mean is nearer the class centre
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 40)
    X = rng.normal(size=(5, 32))[y] + rng.normal(scale=0.8, size=(200, 32))
    assert retrieval_metrics(X, y, expand=5)["mAP"] > retrieval_metrics(X, y)["mAP"] + 0.01


@pytest.mark.parametrize("bad", [-1, 101, 1.5, True])
def test_query_expansion_refuses_bad_values(bad):
    with pytest.raises(InputError, match="query expansion"):
        retrieval_metrics(np.eye(3), [0, 0, 1], expand=bad)


def test_queries_without_a_relevant_image_are_not_scored_and_none_at_all_is_refused():
    """A query alone in its class has nothing to find: not counted in mAP or ANMRR (ANMRR 0 would
    say "perfect"); when no query has a relevant image the metrics are refused."""
    from rsir_stac.errors import DatasetError

    X = np.array([[0.0], [1.0], [1.6], [3.0], [9.0]])
    y = np.array([0, 0, 1, 1, 2])  # class 2 has one image
    m = retrieval_metrics(X, y, ks=(1, 2))
    assert m["mAP"] == pytest.approx(0.75) and m["ANMRR"] == pytest.approx(1 / 3)  # as without the lone image
    assert m["n_queries"] == 5 and m["n_unscored"] == 1
    # nor in P@k (re-check: distractors' P@k of 0 pulled P@5 from 0.40 to 0.24): as without its query
    # P@1 of the 4 scored queries: 1, 0, 0, 1; P@2: 1/2 each (the lone image's query, 0, is left out)
    assert m["P@1"] == pytest.approx(0.5) and m["P@2"] == pytest.approx(0.5)
    with pytest.raises(DatasetError, match="no query has a relevant image.*--split all"):
        retrieval_metrics(np.eye(3), [0, 1, 2])
