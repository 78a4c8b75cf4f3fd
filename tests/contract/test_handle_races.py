"""Job handles racing a drain, on every broker (issue #27 item 1): pushes, reserves,
acks, retries, failures, status, cancel and result() waits run at once in threads,
each with its own broker connection, and every answer must be consistent with the
job's true history as the threads recorded it. A randomized test with fixed seeds:
the operations each thread picks are reproducible; their interleaving is not.

Each event is (kind, job id, start, end, detail) on the monotonic clock; an
answer given by a call over [t0, t1] is consistent if some moment in that window
allows it: e.g. "ready" needs the job not to have ended (an ack, failure or
cancel that returned) before t0, "running" a reserve that began before t1."""
import json
import random
import threading
import time

import pytest

from mpqueue import JobCancelled, JobFailed, JobUnknown, ResultTimeout
from mpqueue.brokers import Ack, PushItem, open_broker
from mpqueue.core import envelope as jobmod
from mpqueue.producer import handles
from mpqueue.producer.client import Client

Q = "races"
JOBS = 1500          # per run; a few hundred waiting at once, so cancels reach mid-list
RESULT_TTL = 3600     # every job's end outlives the test: nothing may ever be "unknown"


class History:
    def __init__(self):
        self.lock = threading.Lock()
        self.events: dict[str, list] = {}
        self.errors: list[str] = []
        self.answers: list[tuple] = []     # (check, args): judged once every thread is done

    def answer(self, check, *args):
        with self.lock:
            self.answers.append((check, args))

    def add(self, kind, job_id, t0, t1, detail=None):
        with self.lock:
            self.events.setdefault(job_id, []).append((kind, t0, t1, detail))

    def of(self, job_id, *kinds):
        with self.lock:
            return [e for e in self.events.get(job_id, []) if e[0] in kinds]

    def wrong(self, text):
        with self.lock:
            self.errors.append(text)


def ended_before(h, job_id, t0) -> bool:
    """Whether the job had certainly ended before t0 (an end call returned by then)."""
    ends = h.of(job_id, "ack", "fail") + [e for e in h.of(job_id, "cancel") if e[3] == "cancelled"]
    return any(t1 < t0 for _, _, t1, _ in ends)


def began_before(h, job_id, t1, *kinds) -> bool:
    return any(s < t1 for _, s, _, _ in h.of(job_id, *kinds))


def check_status(h, job_id, state, t0, t1):
    ok = {"unknown": False,
          "ready": not ended_before(h, job_id, t0),
          "scheduled": not ended_before(h, job_id, t0),
          "running": began_before(h, job_id, t1, "reserve") and not ended_before(h, job_id, t0),
          "done": began_before(h, job_id, t1, "ack"),
          "failed": began_before(h, job_id, t1, "fail"),
          "cancelled": any(s < t1 and d in ("cancelled", "requested") for _, s, _, d in h.of(job_id, "cancel"))}
    if not ok.get(state, False):
        h.wrong(f"status {state} of {job_id} over [{t0:.4f}, {t1:.4f}]: {h.of(job_id, *KINDS)}")


KINDS = ("push", "reserve", "ack", "retry", "fail", "cancel")


def check_cancel(h, job_id, answer):
    if answer not in ("cancelled", "requested", "done", "failed", "was-cancelled"):
        h.wrong(f"cancel of {job_id} answered {answer}: {h.of(job_id, *KINDS)}")


def check_result(h, job_id, outcome, t0, t1):
    if isinstance(outcome, ResultTimeout):
        ok = not ended_before(h, job_id, t0)
    elif isinstance(outcome, JobFailed):
        ok = began_before(h, job_id, t1, "fail")
    elif isinstance(outcome, JobCancelled):
        ok = began_before(h, job_id, t1, "cancel")
    else:          # JobUnknown never: every job's end outlives the test
        ok = outcome == job_id and began_before(h, job_id, t1, "ack")
    if not ok:
        h.wrong(f"result of {job_id} over [{t0:.4f}, {t1:.4f}]: {outcome!r}: {h.of(job_id, *KINDS)}")


def drainer(url, h, stop, seed, name):
    rng, b = random.Random(seed), open_broker(url)
    try:
        while not stop.is_set():
            t0 = time.monotonic()
            reserved, _ = b.reserve(Q, name, rng.randint(1, 8), 30.0)
            t1 = time.monotonic()
            for r in reserved:
                job = jobmod.decode(r.envelope, Q, r.token)
                h.add("reserve", job.id, t0, t1)
                roll, s = rng.random(), time.monotonic()
                if roll < 0.15 and job.attempts < 2:
                    b.retry(Q, job.id, job.token, rng.choice((0, 0.02)), json.dumps({"type": "error", "message": "again"}))
                    h.add("retry", job.id, s, time.monotonic())
                elif roll < 0.22:
                    b.fail(Q, job.id, job.token, json.dumps({"type": "error", "message": "no", "attempts": 1}))
                    h.add("fail", job.id, s, time.monotonic())
                else:
                    record = json.dumps({"task": job.task, "attempts": job.attempts, "result": job.id})
                    b.ack(Q, [Ack(job.id, job.token, record, RESULT_TTL, job.attempts <= 1)])
                    h.add("ack", job.id, s, time.monotonic())
            if not reserved:
                time.sleep(0.002)        # ok: an empty queue polled by a test thread, not a wait for a result
    finally:
        b.close()


