"""The Redis broker's reads for dashboards and metrics, and its failed-store edits
beyond mpqctl's: the counts of many queues, and which of them are paused, in
one round trip per server, a queue's delayed jobs, how long each queue's oldest
waiting job has waited, the failed store by time of failure (a page at any
offset), the last errors of retrying jobs, running delayed jobs now, deleting
failed jobs, and finding one job (mpqctl job, Client.status).

Mixed into RedisBroker (redis.py), which provides keys(), _on() and servers. Each
queue's keys are read on the node that owns its slot, so on a Cluster the queues
are grouped by node (_by_node, also used by redis_history.py) and each group is
one pipeline.
"""
from __future__ import annotations

import json

from ..core import envelope as jobmod

# Ids per index_failed.lua call and per HSCAN/ZSCAN step while indexing old failures.
_INDEX_CHUNK = 500

# Commands per queue in a counts pipeline: LLEN x10 (one list per priority), ZCARD sched,
# HLEN held, HLEN failed, HGETALL stats.
_PER_QUEUE = 14
# Commands per queue in an ages pipeline: LINDEX 0 x10 (each priority's head), ZRANGE sched 0 0.
_AGE_READS = 11


def queue_count_commands(pipe, keys) -> None:
    """Queue the reads of one queue's counts on a redis-py pipeline."""
    for key in keys.ready:
        pipe.llen(key)
    pipe.zcard(keys.sched).hlen(keys.held).hlen(keys.failed).hgetall(keys.stats)


def queue_age_commands(pipe, keys) -> None:
    """Queue the reads of one queue's oldest waiting job: the head of each priority's
    list and the first delayed job. O(1) and O(log N) whatever the depth: no scan."""
    for key in keys.ready:
        pipe.lindex(key, 0)
    pipe.zrange(keys.sched, 0, 0, withscores=True)


def age_from(res: list, now_ms: int) -> float:
    """Seconds the oldest of one queue's waiting jobs has waited since it was due, from
    its slice of an ages pipeline (0.0: nothing waits). A ready job is due at the due
    time its envelope carries (the producer's clock, see envelope.due_ms); a delayed
    job still in the ZSET past its due time counts from its score (the broker's clock)."""
    dues = [jobmod.due_ms(env) for env in res[:10] if env is not None]
    dues += [int(score) for _, score in res[10]]
    dues = [due for due in dues if 0 < due <= now_ms]
    return (now_ms - min(dues)) / 1000.0 if dues else 0.0


def counts_from(res: list) -> dict:
    """The counts dict (base.COUNT_KEYS) from one queue's slice of a counts pipeline.
    Cancelled envelopes still in a ready list (stats "dead", see _keys.lua) are not jobs."""
    stats = res[13]
    return {"ready": sum(res[:10]) - int(stats.get("dead", 0)), "scheduled": res[10], "running": res[11], "failed": res[12],
            "done_total": int(stats.get("done", 0)), "failed_total": int(stats.get("failed", 0)),
            "throttled_total": int(stats.get("throttled", 0))}


