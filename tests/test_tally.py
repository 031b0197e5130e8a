"""``agora_callbacks.tally``: counts made on many threads reach the counter exactly once,
at flush, from the background thread, at a multiprocessing child's end, and never
twice across a fork."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable

from conftest import wait_for

from agora_callbacks.tally import Tallied, Tally


class Sink:
    def __init__(self) -> None:
        self.total = 0.0
        self.calls = 0

    def __call__(self, amount: float) -> None:
        self.total += amount
        self.calls += 1


def test_counts_from_many_threads_are_handed_on_once_in_batches() -> None:
    tally = Tally(interval_s=3600)  # only explicit flushes
    sink = Sink()
    counter = Tallied(tally, sink)

    def work() -> None:
        for _ in range(10_000):
            counter.inc()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sink.total == 0
    tally.flush()
    assert sink.total == 40_000 and sink.calls <= 4  # one hand-over per thread's row
    tally.flush()
    assert sink.total == 40_000  # nothing twice
    counter.inc(2.5)
    tally.flush()
    assert sink.total == 40_002.5


def test_rows_of_finished_threads_are_dropped_once_handed_on() -> None:
    tally = Tally(interval_s=3600)
    sink = Sink()
    counter = Tallied(tally, sink)
    for _ in range(20):
        thread = threading.Thread(target=counter.inc)
        thread.start()
        thread.join()
    tally.flush()
    assert sink.total == 20
    assert len(tally._rows) == 0


def test_counters_registered_after_counting_started() -> None:
    tally = Tally(interval_s=3600)
    first, second = Sink(), Sink()
    a = Tallied(tally, first)
    a.inc()
    b = Tallied(tally, second)  # rows that exist grow a slot
    b.inc(3)
    a.inc()
    tally.flush()
    assert (first.total, second.total) == (2, 3)


def test_the_background_thread_hands_counts_on() -> None:
    tally = Tally(interval_s=0.02)
    sink = Sink()
    Tallied(tally, sink).inc(7)
    wait_for(lambda: sink.total == 7, timeout=5, message="the tally thread")


def test_a_forked_child_reports_only_its_own_counts() -> None:
    tally = Tally(interval_s=3600)
    sink = Sink()
    counter = Tallied(tally, sink)
    counter.inc(5)  # counted before the fork, handed on by the parent only
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            counter.inc(1)
            tally.flush()
            os.write(write, str(sink.total - 0).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_total = float(pipe.read())
    os.waitpid(pid, 0)
    tally.flush()
    assert child_total == 1.0  # not 6: the parent's 5 stay the parent's
    assert sink.total == 5.0


def _count_and_end(queue_put: Callable[[float], None]) -> None:
    tally = Tally(interval_s=3600)

    class Reporting:
        total = 0.0

        def __call__(self, amount: float) -> None:
            Reporting.total += amount
            queue_put(Reporting.total)

    Tallied(tally, Reporting()).inc(4)


def test_a_multiprocessing_child_hands_its_counts_on_when_it_ends() -> None:
    """granian's workers are multiprocessing children, which end with os._exit."""
    context = multiprocessing.get_context("fork")
    queue = context.SimpleQueue()
    process = context.Process(target=_count_and_end, args=(queue.put,))
    process.start()
    process.join(30)
    assert process.exitcode == 0
    assert not queue.empty() and queue.get() == 4.0


def test_a_tallied_histogram_gives_the_values_of_direct_observations() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    from agora_callbacks.tally import TalliedHistogram

    registry = CollectorRegistry()
    histogram = Histogram("h_seconds", "d", ["route"], buckets=(0.001, 0.01, 0.1),
                          registry=registry)
    direct, tallied_child = histogram.labels("direct"), histogram.labels("tallied")
    tally = Tally(interval_s=3600)
    tallied = TalliedHistogram(tally, tallied_child)
    amounts = [0.0, 0.0005, 0.001, 0.0010001, 0.05, 0.1, 0.2, 7.0, 0.003]
    for amount in amounts:
        direct.observe(amount)
        tallied.observe(amount)
    tally.flush()

    def series(route: str) -> dict[tuple[str, str], float]:
        return {(s.name, s.labels.get("le", "")): s.value
                for family in registry.collect() for s in family.samples
                if s.labels.get("route") == route and not s.name.endswith("_created")}

    assert series("tallied") == series("direct")
    assert series("direct")[("h_seconds_count", "")] == len(amounts)
