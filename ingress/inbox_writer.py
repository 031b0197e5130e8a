"""The ingress's write path to the inbox: one ``XADD`` per request, lean.

Same entry as ``agora_callbacks.inbox.store`` (fields from ``inbox.fields_for``), but
sent on a connection owned by the calling thread instead of going through
``redis.Redis.execute_command``: redis-py 8 spends about 60-80 us of CPU per command
on its pool, retry and event machinery, more than the round trip itself, and at the
ingress that is a third of a request's cost (see ``benchmarks/bench_ingress.py``).

Connections come from the client's pool factory (``make_connection``), so the URL,
credentials, TLS, database and the short ``REDIS_TIMEOUT_S`` timeouts are the
client's. A connection error (a socket that died with a Redis restart) is retried
once on a fresh connection; a timeout is not retried, so a stalled Redis costs at
most one timeout before the 503. A retried XADD whose first copy did land makes a
duplicate entry, which the workers' deduplication drops.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agora_callbacks import inbox, keys


class InboxWriter:
    """Append raw bodies to ``keys.INBOX``; thread-safe, fork-safe."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._local = threading.local()

    def _connection(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            conn = self._pool.make_connection()
            local.conn = conn
            local.pid = os.getpid()
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.disconnect()

    def store(self, body: bytes, meta: inbox.ReceiveMeta) -> str:
        """Append one entry in one round trip; return its id. Raises ``redis.RedisError``
        when Redis did not confirm it (the caller must not acknowledge)."""
        args: list[Any] = ["XADD", keys.INBOX, "*"]
        for name, value in inbox.fields_for(body, meta).items():
            args.append(name)
            args.append(value)
        for attempt in (0, 1):
            conn = self._connection()
            packed = conn.pack_command(*args)
            try:
                conn.send_packed_command(packed, check_health=False)
                reply = conn.read_response()
            except RedisTimeoutError:
                self._drop()
                raise
            except RedisConnectionError:
                self._drop()
                if attempt:
                    raise
                continue
            except BaseException:
                self._drop()
                raise
            return reply.decode() if isinstance(reply, bytes) else str(reply)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._drop()
