"""Pure logic: the job envelope, the retry policy, task registration."""
import json

import pytest

import mpqueue
from mpqueue.core import envelope as jobmod
from mpqueue.core import tasks as registry
from mpqueue.core.retry import RetryPolicy


def test_envelope_round_trips_args_kwargs_and_priority():
    job_id, env = jobmod.encode("m:f", [1, "x"], {"k": [1]}, priority=7)
    job = jobmod.decode(env, "q", "tok")
    assert (job.id, job.task, job.args, job.kwargs, job.priority, job.attempts) == \
        (job_id, "m:f", [1, "x"], {"k": [1]}, 7, 0)


def test_encode_refuses_what_is_not_json_with_a_clear_error():
    with pytest.raises(jobmod.PayloadError, match="not JSON-serialisable"):
        jobmod.encode("m:f", [object()])


def test_encode_refuses_payloads_over_the_limit():
    with pytest.raises(jobmod.PayloadError, match="exceeds max_payload 1024"):
        jobmod.encode("m:f", ["x" * 2000], max_payload=1024)


@pytest.mark.parametrize("bad", [-1, 10, 1.5, True, "3"])
def test_priority_must_be_0_to_9(bad):
    with pytest.raises(jobmod.PayloadError, match="priority"):
        jobmod.encode("m:f", priority=bad)


@pytest.mark.parametrize("junk", ["junk", "id 1 0 not-json", "id 1 0 [1,2]", 'id x 0 {"t":"m:f"}',
                                  'id 1 0 {"t":"m:f","a":{}}'])
def test_decode_refuses_junk(junk):
    with pytest.raises(jobmod.PayloadError):
        jobmod.decode(junk)


@pytest.mark.parametrize("args, kwargs, delay, scheduled_ms", [
    ((), None, 0.0, 0),
    ((1, "żółć ✓", None, 2.5, [{"k": "\u2028\"q\\"}]), {"x": [1, {"y": "z"}]}, 1.5, 0),
    ((), {"only": True}, 0.0, 1765000000000),
])
def test_encode_writes_the_body_json_would_write_for_the_same_dict(monkeypatch, args, kwargs, delay, scheduled_ms):
    # The stored form is the data format: the body must stay exactly the compact JSON of
    # {"t", "e", "d", "s", "a", "k"}, however encode() builds it.
    monkeypatch.setattr(jobmod.time, "time", lambda: 1765000000.123)
    _, env = jobmod.encode("m:tâsk", args, kwargs, 4, job_id="j1", delay=delay, scheduled_ms=scheduled_ms)
    body = {"t": "m:tâsk", "e": 1765000000123}
    if delay:
        body["d"] = 1765000000123 + int(delay * 1000)
    if scheduled_ms:
        body["s"] = scheduled_ms
    if args:
        body["a"] = list(args)
    if kwargs:
        body["k"] = kwargs
    assert env == "j1 0 4 " + json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def test_encode_counts_the_payload_in_utf8_bytes():
    _, env = jobmod.encode("t:f", ["é" * 100], job_id="j")
    assert len(env) < 200 < len(env.encode())
    jobmod.encode("t:f", ["é" * 100], job_id="j", max_payload=len(env.encode()))
    with pytest.raises(jobmod.PayloadError, match=f"{len(env.encode())} bytes exceeds"):
        jobmod.encode("t:f", ["é" * 100], job_id="j", max_payload=len(env.encode()) - 1)


def test_encode_refuses_a_lone_surrogate_in_the_arguments_or_the_task_name():
    for task, args in (("t:f", ["\ud800"]), ("t:\ud800", [])):
        with pytest.raises(jobmod.PayloadError, match="not valid UTF-8"):
            jobmod.encode(task, args)


def test_fixed_backoff_and_attempt_limit():
    p = RetryPolicy(retries=2, retry_delay=1.5)
    assert [p.should_retry(n) for n in (1, 2, 3)] == [True, True, False]
    assert p.delay(1) == p.delay(5) == 1.5


def test_exponential_backoff_is_jittered_and_capped():
    p = RetryPolicy(retries=10, retry_delay=1, backoff="exponential", max_retry_delay=10)
    assert p.delay(1, rand=lambda: 0.0) == 0.5 and p.delay(1, rand=lambda: 1.0) == 1.0
    assert p.delay(3, rand=lambda: 1.0) == 4.0
    assert p.delay(20, rand=lambda: 1.0) == 10


def test_timeouts_are_not_retried_unless_asked():
    assert not RetryPolicy(retries=3).should_retry(1, "timeout")
    assert RetryPolicy(retries=3, retry_on_timeout=True).should_retry(1, "timeout")


def test_task_decorator_registers_module_function_name_and_options():
    @mpqueue.task(queue="emails", retries=5)
    def send(to):
        return to
    info = registry.lookup(f"{__name__}:test_task_decorator_registers_module_function_name_and_options.<locals>.send")
    assert info is not None and info.options.queue == "emails" and info.options.overrides() == {"retries": 5}
    assert send("x") == "x"


def test_class_based_job_registers_and_runs_a_fresh_instance():
    class Report(mpqueue.Task):
        name = "reports:build"
        queue = "reports"
        timeout = 9

        def run(self, n):
            self.n = n
            return n * 2

        def on_failure(self, job, error):
            return ("hooked", job, error)
    info = registry.lookup("reports:build")
    assert info.func(21) == 42 and info.options.overrides() == {"timeout": 9}
    assert info.on_failure("j", "e") == ("hooked", "j", "e")
