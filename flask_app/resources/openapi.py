"""GET /openapi.json: the API description, with each served model's exact request schema.

The static part lives in openapi.yaml beside the code. What a predict
request may hold depends on the model, so the document served here
replaces the generic body schema of POST /predict with the default model's
feature schema and adds a literal path ``/models/<name>/predict`` for every
model in the store. A request that matches the document is accepted; one
that does not is refused.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from flask import request
from flask_restful import Resource

from ..errors import InvalidInput, ServiceError
from ..registry import ServedModel
from ..validation import MAX_ABS_VALUE
from .common import json_response, registry, settings

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"
TEMPLATE_PATH = "/models/{name}/predict"


@cache
def static_document() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text())


@cache
def query_parameters() -> dict[tuple[str, str], frozenset[str]]:
    """(Flask rule, method) -> the query parameters the document declares for it.

    Operations tagged ``operations`` (probes, metrics, this document) are left
    out: what a load balancer or a scraper appends to their URLs is ignored.
    """
    declared = {}
    for path, item in static_document()["paths"].items():
        rule = re.sub(r"\{(\w+)\}", r"<string:\1>", path)
        for method, operation in item.items():
            if "operations" in operation.get("tags", []):
                continue
            declared[rule, method.upper()] = frozenset(
                p["name"] for p in operation_parameters(item, operation) if p["in"] == "query")
    return declared


def operation_parameters(item: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    """The path's and the operation's parameters, shared ones ($ref) resolved."""
    shared = static_document()["components"]["parameters"]
    return [shared[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
            for p in item.get("parameters", []) + operation.get("parameters", [])]


def reject_unknown_query_parameters() -> None:
    """A query parameter the operation does not declare is a mistake worth saying (400), not ignoring."""
    if not request.args or request.url_rule is None:
        return
    allowed = query_parameters().get((request.url_rule.rule, request.method))
    if allowed is None:
        return  # operations endpoints, HEAD, OPTIONS, unknown methods
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        known = f"; it takes {', '.join(sorted(allowed))}" if allowed else "; it takes none"
        raise InvalidInput(
            f"Unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown[:10]))}{known}.",
            [{"location": f"query/{name[:100]}", "message": "unknown query parameter"} for name in unknown[:10]],
        )


def feature_schema(feature: dict[str, Any]) -> dict[str, Any]:
    if feature.get("allowed"):
        return {"enum": feature["allowed"]}
    return {"type": "number", "minimum": 0 if feature.get("nonnegative") else -MAX_ABS_VALUE,
            "maximum": MAX_ABS_VALUE}


def instances_body(served: ServedModel, max_rows: int) -> dict[str, Any]:
    features = served.info["features"]
    names = [feature["name"] for feature in features]
    row_object = {
        "type": "object",
        "description": f"A row of {served.name} keyed by feature name.",
        "required": names,
        "additionalProperties": False,
        "properties": {feature["name"]: feature_schema(feature) for feature in features},
    }
    row_array = {
        "type": "array",
        "description": f"A row of {served.name} in feature order: {', '.join(names)}.",
        "prefixItems": [feature_schema(feature) for feature in features],
        "minItems": len(features),
        "maxItems": len(features),
    }
    return {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["instances"],
            "additionalProperties": False,
            "properties": {"instances": {
                "type": "array", "minItems": 1, "maxItems": max_rows,
                "items": {"oneOf": [row_object, row_array]},
            }},
        }}},
    }


def openapi_document() -> dict[str, Any]:
    document = copy.deepcopy(static_document())
    config = settings()
    served: dict[str, ServedModel] = {}
    for name in registry().names():
        try:
            served[name] = registry().get(name)
        except ServiceError:
            continue  # not loadable now: only the generic description applies
    paths = document["paths"]
    if config.MODEL_NAME in served:
        paths["/predict"]["post"]["requestBody"] = instances_body(served[config.MODEL_NAME], config.MAX_BATCH_ROWS)
    template = paths[TEMPLATE_PATH]["post"]
    for name, model in sorted(served.items()):
        operation = copy.deepcopy(template)
        operation["operationId"] = f"predictWith_{name}"
        operation["summary"] = f"Predict with {name} ({model.task})"
        operation["parameters"] = []
        operation["requestBody"] = instances_body(model, config.MAX_BATCH_ROWS)
        paths[f"/models/{name}/predict"] = {"post": operation}
    return document


class OpenApi(Resource):
    def get(self):
        """The OpenAPI 3.1 document."""
        return json_response(openapi_document())
