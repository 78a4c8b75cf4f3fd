"""gzip for the dashboard's answers when the client accepts it. Flask and werkzeug
(2.2 on Debian 12, 3.x elsewhere) ship no response compression, and the gate
serves werkzeug directly, so it is done here: after the request, for bodies
worth it (MIN_SIZE), never twice, never for partial or streamed answers."""
from __future__ import annotations

import gzip

from flask import request

MIN_SIZE = 1024
LEVEL = 5          # most of level 9's gain (JSON, tracebacks) at a fraction of its time


def accepts_gzip(header: str) -> bool:
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and _zero(q[2:]))
    return False


def _zero(value: str) -> bool:
    try:
        return float(value) == 0
    except ValueError:
        return False


def gzip_response(response):
    if (response.status_code != 200 or "Content-Encoding" in response.headers or request.method == "HEAD"
            or not accepts_gzip(request.headers.get("Accept-Encoding", ""))):
        return response
    response.direct_passthrough = False            # a static file: read it (a few KiB) to compress it
    data = response.get_data()
    response.vary.add("Accept-Encoding")
    if len(data) < MIN_SIZE:
        return response
    response.set_data(gzip.compress(data, LEVEL))
    response.headers["Content-Encoding"] = "gzip"
    return response
