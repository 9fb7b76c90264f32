"""Shared fixtures: trained bundles, keys, and (in later modules) the app and the database."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ml_models import bundle, learn

DATA_DIR = Path(learn.__file__).parent / "data"


def train_into(model_dir: Path, *extra: str, signing_key: Path | None = None) -> Path:
    """Train with learn.main in-process; returns the new version directory."""
    argv = ["--model-dir", str(model_dir), "--quiet", *extra]
    if signing_key is not None:
        argv += ["--signing-key", str(signing_key)]
    before = set(model_dir.glob("*/*")) if model_dir.exists() else set()
    assert learn.main(argv) == 0
    (new,) = set(model_dir.glob("*/*")) - before - {p for p in model_dir.glob("*/ACTIVE")}
    return new


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> dict[str, Path]:
    """Two Ed25519 key pairs: the trusted one and another."""
    root = tmp_path_factory.mktemp("keys")
    pairs = {}
    for label in ("trusted", "other"):
        private, public = root / f"{label}.pem", root / f"{label}.pub.pem"
        bundle.generate_key_pair(private, public)
        pairs[label] = private
        pairs[f"{label}_public"] = public
    return pairs


@pytest.fixture(scope="session")
def signed_store(tmp_path_factory, keys) -> Path:
    """A model store with one signed Boston bundle (trained once per session; copy before changing)."""
    store = tmp_path_factory.mktemp("signed-store")
    train_into(store, "--max-neighbors", "8", signing_key=keys["trusted"])
    return store


@pytest.fixture
def store(tmp_path, signed_store) -> Path:
    """A private copy of the signed store."""
    copy = tmp_path / "models"
    shutil.copytree(signed_store, copy)
    return copy


@pytest.fixture
def both(store, heart_bundle) -> Path:
    """The signed Boston store with the heart model added."""
    shutil.copytree(heart_bundle.parent, store / "heart-knn")
    return store


@pytest.fixture
def bundle_dir(store) -> Path:
    name = "boston-knn"
    return store / name / bundle.read_active(store, name)


# --- the service and its database ------------------------------------------------

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
_skipped_postgres: list[str] = []
_skipped_browser: list[str] = []


def _admin_engine():
    return sa.create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL server's URL; in CI an unreachable server fails the run instead of skipping."""
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {TEST_DATABASE_URL} is not answering: {exc}")
        pytest.skip(f"PostgreSQL at {TEST_DATABASE_URL} is not answering")
    finally:
        engine.dispose()
    return TEST_DATABASE_URL


def create_database(server_url: str) -> str:
    """A new empty database on the server; returns its URL."""
    name = f"svc_test_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = sa.make_url(url).database
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def migrate_to_head(url: str) -> None:
    """Apply the migrations the way the product does (flask db upgrade), in-process."""
    migrate_to(url, "head")


def migrate_to(url: str, revision: str, downgrade: bool = False) -> None:
    """flask db upgrade (or downgrade) to ``revision``, in-process."""
    import flask_migrate

    from flask_app import MIGRATIONS_DIR, create_app

    journal = tempfile.mkdtemp(prefix="journal-")
    app = create_app({"DATABASE_URL": url, "MODEL_DIR": "/nonexistent", "LOG_SHIP_INTERVAL": 0,
                      "LOG_JOURNAL_DIR": journal})
    try:
        with app.app_context():
            step = flask_migrate.downgrade if downgrade else flask_migrate.upgrade
            step(directory=str(MIGRATIONS_DIR), revision=revision)
            from flask_app.extensions import db

            db.engine.dispose()
        app.extensions["prediction_log"].stop()
    finally:
        shutil.rmtree(journal, ignore_errors=True)


def head_revision() -> str:
    from alembic.script import ScriptDirectory
    from flask_migrate import Config

    from flask_app import MIGRATIONS_DIR

    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


@pytest.fixture(scope="session")
def pg_database(pg_server) -> Iterator[str]:
    """One migrated database for the session; tests empty the table through ``db``."""
    url = create_database(pg_server)
    migrate_to_head(url)
    yield url
    drop_database(url)


@pytest.fixture
def settings(tmp_path, store, pg_database) -> dict[str, Any]:
    """Settings for an app on the signed store and the session's PostgreSQL database."""
    return {
        "DATABASE_URL": pg_database,
        "MODEL_DIR": str(store),
        "LOG_JOURNAL_DIR": str(tmp_path / "journal"),
        "LOG_SHIP_INTERVAL": 0,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "MAX_BATCH_ROWS": 1000,
        "DRIFT_MIN_ROWS": 30,
    }


