"""The HTTP contract of /predict and the read-only endpoints."""

from __future__ import annotations

import json
import uuid

import pytest

from .conftest import ADMIN_TOKEN, BOSTON_FEATURES, BOSTON_ROW


def post(client, body, content_type="application/json", **headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/predict", data=data, content_type=content_type, headers=headers)


def test_object_rows_are_predicted_and_named(client, store):
    response = post(client, {"instances": [BOSTON_ROW, dict(reversed(list(BOSTON_ROW.items())))]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["model"]["name"] == "boston-knn"
    assert len(body["model"]["sha256"]) == 64
    assert len(body["predictions"]) == 2
    assert body["predictions"][0] == body["predictions"][1]  # key order does not matter
    assert 5 <= body["predictions"][0] <= 50
    assert body["warnings"] == []
    assert len(body["ood"]) == 2 and 0 <= body["ood"][0]["score"] <= 1


def test_array_rows_match_object_rows(client):
    as_objects = post(client, {"instances": [BOSTON_ROW]}).get_json()
    as_arrays = post(client, {"instances": [[BOSTON_ROW[name] for name in BOSTON_FEATURES]]}).get_json()
    assert as_arrays["predictions"] == as_objects["predictions"]


def test_prediction_equals_the_bundle_models_own(client, store):
    from ml_models import bundle

    loaded = bundle.load(store / "boston-knn" / bundle.read_active(store, "boston-knn"))
    golden = loaded.info["golden"]
    body = post(client, {"instances": [row["input"] for row in golden]}).get_json()
    assert body["predictions"] == pytest.approx([row["prediction"] for row in golden], rel=1e-12)


def test_out_of_range_values_are_warned_about_not_refused(client):
    row = dict(BOSTON_ROW, RM=12.5, CRIM=0.0)
    body = post(client, {"instances": [BOSTON_ROW, row]}).get_json()
    rm = [w for w in body["warnings"] if w["feature"] == "RM"]
    assert rm == [{"row": 1, "feature": "RM", "value": 12.5,
                   "reason": rm[0]["reason"]}]
    assert "above the training maximum" in rm[0]["reason"]


def test_request_ids_are_minted_and_a_client_id_is_kept_beside(client, log_rows):
    response = post(client, {"instances": [BOSTON_ROW]}, **{"X-Request-ID": "client-abc.123"})
    minted = response.headers["X-Request-ID"]
    assert uuid.UUID(minted).version == 7
    assert response.get_json()["request_id"] == minted
    assert response.headers["X-Client-Request-ID"] == "client-abc.123"
    insane = post(client, {"instances": [BOSTON_ROW]}, **{"X-Request-ID": "bad id; drop table"})
    assert "X-Client-Request-ID" not in insane.headers
    rows = log_rows()
    assert [(row["request_id"], row["client_request_id"]) for row in rows] == [
        (minted, "client-abc.123"), (insane.headers["X-Request-ID"], None)]


def row_with(**changes):
    return dict(BOSTON_ROW, **changes)


def row_without(name):
    return {key: value for key, value in BOSTON_ROW.items() if key != name}


BAD_BODIES = [
    # (id, raw body or JSON value, status, expected error locations (None: no list))
    ("not-json", b"{instances: [}", 400, None),
    ("bad-utf8", b'{"instances": ["\xff"]}', 400, None),
    ("lone-surrogate", b'{"instances": [{"CRIM": "\\ud800"}]}', 400, None),
    ("duplicate-keys", b'{"instances": [], "instances": []}', 400, None),
    ("deep-nesting", b"[" * 100_000 + b"]" * 100_000, 400, None),
    ("nan", b'{"instances": [[NaN, 0, 7, 0, 0.5, 6, 60, 4, 4, 300, 17, 10]]}', 400, None),
    ("infinity", b'{"instances": [[Infinity, 0, 7, 0, 0.5, 6, 60, 4, 4, 300, 17, 10]]}', 400, None),
    ("overflow", b'{"instances": [[1e999, 0, 7, 0, 0.5, 6, 60, 4, 4, 300, 17, 10]]}', 400, ["instances/0/0"]),
    ("empty-body", b"", 400, None),
    ("bom", b'\xef\xbb\xbf{"instances": []}', 400, None),
    ("null", None, 400, [""]),
    ("number", 3, 400, [""]),
    ("no-instances", {"rows": [BOSTON_ROW]}, 400, ["instances", "rows"]),
    ("instances-not-list", {"instances": BOSTON_ROW}, 400, ["instances"]),
    ("empty-list", {"instances": []}, 400, ["instances"]),
    ("too-many-rows", {"instances": [BOSTON_ROW] * 1001}, 400, ["instances"]),
    ("short-array", {"instances": [[1, 2, 3]]}, 400, ["instances/0"]),
    ("missing-feature", {"instances": [row_without("LSTAT")]}, 400, ["instances/0/LSTAT"]),
    ("unknown-feature", {"instances": [row_with(B=396.9)]}, 400, ["instances/0/B"]),
    ("string", {"instances": [row_with(CRIM="0.1")]}, 400, ["instances/0/CRIM"]),
    ("boolean", {"instances": [row_with(CHAS=True)]}, 400, ["instances/0/CHAS"]),
    ("null-value", {"instances": [row_with(NOX=None)]}, 400, ["instances/0/NOX"]),
    ("nested-value", {"instances": [row_with(RM=[6.2])]}, 400, ["instances/0/RM"]),
    ("chas-2", {"instances": [row_with(CHAS=2)]}, 400, ["instances/0/CHAS"]),
    ("negative", {"instances": [row_with(TAX=-1)]}, 400, ["instances/0/TAX"]),
    ("row-not-object", {"instances": ["CRIM=1"]}, 400, ["instances/0"]),
    ("all-problems-at-once", {"instances": [BOSTON_ROW, BOSTON_ROW, BOSTON_ROW, row_with(CRIM="x", CHAS=3)]},
     400, ["instances/3/CRIM", "instances/3/CHAS"]),
]


@pytest.mark.parametrize(("body", "status", "locations"), [case[1:] for case in BAD_BODIES],
                         ids=[case[0] for case in BAD_BODIES])
def test_bad_input_is_a_400_problem_with_locations(client, log_rows, body, status, locations):
    raw = body if isinstance(body, bytes) else json.dumps(body)
    response = post(client, raw)
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert problem["request_id"] == response.headers["X-Request-ID"]
    if locations is not None:
        assert [error["location"] for error in problem["errors"]] == locations
    (row,) = log_rows()
    assert row["status"] == status and row["request_id"] == problem["request_id"]
    assert row["response_body"] == problem


@pytest.mark.parametrize(("content_type", "headers", "status"), [
    ("text/plain", {}, 415),
    ("application/x-www-form-urlencoded", {}, 415),
    ("", {}, 415),
    ("application/json; charset=latin-1", {}, 415),
    ("application/json", {"Content-Encoding": "gzip"}, 415),
])
def test_wrong_media_type(client, content_type, headers, status):
    response = client.post("/predict", data=json.dumps({"instances": [BOSTON_ROW]}),
                           headers={"Content-Type": content_type, **headers})
    assert response.status_code == status
    assert response.content_type == "application/problem+json"


def test_body_over_the_limit_is_413(client, log_rows):
    response = post(client, b'{"instances": [' + b"1," * 1_200_000 + b"1]}")
    assert response.status_code == 413
    assert response.content_type == "application/problem+json"
    (row,) = log_rows()
    assert row["status"] == 413 and row["request_truncated"]


def test_unknown_route_and_wrong_method_are_problems(client):
    missing = client.get("/nothing-here")
    assert missing.status_code == 404 and missing.content_type == "application/problem+json"
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and wrong.content_type == "application/problem+json"
    assert "POST" in wrong.headers["Allow"]
    assert missing.headers["X-Request-ID"]


def test_health_ready_model_models(client):
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.get_json()["log"]["database"] == "ok"
    model = client.get("/model").get_json()
    assert model["name"] == "boston-knn" and model["verification"]["verdict"] == "ok"
    assert [f["name"] for f in model["features"]] == BOSTON_FEATURES
    assert "holdout" in model["metrics"] and "sha256" in model["files"]["model.pkl"]
    models = client.get("/models").get_json()
    (version,) = models["models"]["boston-knn"]
    assert version["active"] and version["verified"]


@pytest.mark.parametrize(("method", "url"), [
    ("POST", "/predict?model=heart-knn"),
    ("GET", "/predictions?limt=10"),
    ("GET", "/monitoring/drift?windows=50"),
    ("GET", "/models?all=1"),
])
def test_an_unknown_query_parameter_is_named_in_a_400(client, method, url):
    response = client.open(url, method=method, json={"instances": [BOSTON_ROW]},
                           headers={"Authorization": "Bearer " + ADMIN_TOKEN})
    assert response.status_code == 400 and response.content_type == "application/problem+json"
    name = url.split("?")[1].split("=")[0]
    assert response.get_json()["errors"] == [{"location": f"query/{name}", "message": "unknown query parameter"}]


def test_probes_ignore_query_strings(client):
    assert client.get("/health?probe=lb").status_code == 200
    assert client.get("/ready?x=1").status_code == 200


def test_filters_holding_nul_match_nothing(client):
    admin = {"Authorization": "Bearer " + ADMIN_TOKEN}
    assert post(client, {"instances": [BOSTON_ROW]}).status_code == 200
    listed = client.get("/predictions?model=boston-knn%00", headers=admin)
    assert listed.status_code == 200 and listed.get_json()["total"] == 0
    assert client.get("/predictions/abc%00", headers=admin).status_code == 404
    assert client.get("/monitoring/drift?model=boston%00", headers=admin).status_code == 404
