"""The task module each system runs under benchmark, written to a temporary
directory as `benchpeer.py` and run in that system's own virtualenv.

Every module defines the same four tasks (noop, stamp, io, victim), each
recording into Redis db 1 exactly as the others do, and the same small producer
API (send, send_later, bulk); DRIVER, appended to each, is the command line the
benchmark calls: `python benchpeer.py push N`, `stamps N RATE`, ..."""

COMMON = '''
import os, sys, time
import redis as _redis_lib
R = _redis_lib.Redis.from_url(os.environ["BENCH_RESULTS"])
BROKER = os.environ["BENCH_BROKER"]

def _noop(*args):
    R.incr("done")

def _stamp(pushed_at, due_at=0):
    R.rpush("starts", f"{time.time()} {pushed_at} {due_at}")

def _io(ms=2):
    time.sleep(ms / 1000)
    R.incr("done")

def _victim(i):
    # the SIGKILL workload: who is running a job now, then 5 ms of work, then the record
    R.zadd("busy", {str(os.getpid()): time.time()})
    time.sleep(0.005)
    R.hincrby("runs", str(i), 1)
    R.incr("done")
'''

DRIVER = '''
def _main():
    cmd, n = sys.argv[1], int(sys.argv[2])
    t0 = time.perf_counter()
    if cmd == "push":
        for _ in range(n):
            send("noop", ())
    elif cmd == "bulk":
        if bulk is None:
            print("n/a")
            return
        bulk("noop", [()] * n)
    elif cmd in ("fill", "payload", "io", "victims"):
        task, args = {"fill": ("noop", lambda i: ()), "payload": ("noop", lambda i: ("x" * 100,)),
                      "io": ("io", lambda i: (2,)), "victims": ("victim", lambda i: (i,))}[cmd]
        if bulk is not None:
            for start in range(0, n, 1000):
                bulk(task, [args(i) for i in range(start, min(n, start + 1000))])
        else:
            for i in range(n):
                send(task, args(i))
    elif cmd == "stamps":
        rate = float(sys.argv[3])
        for i in range(n):
            now = time.time()
            send("stamp", (now, now))
            pause = t0 + (i + 1) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    elif cmd == "delayed":
        for i in range(n):
            delay = 1 + 2 * i / n
            now = time.time()
            send_later("stamp", (now, now + delay), delay)
    print(n / (time.perf_counter() - t0))

'''

MPQUEUE = '''
import mpqueue
client = mpqueue.Client(BROKER)

@mpqueue.task(queue="bench")
def noop(*args): _noop(*args)

@mpqueue.task(queue="bench")
def stamp(pushed_at, due_at=0): _stamp(pushed_at, due_at)

@mpqueue.task(queue="bench")
def io(ms=2): _io(ms)

@mpqueue.task(queue="bench")
def victim(i): _victim(i)

def send(task, args):
    client.push("bench", "benchpeer:" + task, args=list(args))

def send_later(task, args, delay):
    client.push("bench", "benchpeer:" + task, args=list(args), delay=delay)

def bulk(task, argss):
    client.push_many("bench", ({"task": "benchpeer:" + task, "args": list(a)} for a in argss))
'''

DRAMATIQ = '''
import dramatiq
from dramatiq.brokers.redis import RedisBroker
dramatiq.set_broker(RedisBroker(url=BROKER))

@dramatiq.actor(queue_name="bench")
def noop(*args): _noop(*args)

@dramatiq.actor(queue_name="bench")
def stamp(pushed_at, due_at=0): _stamp(pushed_at, due_at)

@dramatiq.actor(queue_name="bench")
def io(ms=2): _io(ms)

@dramatiq.actor(queue_name="bench")
def victim(i): _victim(i)

TASKS = {"noop": noop, "stamp": stamp, "io": io, "victim": victim}

def send(task, args):
    TASKS[task].send(*args)

def send_later(task, args, delay):
    TASKS[task].send_with_options(args=args, delay=int(delay * 1000))

bulk = None
'''

RQ = '''
from datetime import timedelta
from rq import Queue
_conn = _redis_lib.Redis.from_url(BROKER)
_q = Queue("bench", connection=_conn)

def noop(*args): _noop(*args)
def stamp(pushed_at, due_at=0): _stamp(pushed_at, due_at)
def io(ms=2): _io(ms)
def victim(i): _victim(i)

TASKS = {"noop": noop, "stamp": stamp, "io": io, "victim": victim}

def send(task, args):
    _q.enqueue(TASKS[task], *args)

def send_later(task, args, delay):
    _q.enqueue_in(timedelta(seconds=delay), TASKS[task], *args)

def bulk(task, argss):
    with _conn.pipeline() as pipe:
        _q.enqueue_many([Queue.prepare_data(TASKS[task], args=a) for a in argss], pipeline=pipe)
        pipe.execute()
'''

HUEY = '''
from huey import RedisHuey
huey = RedisHuey("bench", url=BROKER)

@huey.task()
def noop(*args): _noop(*args)

@huey.task()
def stamp(pushed_at, due_at=0): _stamp(pushed_at, due_at)

@huey.task()
def io(ms=2): _io(ms)

@huey.task()
def victim(i): _victim(i)

TASKS = {"noop": noop, "stamp": stamp, "io": io, "victim": victim}

def send(task, args):
    TASKS[task](*args)

def send_later(task, args, delay):
    TASKS[task].schedule(args=args, delay=delay)

bulk = None
'''

CELERY = '''
from celery import Celery
app = Celery("benchpeer", broker=BROKER)
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False)
if os.environ.get("BENCH_CELERY_RELIABLE"):
    # Celery's documented reliable mode: ack after the task, requeue if its process dies
    app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True)

@app.task(name="noop")
def noop(*args): _noop(*args)

@app.task(name="stamp")
def stamp(pushed_at, due_at=0): _stamp(pushed_at, due_at)

@app.task(name="io")
def io(ms=2): _io(ms)

@app.task(name="victim")
def victim(i): _victim(i)

TASKS = {"noop": noop, "stamp": stamp, "io": io, "victim": victim}

def send(task, args):
    TASKS[task].apply_async(args)

def send_later(task, args, delay):
    TASKS[task].apply_async(args, countdown=delay)

bulk = None
'''

ARQ = '''
import asyncio
from datetime import timedelta
from arq import create_pool
from arq.connections import RedisSettings

async def noop(ctx, *args): _noop(*args)
async def stamp(ctx, pushed_at, due_at=0): _stamp(pushed_at, due_at)
async def io(ctx, ms=2):
    await asyncio.sleep(ms / 1000)     # arq's I/O is asyncio's
    R.incr("done")
async def victim(ctx, i): _victim(i)

class WorkerSettings:
    functions = [noop, stamp, io, victim]
    redis_settings = RedisSettings.from_dsn(BROKER)

_loop = _pool = None

def _enqueue(task, args, **kw):
    global _loop, _pool
    if _pool is None:
        _loop = asyncio.new_event_loop()
        _pool = _loop.run_until_complete(create_pool(WorkerSettings.redis_settings))
    _loop.run_until_complete(_pool.enqueue_job(task, *args, **kw))

def send(task, args):
    _enqueue(task, args)

def send_later(task, args, delay):
    _enqueue(task, args, _defer_by=timedelta(seconds=delay))

bulk = None
'''
