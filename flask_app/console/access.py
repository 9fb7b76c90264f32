"""Who may see the console: sign-in with the admin token, a session cookie, CSRF tokens, security headers.

The session cookie is Flask's signed cookie, with a key derived from
ADMIN_TOKEN (so every worker and replica accepts it, and changing the token
signs every session out). It is scoped to /console, HttpOnly,
SameSite=Strict, and Secure when the request came over HTTPS. Sessions are
opened for console paths only: the API's request path never touches them.
Every form that changes something carries a CSRF token bound to the session,
and every console page sets a Content-Security-Policy whose scripts must
come from the service or carry the page's nonce.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from flask import Flask, Request, Response, abort, current_app, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

PREFIX = "/console"
SESSION_COOKIE = "console_session"
# Endpoints a visitor may reach before signing in.
PUBLIC_ENDPOINTS = frozenset({"console.login", "console.static"})


def session_key(admin_token: str) -> bytes:
    """The key that signs console sessions: derived from ADMIN_TOKEN, the same in every worker."""
    return hmac.new(admin_token.encode(), b"console session v1", hashlib.sha256).digest()


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, opened only under /console and signed with the console's key."""

    salt = "console-session"

    def open_session(self, app: Flask, request: Request):
        if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
            return None  # a null session: nothing is read or written for the API
        return super().open_session(app, request)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        key = app.extensions.get("console_session_key")
        if key is None:
            return None
        return URLSafeTimedSerializer(key, salt=self.salt, serializer=self.serializer,
                                      signer_kwargs={"key_derivation": self.key_derivation,
                                                     "digest_method": self.digest_method})

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure


def configure_sessions(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    if settings.ADMIN_TOKEN:
        app.extensions["console_session_key"] = session_key(settings.ADMIN_TOKEN)
    app.session_interface = ConsoleSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_PATH=PREFIX,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=settings.CONSOLE_SESSION_HOURS),
    )


# --- per request ---------------------------------------------------------------------------------


def guard() -> Response | None:
    """Before every console request: a nonce, the same-origin and CSRF checks, and the sign-in wall."""
    g.csp_nonce = secrets.token_urlsafe(16)
    if request.endpoint == "console.static":
        return None
    if "console_session_key" not in current_app.extensions:
        abort(403, "The console is disabled: no ADMIN_TOKEN is configured.")
    if request.method == "POST":
        check_origin()
        check_csrf()
    if request.endpoint in PUBLIC_ENDPOINTS or signed_in():
        return None
    if request.method != "GET":
        abort(403, "Sign in first.")
    return redirect(url_for("console.login", next=request.full_path.rstrip("?")))


def signed_in() -> bool:
    return session.get("admin") is True


def sign_in(token: str) -> bool:
    """Start an admin session when ``token`` is the admin token (compared in constant time)."""
    expected = current_app.config["SETTINGS"].ADMIN_TOKEN
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        return False
    session.clear()  # a fresh session: nothing from before sign-in carries over
    session.permanent = True
    session["admin"] = True
    session["csrf"] = secrets.token_urlsafe(32)
    return True


def sign_out() -> None:
    session.clear()


def csrf_token() -> str:
    """The session's CSRF token, made on first use (the sign-in form needs one before sign-in)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(400, "The form has expired or did not come from this console; reload the page and try again.")


def check_origin() -> None:
    """A browser's form post names its origin: it must be this service."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        abort(403, "Cross-origin form posts are refused.")


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a console path only, never another site."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("console.models")


def secure_headers(response: Response) -> Response:
    """After every console response: the policy, no caching of admin data, no framing, no sniffing."""
    nonce = g.get("csp_nonce", "")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response
