"""The app for INSTALLED_APPS ("mpqueue.contrib.django"): no models; at start it
points `task.push()` at the service named by the MPQUEUE_CONFIG setting (the
service's YAML path) or MPQUEUE_BROKER (a broker URL), unless this process has
a client already (a worker has its own)."""
from __future__ import annotations

from django.apps import AppConfig


class MpqueueConfig(AppConfig):
    name = "mpqueue.contrib.django"
    label = "mpqueue"
    verbose_name = "mpqueue"

    def ready(self):
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        from ...producer import default

        for setting in ("MPQUEUE_BROKER", "MPQUEUE_CONFIG"):    # the environment's order: a URL wins
            target = getattr(settings, setting, None)
            if target:
                break
        else:
            return
        if default._default is not None:       # a worker, or connect() was called
            return
        try:
            default.connect(str(target))
        except Exception as exc:  # noqa: BLE001 - a bad path, YAML or URL: say which setting
            raise ImproperlyConfigured(f"{setting}: {exc}") from exc
