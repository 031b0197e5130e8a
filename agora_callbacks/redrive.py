"""Re-run one handler on one event, from its ``handler`` dead letter, or one
lifecycle hook on one recording, from its ``hook`` dead letter.

The handler's Celery task is published again, by name, with the event's raw body,
dedupe key and late/gap flags as they were. It runs *outside* the recording's
order: the recording and sequence arguments are left empty, which is how
``workers.task.HandlerTask`` runs an unordered event (no turn to check or
finish). The event's turn ended when the handler was dead-lettered, and the
recording has moved on since; holding its later events back now would be wrong.

The handler gets the same ``key`` as the first time, so it can tell it has seen
the event before (handlers are asked to be idempotent on it). The dead letter is
removed once the task is published; if the handler fails again, its new failure
is dead-lettered again. A requeue first claims the dead letter
(``keys.requeue_claim``, ``SET NX``): a second requeue of the same letter (two
operators, a form submitted twice, a page read before the first requeue) is
refused with ``deadletters.RequeuedAlready`` (as a body's second requeue is)
instead of publishing the task again; a publish that fails gives the claim back,
so the requeue can be tried again. Either task
goes to the queue its workers announced (``agora_callbacks.task_queues``: a handler
registered with ``queue=`` is re-run there, not on Celery's default queue).

A hook's task is published again the same way, with the recording, the phase, the
``info`` and the record it got the first time (``hook_task_args``); ``info`` gains
``redrive``, the dead letter's id. The re-run claims a key of its own for that id
(``workers.hook_runs.claim_key``; the phase's own key says ``failed``), so it
runs once even if published twice, and a new failure is a new ``hook`` dead letter.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from celery import Celery

from agora_callbacks import deadletters, keys, task_queues
from agora_callbacks.deadletters import DeadLetter
from agora_callbacks.settings import Settings

#: How long a requeue's claim on its dead letter lasts (``keys.requeue_claim``): a
#: requeue of the same letter within it is refused.
CLAIM_S = 3600


def producer_app(settings: Settings) -> Celery:
    """A Celery app that only publishes, configured like the workers' app."""
    from agora_callbacks.workers.application import celery_config

    app = Celery("agora_callbacks", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def handler_task_args(letter: DeadLetter) -> list[Any]:
    """The handler task's arguments for the dead letter's event, outside the order:
    ``(sid, member, key, late, gap, meta, body)`` with ``sid`` and ``member`` empty."""
    extra = letter.extra
    gap = extra.get("gap")
    meta = {**letter.meta, "origin": f"dlq:{letter.id}"}
    return ["", "", letter.key, bool(extra.get("late")),
            list(gap) if isinstance(gap, list | tuple) and len(gap) == 2 else None,
            meta, letter.body.decode("utf-8", "replace")]


def redrive_handler(settings: Settings, client: redis.Redis, letter: DeadLetter) -> str:
    """Publish the handler task of a ``handler`` dead letter again, then delete the
    dead letter; return the new task id."""
    if letter.kind != deadletters.HANDLER or not letter.handler:
        raise ValueError(f"dead letter {letter.id} is not a handler dead letter")
    return _publish_again(settings, client, letter, handler_task_args(letter))


def _publish_again(settings: Settings, client: redis.Redis, letter: DeadLetter,
                   args: list[Any], **options: Any) -> str:
    """Claim the dead letter (``deadletters.RequeuedAlready`` if it was claimed
    before), send its task (``letter.handler``) with ``args`` to the queue its
    workers announced (``task_queues``), then delete the dead letter; return the new
    task id.
    ``options``: more of Celery's ``send_task`` options."""
    claim = keys.requeue_claim(letter.id)
    if not client.set(claim, "1", nx=True, ex=CLAIM_S):
        raise deadletters.RequeuedAlready(f"dead letter {letter.id} was requeued already")
    app = producer_app(settings)
    try:
        queue = task_queues.announced_queue(client, letter.handler)
        result = app.send_task(letter.handler, args=args, queue=queue, **options)
    except BaseException:
        client.delete(claim)
        raise
    finally:
        app.close()
    deadletters.delete(client, letter.id)
    return str(result.id)


def hook_task_args(letter: DeadLetter) -> list[Any]:
    """The hook task's arguments for a ``hook`` dead letter:
    ``(sid, phase, info, record)``, ``info`` marked with ``redrive``."""
    extra = letter.extra
    info = extra.get("info")
    record = json.loads(letter.body)
    if not isinstance(record, dict):
        raise ValueError(f"dead letter {letter.id}: its body is not a record")
    return [letter.sid, str(extra.get("phase", "")),
            {**(info if isinstance(info, dict) else {}), "redrive": letter.id}, record]


def redrive_hook(settings: Settings, client: redis.Redis, letter: DeadLetter) -> str:
    """Publish the hook task of a ``hook`` dead letter again, then delete the dead
    letter; return the new task id."""
    if letter.kind != deadletters.HOOK or not letter.handler:
        raise ValueError(f"dead letter {letter.id} is not a hook dead letter")
    args = hook_task_args(letter)
    if not args[0] or not args[1]:
        raise ValueError(f"dead letter {letter.id} names no recording or phase")
    return _publish_again(settings, client, letter, args,
                          argsrepr=f"(sid={args[0]!r}, phase={args[1]!r})", kwargsrepr="{}")


def redrive(settings: Settings, client: redis.Redis, letter: DeadLetter) -> str:
    """Publish the task of a ``handler`` or ``hook`` dead letter again
    (``redrive_handler``, ``redrive_hook``); return the new task id."""
    if letter.kind == deadletters.HOOK:
        return redrive_hook(settings, client, letter)
    return redrive_handler(settings, client, letter)
