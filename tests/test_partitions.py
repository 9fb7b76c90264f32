"""The prediction log partitioned by month (migration 0004) and `flask log-partitions`, on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from flask_app.log import partitions
from tests.conftest import create_database, drop_database, migrate_to

UTC = dt.UTC
ROOT = Path(__file__).resolve().parent.parent
COPY_COLUMNS = ("request_id", "client_request_id", "received_at", "endpoint", "status", "model_name",
                "model_version", "model_sha256", "n_rows", "n_ood_flagged", "latency_ms", "request_body",
                "request_raw", "request_truncated", "response_body", "error", "client_addr")


@pytest.fixture
def database(pg_server):
    """A throwaway database of its own, not migrated."""
    url = create_database(pg_server)
    yield url
    drop_database(url)


@pytest.fixture
def engine(database):
    engine = sa.create_engine(database)
    yield engine
    engine.dispose()


def this_month() -> dt.datetime:
    return partitions.month_start(dt.datetime.now(UTC))


def insert(engine: sa.Engine, received_at: dt.datetime, request_id: str | None = None) -> str:
    request_id = request_id or uuid.uuid4().hex
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO prediction_log (request_id, received_at, endpoint, status, latency_ms, request_truncated,"
            " request_body) VALUES (:id, :at, '/predict', 200, 1.5, false, '{\"instances\": [[1, 2]]}')"
        ), {"id": request_id, "at": received_at})
    return request_id


def placement(engine: sa.Engine) -> dict[str, str]:
    """request_id -> the partition (or table) that holds the row."""
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT request_id, tableoid::regclass::text FROM prediction_log")).all())


def partition_names(engine: sa.Engine) -> list[str]:
    with engine.begin() as conn:
        existing, default = partitions.partitions(conn)
    return [partition.name for partition in existing] + ([default] if default else [])


def relkind(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return conn.scalar(sa.text("SELECT relkind FROM pg_class WHERE oid = 'prediction_log'::regclass"))


def test_upgrade_keeps_the_rows_and_files_them_by_utc_month(database, engine):
    migrate_to(database, "0003")
    now = dt.datetime.now(UTC)
    rows = {
        "old": insert(engine, dt.datetime(2025, 1, 15, 10, 0, tzinfo=UTC)),
        "last-microsecond": insert(engine, dt.datetime(2025, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)),
        # 00:30 on 1 December in UTC+1 is still November in UTC.
        "offset": insert(engine, dt.datetime(2025, 12, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))),
        "first-instant": insert(engine, dt.datetime(2025, 12, 1, tzinfo=UTC)),
        "now": insert(engine, now),
    }
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT id, request_id, received_at FROM prediction_log ORDER BY id")).all()

    migrate_to(database, "head")

    assert relkind(engine) == "p"
    with engine.connect() as conn:
        after = conn.execute(sa.text("SELECT id, request_id, received_at FROM prediction_log ORDER BY id")).all()
    assert after == before
    where = placement(engine)
    assert where[rows["old"]] == "prediction_log_p202501"
    assert where[rows["last-microsecond"]] == where[rows["offset"]] == "prediction_log_p202511"
    assert where[rows["first-instant"]] == "prediction_log_p202512"
    assert where[rows["now"]] == f"prediction_log_p{now:%Y%m}"
    # The current month and the next three exist ahead, and a default partition.
    names = partition_names(engine)
    for n in range(4):
        assert partitions.partition_name(partitions.add_months(this_month(), n)) in names
    assert names[-1] == "prediction_log_default"
    # The id sequence carries on after the copied rows.
    new = insert(engine, now)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT id FROM prediction_log WHERE request_id = :id"), {"id": new}) == 6


def test_a_row_outside_every_month_partition_lands_in_the_default_partition(database, engine):
    migrate_to(database, "head")
    far = insert(engine, partitions.add_months(this_month(), 30))
    ancient = insert(engine, dt.datetime(1999, 1, 1, tzinfo=UTC))
    where = placement(engine)
    assert where[far] == where[ancient] == "prediction_log_default"


def copy_rows(database: str, rows: list[tuple]) -> None:
    """COPY FROM STDIN (text format) into the partitioned parent, as the journal's shipper writes."""
    url = sa.make_url(database).set(drivername="postgresql")
    statement = f"COPY prediction_log ({', '.join(COPY_COLUMNS)}) FROM STDIN"
    with (psycopg.connect(url.render_as_string(hide_password=False)) as conn, conn.cursor() as cursor,
          cursor.copy(statement) as copy):
        for row in rows:
            copy.write_row(row)


