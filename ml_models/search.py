"""The model search: every candidate of every family, scored on the same repeated CV folds.

Families (``FAMILIES``), each crossed with a scaler (``SCALERS``), the
Minkowski p (``METRIC_P``: 2 is Euclidean, 1 Manhattan) and the weighting
(``WEIGHTS``):

- ``knn``: ``KNeighbors{Regressor,Classifier}`` with ``n_neighbors`` from 1 to
  as many as the smallest CV training fold holds;
- ``radius``: ``PriorRadiusNeighbors{Regressor,Classifier}``
  (``ml_models.estimators``) over a grid of radii.

Refitting scikit-learn for each of thousands of candidates on each fold
would take minutes. Instead, for each fold and each (scaler, p), one
neighbour query sorts every training-fold row by its distance to each
validation row. The neighbours of a row for any k are the first k of that
list, and its neighbours within any radius a prefix of it too, so running
sums along the sorted lists give every candidate's predictions at once,
with the arithmetic scikit-learn uses (distances from the same KD tree,
1/d weights, exact matches taking all the weight, class votes added in
order of distance). The one thing a sorted list cannot tell is which of
several equidistant rows scikit-learn keeps when they straddle the k-th
place: where such rows disagree about the target, those cells are asked of
scikit-learn itself. The test suite checks the scores against
``GridSearchCV`` on the same folds.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

FAMILIES = ("knn", "radius")
SCALERS = ("standard", "robust")
METRIC_P = (2, 1)
WEIGHTS = ("uniform", "distance")
N_RADII = 40
# A fixed tree everywhere: the search, GridSearchCV and the served model then find
# the same neighbours ("auto" would switch to brute force, whose Euclidean distances
# are computed another way, for large k).
ALGORITHM = "kd_tree"
DEFAULT_FOLDS = 5
DEFAULT_REPEATS = 5


# --- what is searched --------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """A family with everything fixed but its size parameter (k or the radius)."""

    family: str
    scaler: str
    p: int
    weights: str

    @property
    def size_key(self) -> str:
        return "n_neighbors" if self.family == "knn" else "radius"

    def params(self, value: float) -> dict[str, Any]:
        size = int(value) if self.family == "knn" else float(value)
        return {"family": self.family, "scaler": self.scaler, "p": self.p, "weights": self.weights,
                self.size_key: size}

    @property
    def label(self) -> str:
        return f"{self.scaler}, p={self.p}, {self.weights}"


def settings(families: tuple[str, ...] = FAMILIES) -> list[Setting]:
    return [Setting(*combo) for combo in itertools.product(families, SCALERS, METRIC_P, WEIGHTS)]


@dataclass(frozen=True)
class Scoring:
    """How candidates are compared: a scikit-learn scorer (larger is better) and its label."""

    task: str
    scorer: str
    label: str
    lower_is_better: bool

    def shown(self, score: float) -> float:
        """The score as people read it (MSE rather than negative MSE)."""
        return -score if self.lower_is_better else score


def scoring_for(task: str, n_classes: int) -> Scoring:
    if task == "regression":
        return Scoring(task, "neg_mean_squared_error", "MSE", True)
    # ROC AUC ranks patients without a threshold and is symmetric in which
    # class is called positive; the heart data's target coding is uncertain
    # (data/README.md), so a selection metric that flips with it would be unsafe.
    if n_classes == 2:
        return Scoring(task, "roc_auc", "ROC AUC", False)
    return Scoring(task, "balanced_accuracy", "balanced accuracy", False)


def make_folds(task: str, X: np.ndarray, y: np.ndarray, n_splits: int, n_repeats: int,
               seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded repeated (stratified for classification) k-fold splits, as (train, validation) index pairs."""
    from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold

    kind = RepeatedStratifiedKFold if task == "classification" else RepeatedKFold
    return list(kind(n_splits=n_splits, n_repeats=n_repeats, random_state=seed).split(X, y))


def smallest_fold(folds: list[tuple[np.ndarray, np.ndarray]]) -> int:
    return min(len(train) for train, _ in folds)


def make_scaler(name: str):
    from sklearn.preprocessing import RobustScaler, StandardScaler

    return {"standard": StandardScaler, "robust": RobustScaler}[name]()


def build_estimator(task: str, params: dict[str, Any]):
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    from ml_models.estimators import PriorRadiusNeighborsClassifier, PriorRadiusNeighborsRegressor

    common = {"weights": params["weights"], "p": params["p"], "algorithm": ALGORITHM}
    if params["family"] == "knn":
        kind = KNeighborsClassifier if task == "classification" else KNeighborsRegressor
        return kind(n_neighbors=params["n_neighbors"], **common)
    kind = PriorRadiusNeighborsClassifier if task == "classification" else PriorRadiusNeighborsRegressor
    return kind(radius=params["radius"], n_neighbors=params.get("ood_neighbors"), **common)


