# The same app with mpqueue connected for the app's life (signup.lifespan:app): at
# start-up the lifespan connects task.apush() to $SIGNUP_MPQUEUE_CONFIG's service;
# at shutdown it closes that connection. FastAPI >= 0.93 also takes it as
# FastAPI(lifespan=...); Debian 12's 0.92 does not, hence the router's attribute.
import os

from fastapi import FastAPI

from mpqueue.contrib.asgi import lifespan

from .tasks import send_welcome

app = FastAPI()
app.router.lifespan_context = lifespan(os.environ.get("SIGNUP_MPQUEUE_CONFIG"))


@app.post("/signup")
async def signup(email: str):
    job_id = await send_welcome.apush(email)
    return {"job": job_id}


@app.post("/signup/wait")
async def signup_and_wait(email: str):
    job = await send_welcome.apush(email)
    await job.aresult(timeout=10)         # the job ran: the e-mail is sent
    return {"job": job, "sent": True}