def copy_row(request_id: str, received_at: dt.datetime) -> tuple:
    return (request_id, None, received_at, "/predict", 200, "boston-knn", "v1", "0" * 64, 1, 0, 2.5,
            '{"instances": [[1]]}', None, False, '{"predictions": [1.0]}', None, "10.0.0.1")


def test_copy_into_the_parent_routes_rows_and_a_duplicate_is_refused(database, engine):
    migrate_to(database, "head")
    at = dt.datetime.now(UTC)
    next_month = partitions.add_months(this_month(), 1)
    copy_rows(database, [copy_row("a", at), copy_row("b", next_month)])
    where = placement(engine)
    assert where["a"] == partitions.partition_name(this_month())
    assert where["b"] == partitions.partition_name(next_month)

    # The same row again (a journal shipped twice) is a unique violation for COPY ...
    with pytest.raises(psycopg.errors.UniqueViolation):
        copy_rows(database, [copy_row("a", at)])
    # ... and for a plain INSERT; the shipper's fallback, ON CONFLICT DO NOTHING, skips it.
    with pytest.raises(sa.exc.IntegrityError, match=r"prediction_log_\w+_request_id_received_at_key"):
        insert(engine, at, "a")
    with engine.begin() as conn:
        skipped = conn.execute(sa.text(
            "INSERT INTO prediction_log (request_id, received_at, endpoint, status, latency_ms, request_truncated)"
            " VALUES ('a', :at, '/predict', 200, 1, false), ('c', :at, '/predict', 200, 1, false)"
            " ON CONFLICT DO NOTHING RETURNING request_id"), {"at": at}).scalars().all()
    assert skipped == ["c"]
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM prediction_log WHERE request_id = 'a'")) == 1


def test_maintenance_creates_ahead_empties_the_default_and_drops_past_retention(database, engine):
    migrate_to(database, "0003")
    now = dt.datetime.now(UTC)
    two_years_ago = partitions.add_months(this_month(), -24)
    expired = insert(engine, two_years_ago + dt.timedelta(days=3))
    kept = insert(engine, now - dt.timedelta(days=2))
    migrate_to(database, "head")
    assert partitions.partition_name(two_years_ago) in partition_names(engine)
    stranded_month = partitions.add_months(this_month(), 8)
    stranded = [insert(engine, stranded_month + dt.timedelta(hours=hour)) for hour in range(3)]
    too_old = insert(engine, dt.datetime(2001, 1, 1, tzinfo=UTC))
    assert {placement(engine)[request_id] for request_id in [*stranded, too_old]} == {"prediction_log_default"}

    report = partitions.maintain(engine, now, months_ahead=5, retention_days=365)

    ahead = [partitions.partition_name(partitions.add_months(this_month(), n)) for n in (4, 5)]
    assert report.created == [*ahead, partitions.partition_name(stranded_month)]
    assert report.moved_rows == 3 and report.deleted_rows == 1
    assert report.dropped == [partitions.partition_name(two_years_ago)]
    where = placement(engine)
    assert {where[request_id] for request_id in stranded} == {partitions.partition_name(stranded_month)}
    assert where[kept] == partitions.partition_name(partitions.month_start(now - dt.timedelta(days=2)))
    assert expired not in where and too_old not in where
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM prediction_log_default")) == 0
        # The attached partitions carry the log's indexes and unique key.
        indexes = conn.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = :name"),
                               {"name": partitions.partition_name(stranded_month)}).scalars().all()
    assert len(indexes) == 7 and any("UNIQUE" in index and "(request_id, received_at)" in index
                                     for index in indexes)
    with pytest.raises(sa.exc.IntegrityError):
        insert(engine, stranded_month, stranded[0])

    # A second run has nothing to do.
    again = partitions.maintain(engine, now, months_ahead=5, retention_days=365)
    assert (again.created, again.dropped, again.moved_rows, again.deleted_rows) == ([], [], 0, 0)


