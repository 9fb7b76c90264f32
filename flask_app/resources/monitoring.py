"""GET /monitoring/drift and GET /metrics."""

from __future__ import annotations

from flask import Response, current_app, request
from flask_restful import Resource

from .. import log as prediction_log
from .. import metrics
from ..auth import require_admin
from ..drift import window_matrix
from .common import flush_log, int_arg, json_response, registry, settings


class Drift(Resource):
    def get(self):
        """KS test of the newest `window` logged accepted rows of the active version against training (admin).

        Admin-only: the report describes the traffic of every client.
        """
        require_admin()
        window = int_arg("window", 500, 2, 100_000)
        served = registry().get(request.args.get("model"))
        config = settings()
        flush_log()
        bodies = prediction_log.recent_request_bodies(served.name, served.version, window,
                                                       config.DRIFT_WINDOW_MAX_BYTES)
        X = window_matrix(bodies, served.validator, window)
        body = {"model": served.identity, "window": window, "n_rows": len(X)}
        if len(X) < config.DRIFT_MIN_ROWS or served.reference is None:
            body["note"] = f"fewer than DRIFT_MIN_ROWS={config.DRIFT_MIN_ROWS} logged rows; no test run"
            body["report"] = None
        else:
            body["report"] = served.drift_report(X, config.DRIFT_ALPHA)
        return json_response(body)


class Metrics(Resource):
    def get(self):
        """Prometheus text exposition."""
        metrics.record_log_status(current_app.extensions["prediction_log"].status())
        data, content_type = metrics.render()
        return Response(data, mimetype=content_type.split(";")[0], content_type=content_type)
