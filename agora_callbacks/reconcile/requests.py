"""``request(sid, reason)``: reconcile a recording soon, in a worker.

What the lifecycle calls when a recording stalls, reports a fatal error, or a gap
skipped events that decide a phase. It is cheap and imports Celery only to publish:
it returns False, starting nothing, when reconciliation is off, when the recording
has no registered ``resourceId``, or when a reconciliation of it is already in
flight (``inflight``: one per sid; or ``agora-callbacks recording SID --reconcile``
running in this process); else it takes the lease for a new task id and publishes
the task (``reconcile.task``).
"""

from __future__ import annotations

import uuid

from agora_callbacks.logs import get_logger
from agora_callbacks.reconcile import inflight, registration
from agora_callbacks.reconcile.run import manual_sid

log = get_logger("reconcile.request")


def request(sid: str, reason: str) -> bool:
    """Reconcile ``sid`` soon, in a worker; False (nothing started) when reconciliation
    is off, the recording is not registered, or one is already in flight for it."""
    if manual_sid() == sid:
        log.info("reconcile.already_in_flight", sid=sid, reason=reason, task_id="manual")
        return False
    from agora_callbacks.workers import runtime

    rt = runtime.get()
    if not rt.settings.reconcile_enabled:
        log.debug("reconcile.off", sid=sid, reason=reason)
        return False
    if registration.load(rt.client, sid) is None:
        log.info("reconcile.unregistered", sid=sid, reason=reason,
                 why="no resourceId registered: query cannot be called")
        return False
    task_id = f"reconcile-{uuid.uuid4().hex}"
    if not inflight.claim(rt.client, sid, task_id):
        log.info("reconcile.already_in_flight", sid=sid, reason=reason,
                 task_id=inflight.holder(rt.client, sid))
        return False
    try:
        from agora_callbacks.reconcile.task import reconcile_recording

        # On the broker of the runtime's settings, not whichever the Celery app was
        # created with when this process first imported it (the same in a worker).
        with reconcile_recording.app.connection_for_write(rt.settings.kombu_broker_url) as conn:
            reconcile_recording.apply_async(args=[sid, reason], task_id=task_id,
                                            connection=conn)
    except Exception:
        inflight.release(rt.client, sid, task_id)
        raise
    log.info("reconcile.requested", sid=sid, reason=reason, task_id=task_id)
    return True
