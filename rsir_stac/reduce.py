"""Dimensionality reducers that follow scikit-learn's estimator rules.

* :class:`PCAReducer` — unsupervised (principal components of the training
  embeddings).
* :class:`LDAReducer` — supervised (Fisher discriminant directions; at most
  ``n_classes - 1`` dimensions).

Both learn an affine map ``(X - mean_) @ components_.T`` and can L2-normalise
the output (``normalize=True``), so that Euclidean distance stays the metric.
They persist as plain arrays (``to_arrays`` / ``from_arrays``), never pickles.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data


class _LinearReducer(TransformerMixin, BaseEstimator):
    kind = "linear"

    def transform(self, X):
        check_is_fitted(self, "components_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        Z = (X - self.mean_) @ self.components_.T
        if self.normalize:
            Z = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
        return Z.astype(X.dtype, copy=False)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "components_")
        return np.asarray([f"{self.kind}{i}" for i in range(self.components_.shape[0])], dtype=object)

    def to_arrays(self) -> dict[str, np.ndarray]:
        check_is_fitted(self, "components_")
        return {"mean": self.mean_, "components": self.components_}

    @classmethod
    def from_arrays(cls, arrays, **params):
        est = cls(**params)
        est.mean_ = np.asarray(arrays["mean"], dtype=np.float64)
        est.components_ = np.asarray(arrays["components"], dtype=np.float64)
        est.n_components_ = est.components_.shape[0]
        est.n_features_in_ = est.components_.shape[1]
        return est


class PCAReducer(_LinearReducer):
    """Principal component projection to ``n_components`` dimensions."""

    kind = "pca"

    def __init__(self, n_components: int = 32, normalize: bool = True):
        self.n_components = n_components
        self.normalize = normalize

    def fit(self, X, y=None):
        from sklearn.decomposition import PCA

        X = validate_data(self, X, dtype=[np.float64, np.float32])
        n = min(self.n_components, X.shape[0], X.shape[1])
        pca = PCA(n_components=n, svd_solver="full").fit(X)
        self.mean_ = pca.mean_.astype(np.float64)
        self.components_ = pca.components_.astype(np.float64)
        self.n_components_ = n
        self.explained_variance_ratio_ = pca.explained_variance_ratio_
        return self


class LDAReducer(_LinearReducer):
    """Linear discriminant projection to ``n_components`` ≤ classes−1 dimensions.

    ``shrinkage`` regularises the within-class covariance (``"auto"``:
    Ledoit–Wolf), which matters when the embedding is wide and classes small.
    """

    kind = "lda"

    def __init__(self, n_components: int = 20, normalize: bool = True, shrinkage="auto"):
        self.n_components = n_components
        self.normalize = normalize
        self.shrinkage = shrinkage

    def fit(self, X, y):
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"LDAReducer needs at least 2 classes, got {len(classes)} class")
        n = min(self.n_components, len(classes) - 1, X.shape[1])
        lda = LinearDiscriminantAnalysis(n_components=n, solver="eigen", shrinkage=self.shrinkage)
        lda.fit(X.astype(np.float64), y)
        self.mean_ = X.mean(0).astype(np.float64)
        self.components_ = np.ascontiguousarray(lda.scalings_[:, :n].T, dtype=np.float64)
        self.n_components_ = n
        self.classes_ = classes
        return self


REDUCERS = {"pca": PCAReducer, "lda": LDAReducer}


def make_reducer(kind: str, n_components: int, normalize: bool = True):
    """Build an unfitted reducer by name (``pca`` or ``lda``)."""
    if kind not in REDUCERS:
        raise ValueError(f"unknown reducer {kind!r}; choose pca, lda or none")
    return REDUCERS[kind](n_components=n_components, normalize=normalize)