def test_the_command_on_postgresql(database, engine, tmp_path):
    from flask_app import create_app

    migrate_to(database, "0003")
    old = insert(engine, dt.datetime(2020, 6, 1, tzinfo=UTC))

    def run(**settings):
        app = create_app({"DATABASE_URL": database, "MODEL_DIR": str(tmp_path / "none"),
                          "LOG_JOURNAL_DIR": str(tmp_path / "journal"), "LOG_SHIP_INTERVAL": 0, **settings})
        result = app.test_cli_runner().invoke(args=["log-partitions"])
        app.extensions["prediction_log"].stop()
        with app.app_context():
            from flask_app.extensions import db

            db.engine.dispose()
        return result

    refused = run()
    assert refused.exit_code == 1 and "apply the migrations first" in refused.output

    migrate_to(database, "head")
    kept = run(LOG_PARTITION_MONTHS_AHEAD=6)
    assert kept.exit_code == 0, kept.output
    assert "created 3 partition(s)" in kept.output and "retention forever: dropped 0" in kept.output
    assert old in placement(engine)

    dropped = run(LOG_RETENTION_DAYS=30)
    assert dropped.exit_code == 0, dropped.output
    assert "retention 30 days: dropped 1 partition(s) (prediction_log_p202006)" in dropped.output
    assert old not in placement(engine)


def test_the_command_on_sqlite_says_there_is_nothing_to_do(tmp_path):
    from flask_app import create_app

    url = f"sqlite:///{tmp_path / 'log.db'}"
    migrate_to(url, "head")
    app = create_app({"DATABASE_URL": url, "MODEL_DIR": str(tmp_path / "none"),
                      "LOG_JOURNAL_DIR": str(tmp_path / "journal"), "LOG_SHIP_INTERVAL": 0, "LOG_RETENTION_DAYS": 1})
    result = app.test_cli_runner().invoke(args=["log-partitions"])
    app.extensions["prediction_log"].stop()
    assert result.exit_code == 0
    assert "the prediction log is on sqlite, which has no partitions: nothing to do" in result.output
    engine = sa.create_engine(url)
    insert(engine, dt.datetime(2001, 1, 1, tzinfo=UTC), "kept")  # retention does not touch SQLite
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT request_id FROM prediction_log")) == "kept"
    # On SQLite the migration changes the model indexes only, both ways.
    indexes = {index["name"] for index in sa.inspect(engine).get_indexes("prediction_log")}
    assert {"ix_prediction_log_model_name_received_at", "ix_prediction_log_model_version_received_at"} <= indexes
    engine.dispose()
    migrate_to(url, "0003", downgrade=True)
    engine = sa.create_engine(url)
    indexes = {index["name"] for index in sa.inspect(engine).get_indexes("prediction_log")}
    assert "ix_prediction_log_model_received_at" in indexes
    assert "ix_prediction_log_model_name_received_at" not in indexes
    engine.dispose()


def test_downgrade_gives_back_the_plain_table_with_every_row(database, engine):
    migrate_to(database, "head")
    months = [dt.datetime(2024, 2, 29, 12, tzinfo=UTC), dt.datetime.now(UTC), dt.datetime(2031, 1, 1, tzinfo=UTC)]
    ids = [insert(engine, moment) for moment in months]
    # Ids a client chose could repeat before the service minted its own; the downgrade keeps both rows.
    twin = insert(engine, months[1] + dt.timedelta(seconds=1), ids[0])
    with engine.connect() as conn:
        twin_row_id = conn.scalar(sa.text("SELECT max(id) FROM prediction_log"))

    migrate_to(database, "0003", downgrade=True)

    assert relkind(engine) == "r"
    assert sorted(placement(engine)) == sorted([*ids, f"{twin}.{twin_row_id}"])
    assert set(placement(engine).values()) == {"prediction_log"}
    with pytest.raises(sa.exc.IntegrityError, match="prediction_log_request_id_key"):
        insert(engine, dt.datetime.now(UTC), ids[1])
    migrate_to(database, "head")  # and up again
    assert relkind(engine) == "p" and len(placement(engine)) == 4


def test_replicas_upgrading_at_once_apply_each_migration_once(database, engine, tmp_path):
    """`flask db upgrade` from two processes at the same moment: one migrates, the other waits and finds it done."""
    env = dict(os.environ, DATABASE_URL=database, MODEL_DIR=str(ROOT / "nonexistent"), LOG_SHIP_INTERVAL="0",
               LOG_JOURNAL_DIR=str(tmp_path / "journal"))
    flask = [sys.executable, "-m", "flask", "--app", "flask_app.wsgi", "db", "upgrade"]
    runs = [subprocess.Popen(flask, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sum(output.count("Running upgrade 0003 -> 0004") for output in outputs) == 1
    assert relkind(engine) == "p"
