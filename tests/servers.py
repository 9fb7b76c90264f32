"""A real gunicorn running the service, for tests that need real worker processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import sqlalchemy as sa

from .conftest import BOSTON_ROW

ROOT = Path(__file__).resolve().parent.parent
N_WORKERS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, body: dict | None = None, headers: dict | None = None, timeout: float = 10,
         method: str | None = None) -> tuple[int, dict]:
    status, answer, _ = exchange(url, body, headers, timeout, method)
    return status, answer


def exchange(url: str, body: dict | None = None, headers: dict | None = None, timeout: float = 10,
             method: str | None = None) -> tuple[int, dict, dict[str, str]]:
    """(status, JSON body, headers) of one request; POST by default when there is a body or headers."""
    data = json.dumps(body).encode() if body is not None else None
    method = method or ("POST" if body is not None or headers else "GET")
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})},
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), dict(error.headers)


class Server:
    def __init__(self, tmp_path: Path, settings: dict, workers: int = N_WORKERS):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        metrics_dir = tmp_path / "prometheus"
        metrics_dir.mkdir()
        env = dict(os.environ, PYTHONPATH=str(ROOT), PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
                   **{key: str(value) for key, value in settings.items()})
        env["LOG_SHIP_INTERVAL"] = "0.25"
        gunicorn = Path(sys.executable).parent / "gunicorn"
        self.log = tmp_path / "gunicorn.log"
        self.log_file = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(gunicorn), "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}",
             "--graceful-timeout", "15", "--log-level", "warning", "flask_app.wsgi:app"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=self.log_file,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if call(f"{self.url}/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("gunicorn did not become ready:\n" + self.log.read_text()[-3000:])

    def predict(self) -> tuple[int, dict]:
        return call(f"{self.url}/predict", {"instances": [BOSTON_ROW]})

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.log_file.close()
        return code


def logged_ids(database_url: str) -> list[str]:
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        ids = list(conn.execute(sa.text("SELECT request_id FROM prediction_log")).scalars())
    engine.dispose()
    return ids


