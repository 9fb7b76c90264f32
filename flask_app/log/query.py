"""Reading the log back: pages with filters, one row by id, recent accepted requests, traffic over time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
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
        "client_request_id": row.client_request_id,
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
    client_request_id: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """Rows newest first, how many match the filters (up to COUNT_CAP) and where the next page starts."""
    if any(value is not None and "\x00" in value for value in (model_name, model_version, client_request_id)):
        return Page([], 0, True, None)  # no stored text holds U+0000 (PostgreSQL text cannot)
    conditions = []
    if status is not None:
        conditions.append(PredictionLog.status == status)
    if model_name is not None:
        conditions.append(PredictionLog.model_name == model_name)
    if model_version is not None:
        conditions.append(PredictionLog.model_version == model_version)
    if client_request_id is not None:
        conditions.append(PredictionLog.client_request_id == client_request_id)
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


# --- traffic: aggregates over a time range ---------------------------------------------------------


def traffic(since: dt.datetime, until: dt.datetime, bucket_seconds: int,
            model_name: str | None = None) -> list[dict[str, Any]]:
    """Per time bucket in [since, until): requests, accepted, rejected, latency p50/p99, rows, OOD-flagged rows.

    Reads only rows whose ``received_at`` lies in the range (the table's time
    index, and its partitions when it is partitioned by time). PostgreSQL
    aggregates in SQL; other databases hand the narrow columns to
    ``aggregate_traffic``. Buckets without requests are left out.
    """
    where = _traffic_filter(since, until, model_name)
    if db.engine.dialect.name != "postgresql":
        return aggregate_traffic(_traffic_rows(where), since, bucket_seconds)
    start = since.timestamp()
    bucket = sa.func.floor((sa.extract("epoch", PredictionLog.received_at) - start) / bucket_seconds)
    accepted = PredictionLog.status < 400
    rows = db.session.execute(
        sa.select(
            bucket.label("bucket"),
            sa.func.count().label("n_requests"),
            sa.func.count().filter(accepted).label("n_accepted"),
            sa.func.percentile_cont(0.5).within_group(PredictionLog.latency_ms).label("p50_ms"),
            sa.func.percentile_cont(0.99).within_group(PredictionLog.latency_ms).label("p99_ms"),
            sa.func.coalesce(sa.func.sum(PredictionLog.n_rows).filter(accepted), 0).label("n_rows"),
            sa.func.coalesce(sa.func.sum(PredictionLog.n_ood_flagged).filter(accepted), 0).label("n_ood_flagged"),
        ).where(*where).group_by(bucket).order_by(bucket)
    ).all()
    return [_bucket(since, bucket_seconds, int(row.bucket), row.n_requests, row.n_accepted, row.p50_ms,
                    row.p99_ms, row.n_rows, row.n_ood_flagged) for row in rows]


def traffic_totals(since: dt.datetime, until: dt.datetime, model_name: str | None = None) -> dict[str, Any]:
    """The same figures over the whole range, with the number of answers per status code."""
    where = _traffic_filter(since, until, model_name)
    by_status = dict(db.session.execute(
        sa.select(PredictionLog.status, sa.func.count()).where(*where).group_by(PredictionLog.status)
    ).all())
    if db.engine.dialect.name != "postgresql":
        (totals,) = aggregate_traffic(_traffic_rows(where), since, None) or [_bucket(since, None, 0, 0, 0)]
    else:
        accepted = PredictionLog.status < 400
        row = db.session.execute(
            sa.select(
                sa.func.percentile_cont(0.5).within_group(PredictionLog.latency_ms).label("p50_ms"),
                sa.func.percentile_cont(0.99).within_group(PredictionLog.latency_ms).label("p99_ms"),
                sa.func.coalesce(sa.func.sum(PredictionLog.n_rows).filter(accepted), 0).label("n_rows"),
                sa.func.coalesce(sa.func.sum(PredictionLog.n_ood_flagged).filter(accepted), 0).label("n_ood"),
            ).where(*where)
        ).one()
        n_requests = sum(by_status.values())
        n_accepted = sum(count for status, count in by_status.items() if status < 400)
        totals = _bucket(since, None, 0, n_requests, n_accepted, row.p50_ms, row.p99_ms, row.n_rows, row.n_ood)
    totals["by_status"] = {int(status): int(count) for status, count in sorted(by_status.items())}
    return totals


def aggregate_traffic(rows: list[tuple[dt.datetime, int, float, int | None, int | None]],
                      since: dt.datetime, bucket_seconds: int | None) -> list[dict[str, Any]]:
    """``traffic`` computed in Python from (received_at, status, latency_ms, n_rows, n_ood_flagged) rows.

    ``bucket_seconds=None``: one bucket for everything. Percentiles interpolate
    linearly, as PostgreSQL's ``percentile_cont`` does.
    """
    groups: dict[int, list[tuple]] = {}
    start = since.timestamp()
    for row in rows:
        key = 0 if bucket_seconds is None else int((as_utc(row[0]).timestamp() - start) // bucket_seconds)
        groups.setdefault(key, []).append(row)
    buckets = []
    for key in sorted(groups):
        group = groups[key]
        latencies = np.array([row[2] for row in group], dtype=float)
        ok = [row for row in group if row[1] < 400]
        buckets.append(_bucket(
            since, bucket_seconds, key, len(group), len(ok),
            float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99)),
            sum(row[3] or 0 for row in ok), sum(row[4] or 0 for row in ok),
        ))
    return buckets


def _traffic_filter(since: dt.datetime, until: dt.datetime, model_name: str | None) -> list[Any]:
    where = [PredictionLog.received_at >= since, PredictionLog.received_at < until]
    if model_name is not None:
        where.append(PredictionLog.model_name == model_name)
    return where


def _traffic_rows(where: list[Any]) -> list[tuple]:
    return [tuple(row) for row in db.session.execute(
        sa.select(PredictionLog.received_at, PredictionLog.status, PredictionLog.latency_ms,
                  PredictionLog.n_rows, PredictionLog.n_ood_flagged).where(*where)
    ).all()]


def _bucket(since: dt.datetime, bucket_seconds: int | None, index: int, n_requests: int, n_accepted: int,
            p50_ms: float | None = None, p99_ms: float | None = None, n_rows: int = 0,
            n_ood_flagged: int = 0) -> dict[str, Any]:
    start = since + dt.timedelta(seconds=index * bucket_seconds) if bucket_seconds else since
    n_rows, n_ood_flagged = int(n_rows or 0), int(n_ood_flagged or 0)
    return {
        "start": start,
        "n_requests": int(n_requests),
        "n_accepted": int(n_accepted),
        "n_rejected": int(n_requests) - int(n_accepted),
        "p50_ms": None if p50_ms is None else float(p50_ms),
        "p99_ms": None if p99_ms is None else float(p99_ms),
        "n_rows": n_rows,
        "n_ood_flagged": n_ood_flagged,
        "ood_share": n_ood_flagged / n_rows if n_rows else None,
    }
