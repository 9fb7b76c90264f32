"""The journal: where every log row is made durable before its answer leaves the process.

Each process appends to a segment file of its own in the journal directory
(``seg-<created>-<random>.journal``). A segment is created under a hidden
name, locked (``flock``, exclusive) and only then renamed into view, and its
writer holds that lock until it moves on to a new segment or exits. The lock,
not a process id, says whether a segment is still being written: it holds
across processes, pid namespaces and containers that share the directory,
and the kernel drops it when the writer dies however it dies.

A record is appended with one ``write``. A write that comes back short (a
full disk) is rolled back by truncating the segment to where the record
began, and the row is refused: the caller withholds the answer. If even the
rollback fails the segment is abandoned and the next record starts a new
one, so every record starts cleanly. In ``strict`` durability the record is
also ``fdatasync``'ed before ``append`` returns; threads of one process share
one sync (group commit).

Nothing here talks to a database: the shipper (shipper.py) moves complete
records into PostgreSQL and deletes segments that are shipped and sealed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path

from . import record

log = logging.getLogger("flask_app.log.journal")

SEGMENT_GLOB = "seg-*.journal"
SEGMENT_SUFFIX = ".journal"
DURABILITY_MODES = ("default", "strict")
# How often a writer re-measures the journal's size against its cap.
SIZE_CHECK_SECONDS = 1.0


class JournalUnavailable(OSError):
    """The row could not be made durable: the answer must be withheld."""


@dataclass
class _Segment:
    path: Path
    fd: int
    size: int
    synced: int


def fsync_dir(path: Path) -> None:
    """Make a new or renamed file in ``path`` survive a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segment_paths(directory: Path) -> list[Path]:
    """The segments in a journal directory, oldest first (names sort by creation time)."""
    try:
        return sorted(entry for entry in Path(directory).glob(SEGMENT_GLOB) if entry.is_file())
    except FileNotFoundError:
        return []


def journal_bytes(directory: Path) -> int:
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.endswith(SEGMENT_SUFFIX):
                    try:
                        total += entry.stat().st_size
                    except FileNotFoundError:
                        continue
    except OSError:
        return 0  # no directory to measure: appending will say why
    return total


