"""Fault run: steady load on gunicorn + PostgreSQL while things break, then count what was lost.

    .venv/bin/python -m tests.fault_run                          # full run (60 s), default durability
    .venv/bin/python -m tests.fault_run --durability strict      # the same with fsync before every answer
    .venv/bin/python -m tests.fault_run --duration 16            # the reduced run CI does (both modes)

Loopback only and bounded in time. It starts gunicorn with several workers on
a throwaway database, sends a mix of good and bad /predict requests from
several threads, and meanwhile restarts PostgreSQL, stops it with
``-m immediate`` (a crash) and starts it again, restarts it once more,
kills one worker with SIGKILL, then kills the worker that is shipping the
journal with SIGKILL, and finally sends SIGTERM to the master with requests
in flight. Then it reports answered requests by status class, answered
request ids missing from the log (must be 0), duplicate log rows (must be
0), the journal backlog at its peak during each outage and how long it took
to drain once PostgreSQL was back, and how many requests in flight at
SIGTERM were completed. PostgreSQL is always started again.

FAULT_PG_CLUSTER names the cluster to restart (default ``main``, the one
TEST_DATABASE_URL points at).
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

from flask_app.log.shipper import read_status

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PG_CLUSTER = os.environ.get("FAULT_PG_CLUSTER", "main")
GOOD_ROW = {"CRIM": 0.1, "ZN": 0.0, "INDUS": 7.0, "CHAS": 0, "NOX": 0.5, "RM": 6.2, "AGE": 60.0,
            "DIS": 4.0, "RAD": 4, "TAX": 300.0, "PTRATIO": 17.0, "LSTAT": 10.0}
BAD_BODIES = [
    b'{"instances": [{"CRIM": "x"}]}',
    b"not json",
    b'{"instances": []}',
    json.dumps({"instances": [dict(GOOD_ROW, CHAS=3)]}).encode(),
]
# When each fault happens, as a share of the run.
SCHEDULE = [(0.12, "restart"), (0.3, "kill worker"), (0.42, "crash"), (0.6, "kill shipper"), (0.72, "restart"),
            (0.9, "sigterm")]


def pg_cluster_command(*action: str) -> list[str]:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, PG_CLUSTER, *action]


def pg_port() -> str:
    return str(sa.make_url(PG_SERVER).port or 5432)


def ensure_postgres_running() -> None:
    """Start the PostgreSQL cluster if it is not answering (never leave it stopped)."""
    if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", pg_port()], check=False).returncode != 0:
        subprocess.run(pg_cluster_command("start"), check=False)
        for _ in range(60):
            if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", pg_port()], check=False).returncode == 0:
                return
            time.sleep(0.5)


def restart_postgres(crash: bool = False) -> float:
    """A restart, or with ``crash`` an immediate stop (no shutdown checkpoint) and a start."""
    started = time.monotonic()
    try:
        if crash:
            subprocess.run(pg_cluster_command("stop", "-m", "immediate"), check=True, capture_output=True, timeout=60)
            time.sleep(1.0)
            subprocess.run(pg_cluster_command("start"), check=True, capture_output=True, timeout=60)
        else:
            subprocess.run(pg_cluster_command("restart"), check=True, capture_output=True, timeout=60)
    finally:
        ensure_postgres_running()
    return time.monotonic() - started


@dataclass
class Outcome:
    request_id: str | None  # the service's id from the answer's X-Request-ID
    client_id: str
    status: int | None
    started: float
    finished: float
    error: str | None = None


@dataclass
class Report:
    durability: str
    outcomes: list[Outcome] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    drain_seconds: list[float] = field(default_factory=list)
    backlog_peaks: list[int] = field(default_factory=list)
    sigterm_at: float | None = None
    missing: list[str] = field(default_factory=list)
    duplicates: int = 0
    master_exit: int | None = None
    shipped_after_exit: int = 0
    rows_left: int = 0

    def summary(self) -> dict:
        sigterm = self.sigterm_at if self.sigterm_at is not None else float("inf")
        by_class = Counter(
            f"{o.status // 100}xx" if o.status else ("refused after SIGTERM" if o.started >= sigterm else "no answer")
            for o in self.outcomes
        )
        in_flight = [o for o in self.outcomes if o.started < sigterm < o.finished]
        return {
            "durability": self.durability,
            "requests": len(self.outcomes),
            "by_status_class": dict(sorted(by_class.items())),
            "answered_missing_from_log": len(self.missing),
            "duplicate_log_rows": self.duplicates,
            "journal_backlog_peaks": self.backlog_peaks,
            "drain_seconds": [round(s, 2) for s in self.drain_seconds],
            "in_flight_at_sigterm": len(in_flight),
            "in_flight_completed_at_sigterm": sum(1 for o in in_flight if o.status is not None),
            "master_exit_code": self.master_exit,
            "rows_shipped_by_the_next_start": self.shipped_after_exit,
            "journal_rows_left": self.rows_left,
            "events": [f"{t:6.2f}s {what}" for t, what in self.events],
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def send(port: int, body: bytes, client_id: str) -> tuple[int, str | None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/predict", body=body,
                           headers={"Content-Type": "application/json", "X-Request-ID": client_id})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("X-Request-ID")
    finally:
        connection.close()


def backlog(journal: Path) -> int:
    return (read_status(journal) or {}).get("rows") or 0


def wait_for_drain(journal: Path, limit: float) -> float:
    """Seconds until the shipper reports an empty backlog (after a fresh status)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        status = read_status(journal) or {}
        if status.get("updated_at", 0) > time.time() - 1 and not status.get("rows"):
            break
        time.sleep(0.05)
    return time.monotonic() - started


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def shipper_pid(journal: Path, master: int) -> int:
    """The worker that holds the journal's shipper lock, as its status says."""
    for _ in range(50):
        status = read_status(journal) or {}
        pid = int(str(status.get("shipper", ":0")).rsplit(":", 1)[1])
        if pid in worker_pids(master):
            return pid
        time.sleep(0.1)
    raise RuntimeError("no worker reports shipping the journal")


