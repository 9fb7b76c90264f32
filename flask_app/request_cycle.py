"""What happens around every request: request ids, the prediction log, metrics, access lines.

Predict endpoints are logged here, after the answer is built and before it
is sent, so accepted and rejected requests (including 404/405/413/415 and
unexpected errors) go through one path and each gets exactly one log row.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
import uuid
from typing import Any

from flask import Flask, Response, current_app, g, request

from . import metrics
from .errors import LogUnavailable, problem_body, problem_response
from .log import RawJSON, SpoolError, raw_text

access_log = logging.getLogger("flask_app.access")

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
PREDICT_PATHS = re.compile(r"^/(predict|models/[^/]+/predict|v2/models/[^/]+(/versions/[^/]+)?/infer)/?$")


def register_request_cycle(app: Flask) -> None:
    app.before_request(start_request)
    app.after_request(finish_request)


def start_request() -> None:
    g.started = time.perf_counter()
    g.received_at = dt.datetime.now(dt.UTC)
    supplied = request.headers.get("X-Request-ID", "")
    g.request_id = supplied if REQUEST_ID_PATTERN.match(supplied) else uuid.uuid4().hex


def finish_request(response: Response) -> Response:
    latency = time.perf_counter() - g.get("started", time.perf_counter())
    if PREDICT_PATHS.match(request.path) and request.method != "OPTIONS":
        response = log_prediction(response, latency)
    response.headers["X-Request-ID"] = g.request_id
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    metrics.REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    metrics.LATENCY.labels(endpoint).observe(latency)
    served = g.get("served")
    access_log.info(
        "request_id=%s method=%s path=%s status=%d latency_ms=%.2f model=%s version=%s",
        g.request_id, request.method, request.path, response.status_code, latency * 1000,
        served.name if served else "-", served.version if served else "-",
    )
    return response


def log_prediction(response: Response, latency: float) -> Response:
    """Commit (or spool) the log row; withhold the answer if neither worked."""
    settings = current_app.config["SETTINGS"]
    writer = current_app.extensions["prediction_log"]
    row = build_row(response, latency, settings.LOG_RAW_BODY_LIMIT)
    try:
        stored_id, spooled = writer.write(row)
    except SpoolError:
        current_app.logger.exception("prediction log unavailable request_id=%s", g.request_id)
        metrics.LOG_WRITES.labels("failed").inc()
        error = LogUnavailable("The answer cannot be recorded in the prediction log, so it is withheld; retry.")
        return problem_response(problem_body(error.status, error.title, error.detail, error.type))
    metrics.LOG_WRITES.labels("spooled" if spooled else "committed").inc()
    if response.status_code >= 400:
        metrics.VALIDATION_FAILURES.labels(_reason(response)).inc()
    if stored_id != g.request_id:
        # A client reused an X-Request-ID already in the log: the row and the answer carry a new one.
        g.request_id = stored_id
        body = g.get("response_body")
        if isinstance(body, dict):
            body["request_id"] = stored_id
            response.set_data(json.dumps(body))
    return response


def build_row(response: Response, latency: float, raw_limit: int) -> dict[str, Any]:
    served = g.get("served")
    payload = g.get("payload")
    request_body, request_raw, truncated = None, None, False
    if payload is not None:
        # The body parsed as JSON: store its text rather than serialise the parsed value again.
        request_body = RawJSON.from_text(request.get_data(cache=True).decode("utf-8"))
    elif response.status_code != 413:
        raw = request.get_data(cache=True)
        if raw:
            request_raw, truncated = raw_text(raw, raw_limit)
    else:
        truncated = True
    body = g.get("response_body")
    return {
        "request_id": g.request_id,
        "received_at": g.received_at,
        "endpoint": request.path[:200],
        "status": response.status_code,
        "model_name": served.name if served else None,
        "model_version": served.version if served else None,
        "model_sha256": served.sha256 if served else None,
        "n_rows": g.get("n_rows"),
        "n_ood_flagged": g.get("n_ood_flagged"),
        "latency_ms": round(latency * 1000, 3),
        "request_body": request_body,
        "request_raw": request_raw,
        "request_truncated": truncated,
        "response_body": RawJSON.from_text(g.response_text) if g.get("response_text") else body,
        "error": _error_summary(body) if response.status_code >= 400 else None,
        "client_addr": (request.remote_addr or "")[:64] or None,
    }


def _error_summary(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    summary = f"{body.get('status')} {body.get('title')}: {body.get('detail')}"
    locations = [error.get("location") for error in body.get("errors", []) if isinstance(error, dict)]
    if locations:
        summary += " at " + ", ".join(str(loc) for loc in locations[:10])
        if len(locations) > 10:
            summary += f" and {len(locations) - 10} more"
    return summary[:2000]


def _reason(response: Response) -> str:
    body = g.get("response_body")
    kind = body.get("type", "") if isinstance(body, dict) else ""
    return kind.rsplit(":", 1)[-1] if kind and kind != "about:blank" else str(response.status_code)
