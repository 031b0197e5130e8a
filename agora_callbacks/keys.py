"""Every Redis key name the service uses, in one place.

All keys start with ``acb:``. The keys of one recording share the hash tag
``{<sid>}`` (one slot); the per-recording scripts also write the global timers,
counters, dead letters and inbox in the same atomic step, which is why Redis
Cluster is not supported (README, "Production Redis"). No other module builds a
key name by hand.

Bounds (guarantee 6), stated where each key is named:
- ``INBOX``: stream of stored raw bodies; an entry is deleted (XDEL) once a worker
  has taken it in, so its length is the backlog.
- ``DEADLETTERS``: stream, trimmed to ``DEADLETTER_MAXLEN`` entries.
- per-recording keys: expire ``DEDUPE_TTL_S`` after the recording's last event.
- ``recording_state``: expires ``RECORD_TTL_S`` after its last change.
- ``TIMERS``: one member per recording with pending work, removed when none is left.
- ``COUNTERS``: a hash with one field per counter name (a fixed, small set): bounded
  by construction, no TTL (the counts are cumulative, like Prometheus counters).
- per-recording keys, in detail: ``dedupe`` (one short field per event seen),
  ``order`` (a handful of fields), ``buffer``/``events``/``arrivals`` (events
  admitted and not yet through their turn; an event's raw body is deleted when its
  turn ends), ``slots`` (handlers of the current event); each script run refreshes
  the expiry of all six.
"""

from __future__ import annotations

PREFIX = "acb"

#: Stream of raw bodies stored by the ingress (fields: see ``agora_callbacks.inbox``).
INBOX = f"{PREFIX}:inbox"
#: Consumer group of the workers reading ``INBOX``.
INBOX_GROUP = "workers"
#: Stream of dead letters (fields: see ``agora_callbacks.deadletters``).
DEADLETTERS = f"{PREFIX}:deadletters"
#: Sorted set: sid -> unix ms at which that recording must be looked at again
#: (end of a hold window, expiry of a dispatch lease).
TIMERS = f"{PREFIX}:timers"
#: Sorted set: sid -> unix ms at which the recording's lifecycle must be looked at
#: again without a new event (stall, settle window, hook tasks not yet published);
#: written with the record (``workers.builtin.store.save_if``), one member per
#: recording not finished yet, removed when nothing is due (or its record expired).
LIFECYCLE_TIMERS = f"{PREFIX}:lifecycle"
#: Hash of pipeline counters (dedupe hits, gaps, late events, ...), for metrics.
COUNTERS = f"{PREFIX}:counters"
#: Hash: handler or hook task name -> the Celery queue it is routed to ("": the
#: default), written by each worker's intake at start (``agora_callbacks.task_queues``);
#: bounded by the tasks registered, each start rewrites its own.
TASK_QUEUES = f"{PREFIX}:task_queues"


def hash_tag(sid: str) -> str:
    """The hash tag of a recording. Braces inside a sid would end the tag early,
    so they are replaced; Agora sids are hex strings and never contain them."""
    return "{" + sid.replace("{", "(").replace("}", ")") + "}"


def recording_prefix(sid: str) -> str:
    """Common prefix of every key of one recording: ``acb:{<sid>}:``."""
    return f"{PREFIX}:{hash_tag(sid)}:"


def recording_dedupe(sid: str) -> str:
    """Hash: dedupe key of each event of the recording -> its claim/commit record."""
    return recording_prefix(sid) + "dedupe"


def recording_order(sid: str) -> str:
    """Hash: the recording's ordering cursor (next sequence, current turn, lease)."""
    return recording_prefix(sid) + "order"


def recording_buffer(sid: str) -> str:
    """Sorted set: sequences admitted but not yet dispatched, scored by sequence."""
    return recording_prefix(sid) + "buffer"


def recording_events(sid: str) -> str:
    """Hash: sequence -> serialized admitted event waiting in the buffer."""
    return recording_prefix(sid) + "events"


def recording_turn(sid: str) -> str:
    """Hash: each handler of the event whose turn it is that has not finished yet ->
    the task that started it (or ``-``) and its deadline."""
    return recording_prefix(sid) + "slots"


def recording_arrivals(sid: str) -> str:
    """Sorted set: each buffered event -> when it was admitted (unix ms)."""
    return recording_prefix(sid) + "arrivals"


def recording_state(sid: str) -> str:
    """String (JSON): the recording's folded state, written by the built-in handler."""
    return recording_prefix(sid) + "state"


def recording_hook(sid: str, phase: str, hook: str) -> str:
    """String: the claim of lifecycle hook ``hook``'s run for ``phase`` (the task id
    that claimed it, then ``done`` or ``failed``; ``workers.hook_runs``); expires
    ``RECORD_TTL_S`` after it was taken. A re-run from a dead letter claims
    ``<this>:dlq:<dead letter id>``."""
    return recording_prefix(sid) + f"hook:{phase}:{hook}"


def unordered_sid(notice_id: str) -> str:
    """The recording an event without ``sid``/``sequence`` is handled as: one of its
    own, keyed by its ``noticeId`` (Agora sids are hex strings: no clash)."""
    return f"notice:{notice_id}"


def is_unordered_sid(sid: str) -> bool:
    return sid.startswith("notice:")


# --- the dashboard (``agora_callbacks.recordings_index``, ``recording_timeline``) ---
# Bounds: the index sorted sets hold one member per recording whose record is kept
# (scored by its last update, pruned past ``RECORD_TTL_S``); a channel's set
# and the per-recording keys below expire ``RECORD_TTL_S`` after their last write.


def dashboard_index(facet: str) -> str:
    """Sorted set: sid -> unix ms of its record's last update, for one facet of the
    recordings list (``all``, ``phase:<phase>``, ``flag:<flag>``, ``channel:<cname>``)."""
    return f"{PREFIX}:ui:{facet}"


#: Sorted set of every indexed sid, all scored 0: the list's sid-prefix search (lex).
DASHBOARD_SIDS = f"{PREFIX}:ui:sids"


def recording_summary(sid: str) -> str:
    """String (JSON): what the recordings list shows of one recording."""
    return recording_prefix(sid) + "summary"


def recording_timeline(sid: str) -> str:
    """Sorted set: the recording's events and handler runs (JSON), scored by sequence."""
    return recording_prefix(sid) + "timeline"


# Reconciliation with Agora's ``query`` (``agora_callbacks.reconcile``).


def recording_resource(sid: str) -> str:
    """String (JSON): the recording's ``resourceId`` and mode, as its backend
    registered them; expires ``AGORA_RESOURCE_TTL_S`` after the registration."""
    return recording_prefix(sid) + "resource"


def recording_reconcile(sid: str) -> str:
    """String: the id of the reconciliation task in flight for the recording (one at
    a time); expires with its lease (``agora_callbacks.reconcile.inflight``)."""
    return recording_prefix(sid) + "reconcile"


def requeue_claim(dead_letter_id: str) -> str:
    """String: a ``handler`` or ``hook`` dead letter being requeued
    (``agora_callbacks.redrive``), so that a second requeue does not publish its task
    again; expires ``redrive.CLAIM_S`` after it was taken (deleted if the publish
    failed)."""
    return f"{PREFIX}:dlq:requeue:{dead_letter_id}"


def query_rate(app_id: str) -> str:
    """Sorted set: the ``query`` calls let through in the last rate window for one
    App ID, shared by every process (at most the limit's count of members; expires
    one window after the last call)."""
    return f"{PREFIX}:rate:query:{app_id}"
