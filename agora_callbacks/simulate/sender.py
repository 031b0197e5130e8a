"""Send simulated NCS traffic: sign, schedule (duplicates, reordering, loss), post.

Two steps, so the first can be tested without a server:

1. ``build_plan`` turns the recordings' envelopes into an ordered list of signed
   deliveries. Recordings run side by side (their events interleave). Each
   notification is *lost* with probability ``loss`` (never sent), otherwise sent,
   and *duplicated* with probability ``duplicates``: half the copies are redundant
   deliveries (the same bytes), half are resends after a lost acknowledgement (a
   later ``notifyMs``, hence other bytes and signatures), arriving 0.2-3 s later.
   *Reordering*: every delivery is delayed by a random 0..``reorder_ms``; the
   sending order is the order of the delayed times, with deliveries spaced
   ``1000 / rate`` ms apart (1 ms when the rate is unlimited).
2. ``send`` posts the deliveries in that order over keep-alive HTTP/1.1
   connections (one per concurrent sender), paced at ``rate`` requests per second
   (0: as fast as possible), and returns a ``Report``: statuses, latencies, errors.

Only the standard library is used (``http.client``), so the simulator adds no
dependency.
"""

from __future__ import annotations

import copy
import http.client
import queue
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from agora_callbacks.ingress.signature import sign_headers
from agora_callbacks.simulate.lifecycles import encode

RESEND_DELAY_MS = (200, 3_000)


@dataclass(frozen=True)
class Delivery:
    """One HTTP request to send."""

    body: bytes
    headers: dict[str, str]
    sid: str
    sequence: int
    event_type: int
    duplicate: bool = False


@dataclass
class Plan:
    """What ``build_plan`` decided: the deliveries in sending order and the tallies."""

    deliveries: list[Delivery]
    events: int
    dropped: int
    duplicates: int
    reordered: int
    sids: list[str]


