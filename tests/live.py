"""A real service for tests that drive it from outside: gunicorn, PostgreSQL, both bundled models.

``live_service`` builds a model store (the signed Boston model, a second
Boston version that is not active, the heart classifier), a fresh migrated
database, and starts gunicorn on a free port; it stops and drops everything
when the block ends. The browser and V2 client tests share it, one server per
test module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conftest import ADMIN, ADMIN_TOKEN, create_database, drop_database, migrate_to_head, train_into

ROOT = Path(__file__).resolve().parent.parent
N_WORKERS = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveService:
    url: str
    store: Path
    database_url: str
    second_version: str
    log_path: Path

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def call(self, method: str, path: str, body: Any = None, headers: dict | None = None,
             content_type: str = "application/json") -> tuple[int, Any, dict]:
        """One request; returns (status, parsed JSON or text, headers)."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": content_type, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                status, raw, response_headers = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, raw, response_headers = error.code, error.read(), dict(error.headers)
        try:
            return status, json.loads(raw), response_headers
        except ValueError:
            return status, raw.decode("utf-8", "replace"), response_headers

    def wait_for_log(self, n_rows: int, timeout: float = 15) -> int:
        """Wait until the log holds at least ``n_rows`` rows (rows may reach the table a moment late)."""
        deadline = time.monotonic() + timeout
        while True:
            total = self.call("GET", "/predictions?limit=1", headers=ADMIN)[1]["total"]
            if total >= n_rows or time.monotonic() > deadline:
                return total
            time.sleep(0.1)


@contextmanager
def live_service(workdir: Path, signed_store: Path, heart_bundle: Path, pg_server: str,
                 signing_key: Path) -> Iterator[LiveService]:
    store = workdir / "models"
    shutil.copytree(signed_store, store)
    shutil.copytree(heart_bundle.parent, store / "heart-knn")
    second = train_into(store, "--max-neighbors", "1", signing_key=signing_key).name
    database_url = create_database(pg_server)
    migrate_to_head(database_url)
    metrics_dir = workdir / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
               DATABASE_URL=database_url, MODEL_DIR=str(store), LOG_SPOOL_DIR=str(workdir / "spool"),
               ADMIN_TOKEN=ADMIN_TOKEN, SPOOL_REPLAY_SECONDS="0.5", LOG_LEVEL="WARNING")
    log_path = workdir / "gunicorn.log"
    gunicorn = Path(sys.executable).parent / "gunicorn"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [str(gunicorn), "--workers", str(N_WORKERS), "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
             "flask_app.wsgi:app"], cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
        service = LiveService(f"http://127.0.0.1:{port}", store, database_url, second, log_path)
        try:
            _wait_until_ready(service, process)
            yield service
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            drop_database(database_url)


def _wait_until_ready(service: LiveService, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if service.call("GET", "/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not become ready:\n" + service.log_path.read_text()[-3000:])
