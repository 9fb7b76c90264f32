"""Commits log rows, spools them while the database is away, replays the spool."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.types.json import Json
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from .query import as_utc
from .record import RawJSON, safe_json_dumps
from .table import COLUMNS, JSON_COLUMNS, TEXT_COLUMNS, PredictionLog

log = logging.getLogger("flask_app.log")

# After a failed write the database is not retried for this long; rows go to the spool.
DB_RETRY_SECONDS = 1.0
REPLAY_BATCH = 500


class SpoolError(OSError):
    pass


class PredictionLogWriter:
    """Commits log rows, spools them while the database is away, replays the spool."""

    def __init__(self, engine: sa.Engine, spool_dir: Path):
        self.engine = engine
        self.table = PredictionLog.__table__
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(self.table)
        # On PostgreSQL the request path skips SQLAlchemy's execution machinery (see _insert_one).
        # Replays and SQLite go through SQLAlchemy.
        self._direct = engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
        self._direct_sql = str(
            postgresql.insert(self.table).values({name: sa.bindparam(name) for name in COLUMNS})
            .on_conflict_do_nothing().returning(self.table.c.request_id)
            .compile(dialect=postgresql.psycopg.dialect())
        )
        self._db_retry_at = 0.0
        self._spool_lock = threading.Lock()
        self._spool_fd: int | None = None
        self._spool_pid: int | None = None
        self._spool_path: Path | None = None
        self._replay_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.spooled_total = 0

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    @engine.setter
    def engine(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    # -- the request path ---------------------------------------------------------

    def write(self, row: dict[str, Any]) -> tuple[str, bool]:
        """Make ``row`` durable; returns the request id it is stored under and whether it was spooled.

        The id changes only when a client reused an X-Request-ID that is
        already in the log: the row is then stored under ``<id>.<suffix>``.
        Raises SpoolError when neither the database nor the spool took it.
        """
        for key in TEXT_COLUMNS:
            value = row.get(key)
            if value and "\x00" in value:
                row[key] = value.replace("\x00", "\ufffd")
        if time.monotonic() >= self._db_retry_at:
            try:
                stored = self._insert_one(row) if self._direct else None
                return stored or self._insert_rows([row])[0], False
            except (SQLAlchemyError, psycopg.Error) as exc:
                self._db_retry_at = time.monotonic() + DB_RETRY_SECONDS
                log.warning("prediction log: database write failed (%s); spooling", type(exc).__name__)
        self._spool(row)
        return row["request_id"], True

    def _insert_one(self, row: dict[str, Any]) -> str | None:
        """Insert one row in one round trip; None when its request id is taken (the caller renames it).

        An autocommitted connection from the pool runs the statement, which
        psycopg prepares once per connection, without SQLAlchemy's execution
        machinery: the row is durable when this returns.
        """
        values = {name: row.get(name) for name in COLUMNS}
        for name in JSON_COLUMNS:
            if values[name] is not None:
                values[name] = Json(values[name], dumps=safe_json_dumps)
        with self._autocommit.connect() as conn:
            found = conn.connection.driver_connection.execute(self._direct_sql, values, prepare=True).fetchone()
        return found[0] if found else None

    def _insert_rows(self, rows: list[dict[str, Any]]) -> list[str]:
        """Insert rows idempotently; returns their stored request ids.

        One row (the request path) is a single autocommitted statement: one
        round trip to the database. Several rows (a replay) share one
        transaction.
        """
        stored = [row["request_id"] for row in rows]
        statement = self._insert.on_conflict_do_nothing().returning(self.table.c.request_id)
        single = len(rows) == 1
        with (self._autocommit.connect() if single else self.engine.begin()) as conn:
            inserted = set(conn.execute(statement, rows[0] if single else rows).scalars())
            for index, row in enumerate(rows):
                if row["request_id"] in inserted:
                    continue
                existing = conn.execute(
                    sa.select(self.table.c.received_at).where(self.table.c.request_id == row["request_id"])
                ).scalar_one_or_none()
                if existing is not None and _same_instant(existing, row["received_at"]):
                    continue  # the same row, replayed again
                renamed = dict(row, request_id=f"{row['request_id'][:110]}.{uuid.uuid4().hex[:12]}")
                conn.execute(self._insert, [renamed])
                stored[index] = renamed["request_id"]
        return stored

    # -- the spool ------------------------------------------------------------------

    def _spool(self, row: dict[str, Any]) -> None:
        line = _spool_line(row)
        with self._spool_lock:
            try:
                fd = self._own_spool_fd()
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError as exc:
                raise SpoolError(f"cannot append to the spool in {self.spool_dir}: {exc}") from exc
        self.spooled_total += 1

    def _own_spool_fd(self) -> int:
        if self._spool_fd is None or self._spool_pid != os.getpid():
            self._spool_pid = os.getpid()
            self._spool_path = self.spool_dir / f"spool-{self._spool_pid}-{uuid.uuid4().hex[:8]}.jsonl"
            self._spool_fd = os.open(self._spool_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._spool_fd

    def spool_writable(self) -> bool:
        return self.spool_dir.is_dir() and os.access(self.spool_dir, os.W_OK)

    def spool_size(self) -> int:
        """Rows waiting in every spool file of this directory (all workers)."""
        return spooled_rows(self.spool_dir)

    def replay(self) -> int:
        """Move spooled rows into the database; returns how many were committed."""
        if not self._replay_lock.acquire(blocking=False):
            return 0
        try:
            moved = 0
            for path in sorted(self.spool_dir.glob("spool-*.jsonl")):
                moved += self._replay_file(path)
            return moved
        finally:
            self._replay_lock.release()

    def _replay_file(self, path: Path) -> int:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # its worker is appending or another worker is replaying it
            rows = _read_spool(fd)
            if rows:
                try:
                    for start in range(0, len(rows), REPLAY_BATCH):
                        self._insert_rows(rows[start:start + REPLAY_BATCH])
                except SQLAlchemyError as exc:
                    log.info("prediction log: replay deferred, database still unavailable (%s)",
                             type(exc).__name__)
                    return 0
                self._db_retry_at = 0.0
                log.info("prediction log: replayed %d spooled rows from %s", len(rows), path.name)
            os.ftruncate(fd, 0)
            os.fsync(fd)
            if path != self._spool_path and not _owner_alive(path):
                path.unlink(missing_ok=True)
            return len(rows)
        finally:
            os.close(fd)

    # -- the background task ------------------------------------------------------

    def start(self, interval: float) -> None:
        if interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, args=(interval,), name="spool-replay", daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.replay()
            except OSError:
                log.exception("prediction log: spool replay failed")

    def stop(self) -> None:
        """Stop the background task and make a last attempt to empty the spool."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.replay()
        except OSError:
            log.exception("prediction log: final spool replay failed")


