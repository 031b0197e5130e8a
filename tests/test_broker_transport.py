"""workers/broker.py: kombu's Redis transport with one publishing client per thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis
from kombu import Connection
from kombu.transport import redis as kombu_redis

from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.settings import Settings
from agora_callbacks.workers.app import celery_config
from agora_callbacks.workers.broker import Transport


def test_redis_urls_use_it_and_tls_or_socket_urls_keep_kombus(settings: Settings) -> None:
    assert celery_config(settings)["broker_transport"] == "agora_callbacks.workers.broker:Transport"
    for url in ("rediss://example.invalid:6380/0", "unix:///tmp/redis.sock"):
        other = Settings.from_env({"REDIS_URL": url, "AGORA_NCS_SECRETS": "s"})
        assert "broker_transport" not in celery_config(other)


def test_publishes_reuse_one_client_per_thread_and_reach_the_queue(
        settings: Settings, redis_client: redis.Redis) -> None:
    with Connection(settings.redis_url, transport=Transport) as conn:
        channel = conn.default_channel
        queue = conn.SimpleQueue("t-broker")
        clients = []
        for n in range(3):
            queue.put({"n": n})
            with channel.conn_or_acquire() as client:
                clients.append(client)
        assert clients[0] is clients[1] is clients[2]
        other: list[object] = []

        def in_thread() -> None:
            with channel.conn_or_acquire() as client:
                other.append(client)

        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()
        assert other[0] is not clients[0]
        assert [queue.get(timeout=5).payload["n"] for _ in range(3)] == [0, 1, 2]
        queue.close()


@pytest.mark.parametrize("url", [
    "redis://h:6379/0", "rediss://h:6380/0", "valkey://h:6379/0", "valkeys://h:6380/0",
    "unix:///run/redis.sock", "unix://:pw@/run/redis.sock?db=2",
])
def test_every_redis_broker_url_settings_accept_names_a_kombu_transport(url: str) -> None:
    """Settings accept these schemes for CELERY_BROKER_URL (and REDIS_URL, the
    default broker); kombu knows ``redis``, ``rediss`` and ``redis+socket``, not
    ``unix``, ``valkey`` or ``valkeys``: a worker given one stopped with "No such
    transport"."""
    conf = celery_config(Settings.from_env({"CELERY_BROKER_URL": url}))
    conn = Connection(conf["broker_url"], transport=conf.get("broker_transport"))
    assert isinstance(conn.transport, kombu_redis.Transport)


def test_a_unix_socket_broker_carries_messages_to_its_db(tmp_path: Path) -> None:
    """``unix://:password@/path?db=N`` (redis-py's form) reaches that socket, with
    that password, in that db."""
    sock = tmp_path / "r.sock"
    server = ServerProcess(tmp_path, extra_args=("--unixsocket", str(sock)))
    server.start()
    try:
        with redis.Redis(unix_socket_path=str(sock)) as admin:
            admin.config_set("requirepass", "pw")
        url = f"unix://:pw@{sock}?db=2"
        conf = celery_config(Settings.from_env({"CELERY_BROKER_URL": url}))
        with Connection(conf["broker_url"], transport=conf.get("broker_transport")) as conn:
            queue = conn.SimpleQueue("t-unix")
            queue.put({"n": 1})
            direct = redis.Redis(unix_socket_path=str(sock), password="pw", db=2)
            assert direct.llen("t-unix") == 1
            message = queue.get(timeout=5)
            assert message.payload == {"n": 1}
            message.ack()
            queue.close()
            direct.close()
    finally:
        server.stop()
