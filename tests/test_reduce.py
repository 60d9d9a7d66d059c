"""Reducers: scikit-learn estimator rules, persistence, and what they preserve."""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from rsir_stac.evaluate import retrieval_metrics
from rsir_stac.reduce import LDAPCAReducer, LDAReducer, PCAReducer, make_reducer


@parametrize_with_checks([PCAReducer(n_components=2), LDAReducer(n_components=1), LDAPCAReducer(n_components=2)])
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


def _labelled_and_unseen(seed=0, dim=40, per=30):
    """Four labelled classes whose centres differ in dims 0-9, and four unseen classes
    (other centres, in dims 10-39, the same labelled-class noise) that the labels never name."""
    rng = np.random.default_rng(seed)
    cen = np.zeros((8, dim))
    cen[:4, :10] = 3.0 * rng.normal(size=(4, 10))
    cen[4:, 10:] = 1.5 * rng.normal(size=(4, 30))
    y = np.repeat(np.arange(8), per)
    X = cen[y] + rng.normal(size=(len(y), dim))
    seen = y < 4
    return X[seen], y[seen], X[~seen], y[~seen]


def test_lda_pca_keeps_lda_directions_and_what_they_leave_out():
    X, y, U, yu = _labelled_and_unseen()
    r = LDAPCAReducer(n_components=12).fit(X, y)
    assert r.n_lda_ == 3 and r.n_components_ == 12
    lda = LDAReducer(n_components=3, normalize=False).fit(X, y)
    # the first rows span exactly LDA's directions; the rest are orthogonal to them
    Q, _ = np.linalg.qr(lda.components_.T)
    lead, rest = r.components_[:3], r.components_[3:]
    assert np.allclose(lead - (lead @ Q) @ Q.T, 0, atol=1e-8)
    assert np.allclose(rest @ Q, 0, atol=1e-8)
    Z = r.transform(X)
    assert Z.shape == (len(X), 12) and np.allclose(np.linalg.norm(Z, axis=1), 1.0)
    # unseen classes: far better than LDA, which collapses them onto the labelled classes' directions
    lda_n = LDAReducer(n_components=3).fit(X, y)
    assert retrieval_metrics(Z, y)["mAP"] > 0.9
    unseen = retrieval_metrics(r.transform(U), yu)["mAP"]
    assert unseen > retrieval_metrics(lda_n.transform(U), yu)["mAP"] + 0.2
    back = LDAPCAReducer.from_arrays(r.to_arrays(), n_components=12)
    assert np.allclose(back.transform(U), r.transform(U))


def test_lda_pca_finds_classes_that_pca_misses():
    """Labelled classes in low-variance directions beside a strong nuisance: PCA keeps
    the nuisance, LDA+PCA keeps the classes' directions too."""
    rng = np.random.default_rng(0)
    cen = rng.normal(size=(4, 10))
    y = np.repeat(np.arange(4), 30)
    X = np.concatenate([cen[y], np.zeros((120, 10))], 1) + 0.5 * rng.normal(size=(120, 20))
    X[:, 10:] += 3 * rng.normal(size=(120, 10))
    pca = retrieval_metrics(PCAReducer(12).fit(X).transform(X), y)["mAP"]
    both = retrieval_metrics(LDAPCAReducer(12).fit(X, y).transform(X), y)["mAP"]
    assert both > pca + 0.3


def test_lda_pca_weight_and_bad_input():
    X, y, _, _ = _labelled_and_unseen(1)
    a = LDAPCAReducer(n_components=8, normalize=False).fit(X, y)
    b = LDAPCAReducer(n_components=8, normalize=False, lda_weight=2.0).fit(X, y)
    na = np.linalg.norm(a.transform(X)[:, :3], axis=1).mean()
    nb = np.linalg.norm(b.transform(X)[:, :3], axis=1).mean()
    assert abs(nb / na - 2.0) < 1e-6
    with pytest.raises(ValueError, match="at least 2 classes"):
        LDAPCAReducer(4).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="n_components >= 1"):
        LDAPCAReducer(0).fit(X, y)
    with pytest.raises(ValueError, match="lda_weight"):
        LDAPCAReducer(4, lda_weight=-1).fit(X, y)
    assert isinstance(make_reducer("lda+pca", 6), LDAPCAReducer)
