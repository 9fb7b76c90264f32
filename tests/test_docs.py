"""GET /docs: Swagger UI from installed files, on the served document, whose examples the service accepts."""

from __future__ import annotations

import re

import pytest


@pytest.fixture
def client(app, both):
    return app.test_client()


def test_docs_page_loads_swagger_ui_from_this_service_only(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.content_type.startswith("text/html")
    html = page.get_data(as_text=True)
    assert 'data-spec="/openapi.json"' in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(url.startswith("/") for url in assets), assets
    for url in assets:
        if url.startswith("/docs/"):
            with client.get(url) as asset:
                assert asset.status_code == 200, url
                assert len(asset.get_data()) > 100, url
    with client.get("/docs/swagger-ui/swagger-ui-bundle.js") as bundle:
        assert "SwaggerUIBundle" in bundle.get_data(as_text=True)
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "connect-src 'self'" in policy and "default-src 'none'" in policy
    assert "<script>" not in html  # no inline script: the policy would refuse it


def test_docs_assets_cannot_reach_outside_their_folder(client):
    assert client.get("/docs/swagger-ui/../__init__.py").status_code == 404
    assert client.get("/docs/swagger-ui/%2e%2e/__init__.py").status_code == 404


@pytest.mark.parametrize("path", ["/predict", "/models/boston-knn/predict", "/models/heart-knn/predict",
                                  "/v2/models/boston-knn/infer", "/v2/models/heart-knn/infer"])
def test_try_it_out_examples_are_accepted(client, path):
    document = client.get("/openapi.json").get_json()
    example = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"]
    response = client.post(path, json=example)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["model_name" if path.startswith("/v2") else "model"]
