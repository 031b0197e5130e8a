"""The Celery brokers the worker tests run against: the session's Redis, or RabbitMQ.

RabbitMQ (``RABBITMQ_URL``, default ``amqp://guest:guest@127.0.0.1:5672``) is used
only in a virtual host of the test session's own, created at its start and deleted
at its end: through RabbitMQ's management HTTP API (port 15672) where it answers,
else with ``rabbitmqctl`` where it is installed and allowed (this kind of machine
has no management plugin enabled, and rabbitmqctl works as root). Where no
RabbitMQ answers, the RabbitMQ tests skip and say why; where one answers but no
virtual host can be made, they fail and say why (``conftest.broker``).

Between tests, the queues the workers use are purged (``Broker.purge``): a handler
task left in a queue by one test (a killed worker's message, a publish to a queue
nobody consumes) never reaches the next.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import kombu

from agora_callbacks.workers.application import DEFAULT_QUEUE

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
MANAGEMENT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
#: The workers' default queue, the one handler tasks go to.
QUEUES = (DEFAULT_QUEUE,)


def _parts() -> urllib.parse.SplitResult:
    return urllib.parse.urlsplit(RABBITMQ_URL)


def rabbitmq_answers(timeout: float = 2.0) -> str | None:
    """None if RabbitMQ accepts an AMQP connection at ``RABBITMQ_URL``, else why not."""
    parts = _parts()
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672),
                                      timeout=timeout):
            pass
    except OSError as exc:
        return f"no RabbitMQ answers at {parts.hostname}:{parts.port or 5672} ({exc})"
    try:
        with kombu.Connection(RABBITMQ_URL, connect_timeout=timeout) as conn:
            conn.connect()
    except Exception as exc:  # any failure is the reason to skip
        return f"RabbitMQ at {RABBITMQ_URL} refused the connection ({exc})"
    return None


def _management(method: str, path: str, payload: dict[str, Any] | None = None) -> None:
    parts = _parts()
    auth = base64.b64encode(f"{parts.username or 'guest'}:{parts.password or 'guest'}"
                            .encode()).decode()
    request = urllib.request.Request(
        f"{MANAGEMENT_URL}{path}", method=method,
        data=None if payload is None else json.dumps(payload).encode(),
        headers={"Authorization": f"Basic {auth}", "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):
        pass


def _rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    assert ctl is not None
    subprocess.run([ctl, *args], check=True, capture_output=True, timeout=60)


@dataclass
class VirtualHost:
    """A virtual host of the test session's own, and how it was made."""

    name: str
    via: str

    @property
    def url(self) -> str:
        parts = _parts()
        return urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc, "/" + urllib.parse.quote(self.name, safe=""), "", ""))

    def messages(self, queue: str) -> tuple[int, int]:
        """(ready, unacknowledged) messages of ``queue`` (0, 0 when it does not exist)."""
        if self.via == "management":
            parts = _parts()
            auth = base64.b64encode(f"{parts.username or 'guest'}:{parts.password or 'guest'}"
                                    .encode()).decode()
            path = f"/api/queues/{urllib.parse.quote(self.name, safe='')}/{queue}"
            request = urllib.request.Request(f"{MANAGEMENT_URL}{path}",
                                             headers={"Authorization": f"Basic {auth}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    found = json.load(answer)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return (0, 0)
                raise
            return (int(found.get("messages_ready", 0)),
                    int(found.get("messages_unacknowledged", 0)))
        ctl = shutil.which("rabbitmqctl")
        assert ctl is not None
        out = subprocess.run([ctl, "list_queues", "-p", self.name, "-q", "--no-table-headers",
                              "name", "messages_ready", "messages_unacknowledged"],
                             check=True, capture_output=True, text=True, timeout=60).stdout
        for line in out.splitlines():
            name, ready, unacked = line.split()
            if name == queue:
                return (int(ready), int(unacked))
        return (0, 0)

    def delete(self) -> None:
        if self.via == "management":
            _management("DELETE", f"/api/vhosts/{urllib.parse.quote(self.name, safe='')}")
        else:
            _rabbitmqctl("delete_vhost", self.name)


def create_vhost() -> VirtualHost | str:
    """A new virtual host the URL's user may use fully, or why none could be made."""
    name = f"agora-test-{uuid.uuid4().hex[:10]}"
    user = _parts().username or "guest"
    quoted = urllib.parse.quote(name, safe="")
    reasons = []
    try:
        _management("PUT", f"/api/vhosts/{quoted}")
        _management("PUT", f"/api/permissions/{quoted}/{urllib.parse.quote(user)}",
                    {"configure": ".*", "write": ".*", "read": ".*"})
        return VirtualHost(name, "management")
    except (urllib.error.URLError, OSError) as exc:
        reasons.append(f"management API at {MANAGEMENT_URL}: {exc}")
    if shutil.which("rabbitmqctl") is None:
        reasons.append("rabbitmqctl: not installed")
    else:
        try:
            _rabbitmqctl("add_vhost", name)
            _rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
            return VirtualHost(name, "rabbitmqctl")
        except (subprocess.SubprocessError, OSError) as exc:
            err = getattr(exc, "stderr", b"") or b""
            reasons.append(f"rabbitmqctl: {exc} {err.decode(errors='replace')[-300:]}")
    return "RabbitMQ answers, but no virtual host of the tests' own could be created (" \
           + "; ".join(reasons) + ")"


@dataclass
class Broker:
    """The broker one test's workers use: ``kind`` is ``redis`` or ``amqp``."""

    kind: str
    url: str
    vhost: VirtualHost | None = None

    def connection(self) -> kombu.Connection:
        return kombu.Connection(self.url, connect_timeout=5)

    def purge(self) -> None:
        """Empty the handler task queues (RabbitMQ; Redis is flushed by its fixture)."""
        if self.kind != "amqp":
            return
        with self.connection() as conn:
            for name in QUEUES:
                # A queue that does not exist yet has nothing to purge (the channel
                # is closed by that error: take a new one for the next queue).
                with contextlib.suppress(conn.channel_errors), conn.channel() as channel:
                    channel.queue_purge(name)

    def settled(self, redis_client: Any, queue: str = DEFAULT_QUEUE) -> bool:
        """No handler task queued or delivered and unacknowledged: nothing the broker
        could deliver (again)."""
        if self.kind == "redis":
            return bool(redis_client.hlen("unacked") == 0 and redis_client.llen(queue) == 0)
        assert self.vhost is not None
        return self.vhost.messages(queue) == (0, 0)

    def take(self, queue: str = DEFAULT_QUEUE) -> dict[str, Any] | None:
        """Take one message off ``queue`` (acknowledged: gone from the broker), as
        the broker or a stalled publisher would lose it; its headers and body, or
        None while the queue is empty."""
        with self.connection() as conn:
            simple = conn.SimpleQueue(kombu.Queue(queue, kombu.Exchange(queue), queue))
            try:
                message = simple.get(block=False)
                message.ack()
                return {"headers": dict(message.headers), "body": message.decode(),
                        "content_type": message.content_type}
            except simple.Empty:
                return None
            finally:
                simple.close()
