import mpqueue
import redis
from flask import current_app


def results():
    return redis.Redis.from_url(current_app.config["RESULTS_URL"], decode_responses=True)


@mpqueue.task(queue="blog")
def welcome(name):
    # Runs inside app.app_context(): current_app is the app the worker built.
    results().rpush("blog:sent", f"{current_app.config['GREETING']}, {name}")


@mpqueue.task(queue="blog")
async def welcome_async(name):
    results().rpush("blog:sent", f"{current_app.config['GREETING']}, {name} (async)")
