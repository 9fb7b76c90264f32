"""Exact, low-overhead predictions for the models learn.py trains. No Flask imports.

scikit-learn spends about 0.7 ms of call overhead on a one-row KNN predict
whose arithmetic takes microseconds. For ``Pipeline(StandardScaler or
RobustScaler, KNeighbors{Regressor,Classifier})`` with the Euclidean or the
Manhattan metric this module finds the neighbours itself with scipy's KD
tree for batches of up to ``SCIPY_MAX_ROWS`` (tens of microseconds for one
row) and asks the fitted tree once for larger ones, then aggregates exactly
as scikit-learn does. The same neighbour distances give the out-of-distribution score, so a
request never searches twice.

A binary classifier may come wrapped in scikit-learn's
``FixedThresholdClassifier``: its class is the positive one when that
class's probability is at least the threshold stored with it. Both paths
apply that rule to the probabilities (which are answered unchanged).

Exactness guards:
- ``compile`` accepts only the estimator types and parameters it reproduces;
- a row whose k-th and (k+1)-th neighbours are equidistant (a tie that
  scikit-learn may break differently) is answered through the fitted tree;
- at load time the results are compared with the model's own ``predict``
  (and ``predict_proba``) on the golden rows and on jittered training rows;
  any difference disables this path for that model.
Anything else, a radius-neighbours model for one, falls back to the
pipeline's own methods (its out-of-distribution score then comes from its
``kneighbors`` when it has one, and is absent otherwise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

log = logging.getLogger("flask_app.predictor")

# Up to this many rows scipy's KD tree answers first (its call costs microseconds where scikit-learn's
# costs a third of a millisecond); above it scikit-learn's own tree is the faster (measured: equal at
# about 256 rows, 3.6 against 4.9 ms at 1000).
SCIPY_MAX_ROWS = 256
# The load-time check runs a small batch (scipy's tree) and all its rows (more than SCIPY_MAX_ROWS).
SMALL_BATCH = 64
# Relative gap under which the k-th and (k+1)-th neighbour distances count as a tie.
TIE_RTOL = 1e-9
CHECK_RTOL = 1e-9
N_CHECK_ROWS = 300


@dataclass
class Output:
    """Predictions (and class probabilities) with each row's mean neighbour distance."""

    values: np.ndarray
    proba: np.ndarray | None
    mean_distance: np.ndarray | None


