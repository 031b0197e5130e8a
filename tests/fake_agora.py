"""A local fake of Agora's Cloud Recording REST API (``query`` only), for the tests.

A real HTTP server (a Flask app served by werkzeug's ``make_server`` in a thread, on a
free port) answering ``GET /v1/apps/<appid>/cloud_recording/resourceid/<rid>/sid/<sid>
/mode/<mode>/query`` from the responses documented by Agora (``query.mdx``,
``status-codes.mdx``): 200 with each ``fileListMode``, web page recording's
``extensionServiceState``, ``404 {"code": 404, "reason": "failed to find worker"}``,
``{code, reason}`` errors, ``401 {"message": ...}`` for wrong credentials,
``404 {"message": "no Route matched with those values"}`` for any other path.

``proxy_404`` puts a proxy in front of it (or points ``AGORA_REST_URL`` at the wrong
server): while set to one of ``PROXY_404``'s names, every request is answered by that
404, which is not Agora's (an HTML page, an empty body, JSON without Agora's shape);
requests on the ``query`` path are still recorded in ``hits``.

Each sid is given a script: a list of ``Reply`` played in order, the last one
repeated. A reply may be delayed (``delay_s``), sent in ten pieces ``drip_s`` apart
(a slow answer whose bytes keep coming), or be raw bytes with its own headers (an
answer that does not decode). Every request is recorded with its arrival time
(``time.time()``) for the rate-limit checks.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.serving import WSGIRequestHandler, make_server

APP_ID = "0123456789abcdef0123456789abcdef"
CUSTOMER_ID = "customer-id"
CUSTOMER_SECRET = "customer-secret"  # test value only

# The documented bodies (Agora's Docs-Source, query.mdx / status-codes.mdx; the web
# example is shared/realworld/bodies/agora-docs-query_1.json).
NOT_FOUND = {"code": 404, "reason": "failed to find worker"}
TIMEOUT_62 = {"code": 62, "reason": "request timeout"}
NOT_COMPLETED_65 = {"code": 65, "reason": "request not completed"}
BAD_REQUEST_2 = {"code": 2, "reason": "invalid parameters"}
# Agora's 404 as integrators saw it (a public issue's stop answer, values ours):
# ``code`` beside the session's ids, the reason under ``serverResponse.payload``.
NOT_FOUND_SESSION = {"cname": "room", "code": 404, "resourceId": "resource-id",
                     "sid": "sid", "uid": "527841",
                     "serverResponse": {"command": "StopCloudRecorder",
                                        "payload": {"message": "failed to find worker"},
                                        "subscribeModeBitmask": 1, "vid": "1209"}}
#: 404s that are not Agora's: (body, Content-Type) by name (``FakeAgora.proxy_404``).
PROXY_404: dict[str, tuple[bytes, str]] = {
    "html": (b"<html><head><title>404 Not Found</title></head><body><center>"
             b"<h1>404 Not Found</h1></center><hr><center>nginx</center></body></html>",
             "text/html"),
    "empty": (b"", "text/plain"),
    "json": (b'{"error": "Not Found", "status": 404, "path": "/v1/apps"}',
             "application/json"),
}


def ok_string(sid: str, resource_id: str, status: int = 5, name: str = "x.m3u8") -> dict[str, Any]:
    """Composite recording with ``avFileType: ["hls"]``: ``fileListMode: "string"``."""
    return {"resourceId": resource_id, "sid": sid, "cname": "room", "uid": "527841",
            "serverResponse": {"status": status, "fileListMode": "string",
                               "fileList": name, "sliceStartTime": 1606357122528}}


def ok_json(sid: str, resource_id: str, status: int = 5,
            files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``avFileType: ["hls", "mp4"]``: ``fileListMode: "json"`` (sliceStartTime in s)."""
    files = files if files is not None else [
        {"fileName": f"{sid}_room.m3u8", "trackType": "audio_and_video", "uid": "0",
         "mixedAllUser": True, "isPlayable": True, "sliceStartTime": 1619172632},
        {"fileName": f"{sid}_room_0.mp4", "trackType": "audio_and_video", "uid": "0",
         "mixedAllUser": True, "isPlayable": True, "sliceStartTime": 1619172632},
    ]
    return {"resourceId": resource_id, "sid": sid, "cname": "room", "uid": "527841",
            "serverResponse": {"status": status, "fileListMode": "json", "fileList": files}}


