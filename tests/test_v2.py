"""The Open Inference Protocol (V2) endpoints, in-process: same validation, predictions, log and swap as /predict."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from flask_app.tensors import as_instances, logged_predictions, to_instances

from .conftest import ADMIN, BOSTON_FEATURES, BOSTON_ROW, train_into
from .test_multi_model import HEART_ROW

ROOT = Path(__file__).resolve().parent.parent
BOSTON_INFER = "/v2/models/boston-knn/infer"
HEART_INFER = "/v2/models/heart-knn/infer"
HEART_FEATURES = list(HEART_ROW)
HEART_INTEGERS = set(HEART_FEATURES) - {"oldpeak"}


@pytest.fixture
def client(app, both):
    return app.test_client()


def matrix(rows: list[dict], names: list[str], datatype: str = "FP64", nested: bool = False) -> dict:
    data = [[row[name] for name in names] for row in rows]
    return {"name": "input-0", "shape": [len(rows), len(names)], "datatype": datatype,
            "data": data if nested else [value for values in data for value in values]}


def infer(client, path: str, body, **kwargs):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(path, data=data, **kwargs)


def output(body: dict, name: str) -> list:
    (tensor,) = [tensor for tensor in body["outputs"] if tensor["name"] == name]
    return tensor["data"]


def logged(client, request_id: str) -> dict:
    """The log row of a request, through the API (which finds a row as soon as its answer was sent)."""
    deadline = time.monotonic() + 10
    while True:
        response = client.get(f"/predictions/{request_id}", headers=ADMIN)
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, response.get_json()
            return response.get_json()
        time.sleep(0.05)


def log_total(client, expected: int, **filters) -> int:
    """How many rows match, waiting briefly for rows still on their way to the table."""
    deadline = time.monotonic() + 10
    while True:
        total = client.get("/predictions", query_string=filters, headers=ADMIN).get_json()["total"]
        if total >= expected or time.monotonic() > deadline:
            return total
        time.sleep(0.05)


# --- server and model metadata -------------------------------------------------------


def test_server_metadata_and_health(client):
    body = client.get("/v2").get_json()
    assert body == {"name": "sklearn-prediction-service", "extensions": [],
                    "version": tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]}
    assert client.get("/v2/health/live").get_json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.get_json() == {"ready": True}


def test_server_is_not_ready_while_a_model_has_no_verified_version(client, both):
    (both / "heart-knn" / "ACTIVE").write_text("20000101T000000Z\n")
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 400
    assert "heart-knn" in ready.get_json()["error"]
    model_ready = client.get("/v2/models/heart-knn/ready")
    assert model_ready.status_code == 400 and model_ready.get_json()["ready"] is False
    assert client.get("/v2/models/boston-knn/ready").status_code == 200


def test_model_metadata_lists_the_tensors(client):
    model = client.get("/model").get_json()
    boston = client.get("/v2/models/boston-knn").get_json()
    assert boston["name"] == "boston-knn" and boston["versions"] == [model["version"]]
    assert boston["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 12]}]
    assert [(t["name"], t["datatype"], t["shape"]) for t in boston["outputs"]] == [
        ("predict", "FP64", [-1]), ("ood_score", "FP64", [-1]), ("ood_flagged", "BOOL", [-1])]
    assert boston["parameters"]["feature_order"] == [f["name"] for f in model["features"]] == BOSTON_FEATURES
    assert {t["name"]: t["datatype"] for t in boston["parameters"]["feature_inputs"]}["CHAS"] == "INT64"
    heart = client.get("/v2/models/heart-knn").get_json()
    assert [(t["name"], t["datatype"], t["shape"]) for t in heart["outputs"]][:2] == [
        ("predict", "INT64", [-1]), ("predict_proba", "FP64", [-1, 2])]
    assert heart["parameters"]["classes"] == [0, 1] and heart["parameters"]["task"] == "classification"
    versioned = client.get(f"/v2/models/boston-knn/versions/{model['version']}")
    assert versioned.status_code == 200 and versioned.get_json() == boston
    ready = client.get(f"/v2/models/boston-knn/versions/{model['version']}/ready").get_json()
    assert ready == {"name": "boston-knn", "version": model["version"], "ready": True}


# --- inference equals /predict ---------------------------------------------------------------


ROWS = [BOSTON_ROW, dict(BOSTON_ROW, RM=7.5, LSTAT=4.0), dict(BOSTON_ROW, CRIM=25.0, AGE=98.0, RM=12.5)]


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_one_matrix_tensor_answers_what_predict_answers(client, nested):
    expected = client.post("/predict", json={"instances": ROWS}).get_json()
    response = infer(client, BOSTON_INFER, {"inputs": [matrix(ROWS, BOSTON_FEATURES, nested=nested)]})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["model_name"] == "boston-knn" and body["model_version"] == expected["model"]["version"]
    assert output(body, "predict") == expected["predictions"]
    assert output(body, "ood_score") == [item["score"] for item in expected["ood"]]
    assert output(body, "ood_flagged") == [item["flagged"] for item in expected["ood"]]
    assert body["parameters"]["warnings"] == expected["warnings"] != []
    assert body["parameters"]["model_sha256"] == expected["model"]["sha256"]
    assert {tensor["name"]: tensor["shape"] for tensor in body["outputs"]}["predict"] == [3]
    assert body["id"] == body["parameters"]["request_id"] == response.headers["X-Request-ID"]


def test_one_tensor_per_feature_answers_what_predict_answers(client):
    rows = [HEART_ROW, dict(HEART_ROW, cp=3, thal=2, age=41)]
    expected = client.post("/models/heart-knn/predict", json={"instances": rows}).get_json()
    inputs = [{"name": name, "shape": [2], "datatype": "INT64" if name in HEART_INTEGERS else "FP64",
               "data": [row[name] for row in rows]} for name in reversed(HEART_FEATURES)]
    body = infer(client, HEART_INFER, {"inputs": inputs, "id": "client-7"}).get_json()
    assert body["id"] == "client-7"
    assert output(body, "predict") == expected["predictions"]
    assert output(body, "predict_proba") == [p[label] for p in expected["probabilities"] for label in ("0", "1")]


def test_fp32_values_are_the_float32_numbers(client):
    row = dict(BOSTON_ROW, NOX=0.538, DIS=4.0900001)
    as_float32 = {name: float(np.float32(value)) for name, value in row.items()}
    expected = client.post("/predict", json={"instances": [as_float32]}).get_json()["predictions"]
    body = infer(client, BOSTON_INFER, {"inputs": [matrix([row], BOSTON_FEATURES, "FP32")]}).get_json()
    assert output(body, "predict") == expected


def test_integer_tensors_are_accepted(client):
    row = {name: round(value) for name, value in BOSTON_ROW.items()}
    expected = client.post("/predict", json={"instances": [row]}).get_json()["predictions"]
    for datatype in ("INT64", "INT32", "UINT16"):
        body = infer(client, BOSTON_INFER, {"inputs": [matrix([row], BOSTON_FEATURES, datatype)]}).get_json()
        assert output(body, "predict") == expected, datatype


def test_outputs_can_be_chosen_and_binary_output_requests_get_json(client):
    body = infer(client, BOSTON_INFER, {"inputs": [matrix([BOSTON_ROW], BOSTON_FEATURES)],
                                        "outputs": [{"name": "ood_score", "parameters": {"binary_data": True}}],
                                        "parameters": {"binary_data_output": True}}).get_json()
    assert [tensor["name"] for tensor in body["outputs"]] == ["ood_score"]


def test_a_large_batch_carries_the_drift_report(client):
    rows = [dict(BOSTON_ROW, RM=6.0 + i / 100) for i in range(40)]
    body = infer(client, BOSTON_INFER, {"inputs": [matrix(rows, BOSTON_FEATURES)]}).get_json()
    assert body["parameters"]["drift"]["n_rows"] == 40


def test_json_without_a_content_type_is_accepted_and_other_types_are_415(client):
    body = json.dumps({"inputs": [matrix([BOSTON_ROW], BOSTON_FEATURES)]})
    untyped = client.post(BOSTON_INFER, data=body, content_type="")
    assert untyped.status_code == 200, untyped.get_json()
    wrong = client.post(BOSTON_INFER, data=body, content_type="text/plain")
    assert wrong.status_code == 415 and wrong.content_type == "application/json"
    assert "application/json" in wrong.get_json()["error"]


# --- errors: the protocol's {"error": ...} with every location ---------------------------------------


def boston_tensor(**changes) -> dict:
    return dict(matrix([BOSTON_ROW], BOSTON_FEATURES), **changes)


def per_feature(row: dict, **changes) -> list[dict]:
    tensors = {name: {"name": name, "shape": [1], "datatype": "FP64", "data": [value]} for name, value in row.items()}
    for name, tensor in changes.items():
        if tensor is None:
            del tensors[name]
        else:
            tensors[name] = tensor
    return list(tensors.values())


BAD_REQUESTS = [
    # (id, body, status, a location the answer must name)
    ("not-json", b"{inputs: [", 400, None),
    ("predict-shape", {"instances": [BOSTON_ROW]}, 400, "instances"),
    ("no-inputs", {"outputs": []}, 400, "inputs"),
    ("empty-inputs", {"inputs": []}, 400, "inputs"),
    ("shape-and-data-disagree", {"inputs": [boston_tensor(shape=[2, 12])]}, 400, "inputs/input-0/data"),
    ("too-few-columns", {"inputs": [boston_tensor(shape=[2, 6])]}, 400, "inputs/input-0/shape"),
    ("unknown-datatype", {"inputs": [boston_tensor(datatype="BYTES")]}, 400, "inputs/input-0/datatype"),
    ("no-datatype", {"inputs": [{"name": "x", "shape": [1, 12], "data": [0] * 12}]}, 400, "inputs/x/datatype"),
    ("fraction-in-int", {"inputs": [boston_tensor(datatype="INT64")]}, 400, "inputs/input-0/0/CRIM"),
    ("int8-overflow", {"inputs": [dict(boston_tensor(datatype="INT8"),
                                       data=[0, 0, 7, 0, 0, 6, 60, 4, 4, 300, 17, 10])]}, 400, "inputs/input-0/0/TAX"),
    ("string-value", {"inputs": [dict(boston_tensor(), data=["1", *([0] * 11)])]}, 400, "inputs/input-0/0/CRIM"),
    ("boolean-value", {"inputs": [dict(boston_tensor(), data=[True, *([0] * 11)])]}, 400, "inputs/input-0/0/CRIM"),
    ("negative-crim", {"inputs": [dict(boston_tensor(), data=[-1, *list(BOSTON_ROW.values())[1:]])]},
     400, "inputs/input-0/0/CRIM"),
    ("chas-not-allowed", {"inputs": per_feature(BOSTON_ROW, CHAS={"name": "CHAS", "shape": [1],
                                                                   "datatype": "INT64", "data": [2]})},
     400, "inputs/CHAS/0"),
    ("missing-feature", {"inputs": per_feature(BOSTON_ROW, LSTAT=None)}, 400, "inputs/LSTAT"),
    ("unknown-feature", {"inputs": per_feature(BOSTON_ROW, FOO={"name": "FOO", "shape": [1], "datatype": "FP64",
                                                                "data": [1]})}, 400, "inputs/FOO"),
    ("lengths-differ", {"inputs": per_feature(BOSTON_ROW, RM={"name": "RM", "shape": [2], "datatype": "FP64",
                                                              "data": [6, 7]})}, 400, "inputs"),
    ("binary-data", {"inputs": [boston_tensor(parameters={"binary_data_size": 96})]}, 400,
     "inputs/input-0/parameters/binary_data_size"),
    ("unknown-output", {"inputs": [boston_tensor()], "outputs": [{"name": "predict_proba"}]}, 400, "outputs/0/name"),
    ("unknown-key", {"inputs": [boston_tensor(dims=[1])]}, 400, "inputs/input-0/dims"),
    ("too-many-rows", {"inputs": [dict(boston_tensor(), shape=[1001, 12], data=[list(BOSTON_ROW.values())] * 1001)]},
     400, "inputs/input-0"),
]


@pytest.mark.parametrize(("body", "status", "location"), [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_infer_requests_are_400_with_the_error_and_its_location(client, body, status, location):
    response = infer(client, BOSTON_INFER, body)
    assert response.status_code == status
    assert response.content_type == "application/json"
    problem = response.get_json()
    assert isinstance(problem["error"], str) and problem["error"]
    if location is not None:
        assert location in [item["location"] for item in problem["errors"]], problem
        assert location in problem["error"]


def test_binary_tensor_requests_are_refused_with_a_hint(client):
    response = client.post(BOSTON_INFER, data=b'{"inputs": []}\x00\x01',
                           headers={"Inference-Header-Content-Length": 14})
    assert response.status_code == 400
    assert "binary_data=False" in response.get_json()["error"]


def test_protocol_errors_for_routes_methods_and_sizes(client):
    unknown = client.get("/v2/models/nope")
    assert unknown.status_code == 404 and "nope" in unknown.get_json()["error"]
    assert client.post("/v2/models/nope/infer", json={}).status_code == 404
    wrong_method = client.get(BOSTON_INFER)
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "OPTIONS, POST"
    assert wrong_method.get_json()["error"]
    no_route = client.get("/v2/models/boston-knn/explain")
    assert no_route.status_code == 404 and no_route.content_type == "application/json"
    too_large = client.post(BOSTON_INFER, data=b" " * (2 * 1024 * 1024 + 1), content_type="application/json")
    assert too_large.status_code == 413 and too_large.get_json()["error"]
    query = client.get("/v2/models/boston-knn?verbose=1")
    assert query.status_code == 400 and "verbose" in query.get_json()["error"]
    # The rest of the API keeps problem+json.
    assert client.get("/models/nope").content_type == "application/problem+json"


# --- versions and hot swap ---------------------------------------------------------------------------


@pytest.fixture
def second_version(both, keys):
    return train_into(both, "--max-neighbors", "1", signing_key=keys["trusted"]).name


def test_only_the_active_version_answers(client, second_version):
    active = client.get("/model").get_json()["version"]
    body = {"inputs": [boston_tensor()]}
    assert infer(client, f"/v2/models/boston-knn/versions/{active}/infer", body).status_code == 200
    other = infer(client, f"/v2/models/boston-knn/versions/{second_version}/infer", body)
    assert other.status_code == 400
    message = other.get_json()["error"]
    assert f"only the active version {active} answers" in message and f"Activate {second_version}" in message
    for suffix in ("", "/ready"):
        assert client.get(f"/v2/models/boston-knn/versions/{second_version}{suffix}").status_code == 400
        assert client.get(f"/v2/models/boston-knn/versions/20000101T000000Z{suffix}").status_code == 404
    assert infer(client, "/v2/models/boston-knn/versions/20000101T000000Z/infer", body).status_code == 404


def test_activation_swaps_what_v2_serves(client, second_version):
    old = client.get("/model").get_json()["version"]
    assert client.post(f"/models/{second_version}/activate", headers=ADMIN).status_code == 200
    body = infer(client, BOSTON_INFER, {"inputs": [boston_tensor()]}).get_json()
    assert body["model_version"] == second_version
    assert client.get("/v2/models/boston-knn").get_json()["versions"] == [second_version]
    pinned = infer(client, f"/v2/models/boston-knn/versions/{old}/infer", {"inputs": [boston_tensor()]})
    assert pinned.status_code == 400 and second_version in pinned.get_json()["error"]


# --- the log, the drift window and the dry run ------------------------------------------------------------


def test_every_infer_request_has_one_log_row_like_predict(client):
    accepted = infer(client, BOSTON_INFER, {"inputs": [matrix(ROWS, BOSTON_FEATURES)]})
    rejected = infer(client, BOSTON_INFER, {"inputs": [boston_tensor(datatype="INT64")]})
    others = [client.get(BOSTON_INFER), client.post("/v2/models/nope/infer", json={}),
              client.post(BOSTON_INFER, data="x", content_type="text/plain"),
              client.post(BOSTON_INFER, data=b" " * (2 * 1024 * 1024 + 1), content_type="application/json")]
    assert [r.status_code for r in others] == [405, 404, 415, 413]
    row = logged(client, accepted.headers["X-Request-ID"])
    assert row["endpoint"] == BOSTON_INFER and row["status"] == 200
    assert row["model"]["name"] == "boston-knn" and row["n_rows"] == 3
    assert row["n_ood_flagged"] == sum(output(accepted.get_json(), "ood_flagged"))
    assert row["request_body"]["inputs"][0]["shape"] == [3, 12]
    assert row["response_body"] == accepted.get_json()
    bad = logged(client, rejected.headers["X-Request-ID"])
    assert bad["status"] == 400 and "inputs/input-0/0/CRIM" in bad["error"]
    assert bad["response_body"]["error"] == rejected.get_json()["error"]
    for response in others:
        assert logged(client, response.headers["X-Request-ID"])["status"] == response.status_code
    assert log_total(client, 6) == 6
    # Metadata, readiness and health are not predict requests: the next row is the next infer's.
    for path in ("/v2/models/boston-knn", "/v2/models/boston-knn/ready", "/v2/health/ready", "/v2"):
        assert client.get(path).status_code == 200
    assert infer(client, BOSTON_INFER, {"inputs": [boston_tensor()]}).status_code == 200
    assert log_total(client, 7) == 7


def test_v2_rows_count_in_the_drift_window_and_the_dry_run(client, second_version):
    rows = [dict(BOSTON_ROW, RM=5.5 + i / 20) for i in range(40)]
    for start in range(0, 40, 10):
        response = infer(client, BOSTON_INFER, {"inputs": per_feature(BOSTON_ROW) if start == 0 else
                                                [matrix(rows[start:start + 10], BOSTON_FEATURES)]})
        assert response.status_code == 200
    client.post("/predict", json={"instances": rows[:9]})
    assert log_total(client, 5, status=200) == 5
    drift = client.get("/monitoring/drift?window=40", headers=ADMIN).get_json()
    assert drift["n_rows"] == 40 and drift["report"] is not None
    dry = client.post(f"/models/{second_version}/activate?dry_run=true", headers=ADMIN).get_json()["shadow"]
    assert dry["n_requests_replayed"] == 5 and dry["n_rows"] == 40


# --- the translation itself, without Flask ----------------------------------------------------------------------


def test_logged_bodies_of_either_protocol_give_the_same_rows():
    names = BOSTON_FEATURES
    predict_body = {"instances": [list(BOSTON_ROW.values())]}
    v2_body = {"inputs": [matrix([BOSTON_ROW], names)]}
    assert as_instances(v2_body, names) == as_instances(predict_body, names) == predict_body
    assert as_instances({"inputs": [{"name": "x"}]}, names) is None
    assert logged_predictions({"predictions": [1.5]}) == [1.5]
    assert logged_predictions({"outputs": [{"name": "ood_score", "data": [0.1]},
                                           {"name": "predict", "data": [2.5]}]}) == [2.5]
    assert logged_predictions({"outputs": [{"name": "ood_score", "data": [0.1]}]}) is None


def test_locations_are_translated_back_into_tensor_terms():
    names = BOSTON_FEATURES
    as_matrix = to_instances({"inputs": [matrix([BOSTON_ROW], names)]}, names)
    assert as_matrix.locate("instances/0/3") == "inputs/input-0/0/CHAS"
    assert as_matrix.locate("instances/*/RM") == "inputs/input-0/*/RM"
    by_feature = to_instances({"inputs": per_feature(BOSTON_ROW)}, names)
    assert by_feature.locate("instances/4/3") == "inputs/CHAS/4"
    assert by_feature.locate("instances") == "inputs"
