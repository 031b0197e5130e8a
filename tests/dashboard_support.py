"""Helpers of the dashboard tests: sign in through the form, fill Redis with recordings."""

from __future__ import annotations

import re
import time
from typing import Any

import redis
from flask.testing import FlaskClient

from agora_callbacks import recording_timeline
from agora_callbacks.schemas import parse_event
from agora_callbacks.simulate.lifecycles import Kind, encode, lifecycle
from agora_callbacks.workers.builtin import store
from agora_callbacks.workers.builtin.fold import apply
from agora_callbacks.workers.builtin.record import new_record

TOKEN = "dashboard-admin-token"
HANDLER = "agora_callbacks.recording_state"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(http: FlaskClient, token: str = TOKEN) -> str:
    """Sign in through the form; return the session's CSRF token."""
    page = http.get("/ui/login")
    assert page.status_code == 200
    answer = http.post("/ui/login", data={"token": token,
                                          "csrf_token": csrf_of(page.get_data(as_text=True))})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return csrf_of(http.get("/ui/").get_data(as_text=True))


def simulate(client: redis.Redis, sid: str, kind: Kind = "individual", *,
             skip: tuple[int, ...] = (), late: tuple[int, ...] = (), ttl_s: int = 3600,
             **options: Any) -> list[dict[str, Any]]:
    """Fold a simulated lifecycle into its record and timeline as the workers would,
    the sequences ``skip`` never arriving (each run of them reported as a gap on the
    next event) and those in ``late`` marked late. Returns the envelopes."""
    envelopes = lifecycle(kind, sid, seed=sid, **options)
    record = new_record(sid)
    pending: list[int] = []
    for envelope in envelopes:
        seq = envelope["payload"]["sequence"]
        if seq in skip:
            pending.append(seq)
            continue
        gap = (pending[0], pending[-1]) if pending else None
        pending = []
        body = encode(envelope)
        event = parse_event(body)
        key = f"{event.event_type}:{seq}"
        apply(record, event, late=seq in late, gap=gap, key=key)
        store.save(client, sid, record, ttl_s)
        recording_timeline.handler_finished(
            client, ttl_s, sid=sid, key=key, late=seq in late, gap=gap,
            meta={"received_ms": int(time.time() * 1000)}, body=body.decode(),
            handler=HANDLER, outcome="done", duration_ms=1.5)
    return envelopes
