"""The dashboard's Flask application: one page, its JSON reads, and the actions
(actions.py).

The page is a shell drawn by static/dashboard.js, which polls /api/state (the
queues, the nodes, one page of one job view) and fills it in with textContent
(never HTML from data). /api/state is shared: one snapshot per page asked and
refresh interval, for every tab (cache.py). Answers are gzipped for clients
that accept it (compress.py). Every value a browser sends is checked before it
reaches the broker (checks.py), and a bad one is a 4xx with a one-line JSON
error, never a traceback.
"""
from __future__ import annotations

import dataclasses
import logging
import threading

from flask import Flask, current_app, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from ..brokers import BrokerError, DataFormatError, open_broker
from ..core.names import redact, redact_text
from . import checks, security, snapshot, views
from .actions import Actions
from .cache import SnapshotCache
from .checks import BadRequest
from .compress import gzip_response

log = logging.getLogger("mpqueue.web")
MAX_BODY = 1 << 20
POLL_SECONDS = 2.5       # dashboard.js polls this often: a snapshot is shared for as long


class LazyBroker:
    """The broker, opened on first use, and again after an open that failed: the
    dashboard starts and serves its page while the broker is down."""

    def __init__(self, url: str):
        self.url = url
        self._broker = None
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._broker is None:
                self._broker = open_broker(self.url)
            return self._broker

    def close(self) -> None:
        with self._lock:
            if self._broker is not None:
                self._broker.close()
                self._broker = None


class Dashboard:
    """The page and the reads, bound to one service's config and broker."""

    def __init__(self, cfg, settings, broker: LazyBroker, history, first_seen, cache: SnapshotCache):
        self.cfg, self.settings, self.broker = cfg, settings, broker
        self.history, self.first_seen, self.cache = history, first_seen, cache

    # -- pages
    def index(self):
        return render_template("index.html", service=self.cfg.name, broker=redact(self.cfg.broker),
                               csrf=security.csrf_token(), read_only=self.settings.read_only,
                               auth=self.settings.token is not None, poll_ms=int(POLL_SECONDS * 1000),
                               page_sizes=views.PAGE_SIZES)

    def login(self):
        if self.settings.token is None:
            return redirect(url_for("index"), 303)
        if request.method == "GET":
            return render_template("login.html", service=self.cfg.name, csrf=security.csrf_token(), error=None)
        waiting = security.throttled()
        if waiting is not None:
            return waiting
        if security.check_token(request.form.get("token", ""), self.settings.token, "form"):
            security.log_in()
            log.info("dashboard: login by %s", security.who())
            return redirect(url_for("index"), 303)
        return render_template("login.html", service=self.cfg.name, csrf=security.csrf_token(),
                               error="That is not the token."), 401

    def logout(self):
        security.log_out()
        return redirect(url_for("login" if self.settings.token else "index"), 303)

    def favicon(self):
        return current_app.send_static_file("favicon.svg")

    # -- reads
    def api_state(self):
        broker = self.broker.get()
        # Queue names are checked against the config's only here (no broker read per
        # poll); an unknown one falls back to every queue inside the snapshot.
        query = views.parse(request.args, _Anything())
        body = self.cache.get(dataclasses.astuple(query), lambda: snapshot.state(
            self.cfg, broker, self.history, self.first_seen, self.settings.read_only, query))
        return jsonify(body)

    def api_job(self):
        job_id = checks.job_id(request.args.get("id", "").strip())
        queue = request.args.get("queue") or None
        broker = self.broker.get()
        if queue is not None:
            checks.queue_name(queue, snapshot.queue_names(self.cfg, broker))
        info = snapshot.lookup(self.cfg, broker, job_id, queue)
        if info is None:
            raise BadRequest(f"job {job_id} not found" + (f" in queue {queue}" if queue else ""), 404)
        return jsonify(info)


class _Anything:
    """Every well-formed queue name 'is known' (state() drops one the broker lacks)."""

    def __contains__(self, name) -> bool:
        return True


def _body_size():
    # Checked up front: werkzeug 2.2 (Debian 12) enforces MAX_CONTENT_LENGTH only when
    # parsing a form. A body without a length (chunked) is read up to the limit here:
    # one byte more is a 413, as for a Content-Length over it.
    if (request.content_length or 0) > MAX_BODY:
        raise BadRequest(f"request body over {MAX_BODY} bytes", 413)
    if request.content_length is None and request.method not in security.SAFE_METHODS:
        body = request.stream.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise BadRequest(f"request body over {MAX_BODY} bytes", 413)
        request._cached_data = body          # get_json() reads this instead of the spent stream


def create_app(cfg, settings, broker: LazyBroker, history, first_seen) -> Flask:
    app = Flask(__name__)                       # templates/ and static/ beside this module
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.before_request(_body_size)
    security.install(app, settings.token, settings.port)
    cache = SnapshotCache(POLL_SECONDS)
    app.extensions["mpqueue_snapshots"] = cache
    d = Dashboard(cfg, settings, broker, history, first_seen, cache)
    for rule, view, methods in (("/", d.index, ["GET"]), ("/login", d.login, ["GET", "POST"]),
                                ("/logout", d.logout, ["POST"]), ("/favicon.ico", d.favicon, ["GET"]),
                                ("/api/state", d.api_state, ["GET"]), ("/api/job", d.api_job, ["GET"])):
        app.add_url_rule(rule, view.__name__, view, methods=methods)
    for rule, view in Actions(cfg, settings, broker).routes():
        app.add_url_rule(rule, view.__name__, view, methods=["POST"])

    def after_action(response):
        if request.method == "POST" and request.path.startswith("/api/"):
            cache.clear()        # the next poll shows what the action did
        return response
    app.after_request(after_action)
    app.after_request(gzip_response)
    _errors(app)
    return app


def _errors(app) -> None:
    """Every failure is a status and one line: JSON under /api/, a short page elsewhere."""
    def reply(status: int, message: str):
        if security.wants_json():
            response = jsonify(error=message)
            response.status_code = status
            return response
        return render_template("error.html", status=status, message=message), status

    app.register_error_handler(BadRequest, lambda e: reply(e.status, str(e)))
    app.register_error_handler(BrokerError, lambda e: reply(503, f"broker unreachable: {redact_text(str(e))}"))
    app.register_error_handler(DataFormatError, lambda e: reply(503, str(e)))
    app.register_error_handler(HTTPException, lambda e: reply(e.code or 500, e.description or e.name))

    def crash(exc):
        log.exception("dashboard: %s %s failed", request.method, request.path)
        return reply(500, "internal error (the dashboard's log has the details)")
    app.register_error_handler(Exception, crash)
