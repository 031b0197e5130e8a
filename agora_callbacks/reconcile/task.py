"""The Celery task that reconciles one recording (published by ``requests.request``).

The task runs while it holds the recording's in-flight lease (taken for its id by
``request``; taken again if it expired and nobody else holds it). It makes one
``query`` call per run; a step that must wait (a ``404`` during a failover, a
timeout) becomes a Celery retry with that countdown, so no pool process sleeps; the
facts it ends with are folded into the record (``Reconciler.apply``), and the lease
is released.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
from celery.exceptions import Retry

from agora_callbacks.logs import get_logger
from agora_callbacks.reconcile import inflight, policy
from agora_callbacks.reconcile.client import WORKER_RATE_WAIT_S
from agora_callbacks.reconcile.run import NotEnabled, NotRegistered, Reconciler
from agora_callbacks.workers import runtime
from agora_callbacks.workers.application import celery_app

TASK_NAME = "agora_callbacks.reconcile"
log = get_logger("reconcile.task")

_lock = threading.Lock()
_reconciler: tuple[int, Reconciler] | None = None


def reconciler() -> Reconciler:
    """This process's reconciler (built on first use in each process)."""
    global _reconciler
    with _lock:
        if _reconciler is None or _reconciler[0] != os.getpid():
            rt = runtime.get()
            _reconciler = (os.getpid(), Reconciler(rt.settings, rt.client,
                                                   rate_wait_s=WORKER_RATE_WAIT_S))
        return _reconciler[1]


# max_retries: a bound for a pathological case only. The policy ends 404 and error
# retries within a minute each; what can repeat more is waiting for a rate-limit slot
# (about 1.5 s a retry) behind hundreds of other recordings.
@celery_app.task(bind=True, name=TASK_NAME, shared=False, max_retries=1000, ignore_result=True,
                 acks_late=True, autoretry_for=(redis.RedisError, OSError),
                 retry_backoff=1, retry_backoff_max=30, retry_jitter=True)
def reconcile_recording(self: Any, sid: str, reason: str,
                        progress: dict[str, Any] | None = None) -> None:
    """Reconcile ``sid`` with ``query``: one attempt per run (see the module)."""
    token = str(self.request.id)
    client = runtime.get().client
    if not (inflight.refresh(client, sid, token) or inflight.claim(client, sid, token)):
        log.info("reconcile.skipped", sid=sid, reason=reason,
                 why="another reconciliation holds the recording")
        return
    done = False
    try:
        worker = reconciler()
        step = worker.attempt(sid, reason,
                              policy.Progress.from_dict(progress, worker.now_ms()))
        if isinstance(step, policy.Retry):
            raise self.retry(args=[sid, reason, step.progress.to_dict()],
                             countdown=step.delay_s)
        record = worker.apply(sid, step.facts)
        done = True
        log.info("reconcile.folded", sid=sid, reason=reason, outcome=step.facts["outcome"],
                 phase=((record or {}).get("status") or {}).get("phase"))
    except Retry:
        raise
    except (NotEnabled, NotRegistered) as exc:
        done = True
        log.warning("reconcile.impossible", sid=sid, reason=reason, why=str(exc))
    except Exception:
        done = True  # its own retries (Redis) start again from the lease's refresh
        raise
    finally:
        if done:
            inflight.release(client, sid, token)
