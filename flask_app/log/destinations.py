"""Where shipped journal records go: PostgreSQL (COPY) or SQLite (the embedded default), exactly once.

A destination stores one batch of complete records together with the
segment's new checkpoint, in one transaction that first locks the
checkpoint row (``prediction_log_journal``). If the checkpoint is not where
the shipper read from, nothing is stored and ``CheckpointMoved`` says where
it is. If a batch meets a request id that is already stored (a checkpoint
lost with its database, say), its records are stored one by one with
``ON CONFLICT DO NOTHING``; a record the database refuses is tried once more
with its bodies as text, and one refused even so is handed back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

import psycopg
import sqlalchemy as sa
from psycopg import errors as pg_errors
from psycopg import sql

from . import record
from .record import RawJSON
from .table import COLUMN_KINDS, JournalSegment, PredictionLog

PREDICTION_LOG = PredictionLog.__tablename__
JOURNAL_CHECKPOINTS = JournalSegment.__tablename__

log = logging.getLogger("flask_app.log.destinations")


class DatabaseUnavailable(Exception):
    """The destination took no batch now: rows stay in the journal for the next pass."""


class CheckpointMoved(Exception):
    """Another shipper committed this segment further than we read it."""

    def __init__(self, offset: int, rows: int):
        super().__init__(offset)
        self.offset = offset
        self.rows = rows


class Destination(Protocol):
    def ship(self, segment: str, start: int, end: int, rows_before: int, data: bytes, n_rows: int,
             columns: list[str]) -> list[bytes]: ...

    def prune(self, days: float) -> None: ...

    def close(self) -> None: ...


# --- PostgreSQL ---------------------------------------------------------------------------


class PostgresDestination:
    """COPY into prediction_log on one connection with statement and lock timeouts."""

    def __init__(self, conninfo: str, timeout_seconds: float):
        self.conninfo = conninfo
        timeout_ms = int(timeout_seconds * 1000)
        self.options = f"-c statement_timeout={timeout_ms} -c lock_timeout={min(timeout_ms, 2000)}"
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            try:
                self._conn = psycopg.connect(self.conninfo, connect_timeout=2, options=self.options,
                                             application_name="prediction-log-shipper")
            except psycopg.Error as exc:
                raise DatabaseUnavailable(_reason(exc)) from exc
        return self._conn

    def _run(self, work: Callable[[psycopg.Connection], Any]) -> Any:
        """``work`` in a transaction. A connection that went stale (a restarted server) is replaced once."""
        for attempt in (1, 2):
            fresh = self._conn is None or self._conn.closed or self._conn.broken
            conn = self._connection()
            try:
                with conn.transaction():
                    return work(conn)
            except psycopg.OperationalError as exc:
                timed_out = isinstance(exc, pg_errors.QueryCanceled | pg_errors.LockNotAvailable)
                if not timed_out:
                    self.close()
                if fresh or timed_out or attempt == 2:
                    raise DatabaseUnavailable(_reason(exc)) from exc
            except psycopg.Error as exc:
                raise DatabaseUnavailable(_reason(exc)) from exc
        raise AssertionError("unreachable")

    def ship(self, segment: str, start: int, end: int, rows_before: int, data: bytes, n_rows: int,
             columns: list[str]) -> list[bytes]:
        """Store a batch and move the checkpoint; returns the records the database refused even as text."""
        names = sql.SQL(", ").join(map(sql.Identifier, columns))

        def work(conn: psycopg.Connection) -> list[bytes]:
            conn.execute(_CHECKPOINT_CREATE, (segment, start, rows_before))
            offset, rows = conn.execute(_CHECKPOINT_LOCK, (segment,)).fetchone()
            if offset != start:
                raise CheckpointMoved(int(offset), int(rows))
            refused: list[bytes] = []
            try:
                with conn.transaction(), conn.cursor() as cursor, \
                        cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(_LOG, names)) as copy:
                    copy.write(data)
            except pg_errors.UniqueViolation:
                refused = self._skipping_duplicates(conn, names, data, columns)
            except (pg_errors.DataError, pg_errors.IntegrityError):
                refused = self._one_by_one(conn, names, data, columns)
            conn.execute(_CHECKPOINT_ADVANCE, (end, rows_before + n_rows, segment))
            return refused

        return self._run(work)

    def _skipping_duplicates(self, conn: psycopg.Connection, names: sql.Composable, data: bytes,
                             columns: list[str]) -> list[bytes]:
        """The batch once more, request ids already stored left out: through a temporary table, one statement."""
        try:
            with conn.transaction(), conn.cursor() as cursor:
                self._stage(cursor, names)
                with cursor.copy(sql.SQL("COPY journal_batch ({}) FROM STDIN").format(names)) as copy:
                    copy.write(data)
                cursor.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM journal_batch ON CONFLICT DO NOTHING")
                               .format(_LOG, names, names))
            return []
        except (pg_errors.DataError, pg_errors.IntegrityError):
            return self._one_by_one(conn, names, data, columns)

    @staticmethod
    def _stage(cursor: psycopg.Cursor, names: sql.Composable) -> None:
        cursor.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS journal_batch ON COMMIT DROP AS "
                               "SELECT {} FROM {} WITH NO DATA").format(names, _LOG))
        cursor.execute("TRUNCATE journal_batch")

    def _one_by_one(self, conn: psycopg.Connection, names: sql.Composable, data: bytes,
                    columns: list[str]) -> list[bytes]:
        """Each record on its own (a record the database refuses is in the batch): duplicates skipped, a refused
        record tried once more with its bodies as text; returns those refused even so."""
        insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM journal_batch ON CONFLICT DO NOTHING").format(
            _LOG, names, names)
        refused = []
        for line in data.splitlines(keepends=True):
            stored = False
            for attempt in (line, _bodies_as_text(line, columns)):
                if attempt is None:
                    break
                try:
                    with conn.transaction(), conn.cursor() as cursor:
                        self._stage(cursor, names)
                        with cursor.copy(sql.SQL("COPY journal_batch ({}) FROM STDIN").format(names)) as copy:
                            copy.write(attempt)
                        cursor.execute(insert)
                    stored = True
                    break
                except (pg_errors.DataError, pg_errors.IntegrityError) as exc:
                    log.warning("prediction log: the database refused a journal record (%s)", _reason(exc))
            if not stored:
                refused.append(line)
        return refused

    def prune(self, days: float) -> None:
        """Forget checkpoints untouched for ``days`` (their segments are long gone)."""
        self._run(lambda conn: conn.execute(_CHECKPOINT_PRUNE, (days,)))

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):  # a connection that cannot even close is dropped all the same
                self._conn.close()
            self._conn = None


_LOG = sql.Identifier(PREDICTION_LOG)
_CHECKPOINTS = sql.Identifier(JOURNAL_CHECKPOINTS)
_CHECKPOINT_CREATE = sql.SQL("INSERT INTO {} (segment, shipped_offset, shipped_rows) VALUES (%s, %s, %s) "
                             "ON CONFLICT DO NOTHING").format(_CHECKPOINTS)
_CHECKPOINT_LOCK = sql.SQL("SELECT shipped_offset, shipped_rows FROM {} WHERE segment = %s FOR UPDATE").format(
    _CHECKPOINTS)
_CHECKPOINT_ADVANCE = sql.SQL("UPDATE {} SET shipped_offset = %s, shipped_rows = %s, updated_at = now() "
                              "WHERE segment = %s").format(_CHECKPOINTS)
_CHECKPOINT_PRUNE = sql.SQL("DELETE FROM {} WHERE updated_at < now() - make_interval(secs => %s * 86400)").format(
    _CHECKPOINTS)


# --- SQLite (the embedded default) -----------------------------------------------------------


class SQLiteDestination:
    """The same contract on SQLite: records decoded and inserted with INSERT OR IGNORE."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.table = PredictionLog.__table__
        self.checkpoints = JournalSegment.__table__

    def ship(self, segment: str, start: int, end: int, rows_before: int, data: bytes, n_rows: int,
             columns: list[str]) -> list[bytes]:
        refused, rows = [], []
        for line in data.splitlines(keepends=True):
            try:
                rows.append(typed_values(record.decode(line, columns)))
            except (ValueError, UnicodeDecodeError):
                refused.append(line)
        checkpoint = {"segment": segment, "shipped_offset": end, "shipped_rows": rows_before + n_rows,
                      "updated_at": dt.datetime.now(dt.UTC)}
        try:
            with self.engine.begin() as conn:
                found = conn.execute(sa.select(self.checkpoints.c.shipped_offset, self.checkpoints.c.shipped_rows)
                                     .where(self.checkpoints.c.segment == segment)).first()
                if found is not None and found[0] != start:
                    raise CheckpointMoved(int(found[0]), int(found[1]))
                if rows:
                    conn.execute(sa.insert(self.table).prefix_with("OR IGNORE"), rows)
                if found is None:
                    conn.execute(sa.insert(self.checkpoints), checkpoint)
                else:
                    conn.execute(sa.update(self.checkpoints).where(self.checkpoints.c.segment == segment)
                                 .values(checkpoint))
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseUnavailable(_reason(exc)) from exc
        return refused

    def prune(self, days: float) -> None:
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.delete(self.checkpoints).where(self.checkpoints.c.updated_at < cutoff))
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseUnavailable(_reason(exc)) from exc

    def close(self) -> None:
        """The engine is the app's; nothing of its own to close."""


