"""One exception family and one renderer for RFC 9457 problem+json.

Core modules raise these without knowing about HTTP (this module imports
Flask only where it renders); each carries its status and title, and
``register_error_handlers`` turns them, werkzeug's HTTP errors and anything
unexpected into ``application/problem+json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from flask import Flask, Response

PROBLEM_MIMETYPE = "application/problem+json"
PROBLEM_BASE = "urn:sklearn-service:problem:"

log = logging.getLogger("flask_app")


class ServiceError(Exception):
    """Base of every error the service reports to a client."""

    status = 500
    title = "Internal Server Error"
    slug = "internal"

    def __init__(self, detail: str = "", errors: list[dict[str, str]] | None = None, **extra: Any):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or []
        self.extra = extra

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug


class InvalidInput(ServiceError):
    """The body was read but is not an acceptable request: every problem is listed."""

    status, title, slug = 400, "Invalid input", "invalid-input"


class MalformedBody(ServiceError):
    """The body is not JSON this service accepts."""

    status, title, slug = 400, "Malformed body", "malformed-body"


class DriftRejected(ServiceError):
    status, title, slug = 400, "Input drift", "drift-rejected"


class UnsupportedMediaType(ServiceError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class Unauthorized(ServiceError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(ServiceError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(ServiceError):
    status, title, slug = 404, "Not Found", "not-found"


class VersionNotServed(ServiceError):
    """A version that is in the store but not active: only the active version answers."""

    status, title, slug = 400, "Version not served", "version-not-served"


class ModelRefused(ServiceError):
    """A bundle that failed verification: it is not activated."""

    status, title, slug = 409, "Model refused", "model-refused"


class ModelUnavailable(ServiceError):
    """No verified model is loaded for the requested name."""

    status, title, slug = 503, "Model unavailable", "model-unavailable"


class LogUnavailable(ServiceError):
    """The journal could not take the log row: the answer is withheld."""

    status, title, slug = 503, "Prediction log unavailable", "log-unavailable"


def problem_body(status: int, title: str, detail: str, type_: str = "about:blank", **extra: Any) -> dict[str, Any]:
    from flask import g

    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    body.update({key: value for key, value in extra.items() if value not in (None, [])})
    body["request_id"] = g.get("request_id")
    return body


def register_error_shape(app: Flask, prefix: str, shape: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Errors under ``prefix`` (a protocol with an error format of its own) are ``shape(problem)`` as JSON."""
    app.extensions.setdefault("error_shapes", []).append((prefix.rstrip("/"), shape))


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    from flask import Response, current_app, g, request

    mimetype = PROBLEM_MIMETYPE
    for prefix, shape in current_app.extensions.get("error_shapes", ()):
        if request.path == prefix or request.path.startswith(prefix + "/"):
            body, mimetype = shape(body), "application/json"
            break
    g.response_body = body
    g.response_data = orjson.dumps(body)
    response = Response(g.response_data, status=body["status"], mimetype=mimetype)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def register_error_handlers(app: Flask) -> None:
    from flask import g
    from sqlalchemy.exc import OperationalError
    from werkzeug.exceptions import HTTPException

    @app.errorhandler(ServiceError)
    def handle_service_error(error: ServiceError) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="admin"'} if error.status == 401 else None
        return problem_response(
            problem_body(error.status, error.title, error.detail, error.type, errors=error.errors, **error.extra),
            headers,
        )

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException) -> Response:
        headers = {}
        if error.code == 405 and error.valid_methods:
            headers["Allow"] = ", ".join(sorted(error.valid_methods))
        return problem_response(problem_body(error.code or 500, error.name, error.description or error.name), headers)

    @app.errorhandler(OperationalError)
    def handle_database_unavailable(error: OperationalError) -> Response:
        from .extensions import db

        db.session.rollback()
        log.warning("database unavailable request_id=%s: %s", g.get("request_id"), type(error.orig).__name__)
        return problem_response(problem_body(
            503, "Database unavailable", "The prediction log's database did not answer in time; retry.",
            PROBLEM_BASE + "database-unavailable"))

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response:
        from .extensions import db

        db.session.rollback()
        log.exception("unhandled error request_id=%s", g.get("request_id"))
        return problem_response(
            problem_body(500, "Internal Server Error", "The server failed; the request id identifies it in the logs.")
        )
