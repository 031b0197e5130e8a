"""Prometheus metrics: every metric object of the service, and the scrape registry.

Two kinds of figures:

- **per process** (counters and histograms below), incremented where things
  happen: the ingress's requests, the handlers' runs. In a process tree that
  forks (gunicorn, Celery prefork) they are shared through files in
  ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multi-process mode; see
  ``agora_callbacks.metrics_dir``, which must run before this module is imported);
- **pipeline-wide** truths that live in Redis (backlog, dead letters, the
  workers' counters in ``keys.COUNTERS``, recordings waiting on a gap), read at
  scrape time by ``RedisCollector``, so every process type reports the same value.

``scrape_registry(client)`` joins both for one scrape endpoint: the ingress's
``GET /metrics`` and the worker's HTTP server on ``WORKER_METRICS_PORT``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from agora_callbacks import forks, keys
from agora_callbacks.metrics_dir import ensure_multiproc_dir, multiproc_dir
from agora_callbacks.reconcile.answers import KINDS
from agora_callbacks.tally import Tallied, TalliedHistogram, Tally


def _multiprocess_value_class() -> Any:
    """prometheus_client's multi-process value, asking ``forks`` for the process id:
    its default calls ``os.getpid()`` (a system call) on every increment, and the
    ingress makes six per request."""
    return values.MultiProcessValue(process_identifier=forks.process_id)


if values.ValueClass is not values.MutexValue:  # PROMETHEUS_MULTIPROC_DIR was set
    values.ValueClass = _multiprocess_value_class()

# --- ingress ---------------------------------------------------------------------

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0)

INGRESS_RECEIVED = Counter(
    "acb_ingress_received", "Callback requests received on the NCS endpoint.")
INGRESS_VERIFIED = Counter(
    "acb_ingress_verified", "Requests whose signature verified, by signature version.",
    ["signature"])
INGRESS_REJECTED = Counter(
    "acb_ingress_rejected", "Requests refused before storage, by reason.", ["reason"])
INGRESS_STORED = Counter(
    "acb_ingress_stored", "Verified bodies stored in Redis (then acknowledged with 200).")
INGRESS_STORE_FAILED = Counter(
    "acb_ingress_store_failed", "Verified bodies Redis could not take (answered 503).")
INGRESS_RESPONSES = Counter(
    "acb_ingress_responses", "Responses sent by the ingress, by route and status code.",
    ["route", "status"])
INGRESS_DURATION = Histogram(
    "acb_ingress_request_duration_seconds",
    "Time from request start to response, by route.", ["route"], buckets=_LATENCY_BUCKETS)

#: The ingress's per-request counters and timings go through this (``agora_callbacks.tally``): a
#: scrape sees other worker processes' counts at most a second late.
INGRESS_TALLY = Tally(interval_s=1.0)


def tallied(counter: Any) -> Tallied:
    """``counter`` (a prometheus counter or labelled child) counted via ``INGRESS_TALLY``."""
    return Tallied(INGRESS_TALLY, counter.inc)


def tallied_histogram(histogram: Any) -> TalliedHistogram:
    """``histogram`` (a labelled child) observed via ``INGRESS_TALLY``."""
    return TalliedHistogram(INGRESS_TALLY, histogram)


# --- workers ---------------------------------------------------------------------

HANDLER_DURATION = Histogram(
    "acb_handler_duration_seconds", "Run time of one handler on one event, by handler.",
    ["handler"], buckets=_LATENCY_BUCKETS)
HANDLER_FAILURES = Counter(
    "acb_handler_failures",
    "Handler runs that raised (each attempt, retried or not), by handler.", ["handler"])
RECORD_FOLDS = Counter(
    "acb_record_folds",
    "Events folded into their recording's record in the turn path, by outcome: "
    "folded, already (a re-run: no change), stale (the turn was over), failed.",
    ["outcome"])
LIFECYCLE_PHASES = Counter(
    "acb_lifecycle_phases", "Lifecycle phases fired, by phase.", ["phase"])
RECONCILE_QUERIES = Counter(
    "acb_reconcile_queries",
    "Calls of Agora's query REST endpoint by this process (reconciliation), by answer: "
    "ok, not_found, retry, error, throttled (no rate-limit slot: nothing sent).",
    ["answer"])
#: The ``answer`` label values: the client's answer kinds (``reconcile.answers``).
RECONCILE_ANSWERS: tuple[str, ...] = KINDS


def _start_reconcile_answers() -> None:
    """Every answer starts at 0, so that a rate over it exists before the first call."""
    for answer in RECONCILE_ANSWERS:
        RECONCILE_QUERIES.labels(answer)


def _restart_reconcile_answers() -> None:
    """On a switch to multi-process mode: the answers created before it keep their
    value in the switching process's memory, where its forks' counts are lost; drop
    them and create them again. They have no file to remove, which is what
    prometheus_client warns about when labels are cleared in multi-process mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        RECONCILE_QUERIES.clear()
    _start_reconcile_answers()


