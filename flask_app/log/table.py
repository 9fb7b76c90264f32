"""The prediction_log table: one row per request to a predict endpoint."""

from __future__ import annotations

import sqlalchemy as sa

from ..extensions import db

# json, not jsonb, on PostgreSQL: the body's text is kept as it came (see migration 0002).
JSONDocument = sa.JSON()


class PredictionLog(db.Model):
    """One request to a predict endpoint, accepted or rejected."""

    __tablename__ = "prediction_log"

    id = sa.Column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True)
    # Minted by the service for every request: time-ordered and unique (see request_ids.py).
    request_id = sa.Column(sa.String(128), nullable=False, unique=True)
    # The X-Request-ID the client sent, if any: clients may reuse theirs.
    client_request_id = sa.Column(sa.String(128))
    received_at = sa.Column(sa.DateTime(timezone=True), nullable=False)
    endpoint = sa.Column(sa.String(200), nullable=False)
    status = sa.Column(sa.SmallInteger, nullable=False)
    model_name = sa.Column(sa.String(64))
    model_version = sa.Column(sa.String(64))
    model_sha256 = sa.Column(sa.String(64))
    n_rows = sa.Column(sa.Integer)
    n_ood_flagged = sa.Column(sa.Integer)
    latency_ms = sa.Column(sa.Float, nullable=False)
    request_body = sa.Column(JSONDocument)
    # A body that is not JSON is kept as text, cut to LOG_RAW_BODY_LIMIT characters.
    request_raw = sa.Column(sa.Text)
    request_truncated = sa.Column(sa.Boolean, nullable=False, default=False)
    response_body = sa.Column(JSONDocument)
    error = sa.Column(sa.Text)
    client_addr = sa.Column(sa.String(64))
    # When the row reached the table (set by the database): the shipping lag is logged_at - answered.
    logged_at = sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())

    __table_args__ = (
        sa.Index("ix_prediction_log_received_at", "received_at"),
        sa.Index("ix_prediction_log_status_received_at", "status", "received_at"),
        sa.Index("ix_prediction_log_model_name_received_at", "model_name", "received_at"),
        sa.Index("ix_prediction_log_model_version_received_at", "model_version", "received_at"),
        sa.Index("ix_prediction_log_client_request_id", "client_request_id"),
    )


class JournalSegment(db.Model):
    """How far one journal segment has been shipped into prediction_log."""

    __tablename__ = "prediction_log_journal"

    segment = sa.Column(sa.String(200), primary_key=True)
    shipped_offset = sa.Column(sa.BigInteger, nullable=False)
    shipped_rows = sa.Column(sa.BigInteger, nullable=False)
    updated_at = sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


# The columns a log row is written with; id and logged_at are the database's.
COLUMNS = [column.name for column in PredictionLog.__table__.columns if column.name not in ("id", "logged_at")]
JSON_COLUMNS = frozenset(column.name for column in PredictionLog.__table__.columns if isinstance(column.type, sa.JSON))
# PostgreSQL text cannot hold U+0000; the log stores U+FFFD in its place.
TEXT_COLUMNS = ("request_id", "client_request_id", "endpoint", "error", "request_raw", "client_addr")


# How a journal record's text becomes a column's value where the database does not parse it (SQLite).
COLUMN_KINDS = {
    column.name: "json" if isinstance(column.type, sa.JSON)
    else "bool" if isinstance(column.type, sa.Boolean)
    else "int" if isinstance(column.type, sa.Integer)
    else "float" if isinstance(column.type, sa.Float)
    else "time" if isinstance(column.type, sa.DateTime)
    else "text"
    for column in PredictionLog.__table__.columns
}
