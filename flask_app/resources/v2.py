"""The Open Inference Protocol (V2) REST API: a second thin translation layer over the same core.

``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, and per model
``GET /v2/models/<name>[/versions/<version>]`` (metadata), ``.../ready`` and
``POST .../infer``. An infer request's tensors become the rows of
``POST /predict`` (``tensors.to_instances``) and take the same predict path
(``run_prediction``); the request cycle logs it like every predict request.
Errors are the protocol's ``{"error": "..."}``, with the problem document's
fields beside it so that the log and the console keep the error locations.

Versions: only a model's active version answers. A path naming another
version of the store is refused with 400, saying which version is active and
how to activate the other (404 when the store has no such version): a client
pinned to a version learns of a swap at once instead of getting answers from
a model it did not ask for.
"""

from __future__ import annotations

from typing import Any

from flask import g, request
from flask_restful import Resource

from ..errors import InvalidInput, ModelUnavailable, NotFound, ServiceError, VersionNotServed
from ..registry import ServedModel
from ..tensors import MATRIX_INPUT, check_outputs, feature_datatype, output_names, response_outputs, to_instances
from .common import json_response, read_json_body, registry
from .health import prediction_log_state
from .predict import run_prediction

SERVER_NAME = "sklearn-prediction-service"
# The service's version, as in pyproject.toml.
SERVER_VERSION = "0.1.0"
PLATFORM = "scikit-learn"
# Error locations quoted in the protocol's one-line error message.
QUOTED_LOCATIONS = 5


def error_body(problem: dict[str, Any]) -> dict[str, Any]:
    """The protocol's error object: one message with the first locations, the problem fields beside it."""
    message = str(problem.get("detail") or problem.get("title"))
    located = [f"{item['location']}: {item['message']}" for item in problem.get("errors", [])
               if isinstance(item, dict) and "location" in item]
    if located:
        more = f" (and {len(located) - QUOTED_LOCATIONS} more)" if len(located) > QUOTED_LOCATIONS else ""
        message += " " + "; ".join(located[:QUOTED_LOCATIONS]) + more
    return {"error": message, **problem}


def served_version(name: str, version: str | None = None) -> ServedModel:
    """The active version of ``name``; a path that names another version is refused."""
    served = registry().get(name)
    if version is None or version == served.version:
        return served
    if registry().has_version(name, version):
        raise VersionNotServed(
            f"{name} version {version} is not served: only the active version {served.version} answers. "
            f"Activate {version} first (POST /models/{name}/versions/{version}/activate).")
    raise NotFound(f"{name} has no version {version[:64]!r}.")


def model_metadata(served: ServedModel) -> dict[str, Any]:
    features = served.info["features"]
    classification = served.task == "classification"
    datatypes = {"predict": "INT64" if classification else "FP64", "predict_proba": "FP64",
                 "ood_score": "FP64", "ood_flagged": "BOOL"}
    shapes = {"predict_proba": [-1, len(served.classes)]}
    outputs = [{"name": name, "datatype": datatypes[name], "shape": shapes.get(name, [-1])}
               for name in output_names(served.task)
               if served.train_distances is not None or not name.startswith("ood")]
    parameters: dict[str, Any] = {
        "task": served.task,
        "target": served.info.get("target"),
        "sha256": served.sha256,
        "feature_order": [feature["name"] for feature in features],
        "feature_inputs": [{"name": feature["name"], "datatype": feature_datatype(feature), "shape": [-1]}
                           for feature in features],
    }
    if classification:
        parameters["classes"] = served.classes
    return {
        "name": served.name,
        "versions": [served.version],
        "platform": PLATFORM,
        "inputs": [{"name": MATRIX_INPUT, "datatype": "FP64", "shape": [-1, len(features)]}],
        "outputs": outputs,
        "parameters": parameters,
    }


class ServerMetadata(Resource):
    def get(self):
        """The server's name, version and protocol extensions."""
        return json_response({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []})


class ServerLive(Resource):
    def get(self):
        """Liveness: 200 while the process runs."""
        return json_response({"live": True})


class ServerReady(Resource):
    def get(self):
        """Readiness: every model in the store has a verified version loaded and the log can take rows."""
        reasons = []
        for name in registry().names():
            try:
                registry().get(name)
            except ServiceError as exc:
                reasons.append(f"model {name}: {exc.detail}")
        reasons += prediction_log_state()[1]
        if reasons:
            return json_response({"ready": False, "error": "; ".join(reasons)}, 400)
        return json_response({"ready": True})


class ModelMetadata(Resource):
    def get(self, name: str, version: str | None = None):
        """The model's input and output tensors (of its active version)."""
        return json_response(model_metadata(served_version(name, version)))


class ModelReady(Resource):
    def get(self, name: str, version: str | None = None):
        """200 when the model (version) answers inferences, 400 when it does not, 404 when unknown."""
        try:
            served = served_version(name, version)
        except ModelUnavailable as exc:
            return json_response({"name": name, "ready": False, "error": exc.detail}, 400)
        return json_response({"name": name, "version": served.version, "ready": True})


class Infer(Resource):
    def post(self, name: str, version: str | None = None):
        """Tensors in, the predict path, tensors out."""
        served = served_version(name, version)
        g.served = served
        if "Inference-Header-Content-Length" in request.headers:
            raise InvalidInput(
                "Binary tensor data is not supported; send the tensors as JSON "
                "(tritonclient: set_data_from_numpy(..., binary_data=False)).",
                [{"location": "header/Inference-Header-Content-Length", "message": "binary data extension"}])
        body = read_json_body(untyped_is_json=True)
        tensors = to_instances(body, served.feature_names)
        check_outputs(tensors, served.task)
        try:
            outcome = run_prediction(served, tensors.payload)
        except ServiceError as exc:
            raise tensors.relocated(exc) from None
        prediction = outcome.prediction
        parameters: dict[str, Any] = {"request_id": g.request_id, "model_sha256": served.sha256,
                                      "warnings": outcome.batch.warnings}
        if outcome.drift is not None:
            parameters["drift"] = outcome.drift
        return json_response({
            "model_name": served.name,
            "model_version": served.version,
            "id": body.get("id") or g.request_id,
            "parameters": parameters,
            "outputs": response_outputs(prediction.values, prediction.probabilities, prediction.ood,
                                        served.task, served.classes, tensors.outputs),
        })
