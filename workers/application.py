"""The Celery app of the workers, without the worker's side effects.

``celery_app`` is the app every handler and lifecycle hook task is created on, so
registering one (``@on_event``, ``@on_recording``) imports this module, in the
worker and in any process of a team that imports its handler modules (its web app,
its tests, its own Celery worker). So importing it only reads the settings and builds
the app: it does not configure logging, connect Celery signal receivers, add the
worker's steps nor make this app Celery's current one. The worker's side
(``celery -A agora_callbacks.workers.app:celery_app worker``, Flower) is
``agora_callbacks.workers.app``.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from agora_callbacks.settings import Settings
from agora_callbacks.workers import runtime
from agora_callbacks.workers.publish import celery_publisher
from agora_callbacks.workers.registry import route_task

#: The queue of every handler, hook and reconciliation task not registered with a
#: ``queue=`` of its own, and the one a worker reads without ``-Q``. Not Celery's
#: default ``celery``: a team's own Celery app on the same broker reads that one, and
#: its workers would take the service's tasks and discard them as unregistered.
DEFAULT_QUEUE = "agora_callbacks"


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings, each with the reason it is set."""
    return {
        # kombu's spelling of the URL (it knows no unix:// or valkey:// transport).
        "broker_url": settings.kombu_broker_url,
        **(amqp_config(settings) if settings.broker == "amqp" else redis_config(settings)),
        # Handler results are not kept: a handler's effects are its own business,
        # and a result backend would cost a write per task.
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # Acknowledge a handler task after it ran, not before: a worker killed
        # mid-handler leaves the message unacknowledged, and it is delivered again
        # (Redis: after the visibility timeout; RabbitMQ: at once, when the dead
        # worker's connection closes). The same on both brokers.
        "task_acks_late": True,
        # ...also when the child process running it dies (SIGKILL, OOM): without
        # this, acks_late still acknowledges a task whose process was lost.
        "task_reject_on_worker_lost": True,
        # A failed handler is dead-lettered by the task itself; its message is done,
        # also after a hard time limit (on_failure records it). The two settings
        # Celery 5.7 replaces task_acks_on_failure_or_timeout with (deprecated for
        # 6.0), both as it was: True.
        "task_acks_on_failure": True,
        "task_acks_on_timeout": True,
        # Each pool process reserves one message at a time: a message reserved by a
        # process that is busy for long cannot wait behind it, and a killed
        # worker holds (and delays) as few messages as possible: its reserved,
        # unacknowledged messages come back only after the visibility timeout
        # (Redis). On RabbitMQ (prefetch_count = concurrency, acks late) it also
        # means a message is delivered only when a process is free for it, so
        # no message waits unacknowledged behind a long handler towards the
        # server's consumer_timeout (ETA retries aside: their wait and run are
        # bounded together, registry.BoundedRetryTask).
        # Per-recording order does not depend on it (a recording's next handler
        # tasks are published only once its turn ended). A multiplier of 4 was
        # measured (benchmarks/bench_workers.py): bare Celery gained, our
        # pipeline did not, so the crash-safety of 1 costs nothing here.
        "worker_prefetch_multiplier": 1,
        # Every handler task is stopped before the broker would deliver it again
        # while it still runs (Settings.handler_redelivery_s: Redis's visibility
        # timeout below; on RabbitMQ its consumer_timeout, see amqp_config, and
        # half HANDLER_DEADLINE_S): a soft limit (SoftTimeLimitExceeded in the
        # handler; a failure, dead-lettered as any), then a hard one (the pool
        # process is killed; Celery calls on_failure in the worker). Between them
        # and below the horizon: a margin and REDIS_RETRY_S each, to record the
        # outcome (Settings.handler_time_limit_s). A handler may lower them;
        # workers.registry refuses any at or above the horizon. A retry is held
        # unacknowledged through its countdown, on the broker's clock from its
        # delivery: its run's limits are shortened by that wait
        # (registry.BoundedRetryTask). Enforced by the prefork pool (not by solo
        # or threads).
        "task_time_limit": settings.handler_time_limit_s,
        "task_soft_time_limit": settings.handler_soft_time_limit_s,
        "broker_connection_retry_on_startup": True,
        # Task events, so Flower shows every handler task (received, started,
        # succeeded, failed, retried). Not the "sent" event: it would cost one more
        # publish for every handler task a worker dispatches (-25% throughput in
        # benchmarks/bench_workers.py), for a state Flower shows a few ms earlier.
        "worker_send_task_events": True,
        "task_send_sent_event": False,
        # Logging is ours (structlog, agora_callbacks.logs), not Celery's; our JSON
        # lines go to stdout as they are, not re-logged as Celery warnings.
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        # Where a handler's or hook's task goes: the routing options it was
        # registered with (queue=, routing_key=, priority=...), looked up by task
        # name (registry.route_task), for every publish of this app: the next
        # event's handlers, lifecycle hooks, retries. Not task attributes: Celery
        # 5.7 deprecates those (no effect from 6.0) for task_routes.
        "task_routes": (route_task,),
        # The reconciliation task (Agora's query), known to every worker.
        "imports": ("agora_callbacks.reconcile.task",),
        # A queue of the service's own (DEFAULT_QUEUE), not Celery's "celery".
        "task_default_queue": DEFAULT_QUEUE,
    }


