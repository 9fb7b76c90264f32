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
    item = DOCUMENT["paths"].get(path) or DOCUMENT["paths"]["/models/{name}/predict"]
    return takes_input(item, item[method.lower()])


# The served document adds a literal predict path, with the exact feature schema, per model in the store.
MODEL_PATHS = ["/models/boston-knn/predict", "/models/heart-knn/predict"]
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

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        statuses.append(case.call_and_validate().status_code)

    check()
    # An operation without input has exactly one distinct request to send.
    assert len(statuses) >= (MAX_EXAMPLES // 2 if takes_input_at(path, method) else 1), statuses[:20]
    assert max(statuses) < 500
