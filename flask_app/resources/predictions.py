"""GET /predictions and GET /predictions/<request_id>: read the log (admin)."""

from __future__ import annotations

import datetime as dt
import re

from flask import request
from flask_restful import Resource

from .. import log as prediction_log
from ..auth import require_admin
from ..errors import InvalidInput, NotFound
from .common import flush_log, int_arg, json_response

MAX_PAGE = 500


def time_arg(name: str) -> dt.datetime | None:
    """An RFC 3339 / ISO 8601 time; a leap second (:60) counts as the second before it."""
    raw = request.args.get(name)
    if raw is None:
        return None
    text = re.sub(r"(T\d\d:\d\d):60", r"\1:59", raw.upper().replace("Z", "+00:00"))
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{name} must be an ISO 8601 time.",
                           [{"location": f"query/{name}", "message": "not an ISO 8601 time"}]) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class PredictionList(Resource):
    def get(self):
        """Log rows, newest first; filters status, model, model_version, client_request_id, since, until.

        ``total`` counts the matching rows up to 10,000 (``total_exact`` says whether it stopped
        there); ``next_offset`` is exact either way.
        """
        require_admin()
        flush_log()
        limit = int_arg("limit", 50, 1, MAX_PAGE)
        offset = int_arg("offset", 0, 0, 10**9)
        status = int_arg("status", 0, 100, 599) if "status" in request.args else None
        page = prediction_log.query(
            status=status,
            model_name=request.args.get("model"),
            model_version=request.args.get("model_version"),
            client_request_id=request.args.get("client_request_id"),
            since=time_arg("since"),
            until=time_arg("until"),
            limit=limit,
            offset=offset,
        )
        return json_response({
            "items": [prediction_log.serialize(row) for row in page.rows],
            "total": page.total,
            "total_exact": page.total_exact,
            "limit": limit,
            "offset": offset,
            "next_offset": page.next_offset,
        })


class PredictionItem(Resource):
    def get(self, request_id: str):
        """One log row by request id."""
        require_admin()
        row = prediction_log.find(request_id)
        if row is None:
            # Answered a moment ago? After this flush every row answered before it is in the table, whoever
            # shipped it: this one, or the shipper thread that got there first.
            flush_log()
            row = prediction_log.find(request_id)
        if row is None:
            raise NotFound(f"No logged request {request_id[:128]!r}.")
        return json_response(prediction_log.serialize(row))
