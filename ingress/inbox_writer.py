"""The ingress's write path to the inbox: one ``XADD`` per request, on redis-py's
public connection API.

Same entry as ``agora_callbacks.inbox.store`` (fields from ``inbox.fields_for``), sent
on a ``redis.connection.Connection`` owned by the calling thread: ``send_command``
then ``read_response``. That skips what ``Redis.execute_command`` adds per call (a
pool checkout and return under its lock, the retry wrapper, response callbacks),
which measured as a large share of a request's CPU at the ingress
(``benchmarks/bench_ingress.py``), and nothing else: packing, the parser (hiredis
when installed), timeouts, health checks and the handshake (TLS, AUTH, SELECT,
HELLO) are redis-py's.

Each thread's connection is built from the client's pool settings
(``connection_class(**connection_kwargs)``), not taken from the pool: it never holds
one of the pool's slots, so reconnecting any number of times (a Redis restart, a
failover, ``CLIENT KILL``, an idle ``timeout``) and request threads coming and going
leave the pool that ``/readyz`` uses alone. A thread's connection is closed when the
thread ends (or in a forked child, replaced: a child never shares a socket).

A connection error (a socket that died with a Redis restart) is retried once on a
fresh connection; a timeout is not retried, so a stalled Redis costs at most one
timeout (``REDIS_TIMEOUT_S``) before the 503. A retried XADD whose first copy did
land makes a duplicate entry, which the workers' deduplication drops. An error reply
(``-OOM``, ``-READONLY``, ``-LOADING`` ...) raises ``redis.ResponseError``; the
connection stays usable.
"""

from __future__ import annotations

import threading

import redis
from redis.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agora_callbacks import forks, inbox, keys

_XADD = ("XADD", keys.INBOX, "*")
#: The fields of an ingress entry, in ``inbox.fields_for``'s order (a test holds the
#: two together); an entry with other fields (``origin``) takes the general path.
FIELDS = ("body", "rms", "sig", "key", "addr", "rid")


def xadd_args(body: bytes, meta: inbox.ReceiveMeta) -> list[object]:
    """The arguments of the ``XADD <inbox> * body <body> rms ...`` that stores ``body``
    as ``inbox.fields_for`` describes it (the usual fields without building its dict:
    about 2 us per request)."""
    if meta.origin is None:
        return ["XADD", keys.INBOX, "*", "body", body, "rms", meta.received_ms,
                "sig", meta.signature, "key", meta.secret_index, "addr", meta.remote_addr,
                "rid", meta.request_id]
    args: list[object] = [*_XADD]
    for name, value in inbox.fields_for(body, meta).items():
        args.append(name)
        args.append(value)
    return args


class InboxWriter:
    """Append raw bodies to ``keys.INBOX``; thread-safe, fork-safe."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._local = threading.local()

    def connection(self) -> AbstractConnection:
        """The calling thread's connection (made on first use, and again after a fork)."""
        local = self._local
        conn: AbstractConnection | None = getattr(local, "conn", None)
        if conn is None or local.fork != forks.generation:
            pool = self._pool
            conn = pool.connection_class(**pool.connection_kwargs)
            local.conn = conn
            local.fork = forks.generation
        return conn

    def store(self, body: bytes, meta: inbox.ReceiveMeta) -> str:
        """Append one entry in one round trip; return its id. Raises ``redis.RedisError``
        when Redis did not confirm it (the caller must not acknowledge)."""
        args = xadd_args(body, meta)
        for attempt in (0, 1):
            conn = self.connection()
            try:
                conn.send_command(*args)
                entry_id = conn.read_response()
            except ResponseError:
                raise  # Redis answered: the connection is in step
            except RedisTimeoutError:
                conn.disconnect()
                raise
            except RedisConnectionError:
                conn.disconnect()  # the next call connects afresh
                if attempt:
                    raise
                continue
            except BaseException:
                conn.disconnect()
                raise
            return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the calling thread's connection (others close when their thread ends)."""
        conn: AbstractConnection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.disconnect()
