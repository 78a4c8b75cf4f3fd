"""The floor: a reference row for the no-op drain, the least an at-least-once
queue can do per job, to show how much of the bare loop's rate any queue on
this interpreter and client library can keep. Two processes each repeat one
Lua call that pops up to 64 JSON envelopes and records them in a lease set,
decode each, call the no-op job's body (`_noop` in RECORDING, the same
`INCR done` as everyone's), and acknowledge the batch with one ZREM before
the next pop. No timeouts, retries, results, metrics, priorities, delays or
supervisor: a job whose process dies stays leased (nothing reclaims it), so
this is a measure, not a queue to use. It runs the drain workload only.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .base import System

MODULE = '''
import json as _json

_B = _redis_lib.Redis.from_url(BROKER)
_POP = _B.register_script("""
local out, lease = {}, {}
for i = 1, tonumber(ARGV[1]) do
  local env = redis.call('LPOP', KEYS[1])
  if not env then break end
  out[#out + 1] = env
  lease[#lease + 1] = ARGV[2]
  lease[#lease + 1] = env
end
if #out > 0 then redis.call('ZADD', KEYS[2], unpack(lease)) end
return out
""")
_BODIES = {"noop": _noop}


def send(task, args):
    _B.rpush("floor:ready", _json.dumps({"id": os.urandom(8).hex(), "task": task, "args": list(args)}))


def send_later(task, args, delay):
    raise NotImplementedError("the floor has no delayed jobs")


def bulk(task, many):
    _B.rpush("floor:ready", *[_json.dumps({"id": os.urandom(8).hex(), "task": task, "args": list(a)})
                              for a in many])


def _floor_loop():
    acks = []
    while True:
        if acks:
            _B.zrem("floor:leases", *acks)
            acks = []
        batch = _POP(keys=["floor:ready", "floor:leases"], args=[64, int(time.time() * 1000)])
        if not batch:
            time.sleep(0.01)   # the drain fills the queue before the workers start: this is the end
            continue
        for env in batch:
            job = _json.loads(env)
            _BODIES[job["task"]](*job["args"])
            acks.append(env)      # the envelope is its own lease member
'''


class Floor(System):
    name = "floor"
    column = "floor"
    MODULE = MODULE
    workloads = ("drain",)
    reference = True          # not a peer: left out of "best peer"
    supervised = False        # two independent processes
    has_bulk = True
    settings = ("2 processes of the project's interpreter, each: one Lua call pops up to 64 JSON envelopes "
                "into a lease set, json.loads and the no-op body per job, one ZREM acks the batch")
    notes = ("floor: the least an at-least-once queue does per job (a Lua pop of up to 64 envelopes into a "
             "lease set, a JSON decode, the job's INCR, a ZREM per batch), in 2 processes of the project's "
             "interpreter and redis-py; no timeouts, retries, results, metrics or recovery: a measure, "
             "not a queue.",)

    def __init__(self, redis):
        super().__init__(redis, Path(sys.executable).parent)

    def _version(self) -> str:
        import redis
        return f"(redis-py {redis.__version__})"

    def worker_commands(self, workload):
        return [[str(self.python), "-c", "import benchpeer; benchpeer._floor_loop()"] for _ in range(2)]
