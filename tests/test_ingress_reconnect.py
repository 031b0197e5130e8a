"""Finding 9: the ingress stores again as soon as Redis is back, after any number of
reconnects (a Redis restart, ``CLIENT KILL``, an idle ``timeout``), and ``/readyz``
follows Redis. Against the session's real Redis, through the app's own client."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from conftest import wait_for
from flask import Flask

from agora_callbacks import inbox, keys
from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.ingress.app import create_app
from agora_callbacks.ingress.inbox_writer import InboxWriter
from agora_callbacks.ingress.signature import sign_headers
from agora_callbacks.ingress.state import ingress_redis
from agora_callbacks.settings import Settings

URL = "/agora/ncs"
BODY = b'{"noticeId":"n","eventType":40,"payload":{"sid":"s","sequence":1}}'
HEADERS = {"Content-Type": "application/json", **sign_headers(BODY, "secret")}


def _meta(i: int) -> inbox.ReceiveMeta:
    return inbox.ReceiveMeta(received_ms=i, signature="v2", secret_index=0,
                             remote_addr="10.0.0.1", request_id=f"r{i}")


def _kill_clients(client: redis.Redis) -> int:
    """``CLIENT KILL TYPE normal`` (every normal client but the caller); how many died."""
    return int(client.client_kill_filter(_type="normal", skipme=True))


@pytest.fixture
def app(settings: Settings, redis_client: redis.Redis) -> Flask:
    return create_app(settings)


def test_writer_survives_150_client_kills(settings: Settings,
                                          redis_client: redis.Redis) -> None:
    writer = InboxWriter(ingress_redis(settings))
    for i in range(150):
        assert writer.store(b"body %d" % i, _meta(i))
        assert _kill_clients(redis_client) >= 1, f"round {i}: no connection to kill"
    writer.store(b"last", _meta(150))
    assert redis_client.xlen(keys.INBOX) == 151


def test_app_stores_and_is_ready_after_150_client_kills(app: Flask,
                                                        redis_client: redis.Redis) -> None:
    with app.test_client() as client:
        for i in range(150):
            assert client.post(URL, data=BODY, headers=HEADERS).status_code == 200, i
            assert client.get("/readyz").status_code == 200, i
            _kill_clients(redis_client)
        assert [client.post(URL, data=BODY, headers=HEADERS).status_code
                for _ in range(10)] == [200] * 10
        assert client.get("/readyz").status_code == 200
    assert redis_client.xlen(keys.INBOX) == 160


class _Load:
    """A few threads POSTing signed callbacks through the app, counting statuses, and
    when each thread last saw a 200."""

    def __init__(self, app: Flask, threads: int = 4) -> None:
        self.app = app
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.ok_after: dict[int, int] = {}  # thread -> count of 200s since `mark`
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                        for n in range(threads)]

    def _run(self, n: int) -> None:
        with self.app.test_client() as client:
            while not self.stop.is_set():
                status = client.post(URL, data=BODY, headers=HEADERS).status_code
                with self.lock:
                    self.statuses[status] += 1
                    if status == 200:
                        self.ok_after[n] = self.ok_after.get(n, 0) + 1

    def mark(self) -> None:
        with self.lock:
            self.ok_after.clear()

    def count(self, status: int) -> int:
        with self.lock:
            return self.statuses[status]

    def every_thread_stored(self) -> bool:
        with self.lock:
            return len(self.ok_after) == len(self.threads)

    def __enter__(self) -> _Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


@pytest.fixture
def load(app: Flask) -> Iterator[_Load]:
    with _Load(app) as running:
        yield running


def test_redis_restart_under_load_then_every_store_succeeds(
        app: Flask, load: _Load, redis_server: ServerProcess) -> None:
    wait_for(lambda: load.count(200) >= 20, message="the load to store")
    redis_server.stop()
    with app.test_client() as client:
        # A real outage under load: enough refused requests to have used up a pool of
        # 100 connections many times over, had each reconnect kept a slot.
        wait_for(lambda: load.count(503) >= 300, timeout=60,
                 message="300 requests refused while Redis is down")
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
        redis_server.start()
        load.mark()
        wait_for(load.every_thread_stored, timeout=30,
                 message="every load thread storing again after the restart")
        wait_for(lambda: client.get("/readyz").status_code == 200, timeout=10,
                 message="/readyz 200 after the restart")
        load.stop.set()
        statuses = [client.post(URL, data=BODY, headers=HEADERS).status_code
                    for _ in range(20)]
    assert statuses == [200] * 20


def test_two_restarts_in_a_row(app: Flask, redis_server: ServerProcess,
                               redis_client: redis.Redis) -> None:
    with app.test_client() as client:
        for _ in range(2):
            assert client.post(URL, data=BODY, headers=HEADERS).status_code == 200
            redis_server.stop()
            assert [client.post(URL, data=BODY, headers=HEADERS).status_code
                    for _ in range(120)] == [503] * 120
            assert client.get("/readyz").status_code == 503
            redis_server.start()
            assert client.post(URL, data=BODY, headers=HEADERS).status_code == 200
            assert client.get("/readyz").status_code == 200


def test_request_threads_coming_and_going_leave_the_pool_alone(
        settings: Settings, redis_client: redis.Redis) -> None:
    """granian ends an idle request thread and starts new ones: each new thread's
    connection must not hold a slot of the pool that ``/readyz`` (and every other
    call on the client) uses."""
    client = ingress_redis(settings)
    writer = InboxWriter(client)
    for i in range(150):
        thread = threading.Thread(target=writer.store, args=(b"t%d" % i, _meta(i)))
        thread.start()
        thread.join()
    assert redis_client.xlen(keys.INBOX) == 150
    assert client.ping()


def test_writer_stores_after_redis_closed_its_idle_connections(
        settings: Settings, redis_client: redis.Redis) -> None:
    """Redis's ``timeout`` closes a client idle that long: the thread's next store
    reconnects, every time."""
    writer = InboxWriter(ingress_redis(settings))
    redis_client.config_set("timeout", 1)
    try:
        for i in range(3):
            writer.store(b"before idle %d" % i, _meta(i))
            wait_for(lambda: not [c for c in redis_client.client_list(_type="normal")
                                  if c["cmd"] == "xadd"], timeout=10,
                     message="Redis to close the idle writer connection")
            writer.store(b"after idle %d" % i, _meta(i))
    finally:
        redis_client.config_set("timeout", 0)
    assert redis_client.xlen(keys.INBOX) == 6
