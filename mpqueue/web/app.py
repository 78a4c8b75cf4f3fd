"""The dashboard's Flask application: one page, its JSON endpoints and the three
actions on failed jobs (retry, delete, purge).

The page is a shell drawn by static/dashboard.js, which polls /api/state and
fills it in with textContent (never HTML from data). Every value a browser sends
is checked before it reaches the broker, and a bad one is a 4xx with a one-line
JSON error, never a traceback; each action is logged with who asked.
"""
from __future__ import annotations

import logging
import re
import threading

from flask import Flask, current_app, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from ..brokers import BrokerError, DataFormatError, open_broker
from ..core.names import is_queue_name, redact, redact_text
from . import security, snapshot

log = logging.getLogger("mpqueue.web")
# A job id as the dashboard accepts it: printable ASCII without spaces or the glob
# characters a Redis pattern would read (ids are 16 hex digits; junk gets "bad-...").
JOB_ID = re.compile(r"[!-~]{1,128}")
GLOB = set("*?[]\\")
MAX_IDS = 1000
MAX_BODY = 1 << 20


class BadRequest(Exception):
    """A value from the browser that can't be used: a 4xx with this message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


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
    """The routes, bound to one service's config and broker."""

    def __init__(self, cfg, settings, broker: LazyBroker, history, first_seen):
        self.cfg, self.settings, self.broker = cfg, settings, broker
        self.history, self.first_seen = history, first_seen

    # -- pages
    def index(self):
        return render_template("index.html", service=self.cfg.name, broker=redact(self.cfg.broker),
                               csrf=security.csrf_token(), read_only=self.settings.read_only,
                               auth=self.settings.token is not None)

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
        return jsonify(snapshot.state(self.cfg, self.broker.get(), self.history, self.first_seen,
                                      self.settings.read_only))

    def api_job(self):
        job_id = _job_id(request.args.get("id", "").strip())
        queue = request.args.get("queue") or None
        broker = self.broker.get()
        if queue is not None:
            self._known_queue(broker, queue)
        info = snapshot.lookup(self.cfg, broker, job_id, queue)
        if info is None:
            raise BadRequest(f"job {job_id} not found" + (f" in queue {queue}" if queue else ""), 404)
        return jsonify(info)

    # -- actions on failed jobs
    def api_retry(self):
        broker, queue, body = self._action()
        if body.get("all") is True:
            moved = broker.requeue_failed(queue, None)
            self._log("retry of every failed job", queue, None, f"{moved} requeued")
            return jsonify(queue=queue, requeued=moved, not_found=[])
        ids = _ids(body)
        # One id per call: the count each returns says exactly which ids were there (as mpqctl does).
        missing = [i for i in ids if broker.requeue_failed(queue, [i]) == 0]
        self._log("retry", queue, ids, f"{len(ids) - len(missing)} requeued")
        return jsonify(queue=queue, requeued=len(ids) - len(missing), not_found=missing)

    def api_delete(self):
        broker, queue, body = self._action()
        ids = _ids(body)
        dropped = broker.delete_failed(queue, ids)
        self._log("delete", queue, ids, f"{dropped} deleted")
        return jsonify(queue=queue, deleted=dropped)

    def api_purge(self):
        broker, queue, _ = self._action()
        dropped = broker.purge_failed(queue)
        self._log("purge of the failed store", queue, None, f"{dropped} dropped")
        return jsonify(queue=queue, dropped=dropped)

    def _action(self):
        if self.settings.read_only:
            raise BadRequest("read-only dashboard: no retry, delete or purge", 403)
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest("expected a JSON object such as {\"queue\": \"default\", \"ids\": [\"...\"]}")
        broker = self.broker.get()
        return broker, self._known_queue(broker, body.get("queue")), body

    def _known_queue(self, broker, queue) -> str:
        if not isinstance(queue, str) or not is_queue_name(queue):
            raise BadRequest("queue: expected a queue name (letters, digits, '_', '.', '-')")
        if queue not in snapshot.queue_names(self.cfg, broker):
            raise BadRequest(f"unknown queue {queue!r}", 404)
        return queue

    @staticmethod
    def _log(what: str, queue: str, ids, outcome: str) -> None:
        jobs = f" {len(ids)} job(s) [{', '.join(ids[:20])}{', ...' if len(ids) > 20 else ''}]" if ids else ""
        log.info("dashboard: %s%s of queue %s by %s: %s", what, jobs, queue, security.who(), outcome,
                 extra={"queue": queue})


def _body_size():
    # Checked up front: werkzeug 2.2 (Debian 12) enforces MAX_CONTENT_LENGTH only when parsing a form.
    if (request.content_length or 0) > MAX_BODY:
        raise BadRequest(f"request body over {MAX_BODY} bytes", 413)


def _job_id(value) -> str:
    if not isinstance(value, str) or not JOB_ID.fullmatch(value) or GLOB & set(value):
        raise BadRequest("id: expected a job id (printable characters, no spaces, at most 128)")
    return value


def _ids(body: dict) -> list[str]:
    ids = body.get("ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_IDS:
        raise BadRequest(f"ids: expected a list of 1 to {MAX_IDS} job ids")
    return list(dict.fromkeys(_job_id(i) for i in ids))


def create_app(cfg, settings, broker: LazyBroker, history, first_seen) -> Flask:
    app = Flask(__name__)                       # templates/ and static/ beside this module
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.before_request(_body_size)
    security.install(app, settings.token, settings.port)
    d = Dashboard(cfg, settings, broker, history, first_seen)
    for rule, view, methods in (("/", d.index, ["GET"]), ("/login", d.login, ["GET", "POST"]),
                                ("/logout", d.logout, ["POST"]), ("/favicon.ico", d.favicon, ["GET"]),
                                ("/api/state", d.api_state, ["GET"]), ("/api/job", d.api_job, ["GET"]),
                                ("/api/retry", d.api_retry, ["POST"]), ("/api/delete", d.api_delete, ["POST"]),
                                ("/api/purge", d.api_purge, ["POST"])):
        app.add_url_rule(rule, view.__name__, view, methods=methods)
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
