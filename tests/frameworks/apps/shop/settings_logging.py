# shop's settings with a LOGGING that, like many, leaves disable_existing_loggers at its default (True).
from .settings import *  # noqa: F401,F403

LOGGING = {"version": 1, "handlers": {}, "loggers": {}}
