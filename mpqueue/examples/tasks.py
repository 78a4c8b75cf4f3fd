"""Example tasks used by conf/example.yaml and the quick start (README, docs/tutorial)."""
import time

import mpqueue


@mpqueue.task(queue="default")
def add(x, y):
    return x + y


@mpqueue.task(queue="default", retries=2, retry_delay=0.5)
def flaky(fail_times: int):
    """Fails its first `fail_times` attempts, then succeeds."""
    job = mpqueue.current_job()
    if job.attempt <= fail_times:
        raise RuntimeError(f"attempt {job.attempt} fails on purpose")
    return job.attempt


@mpqueue.task(queue="reports", timeout=60)
def report(seconds: float = 0.1):
    time.sleep(seconds)
    return {"slept": seconds}


def on_failure(job, error):
    print(f"job {job['id']} ({job['task']}) failed for good: {error['type']}: {error['message']}", flush=True)
