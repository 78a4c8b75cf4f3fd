"""The dashboard's actions, every one a POST behind security.py's checks (session
CSRF token and same origin, or a bearer token), refused in read-only mode, logged
with who asked, answered with JSON (errors: one line):

- failed jobs: retry (some, or all of a queue), delete, purge;
- delayed jobs (scheduled, retries): run now (run_now: to the ready jobs, attempt
  count kept), delete (a cancel: it leaves a "cancelled" record, as `mpqctl
  cancel` does);
- running jobs: cancel (asked to stop; 'kill' on request);
- queues: pause and resume (every node's workers stop taking its jobs).

Every action clears the shared snapshot (app.py, after it), so the next poll
shows its outcome.
"""
from __future__ import annotations

import logging

from flask import jsonify, request

from ..producer import handles
from ..producer.client import Client, result_ttls
from . import checks, security, snapshot
from .checks import BadRequest

log = logging.getLogger("mpqueue.web")


class Actions:
    def __init__(self, cfg, settings, broker):
        self.cfg, self.settings, self.broker = cfg, settings, broker

    def routes(self):
        return [("/api/retry", self.api_retry), ("/api/delete", self.api_delete), ("/api/purge", self.api_purge),
                ("/api/run_now", self.api_run_now), ("/api/cancel", self.api_cancel),
                ("/api/pause", self.api_pause), ("/api/resume", self.api_resume)]

    # -- failed jobs
    def api_retry(self):
        broker, queue, body = self._action()
        if body.get("all") is True:
            moved = broker.requeue_failed(queue, None)
            self._log("retry of every failed job", queue, None, f"{moved} requeued")
            return jsonify(queue=queue, requeued=moved, not_found=[])
        ids = checks.ids(body)
        # One id per call: the count each returns says exactly which ids were there (as mpqctl does).
        missing = [i for i in ids if broker.requeue_failed(queue, [i]) == 0]
        self._log("retry", queue, ids, f"{len(ids) - len(missing)} requeued")
        return jsonify(queue=queue, requeued=len(ids) - len(missing), not_found=missing)

    def api_delete(self):
        broker, queue, body = self._action()
        ids = checks.ids(body)
        dropped = broker.delete_failed(queue, ids)
        self._log("delete", queue, ids, f"{dropped} deleted")
        return jsonify(queue=queue, deleted=dropped)

    def api_purge(self):
        broker, queue, _ = self._action()
        dropped = broker.purge_failed(queue)
        self._log("purge of the failed store", queue, None, f"{dropped} dropped")
        return jsonify(queue=queue, dropped=dropped)

    # -- delayed and running jobs
    def api_run_now(self):
        broker, queue, body = self._action()
        ids = checks.ids(body)
        moved = broker.run_now(queue, ids)
        self._log("run now", queue, ids, f"{moved} made ready")
        return jsonify(queue=queue, moved=moved)

    def api_cancel(self):
        broker, queue, body = self._action()
        ids = checks.ids(body)
        kill = body.get("kill") is True
        client = Client(self.cfg.broker, broker=broker, result_ttls=result_ttls(self.cfg))
        answers = {i: handles.cancel(client, i, kill, queue)[1] for i in ids}
        cancelled = [i for i, a in answers.items() if a == "cancelled"]
        requested = [i for i, a in answers.items() if a == "requested"]
        others = {i: a for i, a in answers.items() if a not in ("cancelled", "requested")}
        self._log("cancel" + (" (kill)" if kill else ""), queue, ids,
                  f"{len(cancelled)} cancelled, {len(requested)} asked to stop, {len(others)} not cancelled")
        return jsonify(queue=queue, cancelled=cancelled, requested=requested, not_cancelled=others)

    # -- queues
    def api_pause(self):
        return self._switch("pause")

    def api_resume(self):
        return self._switch("resume")

    def _switch(self, what: str):
        broker, queue, _ = self._action()
        changed = bool(broker.pause(queue) if what == "pause" else broker.resume(queue))
        self._log(what, queue, None, "done" if changed else f"already {what}d")
        return jsonify(queue=queue, changed=changed, paused=what == "pause")

    def _action(self):
        if self.settings.read_only:
            raise BadRequest("read-only dashboard: no actions", 403)
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest("expected a JSON object such as {\"queue\": \"default\", \"ids\": [\"...\"]}")
        broker = self.broker.get()
        queue = checks.queue_name(body.get("queue"), snapshot.queue_names(self.cfg, broker))
        return broker, queue, body

    @staticmethod
    def _log(what: str, queue: str, ids, outcome: str) -> None:
        jobs = f" {len(ids)} job(s) [{', '.join(ids[:20])}{', ...' if len(ids) > 20 else ''}]" if ids else ""
        log.info("dashboard: %s%s of queue %s by %s: %s", what, jobs, queue, security.who(), outcome,
                 extra={"queue": queue})
