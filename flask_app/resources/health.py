"""GET /health (the process runs) and GET /ready (it can answer and record)."""

from __future__ import annotations

from flask import current_app
from flask_restful import Resource

from ..errors import ServiceError
from .common import json_response, registry


class Health(Resource):
    def get(self):
        """Liveness: 200 while the process runs."""
        return json_response({"status": "ok"})


class Ready(Resource):
    def get(self):
        """Readiness: a verified default model is loaded and the prediction log can take and ship rows."""
        reasons = []
        default = current_app.config["SETTINGS"].MODEL_NAME
        try:
            registry().get(default)
        except ServiceError as exc:
            reasons.append(f"model {default}: {exc.detail}")
        log, log_problems = prediction_log_state()
        reasons += log_problems
        body = {
            "status": "ready" if not reasons else "not ready",
            "reasons": reasons,
            "models": registry().status(),
            "log": log,
        }
        return json_response(body, 200 if not reasons else 503)


def prediction_log_state() -> tuple[dict, list[str]]:
    """The journal's state, and why it cannot take or ship rows (nothing when it can)."""
    recorder = current_app.extensions["prediction_log"]
    log = recorder.status()
    limit = current_app.config["SETTINGS"].LOG_READY_MAX_BACKLOG_ROWS
    problems = []
    if not log["writable"]:
        problems.append(f"the prediction log journal {log['directory']} is not writable")
    if recorder.shipper_missing(log):
        problems.append("no shipper has reported on the journal for "
                        f"{log['status_age_seconds'] or 'ever'} s: rows are not reaching the database")
    if (log["backlog_rows"] or 0) > limit:
        problems.append(f"{log['backlog_rows']} log rows wait in the journal (more than "
                        f"LOG_READY_MAX_BACKLOG_ROWS={limit}); database: {log['database']}")
    return log, problems