def build_pipeline(task: str, params: dict[str, Any]):
    """Scaler + neighbours model. The step is called "knn" for every family: the service looks for it."""
    from sklearn.pipeline import Pipeline

    return Pipeline([("scale", make_scaler(params["scaler"])), ("knn", build_estimator(task, params))])


def radius_grid(X: np.ndarray, scaler: str, p: int, n_radii: int = N_RADII) -> np.ndarray:
    """Geometric radii from the typical distance to the nearest row to the typical distance to the farthest.

    At the small end about half the rows have no neighbour (and get the
    prior); at the large end a row averages over all of the data (weighted
    by inverse distance, or not), as the largest k does. Measured on the rows the search runs on (features only,
    no targets), in the setting's scaled space and metric; rounded to three
    significant digits.
    """
    from sklearn.neighbors import NearestNeighbors

    Xs = make_scaler(scaler).fit_transform(X)
    distances, _ = NearestNeighbors(algorithm=ALGORITHM, p=p).fit(Xs).kneighbors(n_neighbors=len(Xs) - 1)
    low = float(np.median(distances[:, 0]))
    high = float(np.median(distances[:, -1]))
    radii = np.geomspace(max(low, 1e-12), max(high, 2 * low, 1e-11), n_radii)
    rounded = [float(f"{r:.3g}") for r in radii]
    return np.array(sorted(set(rounded)))


# --- scores from sorted neighbour lists ----------------------------------------------------


class FoldNeighbours:
    """For each validation row, every training-fold row sorted by distance (one tree query)."""

    def __init__(self, task: str, X_fit: np.ndarray, y_fit: np.ndarray, X_val: np.ndarray, p: int):
        from sklearn.neighbors import NearestNeighbors

        self.task = task
        self.X_fit, self.y_fit, self.X_val = X_fit, y_fit, X_val
        self.p = p
        n_fit = len(X_fit)
        tree = NearestNeighbors(algorithm=ALGORITHM, p=p).fit(X_fit)
        self.distances, indices = tree.kneighbors(X_val, n_neighbors=n_fit)
        if task == "classification":
            self.classes, encoded = np.unique(y_fit, return_inverse=True)
            self.targets = encoded[indices]
            self.prior = np.bincount(encoded, minlength=len(self.classes)) / n_fit
        else:
            self.classes = None
            self.targets = y_fit[indices]
            self.prior = float(np.mean(y_fit))
        self.n_zero = (self.distances == 0.0).sum(axis=1)
        self._sums: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _running_sums(self, weights: str) -> tuple[np.ndarray, np.ndarray]:
        """Running weighted sums along each sorted row: (numerators, denominators), cached per weighting.

        Regression: sum of w*y and of w. Classification: per-class sums of w
        (last axis) and their total. Rows with an exact match are handled
        apart (``_exact_match``), so their weights here are placeholders.
        """
        if weights in self._sums:
            return self._sums[weights]
        w = np.ones_like(self.distances)
        if weights == "distance":
            clean = self.n_zero == 0
            w[clean] = 1.0 / self.distances[clean]
        if self.task == "regression":
            sums = np.cumsum(self.targets * w, axis=1), np.cumsum(w, axis=1)
        else:
            votes = np.stack([np.cumsum(w * (self.targets == c), axis=1) for c in range(len(self.classes))], axis=2)
            total = votes[:, :, 0]
            for c in range(1, len(self.classes)):
                total = total + votes[:, :, c]
            sums = votes, total
        self._sums[weights] = sums
        return sums

    def predict(self, counts: np.ndarray, weights: str) -> np.ndarray:
        """Predictions (regression) or class probabilities (last axis) from each row's first ``counts`` neighbours.

        ``counts`` has one row per validation row; a count of 0 (no
        neighbour within a radius) gives the training-fold prior.
        """
        rows = np.arange(len(counts))[:, None]
        take = np.maximum(counts, 1) - 1
        numerators, denominators = self._running_sums(weights)
        if self.task == "regression":
            out = numerators[rows, take] / denominators[rows, take]
        else:
            out = numerators[rows, take] / denominators[rows, take][..., None]
        if weights == "distance" and self.n_zero.any():
            self._exact_match(out, counts)
        out[counts == 0] = self.prior
        return out

    def _exact_match(self, out: np.ndarray, counts: np.ndarray) -> None:
        """A row with training rows at distance 0 takes only those, equally weighted (scikit-learn's rule)."""
        uniform_numerators, uniform_denominators = self._running_sums("uniform")
        for i in np.flatnonzero(self.n_zero):
            used = np.minimum(counts[i], self.n_zero[i])
            take = np.maximum(used, 1) - 1
            if self.task == "regression":
                out[i] = uniform_numerators[i, take] / uniform_denominators[i, take]
            else:
                out[i] = uniform_numerators[i, take] / uniform_denominators[i, take][:, None]

    def tie_cells(self, k_max: int) -> dict[int, list[int]]:
        """{k: validation rows} where equidistant rows with different targets straddle the k-th place."""
        d = self.distances
        equal_next = d[:, 1:] == d[:, :-1]
        limit = min(k_max, equal_next.shape[1])
        cells: dict[int, list[int]] = defaultdict(list)
        for i in np.flatnonzero(equal_next[:, :limit].any(axis=1)):
            row = equal_next[i]
            j = 0
            while j < limit:
                if not row[j]:
                    j += 1
                    continue
                start = j
                while j < len(row) and row[j]:
                    j += 1
                # Positions start..j hold equal distances; k in start+1..j cuts through them.
                if np.any(self.targets[i, start:j + 1] != self.targets[i, start]):
                    for k in range(start + 1, min(j, k_max) + 1):
                        cells[k].append(int(i))
        return cells

    def knn_predictions(self, weights: str, k_max: int, scikit_learn_ties: bool = True) -> np.ndarray:
        """Predictions for k = 1..k_max (axis 1), tie cells answered by scikit-learn itself."""
        counts = np.broadcast_to(np.arange(1, k_max + 1), (len(self.X_val), k_max))
        out = self.predict(counts, weights)
        if scikit_learn_ties:
            cells = self.tie_cells(k_max)
            if cells:
                self._answer_ties(out, cells, weights)
        return out

    def _answer_ties(self, out: np.ndarray, cells: dict[int, list[int]], weights: str) -> None:
        from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

        kind = KNeighborsClassifier if self.task == "classification" else KNeighborsRegressor
        model = kind(n_neighbors=1, weights=weights, p=self.p, algorithm=ALGORITHM).fit(self.X_fit, self.y_fit)
        for k, rows in cells.items():
            model.set_params(n_neighbors=k)
            X = self.X_val[rows]
            out[rows, k - 1] = model.predict_proba(X) if self.task == "classification" else model.predict(X)

    def radius_counts(self, radii: np.ndarray) -> np.ndarray:
        """How many training-fold rows lie within each radius (distance <= r) of each validation row."""
        return np.stack([np.searchsorted(row, radii, side="right") for row in self.distances])


