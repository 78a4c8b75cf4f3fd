# A minimal Django project: one app (shop) and mpqueue's, on SQLite.
import os

SECRET_KEY = "only-for-the-tests"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
INSTALLED_APPS = ["mpqueue.contrib.django", "shop", "catalog"]
ROOT_URLCONF = "shop.urls"
MIDDLEWARE = []
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["SHOP_DB"]}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
# The service's YAML: task.push() and push_on_commit() need no mpqueue.connect().
MPQUEUE_CONFIG = os.environ.get("SHOP_MPQUEUE_CONFIG")
# Workers import every installed app's `tasks` module (catalog.tasks is in no `imports:`).
MPQUEUE_AUTODISCOVER = True
# Django's Tasks framework, enqueued into mpqueue: the django-tasks backport before
# Django 6 (it needs Django >= 4.2: none on Debian 12's 3.2).
try:
    import django.tasks  # noqa: F401
    _TASKS_FRAMEWORK = True
except ImportError:
    try:
        import django_tasks  # noqa: F401
        INSTALLED_APPS.append("django_tasks")
        _TASKS_FRAMEWORK = True
    except ImportError:
        _TASKS_FRAMEWORK = False
if _TASKS_FRAMEWORK:
    TASKS = {"default": {"BACKEND": "mpqueue.contrib.django.tasks.MpqueueBackend", "QUEUES": ["shop", "default"]}}
