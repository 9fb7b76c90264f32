"""GET /health (the process runs) and GET /ready (it can answer and record)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app
from flask_restful import Resource

from ..extensions import db
from .common import json_response, registry


class Health(Resource):
    def get(self):
        """Liveness: 200 while the process runs."""
        return json_response({"status": "ok"})


class Ready(Resource):
    def get(self):
        """Readiness: a verified default model is loaded and the log can take rows."""
        reasons = []
        models = registry().status()
        default = current_app.config["SETTINGS"].MODEL_NAME
        try:
            registry().get(default)
        except Exception as exc:
            reasons.append(f"model {default}: {getattr(exc, 'detail', exc)}")
        models = registry().status()
        log_state = prediction_log_state()
        if log_state["problem"]:
            reasons.append(log_state["problem"])
        body = {
            "status": "ready" if not reasons else "not ready",
            "reasons": reasons,
            "models": models,
            "log": {key: log_state[key] for key in ("database", "spool_writable", "spool_rows")},
        }
        return json_response(body, 200 if not reasons else 503)


def prediction_log_state() -> dict:
    """Whether the log can take rows: the database answers or the spool is writable."""
    writer = current_app.extensions["prediction_log"]
    try:
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        database = "ok"
    except sa.exc.SQLAlchemyError as exc:
        database = f"unreachable ({type(exc).__name__})"
    spool_ok = writer.spool_writable()
    problem = None
    if database != "ok" and not spool_ok:
        problem = "the prediction log can take no rows: database unreachable and spool not writable"
    return {"database": database, "spool_writable": spool_ok, "spool_rows": writer.spool_size(), "problem": problem}
