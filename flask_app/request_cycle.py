"""What happens around every request: request ids, the prediction log, metrics, access lines.

Predict endpoints are logged here, after the answer is built and before it
is sent, so accepted and rejected requests (including 404/405/413/415 and
unexpected errors) go through one path and each gets exactly one log row:
appended to the journal before the answer leaves, or the answer is
withheld (503).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from flask import Flask, Response, current_app, g, request

from . import metrics
from .errors import LogUnavailable, problem_body, problem_response
from .log import JournalUnavailable, RawJSON, raw_text
from .request_ids import new_request_id

access_log = logging.getLogger("flask_app.access")

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
PREDICT_PATHS = re.compile(r"^/(predict|models/[^/]+/predict|v2/models/[^/]+(/versions/[^/]+)?/infer)/?$")


def register_request_cycle(app: Flask) -> None:
    app.before_request(start_request)
    app.after_request(finish_request)


def start_request() -> None:
    state = g._get_current_object()  # bound once: each access through the proxy costs a lookup
    state.started = time.perf_counter()
    # The service mints every request id; one the client sent is kept beside it (clients reuse theirs).
    state.request_id, state.received_at = new_request_id()
    supplied = request.headers.get("X-Request-ID")
    state.client_request_id = supplied if supplied and REQUEST_ID_PATTERN.match(supplied) else None


def finish_request(response: Response) -> Response:
    state, current = g._get_current_object(), request._get_current_object()
    latency = time.perf_counter() - state.started
    if current.method != "OPTIONS" and PREDICT_PATHS.match(current.path):
        response = log_prediction(response, latency)
    headers = response.headers
    headers["X-Request-ID"] = state.request_id
    if state.client_request_id:
        headers["X-Client-Request-ID"] = state.client_request_id
    rule = current.url_rule
    metrics.record_request(rule.rule if rule else "unmatched", current.method, response.status_code, latency)
    if access_log.isEnabledFor(logging.INFO):
        served = state.get("served")
        access_log.info("request", extra={"fields": {
            "request_id": state.request_id,
            "client_request_id": state.client_request_id,
            "method": current.method,
            "path": current.path,
            "status": response.status_code,
            "latency_ms": round(latency * 1000, 2),
            "model": served.name if served else None,
            "version": served.version if served else None,
        }})
    return response


def log_prediction(response: Response, latency: float) -> Response:
    """Append the log row to the journal; withhold the answer if it cannot be made durable."""
    settings = current_app.config["SETTINGS"]
    row = build_row(response, latency, settings.LOG_RAW_BODY_LIMIT, settings.MAX_CONTENT_LENGTH)
    try:
        current_app.extensions["prediction_log"].append(row)
    except JournalUnavailable as exc:
        current_app.logger.error("prediction log unavailable request_id=%s: %s", g.request_id, exc)
        metrics.LOG_WRITES.labels("refused").inc()
        error = LogUnavailable("The answer cannot be recorded in the prediction log, so it is withheld; retry.")
        return problem_response(problem_body(error.status, error.title, error.detail, error.type))
    metrics.LOG_WRITES.labels("journaled").inc()
    if response.status_code >= 400:
        metrics.VALIDATION_FAILURES.labels(_reason(response)).inc()
    return response


def build_row(response: Response, latency: float, raw_limit: int, max_body: int) -> dict[str, Any]:
    state, current = g._get_current_object(), request._get_current_object()
    served = state.get("served")
    request_body, request_raw, truncated = None, None, False
    if state.get("payload") is not None:
        # The body parsed as JSON: store its text rather than serialise the parsed value again.
        request_body = RawJSON.from_text(current.get_data(cache=True).decode("utf-8"))
    elif response.status_code == 413 or (current.content_length or 0) > max_body:
        truncated = True  # a body over MAX_CONTENT_LENGTH is never read, whatever else was wrong
    else:
        raw = current.get_data(cache=True)
        if raw:
            request_raw, truncated = raw_text(raw, raw_limit)
    body = state.get("response_body")
    data = state.get("response_data")
    return {
        "request_id": state.request_id,
        "client_request_id": state.client_request_id,
        "received_at": state.received_at,
        "endpoint": current.path[:200],
        "status": response.status_code,
        "model_name": served.name if served else None,
        "model_version": served.version if served else None,
        "model_sha256": served.sha256 if served else None,
        "n_rows": state.get("n_rows"),
        "n_ood_flagged": state.get("n_ood_flagged"),
        "latency_ms": round(latency * 1000, 3),
        "request_body": request_body,
        "request_raw": request_raw,
        "request_truncated": truncated,
        "response_body": RawJSON.from_text(data.decode()) if data else body,
        "error": _error_summary(body) if response.status_code >= 400 else None,
        "client_addr": (current.remote_addr or "")[:64] or None,
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
