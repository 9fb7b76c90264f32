"""HTTP resources: each translates a request into calls on the core modules and back."""

from __future__ import annotations

from flask_restful import Api

from ..errors import register_error_shape
from .health import Health, Ready
from .models import Activate, ActiveModel, ModelList, NamedModel, NamedModelActivate
from .monitoring import Drift, Metrics
from .openapi import OpenApi, reject_unknown_query_parameters
from .predict import ModelPredict, Predict
from .predictions import PredictionItem, PredictionList
from .v2 import Infer, ModelMetadata, ModelReady, ServerLive, ServerMetadata, ServerReady, error_body


class ProblemApi(Api):
    """Flask-RESTful, but errors go to the app's one problem+json handler."""

    def handle_error(self, e: Exception):
        raise e


def register_resources(app) -> None:
    app.before_request(reject_unknown_query_parameters)
    api = ProblemApi(app, catch_all_404s=False)
    api.add_resource(Predict, "/predict")
    api.add_resource(Health, "/health")
    api.add_resource(Ready, "/ready")
    api.add_resource(ActiveModel, "/model")
    api.add_resource(ModelList, "/models")
    api.add_resource(Activate, "/models/<string:version>/activate")
    api.add_resource(NamedModel, "/models/<string:name>")
    api.add_resource(ModelPredict, "/models/<string:name>/predict")
    api.add_resource(NamedModelActivate, "/models/<string:name>/versions/<string:version>/activate")
    api.add_resource(PredictionList, "/predictions")
    api.add_resource(PredictionItem, "/predictions/<string:request_id>")
    api.add_resource(Drift, "/monitoring/drift")
    api.add_resource(Metrics, "/metrics")
    api.add_resource(OpenApi, "/openapi.json")
    register_v2(app, api)


def register_v2(app, api: Api) -> None:
    """The Open Inference Protocol (V2) beside the API above, with the protocol's error shape."""
    register_error_shape(app, "/v2", error_body)
    api.add_resource(ServerMetadata, "/v2")
    api.add_resource(ServerLive, "/v2/health/live")
    api.add_resource(ServerReady, "/v2/health/ready")
    model = "/v2/models/<string:name>"
    version = model + "/versions/<string:version>"
    api.add_resource(ModelMetadata, model, version)
    api.add_resource(ModelReady, model + "/ready", version + "/ready")
    api.add_resource(Infer, model + "/infer", version + "/infer")
