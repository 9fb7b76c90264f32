"""The OpenAPI document is valid and describes exactly the routes the service has."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

# Pages for people (the console, /docs), not part of the JSON API the document describes.
HTML_BLUEPRINTS = {"console", "apidocs"}


def test_document_is_valid_openapi(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    validate(response.get_json())


def test_predict_body_is_the_models_feature_schema(client):
    document = client.get("/openapi.json").get_json()
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    row_object, row_array = body["properties"]["instances"]["items"]["oneOf"]
    assert row_object["properties"]["CHAS"] == {"enum": [0, 1]}
    assert row_object["properties"]["CRIM"] == {"type": "number", "minimum": 0, "maximum": 1e12}
    assert "B" not in row_object["properties"] and len(row_array["prefixItems"]) == 12
    assert body["properties"]["instances"]["maxItems"] == 1000


def test_document_and_routes_match(app, client):
    document = client.get("/openapi.json").get_json()
    # Each model in the store has a literal predict path; they all stand for the one route.
    documented = {(re.sub(r"^(/v2)?/models/[^/{}]+/(predict|infer)$", r"\1/models/{name}/\2", path), method.upper())
                  for path, item in document["paths"].items() for method in item}
    assert "/models/boston-knn/predict" in document["paths"]
    assert "/v2/models/boston-knn/infer" in document["paths"]
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.split(".")[0] in HTML_BLUEPRINTS:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        served |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == served
