"""Schemathesis against /openapi.json: every operation, valid and invalid data, every check.

No input may produce a server error, and every answer must match the
documented status codes, content types, headers and schemas.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from flask_app.resources.openapi import operation_parameters, static_document

from .conftest import ADMIN

# Per operation and mode: 2 x 150 = 300 cases an operation.
MAX_EXAMPLES = 150
DOCUMENT = static_document()


def takes_input(item: dict, operation: dict) -> bool:
    """Whether invalid data can be made for an operation: a query parameter or a body to get wrong."""
    return "requestBody" in operation or any(p["in"] == "query" for p in operation_parameters(item, operation))


def takes_input_at(path: str, method: str) -> bool:
    template = "/v2/models/{name}/infer" if path.startswith("/v2/") else "/models/{name}/predict"
    item = DOCUMENT["paths"].get(path) or DOCUMENT["paths"][template]
    return takes_input(item, item[method.lower()])


# The served document adds literal predict and V2 infer paths, with the exact feature schema, per model.
MODEL_PATHS = ["/models/boston-knn/predict", "/models/heart-knn/predict",
               "/v2/models/boston-knn/infer", "/v2/models/heart-knn/infer"]
OPERATIONS = [(method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item]
OPERATIONS += [("POST", path) for path in MODEL_PATHS]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in MODES
    if mode is GenerationMode.POSITIVE or takes_input_at(path, method)
]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_every_operation_honours_its_contract(app, both, method, path, mode):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    schema.config.update(headers=ADMIN)
    operation = schema[path][method]
    statuses = []

    strategy = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE and path.endswith("/infer"):
        strategy = strategy.map(shapes_agree_with_data)

    @given(case=strategy)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        statuses.append(case.call_and_validate().status_code)

    check()
    # An operation without input has exactly one distinct request to send.
    assert len(statuses) >= (MAX_EXAMPLES // 2 if takes_input_at(path, method) else 1), statuses[:20]
    assert max(statuses) < 500


def shapes_agree_with_data(case):
    """Make a generated V2 request's tensor shapes agree with their data, the one rule JSON Schema cannot say.

    The document describes data as nested rows; per-feature tensors are cut to one common length.
    """
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("inputs"), list) and body["inputs"]:
        tensors = [tensor for tensor in body["inputs"]
                   if isinstance(tensor, dict) and isinstance(tensor.get("data"), list)]
        if len(tensors) == 1 and isinstance(tensors[0].get("shape"), list) and len(tensors[0]["shape"]) == 2:
            tensors[0]["shape"] = [len(tensors[0]["data"]), tensors[0]["shape"][1]]
        elif tensors:
            n_rows = min(len(tensor["data"]) for tensor in tensors)
            for tensor in tensors:
                tensor["data"] = tensor["data"][:n_rows]
                tensor["shape"] = [n_rows]
    return case