def column_scores(scoring: Scoring, y_true: np.ndarray, predictions: np.ndarray, classes=None) -> np.ndarray:
    """The scorer's value for each column of predictions (regression) or probabilities (classification)."""
    if scoring.scorer == "neg_mean_squared_error":
        return -np.mean((predictions - y_true[:, None]) ** 2, axis=0)
    encoded = np.searchsorted(classes, y_true)
    if scoring.scorer == "roc_auc":
        return roc_auc_columns(encoded == 1, predictions[..., 1])
    predicted = np.argmax(predictions, axis=-1)
    recalls = [np.mean(predicted[encoded == c] == c, axis=0) for c in np.unique(encoded)]
    return np.mean(recalls, axis=0)


def roc_auc_columns(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each column of ``scores`` (Mann-Whitney, ties counted half, as ``roc_auc_score``)."""
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    ranks = rankdata(scores, axis=0)
    return (ranks[positive].sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


# --- the search --------------------------------------------------------------------------


@dataclass
class Curve:
    """One setting's CV scores over its size grid: fold_scores[fold, value] (larger is better)."""

    setting: Setting
    values: np.ndarray
    fold_scores: np.ndarray
    # Radius family: the mean number of neighbours within each radius, and the share of
    # validation rows with none (answered with the prior), over all folds.
    mean_neighbours: np.ndarray | None = None
    outlier_share: np.ndarray | None = None

    @cached_property
    def mean(self) -> np.ndarray:
        return self.fold_scores.mean(axis=0)

    @cached_property
    def std(self) -> np.ndarray:
        return self.fold_scores.std(axis=0)

    def candidate(self, index: int) -> Candidate:
        extra = {}
        if self.mean_neighbours is not None:
            extra = {"mean_neighbours": float(self.mean_neighbours[index]),
                     "outlier_share": float(self.outlier_share[index])}
        return Candidate(self.setting, float(self.values[index]), self.fold_scores[:, index], extra)


@dataclass
class Candidate:
    setting: Setting
    value: float
    fold_scores: np.ndarray
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        return self.setting.params(self.value)

    @property
    def mean(self) -> float:
        return float(self.fold_scores.mean())

    @property
    def std(self) -> float:
        return float(self.fold_scores.std())

    def repeat_std(self, n_repeats: int) -> float:
        """Spread of the per-repeat means: how much the estimate moves with the fold assignment."""
        return float(self.fold_scores.reshape(n_repeats, -1).mean(axis=1).std())


@dataclass
class SearchResult:
    scoring: Scoring
    curves: list[Curve]
    n_splits: int
    n_repeats: int
    k_max: int

    @property
    def n_candidates(self) -> int:
        return sum(len(curve.values) for curve in self.curves)

    def families(self) -> list[str]:
        return list(dict.fromkeys(curve.setting.family for curve in self.curves))

    def candidates(self) -> Iterator[Candidate]:
        for curve in self.curves:
            for index in range(len(curve.values)):
                yield curve.candidate(index)

    def best(self, family: str | None = None, not_setting: Setting | None = None) -> Candidate | None:
        """Highest mean CV score; ties go to the earlier candidate (search order, smaller k or radius first)."""
        best = None
        for curve in self.curves:
            if (family and curve.setting.family != family) or curve.setting == not_setting:
                continue
            index = int(np.argmax(curve.mean))
            if best is None or curve.mean[index] > best[0].mean[best[1]]:
                best = (curve, index)
        if best is None:
            return None
        curve, index = best
        return curve.candidate(index)

    def runner_up(self, family: str) -> Candidate | None:
        """The family's best candidate with another scaler, metric or weighting than its winner's.

        The k next to the winner's always scores about the same and says
        nothing; the best of a different setting says what the choice of
        setting is worth.
        """
        winner = self.best(family)
        return self.best(family, not_setting=winner.setting) if winner else None


Progress = Callable[[int, int, str], None]


def run(task: str, X: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], scoring: Scoring,
        k_max: int, families: tuple[str, ...] = FAMILIES, n_repeats: int = 1,
        progress: Progress | None = None) -> SearchResult:
    """Score every candidate of ``families`` on ``folds``."""
    all_settings = settings(families)
    radii = {}
    if "radius" in families:
        for scaler, p in itertools.product(SCALERS, METRIC_P):
            radii[(scaler, p)] = radius_grid(X, scaler, p)
    scores: dict[Setting, list[np.ndarray]] = defaultdict(list)
    neighbour_counts: dict[Setting, list[np.ndarray]] = defaultdict(list)
    n_steps = len(folds) * len(SCALERS) * len(METRIC_P)
    step = 0
    for fold_index, (train, validation) in enumerate(folds):
        for scaler_name in SCALERS:
            scaler = make_scaler(scaler_name).fit(X[train])
            X_fit, X_val = scaler.transform(X[train]), scaler.transform(X[validation])
            for p in METRIC_P:
                neighbours = FoldNeighbours(task, X_fit, y[train], X_val, p)
                y_val = y[validation]
                for setting in all_settings:
                    if (setting.scaler, setting.p) != (scaler_name, p):
                        continue
                    if setting.family == "knn":
                        predictions = neighbours.knn_predictions(setting.weights, k_max)
                    else:
                        counts = neighbours.radius_counts(radii[(scaler_name, p)])
                        predictions = neighbours.predict(counts, setting.weights)
                        neighbour_counts[setting].append(counts)
                    scores[setting].append(column_scores(scoring, y_val, predictions, neighbours.classes))
                step += 1
                if progress:
                    progress(step, n_steps, f"fold {fold_index + 1}/{len(folds)}, {scaler_name}, p={p}")
    curves = []
    for setting in all_settings:
        if setting.family == "knn":
            curves.append(Curve(setting, np.arange(1, k_max + 1), np.array(scores[setting])))
        else:
            counts = np.concatenate(neighbour_counts[setting])
            curves.append(Curve(setting, radii[(setting.scaler, setting.p)], np.array(scores[setting]),
                                mean_neighbours=counts.mean(axis=0), outlier_share=(counts == 0).mean(axis=0)))
    return SearchResult(scoring, curves, len(folds) // n_repeats, n_repeats, k_max)


def out_of_fold_proba(task: str, params: dict[str, Any], X: np.ndarray, y: np.ndarray,
                      folds: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class probabilities of the chosen candidate for each validation row of each fold, pooled.

    Returns (probabilities, true labels, classes); with repeated CV every
    training row appears once per repeat.
    """
    probabilities, labels = [], []
    classes = None
    for train, validation in folds:
        model = build_pipeline(task, params).fit(X[train], y[train])
        classes = model.classes_
        probabilities.append(model.predict_proba(X[validation]))
        labels.append(y[validation])
    return np.vstack(probabilities), np.concatenate(labels), classes
