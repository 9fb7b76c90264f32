"""Two models from one service: the Boston regressor and the heart-disease classifier."""

from __future__ import annotations

import pytest

from ml_models import bundle

from .conftest import ADMIN, BOSTON_ROW, train_into

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
