# Stop hooks for the Flask tests (on_worker_stop): they run inside the app's context, as start hooks do.
import redis
from flask import current_app


def on_stop(context):
    redis.Redis.from_url(current_app.config["RESULTS_URL"]).rpush("blog:stopped", f"{current_app.name} sync")


async def on_stop_async(context):
    redis.Redis.from_url(current_app.config["RESULTS_URL"]).rpush("blog:stopped", f"{current_app.name} async")