def typed_values(fields: dict[str, str | None]) -> dict[str, Any]:
    """A decoded record's text fields as the Python values of their columns."""
    values: dict[str, Any] = {}
    for name, text in fields.items():
        kind = COLUMN_KINDS.get(name, "text")
        if text is None or kind == "text":
            values[name] = text
        elif kind == "json":
            values[name] = RawJSON(text)
        elif kind == "int":
            values[name] = int(text)
        elif kind == "float":
            values[name] = float(text)
        elif kind == "bool":
            values[name] = text == "t"
        else:
            values[name] = dt.datetime.fromisoformat(text)
    return values


def _bodies_as_text(line: bytes, columns: list[str]) -> bytes | None:
    """A refused record once more, its JSON bodies moved into request_raw as text; None if it cannot be read."""
    try:
        fields = record.decode(line, columns)
    except (ValueError, UnicodeDecodeError):
        return None
    bodies = {name: fields[name] for name in columns if COLUMN_KINDS.get(name) == "json" and fields[name]}
    if not bodies:
        return None
    for name in bodies:
        fields[name] = None
    if "request_raw" in fields:
        fields["request_raw"] = json.dumps(bodies, ensure_ascii=False)[:65536]
    if "error" in fields:
        fields["error"] = ((fields["error"] or "") + " [bodies stored as text: the database refused them]")[:2000]
    return record.encode(fields, columns, frozenset())


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
