"""The ingress's lean inbox write path: same entries as ``inbox.store``, one per call,
safe across threads and forks, recovering from a Redis restart."""

from __future__ import annotations

import os
import threading

import redis

from agora_callbacks import inbox, keys
from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.settings import Settings
from ingress.inbox_writer import InboxWriter
from ingress.state import ingress_redis


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
    parent_conn = writer._connection()
    pid = os.fork()
    if pid == 0:  # the child: exit status says whether it stored on a connection of its own
        try:
            own = writer._connection() is not parent_conn
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
