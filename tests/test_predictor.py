"""The exact KNN path gives scikit-learn's own answers, ties and all, or steps aside."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from flask_app.predictor import SMALL_BATCH, ExactKNN, PipelinePredictor, build_predictor
from ml_models import bundle, learn


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
    manhattan = model.model.named_steps["knn"].set_params(metric="manhattan")
    assert manhattan.metric == "manhattan"
    assert isinstance(build_predictor(model.model, "regression", golden, reference), PipelinePredictor)
    assert ExactKNN.compile(learn.build_pipeline("regression"), "regression") is None  # not fitted


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
