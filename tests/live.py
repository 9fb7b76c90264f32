"""A real service for tests that drive it from outside: gunicorn, PostgreSQL, both bundled models.

``live_service`` builds a model store (the signed Boston model, a second
Boston version that is not active, the heart classifier) and a fresh
migrated database, and starts gunicorn (``servers.Server``) on them; it
stops and drops everything when the block ends. The browser and V2 client
tests use it, one server per test module.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conftest import ADMIN, ADMIN_TOKEN, create_database, drop_database, migrate_to_head, train_into
from .servers import Server

N_WORKERS = 2


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
    try:
        migrate_to_head(database_url)
        server = Server(workdir, {"DATABASE_URL": database_url, "MODEL_DIR": store, "ADMIN_TOKEN": ADMIN_TOKEN,
                                  "LOG_JOURNAL_DIR": workdir / "journal", "LOG_LEVEL": "WARNING"},
                        workers=N_WORKERS)
        try:
            yield LiveService(server.url, store, database_url, second, server.log)
        finally:
            server.stop()
    finally:
        drop_database(database_url)
