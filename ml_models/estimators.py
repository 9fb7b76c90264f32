"""Radius-neighbours estimators with an outlier policy, as pickled into bundles. No Flask imports.

scikit-learn's ``RadiusNeighborsRegressor`` predicts NaN (with a warning) for a
row that has no training row within the radius, and
``RadiusNeighborsClassifier`` either raises or, with
``outlier_label="most_frequent"``, gives that row the majority class with
probability 1. Neither is what a service should answer. The estimators here
answer such a row with what the training data says without neighbours: the
training mean (regression) or the training class frequencies
(classification). Cross-validation sees the same policy, so a radius too
small to be useful scores badly and is not chosen.

They also answer ``kneighbors`` (``n_neighbors`` nearest training rows; not
used for predictions), which is what the service's out-of-distribution score
needs from any neighbours model.

Sums run over the neighbours in order of distance, one after another, so that
the search in ``ml_models.search`` reproduces these predictions exactly from
sorted neighbour lists.

The service unpickles these classes: this module must import nothing beyond
NumPy and scikit-learn.
"""

from __future__ import annotations

from numbers import Integral
from typing import ClassVar

import numpy as np
from sklearn.neighbors import RadiusNeighborsClassifier, RadiusNeighborsRegressor
from sklearn.neighbors._base import KNeighborsMixin
from sklearn.utils._param_validation import Interval


def neighbour_weights(distances: np.ndarray, weights: str) -> np.ndarray:
    """scikit-learn's weighting of one row's neighbours: 1, or 1/d with exact matches taking all the weight."""
    if weights == "uniform":
        return np.ones(len(distances))
    exact = distances == 0.0
    if exact.any():
        return exact.astype(float)
    return 1.0 / distances


class _PriorFallback(KNeighborsMixin):
    _extra_constraints: ClassVar[dict] = {"n_neighbors": [Interval(Integral, 1, None, closed="left"), None]}

    def _rows(self, X):
        distances, indices = self.radius_neighbors(X, sort_results=True)
        return zip(distances, indices, strict=True)

    def _check_1d(self, y) -> None:
        if np.ndim(y) != 1:
            raise ValueError(f"{type(self).__name__} takes a one-dimensional target")


class PriorRadiusNeighborsRegressor(_PriorFallback, RadiusNeighborsRegressor):
    """``RadiusNeighborsRegressor`` that predicts the training mean for a row with no neighbour in the radius."""

    _parameter_constraints: ClassVar[dict] = {
        **RadiusNeighborsRegressor._parameter_constraints,
        **_PriorFallback._extra_constraints,
    }

    def __init__(self, radius=1.0, *, weights="uniform", algorithm="auto", leaf_size=30, p=2,
                 metric="minkowski", metric_params=None, n_jobs=None, n_neighbors=None):
        super().__init__(radius=radius, weights=weights, algorithm=algorithm, leaf_size=leaf_size, p=p,
                         metric=metric, metric_params=metric_params, n_jobs=n_jobs)
        self.n_neighbors = n_neighbors

    def fit(self, X, y):
        self._check_1d(y)
        super().fit(X, y)
        self.prior_ = float(np.mean(self._y))
        return self

    def predict(self, X):
        y = self._y
        predictions = []
        for distances, indices in self._rows(X):
            if len(indices) == 0:
                predictions.append(self.prior_)
                continue
            w = neighbour_weights(distances, self.weights)
            predictions.append(np.cumsum(y[indices] * w)[-1] / np.cumsum(w)[-1])
        return np.asarray(predictions, dtype=float)


class PriorRadiusNeighborsClassifier(_PriorFallback, RadiusNeighborsClassifier):
    """``RadiusNeighborsClassifier`` that gives a row with no neighbour in the radius the class frequencies."""

    _parameter_constraints: ClassVar[dict] = {
        **{key: value for key, value in RadiusNeighborsClassifier._parameter_constraints.items()
           if key != "outlier_label"},
        **_PriorFallback._extra_constraints,
    }

    def __init__(self, radius=1.0, *, weights="uniform", algorithm="auto", leaf_size=30, p=2,
                 metric="minkowski", metric_params=None, n_jobs=None, n_neighbors=None):
        super().__init__(radius=radius, weights=weights, algorithm=algorithm, leaf_size=leaf_size, p=p,
                         metric=metric, outlier_label=None, metric_params=metric_params, n_jobs=n_jobs)
        self.n_neighbors = n_neighbors

    def fit(self, X, y):
        self._check_1d(y)
        super().fit(X, y)
        self.prior_ = np.bincount(self._y, minlength=len(self.classes_)) / len(self._y)
        return self

    def predict_proba(self, X):
        labels = self._y
        n_classes = len(self.classes_)
        rows = []
        for distances, indices in self._rows(X):
            if len(indices) == 0:
                rows.append(self.prior_)
                continue
            w = neighbour_weights(distances, self.weights)
            votes = [np.cumsum(w * (labels[indices] == c))[-1] for c in range(n_classes)]
            total = votes[0]
            for vote in votes[1:]:
                total = total + vote
            rows.append(np.array(votes) / total)
        return np.vstack(rows) if rows else np.empty((0, n_classes))

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
