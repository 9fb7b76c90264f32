"""The prediction service: a Flask-RESTful API over a verified model store.

``create_app`` reads like a table of contents: settings, logging, extensions,
the model registry, the prediction log, the request cycle, resources, pages
for people (API docs, the console), error handlers, CLI commands, the proxies
in front.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import metrics
from .apidocs import apidocs
from .commands import register_commands
from .config import Settings, load_settings
from .console import register_console
from .errors import register_error_handlers
from .extensions import db, migrate
from .log import Recorder, safe_json_dumps
from .logs import configure_logging
from .registry import ModelRegistry
from .request_cycle import register_request_cycle
from .resources import register_resources

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    settings = load_settings(config)
    app = Flask(__name__)
    configure(app, settings)
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    register_extensions(app, settings)
    register_registry(app, settings)
    register_prediction_log(app, settings)
    register_request_cycle(app)
    register_resources(app)
    register_pages(app)
    register_error_handlers(app)
    register_commands(app)
    trust_proxies(app, settings)
    return app


def configure(app: Flask, settings: Settings) -> None:
    app.config.update(
        SETTINGS=settings,
        SQLALCHEMY_DATABASE_URI=settings.database_uri,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings.database_uri, settings.LOG_DB_TIMEOUT_SECONDS),
        MAX_CONTENT_LENGTH=settings.MAX_CONTENT_LENGTH,
        # A 5 MB form field cap is irrelevant here; JSON bodies are bounded by MAX_CONTENT_LENGTH.
        ERROR_404_HELP=False,
    )


def engine_options(uri: str, timeout_seconds: float) -> dict[str, Any]:
    """Reads of the log (and SQLite's shipping) fail fast instead of waiting on a locked or absent database."""
    options: dict[str, Any] = {"json_serializer": safe_json_dumps}
    if uri.startswith("postgresql"):
        timeout_ms = int(timeout_seconds * 1000)
        options["connect_args"] = {"connect_timeout": 2, "options": f"-c statement_timeout={timeout_ms} "
                                                                    f"-c lock_timeout={min(timeout_ms, 2000)}"}
        options["pool_size"] = 4
        options["pool_pre_ping"] = True
    else:
        options["connect_args"] = {"timeout": timeout_seconds}
    return options


def register_extensions(app: Flask, settings: Settings) -> None:
    if settings.database_uri.startswith("sqlite:///"):
        Path(settings.database_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))


def register_pages(app: Flask) -> None:
    app.register_blueprint(apidocs)
    register_console(app)


def register_registry(app: Flask, settings: Settings) -> None:
    registry = ModelRegistry(
        settings.MODEL_DIR,
        settings.MODEL_NAME,
        settings.MODEL_VERIFY_KEY,
        settings.MAX_BATCH_ROWS,
        settings.OOD_QUANTILE,
        on_load_failure=lambda name, verdict: metrics.MODEL_LOAD_FAILURES.labels(name, verdict).inc(),
    )
    registry.load_all()
    app.extensions["model_registry"] = registry


def register_prediction_log(app: Flask, settings: Settings) -> None:
    with app.app_context():
        recorder = Recorder(
            db.engine,
            settings.LOG_JOURNAL_DIR,
            durability=settings.LOG_DURABILITY,
            ship_interval=settings.LOG_SHIP_INTERVAL,
            segment_bytes=settings.LOG_JOURNAL_SEGMENT_BYTES,
            max_bytes=settings.LOG_JOURNAL_MAX_BYTES,
            batch_bytes=settings.LOG_SHIP_BATCH_BYTES,
            timeout_seconds=settings.LOG_DB_TIMEOUT_SECONDS,
            on_pass=metrics.record_shipping,
        )
    recorder.start()
    app.extensions["prediction_log"] = recorder


def trust_proxies(app: Flask, settings: Settings) -> None:
    """Behind nginx or an ingress, the client's address is the one the nearest proxy saw."""
    if settings.TRUSTED_PROXY_HOPS:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.TRUSTED_PROXY_HOPS, x_proto=0)
