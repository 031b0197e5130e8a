"""Signing in to the dashboard, the session cookie and the CSRF check.

- ``ADMIN_TOKEN`` unset: every ``/ui/`` path answers 404 (closed by default).
- ``GET/POST /ui/login`` (field ``token``, compared in constant time) starts a
  session: Flask's signed cookie, keyed by a key derived from the token (changing
  the token signs everybody out), ``HttpOnly``, ``SameSite=Strict``, path ``/ui``,
  ``Secure`` when the request came over HTTPS (``X-Forwarded-Proto`` counts only
  with ``TRUSTED_PROXY_HOPS``, as for the rest of the app), valid ``SESSION_HOURS``.
- Every other page needs the session: a GET without it is sent to the sign-in
  form, anything else is refused (403).
- Every POST (sign-in and sign-out included) carries ``csrf_token``, a random value
  kept in the session and compared in constant time: refused (400) without it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from flask import (
    Flask,
    Request,
    Response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.typing import ResponseReturnValue

from agora_callbacks.ingress import responses
from agora_callbacks.ingress.dashboard import bp
from agora_callbacks.ingress.state import get_state
from agora_callbacks.logs import get_logger

log = get_logger("ingress.dashboard")

SESSION_HOURS = 12
COOKIE_NAME = "acb_ui"
#: Endpoints reachable without a session.
OPEN_ENDPOINTS = frozenset({"dashboard.login", "dashboard.static"})


class DashboardSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, opened only under ``/ui`` (the NCS endpoint
    never pays for them), ``Secure`` whenever the request itself is HTTPS."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.path.startswith(bp.url_prefix or "/ui"):
            return None  # Flask uses a null session
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or super().get_cookie_secure(app)


def session_key(token: str) -> str:
    """The session signing key: derived from the admin token, never the token itself."""
    return hmac.new(token.encode("utf-8"), b"agora-callbacks dashboard session",
                    hashlib.sha256).hexdigest()


@bp.record_once
def _configure(state: BlueprintSetupState) -> None:
    app = state.app
    assert isinstance(app, Flask)
    token = get_state(app).settings.admin_token
    if not token:
        return
    app.secret_key = session_key(token)
    app.session_interface = DashboardSessions()
    app.config.update(SESSION_COOKIE_NAME=COOKIE_NAME, SESSION_COOKIE_PATH="/ui",
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict")


def csrf_token() -> str:
    """This session's CSRF token (created on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok() -> bool:
    expected = session.get("csrf")
    presented = request.form.get("csrf_token", "")
    return isinstance(expected, str) and bool(expected) and hmac.compare_digest(
        presented.encode("utf-8"), expected.encode("utf-8"))


def signed_in() -> bool:
    since = session.get("signed_in_ms")
    return isinstance(since, int) and 0 <= time.time() * 1000 - since < SESSION_HOURS * 3.6e6


@bp.app_template_global()
def csrf_field() -> Any:
    from markupsafe import Markup, escape

    return Markup(f'<input type="hidden" name="csrf_token" value="{escape(csrf_token())}">')


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    if not get_state().settings.admin_token:
        return responses.error(404, "not found")
    if request.endpoint not in OPEN_ENDPOINTS and not signed_in():
        if request.method in ("GET", "HEAD"):
            return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
        log.info("dashboard.refused", reason="no session", path=request.path)
        return responses.error(403, "sign in first")
    if request.method == "POST" and not csrf_ok():
        log.info("dashboard.refused", reason="csrf", path=request.path)
        return responses.error(400, "CSRF token missing or wrong")
    return None


#: The pages load their own stylesheet and nothing else; no script, no framing.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; "
                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


def _safe_next(target: str) -> str:
    """Only a path of the dashboard itself (no open redirect), and one a ``Location``
    header can carry (no line break or other control character)."""
    if target.startswith("/ui/") and target.isprintable():
        return target
    return url_for("dashboard.recordings")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        expected = (get_state().settings.admin_token or "").encode("utf-8")
        presented = request.form.get("token", "").encode("utf-8")
        if expected and hmac.compare_digest(presented, expected):
            session.clear()
            session["signed_in_ms"] = int(time.time() * 1000)
            csrf_token()
            log.info("dashboard.signed_in", remote_addr=request.remote_addr)
            return redirect(_safe_next(request.form.get("next", "")))
        log.info("dashboard.sign_in_refused", remote_addr=request.remote_addr)
        error = "Wrong token."
    status = 401 if error else 200
    return render_template("dashboard/login.html", error=error,
                           next=request.values.get("next", "")), status


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    session.clear()
    log.info("dashboard.signed_out")
    return redirect(url_for("dashboard.login"))
