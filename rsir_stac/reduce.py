"""Dimensionality reducers that follow scikit-learn's estimator rules.

* :class:`PCAReducer` — unsupervised (principal components of the training
  embeddings).
* :class:`LDAReducer` — supervised (Fisher discriminant directions; at most
  ``n_classes - 1`` dimensions).
* :class:`LDAPCAReducer` — both: the discriminant directions of the labelled
  classes plus the principal components of what they leave out, so that
  content the labels do not name keeps its own dimensions.

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


class LDAPCAReducer(_LinearReducer):
    """LDA directions plus PCA of the residual, as one linear map to ``n_components`` dimensions.

    The first ``min(classes - 1, n_components - 1)`` outputs are :class:`LDAReducer`'s
    discriminant directions; the rest are the principal components of the embeddings
    with the span of those directions projected out (so the two parts are
    orthogonal in the input space).  Each part is scaled to unit RMS norm over the
    training set, the LDA part then by ``lda_weight``, and the output is
    L2-normalised (``normalize``), so Euclidean distance weighs the labelled
    classes' directions and everything else at a fixed ratio.  LDA alone keeps only
    the directions that separate the training classes and collapses other content
    onto them; the residual part keeps it (benchmarks/RESULTS.md §7, leave classes out).
    A linear map like the other reducers, saved as ``mean`` and ``components``.
    """

    kind = "lda+pca"

    def __init__(self, n_components: int = 64, normalize: bool = True, shrinkage="auto", lda_weight: float = 1.0):
        self.n_components = n_components
        self.normalize = normalize
        self.shrinkage = shrinkage
        self.lda_weight = lda_weight

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        X = X.astype(np.float64)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"LDAPCAReducer needs at least 2 classes, got {len(classes)} class")
        if int(self.n_components) < 1:  # 1 is LDA's first direction alone: no room for the residual
            raise ValueError(f"LDAPCAReducer needs n_components >= 1, got {self.n_components}")
        if not np.isfinite(self.lda_weight) or self.lda_weight <= 0:
            raise ValueError(f"lda_weight {self.lda_weight} must be a positive number")
        n = min(int(self.n_components), X.shape[0], X.shape[1])
        lda = LDAReducer(min(len(classes) - 1, max(1, n - 1)), normalize=False, shrinkage=self.shrinkage).fit(X, y)
        W = lda.components_
        mean = X.mean(0)
        Xc = X - mean

        def rms(M):
            return max(float(np.sqrt(np.mean(np.sum((Xc @ M.T) ** 2, axis=1)))), 1e-12)

        parts = [self.lda_weight / rms(W) * W]
        k = n - W.shape[0]  # what is left for the residual (none with a single input feature)
        if k > 0:
            Q, _ = np.linalg.qr(W.T)  # orthonormal basis of the LDA directions' span
            P = PCAReducer(k, normalize=False).fit(Xc - (Xc @ Q) @ Q.T).components_
            P = P - (P @ Q) @ Q.T  # exactly orthogonal to the LDA span (removes rounding)
            parts.append(P / rms(P))
        self.mean_ = mean
        self.components_ = np.vstack(parts)
        self.n_components_ = self.components_.shape[0]
        self.n_lda_ = W.shape[0]
        self.classes_ = classes
        return self


REDUCERS = {"pca": PCAReducer, "lda": LDAReducer, "lda+pca": LDAPCAReducer}


def make_reducer(kind: str, n_components: int, normalize: bool = True):
    """Build an unfitted reducer by name (``pca``, ``lda`` or ``lda+pca``)."""
    if kind not in REDUCERS:
        raise ValueError(f"unknown reducer {kind!r}; choose pca, lda, lda+pca or none")
    return REDUCERS[kind](n_components=n_components, normalize=normalize)
