"""kombu's Redis transport, with one publishing client per channel and thread.

kombu's Redis channel builds a new ``redis.Redis`` client for every message it
publishes (``Channel.conn_or_acquire`` without a client). With redis-py 8 that
costs about a millisecond of CPU per message on the development VM (building a
client upper-cases some 170 response-callback names), more than the rest of the
publish. The workers publish one handler task per event from the worker itself,
so they keep one client per channel and thread instead, on the channel's own
connection pool (``benchmarks/bench_workers.py`` measures the difference).

The same method turns a publish or an acknowledgement on a channel whose
connection was lost into a ``redis.ConnectionError`` (kombu would fail with an
``AttributeError`` that stops the worker), so that a worker rides out a Redis
outage. Only the public ``conn_or_acquire``, ``Client``, ``pool`` and
``connection`` of kombu's channel and the transport's ``client`` are used.
``agora_callbacks.workers.app`` selects this transport for ``redis://`` broker URLs;
``rediss://`` and ``unix://`` URLs keep kombu's own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    """A Redis channel that reuses one client per thread for publishing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.agora_clients = threading.local()

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if getattr(self.connection, "client", None) is None:
            # The transport was collected after a lost broker connection (its
            # kombu Connection is gone): kombu's channel would build a pool from
            # it and fail with AttributeError, which Celery takes for an
            # unrecoverable error and exits. A connection error is what kombu and
            # Celery expect here: they reconnect and go on (finding 10).
            raise redis.ConnectionError("the broker connection is closed")
        pool = self.pool
        cached = getattr(self.agora_clients, "client", None)
        if cached is None or cached.connection_pool is not pool:
            options: dict[str, Any] = {"connection_pool": pool}
            provider = pool.connection_kwargs.get("credential_provider")
            if provider is not None:
                options["credential_provider"] = provider
            cached = self.Client(**options)
            self.agora_clients.client = cached
        yield cached


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with ``Channel`` above."""

    Channel = Channel