@dataclass(frozen=True)
class DecisionRule:
    """A binary classifier's threshold: the positive class when its probability is at least ``threshold``."""

    threshold: float
    positive_index: int
    negative_index: int

    def labels(self, proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
        chosen = np.where(proba[:, self.positive_index] >= self.threshold, self.positive_index, self.negative_index)
        return classes[chosen]


def thresholded(model: Any) -> bool:
    from sklearn.model_selection import FixedThresholdClassifier

    return isinstance(model, FixedThresholdClassifier)


def unwrap(model: Any) -> tuple[Any, DecisionRule | None]:
    """(the pipeline, its decision rule): a FixedThresholdClassifier gives its fitted pipeline and threshold.

    A wrapper whose rule this module does not reproduce comes back as it
    is, with no rule.
    """
    if not thresholded(model) or not hasattr(model, "estimator_"):
        return model, None
    pipeline = model.estimator_
    if model.response_method not in ("auto", "predict_proba") or not hasattr(pipeline, "predict_proba"):
        return model, None  # a rule on decision_function scores: leave it to the model's own predict
    classes = np.asarray(pipeline.classes_)
    if model.pos_label is None:
        positive, negative = 1, 0
    else:
        positive = int(np.flatnonzero(classes == model.pos_label)[0])
        negative = int(np.flatnonzero(classes != model.pos_label)[0])
    threshold = 0.5 if model.threshold == "auto" else float(model.threshold)
    return pipeline, DecisionRule(threshold, positive, negative)


def class_labels(proba: np.ndarray, classes: np.ndarray, rule: DecisionRule | None) -> np.ndarray:
    """The most probable class, or the threshold's choice for a thresholded binary classifier."""
    return rule.labels(proba, classes) if rule is not None else classes[proba.argmax(axis=1)]


class PipelinePredictor:
    """The pipeline's own methods: correct for any estimator, with scikit-learn's overhead."""

    def __init__(self, model: Any, task: str):
        self.model = model
        self.pipeline, self.rule = unwrap(model)
        self.task = task
        steps = getattr(self.pipeline, "named_steps", {})
        self.scaler, self.knn = steps.get("scale"), steps.get("knn")

    def predict(self, X: np.ndarray) -> Output:
        if self.task == "classification" and hasattr(self.pipeline, "predict_proba"):
            proba = self.pipeline.predict_proba(X)
            if self.rule is None and thresholded(self.model):
                values = self.model.predict(X)  # a wrapper whose rule this module does not reproduce
            else:
                values = class_labels(proba, np.asarray(self.pipeline.classes_), self.rule)
        else:
            proba, values = None, self.model.predict(X)
        mean_distance = None
        if self.scaler is not None and hasattr(self.knn, "kneighbors"):
            distances, _ = self.knn.kneighbors(self.scaler.transform(X))
            mean_distance = distances.mean(axis=1)
        return Output(values, proba, mean_distance)


EUCLIDEAN = {"euclidean", "l2"}
MANHATTAN = {"manhattan", "cityblock", "l1"}


def minkowski_p(knn: Any) -> int | None:
    """2 for a Euclidean model, 1 for a Manhattan one, None for any other metric."""
    if knn.metric in EUCLIDEAN or (knn.metric == "minkowski" and knn.p == 2):
        return 2
    if knn.metric in MANHATTAN or (knn.metric == "minkowski" and knn.p == 1):
        return 1
    return None


def scaler_offsets(scaler: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(centre, scale) with which the fitted scaler maps X to (X - centre) / scale; None for other scalers."""
    from sklearn.preprocessing import RobustScaler, StandardScaler

    if not hasattr(scaler, "n_features_in_"):
        return None  # not fitted
    n = scaler.n_features_in_
    if type(scaler) is StandardScaler:
        return (scaler.mean_ if scaler.with_mean else np.zeros(n),
                scaler.scale_ if scaler.with_std else np.ones(n))
    if type(scaler) is RobustScaler:
        return (scaler.center_ if scaler.with_centering else np.zeros(n),
                scaler.scale_ if scaler.with_scaling else np.ones(n))
    return None


class ExactKNN:
    """Neighbours found once per request, aggregated as scikit-learn aggregates them."""

    def __init__(self, model: Any, task: str):
        self.model = model
        self.pipeline, self.rule = unwrap(model)
        scaler, knn = self.pipeline.named_steps["scale"], self.pipeline.named_steps["knn"]
        self.task, self.knn = task, knn
        self.mean, self.scale = scaler_offsets(scaler)
        self.p = minkowski_p(knn)
        self.fit_X = np.ascontiguousarray(knn._fit_X)
        # scipy's KD tree answers a one-row query in microseconds where scikit-learn's call takes a
        # millisecond; both measure exact Euclidean (p=2) and Manhattan (p=1) distances.
        self.tree = cKDTree(self.fit_X)
        self.y = np.asarray(knn._y)
        self.k = int(knn.n_neighbors)
        self.distance_weighted = knn.weights == "distance"
        self.classes = getattr(knn, "classes_", None)

    @classmethod
    def compile(cls, model: Any, task: str) -> ExactKNN | None:
        """An ExactKNN for a model it reproduces, else None."""
        from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
        from sklearn.pipeline import Pipeline

        pipeline, _ = unwrap(model)
        if not isinstance(pipeline, Pipeline) or [name for name, _ in pipeline.steps] != ["scale", "knn"]:
            return None
        scaler, knn = pipeline.named_steps["scale"], pipeline.named_steps["knn"]
        expected = KNeighborsClassifier if task == "classification" else KNeighborsRegressor
        if (scaler_offsets(scaler) is None or type(knn) is not expected or minkowski_p(knn) is None
                or knn.metric_params or knn.weights not in ("uniform", "distance")
                or not hasattr(knn, "_fit_X") or knn._fit_X.shape[0] <= knn.n_neighbors
                or np.asarray(knn._y).ndim != 1):
            return None
        return cls(model, task)

    # -- neighbours -----------------------------------------------------------------

    def neighbours(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distances, indices) of each row's k nearest training rows, nearest first."""
        Xs = (X - self.mean) / self.scale
        if len(Xs) > SCIPY_MAX_ROWS:
            return self.knn.kneighbors(Xs)  # the fitted tree itself: faster at this size, and its own answer
        k = self.k
        # One more neighbour than needed, to see ties at the k-th place.
        distances, indices = self.tree.query(Xs, k=k + 1, p=self.p)
        tied = np.abs(distances[:, k] - distances[:, k - 1]) <= TIE_RTOL * np.maximum(distances[:, k], 1e-300)
        distances, indices = distances[:, :k], indices[:, :k]
        if tied.any():
            # Which of the tied rows is a neighbour is the fitted tree's choice: ask it.
            tree_distances, tree_indices = self.knn.kneighbors(Xs[tied])
            distances[tied], indices[tied] = tree_distances, tree_indices
        return distances, indices

    def _weights(self, distances: np.ndarray) -> np.ndarray | None:
        """scikit-learn's weighting: 1/d, and a row with a zero distance takes only those neighbours."""
        if not self.distance_weighted:
            return None
        zero = distances == 0
        if not zero.any():
            return 1.0 / distances
        weights = zero.astype(float)
        others = ~zero.any(axis=1)
        weights[others] = 1.0 / distances[others]
        return weights

    # -- predictions ------------------------------------------------------------------

    def predict(self, X: np.ndarray) -> Output:
        distances, indices = self.neighbours(X)
        weights = self._weights(distances)
        labels = self.y[indices]
        if self.task == "regression":
            if weights is None:
                values = labels.mean(axis=1)
            else:
                values = (labels * weights).sum(axis=1) / weights.sum(axis=1)
            return Output(values, None, distances.mean(axis=1))
        if weights is None:
            weights = np.ones_like(distances)
        proba = np.zeros((len(X), len(self.classes)))
        rows = np.arange(len(X))
        for column in range(self.k):
            proba[rows, labels[:, column]] += weights[:, column]
        proba /= proba.sum(axis=1, keepdims=True)
        return Output(class_labels(proba, self.classes, self.rule), proba, distances.mean(axis=1))

    # -- the load-time check ---------------------------------------------------------------

    def agrees_with_pipeline(self, X: np.ndarray) -> bool:
        """Does this path give the model's own answers on X (small and large batches alike)?"""
        for batch in (X[:SMALL_BATCH], X):
            ours = self.predict(batch)
            if self.task == "regression":
                theirs = self.model.predict(batch)
                if not np.allclose(ours.values, theirs, rtol=CHECK_RTOL, atol=CHECK_RTOL):
                    return False
            else:
                if not np.array_equal(ours.values, self.model.predict(batch)):
                    return False
                if not np.allclose(ours.proba, self.pipeline.predict_proba(batch), rtol=CHECK_RTOL, atol=CHECK_RTOL):
                    return False
        return True


def check_rows(golden: np.ndarray, reference: np.ndarray | None, seed: int = 0) -> np.ndarray:
    """Golden rows, training rows as they are (zero distances), and jittered training rows."""
    parts = [golden]
    if reference is not None and len(reference):
        rng = np.random.default_rng(seed)
        picked = reference[rng.choice(len(reference), min(N_CHECK_ROWS, len(reference)), replace=False)]
        spread = reference.std(axis=0) + 1e-12
        parts += [picked[:20], picked + rng.normal(scale=0.05, size=picked.shape) * spread]
    return np.vstack(parts)


def build_predictor(model: Any, task: str, golden: np.ndarray, reference: np.ndarray | None):
    """The fastest predictor that gives the model's own answers."""
    exact = ExactKNN.compile(model, task)
    if exact is not None:
        if exact.agrees_with_pipeline(check_rows(golden, reference)):
            return exact
        log.warning("exact KNN path disagrees with the pipeline; using the pipeline's own predict")
    return PipelinePredictor(model, task)