@dataclass
class Report:
    """What ``send`` observed."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def accepted(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def failed(self) -> int:
        """Requests not answered 200 (other statuses and transport errors)."""
        return self.sent - self.accepted

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index]


def _resend(envelope: dict[str, Any], delay_ms: int) -> dict[str, Any]:
    """The envelope as NCS resends it: same notification, later ``notifyMs``."""
    again = copy.deepcopy(envelope)
    again["notifyMs"] = int(envelope["notifyMs"]) + delay_ms
    return again


def _count_reordered(deliveries: Sequence[Delivery]) -> int:
    """Deliveries sent after a later ``sequence`` of the same recording was sent."""
    highest: dict[str, int] = {}
    late = 0
    for d in deliveries:
        top = highest.get(d.sid, -1)
        if d.sequence < top and not d.duplicate:
            late += 1
        highest[d.sid] = max(top, d.sequence)
    return late


def build_plan(
    recordings: Sequence[Sequence[dict[str, Any]]],
    secret: str,
    *,
    duplicates: float = 0.0,
    reorder_ms: int = 0,
    loss: float = 0.0,
    rate: float = 0.0,
    seed: int | str = 0,
) -> Plan:
    """Signed deliveries for ``recordings`` (each a list of envelopes in sending order)."""
    for name, share in (("duplicates", duplicates), ("loss", loss)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {share}")
    if reorder_ms < 0:
        raise ValueError(f"reorder_ms must not be negative, got {reorder_ms}")
    rng = random.Random(f"{seed}:plan")
    spacing_ms = 1000.0 / rate if rate > 0 else 1.0
    n = max(1, len(recordings))
    timed: list[tuple[float, int, Delivery]] = []
    dropped = dups = events = 0

    def add(at_ms: float, envelope: dict[str, Any], duplicate: bool) -> None:
        body = encode(envelope)
        payload = envelope.get("payload", {})
        timed.append((at_ms, len(timed), Delivery(
            body=body, headers={"Content-Type": "application/json", **sign_headers(body, secret)},
            sid=str(payload.get("sid", "")), sequence=int(payload.get("sequence", -1)),
            event_type=int(envelope.get("eventType", -1)), duplicate=duplicate,
        )))

    for r, envelopes in enumerate(recordings):
        for k, envelope in enumerate(envelopes):
            events += 1
            if rng.random() < loss:
                dropped += 1
                continue
            nominal = (k * n + r) * spacing_ms
            at = nominal + rng.uniform(0, reorder_ms)
            add(at, envelope, False)
            if rng.random() < duplicates:
                dups += 1
                delay = rng.randint(*RESEND_DELAY_MS)
                if rng.random() < 0.5:
                    add(at + rng.uniform(0, reorder_ms) + spacing_ms, envelope, True)
                else:
                    add(at + delay, _resend(envelope, delay), True)
    timed.sort(key=lambda item: (item[0], item[1]))
    deliveries = [d for _, _, d in timed]
    sids = [str(envs[0]["payload"]["sid"]) for envs in recordings if envs]
    return Plan(deliveries=deliveries, events=events, dropped=dropped, duplicates=dups,
                reordered=_count_reordered(deliveries), sids=sids)


class _Connection:
    """One keep-alive HTTP/1.1 connection, reopened after a transport error."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            if self.conn is None:
                cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
                self.conn = cls(self.host, self.port, timeout=self.timeout)
                self.conn.connect()
                if self.conn.sock is not None:  # no Nagle delay between small requests
                    self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conn.request("POST", self.path, body=body, headers=headers)
            response = self.conn.getresponse()
            response.read()
            if response.will_close:
                self.close()
            return response.status
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def send(
    url: str,
    deliveries: Sequence[Delivery],
    *,
    rate: float = 0.0,
    concurrency: int = 1,
    timeout: float = 10.0,
    on_result: Callable[[Delivery, int | None], None] | None = None,
) -> Report:
    """POST every delivery to ``url`` in order, paced at ``rate`` per second (0: no
    pacing), from ``concurrency`` threads each holding one keep-alive connection.

    ``on_result(delivery, status)`` is called from the calling thread after each
    answer (``status`` is ``None`` on a transport error), e.g. to move a progress bar.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    _Connection(url, timeout)  # validate the URL before starting threads
    work: queue.Queue[tuple[int, Delivery] | None] = queue.Queue()
    results: queue.Queue[tuple[Delivery, int | None, str, float]] = queue.Queue()
    for item in enumerate(deliveries):
        work.put(item)
    for _ in range(concurrency):
        work.put(None)
    start = time.perf_counter()

    def worker() -> None:
        conn = _Connection(url, timeout)
        try:
            while True:
                item = work.get()
                if item is None:
                    return
                index, delivery = item
                if rate > 0:
                    due = start + index / rate
                    pause = due - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)  # pacing the load, not waiting on a condition
                t0 = time.perf_counter()
                try:
                    status: int | None = conn.post(delivery.body, delivery.headers)
                    error = ""
                except Exception as exc:  # any: a worker that died would leave send waiting
                    status, error = None, type(exc).__name__
                results.put((delivery, status, error, (time.perf_counter() - t0) * 1000))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    report = Report()
    for _ in range(len(deliveries)):
        delivery, status, error, latency = results.get()
        report.sent += 1
        if status is None:
            report.errors[error] += 1
        else:
            report.statuses[status] += 1
            report.latencies_ms.append(latency)
        if on_result is not None:
            on_result(delivery, status)
    for t in threads:
        t.join()
    report.elapsed_s = time.perf_counter() - start
    return report


def summary(plan: Plan, report: Report) -> dict[str, Any]:
    """The figures of one run, JSON-friendly."""
    return {
        "recordings": len(plan.sids),
        "events": plan.events,
        "sent": report.sent,
        "accepted": report.accepted,
        "rejected": {str(k): v for k, v in sorted(report.statuses.items()) if k != 200},
        "errors": dict(report.errors),
        "duplicates_sent": plan.duplicates,
        "dropped_by_loss": plan.dropped,
        "reordered": plan.reordered,
        "elapsed_s": round(report.elapsed_s, 3),
        "rate_per_s": round(report.rate, 1),
        "latency_ms_p50": round(report.percentile(50), 2),
        "latency_ms_p99": round(report.percentile(99), 2),
        "sids": plan.sids,
    }
