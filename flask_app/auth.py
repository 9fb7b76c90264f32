"""Bearer-token check for the admin endpoints: fail closed without a token."""

from __future__ import annotations

import hmac

from flask import current_app, request

from .errors import Forbidden, Unauthorized


def require_admin() -> None:
    """Raise unless the request carries the configured ADMIN_TOKEN.

    With no ADMIN_TOKEN configured every admin request is refused, unless
    DEV_MODE is set explicitly. The comparison takes the same time whatever
    the token, so it cannot be guessed a character at a time.
    """
    settings = current_app.config["SETTINGS"]
    if settings.admin_open:
        return
    if not settings.ADMIN_TOKEN:
        raise Forbidden("Admin endpoints are disabled: no ADMIN_TOKEN is configured.")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("This endpoint needs 'Authorization: Bearer <ADMIN_TOKEN>'.")
    if not hmac.compare_digest(token.strip().encode(), settings.ADMIN_TOKEN.encode()):
        raise Forbidden("The bearer token is not the admin token.")
