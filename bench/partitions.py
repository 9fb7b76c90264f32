"""The partitioned prediction log at scale: 10 million rows over a year, then what users do with it.

    .venv/bin/python bench/partitions.py                 # 10,000,000 rows over 12 months
    .venv/bin/python bench/partitions.py --rows 1000000  # a quicker look

Creates a throwaway database (bench_partitions_<pid>, dropped at the end even when the run fails)
on the PostgreSQL at BENCH_PG_ADMIN_URL (default postgresql://postgres@127.0.0.1:5432/postgres),
migrates it, trains the Boston model into a temporary store (so the app and the drift endpoint
serve a real model), and fills the log with synthetic rows of that model and a few older versions,
one row per 3 s or so over the last --months months, in received_at order as the service writes
them. Then it measures:

1. (the fill itself, server-side);
2. GET /predictions through the real app (Flask test client: the resource, the query, the
   serialisation) with each filter, p50/p99/max over --repeat requests;
3. GET /monitoring/drift?window=N (the query that reads the newest accepted rows of the version
   and the KS test over them), for N = 1,000 and 10,000;
4. the shipper's insert path: COPY FROM STDIN (text format) into the partitioned parent in
   batches, each in one transaction with the update of a checkpoint row, as the journal's shipper
   writes, with the table already full;
5. the retention step: dropping the oldest month (`flask log-partitions` with LOG_RETENTION_DAYS),
   next to a DELETE of the same month's rows from a plain table, for comparison.

Prints one table per part. Not part of CI (it takes a quarter of an hour and several GB of disk).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask_app.log import partitions  # noqa: E402

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN_TOKEN = "bench-admin-token"  # noqa: S105 (a throwaway app on a throwaway database)
COPY_COLUMNS = ("request_id", "client_request_id", "received_at", "endpoint", "status", "model_name",
                "model_version", "model_sha256", "n_rows", "n_ood_flagged", "latency_ms", "request_body",
                "request_raw", "request_truncated", "response_body", "error", "client_addr")
# A Boston row in the model's feature order (12 features: B is dropped), jittered per row below.
BOSTON_ROW = (0.02731, 0.0, 7.07, 0, 0.469, 6.421, 78.9, 4.9671, 2, 242.0, 17.8, 9.14)


def admin(statement: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(statement)


def database_url(name: str) -> str:
    return sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def timed(label: str):
    class Timer:
        def __enter__(self):
            self.started = time.perf_counter()
            print(f"  {label} ...", end="", flush=True)
            return self

        def __exit__(self, *exc):
            self.seconds = time.perf_counter() - self.started
            print(f" {self.seconds:.1f} s", flush=True)

    return Timer()


def train(store: Path) -> str:
    subprocess.run([sys.executable, str(ROOT / "ml_models" / "learn.py"), "--quiet", "--model-dir", str(store)],
                   check=True, capture_output=True)
    return (store / "boston-knn" / "ACTIVE").read_text().strip()


def fill(url: str, n_rows: int, months: int, version: str, now: dt.datetime) -> tuple[dt.datetime, float]:
    """n_rows synthetic rows spread evenly over `months` months before `now`, inserted server-side.

    The newest sixth of the rows are from the trained version (the one the app serves); older rows
    name older versions. 90 % are accepted, 9 % are 400s, 1 % 413s; a third are heart-knn requests.
    """
    start = partitions.add_months(partitions.month_start(now), -months + 1)
    span = (now - start).total_seconds()
    engine = sa.create_engine(url)
    chunk = 1_000_000
    with timed(f"inserting {n_rows:,} rows ({months} months, 1 per {span / n_rows:.1f} s)") as timer:
        for first in range(0, n_rows, chunk):
            last = min(first + chunk, n_rows)
            with engine.begin() as conn:
                conn.execute(sa.text("""
                    INSERT INTO prediction_log (request_id, client_request_id, received_at, endpoint, status,
                        model_name, model_version, model_sha256, n_rows, n_ood_flagged, latency_ms, request_body,
                        request_raw, request_truncated, response_body, error, client_addr)
                    SELECT
                        -- time-ordered ids, as the service mints them (UUIDv7 layout)
                        overlay(lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0')
                                || '7' || substr(md5(i::text), 1, 19) placing '-' from 9 for 0),
                        CASE WHEN i % 10 = 0 THEN 'client-' || i END,
                        at,
                        CASE WHEN i % 3 = 0 THEN '/models/heart-knn/predict' ELSE '/predict' END,
                        CASE WHEN i % 100 = 7 THEN 413 WHEN i % 100 < 9 THEN 400 ELSE 200 END,
                        CASE WHEN i % 3 = 0 THEN 'heart-knn' ELSE 'boston-knn' END,
                        CASE WHEN i >= :recent THEN :version
                             ELSE '2025' || lpad((1 + (i * 6 / :n)::int)::text, 2, '0') || '01T000000Z' END,
                        repeat('ab', 32),
                        1, (i % 97 = 0)::int, 1.5 + (i % 50) / 10.0,
                        CASE WHEN i % 100 = 7 THEN NULL ELSE
                            json_build_object('instances', json_build_array(json_build_array(
                                :c0 + (i % 13) / 100.0, :c1, :c2 + (i % 7), :c3, :c4, :c5 + (i % 11) / 10.0,
                                :c6 + (i % 29), :c7, :c8, :c9 + (i % 5) * 10, :c10, :c11 + (i % 17) / 5.0))) END,
                        NULL, i % 100 = 7,
                        json_build_object('request_id', i, 'predictions', json_build_array(20 + (i % 300) / 10.0),
                                          'warnings', json_build_array()),
                        CASE WHEN i % 100 < 9 AND i % 100 <> 7
                             THEN '400 Invalid input: 1 problem at instances/0/CHAS' END,
                        '10.0.' || (i % 250) || '.' || (i % 200)
                    FROM generate_series(:first, :last - 1) AS i,
                         LATERAL (SELECT :start + make_interval(secs => i * :step) AS at) AS t
                    """), {"first": first, "last": last, "n": n_rows, "recent": n_rows - n_rows // 6,
                           "version": version, "start": start, "step": span / n_rows,
                           **{f"c{k}": value for k, value in enumerate(BOSTON_ROW)}})
            print(f" {last // 1_000_000}M", end="", flush=True)
    # What autovacuum does to an insert-only table in the background (the visibility map lets counts
    # run on the indexes alone), done at once here.
    with timed("VACUUM (ANALYZE)"), engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("VACUUM (ANALYZE) prediction_log"))
    with engine.connect() as conn:
        size = conn.scalar(sa.text(
            "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits"
            " WHERE inhparent = 'prediction_log'::regclass"))
    engine.dispose()
    print(f"  {n_rows:,} rows in {timer.seconds:.0f} s ({n_rows / timer.seconds:,.0f} rows/s server-side); "
          f"table and indexes: {size}")
    return start, timer.seconds


def copy_throughput(url: str, n_rows: int, batch: int, version: str) -> float:
    """Rows per second through COPY FROM STDIN in `batch`-row transactions with a checkpoint update."""
    conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    segment = f"bench-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"instances": [list(BOSTON_ROW)]})
    answer = json.dumps({"predictions": [21.6], "warnings": []})
    with psycopg.connect(conninfo) as conn:
        conn.execute("INSERT INTO prediction_log_journal (segment, shipped_offset, shipped_rows) VALUES (%s, 0, 0)",
                      (segment,))
        conn.commit()
        started = time.perf_counter()
        shipped = 0
        while shipped < n_rows:
            buffer = io.StringIO()
            for _ in range(min(batch, n_rows - shipped)):
                at = dt.datetime.now(dt.UTC).isoformat()
                buffer.write("\t".join((str(uuid.uuid4()), "\\N", at, "/predict", "200", "boston-knn", version,
                                        "ab" * 32, "1", "0", "1.7", body, "\\N", "f", answer, "\\N", "10.0.0.1"))
                             + "\n")
                shipped += 1
            with conn.cursor() as cursor:
                with cursor.copy(f"COPY prediction_log ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
                    copy.write(buffer.getvalue())
                cursor.execute("UPDATE prediction_log_journal SET shipped_offset = shipped_offset + %s,"
                               " shipped_rows = shipped_rows + %s, updated_at = now() WHERE segment = %s",
                               (len(buffer.getvalue()), batch, segment))
            conn.commit()
        return n_rows / (time.perf_counter() - started)


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000


def measure(client, path: str, repeat: int, headers: dict) -> tuple[tuple[float, float, float], dict]:
    for _ in range(3):
        client.get(path, headers=headers)  # warm: plans cached, pages in memory
    samples, body = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, (path, response.status_code, response.get_data()[:300])
        body = response.get_json()
    return percentiles(samples), body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=200, help="requests per GET /predictions filter")
    parser.add_argument("--copy-rows", type=int, default=200_000)
    parser.add_argument("--keep", action="store_true", help="keep the database (and print its URL)")
    args = parser.parse_args(argv)

    name = f"bench_partitions_{os.getpid()}"
    url = database_url(name)
    work = Path(tempfile.mkdtemp(prefix="bench-partitions-"))
    admin(f'CREATE DATABASE "{name}"')
    try:
        return run(args, url, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.keep:
            print(f"kept {url}")
        else:
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            print(f"dropped the database {name}")


def run(args: argparse.Namespace, url: str, work: Path) -> int:
    from flask_app import create_app

    environment = dict(os.environ, DATABASE_URL=url, MODEL_DIR=str(work / "models"),
                       LOG_JOURNAL_DIR=str(work / "journal"), LOG_SHIP_INTERVAL="0")
    subprocess.run([sys.executable, "-m", "flask", "--app", "flask_app.wsgi", "db", "upgrade"], cwd=ROOT,
                   env=environment, check=True, capture_output=True)
    version = train(work / "models")
    server = psycopg.connect(PG_ADMIN_URL).info
    print(f"PostgreSQL {server.server_version // 10000}.{server.server_version % 10000} at "
          f"{server.host}:{server.port}, database {sa.make_url(url).database}; model boston-knn {version}")

    now = dt.datetime.now(dt.UTC)
    engine = sa.create_engine(url)
    # The months to fill get their partitions first, as `log-partitions` would have made them.
    first_month = partitions.add_months(partitions.month_start(now), -args.months + 1)
    partitions.maintain(engine, first_month, months_ahead=args.months + 2, retention_days=0)
    print("\n1. filling the log")
    fill(url, args.rows, args.months, version, now)


    app = create_app({"DATABASE_URL": url, "MODEL_DIR": str(work / "models"),
                      "LOG_JOURNAL_DIR": str(work / "journal"), "LOG_SHIP_INTERVAL": 0, "ADMIN_TOKEN": ADMIN_TOKEN,
                      "LOG_LEVEL": "WARNING"})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    older = "20250401T000000Z"
    day = (now - dt.timedelta(days=100)).replace(microsecond=0)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    filters = [
        ("(none)", ""),
        ("status=400", "status=400"),
        ("status=200", "status=200"),
        ("model=heart-knn", "model=heart-knn"),
        (f"model=boston-knn&model_version={older}", f"model=boston-knn&model_version={older}"),
        (f"model_version={version}", f"model_version={version}"),
        ("since=<1 hour ago>", f"since={(now - dt.timedelta(hours=1)).strftime(iso)}"),
        ("until=<6 months ago>", f"until={(now - dt.timedelta(days=182)).strftime(iso)}"),
        ("since..until (one day)", f"since={day.strftime(iso)}&until={(day + dt.timedelta(days=1)).strftime(iso)}"),
        ("client_request_id=client-<n>", f"client_request_id=client-{args.rows - 10}"),
        ("status=400&model=heart-knn", "status=400&model=heart-knn"),
        ("(none), offset=5000", "offset=5000"),
    ]
    print(f"\n2. GET /predictions through the app, {args.repeat} requests each (limit 50); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  {'filter':<48} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'total':>12}")
    worst = 0.0
    for label, query in filters:
        (p50, p99, top), body = measure(client, f"/predictions?{query}", args.repeat, headers)
        worst = max(worst, p99)
        total = f"{body['total']:,}{'' if body['total_exact'] else '+'}"
        print(f"  {label:<48} {p50:>8.1f} {p99:>8.1f} {top:>8.1f} {total:>12}")
    with engine.connect() as conn:
        some_id = conn.scalar(sa.text("SELECT request_id FROM prediction_log ORDER BY received_at DESC LIMIT 1"))
    (p50, p99, top), _ = measure(client, f"/predictions/{some_id}", args.repeat, headers)
    print(f"  {'GET /predictions/<request_id>':<48} {p50:>8.1f} {p99:>8.1f} {top:>8.1f}")
    print(f"  worst p99: {worst:.1f} ms ({'under' if worst < 50 else 'OVER'} 50 ms)")

    print("\n3. GET /monitoring/drift (the newest accepted rows of the served version, KS test)")
    from flask_app.log import recent_request_bodies

    for window in (1000, 10000):
        (p50, p99, top), body = measure(client, f"/monitoring/drift?window={window}", 20, headers)
        print(f"  window={window:<6} the endpoint: p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  max {top:7.1f} ms "
              f"({body['n_rows']} rows)")
        with app.app_context():
            samples = []
            for _ in range(20):
                started = time.perf_counter()
                n_bodies = sum(1 for _ in recent_request_bodies("boston-knn", version, window, 64 << 20))
                samples.append(time.perf_counter() - started)
        p50, p99, top = percentiles(samples)
        print(f"  {'':<13} its query alone: p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  max {top:7.1f} ms "
              f"({n_bodies} request bodies)")
    app.extensions["prediction_log"].stop()
    with app.app_context():
        from flask_app.extensions import db

        db.engine.dispose()

    print("\n4. the shipper's path: COPY FROM STDIN into the partitioned parent, one transaction per batch")
    for batch in (100, 1000):
        rate = copy_throughput(url, args.copy_rows // (10 if batch == 100 else 1), batch, version)
        print(f"  batches of {batch:>4} rows: {rate:>9,.0f} rows/s")

    print("\n5. retention: the oldest month")
    with engine.connect() as conn:
        oldest = conn.scalar(sa.text("SELECT min(received_at) FROM prediction_log"))
        month = partitions.month_start(oldest)
        n_month = conn.scalar(sa.text("SELECT count(*) FROM prediction_log WHERE received_at < :end"),
                              {"end": partitions.add_months(month, 1)})
    # The cutoff falls just after the oldest month: exactly that partition goes.
    retention = (now - partitions.add_months(month, 1)).days
    with timed(f"log-partitions with LOG_RETENTION_DAYS={retention}: DROP of {partitions.partition_name(month)} "
               f"({n_month:,} rows)"):
        report = partitions.maintain(engine, now, months_ahead=3, retention_days=retention)
    assert report.dropped == [partitions.partition_name(month)], report
    # For comparison, what retention costs without partitions: the same number of rows deleted.
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE plain_copy AS SELECT * FROM prediction_log WHERE received_at < :end"),
                     {"end": partitions.add_months(month, 2)})
        conn.execute(sa.text("CREATE INDEX ON plain_copy (received_at)"))
    with timed(f"for comparison, DELETE of one month's rows ({n_month:,}) from a plain table"), \
            engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM plain_copy WHERE received_at < :end"),
                     {"end": partitions.add_months(month, 2)})
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
