"""GET /openapi.json: the API description, with each served model's exact request schema.

The static part lives in openapi.yaml beside the code. What a predict
request may hold depends on the model, so the document served here
replaces the generic body schema of POST /predict with the default model's
feature schema and adds literal paths ``/models/<name>/predict`` and
``/v2/models/<name>/infer`` for every model in the store, each with an
example made of the model's first golden row. A request that matches the
document is accepted; one that does not is refused. (For V2 tensors one
rule is beyond JSON Schema: the shape must agree with the data.)
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
from ..tensors import DATATYPES, INT_RANGES, MATRIX_INPUT, output_names
from ..validation import MAX_ABS_VALUE
from .common import json_response, registry, settings

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"
TEMPLATE_PATH = "/models/{name}/predict"
V2_TEMPLATE_PATH = "/v2/models/{name}/infer"
# The largest float32 not above MAX_ABS_VALUE: an FP32 value beyond it rounds past the bound.
MAX_ABS_FP32 = 999999995904.0


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


def feature_schema(feature: dict[str, Any], datatype: str = "FP64") -> dict[str, Any]:
    """The values a feature takes, as a tensor of ``datatype`` holds them (FP64: a JSON number)."""
    bound = MAX_ABS_FP32 if datatype == "FP32" else MAX_ABS_VALUE
    low, high = -bound, bound
    if datatype in INT_RANGES:
        low, high = max(low, INT_RANGES[datatype][0]), min(high, INT_RANGES[datatype][1])
    if feature.get("allowed"):
        return {"enum": [value for value in feature["allowed"] if low <= value <= high]}
    low = max(low, 0) if feature.get("nonnegative") else low
    return {"type": "integer" if datatype in INT_RANGES else "number", "minimum": low, "maximum": high}


def golden_row(served: ServedModel) -> dict[str, Any]:
    """The model's first golden row, integers shown as integers: a real row for examples."""
    row = served.info["golden"][0]["input"]
    return {name: int(value) if float(value).is_integer() else value for name, value in row.items()}


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
        "content": {"application/json": {
            "schema": {
                "type": "object",
                "required": ["instances"],
                "additionalProperties": False,
                "properties": {"instances": {
                    "type": "array", "minItems": 1, "maxItems": max_rows,
                    "items": {"oneOf": [row_object, row_array]},
                }},
            },
            "example": {"instances": [golden_row(served)]},
        }},
    }


def infer_body(served: ServedModel, max_rows: int) -> dict[str, Any]:
    """The exact V2 infer request of one model: a [n, n_features] tensor, or a tensor per feature."""
    features = served.info["features"]
    n_features = len(features)
    parameters = {"type": "object", "not": {"required": ["binary_data_size"]}}
    matrix = [{
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "shape": {"type": "array", "minItems": 2, "maxItems": 2,
                      "prefixItems": [{"type": "integer", "minimum": 1, "maximum": max_rows},
                                      {"const": n_features}]},
            "datatype": {"const": datatype},
            "parameters": parameters,
            "data": {"type": "array", "minItems": 1, "maxItems": max_rows, "description": "rows, nested",
                     "items": {"type": "array", "minItems": n_features, "maxItems": n_features,
                               "prefixItems": [feature_schema(feature, datatype) for feature in features]}},
        },
    } for datatype in DATATYPES]
    per_feature = [{"oneOf": [{
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "additionalProperties": False,
        "properties": {
            "name": {"const": feature["name"]},
            "shape": {"type": "array", "minItems": 1, "maxItems": 1,
                      "prefixItems": [{"type": "integer", "minimum": 1, "maximum": max_rows}]},
            "datatype": {"const": datatype},
            "parameters": parameters,
            "data": {"type": "array", "minItems": 1, "maxItems": max_rows,
                     "items": feature_schema(feature, datatype)},
        },
    } for datatype in DATATYPES if feature_schema(feature, datatype).get("enum", True)]} for feature in features]
    row = golden_row(served)
    return {
        "required": True,
        "description": "One tensor of shape [n, n_features] in the model's feature order "
                       f"({', '.join(feature['name'] for feature in features)}), or one tensor per feature "
                       "of shape [n]. The shape must agree with the data.",
        "content": {"application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object"},
                    "inputs": {"oneOf": [
                        {"type": "array", "minItems": 1, "maxItems": 1, "items": {"oneOf": matrix}},
                        {"type": "array", "minItems": n_features, "maxItems": n_features, "prefixItems": per_feature},
                    ]},
                    "outputs": {"type": "array", "items": {
                        "type": "object", "required": ["name"], "additionalProperties": False,
                        "properties": {"name": {"enum": output_names(served.task)}, "parameters": {"type": "object"}},
                    }},
                },
            },
            "example": {"inputs": [{"name": MATRIX_INPUT, "shape": [1, n_features], "datatype": "FP64",
                                    "data": [[row[feature["name"]] for feature in features]]}]},
        }},
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
        infer = copy.deepcopy(paths[V2_TEMPLATE_PATH]["post"])
        infer["operationId"] = f"v2InferWith_{name}"
        infer["summary"] = f"V2: inference with {name} ({model.task})"
        infer["parameters"] = []
        infer["requestBody"] = infer_body(model, config.MAX_BATCH_ROWS)
        paths[f"/v2/models/{name}/infer"] = {"post": infer}
    return document


class OpenApi(Resource):
    def get(self):
        """The OpenAPI 3.1 document."""
        return json_response(openapi_document())
