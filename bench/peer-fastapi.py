"""FastAPI/uvicorn peer for bench/stack.ts: GET /api/v1/models/{name} answering the same envelope and headers as
vireo, with no authentication, rate limit or logging at all (the peer's most favourable case).

    BENCH_BODY='{...}' BENCH_HEADERS='{...}' python3 bench/peer-fastapi.py   # prints "listening <url>"
"""

import json
import os
import socket
import uuid

import uvicorn
from fastapi import FastAPI, Response

BODY = os.environ.get("BENCH_BODY", "{}").encode()
HEADERS = {k: v for k, v in json.loads(os.environ.get("BENCH_HEADERS", "{}")).items() if k != "content-type"}

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/api/v1/models/{name}")
def model(name: str) -> Response:
    return Response(BODY, media_type="application/json", headers={**HEADERS, "x-request-id": str(uuid.uuid4())})


if __name__ == "__main__":
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    print(f"listening http://127.0.0.1:{port}/", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
