"""HTTP resources: each translates a request into calls on the core modules and back."""

from __future__ import annotations

from flask_restful import Api

from .health import Health, Ready
from .models import Activate, ActiveModel, ModelList, NamedModel, NamedModelActivate
from .monitoring import Drift, Metrics
from .openapi import OpenApi, reject_unknown_query_parameters
from .predict import ModelPredict, Predict
from .predictions import PredictionItem, PredictionList


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
