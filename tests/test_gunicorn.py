"""The service under real gunicorn workers: hot swap reaches every worker, SIGTERM loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ml_models import bundle

from .conftest import ADMIN, BOSTON_ROW, train_into
from .servers import ROOT, Server, call, free_port, logged_ids
from .tampering import TAMPERS, flip_byte_keep_hashes, signed_copy

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path, settings, app):  # app: starts each test with an empty log table
    running = Server(tmp_path, settings)
    yield running
    running.stop()


def versions_seen(server: Server, n: int) -> set[str]:
    seen = set()
    for _ in range(n):
        status, body = server.predict()
        assert status == 200, body
        seen.add(body["model"]["version"])
    return seen


def test_activation_reaches_every_worker(server, store, keys):
    (old,) = versions_seen(server, 60)  # every worker has loaded and served the old version
    new = train_into(store, "--max-neighbors", "2", signing_key=keys["trusted"]).name
    status, body = call(f"{server.url}/models/{new}/activate", headers=ADMIN)
    assert status == 200, body
    activated_at = time.monotonic()
    answers = [server.predict() for _ in range(200)]
    assert {body["model"]["version"] for _, body in answers} == {new}
    assert time.monotonic() - activated_at < 10
    # learn.py --activate on the same store has the same effect on the running workers.
    newer = train_into(store, "--max-neighbors", "3", "--activate").name
    assert versions_seen(server, 200) == {newer} != {old}


def test_metrics_add_up_across_workers(server):
    for _ in range(30):
        assert server.predict()[0] == 200
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    line = next(line for line in text.splitlines()
                if line.startswith('http_requests_total{endpoint="/predict",method="POST",status="200"}'))
    assert float(line.rsplit(" ", 1)[1]) == 30


def test_sigterm_finishes_in_flight_requests_and_loses_no_log_row(server, settings):
    answered: list[str] = []
    refused = 0
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        nonlocal refused
        while not stop.is_set():
            try:
                status, body = server.predict()
            except OSError:
                with lock:
                    refused += 1
                if server.process.poll() is not None:
                    return
                time.sleep(0.01)
                continue
            assert status == 200
            with lock:
                answered.append(body["request_id"])

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answered) > 50
    assert sorted(logged_ids(settings["DATABASE_URL"])) == sorted(answered)


@pytest.fixture
def guarded_server(tmp_path, settings, keys, app):
    """A server that only accepts bundles signed by the trusted key."""
    running = Server(tmp_path, dict(settings, MODEL_VERIFY_KEY=keys["trusted_public"]))
    yield running
    running.stop()


def test_tampered_bundles_are_refused_by_the_running_service(guarded_server, store, keys, tmp_path):
    (old,) = versions_seen(guarded_server, 10)
    active_dir = store / "boston-knn" / old
    for index, (case, (tamper, verdict)) in enumerate(TAMPERS.items()):
        path = signed_copy(active_dir, f"29990101T0000{index:02d}Z", keys["trusted"])
        tamper(path, keys)
        status, problem = call(f"{guarded_server.url}/models/{path.name}/activate", headers=ADMIN)
        assert status == 409, (case, problem)
        assert verdict.value in problem["detail"], (case, problem)
        assert versions_seen(guarded_server, 5) == {old}, case
        audit = guarded_server.log.read_text()
        assert f"model refused name=boston-knn version={path.name} verdict={verdict.value}" in audit, case
    assert not (tmp_path / "pwned").exists() and not (store.parent / "pwned").exists()


def test_a_tampered_active_bundle_is_refused_at_start_up(tmp_path, settings, keys, store, app):
    active = store / "boston-knn" / bundle.read_active(store, "boston-knn")
    flip_byte_keep_hashes(active, keys)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{key: str(value) for key, value in settings.items()},
               MODEL_VERIFY_KEY=str(keys["trusted_public"]))
    gunicorn = Path(sys.executable).parent / "gunicorn"
    with open(tmp_path / "start.log", "wb") as log_file:
        process = subprocess.Popen([str(gunicorn), "--workers", "1", "--bind", f"127.0.0.1:{port}",
                                    "flask_app.wsgi:app"], cwd=tmp_path, env=env, stderr=log_file)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    status, body = call(f"http://127.0.0.1:{port}/ready", timeout=2)
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            assert status == 503 and "bad_signature" in " ".join(body["reasons"])
            status, problem = call(f"http://127.0.0.1:{port}/predict", {"instances": [BOSTON_ROW]})
            assert status == 503 and problem["title"] == "Model unavailable"
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    assert "model refused name=boston-knn" in (tmp_path / "start.log").read_text()
