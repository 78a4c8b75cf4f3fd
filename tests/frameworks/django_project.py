"""The shop project's database, set up once per test process for whichever
Django test module comes first (Django's settings can be configured only once
per process; SHOP_DB reaches the services' workers through the environment)."""
import os


def setup_shop_db(tmp_path_factory):
    """Set Django up on shop.settings with a migrated database; returns what to
    restore in the environment afterwards."""
    import django
    from django.conf import settings

    saved = {k: os.environ.get(k) for k in ("SHOP_DB", "DJANGO_SETTINGS_MODULE")}
    if settings.configured:                   # an earlier module's: its database, for the workers too
        os.environ.update(SHOP_DB=str(settings.DATABASES["default"]["NAME"]), DJANGO_SETTINGS_MODULE="shop.settings")
        return saved
    db = tmp_path_factory.mktemp("shop") / "shop.sqlite3"
    os.environ.update(SHOP_DB=str(db), DJANGO_SETTINGS_MODULE="shop.settings")
    django.setup()
    from django.core.management import call_command
    call_command("migrate", run_syncdb=True, verbosity=0)
    return saved


def restore(saved) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