@pytest.fixture
def make_app():
    """create_app for a test: its journal is sealed and shipped and its connections closed when the test ends."""
    from flask_app import create_app
    from flask_app.extensions import db as flask_db

    made = []

    def make(config):
        made.append(create_app(config))
        return made[-1]

    yield make
    for application in made:
        application.extensions["prediction_log"].stop()
        with application.app_context():
            flask_db.session.remove()
            flask_db.engine.dispose()


@pytest.fixture
def app(settings, make_app):
    from flask_app.extensions import db as flask_db

    application = make_app(settings)
    with application.app_context():
        flask_db.session.execute(sa.text("TRUNCATE prediction_log, prediction_log_journal RESTART IDENTITY"))
        flask_db.session.commit()
    return application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def log_rows(app):
    """Read the prediction log as dicts, oldest first (after shipping what the journal holds)."""
    from flask_app.extensions import db as flask_db
    from flask_app.log import PredictionLog

    def read() -> list[dict[str, Any]]:
        report = app.extensions["prediction_log"].flush()
        assert report.error is None, report.error
        with app.app_context():
            rows = flask_db.session.scalars(sa.select(PredictionLog).order_by(PredictionLog.id)).all()
            result = [{c.name: getattr(row, c.name) for c in PredictionLog.__table__.columns} for row in rows]
            flask_db.session.remove()
            return result

    return read


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (a full disk on demand); needs root, as CI has."""
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          check=False)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for a disk-full test (run as root): {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


ADMIN_TOKEN = "test-admin-token-5b7f"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

BOSTON_ROW = {"CRIM": 0.1, "ZN": 0.0, "INDUS": 7.0, "CHAS": 0, "NOX": 0.5, "RM": 6.2, "AGE": 60.0,
              "DIS": 4.0, "RAD": 4, "TAX": 300.0, "PTRATIO": 17.0, "LSTAT": 10.0}
BOSTON_FEATURES = list(BOSTON_ROW)


def pytest_runtest_logreport(report):
    if report.skipped and "postgres" in report.keywords:
        _skipped_postgres.append(report.nodeid)
    if report.skipped and "browser" in report.keywords:
        _skipped_browser.append(report.nodeid)


def pytest_collection_modifyitems(items):
    for item in items:
        if "pg_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI") and _skipped_postgres:
        print(f"\nCI: {len(_skipped_postgres)} PostgreSQL tests were skipped; failing the run.")
        session.exitstatus = 1
    if os.environ.get("CI") and _skipped_browser:
        print(f"\nCI: {len(_skipped_browser)} browser tests were skipped; failing the run.")
        session.exitstatus = 1


@pytest.fixture(scope="session")
def heart_bundle(tmp_path_factory) -> Path:
    """A heart-disease classifier bundle (unsigned, k nearest neighbours only), trained once per session."""
    store = tmp_path_factory.mktemp("heart-store")
    return train_into(store, "--data", str(DATA_DIR / "heart.csv"), "--target", "target", "--name", "heart-knn",
                      "--max-neighbors", "12", "--families", "knn")


@pytest.fixture(scope="session")
def screening_bundle(tmp_path_factory) -> Path:
    """A heart classifier whose threshold (0.3 for class 1) is far from 0.5, trained once per session."""
    store = tmp_path_factory.mktemp("screening-store")
    return train_into(store, "--data", str(DATA_DIR / "heart.csv"), "--target", "target", "--name", "heart-screening",
                      "--max-neighbors", "12", "--families", "knn", "--repeats", "2", "--threshold", "fixed:0.3")


@pytest.fixture(scope="session")
def radius_bundle(tmp_path_factory) -> Path:
    """A Boston regressor from the radius family only (served by the pipeline's own predict)."""
    store = tmp_path_factory.mktemp("radius-store")
    return train_into(store, "--families", "radius", "--name", "boston-radius", "--repeats", "2")


@pytest.fixture(scope="module")
def service(tmp_path_factory, signed_store, heart_bundle, pg_server, keys):
    """A gunicorn service on PostgreSQL for the module (both models, a second Boston version): tests/live.py."""
    from .live import live_service

    with live_service(tmp_path_factory.mktemp("live"), signed_store, heart_bundle, pg_server,
                      keys["trusted"]) as running:
        yield running
