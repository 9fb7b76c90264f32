"""The WSGI entry point: ``gunicorn flask_app.wsgi:app`` and ``flask --app flask_app.wsgi``."""

from flask_app import create_app

app = create_app()
