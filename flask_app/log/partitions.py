"""The prediction log's monthly partitions on PostgreSQL: created ahead, the default emptied, old ones dropped.

``prediction_log`` is range-partitioned by ``received_at``, one partition per
UTC month (``prediction_log_pYYYYMM``), plus a default partition that takes
a row no month partition covers, so no row is ever refused (migration 0004).
``maintain`` is what ``flask --app flask_app.wsgi log-partitions`` runs:

1. rows in the default partition older than the retention cutoff are deleted;
2. every month from the current one to ``months_ahead`` later, and every
   month still holding rows in the default partition, gets its partition:
   a table built next to the log, filled with that month's rows from the
   default partition, then attached (so inserts keep flowing meanwhile);
3. partitions whose whole range is older than the cutoff are dropped.

Each step is a short transaction of its own, with a lock timeout, so the
shipper waits at most a few seconds behind it. Plain SQL, no Flask.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import sqlalchemy as sa

TABLE = "prediction_log"
DEFAULT_PARTITION = f"{TABLE}_default"
LOCK_TIMEOUT = "5s"
BOUND = re.compile(r"FROM \((MINVALUE|'[^']+')\) TO \((MAXVALUE|'[^']+')\)")
EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)


class NotPartitioned(RuntimeError):
    """The log is not a partitioned PostgreSQL table (SQLite, or migrations not applied)."""


@dataclass
class Partition:
    name: str
    lower: dt.datetime
    upper: dt.datetime


@dataclass
class MaintenanceReport:
    created: list[str] = field(default_factory=list)
    moved_rows: int = 0
    dropped: list[str] = field(default_factory=list)
    deleted_rows: int = 0


def month_start(moment: dt.datetime) -> dt.datetime:
    """The first instant of ``moment``'s month in UTC."""
    utc = moment.astimezone(dt.UTC)
    return utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(month: dt.datetime, n: int) -> dt.datetime:
    years, index = divmod(month.month - 1 + n, 12)
    return month.replace(year=month.year + years, month=index + 1)


def partition_name(month: dt.datetime) -> str:
    return f"{TABLE}_p{month:%Y%m}"


def check_partitioned(conn: sa.Connection) -> None:
    if conn.dialect.name != "postgresql":
        raise NotPartitioned(f"the prediction log is on {conn.dialect.name}, which has no partitions")
    kind = conn.scalar(sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:table)"), {"table": TABLE})
    if kind != "p":
        raise NotPartitioned(f"{TABLE} is not partitioned: apply the migrations first (flask db upgrade)")


def partitions(conn: sa.Connection) -> tuple[list[Partition], str | None]:
    """The range partitions, oldest first, and the default partition's name (if any)."""
    conn.execute(sa.text("SET LOCAL TimeZone = 'UTC'"))
    rows = conn.execute(sa.text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:table)"
    ), {"table": TABLE}).all()
    found, default = [], None
    for name, bound in rows:
        if bound == "DEFAULT":
            default = name
            continue
        match = BOUND.search(bound)
        if match is None:
            raise NotPartitioned(f"partition {name} has bounds this command does not read: {bound}")
        lower, upper = (_bound(text, edge) for text, edge in zip(match.groups(), (EARLIEST, LATEST), strict=True))
        found.append(Partition(name, lower, upper))
    return sorted(found, key=lambda partition: partition.lower), default


def _bound(text: str, edge: dt.datetime) -> dt.datetime:
    if text in ("MINVALUE", "MAXVALUE"):
        return edge
    return dt.datetime.fromisoformat(text.strip("'")).astimezone(dt.UTC)


def maintain(engine: sa.Engine, now: dt.datetime, months_ahead: int, retention_days: int) -> MaintenanceReport:
    """Create partitions ahead, empty the default partition, drop partitions past retention (0: keep all)."""
    report = MaintenanceReport()
    cutoff = now - dt.timedelta(days=retention_days) if retention_days > 0 else None
    with _step(engine) as conn:
        check_partitioned(conn)
        _, default = partitions(conn)
        if default is not None and cutoff is not None:
            report.deleted_rows = conn.execute(sa.text(
                f"DELETE FROM {_quote(conn, default)} WHERE received_at < :cutoff"),  # noqa: S608
                {"cutoff": cutoff}).rowcount
        stranded = _months_in(conn, default) if default is not None else set()

    this_month = month_start(now)
    wanted = {add_months(this_month, n) for n in range(months_ahead + 1)} | stranded
    for month in sorted(wanted):
        if cutoff is not None and add_months(month, 1) <= cutoff:
            continue
        with _step(engine) as conn:
            existing, default = partitions(conn)
            if any(p.lower < add_months(month, 1) and month < p.upper for p in existing):
                continue  # covered already (perhaps by a partition someone made by hand)
            report.moved_rows += _create_partition(conn, month, default)
            report.created.append(partition_name(month))

    if cutoff is not None:
        with _step(engine) as conn:
            existing, _ = partitions(conn)
            for partition in existing:
                if partition.upper <= cutoff:
                    conn.execute(sa.text(f"DROP TABLE {_quote(conn, partition.name)}"))
                    report.dropped.append(partition.name)
    return report


@contextmanager
def _step(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One short transaction that gives up on a lock after LOCK_TIMEOUT."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        yield conn


def _months_in(conn: sa.Connection, default: str) -> set[dt.datetime]:
    rows = conn.execute(sa.text(
        f"SELECT DISTINCT date_trunc('month', received_at AT TIME ZONE 'UTC') FROM {_quote(conn, default)}"  # noqa: S608
    )).scalars()
    return {month.replace(tzinfo=dt.UTC) for month in rows}


def _create_partition(conn: sa.Connection, month: dt.datetime, default: str | None) -> int:
    """Build the month's table, move its rows out of the default partition, attach it; returns rows moved.

    Attaching takes only a SHARE UPDATE EXCLUSIVE lock on the log (inserts go
    on); the CHECK constraint saves PostgreSQL a scan to prove the rows fit.
    """
    name, lower, upper = partition_name(month), _literal(month), _literal(add_months(month, 1))
    conn.execute(sa.text(
        f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING STORAGE INCLUDING COMPRESSION)"))
    conn.execute(sa.text(
        f"ALTER TABLE {name} ADD CONSTRAINT {name}_in_range CHECK (received_at >= {lower} AND received_at < {upper})"))
    moved = 0
    if default is not None:
        moved = conn.execute(sa.text(
            f"WITH moved AS (DELETE FROM {_quote(conn, default)} WHERE received_at >= :lower"  # noqa: S608
            f" AND received_at < :upper RETURNING *) INSERT INTO {name} SELECT * FROM moved"),
            {"lower": month, "upper": add_months(month, 1)}).rowcount
    conn.execute(sa.text(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM ({lower}) TO ({upper})"))
    conn.execute(sa.text(f"ALTER TABLE {name} DROP CONSTRAINT {name}_in_range"))
    return moved


def _quote(conn: sa.Connection, name: str) -> str:
    """A table name read from the catalog, quoted as an identifier."""
    return conn.dialect.identifier_preparer.quote(name)


def _literal(moment: dt.datetime) -> str:
    """A timestamptz literal (DDL takes no bind parameters; the value is one this module computed)."""
    return f"'{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}+00'"
