"""The ingress's inbox write path: same entries as ``inbox.store``, one per call, safe
across threads and forks, recovering from a Redis restart, on redis-py's public API."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

import pytest
import redis

from agora_callbacks import inbox, keys
from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.ingress.inbox_writer import FIELDS, InboxWriter, xadd_args
from agora_callbacks.ingress.state import ingress_redis
from agora_callbacks.settings import Settings


def _meta(i: int) -> inbox.ReceiveMeta:
    return inbox.ReceiveMeta(received_ms=1000 + i, signature="v1", secret_index=2,
                             remote_addr="10.0.0.1", request_id=f"r{i}")


def _entries(client: redis.Redis) -> list[inbox.InboxEntry]:
    rows = client.xrange(keys.INBOX)
    return [inbox.InboxEntry.from_stream(eid, f) for eid, f in rows]  # type: ignore[union-attr]


def test_entry_is_identical_to_inbox_store(settings: Settings,
                                           redis_client: redis.Redis) -> None:
    writer = InboxWriter(ingress_redis(settings))
    body = b'{"a": "\xc3\xa9"}\r\n'
    first = writer.store(body, _meta(1))
    second = inbox.store(redis_client, body, _meta(1))
    a, b = _entries(redis_client)
    assert (a.entry_id, b.entry_id) == (first, second)
    assert (a.body, a.meta) == (b.body, b.meta) == (body, _meta(1))


def test_threads_each_store_their_own(settings: Settings, redis_client: redis.Redis) -> None:
    writer = InboxWriter(ingress_redis(settings))
    ids: list[str] = []
    lock = threading.Lock()

    def run(t: int) -> None:
        for i in range(50):
            entry_id = writer.store(f"{t}-{i}".encode(), _meta(i))
            with lock:
                ids.append(entry_id)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 200
    assert sorted(e.body for e in _entries(redis_client)) == sorted(
        f"{t}-{i}".encode() for t in range(4) for i in range(50))


def test_a_forked_child_uses_its_own_connection(settings: Settings,
                                                redis_client: redis.Redis) -> None:
    writer = InboxWriter(ingress_redis(settings))
    writer.store(b"parent", _meta(0))
    parent_conn = writer.connection()
    pid = os.fork()
    if pid == 0:  # the child: exit status says whether it stored on a connection of its own
        try:
            own = writer.connection() is not parent_conn
            writer.store(b"child", _meta(1))
            os._exit(0 if own else 2)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    writer.store(b"parent again", _meta(2))
    assert [e.body for e in _entries(redis_client)] == [b"parent", b"child", b"parent again"]


def test_reconnects_after_a_redis_restart(settings: Settings, redis_client: redis.Redis,
                                          redis_server: ServerProcess) -> None:
    writer = InboxWriter(ingress_redis(settings))
    writer.store(b"before", _meta(0))
    redis_server.stop()
    redis_server.start()
    assert writer.store(b"after", _meta(1))  # the stale connection is retried once
    check = redis.Redis.from_url(redis_server.url)
    try:
        assert [e.body for e in _entries(check)] == [b"after"]
    finally:
        check.close()


def test_command_is_what_redis_py_sends_for_inbox_store() -> None:
    """The writer's XADD packs to the very bytes ``Redis.xadd`` sends for
    ``inbox.fields_for``'s entry, the usual fields and the general path (``origin``)."""
    conn = redis.Connection()
    body = b'{"sid": "\xe6\x9c\xa8"}\r\n\x00'
    for meta in (_meta(7), inbox.ReceiveMeta(1, "replay", -1, "", "r", origin="dlq:1-0")):
        args: list[object] = ["XADD", keys.INBOX, "*"]
        for name, value in inbox.fields_for(body, meta).items():
            args += [name, value]
        assert conn.pack_command(*xadd_args(body, meta)) == conn.pack_command(*args)
    assert tuple(inbox.fields_for(body, _meta(7))) == FIELDS


def test_an_error_reply_is_raised_and_the_connection_stays_usable(
        settings: Settings, redis_client: redis.Redis) -> None:
    writer = InboxWriter(ingress_redis(settings))
    redis_client.set(keys.INBOX, "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        writer.store(b"refused", _meta(0))
    redis_client.delete(keys.INBOX)
    conn = writer.connection()
    writer.store(b"stored", _meta(1))
    assert writer.connection() is conn
    assert [e.body for e in _entries(redis_client)] == [b"stored"]


def test_a_stalled_redis_times_out_once_then_recovers(
        settings: Settings, redis_client: redis.Redis, redis_server: ServerProcess) -> None:
    writer = InboxWriter(ingress_redis(dataclasses.replace(settings, redis_timeout_s=0.3)))
    writer.store(b"warm", _meta(0))
    assert redis_server.process is not None
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            writer.store(b"stalled", _meta(1))
        elapsed = time.monotonic() - started
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    assert elapsed < 1.0, f"a timeout is not retried: {elapsed:.2f}s"
    writer.store(b"after", _meta(2))  # on a fresh connection
    assert [e.body for e in _entries(redis_client)][-1] == b"after"