class RedisInspection:
    """counts_many, oldest_ages (and both at once), paused, scheduled, failed, last_errors, run_now and
    delete_failed of the Inspection contract."""

    def counts_many(self, queues):
        out = self._by_node(queues, self._counts_on)
        return {q: out[q] for q in queues}

    def oldest_ages(self, queues):
        out = self._by_node(queues, self._ages_on)
        return {q: out[q] for q in queues}

    def paused(self, queues):
        # One EXISTS per queue, grouped by node like counts_many: one round trip per server.
        def read(node, here):
            return dict(zip(here, self._pipelined(node, here, lambda pipe, keys: pipe.exists(keys.paused))))
        return {q for q, stopped in self._by_node(queues, read).items() if stopped}

    def _by_node(self, queues, call) -> dict:
        """{queue: ...} from call(node, queues held by that node), one call per node
        serving any of `queues` (one server: one call). Each pass takes the first
        queue left and every other one on its node; _on retries the pass after a
        redirect (a resharded slot) on the new owner."""
        pending = list(dict.fromkeys(queues))
        out = {}
        while pending:
            def on(node, todo=pending):
                return call(node, [todo[0]] + [q for q in todo[1:] if self.servers.for_queue(q) is node])
            out.update(self._on(pending[0], on))
            pending = [q for q in pending if q not in out]
        return out

    def _pipelined(self, node, here: list[str], queue_commands, clock=False) -> list:
        """The replies of one pipeline running queue_commands(pipe, keys) for each
        queue of `here` (`clock`: TIME first)."""
        # MULTI/EXEC gives each queue's reads as one snapshot. A Cluster refuses a
        # transaction across slots, so there several queues go in a plain pipeline
        # (each command still atomic, the queue's reads back to back).
        atomic = len(here) == 1 or not self.target.sharded
        with node.client.pipeline(transaction=atomic) as pipe:
            if clock:
                pipe.time()
            for queue in here:
                queue_commands(pipe, self.keys(queue))
            return executed(pipe)

    def _counts_on(self, node, here: list[str]) -> dict:
        res = self._pipelined(node, here, queue_count_commands)
        return {q: counts_from(res[i * _PER_QUEUE:(i + 1) * _PER_QUEUE]) for i, q in enumerate(here)}

    def _ages_on(self, node, here: list[str]) -> dict:
        res = self._pipelined(node, here, queue_age_commands, clock=True)
        now_ms = _ms(res[0])
        return {q: age_from(res[1 + i * _AGE_READS:1 + (i + 1) * _AGE_READS], now_ms) for i, q in enumerate(here)}

    def counts_and_ages(self, queues):
        both = self._by_node(queues, self._both_on)
        return {q: both[q][0] for q in queues}, {q: both[q][1] for q in queues}

    def _both_on(self, node, here: list[str]) -> dict:
        def commands(pipe, keys):
            queue_count_commands(pipe, keys)
            queue_age_commands(pipe, keys)
        res = self._pipelined(node, here, commands, clock=True)
        now_ms, each = _ms(res[0]), _PER_QUEUE + _AGE_READS
        parts = [res[1 + i * each:1 + (i + 1) * each] for i in range(len(here))]
        return {q: (counts_from(part[:_PER_QUEUE]), age_from(part[_PER_QUEUE:], now_ms))
                for q, part in zip(here, parts)}

    def scheduled(self, queue, limit=100, offset=0):
        if limit <= 0:
            return []
        key = self.keys(queue).sched
        start = max(0, offset)
        rows = self._on(queue, lambda node: node.client.zrange(key, start, start + limit - 1, withscores=True))
        return [(jobmod.job_id(envelope), envelope, int(due)) for envelope, due in rows]

    def failed(self, queue, limit=100, offset=0, newest_first=False):
        # From the failed_at index (a ZSET kept by the scripts that write the failed
        # HASH), by rank: O(log N + limit) at any offset. Without it a page of 100k
        # failures means reading all 100k records (each a whole envelope) on every
        # `mpqctl failed` and every dashboard refresh.
        if limit <= 0:
            return []
        k = self.keys(queue)
        start = max(0, offset)

        def read(node):
            c = node.client
            with c.pipeline(transaction=True) as pipe:
                indexed, stored = pipe.zcard(k.failed_at).hlen(k.failed).execute()
            if indexed != stored:
                self._index_failed(node, queue)
            page = c.zrevrange if newest_first else c.zrange
            ids = page(k.failed_at, start, start + limit - 1)
            records = c.hmget(k.failed, ids) if ids else []
            # a record retried or deleted between the two reads is skipped
            return [(job_id, *split_failed(rec)) for job_id, rec in zip(ids, records) if rec is not None]
        return self._on(queue, read)

    def last_errors(self, queue, ids):
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        errors = self._on(queue, lambda node: node.client.hmget(self.keys(queue).errors, ids))
        return {i: e for i, e in zip(ids, errors) if e is not None}

    def run_now(self, queue, ids):
        # The delayed ZSET is keyed by envelope: read the ids' from the index of waiting
        # jobs (one HMGET, at any depth; a ZSCAN only for ids it lacks, pushed by a release
        # without it), then one script moves those still delayed, in the order given.
        ids = list(dict.fromkeys(ids))
        found, unindexed = self._indexed_scheduled(queue, ids)
        found.update(self._scheduled_envelopes(queue, unindexed))
        envelopes = [found[i] for i in ids if i in found]
        return self._call("run_now", queue, envelopes) if envelopes else 0

    def _indexed_scheduled(self, queue, ids: list[str]) -> tuple[dict[str, str], set]:
        """({id: envelope} of the ids the index has as delayed, the ids to scan for: those
        without an entry, if the queue holds jobs without one, else none)."""
        if not ids:
            return {}, set()
        k = self.keys(queue)

        def read(node):
            with node.client.pipeline(transaction=True) as pipe:
                pipe.hmget(k.where, ids).hlen(k.where).zcard(k.sched).hget(k.stats, "dead")
                for key in k.ready:
                    pipe.llen(key)
                return executed(pipe)
        entries, indexed, delayed, dead, *ready = self._on(queue, read)
        covered = indexed == delayed + sum(ready) - int(dead or 0)
        found = {i: e[2:] for i, e in zip(ids, entries) if e is not None and e.startswith("s ")}
        return found, set() if covered else {i for i, e in zip(ids, entries) if e is None}

    def _scheduled_envelopes(self, queue, wanted: set) -> dict[str, str]:
        if not wanted:
            return {}
        (one,) = wanted if len(wanted) == 1 else ("",)
        match = f"{_glob_escape(one)} *" if one else None

        def scan(node):
            found = {}
            for envelope, _ in node.client.zscan_iter(self.keys(queue).sched, match=match, count=1000):
                job_id = envelope.partition(" ")[0]
                if job_id in wanted:
                    found[job_id] = envelope
                    if len(found) == len(wanted):
                        break
            return found
        return self._on(queue, scan)

    def _index_failed(self, node, queue) -> None:
        """Mend the index where it and the HASH disagree: failures written before the
        index existed, or by an older node during a rolling upgrade. Chunked, each
        chunk one atomic script; runs only while the counts differ."""
        k = self.keys(queue)
        def hash_ids(cursor):
            cursor, found = node.client.hscan(k.failed, cursor, count=_INDEX_CHUNK)
            return cursor, list(found)

        def index_ids(cursor):
            cursor, found = node.client.zscan(k.failed_at, cursor, count=_INDEX_CHUNK)
            return cursor, [job_id for job_id, _ in found]

        for scan in (hash_ids, index_ids):
            cursor = 0
            while True:
                cursor, ids = scan(cursor)
                if ids:
                    self._call("index_failed", queue, ids)
                if cursor == 0:
                    break

    def delete_failed(self, queue, ids):
        ids = list(dict.fromkeys(ids))
        if not ids:
            return 0
        k = self.keys(queue)

        def delete(node):
            with node.client.pipeline(transaction=True) as pipe:     # the record and its index entry together
                return pipe.hdel(k.failed, *ids).zrem(k.failed_at, *ids).execute()[0]
        return self._on(queue, delete)

    def find(self, queue, job_id):
        # find.lua: one atomic read through the index of waiting jobs, O(1) at any depth.
        # Only while the queue holds jobs an older release pushed (no index entry) is a
        # job that the index does not know looked for by the scan, as before the index.
        k = self.keys(queue)
        out = self._call("find", queue, [job_id], [k.done(job_id)])
        if out[0] == "none" and out[1] != 1:
            scanned = self._on(queue, lambda node: _scan(node.client, k, job_id))
            if scanned is not None:
                return scanned
            out = self._call("find", queue, [job_id], [k.done(job_id)])     # it may have moved on
        return None if out[0] == "none" else found_from(out)


