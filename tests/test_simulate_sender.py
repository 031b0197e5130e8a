"""The simulator's delivery plan (duplicates, reordering, loss) and its HTTP sender."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agora_callbacks.ingress import signature
from agora_callbacks.simulate import sender
from agora_callbacks.simulate.lifecycles import lifecycle, new_sid

SECRET = "secret"
START = 1_700_000_000_000


def recordings(n: int = 3) -> list[list[dict[str, Any]]]:
    kinds = ["individual", "composite", "web"]
    return [lifecycle(kinds[i % 3], new_sid(), start_ms=START, seed=i)  # type: ignore[arg-type]
            for i in range(n)]


def test_plain_plan_sends_every_event_once_in_order_signed() -> None:
    recs = recordings()
    plan = sender.build_plan(recs, SECRET)
    total = sum(len(r) for r in recs)
    assert len(plan.deliveries) == plan.events == total
    assert plan.dropped == plan.duplicates == plan.reordered == 0
    assert plan.sids == [r[0]["payload"]["sid"] for r in recs]
    per_sid: dict[str, list[int]] = {}
    for d in plan.deliveries:
        per_sid.setdefault(d.sid, []).append(d.sequence)
        assert signature.verify(d.body, d.headers, [SECRET]) == signature.Verified("v2", 0)
        v1_only = {k: v for k, v in d.headers.items() if k != signature.HEADER_V2}
        assert signature.verify(d.body, v1_only, [SECRET]) == signature.Verified("v1", 0)
        assert json.loads(d.body)["payload"]["sequence"] == d.sequence
    assert all(seqs == sorted(seqs) for seqs in per_sid.values())
    # Recordings interleave rather than run one after the other.
    first_sids = [d.sid for d in plan.deliveries[:3]]
    assert len(set(first_sids)) == 3


def test_loss_duplicates_and_reordering_are_what_the_plan_reports() -> None:
    recs = recordings(6)
    total = sum(len(r) for r in recs)
    plan = sender.build_plan(recs, SECRET, duplicates=0.3, loss=0.1, reorder_ms=300,
                             rate=100, seed=11)
    originals = [d for d in plan.deliveries if not d.duplicate]
    copies = [d for d in plan.deliveries if d.duplicate]
    assert len(originals) == total - plan.dropped
    assert len(copies) == plan.duplicates
    assert 0 < plan.dropped < total * 0.25
    assert total * 0.15 < plan.duplicates < total * 0.45
    keys = Counter((d.sid, d.sequence) for d in originals)
    assert max(keys.values()) == 1
    assert {(d.sid, d.sequence) for d in copies} <= set(keys)
    # Half the copies are resends: same notification, later notifyMs, other bytes.
    by_key = {(d.sid, d.sequence): d for d in originals}
    resends = [c for c in copies if c.body != by_key[(c.sid, c.sequence)].body]
    assert resends and len(resends) < len(copies)
    for c in resends:
        a, b = json.loads(by_key[(c.sid, c.sequence)].body), json.loads(c.body)
        assert b["notifyMs"] > a["notifyMs"] and b["noticeId"] == a["noticeId"]
        assert b["payload"] == a["payload"]
    assert plan.reordered > 0
    # Same seed, same plan.
    again = sender.build_plan(recs, SECRET, duplicates=0.3, loss=0.1, reorder_ms=300,
                              rate=100, seed=11)
    assert [d.body for d in again.deliveries] == [d.body for d in plan.deliveries]


def test_shares_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="loss"):
        sender.build_plan(recordings(1), SECRET, loss=1.5)
    with pytest.raises(ValueError, match="duplicates"):
        sender.build_plan(recordings(1), SECRET, duplicates=-0.1)


class Receiver:
    """A stdlib HTTP server that verifies signatures and answers a chosen status."""

    def __init__(self, status_for: Any = None) -> None:
        self.bodies: list[bytes] = []
        self.connections: set[tuple[str, int]] = set()
        self.status_for = status_for or (lambda body: 200)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = signature.verify(body, dict(self.headers), [SECRET]).ok
                status = receiver.status_for(body) if ok else 401
                receiver.bodies.append(body)
                receiver.connections.add(self.client_address)
                out = b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self._headers_buffer.append(b"\r\n" + out)  # one write: no Nagle stall
                self.flush_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/agora/ncs"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_send_posts_every_delivery_over_keep_alive(receiver: Receiver) -> None:
    plan = sender.build_plan(recordings(3), SECRET, duplicates=0.2, seed=3)
    seen: list[int | None] = []
    report = sender.send(receiver.url, plan.deliveries, concurrency=2,
                         on_result=lambda d, s: seen.append(s))
    assert report.sent == report.accepted == len(plan.deliveries) == len(seen)
    assert report.failed == 0 and not report.errors
    assert sorted(receiver.bodies) == sorted(d.body for d in plan.deliveries)
    assert len(receiver.connections) == 2  # one keep-alive connection per sender thread
    assert 0 < report.percentile(50) <= report.percentile(99)


def test_send_paces_at_the_rate(receiver: Receiver) -> None:
    plan = sender.build_plan(recordings(1), SECRET)
    deliveries = plan.deliveries[:11]
    report = sender.send(receiver.url, deliveries, rate=100)
    assert report.elapsed_s >= 0.1  # 11 requests at 100/s: the last one starts at 100 ms
    assert report.rate <= 115


def test_send_counts_statuses_and_transport_errors() -> None:
    r = Receiver(status_for=lambda body: 503 if b'"eventType":11' in body else 200)
    r.thread.start()
    try:
        plan = sender.build_plan(recordings(2), SECRET)
        report = sender.send(r.url, plan.deliveries)
        assert report.statuses[503] == 2
        assert report.accepted == len(plan.deliveries) - 2 and report.failed == 2
        figures = sender.summary(plan, report)
        assert figures["rejected"] == {"503": 2}
        unsigned = sender.Delivery(body=b"{}", headers={"Content-Type": "application/json"},
                                   sid="", sequence=-1, event_type=-1)
        bad = sender.send(r.url, [unsigned])
        assert bad.statuses[401] == 1
    finally:
        r.server.shutdown()
        r.server.server_close()
    closed = sender.send(r.url, plan.deliveries[:2], timeout=1)
    assert closed.sent == 2 and sum(closed.errors.values()) == 2 and closed.accepted == 0
