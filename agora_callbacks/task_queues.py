"""The Celery queue of each handler and lifecycle hook task, for redrives.

A handler or hook registered with ``queue="files"`` is published there by the
workers, its retries too (the app's ``task_routes`` router,
``workers.registry.route_task``, which knows the tasks this process registered). A
re-run from its dead letter is
published by name from a process that has not imported the user's handler
modules (the CLI, the dashboard: ``agora_callbacks.redrive``), so it learns the
queue here: each worker's intake writes, when it starts, the queue of every task
it registered (``""``: Celery's default queue) into one hash
(``keys.TASK_QUEUES``), and a redrive reads it. A task no worker has announced
goes to the default queue, as before.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis

from agora_callbacks import keys


def announce(client: redis.Redis, queues: Mapping[str, str | None]) -> None:
    """Record the queue of each task of ``queues`` (None or "": the default)."""
    if queues:
        client.hset(keys.TASK_QUEUES, mapping={name: queue or "" for name, queue
                                               in queues.items()})


def announced_queue(client: redis.Redis, name: str) -> str | None:
    """The queue a worker announced for task ``name`` (None: the default queue), read
    from Redis; a worker's own routing is ``workers.registry.routed_queue``."""
    raw = client.hget(keys.TASK_QUEUES, name)
    queue = raw.decode() if isinstance(raw, bytes) else raw
    return queue or None
