"""The search's CV scores are scikit-learn's own, for every k and radius, from one neighbour query per fold."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.preprocessing import RobustScaler, StandardScaler

from ml_models import learn, search

from .conftest import DATA_DIR

N_REPEATS = 1
K_SAMPLE = (1, 2, 5, 13, 40)


def boston():
    data = learn.load_data(DATA_DIR / "boston_housing.csv", "MEDV", ("B",))
    return "regression", data.X, data.y


def heart():
    data = learn.load_data(DATA_DIR / "heart.csv", "target")
    return "classification", data.X, data.y.astype(int)


def tied(task: str):
    """Three integer features with three values each: duplicates and equidistant rows everywhere."""
    rng = np.random.default_rng(5)
    X = rng.integers(0, 3, size=(90, 3)).astype(float)
    if task == "classification":
        return task, X, rng.integers(0, 2, size=90)
    return task, X, rng.integers(0, 6, size=90).astype(float)


DATASETS = {
    "boston": boston,
    "heart": heart,
    "tied-regression": lambda: tied("regression"),
    "tied-classification": lambda: tied("classification"),
}


def run_search(task, X, y, families=search.FAMILIES):
    folds = search.make_folds(task, X, y, 5, N_REPEATS, seed=3)
    n_classes = len(np.unique(y)) if task == "classification" else 0
    scoring = search.scoring_for(task, n_classes)
    k_max = search.smallest_fold(folds)
    return folds, scoring, search.run(task, X, y, folds, scoring, k_max, families, N_REPEATS)


def fold_scores(result: search.SearchResult, setting: search.Setting) -> np.ndarray:
    (curve,) = [c for c in result.curves if c.setting == setting]
    return curve.fold_scores


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_every_k_scores_as_grid_search_cv_on_the_same_folds(dataset):
    task, X, y = DATASETS[dataset]()
    folds, scoring, result = run_search(task, X, y, families=("knn",))
    ks = [k for k in K_SAMPLE if k <= result.k_max] + [result.k_max]
    grid = GridSearchCV(
        search.build_pipeline(task, {"family": "knn", "scaler": "standard", "p": 2, "weights": "uniform",
                                     "n_neighbors": 1}),
        {"scale": [StandardScaler(), RobustScaler()], "knn__p": [2, 1], "knn__weights": list(search.WEIGHTS),
         "knn__n_neighbors": ks},
        scoring=scoring.scorer, cv=folds, refit=False,
    ).fit(X, y)
    n_compared = 0
    for index, params in enumerate(grid.cv_results_["params"]):
        scaler = "standard" if isinstance(params["scale"], StandardScaler) else "robust"
        setting = search.Setting("knn", scaler, params["knn__p"], params["knn__weights"])
        theirs = np.array([grid.cv_results_[f"split{i}_test_score"][index] for i in range(len(folds))])
        ours = fold_scores(result, setting)[:, params["knn__n_neighbors"] - 1]
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9,
                                   err_msg=f"{setting} k={params['knn__n_neighbors']}")
        n_compared += len(folds)
    assert n_compared == len(ks) * 8 * len(folds)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_ties_at_the_k_th_place_are_answered_by_scikit_learn(task):
    # On the tied data, taking the first k of the sorted list would give other scores than
    # scikit-learn for some (fold, k): the cells answered by scikit-learn are what makes the search exact.
    _, X, y = tied(task)
    folds = search.make_folds(task, X, y, 5, 1, seed=3)
    scoring = search.scoring_for(task, 2)
    k_max = search.smallest_fold(folds)
    n_tie_cells, n_different = 0, 0
    for train, validation in folds:
        scaler = StandardScaler().fit(X[train])
        neighbours = search.FoldNeighbours(task, scaler.transform(X[train]), y[train],
                                           scaler.transform(X[validation]), p=1)
        n_tie_cells += sum(len(rows) for rows in neighbours.tie_cells(k_max).values())
        exact = neighbours.knn_predictions("uniform", k_max)
        naive = neighbours.knn_predictions("uniform", k_max, scikit_learn_ties=False)
        classes = neighbours.classes
        n_different += int(np.sum(search.column_scores(scoring, y[validation], exact, classes)
                                  != search.column_scores(scoring, y[validation], naive, classes)))
    assert n_tie_cells > 0
    assert n_different > 0


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_every_radius_scores_as_cross_val_score_on_the_same_folds(dataset):
    task, X, y = DATASETS[dataset]()
    folds, scoring, result = run_search(task, X, y, families=("radius",))
    for curve in result.curves:
        # The two ends and a radius between them.
        for index in sorted({0, len(curve.values) // 2, len(curve.values) - 1}):
            params = curve.setting.params(curve.values[index])
            theirs = cross_val_score(search.build_pipeline(task, params), X, y, cv=folds, scoring=scoring.scorer)
            np.testing.assert_allclose(curve.fold_scores[:, index], theirs, rtol=1e-9, atol=1e-9,
                                       err_msg=f"{curve.setting} radius={params['radius']}")


def test_radius_grid_runs_from_no_neighbours_to_everything():
    task, X, y = boston()
    _, _, result = run_search(task, X, y, families=("radius",))
    for curve in result.curves:
        assert curve.outlier_share[0] > 0.2, "the smallest radius leaves many rows without a neighbour"
        assert curve.outlier_share[-1] == 0.0
        assert curve.mean_neighbours[-1] > 0.9 * result.k_max
        assert np.all(np.diff(curve.values) > 0)


def test_roc_auc_columns_is_roc_auc_score_with_ties():
    rng = np.random.default_rng(0)
    positive = rng.random(60) < 0.4
    scores = rng.integers(0, 5, size=(60, 7)) / 4  # heavy ties
    expected = [roc_auc_score(positive, scores[:, j]) for j in range(7)]
    np.testing.assert_allclose(search.roc_auc_columns(positive, scores), expected, rtol=1e-12)


def test_best_and_runner_up():
    task, X, y = boston()
    _, _, result = run_search(task, X[:200], y[:200])
    everything = list(result.candidates())
    assert len(everything) == result.n_candidates
    best = result.best()
    assert best.mean == max(c.mean for c in everything)
    for family in result.families():
        winner, runner_up = result.best(family), result.runner_up(family)
        assert winner.setting.family == family == runner_up.setting.family
        assert runner_up.setting != winner.setting
        others = [c for c in everything if c.setting.family == family and c.setting != winner.setting]
        assert runner_up.mean == max(c.mean for c in others)
    assert {s.family for s in (c.setting for c in everything)} == set(search.FAMILIES)
    assert len({(s.scaler, s.p, s.weights) for s in (c.setting for c in everything)}) == len(
        list(itertools.product(search.SCALERS, search.METRIC_P, search.WEIGHTS)))


# --- the radius estimators -------------------------------------------------------------------


def test_radius_estimators_answer_inliers_as_scikit_learn_and_outliers_with_the_prior():
    from sklearn.neighbors import RadiusNeighborsClassifier, RadiusNeighborsRegressor

    from ml_models.estimators import PriorRadiusNeighborsClassifier, PriorRadiusNeighborsRegressor

    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 3))
    y_value = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=120)
    y_class = (y_value > 0.3).astype(int) + 3  # labels 3 and 4
    inliers = X[:10] + 0.05
    far = np.array([[40.0, 40.0, 40.0], [-40.0, 0.0, 0.0]])
    queries = np.vstack([inliers, far])
    for weights in search.WEIGHTS:
        ours = PriorRadiusNeighborsRegressor(radius=1.0, weights=weights, n_neighbors=4).fit(X, y_value)
        theirs = RadiusNeighborsRegressor(radius=1.0, weights=weights).fit(X, y_value)
        predicted = ours.predict(queries)
        np.testing.assert_allclose(predicted[:10], theirs.predict(inliers), rtol=1e-12)
        assert predicted[10:].tolist() == [pytest.approx(y_value.mean(), rel=1e-12)] * 2

        ours = PriorRadiusNeighborsClassifier(radius=1.0, weights=weights, n_neighbors=4).fit(X, y_class)
        theirs = RadiusNeighborsClassifier(radius=1.0, weights=weights).fit(X, y_class)
        proba = ours.predict_proba(queries)
        np.testing.assert_allclose(proba[:10], theirs.predict_proba(inliers), rtol=1e-12)
        frequencies = np.bincount(y_class - 3) / len(y_class)
        np.testing.assert_allclose(proba[10:], [frequencies, frequencies])
        assert ours.predict(queries).tolist() == ours.classes_[proba.argmax(axis=1)].tolist()
        assert set(ours.classes_) == {3, 4}
    # What the service's out-of-distribution score asks of any neighbours model:
    distances, indices = ours.kneighbors(far)
    assert distances.shape == indices.shape == (2, 4)
    assert ours.get_params()["n_neighbors"] == 4 and "outlier_label" not in ours.get_params()
