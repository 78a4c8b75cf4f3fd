"""What mpqctl's global options point at (Target: a config and a broker, opened
on first use), how its broker errors read, and how it prints (text or --json)."""
from __future__ import annotations

import json
from functools import cached_property

import click
import redis as redislib

from ..brokers import BrokerError, DataFormatError, open_broker
from ..core.config import ConfigError, load_config, load_service
from ..core.names import redact
from ..ipc import EX_CONFIG, EX_USAGE
from ..producer.default import ENV_BROKER, ENV_CONFIG, from_environment
from ..producer.handles import AmbiguousJob
from .common import Fail as CtlError
from .common import OneLineGroup

DEFAULT_MAX_PAYLOAD = 1 << 20


class CtlGroup(OneLineGroup):
    """Broker errors become one line naming the broker (its password hidden)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (BrokerError, redislib.exceptions.RedisError) as exc:
            url = redact(ctx.obj.url) if isinstance(ctx.obj, Target) else "?"
            raise CtlError(f"broker {url}: {exc}", _exit_status(exc)) from None
        except AmbiguousJob as exc:
            raise CtlError(str(exc)) from None


def _exit_status(exc: Exception) -> int:
    """78 for broker data of a newer format (as `mpqueue run` exits), else 1."""
    return EX_CONFIG if isinstance(exc, DataFormatError) else 1


class Target:
    """What the global options point at: an optional service config and a broker,
    each opened on first use, so `push --broker URL` never reads a config.

    Without options, the environment a producer's `task.push()` uses
    (producer/default.py): MPQUEUE_BROKER, else the broker of MPQUEUE_CONFIG."""

    def __init__(self, config_file: str | None, service: str | None, broker_url: str | None):
        self.config_file, self.service, self.broker_url = config_file, service, broker_url
        self.config_given = bool(config_file or service)     # on the command line
        self.env_broker, env_config = from_environment()
        if not (config_file or service or broker_url):
            self.config_file = env_config

    @cached_property
    def config(self):
        if not (self.config_file or self.service):
            return None
        try:
            return load_config(self.config_file) if self.config_file else load_service(self.service)
        except ConfigError as exc:
            raise CtlError(str(exc), EX_CONFIG) from None

    @cached_property
    def url(self) -> str:
        given = self.broker_url or (self.config.broker if self.config_given else None)
        url = given or self.env_broker or (self.config.broker if self.config else None)
        if not url:
            raise CtlError(f"no broker: give --broker URL, --config FILE or --service NAME, "
                           f"or set {ENV_BROKER} or {ENV_CONFIG}", EX_USAGE)
        return url

    @cached_property
    def broker(self):
        try:
            return open_broker(self.url)
        except (BrokerError, ValueError) as exc:
            message = str(exc).replace(self.url, redact(self.url))
            raise CtlError(f"broker {redact(self.url)}: {message}", _exit_status(exc)) from None

    @property
    def max_payload(self) -> int:
        return self.config.max_payload if self.config else DEFAULT_MAX_PAYLOAD

    def config_queues(self) -> list[str]:
        return list(self.config.queues) if self.config else []

    def known_queues(self) -> list[str]:
        return sorted(set(self.config_queues()) | set(self.broker.queues()))

    def check_queue(self, queue: str, hint: str = "") -> None:
        """A queue nobody declared is most likely a typo: refuse rather than show zeros."""
        if queue in self.config_queues():
            return
        known = self.known_queues()
        if queue not in known:
            raise CtlError(f"unknown queue {queue!r} (known: {', '.join(known) or 'none'}){hint}")

    def close(self) -> None:
        if "broker" in self.__dict__:
            self.broker.close()


pass_target = click.make_pass_decorator(Target)


def emit(data, human) -> None:
    """Print `data` as JSON under --json, else `human` (a string or a callable making one)."""
    if click.get_current_context().meta.get("mpqctl.json"):
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        click.echo(human() if callable(human) else human)
