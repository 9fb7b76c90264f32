"""A real Open Inference Protocol client (tritonclient over HTTP) against gunicorn: it answers what /predict does."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from ml_models import learn

from .conftest import ADMIN, DATA_DIR

pytestmark = pytest.mark.slow

BOSTON_COLUMNS = ["CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "LSTAT"]
HEART_FLOATS = {"oldpeak"}


@pytest.fixture(scope="module")
def client(service):
    connection = triton.InferenceServerClient(url=service.host, connection_timeout=20, network_timeout=20)
    yield connection
    connection.close()


def dataset_rows(csv: str, target: str, drop: tuple[str, ...], n: int) -> tuple[list[str], np.ndarray]:
    data = learn.load_data(DATA_DIR / csv, target, drop)
    return list(data.feature_names), data.X[:: len(data.X) // n][:n]


def test_health_and_metadata(client, service):
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "sklearn-prediction-service"
    for name in ("boston-knn", "heart-knn"):
        assert client.is_model_ready(name)
        metadata = client.get_model_metadata(name)
        active = service.call("GET", f"/models/{name}")[1]["active"]["version"]
        assert metadata["versions"] == [active]
        assert client.is_model_ready(name, model_version=active)
        assert not client.is_model_ready(name, model_version=service.second_version if name == "boston-knn"
                                         else "20000101T000000Z")
    boston = client.get_model_metadata("boston-knn")
    assert boston["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 12]}]
    assert boston["parameters"]["feature_order"] == BOSTON_COLUMNS


def test_boston_infer_equals_predict(client, service):
    names, X = dataset_rows("boston_housing.csv", "MEDV", ("B",), 25)
    assert names == BOSTON_COLUMNS
    tensor = triton.InferInput("input-0", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X, binary_data=False)
    result = client.infer("boston-knn", [tensor])
    status, expected, _ = service.call("POST", "/predict", {"instances": X.tolist()})
    assert status == 200
    assert result.as_numpy("predict").tolist() == expected["predictions"]
    assert result.as_numpy("ood_score").tolist() == [item["score"] for item in expected["ood"]]
    assert result.as_numpy("ood_flagged").tolist() == [item["flagged"] for item in expected["ood"]]
    response = result.get_response()
    assert response["model_version"] == expected["model"]["version"]
    # The row in the log is the V2 request, written once like any predict request's.
    status, row, _ = service.call("GET", f"/predictions/{response['parameters']['request_id']}", headers=ADMIN)
    assert status == 200 and row["endpoint"] == "/v2/models/boston-knn/infer" and row["n_rows"] == 25


def test_heart_infer_with_a_tensor_per_feature_equals_predict(client, service):
    names, X = dataset_rows("heart.csv", "target", (), 20)
    inputs = []
    for column, name in enumerate(names):
        integer = name not in HEART_FLOATS
        tensor = triton.InferInput(name, [len(X)], "INT64" if integer else "FP64")
        tensor.set_data_from_numpy(X[:, column].astype(np.int64 if integer else np.float64), binary_data=False)
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput(name, binary_data=False) for name in ("predict", "predict_proba")]
    result = client.infer("heart-knn", inputs, outputs=outputs, request_id="heart-batch-1")
    status, expected, _ = service.call("POST", "/models/heart-knn/predict", {"instances": X.tolist()})
    assert status == 200
    assert result.as_numpy("predict").tolist() == expected["predictions"]
    assert result.as_numpy("predict_proba").tolist() == [[p["0"], p["1"]] for p in expected["probabilities"]]
    assert result.as_numpy("ood_score") is None  # only the outputs asked for
    assert result.get_response()["id"] == "heart-batch-1"


def test_only_the_active_version_answers(client, service):
    _, X = dataset_rows("boston_housing.csv", "MEDV", ("B",), 2)
    tensor = triton.InferInput("input-0", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X, binary_data=False)
    active = client.get_model_metadata("boston-knn")["versions"][0]
    assert client.infer("boston-knn", [tensor], model_version=active).get_response()["model_version"] == active
    with pytest.raises(InferenceServerException, match=f"only the active version {active} answers"):
        client.infer("boston-knn", [tensor], model_version=service.second_version)


def test_errors_reach_the_client_with_their_locations(client, service):
    tensor = triton.InferInput("input-0", [1, 12], "FP64")
    tensor.set_data_from_numpy(np.array([[-1.0, 0, 7, 3, 0.5, 6.2, 60, 4, 4, 300, 17, 10]]), binary_data=False)
    with pytest.raises(InferenceServerException) as refused:
        client.infer("boston-knn", [tensor])
    message = str(refused.value)
    assert "inputs/input-0/0/CRIM" in message and "inputs/input-0/0/CHAS: must be one of 0, 1" in message
    binary = triton.InferInput("input-0", [1, 12], "FP64")
    binary.set_data_from_numpy(np.zeros((1, 12)), binary_data=True)
    with pytest.raises(InferenceServerException, match="binary_data=False"):
        client.infer("boston-knn", [binary])
    service.wait_for_log(1)
    status, page, _ = service.call("GET", "/predictions?status=400&model=boston-knn", headers=ADMIN)
    assert status == 200
    assert any(row["endpoint"] == "/v2/models/boston-knn/infer" and "inputs/input-0/0/CHAS" in row["error"]
               for row in page["items"])
