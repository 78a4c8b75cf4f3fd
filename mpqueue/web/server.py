"""The dashboard's process: the gate (gate.py: request deadlines, a bounded pool)
in front of werkzeug's request handler (no other server to install), the sampler
thread, and a main thread that only waits for SIGTERM or SIGINT and then stops
the rest. Ready for systemd (READY=1) once it listens."""
from __future__ import annotations

import io
import logging
import signal
import socket
import threading

from werkzeug.serving import WSGIRequestHandler, make_server

from .. import logsetup
from ..brokers import BrokerError, DataFormatError
from ..supervisor.notify import Notifier
from . import snapshot
from .app import MAX_BODY, LazyBroker, create_app
from .gate import Gate
from .history import FirstSeen, History, Sampler
from .settings import ServeError, SetupError

log = logging.getLogger("mpqueue.web")
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class _Handler(WSGIRequestHandler):
    """werkzeug's handler for one request the gate has read whole: `request` is
    (socket, bytes); without its and Python's versions in every response."""

    protocol_version = "HTTP/1.0"       # one request per connection: the gate reads the next one

    def setup(self) -> None:
        self.connection, data = self.request
        self.request = self.connection
        self.rfile = io.BytesIO(data)
        self.wfile = self.connection.makefile("wb")

    def version_string(self) -> str:
        return "mpqueue-web"


def serve(cfg, settings) -> int:
    try:
        logsetup.setup_logging(cfg.log, cfg.name)
    except OSError as exc:
        raise SetupError(logsetup.open_problem(exc, cfg.log, cfg.name)) from None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)     # not a line per poll of every open page
    broker = LazyBroker(cfg.broker)
    _check_format(broker)
    history = History(read_points=lambda queues, since_ms: broker.get().history(queues, since_ms))
    app = create_app(cfg, settings, broker, history, FirstSeen())
    # Blocked before any thread starts, so every thread inherits the mask and the
    # signals wait for the main thread's sigtimedwait: no handler runs anywhere.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    with _bind(settings) as sock:          # werkzeug keeps a duplicate of it (socket.fromfd)
        # werkzeug's server only holds what its handler reads (app, address); the gate serves.
        server = make_server(settings.host, settings.port, app, request_handler=_Handler, fd=sock.fileno())
    server.multithread = True
    gate = Gate(server.socket, lambda conn, addr, data: _Handler((conn, data), addr, server), MAX_BODY)
    sampler = Sampler(lambda: _all_counts(cfg, broker), history)
    serving = threading.Thread(target=gate.serve_forever, name="mpqueue-web-http", daemon=True)
    sampler.start()
    serving.start()
    mode = ", ".join(m for m, on in (("read-only", settings.read_only), ("token", settings.token)) if on)
    log.info("dashboard of %s on http://%s/%s", cfg.name, settings.address, f" ({mode})" if mode else "")
    notifier = Notifier()
    notifier.ready(f"serving on http://{settings.address}/")
    try:
        _wait_for_stop(serving)
    finally:
        notifier.stopping()
        gate.shutdown()
        sampler.stop()
        serving.join(10)
        server.server_close()
        broker.close()
    log.info("dashboard of %s stopped", cfg.name)
    return 0


def _check_format(broker: LazyBroker) -> None:
    """Refuse to start on broker data of a newer format (one line, exit 78). A broker
    down now is checked by the first read that reaches it (the page then says so)."""
    try:
        broker.get().check_format()
    except DataFormatError as exc:
        raise SetupError(str(exc)) from None
    except BrokerError:
        pass


def _bind(settings) -> socket.socket:
    """The listening socket. Bound here, not by werkzeug: werkzeug >= 2.3 prints two
    lines and exits by itself when the port is taken."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        return socket.create_server((settings.host, settings.port), family=family, backlog=128)
    except OSError as exc:
        raise ServeError(f"cannot listen on {settings.address}: {exc.strerror or exc}") from None


def _all_counts(cfg, broker: LazyBroker) -> dict:
    b = broker.get()
    return b.counts_many(snapshot.queue_names(cfg, b))


def _wait_for_stop(serving: threading.Thread) -> None:
    while serving.is_alive():
        if signal.sigtimedwait(STOP_SIGNALS, 1.0) is not None:
            return
    log.error("dashboard: the HTTP server stopped by itself")
