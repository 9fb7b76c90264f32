"""Two models from one service: the Boston regressor and the heart-disease classifier."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ml_models import bundle, learn

from .conftest import ADMIN, BOSTON_ROW, DATA_DIR, train_into

HEART_ROW = {"age": 57, "sex": 1, "cp": 0, "trestbps": 140, "chol": 241, "fbs": 0, "restecg": 1,
             "thalach": 123, "exang": 1, "oldpeak": 0.2, "slope": 1, "ca": 0, "thal": 3}


@pytest.fixture
def client(app, both):
    return app.test_client()


def test_classifier_answers_classes_with_probabilities_and_is_logged(client, log_rows):
    response = client.post("/models/heart-knn/predict", json={"instances": [HEART_ROW, dict(HEART_ROW, cp=3)]})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["model"]["name"] == "heart-knn"
    assert all(label in (0, 1) for label in body["predictions"])
    for label, probabilities in zip(body["predictions"], body["probabilities"], strict=True):
        assert set(probabilities) == {"0", "1"}
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert max(probabilities, key=probabilities.get) == str(label)
    (row,) = log_rows()
    assert row["model_name"] == "heart-knn" and row["endpoint"] == "/models/heart-knn/predict"
    assert row["response_body"]["probabilities"] == body["probabilities"]


@pytest.mark.parametrize(("feature", "value"), [("cp", 4), ("thal", 5), ("ca", 7), ("sex", 2), ("slope", 1.5)])
def test_categoricals_outside_their_allowed_values_are_400(client, feature, value):
    response = client.post("/models/heart-knn/predict", json={"instances": [dict(HEART_ROW, **{feature: value})]})
    assert response.status_code == 400
    (error,) = response.get_json()["errors"]
    assert error["location"] == f"instances/0/{feature}" and "must be one of" in error["message"]


def test_heart_schema_records_the_categoricals(heart_bundle):
    features = {f["name"]: f for f in bundle.read_info(heart_bundle)["features"]}
    assert features["cp"]["allowed"] == [0, 1, 2, 3]
    assert features["thal"]["allowed"] == [0, 1, 2, 3]
    assert features["ca"]["allowed"] == [0, 1, 2, 3, 4]
    assert features["sex"]["allowed"] == [0, 1]
    assert "allowed" not in features["chol"]
    info = bundle.read_info(heart_bundle)
    assert info["task"] == "classification" and info["search"]["metric"] == "ROC AUC"
    holdout, baseline = info["metrics"]["holdout"], info["metrics"]["baseline"]
    assert holdout["roc_auc"] > baseline["roc_auc"] + 0.2
    assert len(holdout["confusion_matrix"]) == 2


def test_default_predict_keeps_serving_boston(client):
    body = client.post("/predict", json={"instances": [BOSTON_ROW]}).get_json()
    assert body["model"]["name"] == "boston-knn" and isinstance(body["predictions"][0], float)
    assert client.post("/models/boston-knn/predict", json={"instances": [BOSTON_ROW]}).get_json()["predictions"] \
        == body["predictions"]
    assert client.post("/models/nope/predict", json={"instances": [BOSTON_ROW]}).status_code == 404


def test_swapping_one_model_leaves_the_other_alone(client, both):
    heart_before = client.post("/models/heart-knn/predict", json={"instances": [HEART_ROW]}).get_json()["model"]
    new = train_into(both, "--max-neighbors", "2").name
    response = client.post(f"/models/boston-knn/versions/{new}/activate", headers=ADMIN)
    assert response.status_code == 200
    assert client.post("/predict", json={"instances": [BOSTON_ROW]}).get_json()["model"]["version"] == new
    heart_after = client.post("/models/heart-knn/predict", json={"instances": [HEART_ROW]}).get_json()["model"]
    assert heart_after == heart_before
    listing = client.get("/models").get_json()["models"]
    assert set(listing) == {"boston-knn", "heart-knn"}
    named = client.get("/models/heart-knn").get_json()
    assert named["active"]["version"] == heart_before["version"] and named["active"]["task"] == "classification"


def heart_rows() -> tuple[list[list[float]], np.ndarray]:
    data = learn.load_data(DATA_DIR / "heart.csv", "target")
    rows = [[int(v) if v == int(v) else float(v) for v in row] for row in data.X.tolist()]
    return rows, data.X


def test_the_stored_threshold_decides_the_class_and_leaves_the_probabilities(app, store, screening_bundle,
                                                                            log_rows):
    shutil.copytree(screening_bundle.parent, store / "heart-screening")
    client = app.test_client()
    rows, X = heart_rows()
    response = client.post("/models/heart-screening/predict", json={"instances": rows})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    model = bundle.load(screening_bundle).model
    proba = model.estimator_.predict_proba(X)  # the pipeline's own probabilities, before any threshold
    assert body["probabilities"] == [{"0": p0, "1": p1} for p0, p1 in np.round(proba, 6).tolist()]
    assert body["predictions"] == [1 if p1 >= 0.3 else 0 for p1 in proba[:, 1]]
    most_probable = proba.argmax(axis=1).tolist()
    assert sum(a != b for a, b in zip(body["predictions"], most_probable, strict=True)) >= 5
    (row,) = log_rows()
    assert row["response_body"]["predictions"] == body["predictions"]
    document = client.get("/models/heart-screening").get_json()["active"]
    threshold = document["decision_threshold"]
    assert threshold["threshold"] == 0.3 and threshold["positive_class"] == 1
    assert threshold["objective"] == "fixed:0.3" and "precision" in threshold["cv"]
    assert document["calibration"]["brier_cv"] > 0
    assert client.get("/model").get_json()["decision_threshold"] is None  # the Boston regressor has none


def test_a_radius_model_is_served_through_the_fallback_with_its_golden_predictions(app, store, radius_bundle):
    shutil.copytree(radius_bundle.parent, store / "boston-radius")
    client = app.test_client()
    golden = bundle.read_info(radius_bundle)["golden"]
    body = client.post("/models/boston-radius/predict", json={"instances": [row["input"] for row in golden]})
    assert body.status_code == 200, body.get_json()
    body = body.get_json()
    assert body["predictions"] == pytest.approx([row["prediction"] for row in golden], rel=1e-12)
    assert len(body["ood"]) == len(golden) and all(0 <= item["score"] <= 1 for item in body["ood"])
    assert client.get("/models/boston-radius").get_json()["active"]["best_params"]["family"] == "radius"
