"""`mpqctl metrics`: the service's Prometheus metrics as text, for node_exporter's
textfile collector on a host that opens no port:

    mpqctl --service orders metrics > /var/lib/prometheus/node-exporter/orders.prom.$$ &&
        mv /var/lib/prometheus/node-exporter/orders.prom.$$ /var/lib/prometheus/node-exporter/orders.prom

With `metrics: {listen: ...}` in the service's YAML (a port, or "unix" for the
socket in its runtime directory) it fetches what the running service serves.
Otherwise, or while the service is down, it prints what the broker alone can
tell (queue depths, oldest-job ages, which are paused, broker_up, service_up 0): the job
counters live in the service.
With the broker down as well it still prints what is true (broker_up 0) and exits 0."""
from __future__ import annotations

import http.client
import socket
import time

import click

from ..brokers import BrokerError
from ..core.address import split_host_port
from ..supervisor.lock import runtime_dir
from ..supervisor.metrics import Snapshot, read_queues, render
from .ctl_target import CtlError, pass_target

FETCH_TIMEOUT = 10.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=FETCH_TIMEOUT)
        self.unix_path = path

    def connect(self):
        # A unix socket whose listen backlog is full refuses a connect with EAGAIN at
        # once rather than waiting (a flood of idle clients the server is shedding):
        # try again until the fetch's deadline, as a TCP client's SYN would.
        deadline = time.monotonic() + FETCH_TIMEOUT
        pause = 0.005
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(FETCH_TIMEOUT)
            try:
                sock.connect(self.unix_path)
            except BlockingIOError:
                sock.close()
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
                continue
            except BaseException:
                sock.close()
                raise
            self.sock = sock
            return


def fetch(listen: str, service: str) -> bytes:
    """GET /metrics from a running service; OSError if it does not answer."""
    if listen == "unix":
        conn = _UnixConnection(str(runtime_dir(service) / "metrics.sock"))
    else:
        host, port = split_host_port(listen)
        conn = http.client.HTTPConnection("127.0.0.1" if host in ("0.0.0.0", "::") else host, port,
                                          timeout=FETCH_TIMEOUT)
    try:
        conn.request("GET", "/metrics")
        reply = conn.getresponse()
        body = reply.read()
        if reply.status != 200:
            raise OSError(f"HTTP {reply.status}")
        return body
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from None
    finally:
        conn.close()


@click.command()
@pass_target
def metrics(target):
    """Print Prometheus metrics (text format) to stdout.

    The running service's own (with metrics.listen in its YAML), else the
    broker's view only: mpqueue_queue_jobs, mpqueue_queue_oldest_job_age_seconds,
    mpqueue_queue_paused, mpqueue_broker_up and mpqueue_service_up 0 (exit 0 even
    when the broker is down too)."""
    cfg = target.config
    if cfg is not None and cfg.metrics.listen:
        try:
            click.echo(fetch(cfg.metrics.listen, cfg.name).decode(), nl=False)
            return
        except OSError as exc:
            reason = f"the service does not answer on {cfg.metrics.listen} ({exc})"
    else:
        reason = "no metrics.listen in the service's YAML"
    click.echo(broker_view(target, reason), nl=False)


def broker_view(target, reason: str) -> str:
    """What is true while the service's own metrics can't be read: the queue counts if
    the broker answers, broker_up, and service_up 0; never a stale counter. Printed
    with exit 0 even when the broker is down too, so a textfile collector replaces
    the last good counts with this rather than keeping them."""
    queues = target.config_queues()
    try:
        queues = target.known_queues()
        counts = read_queues(target.broker, queues)
    except (BrokerError, CtlError, OSError) as exc:
        counts, reason = None, f"{reason}; the broker does not answer ({exc})"
    comment = f"# mpqueue: {reason}: the broker's view only".replace("\n", " ")
    return comment + "\n" + render(Snapshot(queues=tuple(queues), service_up=False), counts).decode()