def try_lock(fd: int) -> bool:
    """Take a segment's lock if no writer holds it (the segment is sealed)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _while_alive(method: weakref.WeakMethod):
    """A fork hook that does not keep its journal alive."""

    def call() -> None:
        bound = method()
        if bound is not None:
            bound()

    return call


class Journal:
    """The append side of the journal, one per process."""

    def __init__(self, directory: Path, columns: list[str], durability: str = "default",
                 segment_bytes: int = 64 << 20, max_bytes: int = 1 << 30):
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.columns = list(columns)
        self.header = record.header(self.columns)
        self.strict = durability == "strict"
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self._segment: _Segment | None = None
        self._pid = os.getpid()
        self._write_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._size_checked_at = -SIZE_CHECK_SECONDS
        self._total_bytes = 0
        self.appended = 0
        os.register_at_fork(after_in_child=_while_alive(weakref.WeakMethod(self._forget_inherited_segment)))

    # -- appending ------------------------------------------------------------------

    def append(self, data: bytes) -> None:
        """Append one complete record; raises JournalUnavailable when it is not durable."""
        with self._write_lock:
            segment = self._writable_segment(len(data))
            start = segment.size
            try:
                written = os.write(segment.fd, data)
            except OSError as exc:
                written, error = 0, exc
            else:
                error = None
            if written != len(data):
                self._roll_back(segment, start)
                reason = error.strerror if error else f"short write ({written} of {len(data)} bytes)"
                raise JournalUnavailable(f"the journal in {self.directory} took no record: {reason}")
            segment.size += written
            end = segment.size
            self.appended += 1
        if self.strict:
            self._sync(segment, end, start)

    def _sync(self, segment: _Segment, end: int, start: int) -> None:
        """fdatasync up to ``end``; a sync another thread ran after our write already covers it."""
        with self._sync_lock:
            if segment.synced >= end:
                return
            target = segment.size
            try:
                os.fdatasync(segment.fd)
            except OSError as exc:
                with self._write_lock:
                    if segment.size == end:
                        self._roll_back(segment, start)
                    else:
                        self._abandon(segment)
                raise JournalUnavailable(f"the journal in {self.directory} could not be synced: {exc.strerror}") \
                    from exc
            segment.synced = target

    def _writable_segment(self, n_bytes: int) -> _Segment:
        if os.getpid() != self._pid:
            self._forget_inherited_segment()
        now = time.monotonic()
        if now - self._size_checked_at >= SIZE_CHECK_SECONDS:
            self._total_bytes = journal_bytes(self.directory)
            self._size_checked_at = now
        if self._total_bytes + n_bytes > self.max_bytes:
            # Re-measure before refusing: the shipper may have freed space since.
            self._total_bytes = journal_bytes(self.directory)
            self._size_checked_at = now
            if self._total_bytes + n_bytes > self.max_bytes:
                raise JournalUnavailable(
                    f"the journal in {self.directory} holds {self._total_bytes} bytes, its cap is {self.max_bytes}")
        self._total_bytes += n_bytes
        segment = self._segment
        if segment is None or (segment.size + n_bytes > self.segment_bytes and segment.size > len(self.header)):
            segment = self._rotate()
        return segment

    def _rotate(self) -> _Segment:
        old = self._segment
        self._segment = self._open_segment()
        if old is not None:
            self._close(old)
        return self._segment

    def _open_segment(self) -> _Segment:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"seg-{stamp}-{uuid.uuid4().hex[:12]}{SEGMENT_SUFFIX}"
        hidden = self.directory / f".{name}.new"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(hidden, flags, 0o600)
        except OSError as exc:
            raise JournalUnavailable(f"cannot create a journal segment in {self.directory}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.write(fd, self.header) != len(self.header):
                raise OSError(28, "short write of the segment header")
            os.fsync(fd)
            os.rename(hidden, self.directory / name)
            fsync_dir(self.directory)
        except OSError as exc:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise JournalUnavailable(f"cannot create a journal segment in {self.directory}: {exc.strerror}") from exc
        size = len(self.header)
        return _Segment(self.directory / name, fd, size, size)

    def _roll_back(self, segment: _Segment, start: int) -> None:
        """Cut a partial record off; a segment that cannot be cut is abandoned."""
        try:
            os.ftruncate(segment.fd, start)
            segment.size = start
        except OSError:
            log.error("journal: cannot truncate %s after a failed write; starting a new segment", segment.path.name)
            self._abandon(segment)

    def _abandon(self, segment: _Segment) -> None:
        if self._segment is segment:
            self._segment = None
        self._close(segment)

    @staticmethod
    def _close(segment: _Segment) -> None:
        # Closing the descriptor drops the lock: the segment is sealed, the shipper may delete it once shipped.
        with contextlib.suppress(OSError):  # nothing more can be done here; the shipper reads what reached the file
            os.fsync(segment.fd)
        os.close(segment.fd)

    def _forget_inherited_segment(self) -> None:
        """In a forked child: the parent's segment is the parent's, this process opens its own."""
        if self._segment is not None:
            os.close(self._segment.fd)  # the parent's descriptor keeps the lock
        self._segment = None
        self._pid = os.getpid()
        self._write_lock = threading.Lock()
        self._sync_lock = threading.Lock()

    # -- state ------------------------------------------------------------------------

    @property
    def segment_name(self) -> str | None:
        return self._segment.path.name if self._segment is not None else None

    def writable(self) -> bool:
        return self.directory.is_dir() and os.access(self.directory, os.W_OK)

    def close(self) -> None:
        """Seal this process's segment (at exit): the shipper may finish and delete it."""
        with self._write_lock:
            if self._segment is not None and os.getpid() == self._pid:
                self._close(self._segment)
            self._segment = None
