"""The model store over HTTP: the active model, all versions, activation with a dry run."""

from __future__ import annotations

import math

from flask import request
from flask_restful import Resource

from .. import log as prediction_log
from .. import shadow
from ..auth import require_admin
from ..errors import InvalidInput, ModelUnavailable
from .common import bool_arg, flush_log, int_arg, json_response, registry, settings

# Predictions that differ by more than this count as changed in a dry run (regression).
DEFAULT_TOLERANCE = 0.5


def model_document(name: str | None = None) -> dict:
    served = registry().get(name)
    info = served.info
    return {
        "name": served.name,
        "version": served.version,
        "sha256": served.sha256,
        "task": served.task,
        "estimator": info.get("estimator"),
        "created_at": info.get("created_at"),
        "best_params": info.get("best_params"),
        "search": info.get("search"),
        "metrics": info.get("metrics"),
        "target": info.get("target"),
        "classes": info.get("classes"),
        "decision_threshold": served.decision_threshold,
        "calibration": info.get("calibration"),
        "features": info.get("features"),
        "files": info.get("files"),
        "data": info.get("data"),
        "versions": info.get("versions"),
        "verification": {
            "verdict": served.loaded.verification.verdict.value,
            "signed": served.loaded.verification.signed,
            "signature_checked": registry().verify_key is not None,
        },
    }


class ActiveModel(Resource):
    def get(self):
        """The default model's active version: params, metrics, features, hashes, verification."""
        return json_response(model_document())


class ModelList(Resource):
    def get(self):
        """Every model in the store, every version, which is active and whether it verifies."""
        models = {name: registry().versions(name) for name in registry().names()}
        return json_response({"default": settings().MODEL_NAME, "models": models})


class NamedModel(Resource):
    def get(self, name: str):
        """One model's active version and its versions."""
        versions = registry().versions(name)
        try:
            active = model_document(name)
        except ModelUnavailable as exc:
            active = {"error": exc.detail}
        return json_response({"name": name, "active": active, "versions": versions})


def activate(name: str, version: str):
    require_admin()
    if bool_arg("dry_run"):
        return dry_run(name, version)
    served = registry().activate(name, version)
    return json_response({"activated": served.identity, "model": served.name})


def dry_run(name: str, version: str):
    n = int_arg("n", settings().SHADOW_DEFAULT_N, 1, 10_000)
    try:
        tolerance = float(request.args.get("tolerance", DEFAULT_TOLERANCE))
    except ValueError:
        tolerance = math.nan
    if not 0 <= tolerance <= 1e12:
        raise InvalidInput("tolerance must be a number between 0 and 1e12.",
                           [{"location": "query/tolerance", "message": "not a number between 0 and 1e12"}])
    candidate = registry().candidate(name, version)
    active = registry().get(name)
    flush_log()
    logged = prediction_log.recent_accepted(name, active.version, n)
    report = shadow.compare(active, candidate, logged, tolerance)
    return json_response({"dry_run": True, "activated": None, "model": name, "shadow": report})


class Activate(Resource):
    def post(self, version: str):
        """Activate a version of the default model (admin); ?dry_run=true compares without switching."""
        return activate(settings().MODEL_NAME, version)


class NamedModelActivate(Resource):
    def post(self, name: str, version: str):
        """Activate a version of the named model (admin)."""
        return activate(name, version)