def redis_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings that hold for a Redis broker only."""
    vt = settings.handler_visibility_timeout_s
    return {
        # kombu's Redis transport with one publishing client per thread instead of
        # a new one per message (workers/broker.py: about 1 ms of CPU less per
        # handler task published); rediss:// and unix:// keep kombu's own.
        **({"broker_transport": "agora_callbacks.workers.broker:Transport"}
           if settings.kombu_broker_url.startswith("redis://") else {}),
        "broker_transport_options": {
            # Unacknowledged messages of a dead worker are restored after this long.
            # It must exceed the longest handler run (task_time_limit above) and
            # retry countdown (checked when a handler is registered), or a live
            # slow handler's message is delivered a second time.
            "visibility_timeout": vt,
            # kombu looks for such messages every interval x throttle seconds
            # (10 x 10 by default): look every few seconds instead, so that
            # redelivery takes at most about visibility_timeout + interval.
            "unacked_restore_interval": max(1, min(10, vt // 10)),
            "unacked_restore_throttle": 1,
            # A publish never hangs on a dead connection.
            "socket_timeout": max(5.0, settings.redis_timeout_s),
            "socket_connect_timeout": max(5.0, settings.redis_timeout_s),
        },
    }


def amqp_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings that hold for a RabbitMQ broker only.

    consumer_timeout: RabbitMQ closes the channel of a consumer that has held a
    delivery unacknowledged for longer than its ``consumer_timeout`` (30 min by
    default; ``consumer_timeout`` in rabbitmq.conf, in ms) and delivers the
    channel's messages again. Celery takes that channel error for an
    unrecoverable one: the worker stops ("Unrecoverable error: PreconditionFailed
    ... delivery acknowledgement on channel 1 timed out", celery/celery#6760), and
    with acks late a handler still running then would start again elsewhere (same
    task id, so the start fence lets it). The worker cannot read the server's
    value, so ``RABBITMQ_CONSUMER_TIMEOUT_S`` states it,
    and every handler's time limits (and retry delays, held unacknowledged until
    their countdown ends) are set below it (``Settings.handler_redelivery_s``);
    ``workers.registry`` refuses a handler whose options reach it. For handlers
    that run for hours, raise the server's ``consumer_timeout`` (compose.rabbitmq.yaml
    sets 24 h), then ``RABBITMQ_CONSUMER_TIMEOUT_S`` and ``HANDLER_DEADLINE_S``
    (the limit is also below half of it). There is no visibility timeout: one
    delivery per run, however long.
    """
    return {
        # Publisher confirms: a publish returns once RabbitMQ has taken the message
        # (persistent, on a durable queue), not when it was written to the socket;
        # a message the broker refused raises instead of vanishing. Costs a round
        # trip per handler task published; a lost publish would cost a recording
        # DISPATCH_LEASE_MS (the sweep publishes it again).
        "broker_transport_options": {"confirm_publish": True},
        # Classic durable queues (Celery's default "celery" queue), not quorum
        # queues: handler retries are countdown (ETA) tasks, which on quorum
        # queues need Celery's native delayed delivery (extra exchanges, no global
        # QoS, RabbitMQ-version-dependent); and quorum queues pay off only on a
        # replicated cluster. A classic durable queue with persistent messages and
        # publisher confirms keeps queued handler tasks across a broker restart. A
        # lost queue costs time, not events: an unstarted handler is published
        # again after DISPATCH_LEASE_MS. For a quorum queue, give Celery
        # task_queues with queue_arguments={"x-queue-type": "quorum"}; Celery then
        # turns global QoS off itself (worker_detect_quorum_queues).
        # Heartbeats on the broker connection, so that a dead peer is noticed (and
        # a dead worker's unacknowledged messages delivered again) within a few
        # minutes even without a TCP reset: Celery's default.
        "broker_heartbeat": 120,
    }


def create_app(settings: Settings | None = None) -> Celery:
    """The workers' Celery app for ``settings`` (from the environment by default).

    Not Celery's current app (``set_as_current=False``): a team's own app stays the
    one its ``shared_task`` tasks and ``celery.current_app`` use. A worker started
    with ``celery -A ... worker`` makes its app the current one itself."""
    settings = settings or Settings.from_env()
    app = Celery("agora_callbacks", set_as_current=False)
    app.conf.update(celery_config(settings))
    runtime.configure(settings, publish=celery_publisher(app))
    return app


#: Built at import from the environment: a wrong setting raises ``ConfigError``
#: (its message names the variable) in the process that registers a handler, which
#: may catch it; the worker's entry (``workers.app``) makes it one line and exit 1.
celery_app = create_app()
