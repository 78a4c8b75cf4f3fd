"""Run one reserved job inside a worker and decide its outcome.

Returns an Ack for a success (the caller folds it into its next broker call);
retries and failures are settled here (settle.py).
"""
from __future__ import annotations

import logging
import time
import traceback

from ..brokers.base import Ack
from ..core import envelope as jobmod
from ..core import failures, tasks
from ..core.context import JobContext, Retry, reset_current, set_current
from ..core.names import import_string
from .settle import settle_failure

log = logging.getLogger("mpqueue.job")
# The built-in task that runs failure hooks: it runs only hooks this service configured.
_HOOK_INFO = tasks.TaskInfo(failures.HOOK_TASK, None, tasks.TaskOptions(), None)


class Runner:
    def __init__(self, broker, service_cfg, queue_cfg, worker_index: int, scoreboard):
        self.broker = broker
        self.service = service_cfg
        self.cfg = queue_cfg
        self.index = worker_index
        self.scoreboard = scoreboard
        self.before_job = [import_string(s) for s in (queue_cfg.before_job,) if s]
        self._effective: dict = {}    # task name -> the queue's settings with the task's overrides

    def _options(self, info):
        cfg = self._effective[info.name] = tasks.effective(self.cfg, info)
        return cfg

    def run(self, token: str, envelope: str) -> Ack | None:
        try:
            job = jobmod.decode(envelope, self.cfg.name, token)
        except jobmod.PayloadError as exc:
            self._refuse(token, envelope, failures.BAD_PAYLOAD, str(exc))
            return None
        info = _HOOK_INFO if job.task == failures.HOOK_TASK else tasks.lookup(job.task)
        if info is None:
            self._refuse_job(job, failures.UNKNOWN_TASK, f"task {job.task!r} is not registered in this service's imports")
            return None
        cfg = self._effective.get(info.name) or self._options(info)
        if cfg.timeout > self.cfg.timeout:
            # The reservation's lease was sized for the queue's timeout.
            self.broker.extend(self.cfg.name, job.id, token, cfg.timeout + self.service.lease_grace)
        self.scoreboard.start(job.id, token, cfg.timeout)
        started = time.monotonic()
        ok, ack = False, None
        try:
            value = self._call(job, info, cfg)
            ok = True
            ack = self._ack(job, value, started)
        except Retry as exc:
            self._failed(job, info, cfg, failures.ERROR, str(exc), "", started, exc.delay)
        except BaseException as exc:  # noqa: BLE001 - a task may raise anything, even SystemExit
            self._failed(job, info, cfg, failures.ERROR, f"{exc.__class__.__name__}: {exc}",
                         traceback.format_exc(), started)
        finally:
            self.scoreboard.finish(ok)
        return ack

    def _call(self, job, info, cfg):
        ctx = JobContext(job.id, job.queue, job.task, job.attempts, cfg.retries + 1, self.index,
                         tuple(job.args), job.kwargs)
        reset = set_current(ctx)
        try:
            for hook in self.before_job:
                hook(job.info())
            if job.task == failures.HOOK_TASK:
                return self._run_failure_hook(*job.args)
            return info.func(*job.args, **job.kwargs)
        finally:
            reset_current(reset)

    def _run_failure_hook(self, spec, task_name, job_info, error):
        """Only hooks this service configured can run: a forged hook job can't name code."""
        if spec == "task":
            info = tasks.lookup(task_name)
            hook = info.on_failure if info else None
            if isinstance(hook, str):
                hook = import_string(hook)
        else:
            hook = import_string(self.cfg.on_failure) if self.cfg.on_failure else None
        if hook is None:
            raise LookupError(f"no on_failure hook for {task_name!r} ({spec})")
        return hook(job_info, error)

    def _ack(self, job, value, started) -> Ack:
        ms = (time.monotonic() - started) * 1000
        record = ""
        if self.cfg.result_ttl:
            fields = {"task": job.task, "attempts": job.attempts, "result": value,
                      "finished_at": round(time.time(), 3), "duration_ms": round(ms, 3)}
            try:
                record = jobmod.dumps(fields)
            except (TypeError, ValueError):      # not JSON: keep what it looks like
                fields["result"] = repr(value)[:1000]
                record = jobmod.dumps(fields)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("job done", extra=self._extra(job, ms, "done"))
        return Ack(job.id, job.token, record, self.cfg.result_ttl, job.attempts <= 1)

    def _failed(self, job, info, cfg, kind, message, tb, started, delay=None):
        ms = (time.monotonic() - started) * 1000
        result = settle_failure(self.broker, self.cfg.name, job, cfg, kind, message, tb,
                                        info is not None and info.on_failure is not None, delay)
        level = logging.WARNING if result == "retried" else logging.ERROR
        log.log(level, "job %s: %s", result, message, extra=self._extra(job, ms, result))

    def _refuse_job(self, job, kind, message):
        self.scoreboard.finish(False)
        settle_failure(self.broker, self.cfg.name, job, self.cfg, kind, message)
        log.error("job refused: %s", message, extra=self._extra(job, 0, kind))

    def _refuse(self, token, envelope, kind, message):
        job_id, attempts = jobmod.split_header(envelope)
        job = jobmod.Job(id=job_id, task="?", attempts=attempts, queue=self.cfg.name,
                         token=token, envelope=envelope)
        self._refuse_job(job, kind, message)

    def _extra(self, job, ms, result):
        return {"queue": job.queue, "job_id": job.id, "task": job.task, "attempt": job.attempts,
                "duration_ms": round(ms, 3), "outcome": result, "worker": self.index}
