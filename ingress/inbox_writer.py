"""The ingress's write path to the inbox: one ``XADD`` per request, lean.

Same entry as ``agora_callbacks.inbox.store`` (fields from ``inbox.fields_for``), but
sent on a connection owned by the calling thread, as one RESP command written and
its one-line reply read straight on the connection's socket. redis-py's
``execute_command`` spends more CPU per command on its pool, retry, parser and
event machinery than the round trip itself, and at the ingress that is a large
share of a request's cost (see ``benchmarks/bench_ingress.py``).

Connections come from the client's pool factory (``make_connection``), and are
opened by redis-py (``connect``: TLS, AUTH, SELECT, HELLO), so the URL, credentials,
TLS, database and the short ``REDIS_TIMEOUT_S`` timeouts are the client's. A
connection error (a socket that died with a Redis restart) is retried once on a
fresh connection; a timeout is not retried, so a stalled Redis costs at most one
timeout before the 503. A retried XADD whose first copy did land makes a duplicate
entry, which the workers' deduplication drops. An error reply (``-OOM``,
``-READONLY``, ``-LOADING`` ...) raises ``redis.ResponseError``; the connection
stays usable.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agora_callbacks import forks, inbox, keys

_CRLF = b"\r\n"
_XADD = (b"XADD", keys.INBOX.encode(), b"*")
#: The fields of an ingress entry, in ``inbox.fields_for``'s order (a test holds the
#: two together); an entry with other fields (``origin``) takes the general path.
FIELDS = ("body", "rms", "sig", "key", "addr", "rid")


def _bulk(value: Any) -> bytes:
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return b"$%d\r\n%b\r\n" % (len(data), data)


_TEMPLATE = (b"*%d\r\n" % (len(_XADD) + 2 * len(FIELDS)) + b"".join(map(_bulk, _XADD))
             + b"".join(_bulk(name) + b"$%d\r\n%b\r\n" for name in FIELDS))


def pack_xadd(body: bytes, meta: inbox.ReceiveMeta) -> bytes:
    """The RESP bytes of the ``XADD <inbox> * body <body> rms ...`` that stores ``body``
    as ``inbox.fields_for`` describes it (one formatting step for the usual fields)."""
    if meta.origin is None:
        rms = b"%d" % meta.received_ms
        sig = meta.signature.encode()
        key = b"%d" % meta.secret_index
        addr = meta.remote_addr.encode()
        rid = meta.request_id.encode()
        return _TEMPLATE % (len(body), body, len(rms), rms, len(sig), sig, len(key), key,
                            len(addr), addr, len(rid), rid)
    fields = inbox.fields_for(body, meta)
    parts = [b"*%d\r\n" % (len(_XADD) + 2 * len(fields)), *map(_bulk, _XADD)]
    for name, value in fields.items():
        parts.append(_bulk(name))
        parts.append(_bulk(value))
    return b"".join(parts)


def parse_reply(data: bytes) -> tuple[int, str | None]:
    """``(bytes used, entry id)`` of the reply at the start of ``data``, or ``(0, None)``
    while it is incomplete. Raises ``ResponseError`` for an error reply and
    ``InvalidResponse`` for anything an XADD cannot answer."""
    end = data.find(_CRLF)
    if end < 0:
        return 0, None
    kind = data[:1]
    if kind == b"$":
        try:
            size = int(data[1:end])
        except ValueError:
            raise InvalidResponse(f"bad bulk length {data[:end]!r}") from None
        if size < 0:
            raise InvalidResponse("XADD answered nil")
        stop = end + 2 + size
        if len(data) < stop + 2:
            return 0, None
        return stop + 2, data[end + 2:stop].decode("ascii", "replace")
    if kind == b"-":
        raise ResponseError(data[1:end].decode("utf-8", "replace"))
    raise InvalidResponse(f"unexpected reply to XADD: {data[:end][:80]!r}")


def _read_reply(sock: socket.socket) -> str:
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise RedisConnectionError("Redis closed the connection")
        data += chunk
        used, entry_id = parse_reply(data)
        if used:
            if used != len(data):  # more than one reply: the connection is out of step
                raise InvalidResponse("unexpected extra data after the XADD reply")
            assert entry_id is not None
            return entry_id


def kernel_timeouts(sock: socket.socket) -> bool:
    """Move a plain socket's timeout from Python into the kernel (``SO_RCVTIMEO``,
    ``SO_SNDTIMEO``) and make it blocking; return whether it did.

    Python implements a socket timeout with a non-blocking socket: a ``recv`` that
    waits for Redis's reply is a failed ``recv``, a ``poll`` and a second ``recv``, and
    each of them releases and retakes the GIL, which with several request threads
    means thread switches. A blocking socket with the same timeout in the kernel
    waits in a single ``recv`` (``bench_ingress_costs.py``: about 9 us of CPU per
    request). A timeout then surfaces as ``BlockingIOError``. Linux only, and not for
    TLS sockets (``ssl`` needs Python's own timeout handling); others keep theirs.
    """
    timeout = sock.gettimeout()
    if (timeout is None or timeout <= 0 or type(sock) is not socket.socket
            or not sys.platform.startswith("linux")):
        return False
    micros = max(round(timeout * 1e6), 1)  # a zero timeval would mean "wait forever"
    timeval = struct.pack("@ll", micros // 1_000_000, micros % 1_000_000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    sock.settimeout(None)
    return True


class InboxWriter:
    """Append raw bodies to ``keys.INBOX``; thread-safe, fork-safe."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._local = threading.local()

    def _connection(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.fork != forks.generation:
            conn = self._pool.make_connection()  # a forked child never shares a socket
            local.conn = conn
            local.fork = forks.generation
        return conn

    def _socket(self, conn: Any) -> socket.socket:
        sock: socket.socket | None = getattr(conn, "_sock", None)
        if sock is None:
            conn.connect()  # handshake through redis-py (TLS, AUTH, SELECT, HELLO)
            sock = conn._sock
            assert sock is not None
            kernel_timeouts(sock)
        assert sock is not None
        return sock

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.disconnect()

    def store(self, body: bytes, meta: inbox.ReceiveMeta) -> str:
        """Append one entry in one round trip; return its id. Raises ``redis.RedisError``
        when Redis did not confirm it (the caller must not acknowledge)."""
        packed = pack_xadd(body, meta)
        for attempt in (0, 1):
            try:
                sock = self._socket(self._connection())
                sock.sendall(packed)
                return _read_reply(sock)
            except ResponseError:
                raise  # Redis answered: the connection is in step
            # Python's socket timeout, the kernel's (kernel_timeouts), redis-py's:
            except (TimeoutError, BlockingIOError, RedisTimeoutError) as exc:
                self._drop()
                if isinstance(exc, RedisTimeoutError):
                    raise
                raise RedisTimeoutError("Timeout waiting for Redis to store the body") from exc
            except (RedisConnectionError, OSError) as exc:
                self._drop()
                if attempt:
                    if isinstance(exc, RedisConnectionError):
                        raise
                    raise RedisConnectionError(f"Redis connection failed: {exc}") from exc
                continue
            except BaseException:
                self._drop()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._drop()
