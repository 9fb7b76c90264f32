"""Flask CLI commands of the service: ``flask --app flask_app.wsgi <command>``."""

from __future__ import annotations

import datetime as dt

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from .extensions import db
from .log import partitions


def register_commands(app: Flask) -> None:
    app.cli.add_command(log_partitions)


@click.command("log-partitions")
@with_appcontext
def log_partitions() -> None:
    """Create the prediction log's monthly partitions ahead, empty its default partition, drop months
    past LOG_RETENTION_DAYS (PostgreSQL; on SQLite there is nothing to do)."""
    settings = current_app.config["SETTINGS"]
    if db.engine.dialect.name != "postgresql":
        click.echo(f"the prediction log is on {db.engine.dialect.name}, which has no partitions: nothing to do")
        return
    try:
        report = partitions.maintain(db.engine, dt.datetime.now(dt.UTC), settings.LOG_PARTITION_MONTHS_AHEAD,
                                     settings.LOG_RETENTION_DAYS)
    except partitions.NotPartitioned as exc:
        raise click.ClickException(str(exc)) from None
    retention = f"{settings.LOG_RETENTION_DAYS} days" if settings.LOG_RETENTION_DAYS else "forever"
    click.echo(f"created {len(report.created)} partition(s){_names(report.created)}, "
               f"moved {report.moved_rows} row(s) out of the default partition")
    click.echo(f"retention {retention}: dropped {len(report.dropped)} partition(s){_names(report.dropped)}, "
               f"deleted {report.deleted_rows} old row(s) from the default partition")
    existing, _ = _listing()
    click.echo(f"partitions: {existing[0].name} .. {existing[-1].name} ({len(existing)}) and the default"
               if existing else "partitions: only the default")


def _listing():
    with db.engine.begin() as conn:
        return partitions.partitions(conn)


def _names(names: list[str]) -> str:
    return f" ({', '.join(names)})" if names else ""