def run(duration: float = 60.0, workers: int = 3, concurrency: int = 8, bad_share: float = 0.2,
        seed: int = 7, durability: str = "default") -> dict:
    from ml_models import learn
    from tests.conftest import create_database, drop_database, migrate_to_head

    ensure_postgres_running()
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="fault-run-"))
    database = create_database(PG_SERVER)
    report = Report(durability)
    process = None
    try:
        migrate_to_head(database)
        assert learn.main(["--model-dir", str(work / "models"), "--quiet", "--max-neighbors", "10"]) == 0
        journal = work / "journal"
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT), DATABASE_URL=database, MODEL_DIR=str(work / "models"),
                   LOG_JOURNAL_DIR=str(journal), LOG_DURABILITY=durability, ADMIN_TOKEN=uuid.uuid4().hex,
                   LOG_LEVEL="WARNING")
        gunicorn = Path(sys.executable).parent / "gunicorn"
        with open(work / "gunicorn.log", "wb") as log_file:
            process = subprocess.Popen(
                [str(gunicorn), "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
                 "--graceful-timeout", "20", "flask_app.wsgi:app"],
                cwd=work, env=env, stdout=log_file, stderr=log_file,
            )
            wait_ready(port)
            run_load(report, process, port, duration, concurrency, bad_share, rng, journal)
            report.master_exit = process.wait(timeout=60)
        # What no worker could ship before it exited is shipped by the next start; here a recorder on the
        # same journal directory does it.
        report.shipped_after_exit = drain_leftovers(database, journal)
        count_losses(report, database)
        # Every segment shipped and sealed is deleted: what is left holds rows no one could ship.
        report.rows_left = sum(path.read_bytes().count(b"\n") - 1 for path in journal.glob("seg-*.journal"))
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
             bad_share: float, rng: random.Random, journal: Path) -> None:
    start = time.monotonic()
    stop = threading.Event()
    lock = threading.Lock()
    good = json.dumps({"instances": [GOOD_ROW]}).encode()

    def loader(index: int) -> None:
        local = random.Random(rng.random())
        while not stop.is_set():
            client_id = f"fault-{index}-{uuid.uuid4().hex[:12]}"
            body = local.choice(BAD_BODIES) if local.random() < bad_share else good
            began = time.monotonic()
            try:
                (status, request_id), error = send(port, body, client_id), None
            except (OSError, http.client.HTTPException) as exc:
                status, request_id, error = None, None, type(exc).__name__
            with lock:
                report.outcomes.append(Outcome(request_id, client_id, status, began - start,
                                               time.monotonic() - start, error))
            if status is None:
                if process.poll() is not None:
                    return
                time.sleep(0.02)

    def event(what: str) -> None:
        report.events.append((time.monotonic() - start, what))

    def outage(crash: bool) -> None:
        event(f"PostgreSQL {'immediate stop' if crash else 'restart'} begins")
        peak = [0]
        watching = threading.Event()

        def watch() -> None:
            while not watching.is_set():
                peak[0] = max(peak[0], backlog(journal))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        seconds = restart_postgres(crash)
        event(f"PostgreSQL back after {seconds:.1f} s")
        report.drain_seconds.append(wait_for_drain(journal, limit=max(10.0, duration / 4)))
        watching.set()
        watcher.join()
        report.backlog_peaks.append(peak[0])
        event(f"journal drained {report.drain_seconds[-1]:.2f} s after PostgreSQL returned (peak {peak[0]} rows)")

    threads = [threading.Thread(target=loader, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for at, action in SCHEDULE:
        time.sleep(max(0.0, start + at * duration - time.monotonic()))
        if action in ("restart", "crash"):
            outage(crash=action == "crash")
        elif action == "kill worker":
            shipping = shipper_pid(journal, process.pid)
            victim = next(pid for pid in worker_pids(process.pid) if pid != shipping)
            os.kill(victim, signal.SIGKILL)
            event(f"SIGKILL worker {victim}")
        elif action == "kill shipper":
            victim = shipper_pid(journal, process.pid)
            os.kill(victim, signal.SIGKILL)
            event(f"SIGKILL the shipping worker {victim}")
        else:
            report.sigterm_at = time.monotonic() - start
            process.send_signal(signal.SIGTERM)
            event("SIGTERM master")
    process.wait(timeout=60)
    event("master exited")
    stop.set()
    for thread in threads:
        thread.join(timeout=15)


def drain_leftovers(database: str, journal: Path) -> int:
    from flask_app.log import Recorder

    engine = sa.create_engine(database)
    recorder = Recorder(engine, journal, ship_interval=0)
    started = time.monotonic()
    shipped = 0
    while time.monotonic() - started < 30:
        report = recorder.flush()
        shipped += report.shipped_rows
        if not report.error and not report.shipped_rows:
            break
    recorder.stop()
    engine.dispose()
    return shipped


def count_losses(report: Report, database: str) -> None:
    engine = sa.create_engine(database)
    with engine.connect() as conn:
        logged = conn.execute(sa.text("SELECT request_id, client_request_id FROM prediction_log")).all()
    engine.dispose()
    by_id = Counter(request_id for request_id, _ in logged)
    by_client = Counter(client for _, client in logged if client)
    report.duplicates = sum(n - 1 for n in by_id.values() if n > 1) + sum(n - 1 for n in by_client.values() if n > 1)
    answered = {o.request_id for o in report.outcomes if o.status is not None}
    report.missing = sorted(answered - set(by_id))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--durability", choices=("default", "strict"), default="default")
    args = parser.parse_args(argv)
    summary = run(args.duration, args.workers, args.concurrency, durability=args.durability)
    print(json.dumps(summary, indent=2))
    ok = (summary["answered_missing_from_log"] == 0 and summary["duplicate_log_rows"] == 0
          and summary["by_status_class"].get("5xx", 0) == 0 and summary["journal_rows_left"] == 0)
    print("fault run:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