def found_from(out: list) -> dict:
    """find()'s answer from find.lua's reply."""
    state, record = out[0], out[1]
    if state == "running":
        _, consumer, envelope = record.split(" ", 2)      # "<token> <consumer> <envelope>"
        return {"state": "running", "envelope": envelope, "consumer": consumer.rstrip("+")}
    if state == "done":
        return {"state": "done", **json.loads(record)}
    if state == "failed":
        envelope, error = split_failed(record)
        return {"state": "failed", "envelope": envelope, "error": json.loads(error or "{}")}
    extra = {"last_error": json.loads(out[2])} if out[2] else {}
    if state == "scheduled":
        return {"state": "scheduled", "envelope": record, "due_ms": int(float(out[3])), **extra}
    return {"state": "ready", "envelope": record, **extra}


def _scan(c, k, job_id):
    """A waiting job that the index does not know (pushed by an older release), looked
    for as before the index: in sched by ZSCAN, then in the ready lists by offset (O(depth),
    and not atomic: a job moving meanwhile can be missed, so the caller asks find.lua
    again). Only for queues holding such jobs."""
    last_error = c.hget(k.errors, job_id)
    extra = {"last_error": json.loads(last_error)} if last_error else {}
    # The id is a pattern to ZSCAN: escape it, and take only an exact match
    for envelope, due in c.zscan_iter(k.sched, match=f"{_glob_escape(job_id)} *"):
        if envelope.startswith(job_id + " "):
            return {"state": "scheduled", "envelope": envelope, "due_ms": int(due), **extra}
    for key in k.ready:
        for start in range(0, c.llen(key), 1000):
            for envelope in c.lrange(key, start, start + 999):
                if envelope.startswith(job_id + " ") and not c.hexists(k.dead, envelope):
                    return {"state": "ready", "envelope": envelope, **extra}
    return None


def executed(pipe) -> list:
    """A pipeline's replies; its first error is raised unannotated, so _on can read
    a MOVED or ASK from it."""
    res = pipe.execute(raise_on_error=False)
    error = next((r for r in res if isinstance(r, Exception)), None)
    if error is not None:
        raise error
    return res


def _ms(time_reply) -> int:
    """TIME's (seconds, microseconds) as epoch ms."""
    seconds, micros = time_reply
    return seconds * 1000 + micros // 1000


def split_failed(record: str) -> tuple[str, str]:
    """A failed-store record, "<envelope>\n<error json>", as (envelope, error)."""
    envelope, _, error = record.partition("\n")
    return envelope, error


def _glob_escape(text: str) -> str:
    """`text` matched literally by a Redis MATCH pattern (glob: * ? [ ] and \\)."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
