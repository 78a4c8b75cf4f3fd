"""The app for INSTALLED_APPS ("mpqueue.contrib.django"): no models; at start it
makes `task.push()` use the service named by the MPQUEUE_BROKER setting (a
broker URL) or MPQUEUE_CONFIG (the service's YAML path), unless the environment
names one (it wins: producer/default.py) or this process has a client already
(a worker has its own; so has a process that called connect()).

The settings are read again at each push (a client kept per target), so a test's
`override_settings(MPQUEUE_BROKER="sync://")` applies too; a bad value is
refused at start with ImproperlyConfigured naming the setting."""
from __future__ import annotations

from django.apps import AppConfig


class MpqueueConfig(AppConfig):
    name = "mpqueue.contrib.django"
    label = "mpqueue"
    verbose_name = "mpqueue"

    def ready(self):
        from ...producer import default

        if default._default is not None:       # a worker, or connect() was called
            return
        settings_client()                      # a bad setting stops Django now, not at the first push
        default.add_source(settings_client)


_clients: dict = {}      # target -> Client: one per URL or YAML path, made when first needed


def settings_client():
    """The client the environment or the settings name (None if neither does),
    running sync:// jobs with Django's connection handling, as a worker does."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from ...producer import default
    from .worker import InlineDjangoScope

    target, origin = default.target(getattr(settings, "MPQUEUE_BROKER", None),
                                    getattr(settings, "MPQUEUE_CONFIG", None))
    if target is None:
        return None
    if target not in _clients:
        try:
            _clients[target] = default.make_client(target, scope=InlineDjangoScope())
        except Exception as exc:  # noqa: BLE001 - a bad path, YAML or URL: say which setting
            raise ImproperlyConfigured(f"{origin}: {exc}") from exc
    return _clients[target]