def asker(url, h, ids, stop, seed):
    rng, b = random.Random(seed), open_broker(url)
    client = Client(url, broker=b, result_ttls={Q: RESULT_TTL})
    try:
        while not stop.is_set():
            with h.lock:
                if not ids:
                    continue
                job_id = rng.choice(ids[-300:])
            t0 = time.monotonic()
            if rng.random() < 0.25:
                answer = handles.cancel(client, job_id, False, Q)[1]
                t1 = time.monotonic()
                h.add("cancel", job_id, t0, t1, answer)
                h.answer(check_cancel, job_id, answer)
            else:
                h.answer(check_status, job_id, client.status(job_id, queue=Q), t0, time.monotonic())
    finally:
        b.close()


def waiter(url, h, ids, stop, seed):
    rng, b = random.Random(seed), open_broker(url)
    client = Client(url, broker=b)
    try:
        while not stop.is_set():
            with h.lock:
                if not ids:
                    continue
                job_id = rng.choice(ids[-200:])
            t0 = time.monotonic()
            try:
                outcome = client.result(job_id, timeout=0.5, queue=Q)
            except (ResultTimeout, JobUnknown, JobFailed, JobCancelled) as exc:
                outcome = exc
            h.answer(check_result, job_id, outcome, t0, time.monotonic())
    finally:
        b.close()


def final_state_is_consistent(h, client, job_id):
    state = client.status(job_id, queue=Q)
    cancels = [d for _, _, _, d in h.of(job_id, "cancel")]
    if "cancelled" in cancels:
        later = [e for e in h.of(job_id, "reserve") if e[1] > max(t1 for k, _, t1, d in h.of(job_id, "cancel")
                                                              if d == "cancelled")]
        return state == "cancelled" and not later
    if state == "cancelled":
        return "requested" in cancels
    return state == {"ack": "done", "fail": "failed"}.get((h.of(job_id, "ack", "fail") or [("?",)])[-1][0])


@pytest.mark.parametrize("seed", [27, 1027])
def test_handles_answer_consistently_with_each_jobs_history_under_a_concurrent_drain(broker, seed):
    # Given a queue fed in batches (some jobs delayed, priorities mixed) and drained by two
    # workers that ack, retry or fail what they take
    url, rng = broker.url, random.Random(seed)
    client = Client(url, broker=broker, result_ttls={Q: RESULT_TTL})
    h, ids, stop = History(), [], threading.Event()
    threads = [threading.Thread(target=drainer, args=(url, h, stop, seed + i, f"w{i}")) for i in range(2)]
    threads += [threading.Thread(target=asker, args=(url, h, ids, stop, seed + 10 + i)) for i in range(2)]
    threads += [threading.Thread(target=waiter, args=(url, h, ids, stop, seed + 20 + i)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        # When jobs are pushed while status, cancel and result() ask about them
        for _ in range(JOBS // 50):
            batch = []
            for _ in range(50):
                priority = rng.choice((0, 0, 5, 9))
                job_id, env = jobmod.encode("t:f", [], priority=priority)
                batch.append(PushItem(env, priority, rng.choice((0, 0, 0, 0.05))))
                h.add("push", job_id, time.monotonic(), time.monotonic())
            broker.push(Q, batch)
            with h.lock:
                ids.extend(jobmod.job_id(item.envelope) for item in batch)
            time.sleep(0.03)         # ok: paces the producer so the queue stays a few hundred deep
        # Then, once every job has ended, each one ended as its history says
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            c = broker.counts(Q)
            if c["ready"] == 0 and c["scheduled"] == 0 and c["running"] == 0:
                break
            time.sleep(0.05)         # ok: polling the drain with a deadline
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    for check, args in h.answers:
        check(h, *args)
    assert len(h.answers) > 200 and not h.errors, "\n".join(h.errors[:10])
    cancels = [args[1] for check, args in h.answers if check is check_cancel]
    assert "cancelled" in cancels and "done" in cancels       # waiting jobs cancelled, ended ones refused
    c = broker.counts(Q)
    assert (c["ready"], c["scheduled"], c["running"]) == (0, 0, 0), c
    wrong = [job_id for job_id in ids if not final_state_is_consistent(h, client, job_id)]
    assert not wrong, [(j, client.status(j, queue=Q), h.of(j, *KINDS)) for j in wrong[:5]]
