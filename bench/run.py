"""Benchmark: the prediction service against a bare Flask wrapper of the same model, under the same load.

    .venv/bin/python bench/run.py            # 15 s per run, about 5 minutes in all
    .venv/bin/python bench/run.py --quick    # 5 s per run
    make bench

Trains a Boston model into a temporary store, creates throwaway PostgreSQL
databases (dropped at the end), starts the baseline (bench/baseline_app.py)
and the service twice, in default and in strict log durability, each under
gunicorn with 2 sync workers, and drives them with wrk, one server at a
time, scenario by scenario. Prints one table (req/s, rows/s, p50, p99,
errors, ratio to the baseline), the target checks, the shipping lag of the
log under the single-row load, the journal backlog when the load stops and
how long it takes to drain, each worker's RSS, the start-up time, and the
log check: one row per answered request in PostgreSQL, none twice. Installs
nothing but wrk (from Debian) when it is missing. See bench/README.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import pickle
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
DATA = ROOT / "ml_models" / "data" / "boston_housing.csv"
MODEL_NAME = "boston-knn"
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
WORKERS = 2
WRK_THREADS = 2

# Targets (ratios against the baseline measured in the same run, same worker count).
TARGET_RATIO = {"ours": 1.5, "strict": 1.0}  # req/s, single row, c=8, by durability
TARGET_P99_MS = 25.0  # single row, c=8, both modes
TARGET_BATCH_RATIO = 1.0  # rows/s, 100- and 1000-row batches, c=8
TARGET_LAG_P99_S = 1.0  # answer -> row in PostgreSQL, single-row load
TARGET_DRAIN_S = 2.0  # journal backlog back to 0 after the load stops
TARGET_INPROCESS = 2.0  # a 1000-row request through the whole path / sklearn predict

sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Scenario:
    name: str
    rows: int
    connections: int
    path: str = "/predict"


SCENARIOS = [
    Scenario("single c=8", 1, 8),
    Scenario("single c=32", 1, 32),
    Scenario("batch100 c=8", 100, 8),
    Scenario("batch1000 c=8", 1000, 8),
]
FLOOR = Scenario("single c=8 floor", 1, 8, "/constant")
WARMUP = Scenario("warm-up", 1, 8)

# One wrk Lua script per run: POST the body file, count non-2xx answers in every thread, and print
# one machine-readable line from done() (latencies in microseconds).
LUA = r"""
wrk.method = "POST"
wrk.path = "@PATH@"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("@BODY@", "rb"))
wrk.body = f:read("*a")
f:close()

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  answered = 0
  non2xx = 0
end

