"""The shipper: moves complete journal records into the prediction_log table, exactly once.

One pass looks at every segment of the journal directory, oldest first, and
hands the complete records past each segment's checkpoint to a destination
(destinations.py) in batches; each batch commits with the segment's new
checkpoint, so a batch is stored once however many shippers run and
wherever one dies.

A segment whose writer is gone (its lock can be taken) and whose records are
all shipped is deleted. A sealed segment that ends in an incomplete record
holds a write that never finished (its request was never answered): the
bytes are kept under ``quarantine/`` and reported, never silently dropped,
as are records the database refuses even as text.

Rows not yet in the database are ``fdatasync``'ed at least every
``SYNC_SECONDS``, so what a power loss can take is bounded even while the
database is away.

Reading is bounded: a pass reads at most ``batch_bytes`` (or one record,
if larger) at a time and counts each byte once to know the backlog.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import record
from .destinations import CheckpointMoved, DatabaseUnavailable, Destination
from .journal import fsync_dir, segment_paths, try_lock
from .table import COLUMN_KINDS

log = logging.getLogger("flask_app.log.shipper")

SYNC_SECONDS = 1.0
# After the database refused a batch, the background shipper waits this long before offering the next.
RETRY_SECONDS = 1.0
STATUS_FILE = "status.json"
LOCK_FILE = "shipper.lock"
QUARANTINE_DIR = "quarantine"
COUNT_CHUNK = 1 << 20
HEADER_LIMIT = 1 << 16
# Checkpoints of deleted segments are kept this long, and looked at for pruning this often.
CHECKPOINT_DAYS = 7
PRUNE_SECONDS = 3600


# --- the shipper -----------------------------------------------------------------------------------


@dataclass
class _SegmentState:
    columns: list[str]
    offset: int
    rows: int  # rows shipped up to offset
    counted_to: int  # complete rows counted up to here
    counted_rows: int
    synced_to: int = 0
    size: int = 0  # the segment's size when this pass looked
    oldest_at: float | None = None  # answer time of the first unshipped record


@dataclass
class PassReport:
    shipped_rows: int = 0
    shipped_batches: int = 0
    full_batch: bool = False
    deleted_segments: int = 0
    error: str | None = None
    lags: list[float] = field(default_factory=list)
    set_aside: dict[str, int] = field(default_factory=dict)  # records kept in quarantine/, by kind


class Shipper:
    """Ships one journal directory; any number may run, and exactly-once holds."""

    def __init__(self, directory: Path, destination: Destination, batch_bytes: int = 4 << 20,
                 on_pass: Callable[[PassReport], None] | None = None):
        self.directory = Path(directory)
        self.destination = destination
        self.batch_bytes = batch_bytes
        self.on_pass = on_pass or (lambda report: None)
        self._states: dict[str, _SegmentState] = {}
        self._pass_lock = threading.Lock()
        self._synced_at = 0.0
        self._retry_at = 0.0
        self._prune_at = 0.0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_shipped_at: float | None = None
        self.totals = {"rows": 0, "batches": 0, "torn": 0, "refused": 0, "deleted": 0}

    # -- one pass ------------------------------------------------------------------------

    def ship_once(self, deadline: float | None = None, patient: bool = False) -> PassReport:
        """Ship what is complete now; returns what was done (errors are reported, not raised).

        ``patient``: after the database refused a pass, the next ones only count and sync until
        RETRY_SECONDS have passed (the background thread); a flush always tries.
        """
        with self._pass_lock:
            report = PassReport()
            if patient and time.monotonic() < self._retry_at:
                report.error = self.last_error
            sync_due = time.monotonic() - self._synced_at >= SYNC_SECONDS
            seen = set()
            for path in segment_paths(self.directory):
                seen.add(path.name)
                self._visit(path, report, deadline, sync_due)
            if sync_due:
                self._synced_at = time.monotonic()
            if report.error is None and time.monotonic() >= self._prune_at:
                self._prune(report)
            for name in set(self._states) - seen:
                del self._states[name]
            if report.error and not (patient and time.monotonic() < self._retry_at):
                self.last_error, self.last_error_at = report.error, time.time()
                self._retry_at = time.monotonic() + RETRY_SECONDS
            elif report.shipped_batches:
                self.last_shipped_at = time.time()
            self.on_pass(report)
            return report

    def _visit(self, path: Path, report: PassReport, deadline: float | None, sync_due: bool) -> None:
        """Ship one segment's complete records, count what waits, sync it, delete it when done."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            sealed = try_lock(fd)  # no writer holds it: its size is final
            size = os.fstat(fd).st_size
            try:
                state = self._state(path.name, fd, size, sealed, report)
                if state is not None and report.error is None:
                    self._ship_records(path.name, fd, size, state, report, deadline)
            except DatabaseUnavailable as exc:
                report.error = str(exc)
                state = self._states.get(path.name)
            if state is None:
                return
            state.size = size
            self._count(fd, size, state)
            if sync_due and state.offset < size and state.synced_to < size:
                os.fdatasync(fd)
                state.synced_to = size
            state.oldest_at = self._answer_time(fd, state) if state.offset < size else None
            if sealed and report.error is None and (
                    state.offset >= size or self._torn_tail(fd, state, size, path.name, report)):
                self._delete(path, report)
        finally:
            os.close(fd)

    def _ship_records(self, name: str, fd: int, size: int, state: _SegmentState, report: PassReport,
                      deadline: float | None) -> None:
        while state.offset < size and (deadline is None or time.monotonic() < deadline):
            data = self._complete_records(fd, state.offset, size)
            if not data:
                return
            n_rows = data.count(b"\n")
            try:
                refused = self.destination.ship(name, state.offset, state.offset + len(data), state.rows,
                                                data, n_rows, state.columns)
            except CheckpointMoved as moved:
                state.offset, state.rows = moved.offset, moved.rows
                continue
            committed_at = time.time()
            state.offset += len(data)
            state.rows += n_rows
            report.shipped_rows += n_rows
            report.shipped_batches += 1
            report.full_batch = report.full_batch or len(data) >= self.batch_bytes // 2
            report.lags.extend(_lags(data, state.columns, committed_at))
            self.totals["rows"] += n_rows
            self.totals["batches"] += 1
            if refused:
                self._quarantine(name, "refused", b"".join(refused))
                self.totals["refused"] += len(refused)
                report.set_aside["refused"] = report.set_aside.get("refused", 0) + len(refused)
                log.error("prediction log: %d journal records of %s refused by the database, kept in %s",
                          len(refused), name, QUARANTINE_DIR)

    def _prune(self, report: PassReport) -> None:
        try:
            self.destination.prune(CHECKPOINT_DAYS)
        except DatabaseUnavailable as exc:
            report.error = str(exc)
        self._prune_at = time.monotonic() + PRUNE_SECONDS

    def _state(self, name: str, fd: int, size: int, sealed: bool, report: PassReport) -> _SegmentState | None:
        state = self._states.get(name)
        if state is not None:
            return state
        first = os.pread(fd, min(size, HEADER_LIMIT), 0)
        newline = first.find(b"\n")
        columns = record.parse_header(first[: newline + 1]) if newline >= 0 else None
        if columns is None or "request_id" not in columns or not set(columns) <= set(COLUMN_KINDS):
            if sealed:
                log.error("prediction log: journal segment %s has no valid header; kept in %s", name, QUARANTINE_DIR)
                self._quarantine(name, "unreadable", os.pread(fd, size, 0))
                self.totals["torn"] += 1
                report.set_aside["unreadable"] = report.set_aside.get("unreadable", 0) + 1
                os.unlink(self.directory / name)
            return None
        # Shipping starts after the header; where another shipper got to already, the checkpoint row says
        # when the first batch is offered (CheckpointMoved), so nothing here needs the database.
        header_bytes = newline + 1
        state = _SegmentState(columns, header_bytes, 0, counted_to=header_bytes, counted_rows=0,
                              synced_to=header_bytes)
        self._states[name] = state
        return state

    def _complete_records(self, fd: int, offset: int, size: int) -> bytes:
        """The complete records from ``offset``: up to batch_bytes, or one record if it is larger."""
        data = os.pread(fd, min(size - offset, self.batch_bytes), offset)
        end = data.rfind(b"\n")
        if end < 0 and offset + len(data) < size:
            data = os.pread(fd, size - offset, offset)
            end = data.find(b"\n")
        return data[: end + 1] if end >= 0 else b""

    def _torn_tail(self, fd: int, state: _SegmentState, size: int, name: str, report: PassReport) -> bool:
        """A sealed segment ending in an incomplete record: its write never finished. Keep it and report."""
        tail = os.pread(fd, size - state.offset, state.offset)
        if b"\n" in tail:
            return False  # complete records still wait (the database is away); not torn
        log.error("prediction log: journal segment %s ends with an incomplete record of %d bytes (a write that "
                  "never finished; its request was not answered); kept in %s", name, len(tail), QUARANTINE_DIR)
        self._quarantine(name, "torn", tail)
        self.totals["torn"] += 1
        report.set_aside["torn"] = report.set_aside.get("torn", 0) + 1
        return True

    def _delete(self, path: Path, report: PassReport) -> None:
        # Its checkpoint stays (pruned after CHECKPOINT_DAYS): a shipper that still holds the file open
        # learns from it that everything is shipped, rather than offering the rows again.
        path.unlink(missing_ok=True)
        fsync_dir(self.directory)
        self._states.pop(path.name, None)
        report.deleted_segments += 1
        self.totals["deleted"] += 1

    def _quarantine(self, name: str, kind: str, data: bytes) -> None:
        folder = self.directory / QUARANTINE_DIR
        folder.mkdir(exist_ok=True)
        with open(folder / f"{name}.{kind}", "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def _answer_time(self, fd: int, state: _SegmentState) -> float | None:
        head = os.pread(fd, 4096, state.offset)
        fields = head.split(b"\t", len(state.columns))
        return _answered(fields, state.columns)

    # -- backlog ----------------------------------------------------------------------------

    @staticmethod
    def _count(fd: int, size: int, state: _SegmentState) -> None:
        """Count complete records not counted yet: each byte is read for counting once."""
        if state.counted_to < state.offset:
            state.counted_to, state.counted_rows = state.offset, state.rows
        while state.counted_to < size:
            chunk = os.pread(fd, min(COUNT_CHUNK, size - state.counted_to), state.counted_to)
            end = chunk.rfind(b"\n")
            if end < 0:
                return
            state.counted_rows += chunk.count(b"\n", 0, end + 1)
            state.counted_to += end + 1

    def backlog(self) -> dict[str, Any]:
        """Rows and bytes written to the journal and not yet in the database, and the oldest one's age."""
        states = self._states.values()
        rows = sum(max(0, state.counted_rows - state.rows) for state in states)
        size = sum(max(0, state.size - state.offset) for state in states)
        oldest = [state.oldest_at for state in states if state.oldest_at is not None]
        return {"rows": rows, "bytes": size, "segments": len(states),
                "oldest_unshipped_at": min(oldest) if oldest else None}

    def close(self) -> None:
        self.destination.close()


def _answered(fields: list[bytes], columns: list[str]) -> float | None:
    try:
        received = dt.datetime.fromisoformat(fields[columns.index("received_at")].decode())
        latency = float(fields[columns.index("latency_ms")])
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    return received.timestamp() + latency / 1000


def _lags(data: bytes, columns: list[str], committed_at: float) -> list[float]:
    """Seconds from each row's answer to its commit in the database."""
    last = max(columns.index("received_at"), columns.index("latency_ms"))
    lags = []
    for line in data.splitlines():
        answered = _answered(line.split(b"\t", last + 1), columns)
        if answered is not None:
            lags.append(committed_at - answered)
    return lags


# --- who ships: one elected thread per journal directory -------------------------------------------


class ShipperThread:
    """Competes for the directory's shipper lock; the holder ships every ``interval`` and publishes status."""

    def __init__(self, shipper: Shipper, interval: float, election_seconds: float = 1.0):
        self.shipper = shipper
        self.interval = interval
        self.election_seconds = election_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self.leading = False

    def start(self) -> None:
        if self._thread is None and self.interval > 0:
            self._thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.leading and not self._elect():
                self._stop.wait(self.election_seconds)
                continue
            try:
                report = self.shipper.ship_once(patient=True)
            except Exception:  # the thread must outlive any one pass, or nothing is shipped again
                log.exception("prediction log: a shipping pass failed")
                report = PassReport(error="a shipping pass failed (see the service log)")
                self._stop.wait(self.election_seconds)
            write_status(self.shipper)
            self._stop.wait(0.0 if report.full_batch else self.interval)

    def _elect(self) -> bool:
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(self.shipper.directory / LOCK_FILE,
                                        os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            except OSError:
                return False
        self.leading = try_lock(self._lock_fd)
        if self.leading:
            log.info("prediction log: this process ships %s", self.shipper.directory)
        return self.leading

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the election lock
            self._lock_fd = None
        self.leading = False


def write_status(shipper: Shipper) -> None:
    """What the shipper knows, for /ready and /metrics in every process (replaced atomically)."""
    status = {
        **shipper.backlog(),
        "last_shipped_at": shipper.last_shipped_at,
        "last_error": shipper.last_error,
        "last_error_at": shipper.last_error_at,
        "totals": shipper.totals,
        "shipper": f"{socket.gethostname()}:{os.getpid()}",
        "updated_at": time.time(),
    }
    path = shipper.directory / STATUS_FILE
    temporary = path.with_name(f".{STATUS_FILE}.{os.getpid()}")
    try:
        temporary.write_text(json.dumps(status))
        os.replace(temporary, path)
    except OSError:
        log.warning("prediction log: cannot write %s", path)


def read_status(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(directory) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
