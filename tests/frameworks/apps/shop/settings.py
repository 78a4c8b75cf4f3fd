# A minimal Django project: one app (shop) and mpqueue's, on SQLite.
import os

SECRET_KEY = "only-for-the-tests"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
INSTALLED_APPS = ["mpqueue.contrib.django", "shop"]
ROOT_URLCONF = "shop.urls"
MIDDLEWARE = []
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["SHOP_DB"]}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
# The service's YAML: task.push() and push_on_commit() need no mpqueue.connect().
MPQUEUE_CONFIG = os.environ.get("SHOP_MPQUEUE_CONFIG")
