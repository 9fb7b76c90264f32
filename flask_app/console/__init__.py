"""The operations console at /console: models, traffic, the log and drift, for the admin.

A blueprint with its own templates/ and static/: pages rendered on the
server with Jinja, charts drawn on the server as SVG, one small script, no
build step and nothing loaded from the internet. It reads through the same
modules as the API (the registry, the log queries, drift, shadow) and adds
no work to the API's request path: sessions and CSRF live on console routes
only (``access``).
"""

from __future__ import annotations

from flask import Flask

from .access import configure_sessions
from .views import console


def register_console(app: Flask) -> None:
    configure_sessions(app)
    app.register_blueprint(console)