def spooled_rows(spool_dir: Path) -> int:
    """Complete rows waiting in the spool files of a directory."""
    total = 0
    for path in Path(spool_dir).glob("spool-*.jsonl"):
        try:
            total += path.read_bytes().count(b"\n")
        except FileNotFoundError:
            continue
    return total


def _spool_line(row: dict[str, Any]) -> bytes:
    """One JSON line; raw JSON values are spliced in as they are, so they come back as JSON values."""
    plain = {key: value for key, value in row.items() if not isinstance(value, RawJSON)}
    plain["received_at"] = row["received_at"].isoformat()
    text = safe_json_dumps(plain)
    raw = "".join(f',"{key}":{value}' for key, value in row.items() if isinstance(value, RawJSON))
    return (text[:-1] + raw + "}\n").encode("utf-8")


def _read_spool(fd: int) -> list[dict[str, Any]]:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    rows = []
    for line in b"".join(chunks).split(b"\n"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            # A torn last line: its append never completed, so its request was never answered.
            log.warning("prediction log: skipping an incomplete spool line")
            continue
        row["received_at"] = dt.datetime.fromisoformat(row["received_at"])
        rows.append({key: row.get(key) for key in COLUMNS})
    return rows


def _owner_alive(path: Path) -> bool:
    try:
        pid = int(path.name.split("-")[1])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _same_instant(stored: dt.datetime, received: dt.datetime) -> bool:
    return as_utc(stored) == as_utc(received)  # SQLite hands back naive UTC


