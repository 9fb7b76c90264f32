"""The prediction service: a Flask-RESTful API over a verified model store.

``create_app`` reads like a table of contents: settings, logging, extensions,
the model registry, the prediction log, the request cycle, resources, error
handlers, CLI commands, the proxies in front.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import metrics
from .commands import register_commands
from .config import Settings, load_settings
from .errors import register_error_handlers
from .extensions import db, migrate
from .log import PredictionLogWriter, safe_json_dumps
from .registry import ModelRegistry
from .request_cycle import register_request_cycle
from .resources import register_resources

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    settings = load_settings(config)
    app = Flask(__name__)
    configure(app, settings)
    configure_logging(settings)
    register_extensions(app, settings)
    register_registry(app, settings)
    register_prediction_log(app, settings)
    register_request_cycle(app)
    register_resources(app)
    register_error_handlers(app)
    register_commands(app)
    trust_proxies(app, settings)
    return app


def configure(app: Flask, settings: Settings) -> None:
    app.config.update(
        SETTINGS=settings,
        SQLALCHEMY_DATABASE_URI=settings.database_uri,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings.database_uri),
        MAX_CONTENT_LENGTH=settings.MAX_CONTENT_LENGTH,
        # A 5 MB form field cap is irrelevant here; JSON bodies are bounded by MAX_CONTENT_LENGTH.
        ERROR_404_HELP=False,
    )


def engine_options(uri: str) -> dict[str, Any]:
    options: dict[str, Any] = {"json_serializer": safe_json_dumps}
    if uri.startswith("postgresql"):
        # Fail fast when the database is away: the row goes to the spool instead of the request waiting.
        options["connect_args"] = {"connect_timeout": 2}
        options["pool_size"] = 4
    else:
        options["connect_args"] = {"timeout": 15}
    return options


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.LOG_LEVEL.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("flask_app").setLevel(settings.LOG_LEVEL.upper())


def register_extensions(app: Flask, settings: Settings) -> None:
    if settings.database_uri.startswith("sqlite:///"):
        Path(settings.database_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))


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
        writer = PredictionLogWriter(db.engine, settings.LOG_SPOOL_DIR)
    writer.start(settings.SPOOL_REPLAY_SECONDS)
    atexit.register(writer.stop)
    app.extensions["prediction_log"] = writer


def trust_proxies(app: Flask, settings: Settings) -> None:
    """Behind nginx or an ingress, the client's address is the one the nearest proxy saw."""
    if settings.TRUSTED_PROXY_HOPS:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.TRUSTED_PROXY_HOPS, x_proto=0)
