"""Small helpers the resources share: reading JSON bodies, writing JSON answers, query args."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, current_app, g, request

from ..errors import InvalidInput, UnsupportedMediaType
from ..validation import parse_json


def registry():
    return current_app.extensions["model_registry"]


def settings():
    return current_app.config["SETTINGS"]


# A read of the log waits at most this long for the journal to be shipped first.
FLUSH_SECONDS = 2.0


def flush_log() -> None:
    """Ship what the journal holds before reading the log, so no answered request is missing from it."""
    current_app.extensions["prediction_log"].flush(FLUSH_SECONDS)


def read_json_body(untyped_is_json: bool = False) -> Any:
    """The request's JSON value; 415 for another media type or an encoding, 413 when too large.

    ``untyped_is_json``: a body without Content-Type counts as JSON (V2 clients send none).
    """
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise UnsupportedMediaType(f"Content-Encoding {encoding[:40]!r} is not supported; send the body uncompressed.")
    mimetype = request.mimetype
    if untyped_is_json and not mimetype:
        mimetype = "application/json"
    if mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise UnsupportedMediaType(
            f"Send 'Content-Type: application/json', not {mimetype[:100] or 'no content type'!r}."
        )
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"The charset must be utf-8, not {charset[:40]!r}.")
    payload = parse_json(request.get_data(cache=True))
    g.payload = payload
    return payload


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    g.response_body = body
    g.response_data = orjson.dumps(body)
    return Response(g.response_data, status=status, mimetype="application/json")


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer.",
                           [{"location": f"query/{name}", "message": "not an integer"}]) from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}.",
                           [{"location": f"query/{name}", "message": f"must be between {low} and {high}"}])
    return value


def bool_arg(name: str) -> bool:
    raw = request.args.get(name, "false").lower()
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no", ""):
        return False
    raise InvalidInput(f"{name} must be true or false.", [{"location": f"query/{name}", "message": "not a boolean"}])
