"""Alembic environment: migrations run against the app's own engine and metadata."""

import logging

import sqlalchemy as sa
from alembic import context
from flask import current_app

config = context.config
logger = logging.getLogger("alembic.env")
# Several replicas (or a migration job and a replica) may start `flask db upgrade` at once: on
# PostgreSQL the first takes this advisory lock for its transaction, the others wait for it and then
# find nothing left to do.
MIGRATION_LOCK_KEY = 0x736B6C6D  # any constant shared by every run
database = current_app.extensions["migrate"].db
config.set_main_option("sqlalchemy.url", database.engine.url.render_as_string(hide_password=False).replace("%", "%%"))


def run_migrations_offline() -> None:
    """Emit SQL to stdout (flask db upgrade --sql) without a connection."""
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=database.metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    def skip_empty_autogenerate(context_, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            logger.info("No changes in schema detected.")

    options = current_app.extensions["migrate"].configure_args
    options.setdefault("process_revision_directives", skip_empty_autogenerate)
    with database.engine.connect() as connection:
        context.configure(connection=connection, target_metadata=database.metadata,
                          **options)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
