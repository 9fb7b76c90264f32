"""GET /monitoring/drift and GET /metrics."""

from __future__ import annotations

import numpy as np
from flask import Response, current_app, request
from flask_restful import Resource

from .. import log as prediction_log
from .. import metrics
from ..drift import ks_report
from ..errors import ServiceError
from .common import int_arg, json_response, registry, settings


class Drift(Resource):
    def get(self):
        """KS test of the last `window` logged accepted rows of the active version against training."""
        window = int_arg("window", 500, 2, 100_000)
        served = registry().get(request.args.get("model"))
        matrices, n_rows = [], 0
        for request_body, _ in prediction_log.recent_accepted(served.name, served.version, window):
            try:
                X = served.validator.validate(request_body).X
            except ServiceError:
                continue
            matrices.append(X)
            n_rows += len(X)
            if n_rows >= window:
                break
        body = {"model": served.identity, "window": window, "n_rows": n_rows}
        if n_rows < settings().DRIFT_MIN_ROWS or served.reference is None:
            body["note"] = f"fewer than DRIFT_MIN_ROWS={settings().DRIFT_MIN_ROWS} logged rows; no test run"
            body["report"] = None
        else:
            X = np.vstack(matrices)[:window]
            body["report"] = ks_report(served.reference, X, served.feature_names, settings().DRIFT_ALPHA)
        return json_response(body)


class Metrics(Resource):
    def get(self):
        """Prometheus text exposition."""
        metrics.SPOOL_ROWS.set(current_app.extensions["prediction_log"].spool_size())
        data, content_type = metrics.render()
        return Response(data, mimetype=content_type.split(";")[0], content_type=content_type)
