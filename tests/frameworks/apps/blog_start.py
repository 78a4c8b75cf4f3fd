# Start hooks for the Flask tests: they run inside the app's context too.
import redis
from flask import current_app


def on_start(context):
    redis.Redis.from_url(current_app.config["RESULTS_URL"]).rpush("blog:booted", f"{current_app.name} sync")


async def on_start_async(context):
    redis.Redis.from_url(current_app.config["RESULTS_URL"]).rpush("blog:booted", f"{current_app.name} async")
