"""Fault run: steady load on gunicorn + PostgreSQL while things break, then count what was lost.

    .venv/bin/python -m tests.fault_run                 # full run (60 s)
    .venv/bin/python -m tests.fault_run --duration 12   # the reduced run CI does

Loopback only and bounded in time. It starts gunicorn with several workers on
a throwaway database, sends a mix of good and bad /predict requests from
several threads, and meanwhile restarts PostgreSQL twice, kills one worker
with SIGKILL, and finally sends SIGTERM to the master with requests in
flight. Then it reports answered requests by status class, answered request
ids missing from the log (must be 0), duplicate log rows (must be 0), how
long the spool took to drain after each restart, and how many requests in
flight at SIGTERM were completed. PostgreSQL is always started again.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from flask_app.log import spooled_rows

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
GOOD_ROW = {"CRIM": 0.1, "ZN": 0.0, "INDUS": 7.0, "CHAS": 0, "NOX": 0.5, "RM": 6.2, "AGE": 60.0,
            "DIS": 4.0, "RAD": 4, "TAX": 300.0, "PTRATIO": 17.0, "LSTAT": 10.0}
BAD_BODIES = [
    b'{"instances": [{"CRIM": "x"}]}',
    b"not json",
    b'{"instances": []}',
    json.dumps({"instances": [dict(GOOD_ROW, CHAS=3)]}).encode(),
]


def pg_cluster_command(action: str) -> list[str]:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]


def ensure_postgres_running() -> None:
    """Start the machine's PostgreSQL if it is not answering (never leave it stopped)."""
    if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False).returncode != 0:
        subprocess.run(pg_cluster_command("start"), check=False)
        for _ in range(60):
            if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode == 0:
                return
            time.sleep(0.5)


def restart_postgres() -> float:
    started = time.monotonic()
    try:
        subprocess.run(pg_cluster_command("restart"), check=True, capture_output=True, timeout=60)
    finally:
        ensure_postgres_running()
    return time.monotonic() - started


@dataclass
class Outcome:
    request_id: str
    status: int | None
    started: float
    finished: float
    error: str | None = None


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    drain_seconds: list[float] = field(default_factory=list)
    spool_peaks: list[int] = field(default_factory=list)
    sigterm_at: float | None = None
    missing: list[str] = field(default_factory=list)
    duplicates: int = 0
    master_exit: int | None = None
    final_spool_rows: int = 0

    def summary(self) -> dict:
        sigterm = self.sigterm_at if self.sigterm_at is not None else float("inf")
        by_class = Counter(
            f"{o.status // 100}xx" if o.status else ("refused after SIGTERM" if o.started >= sigterm else "no answer")
            for o in self.outcomes
        )
        in_flight = [o for o in self.outcomes if o.started < sigterm < o.finished]
        return {
            "requests": len(self.outcomes),
            "by_status_class": dict(sorted(by_class.items())),
            "answered_missing_from_log": len(self.missing),
            "duplicate_log_rows": self.duplicates,
            "rows_spooled_peak": self.spool_peaks,
            "spool_drain_seconds": [round(s, 2) for s in self.drain_seconds],
            "in_flight_at_sigterm": len(in_flight),
            "in_flight_completed_at_sigterm": sum(1 for o in in_flight if o.status is not None),
            "master_exit_code": self.master_exit,
            "spool_rows_left": self.final_spool_rows,
            "events": [f"{t:6.2f}s {what}" for t, what in self.events],
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def send(port: int, body: bytes, request_id: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/predict", body=body,
                           headers={"Content-Type": "application/json", "X-Request-ID": request_id})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def wait_for_drain(spool_dir: Path, limit: float) -> float:
    started = time.monotonic()
    while spooled_rows(spool_dir) and time.monotonic() - started < limit:
        time.sleep(0.1)
    return time.monotonic() - started


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def run(duration: float = 60.0, workers: int = 3, concurrency: int = 8, bad_share: float = 0.2,
        seed: int = 7) -> dict:
    from ml_models import learn
    from tests.conftest import create_database, drop_database, migrate_to_head

    ensure_postgres_running()
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="fault-run-"))
    database = create_database(PG_SERVER)
    report = Report()
    process = None
    try:
        migrate_to_head(database)
        assert learn.main(["--model-dir", str(work / "models"), "--quiet", "--max-neighbors", "10"]) == 0
        spool_dir = work / "spool"
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT), DATABASE_URL=database, MODEL_DIR=str(work / "models"),
                   LOG_SPOOL_DIR=str(spool_dir), SPOOL_REPLAY_SECONDS="0.5", ADMIN_TOKEN=uuid.uuid4().hex,
                   LOG_LEVEL="WARNING")
        gunicorn = Path(sys.executable).parent / "gunicorn"
        with open(work / "gunicorn.log", "wb") as log_file:
            process = subprocess.Popen(
                [str(gunicorn), "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
                 "--graceful-timeout", "20", "flask_app.wsgi:app"],
                cwd=work, env=env, stdout=log_file, stderr=log_file,
            )
            wait_ready(port)
            run_load(report, process, port, duration, concurrency, bad_share, rng, spool_dir)
            report.master_exit = process.wait(timeout=60)
        # Rows a worker spooled and could not replay before it exited are replayed by the next start;
        # here a writer on the same spool directory does it.
        report.drain_seconds.append(drain_leftovers(database, spool_dir))
        report.final_spool_rows = spooled_rows(spool_dir)
        count_losses(report, database)
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        ensure_postgres_running()
        drop_database(database)
        shutil.rmtree(work, ignore_errors=True)
    return report.summary()


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/ready")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not become ready")


