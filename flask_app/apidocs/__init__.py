"""GET /docs: Swagger UI on the served /openapi.json, from assets installed with the service.

Swagger UI's files come from the ``flask-swagger-ui`` package (its ``dist``
folder); nothing is loaded from the internet, so the page works on a machine
without it. The page has no inline script, and its Content-Security-Policy
lets it reach nothing but this service.
"""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Response, render_template, send_from_directory

SWAGGER_UI_DIR = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
# Swagger UI sets style attributes from JavaScript, hence 'unsafe-inline' for styles (never for scripts).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

apidocs = Blueprint("apidocs", __name__, template_folder="templates", static_folder="static",
                    static_url_path="/docs/static")


@apidocs.get("/docs")
def docs_page() -> str:
    """The interactive API documentation."""
    return render_template("apidocs/docs.html")


@apidocs.get("/docs/swagger-ui/<path:filename>")
def swagger_asset(filename: str) -> Response:
    """Swagger UI's own files, as the package installed them."""
    return send_from_directory(SWAGGER_UI_DIR, filename, max_age=3600)


@apidocs.after_request
def secure_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response
