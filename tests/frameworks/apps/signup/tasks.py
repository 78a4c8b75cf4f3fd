import os

import mpqueue
import redis


@mpqueue.task(queue="signup")
def send_welcome(email):
    redis.Redis.from_url(os.environ["MPQ_TEST_REDIS"]).rpush("signup:sent", email)
