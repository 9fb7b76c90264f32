"""The exact KNN path gives scikit-learn's own answers, ties and all, or steps aside."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from flask_app.predictor import SMALL_BATCH, ExactKNN, PipelinePredictor, build_predictor
from ml_models import bundle, learn, search

from .conftest import DATA_DIR


def loaded(path):
    result = bundle.load(path)
    return result, bundle.golden_matrix(result.info), result.reference["features"]


def test_boston_model_takes_the_exact_path_and_matches_predict(bundle_dir):
    model, golden, reference = loaded(bundle_dir)
    predictor = build_predictor(model.model, "regression", golden, reference)
    assert isinstance(predictor, ExactKNN)
    rng = np.random.default_rng(3)
    queries = reference[rng.choice(len(reference), 1000)] * rng.uniform(0.9, 1.1, size=(1000, reference.shape[1]))
    for n in (1, 7, SMALL_BATCH, SMALL_BATCH + 1, 1000):
        ours = predictor.predict(queries[:n])
        np.testing.assert_allclose(ours.values, model.model.predict(queries[:n]), rtol=1e-12, atol=1e-12)
        knn = model.model.named_steps["knn"]
        distances, _ = knn.kneighbors(model.model.named_steps["scale"].transform(queries[:n]))
        np.testing.assert_allclose(ours.mean_distance, distances.mean(axis=1), rtol=1e-12)


def test_heart_classifier_takes_the_exact_path_with_probabilities(heart_bundle):
    model, golden, reference = loaded(heart_bundle)
    predictor = build_predictor(model.model, "classification", golden, reference)
    assert isinstance(predictor, ExactKNN)
    queries = reference[:40] + 0.3
    ours = predictor.predict(queries)
    np.testing.assert_array_equal(ours.values, model.model.predict(queries))
    np.testing.assert_allclose(ours.proba, model.model.predict_proba(queries), rtol=1e-12)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("seed", [1, 4])
def test_ties_among_equidistant_neighbours_follow_scikit_learn(weights, seed):
    # A shuffled grid: many training points are exactly equidistant from the queries, and with
    # these orders brute force alone would pick other neighbours than the KD tree (checked).
    grid = np.array([[x, y] for x in range(6) for y in range(6)], dtype=float)
    grid = grid[np.random.default_rng(seed).permutation(len(grid))]
    target = np.arange(len(grid), dtype=float) ** 1.5
    pipeline = Pipeline([("scale", StandardScaler()), ("knn", KNeighborsRegressor(n_neighbors=3, weights=weights))])
    pipeline.fit(grid, target)
    predictor = ExactKNN.compile(pipeline, "regression")
    queries = np.array([[2.5, 2.5], [1.5, 3.0], [0.0, 0.0], [4.5, 4.5], [3.0, 3.0], [0.5, 0.5], [2.5, 0.0]])
    np.testing.assert_allclose(predictor.predict(queries).values, pipeline.predict(queries), rtol=1e-12)


def test_unsupported_pipelines_use_their_own_predict(bundle_dir):
    model, golden, reference = loaded(bundle_dir)
    chebyshev = model.model.named_steps["knn"].set_params(metric="chebyshev")
    assert chebyshev.metric == "chebyshev"
    assert isinstance(build_predictor(model.model, "regression", golden, reference), PipelinePredictor)
    unfitted = search.build_pipeline("regression", {"family": "knn", "scaler": "standard", "p": 2,
                                                    "weights": "uniform", "n_neighbors": 3})
    assert ExactKNN.compile(unfitted, "regression") is None


def boston_data():
    data = learn.load_data(DATA_DIR / "boston_housing.csv", "MEDV", ("B",))
    return data.X, data.y


def heart_data():
    data = learn.load_data(DATA_DIR / "heart.csv", "target")
    return data.X, data.y.astype(int)


def jittered(X, n, seed=3):
    rng = np.random.default_rng(seed)
    return X[rng.choice(len(X), n)] * rng.uniform(0.9, 1.1, size=(n, X.shape[1]))


@pytest.mark.parametrize("scaler", search.SCALERS)
@pytest.mark.parametrize("p", search.METRIC_P)
@pytest.mark.parametrize("weights", search.WEIGHTS)
def test_every_knn_setting_the_search_can_choose_takes_the_exact_path(scaler, p, weights):
    X, y = boston_data()
    params = {"family": "knn", "scaler": scaler, "p": p, "weights": weights, "n_neighbors": 6}
    model = search.build_pipeline("regression", params).fit(X[:450], y[:450])
    predictor = build_predictor(model, "regression", X[450:455], X[:450])
    assert isinstance(predictor, ExactKNN)
    queries = jittered(X, 300)
    for n in (1, 7, SMALL_BATCH, SMALL_BATCH + 1, 300):
        ours = predictor.predict(queries[:n])
        np.testing.assert_allclose(ours.values, model.predict(queries[:n]), rtol=1e-12, atol=1e-12)
        distances, _ = model.named_steps["knn"].kneighbors(model.named_steps["scale"].transform(queries[:n]))
        np.testing.assert_allclose(ours.mean_distance, distances.mean(axis=1), rtol=1e-12)


def thresholded_heart(threshold, family="knn", positive=1):
    from sklearn.model_selection import FixedThresholdClassifier

    X, y = heart_data()
    params = {"family": family, "scaler": "robust", "p": 1, "weights": "distance",
              **({"n_neighbors": 15} if family == "knn" else {"radius": 6.0, "ood_neighbors": 9})}
    model = FixedThresholdClassifier(search.build_pipeline("classification", params), threshold=threshold,
                                     pos_label=positive, response_method="predict_proba").fit(X[:250], y[:250])
    return model, X, y


@pytest.mark.parametrize("positive", [1, 0])
@pytest.mark.parametrize("path", ["exact", "pipeline"])
def test_a_threshold_decides_the_class_and_leaves_the_probabilities_alone(path, positive):
    model, X, _ = thresholded_heart(0.3, positive=positive)
    predictor = build_predictor(model, "classification", X[250:255], X[:250])
    assert isinstance(predictor, ExactKNN)
    if path == "pipeline":
        predictor = PipelinePredictor(model, "classification")
    queries = np.vstack([X[250:], jittered(X, 200)])
    output = predictor.predict(queries)
    proba = model.estimator_.predict_proba(queries)
    np.testing.assert_allclose(output.proba, proba, rtol=1e-12)
    np.testing.assert_array_equal(output.values, model.predict(queries))
    np.testing.assert_array_equal(output.values, np.where(proba[:, positive] >= 0.3, positive, 1 - positive))
    most_probable = proba.argmax(axis=1)
    assert np.sum(output.values != most_probable) >= 5, "the threshold must change some answers"
    assert predictor.rule.threshold == 0.3 and predictor.rule.positive_index == positive


def test_a_radius_model_falls_back_to_its_own_predict_with_ood_distances():
    model, X, _ = thresholded_heart(0.45, family="radius")
    predictor = build_predictor(model, "classification", X[250:255], X[:250])
    assert isinstance(predictor, PipelinePredictor)
    queries = np.vstack([X[250:], jittered(X, 50), X[:1] * 50])  # the last row has no neighbour in the radius
    output = predictor.predict(queries)
    np.testing.assert_array_equal(output.values, model.predict(queries))
    np.testing.assert_allclose(output.proba, model.predict_proba(queries), rtol=1e-12)
    knn = model.estimator_.named_steps["knn"]
    distances, _ = knn.kneighbors(model.estimator_.named_steps["scale"].transform(queries))
    assert distances.shape[1] == 9
    np.testing.assert_allclose(output.mean_distance, distances.mean(axis=1))
    np.testing.assert_allclose(output.proba[-1], knn.prior_)


def test_disagreement_at_load_falls_back(bundle_dir, monkeypatch):
    model, golden, reference = loaded(bundle_dir)
    original = ExactKNN.predict

    def off_by_a_bit(self, X):
        output = original(self, X)
        output.values = output.values + 1e-6
        return output

    monkeypatch.setattr(ExactKNN, "predict", off_by_a_bit)
    predictor = build_predictor(model.model, "regression", golden, reference)
    assert isinstance(predictor, PipelinePredictor)
    np.testing.assert_allclose(predictor.predict(golden).values, [row["prediction"] for row in model.info["golden"]])


def test_a_radius_bundle_serves_through_the_fallback_with_its_golden_predictions(radius_bundle):
    model, golden, reference = loaded(radius_bundle)  # bundle.load checks the golden predictions itself
    assert model.info["best_params"]["family"] == "radius"
    assert type(model.model.named_steps["knn"]).__name__ == "PriorRadiusNeighborsRegressor"
    predictor = build_predictor(model.model, "regression", golden, reference)
    assert isinstance(predictor, PipelinePredictor)
    output = predictor.predict(golden)
    np.testing.assert_allclose(output.values, [row["prediction"] for row in model.info["golden"]], rtol=1e-12)
    # OOD distances over as many neighbours as the training rows have within the radius (median).
    ood = model.info["ood"]["neighbours"]
    knn = model.model.named_steps["knn"]
    assert knn.n_neighbors == ood >= 1
    distances, _ = knn.kneighbors(model.model.named_steps["scale"].transform(golden))
    np.testing.assert_allclose(output.mean_distance, distances.mean(axis=1))
    assert len(model.reference["neighbour_distances"]) == len(reference)


def test_the_thresholded_heart_bundle_takes_the_exact_path(heart_bundle):
    model, golden, reference = loaded(heart_bundle)
    predictor = build_predictor(model.model, "classification", golden, reference)
    assert isinstance(predictor, ExactKNN)
    assert predictor.rule.threshold == model.info["decision_threshold"]["threshold"]