def run_load(report: Report, process: subprocess.Popen, port: int, duration: float, concurrency: int,
             bad_share: float, rng: random.Random, spool_dir: Path) -> None:
    start = time.monotonic()
    stop = threading.Event()
    lock = threading.Lock()
    good = json.dumps({"instances": [GOOD_ROW]}).encode()

    def loader(index: int) -> None:
        local = random.Random(rng.random())
        while not stop.is_set():
            request_id = f"fault-{index}-{uuid.uuid4().hex[:12]}"
            body = local.choice(BAD_BODIES) if local.random() < bad_share else good
            began = time.monotonic()
            try:
                status, error = send(port, body, request_id), None
            except (OSError, http.client.HTTPException) as exc:
                status, error = None, type(exc).__name__
            with lock:
                report.outcomes.append(Outcome(request_id, status, began - start, time.monotonic() - start, error))
            if status is None:
                if process.poll() is not None:
                    return
                time.sleep(0.02)

    def event(what: str) -> None:
        report.events.append((time.monotonic() - start, what))

    threads = [threading.Thread(target=loader, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    schedule = [(0.2, "restart"), (0.45, "kill"), (0.65, "restart"), (0.9, "sigterm")]
    for at, action in schedule:
        time.sleep(max(0.0, start + at * duration - time.monotonic()))
        if action == "restart":
            event("PostgreSQL restart begins")
            peak = [0]
            watching = threading.Event()

            def watch(peak=peak, watching=watching) -> None:
                while not watching.is_set():
                    peak[0] = max(peak[0], spooled_rows(spool_dir))
                    time.sleep(0.05)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            seconds = restart_postgres()
            event(f"PostgreSQL back after {seconds:.1f} s")
            report.drain_seconds.append(wait_for_drain(spool_dir, limit=max(10.0, duration / 4)))
            watching.set()
            watcher.join()
            report.spool_peaks.append(peak[0])
            event(f"spool drained ({report.drain_seconds[-1]:.2f} s after PostgreSQL returned)")
        elif action == "kill":
            victim = worker_pids(process.pid)[0]
            os.kill(victim, signal.SIGKILL)
            event(f"SIGKILL worker {victim}")
        else:
            report.sigterm_at = time.monotonic() - start
            process.send_signal(signal.SIGTERM)
            event("SIGTERM master")
    process.wait(timeout=60)
    event("master exited")
    stop.set()
    for thread in threads:
        thread.join(timeout=15)


def drain_leftovers(database: str, spool_dir: Path) -> float:
    from flask_app.log import PredictionLogWriter

    engine = sa.create_engine(database)
    writer = PredictionLogWriter(engine, spool_dir)
    started = time.monotonic()
    while spooled_rows(spool_dir) and time.monotonic() - started < 30:
        writer.replay()
        time.sleep(0.1)
    engine.dispose()
    return time.monotonic() - started


def count_losses(report: Report, database: str) -> None:
    engine = sa.create_engine(database)
    with engine.connect() as conn:
        logged = list(conn.execute(sa.text("SELECT request_id FROM prediction_log")).scalars())
    engine.dispose()
    # A reused id would be stored as "<id>.<suffix>": count those as duplicates of one request.
    base_ids = Counter(request_id.split(".", 1)[0] for request_id in logged)
    report.duplicates = sum(n - 1 for n in base_ids.values() if n > 1)
    answered = {o.request_id for o in report.outcomes if o.status is not None}
    report.missing = sorted(answered - set(base_ids))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    summary = run(args.duration, args.workers, args.concurrency)
    print(json.dumps(summary, indent=2))
    ok = (summary["answered_missing_from_log"] == 0 and summary["duplicate_log_rows"] == 0
          and summary["by_status_class"].get("5xx", 0) == 0 and summary["spool_rows_left"] == 0)
    print("fault run:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