function response(status, headers, body)
  answered = answered + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local answered_all, non2xx_all = 0, 0
  for _, thread in ipairs(threads) do
    answered_all = answered_all + thread:get("answered")
    non2xx_all = non2xx_all + thread:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT {\"requests\": %.0f, \"duration_us\": %.0f, \"bytes\": %.0f, \"answered\": %.0f, " ..
    "\"non2xx\": %.0f, \"connect\": %.0f, \"read\": %.0f, \"write\": %.0f, \"status\": %.0f, " ..
    "\"timeout\": %.0f, \"p50_us\": %.0f, \"p90_us\": %.0f, \"p99_us\": %.0f, \"max_us\": %.0f, " ..
    "\"mean_us\": %.1f}\n",
    summary.requests, summary.duration, summary.bytes, answered_all, non2xx_all,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass
class Result:
    scenario: Scenario
    server: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    # CPU used during the run, in % of one core (the machine has 2): the server (master, workers and,
    # for ours, its PostgreSQL backends), wrk, and everything else on the machine (noise).
    cpu_server: float = 0.0
    cpu_wrk: float = 0.0
    cpu_other: float = 0.0
    started_at: float = 0.0  # wall clock, to find the run's rows in the log
    ended_at: float = 0.0
    backlog_at_end: int | None = None  # journal rows not yet in PostgreSQL when wrk stopped
    drain_seconds: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors


@dataclass
class Server:
    label: str
    port: int
    process: subprocess.Popen
    spawned_at: float
    log_path: Path
    database: str | None = None  # its PostgreSQL backends count as its CPU
    journal: Path | None = None
    ready_seconds: float | None = None
    answered: int = 0  # requests wrk got an answer to, summed over runs
    connections: int = 0  # connections summed over runs: the most requests in flight when wrk stopped
    rss: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def say(text: str) -> None:
    print(f"==> {text}", file=sys.stderr, flush=True)


# --- set-up -------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    say("wrk is not on PATH: installing it from Debian's packages")
    command = ["apt-get", "install", "-y", "wrk"]
    if os.geteuid() != 0 and shutil.which("sudo"):
        command = ["sudo", *command]
    if subprocess.run(command, check=False).returncode != 0:
        subprocess.run([*command[:-3], "update"], check=False)
        subprocess.run(command, check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed; install it (apt-get install wrk) and run again")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_retry(call, seconds: float = 30.0):
    """``call()``, retried while PostgreSQL does not answer (someone may be restarting it)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def admin_execute(statement: str) -> None:
    def call():
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)

    with_retry(call)


def create_database(name: str) -> None:
    admin_execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    try:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error as exc:
        print(f"could not drop the database {name}: {exc}", file=sys.stderr)


def train(model_dir: Path) -> Path:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "ml_models" / "learn.py"), "--quiet", "--model-dir", str(model_dir)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"training failed:\n{completed.stdout}{completed.stderr}")
    version = (model_dir / MODEL_NAME / "ACTIVE").read_text().strip()
    return model_dir / MODEL_NAME / version


def feature_names(bundle_dir: Path) -> list[str]:
    from ml_models import bundle

    return [feature["name"] for feature in bundle.read_info(bundle_dir)["features"]]


def dataset_rows(features: list[str], n: int) -> list[list[float]]:
    """The first ``n`` rows of the Boston CSV (cycled when it has fewer), the model's columns in its order."""
    with open(DATA, newline="", encoding="utf-8-sig") as handle:
        records = list(csv.DictReader(handle))
    return [[float(records[i % len(records)][name]) for name in features] for i in range(n)]


# --- in-process reference times ------------------------------------------------------------


def median_ms(call, repeat: int) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def in_process_times(model_dir: Path, bundle_dir: Path, rows: dict[int, list[list[float]]], repeat: int,
                     work: Path) -> dict:
    """Median times in this process: a whole request through the app (WSGI call: parse, validate, predict,
    drift, answer, journal append), the registry's predict alone, and plain sklearn ``model.predict``."""
    from flask_app import create_app

    logging.getLogger("flask_app").setLevel(logging.ERROR)  # notices and access lines are for operators
    app = create_app({"DATABASE_URL": f"sqlite:///{work / 'inprocess.db'}", "MODEL_DIR": str(model_dir),
                      "LOG_JOURNAL_DIR": str(work / "inprocess-journal"), "LOG_SHIP_INTERVAL": 0,
                      "ADMIN_TOKEN": "bench", "LOG_LEVEL": "ERROR"})
    served = app.extensions["model_registry"].get()
    with open(bundle_dir / "model.pkl", "rb") as handle:
        model = pickle.load(handle)  # noqa: S301 - the bundle trained a moment ago
    times = {}
    for n, matrix in rows.items():
        X = np.asarray(matrix, dtype=float)
        body = json.dumps({"instances": matrix}).encode()
        times[n] = {
            "request": median_ms(lambda body=body: wsgi_post(app, body), repeat),
            "registry": median_ms(lambda X=X: served.predict(X), repeat),
            "sklearn": median_ms(lambda X=X: model.predict(X), repeat),
        }
    times["fast_path"] = served.fast_path
    app.extensions["prediction_log"].stop()
    return times


def wsgi_post(app, body: bytes) -> None:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "SERVER_NAME": "bench", "SERVER_PORT": "80",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
               "wsgi.errors": sys.stderr, "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json",
               "REMOTE_ADDR": "127.0.0.1"}
    statuses = []
    answer = b"".join(app.wsgi_app(environ, lambda status, headers: statuses.append(status)))
    if not statuses[0].startswith("200"):
        raise RuntimeError(f"in-process request answered {statuses[0]}: {answer[:300]!r}")


# --- servers --------------------------------------------------------------------------


def spawn(label: str, command: list[str], env: dict[str, str], cwd: Path, port: int, log_dir: Path) -> Server:
    log_path = log_dir / f"{label}.log"
    with open(log_path, "wb") as log_file:
        spawned_at = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return Server(label, port, process, spawned_at, log_path)


def wait_ready(server: Server, timeout: float = 60.0) -> float:
    """Seconds from spawning gunicorn until GET /ready answered 200."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.label} exited with {server.process.returncode}; see {server.log_path}:\n"
                               + tail(server.log_path))
        try:
            with urllib.request.urlopen(f"{server.url}/ready", timeout=1) as response:
                if response.status == 200:
                    server.ready_seconds = time.perf_counter() - server.spawned_at
                    return server.ready_seconds
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{server.label} not ready after {timeout:.0f} s; see {server.log_path}:\n"
                       + tail(server.log_path))


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(server: Server) -> None:
    """SIGTERM to the master (graceful), SIGKILL to its process group if it lingers."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
        return sorted(found)


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def record_rss(server: Server) -> None:
    server.rss = {"master": rss_kib(server.process.pid) or 0}
    for index, pid in enumerate(children(server.process.pid), start=1):
        server.rss[f"worker {index} (pid {pid})"] = rss_kib(pid) or 0


def post_json(url: str, body: bytes) -> dict:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def same_answers(baseline: Server, ours: Server, body: bytes) -> float:
    """Both servers predict the same body before the load; returns the largest difference (0 expected)."""
    theirs = post_json(f"{baseline.url}/predict", body)["predictions"]
    mine = post_json(f"{ours.url}/predict", body)["predictions"]
    if len(theirs) != len(mine):
        raise RuntimeError(f"the servers answered {len(theirs)} and {len(mine)} predictions for the same body")
    return float(np.max(np.abs(np.asarray(theirs, dtype=float) - np.asarray(mine, dtype=float))))


# --- CPU accounting ---------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_jiffies() -> int:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4]  # all but idle and iowait


def process_jiffies(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def database_backends(database: str | None) -> list[int]:
    """PostgreSQL backends serving ``database``: their process title names it."""
    if not database:
        return []
    needle = f" {database} ".encode()
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
        except OSError:
            continue
        if text.startswith(b"postgres:") and needle in text.replace(b"\0", b" "):
            found.append(int(cmdline.parent.name))
    return found


def server_jiffies(server: Server) -> dict[int, int]:
    pids = [server.process.pid, *children(server.process.pid), *database_backends(server.database)]
    return {pid: process_jiffies(pid) for pid in pids}


def wrk_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- load ---------------------------------------------------------------------------------


def run_wrk(wrk: str, server: Server, scenario: Scenario, seconds: float, work: Path) -> Result:
    body_path = work / f"body-{scenario.rows}.json"
    script = work / f"{server.label}-{scenario.path.strip('/')}-{scenario.rows}.lua"
    script.write_text(LUA.replace("@PATH@", scenario.path).replace("@BODY@", str(body_path)))
    command = [wrk, f"-t{WRK_THREADS}", f"-c{scenario.connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
               "-s", str(script), server.url]
    busy_before, server_before, wrk_before = machine_busy_jiffies(), server_jiffies(server), wrk_seconds()
    started, started_at = time.perf_counter(), time.time()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    ended_at = time.time()
    backlog_at_end = journal_backlog(server)
    busy = (machine_busy_jiffies() - busy_before) / CLK_TCK
    server_after = server_jiffies(server)
    server_cpu = sum(after - server_before.get(pid, 0) for pid, after in server_after.items()) / CLK_TCK
    wrk_cpu = wrk_seconds() - wrk_before
    line = next((x for x in completed.stdout.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stdout}{completed.stderr}")
    data = json.loads(line.split(" ", 1)[1])
    result = Result(
        scenario=scenario,
        server=server.label,
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        non2xx=int(data["non2xx"]),
        socket_errors=int(data["connect"] + data["read"] + data["write"] + data["timeout"]),
        cpu_server=100 * server_cpu / wall,
        cpu_wrk=100 * wrk_cpu / wall,
        cpu_other=100 * max(0.0, busy - server_cpu - wrk_cpu) / wall,
        started_at=started_at,
        ended_at=ended_at,
        backlog_at_end=backlog_at_end,
    )
    if server.journal is not None:
        result.drain_seconds = wait_drained(server, ended_at)
    server.answered += result.requests
    server.connections += scenario.connections
    return result


# --- the journal and the log -------------------------------------------------------------------


def journal_backlog(server: Server) -> int | None:
    """Rows the service's journal holds that are not in PostgreSQL yet, as its shipper last reported."""
    if server.journal is None:
        return None
    from flask_app.log.shipper import read_status

    return (read_status(server.journal) or {}).get("rows")


def wait_drained(server: Server, since: float, limit: float = 60.0) -> float | None:
    """Seconds from ``since`` (the load stopped) until the shipper reports an empty backlog."""
    from flask_app.log.shipper import read_status

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status = read_status(server.journal) or {}
        if status.get("updated_at", 0) > since and status.get("rows") == 0:
            return max(0.0, status["updated_at"] - since)
        time.sleep(0.02)
    return None


def database_url(name: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def query_one(name: str, statement: str, params: tuple = ()) -> tuple:
    def call():
        with psycopg.connect(database_url(name), connect_timeout=5) as conn:
            return conn.execute(statement, params).fetchone()

    return with_retry(call)


def shipping_lag(server: Server, result: Result) -> tuple[int, float, float, float]:
    """Rows answered during a run and their lag from answer to the shipping transaction: p50, p99, max (s)."""
    return query_one(server.database, """
        SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag)
        FROM (SELECT extract(epoch FROM logged_at - received_at) - latency_ms / 1000.0 AS lag
              FROM prediction_log WHERE received_at >= to_timestamp(%s) AND received_at < to_timestamp(%s)) runs
        """, (result.started_at, result.ended_at))


def served_predicts(server: Server) -> tuple[int, dict[str, int]]:
    """The service's own count of POST /predict requests (Prometheus, all workers) and its log writes by outcome."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    requests, writes = 0, {}
    for line in text.splitlines():
        if line.startswith("http_requests_total{") and 'endpoint="/predict"' in line and 'method="POST"' in line:
            requests += round(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("prediction_log_writes_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            writes[outcome] = writes.get(outcome, 0) + round(float(line.rsplit(" ", 1)[1]))
    return requests, writes


def log_check(server: Server) -> dict:
    """After the shipper drained: rows in PostgreSQL against answered requests, and duplicates."""
    served, writes = served_predicts(server)
    drained = wait_drained(server, time.time())
    rows, distinct = query_one(server.database, "SELECT count(*), count(DISTINCT request_id) FROM prediction_log")
    return {"rows": rows, "duplicates": rows - distinct, "answered": server.answered,
            "inflight": server.connections, "served": served, "writes": writes,
            "backlog": journal_backlog(server), "drained": drained is not None}


# --- report --------------------------------------------------------------------------------


def verdict(text: str, passed: bool) -> bool:
    print(f"target  {text:<72} {'PASS' if passed else 'FAIL'}")
    return passed


def print_report(results: list[Result], inproc: dict, servers: list[Server], checks: dict[str, dict],
                 lags: dict[str, tuple], difference: float, workers: int) -> bool:
    by_key = {(r.scenario.name, r.server): r for r in results}
    header = (f"{'scenario':<18}{'server':<10}{'req/s':>10}{'rows/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'errors':>8}{'/base':>7}{'backlog':>9}{'drain s':>9}{'cpu srv':>9}{'wrk':>6}{'other':>7}")
    print()
    print(f"wrk -t{WRK_THREADS}, {workers} sync gunicorn workers per server; ours = default log durability, strict = "
          "fsync before each answer; backlog = journal rows not yet in PostgreSQL when wrk stopped, drain = "
          "seconds until 0; cpu columns: % of one core during the run "
          f"({os.cpu_count()} cores = {100 * (os.cpu_count() or 1)}); 'other' is the rest of the machine (noise)")
    print(header)
    print("-" * len(header))
    for result in results:
        ratio = ""
        base = by_key.get((result.scenario.name, "baseline"))
        if result.server != "baseline" and base and base.rps:
            ratio = f"{result.rps / base.rps:.2f}"
        backlog = "" if result.backlog_at_end is None else str(result.backlog_at_end)
        drain = "" if result.drain_seconds is None else f"{result.drain_seconds:.2f}"
        rows_per_s = result.rps * result.scenario.rows
        print(f"{result.scenario.name:<18}{result.server:<10}{result.rps:>10.1f}{rows_per_s:>12.0f}"
              f"{result.p50_ms:>9.2f}{result.p99_ms:>9.2f}{result.errors:>8}{ratio:>7}{backlog:>9}{drain:>9}"
              f"{result.cpu_server:>9.0f}{result.cpu_wrk:>6.0f}{result.cpu_other:>7.0f}")
    print()

    for label in ("ours", "strict"):
        if label in lags:
            count, p50, p99, worst = lags[label]
            print(f"lag     {label}: single c=8, {count} rows, answer -> shipped into PostgreSQL: p50 "
                  f"{1000 * (p50 or 0):.0f} ms, p99 {1000 * (p99 or 0):.0f} ms, max {1000 * (worst or 0):.0f} ms")
    print()
    for (scenario, label), result in sorted(by_key.items()):
        base = by_key.get((scenario, "baseline"))
        if label == "baseline" or base is None:
            continue
        if scenario == "single c=8":
            verdict(f"{scenario}, {label}: req/s {result.rps / base.rps:.2f}x the baseline >= "
                    f"{TARGET_RATIO[label]:.1f}x", result.rps / base.rps >= TARGET_RATIO[label])
            verdict(f"{scenario}, {label}: p99 {result.p99_ms:.2f} ms <= {TARGET_P99_MS:.0f} ms",
                    result.p99_ms <= TARGET_P99_MS)
        elif scenario.startswith("batch") and label == "ours":
            verdict(f"{scenario}, {label}: rows/s {result.rps / base.rps:.2f}x the baseline >= "
                    f"{TARGET_BATCH_RATIO:.1f}x", result.rps / base.rps >= TARGET_BATCH_RATIO)
        if result.drain_seconds is not None and scenario == "single c=8":
            verdict(f"{scenario}, {label}: backlog {result.backlog_at_end} rows drained in "
                    f"{result.drain_seconds:.2f} s <= {TARGET_DRAIN_S:.0f} s", result.drain_seconds <= TARGET_DRAIN_S)
    for label, (_, _, p99, _) in lags.items():
        verdict(f"single c=8, {label}: shipping lag p99 {p99 or 0:.3f} s <= {TARGET_LAG_P99_S:.0f} s",
                (p99 or 0) <= TARGET_LAG_P99_S)
    big = inproc.get(1000)
    if big:
        ratio = big["request"] / big["sklearn"]
        verdict(f"1000 rows in-process: a whole request {big['request']:.2f} ms / sklearn predict "
                f"{big['sklearn']:.2f} ms = {ratio:.2f} <= {TARGET_INPROCESS:.0f}", ratio <= TARGET_INPROCESS)
    print()
    for n in sorted(key for key in inproc if isinstance(key, int)):
        times = inproc[n]
        print(f"inproc  {n} rows, median of {inproc['repeat']} calls: whole request {times['request']:.3f} ms, "
              f"registry predict {times['registry']:.3f} ms, sklearn model.predict {times['sklearn']:.3f} ms "
              f"(exact KNN path: {'on' if inproc['fast_path'] else 'off'})")
    print()
    for server in servers:
        parts = [f"{name} {kib / 1024:.1f} MiB" for name, kib in server.rss.items()]
        print(f"rss     {server.label:<9} " + ", ".join(parts))
    worst_other = max(result.cpu_other for result in results)
    if worst_other > 15:
        print(f"noise   other processes used up to {worst_other:.0f}% of a core during a run: the figures are "
              "disturbed; run again on a quiet machine")
    print(f"answers same 100 rows to the baseline and ours before the load: largest prediction difference "
          f"{difference:g}")
    print("startup " + ", ".join(f"{server.label} {server.ready_seconds:.2f} s" for server in servers)
          + " from spawning gunicorn to GET /ready 200")
    print()
    ok = True
    for label, check in checks.items():
        extra = check["rows"] - check["answered"]
        passed = (0 <= extra <= check["inflight"] and check["duplicates"] == 0 and check["rows"] == check["served"]
                  and check["backlog"] == 0 and check["drained"])
        writes = ", ".join(f"{key} {value}" for key, value in sorted(check["writes"].items())) or "none"
        print(f"log     {label}: after the shipper drained (backlog {check['backlog']}), prediction_log rows "
              f"{check['rows']}, duplicates {check['duplicates']}; wrk counted {check['answered']} answers "
              f"(rows - answers = {extra}, allowed 0..{check['inflight']}: requests in flight when wrk stopped); "
              f"the service's own count of POST /predict {check['served']}; log writes: {writes}   "
              f"{'PASS' if passed else 'FAIL'}")
        ok &= passed
    return ok


# --- main ----------------------------------------------------------------------------------


def start_ours(label: str, env: dict[str, str], work: Path, durability: str) -> Server:
    database = f"bench_{os.getpid()}_{label}"
    create_database(database)
    journal, metrics_dir = work / f"journal-{label}", work / f"prometheus-{label}"
    metrics_dir.mkdir()
    server_env = dict(env, DATABASE_URL=database_url(database), LOG_JOURNAL_DIR=str(journal),
                      LOG_DURABILITY=durability, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    upgrade = subprocess.run([str(BIN / "flask"), "--app", "flask_app.wsgi", "db", "upgrade"],
                             cwd=ROOT, env=server_env, capture_output=True, text=True, check=False)
    if upgrade.returncode != 0:
        drop_database(database)
        raise RuntimeError(f"flask db upgrade failed:\n{upgrade.stdout}{upgrade.stderr}")
    port = free_port()
    say(f"starting ours ({durability} durability) on 127.0.0.1:{port}")
    server = spawn(label, [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "flask_app.wsgi:app"],
                   dict(server_env, GUNICORN_BIND=f"127.0.0.1:{port}"), ROOT, port, work)
    server.database, server.journal = database, journal
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run (default 15)")
    parser.add_argument("--quick", action="store_true", help="5 s runs (overrides --duration)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up load per server (default 2)")
    parser.add_argument("--repeat", type=int, default=50, help="in-process calls timed per size (default 50)")
    parser.add_argument("--no-floor", action="store_true", help="skip the baseline's constant-answer run")
    parser.add_argument("--no-strict", action="store_true", help="skip the strict-durability server")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help=f"sync gunicorn workers of every server, the same on both sides (default {WORKERS})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, bodies, scripts)")
    parser.add_argument("--only", metavar="NAME", action="append",
                        help="run only this scenario (repeatable), e.g. --only 'single c=8'")
    args = parser.parse_args(argv)
    duration = 5 if args.quick else args.duration
    warmup = min(args.warmup, 1) if args.quick else args.warmup
    unknown = set(args.only or []) - {scenario.name for scenario in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}; the scenarios are "
                     f"{', '.join(scenario.name for scenario in SCENARIOS)}")

    wrk = ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    servers: list[Server] = []
    try:
        model_dir = work / "models"
        say(f"training {MODEL_NAME} into {model_dir}")
        bundle_dir = train(model_dir)
        features = feature_names(bundle_dir)
        say(f"the model takes {len(features)} features: {', '.join(features)}")
        sizes = sorted({s.rows for s in [*SCENARIOS, FLOOR, WARMUP]})
        rows = {n: dataset_rows(features, n) for n in sizes}
        for n, matrix in rows.items():
            # Arrays in the model's feature order: the body both servers accept.
            (work / f"body-{n}.json").write_text(json.dumps({"instances": matrix}))

        say(f"timing requests in-process ({args.repeat} calls per size)")
        inproc = in_process_times(model_dir, bundle_dir, {1: rows[1], 100: rows[100], 1000: rows[1000]},
                                  args.repeat, work)
        inproc["repeat"] = args.repeat

        env = {key: value for key, value in os.environ.items() if key != "CONFIG_FILE"}
        ours_env = dict(env, MODEL_DIR=str(model_dir), MODEL_NAME=MODEL_NAME, GUNICORN_WORKERS=str(args.workers),
                        ADMIN_TOKEN="bench-admin-token")  # noqa: S106 - a throwaway service on loopback
        port = free_port()
        say(f"starting the baseline on 127.0.0.1:{port}")
        baseline = spawn(
            "baseline",
            [str(BIN / "gunicorn"), "-w", str(args.workers), "-k", "sync", "-b", f"127.0.0.1:{port}",
             "--chdir", str(BENCH), "baseline_app:app"],
            dict(env, BASELINE_MODEL=str(bundle_dir / "model.pkl")), BENCH, port, work,
        )
        servers.append(baseline)
        wait_ready(baseline)
        modes = [("ours", "default")] + ([] if args.no_strict else [("strict", "strict")])
        for label, durability in modes:
            server = start_ours(label, ours_env, work, durability)
            servers.append(server)
            wait_ready(server)
            say(f"{label} ready in {server.ready_seconds:.2f} s")
        ours = servers[1]
        difference = same_answers(baseline, ours, (work / "body-100.json").read_bytes())
        say(f"the baseline and ours answer the same 100 rows alike: largest difference {difference:g}")
        ours.answered += 1  # that request is logged too

        results: list[Result] = []
        for server in servers:
            say(f"warm-up {server.label}: {warmup:g} s")
            run_wrk(wrk, server, WARMUP, warmup, work)
        chosen = [scenario for scenario in SCENARIOS if not args.only or scenario.name in args.only]
        plan = [(scenario, server) for scenario in chosen for server in servers]
        if not args.no_floor:
            plan.append((FLOOR, baseline))
        for index, (scenario, server) in enumerate(plan, start=1):
            say(f"[{index}/{len(plan)}] {scenario.name} on {server.label} ({duration:g} s)")
            time.sleep(1)  # let the previous run's queue drain
            result = run_wrk(wrk, server, scenario, duration, work)
            results.append(result)
            say(f"    {result.rps:.1f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                f"errors {result.errors}, backlog at the end {result.backlog_at_end}, drained in "
                f"{result.drain_seconds if result.drain_seconds is None else round(result.drain_seconds, 2)} s")
        for server in servers:
            record_rss(server)

        time.sleep(1)
        lags = {server.label: shipping_lag(server, result) for server in servers[1:] for result in results
                if result.server == server.label and result.scenario.name == "single c=8"}
        checks = {server.label: log_check(server) for server in servers[1:]}
        passed = print_report(results, inproc, servers, checks, lags, difference, args.workers)
        if args.keep:
            print(f"\nlogs, bodies and wrk scripts kept in {work}")
        return 0 if passed else 1
    finally:
        for server in reversed(servers):
            stop(server)
            if server.database:
                drop_database(server.database)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
