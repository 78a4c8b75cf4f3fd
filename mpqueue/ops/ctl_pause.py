"""`mpqctl pause` and `mpqctl resume`: stop a queue taking jobs, on every node,
without stopping any service, and let it go on. The pause is the broker's
(Broker.pause): it lasts across restarts until resumed."""
from __future__ import annotations

import click

from .ctl_params import QueueName, json_option
from .ctl_target import emit, pass_target


@click.command()
@click.argument("queue", type=QueueName())
@json_option
@pass_target
def pause(target, queue):
    """Pause QUEUE: no worker of any node takes its jobs until `mpqctl resume`;
    running jobs finish, pushes still enqueue, delayed jobs still fall due. It
    lasts across restarts. Pausing a paused queue changes nothing (exit 0).

    \b
    JSON: {"queue": name, "paused": true, "changed": true | false}
    ("changed": false when it was paused already)
    """
    target.check_queue(queue)
    changed = target.broker.pause(queue)
    emit({"queue": queue, "paused": True, "changed": changed},
         f"queue {queue} paused: workers take no new jobs; running ones finish" if changed
         else f"queue {queue} already paused")


@click.command()
@click.argument("queue", type=QueueName())
@json_option
@pass_target
def resume(target, queue):
    """Resume a paused QUEUE: its waiting jobs start at once. Resuming a queue
    that is not paused changes nothing (exit 0).

    \b
    JSON: {"queue": name, "paused": false, "changed": true | false}
    ("changed": false when it was not paused)
    """
    target.check_queue(queue)
    changed = target.broker.resume(queue)
    emit({"queue": queue, "paused": False, "changed": changed},
         f"queue {queue} resumed: workers take its jobs again" if changed else f"queue {queue} is not paused")