_start_reconcile_answers()
DEADLETTERED = Counter(
    "acb_deadlettered", "Dead letters written by this process, by kind and reason.",
    ["kind", "reason"])

#: Fields of ``keys.COUNTERS`` always exported (as 0 before their first increment),
#: with their meaning. Other fields the workers add are exported too.
PIPELINE_COUNTERS: dict[str, str] = {
    "admitted": "Events admitted to a recording's order (first copy of each seen).",
    "duplicates": "Copies dropped by deduplication.",
    "dispatched": "Events whose handlers were dispatched.",
    "late": "Events that arrived after their turn and were dispatched marked late.",
    "gaps": "Missing sequences skipped after the hold window.",
    "invalid": "Stored bodies that were not a valid event (dead-lettered).",
    "stale": "Stored bodies older than the dedupe window (dead-lettered as stale replays).",
    "no_handler": "Events taken in order with no handler registered for them.",
    "deadletters_handler": "Handler runs dead-lettered (retries exhausted, or lost).",
    "republished": "Turns whose handlers were published again: none had started within "
                   "the publish lease (DISPATCH_LEASE_MS, growing per try).",
    "skipped_copies": "Handler task copies skipped at their start: the handler had started "
                      "or finished already (a copy published again or late, a redelivery).",
}


def _stream_ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return int(text.split("-", 1)[0] or 0)


