"""Test fixtures shared by every test module.

One Redis-compatible server per test session, started on a free port from the
embedded valkey-server (or redis-server on PATH), flushed around each test. Tests
may stop and restart it (``redis_server.stop()`` / ``.start()``) to test faults; the
``redis_server`` fixture restarts it if a test left it down.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.settings import Settings

SECRET = "secret"

# The tests choose the Celery broker themselves (the `broker` fixture): a
# CELERY_BROKER_URL from the developer's shell must not reach the test process's
# Celery app (created when a test module imports agora_callbacks.workers.app).
os.environ.pop("CELERY_BROKER_URL", None)
# Until the session's Redis starts (``_redis_process``), REDIS_URL names a port where
# nothing listens: a Celery app or client made at collection time from the
# environment fails loudly instead of writing to a Redis the tests do not own (such
# as a shared one on the default port).
os.environ["REDIS_URL"] = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="session")
def _redis_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    os.environ["REDIS_URL"] = server.url
    yield server
    server.stop()


@pytest.fixture
def redis_server(_redis_process: ServerProcess) -> Iterator[ServerProcess]:
    """The session's server; restarted after the test if the test stopped it."""
    if not _redis_process.running:
        _redis_process.start()
    yield _redis_process
    if not _redis_process.running:
        _redis_process.start()


@pytest.fixture
def redis_client(redis_server: ServerProcess) -> Iterator[redis.Redis]:
    """A client to the session's server, flushed before and after the test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    if redis_server.running:
        client.flushall()
    client.close()


@pytest.fixture
def settings(redis_server: ServerProcess) -> Settings:
    """Settings for a test: the session's Redis, the test-vector secret."""
    return Settings.from_env(
        {"REDIS_URL": redis_server.url, "AGORA_NCS_SECRETS": SECRET, "LOG_FORMAT": "json"}
    )


def wait_for(condition: Callable[[], object], timeout: float = 20.0, interval: float = 0.01,
             message: str = "condition") -> object:
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


#: The brokers a test marked ``both_brokers`` runs against (``broker`` fixture).
BROKERS = ("redis", "amqp")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_brokers: run the test once with Redis and once with RabbitMQ as "
                   "the Celery broker (the `broker` fixture; `start_worker` uses it)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
            "both_brokers"):
        metafunc.parametrize("broker", BROKERS, indirect=True)


@pytest.fixture(scope="session")
def amqp_vhost() -> Iterator[Any]:
    """A RabbitMQ virtual host of this session's own (``tests/brokers.py``), deleted
    at the end; or the reason there is none (the RabbitMQ tests then skip where no
    RabbitMQ answers, and fail otherwise: see ``broker``)."""
    import brokers

    reason = brokers.rabbitmq_answers()
    vhost = reason if reason else brokers.create_vhost()
    yield vhost
    if isinstance(vhost, brokers.VirtualHost):
        vhost.delete()


@pytest.fixture
def broker(request: pytest.FixtureRequest, redis_server: ServerProcess) -> Iterator[Any]:
    """The Celery broker of the test's workers: the session's Redis unless the test
    is parametrized (``both_brokers``) with ``amqp``; RabbitMQ's queues are purged
    before and after the test."""
    import brokers

    kind = getattr(request, "param", "redis")
    if kind == "redis":
        yield brokers.Broker("redis", redis_server.url)
        return
    vhost = request.getfixturevalue("amqp_vhost")
    if isinstance(vhost, str):
        if vhost.startswith("no RabbitMQ answers"):
            pytest.skip(vhost)
        # RabbitMQ is there, but the tests cannot have a virtual host of their own:
        # a broken test setup, not a reason to pass quietly.
        pytest.fail(vhost)
    found = brokers.Broker("amqp", vhost.url, vhost)
    found.purge()
    yield found
    found.purge()


@pytest.fixture
def start_worker(redis_client: redis.Redis, redis_server: ServerProcess, broker: Any,
                 tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start real ``celery worker`` processes (``tests/workers_procs.Worker``) on the
    session's Redis and the test's ``broker``, each ready when returned; all
    stopped after the test."""
    from workers_procs import Worker

    started: list[Worker] = []

    def start(name: str, **kwargs: Any) -> Worker:
        if broker.kind != "redis":
            kwargs.setdefault("broker_url", broker.url)
        worker = Worker(redis_server.url, name, log_dir=tmp_path, **kwargs)
        started.append(worker)
        worker.wait_ready(redis_client)
        return worker

    yield start
    for worker in started:  # all shut down at once, then each is waited for
        worker.begin_stop()
    for worker in started:
        worker.stop()


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def fake() -> Iterator[Any]:
    """A local fake of Agora's REST API (``tests/fake_agora.py``) on a free port."""
    from fake_agora import FakeAgora

    server = FakeAgora()
    server.start()
    yield server
    server.stop()
