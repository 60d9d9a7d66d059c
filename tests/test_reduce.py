"""Reducers: scikit-learn estimator rules, persistence, and what they preserve."""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from rsir_stac.evaluate import retrieval_metrics
from rsir_stac.reduce import LDAReducer, PCAReducer, make_reducer


@parametrize_with_checks([PCAReducer(n_components=2), LDAReducer(n_components=1)])
def test_sklearn_estimator_rules(estimator, check):
    check(estimator)


def _clusters(seed=0, classes=5, per=20, dim=32):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    y = np.repeat(np.arange(classes), per)
    return centres[y] + 0.6 * rng.normal(size=(len(y), dim)), y


def test_lda_caps_dims_and_separates():
    X, y = _clusters()
    lda = LDAReducer(n_components=20).fit(X, y)
    assert lda.n_components_ == 4  # classes - 1
    Z = lda.transform(X)
    assert Z.shape == (100, 4)
    assert np.allclose(np.linalg.norm(Z, axis=1), 1.0)
    assert retrieval_metrics(Z, y)["mAP"] >= retrieval_metrics(X, y)["mAP"] - 1e-9


def test_pca_matches_sklearn_and_roundtrips():
    from sklearn.decomposition import PCA

    X, _ = _clusters(1)
    r = PCAReducer(n_components=5, normalize=False).fit(X)
    ref = PCA(5, svd_solver="full").fit(X).transform(X)
    assert np.allclose(np.abs(r.transform(X)), np.abs(ref), atol=1e-8)
    back = PCAReducer.from_arrays(r.to_arrays(), n_components=5, normalize=False)
    assert np.allclose(back.transform(X), r.transform(X))


def test_make_reducer_rejects_unknown():
    with pytest.raises(ValueError):
        make_reducer("tsne", 2)
