"""Who may use the dashboard, and how a browser is kept from being turned against it.

- Without a token (loopback only), a request must name a loopback host: a page
  elsewhere that rebinds its own DNS name to 127.0.0.1 sends its own name in
  Host, and is refused (DNS rebinding).
- With a token, a browser logs in once (a form posting the token; then a
  session cookie, HttpOnly and SameSite=Strict) and a script sends
  `Authorization: Bearer TOKEN`. Tokens are compared in constant time.
- Wrong tokens (form or Bearer) are logged one line each with the address, and
  after a few each address waits a doubling delay (throttle.py): 429 with
  Retry-After, the token not even compared.
- Every POST from a session needs the session's CSRF token (a form field or the
  X-CSRF-Token header) and must come from this origin (Origin, else
  Sec-Fetch-Site); a bearer request is exempt, since no browser adds that header
  to a forged request by itself.
- A session is live only while its id is in this process's `Sessions`: logging
  out removes it, so a copy of the cookie taken before is refused after (the
  signed cookie alone would stay valid until the key changes at restart).
- Every response says: scripts, styles and fetches from this origin only, no
  inline script, never in a frame, no content sniffing.
"""
from __future__ import annotations

import hmac
import logging
import math
import secrets
import threading
from collections import OrderedDict

from flask import abort, current_app, g, jsonify, make_response, redirect, render_template, request, session, url_for

from ..core.address import host_of, is_loopback
from ..core.redis_url import split_url
from .throttle import Throttle

log = logging.getLogger("mpqueue.web")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Reachable without logging in: the login form itself and what it is drawn with.
PUBLIC_ENDPOINTS = ("login", "static", "favicon")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
           "Referrer-Policy": "same-origin", "Cross-Origin-Opener-Policy": "same-origin",
           "Cross-Origin-Resource-Policy": "same-origin"}
MAX_SESSIONS = 1000     # live logins kept; the oldest end first (only a token holder can add one)


class Sessions:
    """The ids of the logged-in sessions of this process, newest last."""

    def __init__(self, limit: int = MAX_SESSIONS):
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self.limit = limit

    def start(self) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._ids[sid] = None
            while len(self._ids) > self.limit:
                self._ids.popitem(last=False)
        return sid

    def live(self, sid) -> bool:
        with self._lock:
            return isinstance(sid, str) and sid in self._ids

    def end(self, sid) -> None:
        with self._lock:
            self._ids.pop(sid, None)



def install(app, token: str | None, port: int) -> None:
    # Sessions end with the process (a new key each start). Cookies ignore ports, so
    # the name carries it: two dashboards on one host must not overwrite each other's.
    app.config.update(SECRET_KEY=secrets.token_bytes(32), SESSION_COOKIE_NAME=f"mpqueue_web_{port}",
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict")
    app.extensions["mpqueue_sessions"] = Sessions()       # in memory: a restart ends them all
    app.extensions["mpqueue_throttle"] = Throttle()
    app.before_request(lambda: _check(token))
    app.after_request(_headers)


def _check(token: str | None):
    """Host, then who, then (for a POST) CSRF and origin; a refusal ends the request."""
    g.user, g.bearer = None, False
    if token is None and not is_loopback(host_of(request.host)):
        return _refuse(400, "unexpected Host header: without a token the dashboard answers only to a loopback name")
    if token is not None:
        refused = _authenticate(token)
        if refused is not None:
            return refused
    if request.routing_exception is not None:
        return None                     # a 404 or 405 follows: nothing to protect
    if request.method not in SAFE_METHODS and not g.bearer:
        if not same_origin():
            return _refuse(403, "cross-origin request refused")
        if not _csrf_ok():
            return _refuse(403, "missing or wrong CSRF token: reload the page")
    return None


def _authenticate(token: str):
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, given = header.partition(" ")
        waiting = throttled()
        if waiting is not None:
            return waiting
        if not check_token(given if scheme.lower() == "bearer" else "", token, "Authorization header"):
            return _refuse(401, "wrong or unsupported Authorization header (expected: Bearer TOKEN)")
        g.user, g.bearer = "token", True
        return None
    if session.get("auth") is True and _sessions().live(session.get("sid")):
        g.user = "token"
        return None
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if wants_json() or request.method not in SAFE_METHODS:
        return _refuse(401, "log in first (or send Authorization: Bearer TOKEN)")
    return redirect(url_for("login"), 303)


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.strip().encode(), token.encode())


def throttled():
    """A 429 while this address must wait after wrong tokens, else None."""
    left, first = current_app.extensions["mpqueue_throttle"].wait(request.remote_addr)
    if left <= 0:
        return None
    seconds = math.ceil(left)
    if first:          # one line per delay, not one per refused try
        log.warning("dashboard: logins from %s refused for %d s after wrong tokens", request.remote_addr, seconds)
    message = f"too many wrong tokens: try again in {seconds} s"
    response = jsonify(error=message) if wants_json() else make_response(
        render_template("error.html", status=429, message=message))
    response.status_code = 429
    response.headers["Retry-After"] = str(seconds)
    return response


def check_token(given: str, token: str, how: str) -> bool:
    """Whether `given` is the token; a wrong one is counted and logged (never itself)."""
    throttle = current_app.extensions["mpqueue_throttle"]
    if token_matches(given, token):
        throttle.succeeded(request.remote_addr)
        return True
    failures, delay = throttle.failed(request.remote_addr)
    log.warning("dashboard: failed login (%s) from %s: %d wrong in a row%s", how, request.remote_addr, failures,
                f", next try in {delay:.0f} s" if delay else "")
    return False


def log_in() -> None:
    """A fresh session (and CSRF token) for a browser that gave the right token."""
    session.clear()
    session["auth"] = True
    session["sid"] = _sessions().start()
    session["csrf"] = secrets.token_urlsafe(32)


def log_out() -> None:
    """End the session here, not only in this browser: a copy of its cookie is refused."""
    _sessions().end(session.get("sid"))
    session.clear()


def _sessions() -> Sessions:
    return current_app.extensions["mpqueue_sessions"]


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _csrf_ok() -> bool:
    expected = session.get("csrf")
    given = request.headers.get("X-CSRF-Token") or request.form.get("csrf") or ""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def same_origin() -> bool:
    """The request comes from a page of this dashboard. Origin is compared by host
    and port only, so a TLS proxy in front (https outside, http here) still matches;
    a browser that sends no Origin (or "null") still sends Sec-Fetch-Site."""
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        parts = split_url(origin)       # never raises: a hostile Origin is a mismatch, not an error
        return _netloc(parts) == _strip_port(request.host, parts.scheme)
    # "null": an opaque origin (a sandboxed frame, a data: page), or a form posted under a
    # no-referrer policy; the browser's Sec-Fetch-Site still tells where it came from.
    return request.headers.get("Sec-Fetch-Site") == "same-origin"


def _netloc(parts) -> str:
    return _strip_port(parts.authority or "", parts.scheme)


def _strip_port(host: str, scheme: str) -> str:
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    host = host.lower()
    return host[:-len(default)] if default and host.endswith(default) else host


def who() -> str:
    """Who asks, for the action log: the remote address, and 'token' when authenticated."""
    return f"{request.remote_addr} (token)" if g.get("user") == "token" else str(request.remote_addr)


def wants_json() -> bool:
    return request.path.startswith("/api/")


def _refuse(status: int, message: str):
    if wants_json():
        response = jsonify(error=message)
        response.status_code = status
        return response
    abort(status, description=message)


def _headers(response):
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response
