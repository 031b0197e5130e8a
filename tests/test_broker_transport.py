"""workers/broker.py: kombu's Redis transport with one publishing client per thread."""

from __future__ import annotations

import threading

import redis
from kombu import Connection

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