def ok_web(sid: str, resource_id: str, status: int = 5, state: str = "inProgress",
           onhold: bool = False) -> dict[str, Any]:
    """Web page recording: ``extensionServiceState`` (the documented example's shape)."""
    return {"cname": "httpClient463224", "uid": "527841", "resourceId": resource_id,
            "sid": sid,
            "serverResponse": {"status": status, "extensionServiceState": [
                {"payload": {"fileList": [{"filename": f"{sid}_web.m3u8",
                                           "sliceStartTime": 1619172632}],
                             "onhold": onhold, "state": state},
                 "serviceName": "web_recorder_service"},
                {"payload": {"outputs": [{"rtmpUrl": "rtmp://cdn.example/live/x",
                                          "status": "publishing"}],
                             "state": "inProgress"},
                 "serviceName": "rtmp_publish_service"},
            ]}}


class _Quiet(WSGIRequestHandler):
    """No access log line per request (the rate tests make a hundred)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    delay_s: float = 0.0
    drip_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def _dripping(data: bytes, pause_s: float, pieces: int = 10) -> Iterator[bytes]:
    size = max(1, -(-len(data) // pieces))
    for start in range(0, len(data), size):
        yield data[start:start + size]
        time.sleep(pause_s)


def _response(reply: Reply) -> Response:
    data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
    body: bytes | Iterator[bytes] = _dripping(data, reply.drip_s) if reply.drip_s else data
    response = Response(body, status=reply.status, mimetype="application/json")
    response.headers.update(reply.headers)
    return response


@dataclass
class Hit:
    at: float
    sid: str
    mode: str
    resource_id: str


@dataclass
class FakeAgora:
    """The server; ``url`` once started."""

    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    url: str = ""
    #: A name of ``PROXY_404``: every request answered by that 404 (None: Agora answers).
    proxy_404: str | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._played: Counter[str] = Counter()
        self.app = self._build()

    def script(self, sid: str, *replies: Reply) -> None:
        with self._lock:
            self.scripts[sid] = list(replies)
            self._played[sid] = 0

    def hits_for(self, sid: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.sid == sid]

    def max_per_second(self) -> int:
        """The most requests that arrived within one second window (``int(at)``)."""
        with self._lock:
            windows = Counter(int(h.at) for h in self.hits)
        return max(windows.values(), default=0)

    def max_in_any_second(self) -> int:
        """The most requests that arrived within any 1 s interval (sliding)."""
        with self._lock:
            times = sorted(h.at for h in self.hits)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= 1.0:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def _next(self, sid: str) -> Reply:
        with self._lock:
            replies = self.scripts.get(sid) or [Reply(404, NOT_FOUND)]
            index = min(self._played[sid], len(replies) - 1)
            self._played[sid] += 1
            return replies[index]

    def _build(self) -> Flask:
        app = Flask("fake_agora")
        expected = "Basic " + base64.b64encode(
            f"{CUSTOMER_ID}:{CUSTOMER_SECRET}".encode()).decode()

        @app.before_request
        def proxy() -> Response | None:
            if self.proxy_404 is None:
                return None
            args = request.view_args or {}
            if "sid" in args:
                with self._lock:
                    self.hits.append(Hit(time.time(), args["sid"], args["mode"], args["rid"]))
            body, content_type = PROXY_404[self.proxy_404]
            return Response(body, status=404, content_type=content_type)

        @app.get("/v1/apps/<appid>/cloud_recording/resourceid/<rid>/sid/<sid>/mode/<mode>/query")
        def query(appid: str, rid: str, sid: str, mode: str) -> Response | tuple[Response, int]:
            arrived = time.time()
            if request.headers.get("Authorization") != expected:
                return jsonify({"message": "Invalid authentication credentials"}), 401
            if appid != APP_ID or mode not in ("individual", "mix", "web"):
                return jsonify({"code": 2, "reason": "invalid appid or mode"}), 400
            with self._lock:
                self.hits.append(Hit(arrived, sid, mode, rid))
            reply = self._next(sid)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            return _response(reply)

        @app.errorhandler(404)
        def no_route(_: Exception) -> tuple[Response, int]:
            return jsonify({"message": "no Route matched with those values"}), 404

        return app

    def start(self) -> None:
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True,
                                   request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)


def credentials(url: str) -> dict[str, str]:
    """The environment that turns reconciliation on against ``url`` (test values)."""
    return {"AGORA_APP_ID": APP_ID, "AGORA_CUSTOMER_ID": CUSTOMER_ID,
            "AGORA_CUSTOMER_SECRET": CUSTOMER_SECRET, "AGORA_REST_URL": url}
