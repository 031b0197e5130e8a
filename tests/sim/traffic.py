"""The callbacks NCS sends, with what makes real traffic hard: resends, redundant
copies, reordering, losses, huge sequence jumps, unknown event types, bodies that
are not events, stale replays, events without ``sid`` (unordered).

Bodies are stored as the ingress stores them (``agora_callbacks.inbox``: one
``XADD`` of ``fields_for(body, ReceiveMeta)``), by the test's own client.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from agora_callbacks import inbox

MAX_SEQUENCE = 2**53 - 1
MSG_NAMES = {40: "recorder_started", 41: "recorder_leave", 31: "uploaded",
             30: "uploader_started", 11: "session_exit", 33: "uploading_progress",
             43: "recorder_audio_stream_state_changed", 77: "event_77"}
ORDERED_TYPES = (40, 41, 31, 30, 11, 33, 43, 77)


def event_body(notice_id: str, event_type: int, notify_ms: int, sid: str | None,
               sequence: int | None) -> bytes:
    """A Cloud Recording callback body (as ``tests/workers_support.body``)."""
    details: dict[str, Any] = {"msgName": MSG_NAMES.get(event_type, f"event_{event_type}")}
    if event_type in (40, 30):
        details["status"] = 0
    payload: dict[str, Any] = {"cname": "room", "uid": "1001", "sendts": notify_ms,
                               "serviceType": 1, "details": details}
    if sid is not None:
        payload["sid"] = sid
    if sequence is not None:
        payload["sequence"] = sequence
    envelope = {"noticeId": notice_id, "productId": 3, "eventType": event_type,
                "notifyMs": notify_ms, "payload": payload}
    return json.dumps(envelope, separators=(",", ":")).encode()


@dataclass
class Sent:
    """One body to store (now or, reordered, later)."""

    body: bytes
    kind: str  # ordered, unordered, invalid, stale
    sid: str = ""
    sequence: int = 0
    event_type: int = 0
    notice_id: str = ""
    send_at: int = 0


@dataclass
class Traffic:
    rng: random.Random
    sids: list[str]
    ttl_ms: int
    count: Any  # count(kind) for the fault tally
    next_seq: dict[str, int] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)  # events, for resends
    delayed: list[Sent] = field(default_factory=list)
    _n: int = 0

    def _notice(self) -> str:
        self._n += 1
        return f"n{self._n:06d}{self.rng.getrandbits(32):08x}"

    def next_bodies(self, now: int) -> list[Sent]:
        """The bodies NCS sends at this step (some delayed: reordering)."""
        r = self.rng.random()
        out: list[Sent] = []
        if r < 0.05:
            self.count("traffic_invalid")
            out.append(Sent(self.rng.choice([b"{not json", b"", b"[]", b'{"noticeId":1}',
                                             b"\xff\xfe"]), "invalid"))
        elif r < 0.08:
            self.count("traffic_stale")
            sid = self.rng.choice(self.sids)
            out.append(Sent(event_body(self._notice(), 40, now - self.ttl_ms - 60_000, sid,
                                       self.rng.randrange(0, 50)), "stale", sid=sid))
        elif r < 0.16:
            self.count("traffic_unordered")
            notice = self._notice()
            sent = Sent(event_body(notice, self.rng.choice((40, 31)), now, None, None),
                        "unordered", notice_id=notice)
            self.sent.append(sent)
            out.append(sent)
        elif r < 0.30 and self.sent:
            old = self.rng.choice(self.sent[-30:])
            if old.kind == "ordered" and self.rng.random() < 0.5:
                # A redundant copy: the same event, another notice (and notifyMs).
                self.count("traffic_redundant")
                notice = self._notice()
                out.append(Sent(event_body(notice, old.event_type, now, old.sid, old.sequence),
                                "ordered", old.sid, old.sequence, old.event_type, notice))
            else:
                self.count("traffic_resend")
                out.append(Sent(old.body, old.kind, old.sid, old.sequence, old.event_type,
                                old.notice_id))
        else:
            sid = self.rng.choice(self.sids)
            seq = self.next_seq.get(sid, self.rng.choice((0, 0, 0, 1, 5)))
            if seq > 0 and self.rng.random() < 0.08:
                self.count("traffic_loss")  # a sequence never sent
                seq += self.rng.randint(1, 3)
            if self.rng.random() < 0.01 and seq < MAX_SEQUENCE - 1000:
                self.count("traffic_jump")
                seq = self.rng.choice((MAX_SEQUENCE - self.rng.randint(0, 5),
                                       seq + 2**self.rng.randint(20, 52)))
                seq = min(seq, MAX_SEQUENCE)
            if seq > MAX_SEQUENCE:
                seq = MAX_SEQUENCE
            self.next_seq[sid] = min(seq + 1, MAX_SEQUENCE)
            event_type = self.rng.choice(ORDERED_TYPES)
            if event_type == 77:
                self.count("traffic_unknown_type")
            notice = self._notice()
            sent = Sent(event_body(notice, event_type, now, sid, seq), "ordered", sid, seq,
                        event_type, notice)
            self.sent.append(sent)
            out.append(sent)
        for s in out:
            if self.rng.random() < 0.15:
                self.count("traffic_reorder")
                s.send_at = now + self.rng.randint(1, 1500)
                self.delayed.append(s)
        return [s for s in out if s.send_at == 0]

    def due(self, now: int, everything: bool = False) -> list[Sent]:
        ready = [s for s in self.delayed if everything or s.send_at <= now]
        self.delayed = [s for s in self.delayed if not (everything or s.send_at <= now)]
        return ready


def meta_for(now: int, n: int) -> inbox.ReceiveMeta:
    return inbox.ReceiveMeta(received_ms=now, signature="v2", secret_index=0,
                             remote_addr="127.0.0.1", request_id=f"r{n:08d}")
