"""Reading the log back: pages with filters, one row by id, recent accepted requests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..extensions import db
from .table import PredictionLog

# Bodies read per statement when a window of logged requests is streamed.
BODY_BATCH = 200
# Counting every row a filter matches means reading all of them: over a log of millions, seconds.
# The count of a page stops here; the page itself is read with LIMIT either way.
COUNT_CAP = 10_000


def serialize(row: PredictionLog) -> dict[str, Any]:
    return {
        "request_id": row.request_id,
        "received_at": as_utc(row.received_at).isoformat(),
        "endpoint": row.endpoint,
        "status": row.status,
        "model": {"name": row.model_name, "version": row.model_version, "sha256": row.model_sha256},
        "n_rows": row.n_rows,
        "n_ood_flagged": row.n_ood_flagged,
        "latency_ms": row.latency_ms,
        "request_body": row.request_body,
        "request_raw": row.request_raw,
        "request_truncated": row.request_truncated,
        "response_body": row.response_body,
        "error": row.error,
        "client_addr": row.client_addr,
    }


@dataclass
class Page:
    """One page of log rows, newest first."""

    rows: list[PredictionLog]
    # Rows matching the filters, counted up to COUNT_CAP; total_exact is False when more match.
    total: int
    total_exact: bool
    next_offset: int | None


def query(
    *,
    status: int | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """Rows newest first, how many match the filters (up to COUNT_CAP) and where the next page starts."""
    if any(value is not None and "\x00" in value for value in (model_name, model_version)):
        return Page([], 0, True, None)  # no stored text holds U+0000 (PostgreSQL text cannot)
    conditions = []
    if status is not None:
        conditions.append(PredictionLog.status == status)
    if model_name is not None:
        conditions.append(PredictionLog.model_name == model_name)
    if model_version is not None:
        conditions.append(PredictionLog.model_version == model_version)
    if since is not None:
        conditions.append(PredictionLog.received_at >= since)
    if until is not None:
        conditions.append(PredictionLog.received_at < until)
    rows = list(db.session.scalars(
        sa.select(PredictionLog).where(*conditions)
        .order_by(PredictionLog.received_at.desc(), PredictionLog.id.desc()).limit(limit + 1).offset(offset)
    ).all())
    more = len(rows) > limit
    matching = sa.select(sa.literal_column("1")).select_from(PredictionLog).where(*conditions).limit(COUNT_CAP + 1)
    counted = int(db.session.scalar(sa.select(sa.func.count()).select_from(matching.subquery())) or 0)
    return Page(rows[:limit], min(counted, COUNT_CAP), counted <= COUNT_CAP, offset + limit if more else None)


def find(request_id: str) -> PredictionLog | None:
    if "\x00" in request_id:
        return None
    return db.session.scalar(sa.select(PredictionLog).where(PredictionLog.request_id == request_id))


def recent_accepted(model_name: str, model_version: str, limit: int) -> list[tuple[Any, Any]]:
    """(request body, response body) of the newest accepted requests answered by that version."""
    rows = db.session.execute(
        sa.select(PredictionLog.request_body, PredictionLog.response_body)
        .where(PredictionLog.status == 200, PredictionLog.model_name == model_name,
               PredictionLog.model_version == model_version)
        .order_by(PredictionLog.received_at.desc(), PredictionLog.id.desc())
        .limit(limit)
    ).all()
    return [(row.request_body, row.response_body) for row in rows]


def as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def recent_request_bodies(model_name: str, model_version: str, n_rows: int, max_bytes: int) -> Iterator[str]:
    """Request bodies (JSON text) of the newest accepted requests of a version, newest first.

    Only as many requests as hold the newest ``n_rows`` data rows are read:
    their ids and row counts come first (narrow columns, at most ``n_rows``
    requests since each holds at least one row), then their bodies stream in
    batches, and reading stops once ``max_bytes`` of body text were read.
    Responses are never read.
    """
    accepted = (PredictionLog.status == 200, PredictionLog.model_name == model_name,
                PredictionLog.model_version == model_version)
    newest = db.session.execute(
        sa.select(PredictionLog.id, PredictionLog.n_rows).where(*accepted)
        .order_by(PredictionLog.received_at.desc(), PredictionLog.id.desc()).limit(n_rows)
    ).all()
    wanted, total = [], 0
    for row_id, rows_in_request in newest:
        wanted.append(row_id)
        total += rows_in_request or 0
        if total >= n_rows:
            break
    read = 0
    for start in range(0, len(wanted), BODY_BATCH):
        batch = wanted[start:start + BODY_BATCH]
        texts = dict(db.session.execute(
            sa.select(PredictionLog.id, sa.cast(PredictionLog.request_body, sa.Text)).where(
                PredictionLog.id.in_(batch))
        ).all())
        for row_id in batch:
            text = texts.get(row_id)
            if text is None:
                continue
            read += len(text)
            if read > max_bytes:
                return
            yield text