class RedisCollector(Collector):
    """Pipeline-wide figures read from Redis at scrape time, in one round trip.

    If Redis does not answer, only ``acb_redis_up 0`` is reported: a scrape never
    fails because of Redis, and an alert on ``acb_redis_up`` says why figures stop.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("acb_redis_up", "1 when Redis answered this scrape, else 0.")
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.xlen(keys.INBOX)
            pipe.xrange(keys.INBOX, "-", "+", 1)
            pipe.xinfo_stream(keys.INBOX)
            pipe.xpending(keys.INBOX, keys.INBOX_GROUP)
            pipe.xlen(keys.DEADLETTERS)
            pipe.zcard(keys.TIMERS)
            pipe.zrange(keys.TIMERS, 0, 0, withscores=True)
            pipe.hgetall(keys.COUNTERS)
            results: list[Any] = pipe.execute(raise_on_error=False)
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        hard_errors = [r for r in (results[0], results[4], results[5], results[7])
                       if isinstance(r, Exception)]
        if hard_errors:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from self._inbox(results)
        yield from self._recordings(results)
        yield from self._counters(results[7])

    def _inbox(self, results: list[Any]) -> Iterator[Metric]:
        now = time.time()
        backlog, first, info, pending, dead = (results[0], results[1], results[2],
                                               results[3], results[4])
        yield GaugeMetricFamily(
            "acb_inbox_backlog",
            "Stored bodies not yet taken in by a worker (length of the inbox stream).",
            value=int(backlog))
        pending_count = 0
        if isinstance(pending, dict):
            pending_count = int(pending.get("pending", 0) or 0)
        yield GaugeMetricFamily(
            "acb_inbox_pending",
            "Stored bodies read by a worker and not yet acknowledged.", value=pending_count)
        oldest = 0.0
        if isinstance(first, list) and first:
            oldest = max(0.0, now - _stream_ms(first[0][0]) / 1000.0)
        yield GaugeMetricFamily(
            "acb_inbox_oldest_age_seconds",
            "Age of the oldest stored body still in the inbox (0 when it is empty).",
            value=oldest)
        last = 0.0
        if isinstance(info, dict):
            last_id = info.get("last-generated-id") or info.get(b"last-generated-id")
            if last_id:
                last = _stream_ms(last_id) / 1000.0
        yield GaugeMetricFamily(
            "acb_inbox_last_stored_timestamp_seconds",
            "Unix time of the last body stored by any ingress (0 if none yet).", value=last)
        yield GaugeMetricFamily(
            "acb_deadletters", "Dead letters currently kept (length of the dead-letter stream).",
            value=int(dead))

    def _recordings(self, results: list[Any]) -> Iterator[Metric]:
        waiting, first_timer = results[5], results[6]
        yield GaugeMetricFamily(
            "acb_recordings_waiting",
            "Recordings with pending work: buffered events, a hold window or a lease.",
            value=int(waiting))
        overdue = 0.0
        if isinstance(first_timer, list) and first_timer:
            overdue = max(0.0, time.time() - float(first_timer[0][1]) / 1000.0)
        yield GaugeMetricFamily(
            "acb_recordings_overdue_seconds",
            "How long the most overdue recording has waited past its timer (a hold window "
            "or lease that no worker has acted on); stays near 0 while workers run.",
            value=overdue)

    def _counters(self, raw: dict[bytes, bytes]) -> Iterator[Metric]:
        values = {k.decode(): v for k, v in raw.items()}

        def number(name: str) -> int:
            try:
                return int(values.get(name, 0))
            except ValueError:
                return 0

        buffered = number("admitted") - number("dispatched") - number("no_handler")
        yield GaugeMetricFamily(
            "acb_events_buffered",
            "Events admitted but not yet dispatched (waiting for their turn or for a "
            "missing sequence): admitted - dispatched - no_handler.", value=max(0, buffered))
        names = dict.fromkeys(PIPELINE_COUNTERS)
        names.update(dict.fromkeys(sorted(values)))
        for name in names:
            if not name.replace("_", "").isalnum() or not name.isascii():
                continue
            try:
                value = float(values.get(name, 0))
            except ValueError:
                continue
            doc = PIPELINE_COUNTERS.get(name, f"Pipeline counter {name!r} (keys.COUNTERS).")
            yield CounterMetricFamily(f"acb_pipeline_{name.lower()}", doc, value=value)


def multiprocess_mode() -> bool:
    """Whether this process's metric values live in ``PROMETHEUS_MULTIPROC_DIR`` files."""
    return values.ValueClass is not values.MutexValue and multiproc_dir() is not None


def use_multiprocess(process_type: str) -> str:
    """Switch a process that is about to fork (Celery's prefork pool) to multi-process
    mode, when it was not started in it; return the directory.

    Metric children created from now on (every worker metric is labelled, so all of
    them) write to files its children share; the ones created at import (the
    reconcile answers at 0) are created again. Unlabelled metrics created at import
    stay in this process's memory: none of them is used by workers.
    """
    path = ensure_multiproc_dir(process_type)
    if values.ValueClass is values.MutexValue:
        values.ValueClass = _multiprocess_value_class()
        _restart_reconcile_answers()
    return path


#: Name prefix of the ingress's own metrics, which a worker's endpoint leaves out.
INGRESS_PREFIX = "acb_ingress_"


class _ProcessMetrics(Collector):
    """This process's metrics, or those of its whole tree in multi-process mode,
    without the families named ``exclude*``."""

    def __init__(self, exclude: tuple[str, ...] = ()) -> None:
        self._exclude = exclude

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        families = (MultiProcessCollector(None).collect() if multiprocess_mode()
                    else REGISTRY.collect())
        if not self._exclude:
            return families
        return (f for f in families if not f.name.startswith(self._exclude))


def scrape_registry(client: redis.Redis, *, exclude: tuple[str, ...] = ()) -> CollectorRegistry:
    """A registry for one scrape endpoint: process metrics (but the families whose
    names start with one of ``exclude``) plus ``RedisCollector``. A worker's excludes
    ``INGRESS_PREFIX``: every process imports the ingress's metrics with this module,
    and its intake (started in multi-process mode) would list them at zero."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProcessMetrics(exclude))
    registry.register(RedisCollector(client))
    return registry
