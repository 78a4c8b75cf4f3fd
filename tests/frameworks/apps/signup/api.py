# A minimal FastAPI app (signup.api:app): its handler pushes without blocking the event loop.
# task.apush() goes to the service named by $MPQUEUE_CONFIG (or mpqueue.connect()).
from fastapi import FastAPI

from .tasks import send_welcome

app = FastAPI()


@app.post("/signup")
async def signup(email: str):
    job_id = await send_welcome.apush(email)
    return {"job": job_id}
