# A minimal FastAPI app (signup.api:app): its handler pushes without blocking the event loop.
# task.apush() goes to the service named by $MPQUEUE_CONFIG (or mpqueue.connect()).
from fastapi import FastAPI

from .tasks import send_welcome

app = FastAPI()


@app.post("/signup")
async def signup(email: str):
    job_id = await send_welcome.apush(email)
    return {"job": job_id}


@app.post("/signup/wait")
async def signup_and_wait(email: str):
    # Waits for the job's end (at most 10 s) without blocking the loop or holding a thread.
    job = await send_welcome.apush(email)
    return {"job": job, "result": await job.aresult(timeout=10)}
