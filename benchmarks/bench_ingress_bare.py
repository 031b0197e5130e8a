"""The baseline of ``bench_ingress.py``: a bare Flask endpoint on the same URL that
reads the body and answers ``200 {}``, with nothing verified, stored or logged.

Served by the same server with the same worker count as the real ingress:
``gunicorn benchmarks.bench_ingress_bare:app`` / ``granian --interface wsgi ...``.
"""

from __future__ import annotations

from flask import Flask, Response, request

app = Flask(__name__)


@app.post("/agora/ncs")
def bare() -> Response:
    request.get_data()
    return Response(b"{}", mimetype="application/json")


@app.get("/healthz")
def healthz() -> Response:
    return Response(b'{"status":"ok"}', mimetype="application/json")
