"""The prediction log as the service uses it: append a row, flush, say how far behind shipping is.

Every process has a ``Recorder``. ``append`` makes a row durable in this
process's journal segment (written; in strict durability also fsync'ed)
before the answer may leave. A shipper thread in every process competes for
the journal directory's shipper lock; the one that holds it moves rows into
the database every ``LOG_SHIP_INTERVAL`` seconds and publishes the backlog.
``flush`` runs a shipping pass in the calling thread (reading a log row
right after its answer, and at exit).
"""

from __future__ import annotations

import atexit
import logging
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from . import record
from .destinations import PostgresDestination, SQLiteDestination
from .journal import Journal
from .shipper import PassReport, Shipper, ShipperThread, read_status
from .table import COLUMNS, JSON_COLUMNS

log = logging.getLogger("flask_app.log")

# /ready says the shipper is missing when its status is older than this many shipping intervals (and 10 s).
STALE_INTERVALS = 40


class Recorder:
    """One process's prediction log: its journal, its shipper, and the thread that may ship."""

    def __init__(self, engine: sa.Engine, directory: Path, *, durability: str = "default",
                 ship_interval: float = 0.25, segment_bytes: int = 64 << 20, max_bytes: int = 1 << 30,
                 batch_bytes: int = 4 << 20, timeout_seconds: float = 5.0,
                 on_pass: Callable[[PassReport], None] | None = None):
        self.directory = Path(directory)
        self.durability = durability
        self.ship_interval = ship_interval
        self.journal = Journal(self.directory, COLUMNS, durability, segment_bytes, max_bytes)
        if engine.dialect.name == "postgresql":
            conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            destination = PostgresDestination(conninfo, timeout_seconds)
        else:
            destination = SQLiteDestination(engine)
        self.shipper = Shipper(self.directory, destination, batch_bytes, on_pass)
        self.thread = ShipperThread(self.shipper, ship_interval)
        self._stopped = False
        _LIVE.add(self)
        # A recorder dropped without stop() (a test's app, say) still seals its segment and closes its connection.
        weakref.finalize(self, _release, self.journal, self.shipper)

    def append(self, row: dict[str, Any]) -> None:
        """Make ``row`` durable in the journal; JournalUnavailable when it is not (withhold the answer)."""
        self.journal.append(record.encode(row, COLUMNS, JSON_COLUMNS))

    def flush(self, timeout: float = 5.0) -> PassReport:
        """Ship every complete record now, in this thread (any process may; exactly-once holds)."""
        return self.shipper.ship_once(deadline=time.monotonic() + timeout)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """At exit: stop shipping in the background, seal this process's segment, ship what is left."""
        if self._stopped:
            return
        self._stopped = True
        self.thread.stop()
        self.journal.close()
        report = self.flush(timeout)
        if report.error:
            log.warning("prediction log: rows stay in the journal %s until the database takes them (%s)",
                        self.directory, report.error)
        self.shipper.close()

    def status(self) -> dict[str, Any]:
        """The journal and the shipper as /ready and /metrics report them."""
        published = read_status(self.directory) or {}
        now = time.time()
        updated = published.get("updated_at")
        shipped, failed = published.get("last_shipped_at"), published.get("last_error_at")
        oldest = published.get("oldest_unshipped_at")
        failing = failed is not None and (shipped is None or failed > shipped)
        return {
            "durability": self.durability,
            "directory": str(self.directory),
            "writable": self.journal.writable(),
            "backlog_rows": published.get("rows"),
            "backlog_bytes": published.get("bytes"),
            "oldest_unshipped_seconds": round(now - oldest, 3) if oldest else 0.0,
            "shipper": published.get("shipper"),
            "status_age_seconds": round(now - updated, 3) if updated else None,
            "shipping": self.ship_interval > 0,
            "database": f"not taking rows: {published.get('last_error')}" if failing else "ok",
            "last_shipped_seconds_ago": round(now - shipped, 3) if shipped else None,
        }

    def shipper_missing(self, status: dict[str, Any]) -> bool:
        if not status["shipping"]:
            return False
        age = status["status_age_seconds"]
        return age is None or age > max(10.0, STALE_INTERVALS * self.ship_interval)


_LIVE: weakref.WeakSet[Recorder] = weakref.WeakSet()


@atexit.register
def stop_all() -> None:
    """Stop every recorder of this process (at exit: each seals its segment and ships what it can)."""
    for recorder in list(_LIVE):
        recorder.stop()


def _release(journal: Journal, shipper: Shipper) -> None:
    journal.close()
    shipper.close()
