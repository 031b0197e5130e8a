"""Workers benchmark: stored raw bodies -> parse, dedupe, order, dispatch -> one
no-op handler, against bare Celery running the same number of no-op tasks on the
same worker pool, in the same run.

    python benchmarks/bench_workers.py                      # full: 1,000 recordings x 20 events
    python benchmarks/bench_workers.py --recordings 200     # reduced, on a busy machine
    python benchmarks/bench_workers.py --broker amqp        # RabbitMQ as the Celery broker

``--broker redis`` (the default) uses the private Redis below as the Celery broker
too; ``--broker amqp`` uses RabbitMQ at ``RABBITMQ_URL`` (default
``amqp://guest:guest@127.0.0.1:5672``) in a virtual host of its own, created for
the run and deleted after it (``tests/brokers.py``), for both sides: bare Celery
and our pipeline publish to and consume from the same broker, with the same
settings (publisher confirms included), on the same pool.

Starts a private Redis (embedded valkey-server) and one ``celery worker -P prefork
-c 2`` (the intake runs inside it), both as child processes, and stops them at
the end. Prints a table:

- events/s: bare Celery no-op tasks (published from this process; measured in
  two halves, before and after ours), and our pipeline from bodies already in
  the inbox, twice: with ``BUILTIN_HANDLERS=false`` (the pipeline alone) and in the
  default configuration (every event also folded into its recording's record, in
  the turn path, with the lifecycle timers); the ratios (goal >= 0.8 for both);
- receive-to-handler latency p50/p99: during the burst above (a backlog of every
  body at once, so it mostly measures queueing), and at a steady rate of half
  the measured pipeline throughput (``--steady-s`` seconds, events in order, so
  no hold-window wait), which is the figure a production receiver sees;
- Redis memory per recording: while active (every event admitted and waiting
  behind a turn, raw bodies included: the worst case), and retained once every
  event is handled (the dedupe window's state, expiring after DEDUPE_TTL_S); and
  the record of one recording (``MEMORY USAGE``, kept ``RECORD_TTL_S``).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests")]

from agora_callbacks.embedded_server import ServerProcess  # noqa: E402
from agora_callbacks.workers.bootstep import PROCESS_TITLE  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def shuffled_bodies(recordings: int, events: int, rng: random.Random,
                    swap: float = 0.3) -> list[tuple[str, bytes]]:
    """(key, body) for every event, recordings interleaved, each recording's events
    shuffled a little (neighbours swapped with probability ``swap``: well inside
    the hold window)."""
    from workers_support import body

    per_sid = []
    for r in range(recordings):
        sid = f"bench{r:05d}"
        seqs = list(range(events))
        for i in range(0, events - 1, 2):
            if rng.random() < swap:
                seqs[i], seqs[i + 1] = seqs[i + 1], seqs[i]
        per_sid.append([(f"{sid}:40:{q}", body(sid, q, 40)) for q in seqs])
    out = []
    for i in range(events):
        row = [lst[i] for lst in per_sid]
        rng.shuffle(row)
        out.extend(row)
    return out


def store_all(client: object, items: list[tuple[str, bytes]], received: dict[str, float]) -> None:
    from agora_callbacks import keys
    from agora_callbacks.inbox import ReceiveMeta, fields_for

    pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
    for n, (key, raw) in enumerate(items):
        now = time.time()
        received[key] = now
        meta = ReceiveMeta(received_ms=int(now * 1000), signature="v2", secret_index=0,
                           remote_addr="127.0.0.1", request_id=str(n))
        pipe.xadd(keys.INBOX, fields_for(raw, meta))
        if n % 500 == 499:
            pipe.execute()
    pipe.execute()


def wait_count(client: object, target: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while True:
        done = int(client.get("bench:count") or 0)  # type: ignore[attr-defined]
        if done >= target:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done}/{target} handled after {timeout}s")
        time.sleep(0.005)


def latencies(client: object, sent: dict[str, float]) -> list[float]:
    out = []
    for row in client.lrange("bench:starts", 0, -1):  # type: ignore[attr-defined]
        key, _, started = row.decode().partition(" ")
        if key in sent:
            out.append((float(started) - sent[key]) * 1000)
    return out


def reset(client: object) -> None:
    client.delete("bench:count", "bench:starts")  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--steady-s", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--broker", choices=("redis", "amqp"), default="redis",
                        help="the Celery broker of both sides (default: redis)")
    args = parser.parse_args()
    n = args.recordings * args.events
    rng = random.Random(args.seed)

    vhost = None
    broker_url = None
    if args.broker == "amqp":
        import brokers

        made = brokers.rabbitmq_answers() or brokers.create_vhost()
        if isinstance(made, str):
            print(f"--broker amqp: {made}", file=sys.stderr)
            return 2
        vhost = made
        broker_url = vhost.url
        os.environ["CELERY_BROKER_URL"] = broker_url
    try:
        return run(args, n, rng, broker_url)
    finally:
        if vhost is not None:
            vhost.delete()


def rabbitmq_process() -> object | None:
    """RabbitMQ's Erlang VM, for its CPU time (None when it cannot be seen)."""
    import psutil

    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "beam.smp" and "rabbit" in " ".join(proc.info["cmdline"] or []):
            return proc
    return None


def run(args: argparse.Namespace, n: int, rng: random.Random, broker_url: str | None) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        server = ServerProcess(Path(tmp) / "redis")
        server.start()
        os.environ["REDIS_URL"] = server.url
        os.environ.setdefault("LOG_LEVEL", "warning")
        import redis
        from workers_procs import Worker

        from agora_callbacks import keys
        from agora_callbacks.workers.ordering import Ordering, Record

        client = redis.Redis.from_url(server.url)

        def start_worker(builtin: bool) -> Worker:
            return Worker(server.url, "bench" if not builtin else "bench-default",
                          concurrency=args.concurrency, handlers="bench_workers_handlers",
                          log_dir=Path(tmp), broker_url=broker_url,
                          env={"PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT / "tests")]),
                               "LOG_LEVEL": "warning",
                               "BUILTIN_HANDLERS": "true" if builtin else "false",
                               "REORDER_HOLD_MS": "15000",
                               "CLAIM_IDLE_MS": "5000", "HANDLER_VISIBILITY_TIMEOUT_S": "600",
                               "DISPATCH_LEASE_MS": "5000", "HANDLER_DEADLINE_S": "3600"})

        worker = start_worker(builtin=False)
        try:
            worker.wait_ready(client, timeout=60)
            import bench_workers_handlers

            items = shuffled_bodies(args.recordings, args.events, rng)

            # (a) bare Celery: n no-op tasks on the same pool, in two halves, one
            # before and one after ours, so that a change in the machine's load
            # during the run weighs on both alike.
            import psutil

            parts: dict[str, dict[str, float]] = {"bare": {}, "ours": {}, "default": {}}
            rabbit = rabbitmq_process() if broker_url else None

            def cpu_by_part() -> dict[str, float]:
                """CPU seconds used so far by Redis, the worker's main process, its
                pool processes and its intake: figures the machine's other load
                does not change much."""
                main = psutil.Process(worker.pid)
                named = [("redis", psutil.Process(server.process.pid)), ("main", main)]
                if rabbit is not None:
                    named.append(("rabbitmq", rabbit))
                for child in main.children(recursive=True):
                    cmd = " ".join(child.cmdline())
                    intake = cmd.startswith(PROCESS_TITLE) or "spawn_main" in cmd
                    named.append(("intake" if intake else "pool", child))
                out: dict[str, float] = {}
                for name, proc in named:
                    try:
                        t = proc.cpu_times()
                    except psutil.NoSuchProcess:
                        continue
                    out[name] = out.get(name, 0.0) + t.user + t.system
                return out

            def cpu_s(phase: str = "", before: dict[str, float] | None = None) -> float:
                now = cpu_by_part()
                if phase and before is not None:
                    for k, v in now.items():
                        parts[phase][k] = parts[phase].get(k, 0.0) + v - before.get(k, 0.0)
                return sum(now.values())

            cpu = {"bare": 0.0, "ours": 0.0, "default": 0.0}

            def bare_celery(part: list[tuple[str, bytes]]) -> tuple[float, list[float]]:
                reset(client)
                b0 = cpu_by_part()
                c0 = sum(b0.values())
                sent: dict[str, float] = {}
                t0 = time.monotonic()
                with bench_workers_handlers.celery_app.producer_or_acquire() as producer:
                    for key, _ in part:
                        sent[key] = time.time()
                        bench_workers_handlers.noop.apply_async((key,), producer=producer)
                t1 = wait_count(client, len(part), timeout=600)
                cpu["bare"] += cpu_s("bare", b0) - c0
                return t1 - t0, latencies(client, sent)

            first_s, celery_lat = bare_celery(items[: n // 2])

            def through_pipeline(phase: str, bodies: list[tuple[str, bytes]]
                                 ) -> tuple[float, list[float]]:
                """Store ``bodies`` and wait until each was handled: events/s and
                receive-to-handler latencies (CPU counted under ``phase``)."""
                received: dict[str, float] = {}
                b0 = cpu_by_part()
                c0 = sum(b0.values())
                t0 = time.monotonic()
                store_all(client, bodies, received)
                t1 = wait_count(client, len(bodies), timeout=600)
                cpu[phase] = cpu_s(phase, b0) - c0
                return len(bodies) / (t1 - t0), latencies(client, received)

            # (b) ours: the same number of stored bodies through the whole pipeline.
            reset(client)
            mem_before = int(client.info("memory")["used_memory"])
            ours_rate, ours_lat = through_pipeline("ours", items)
            counters = {k.decode(): int(v) for k, v in client.hgetall(keys.COUNTERS).items()}
            deadline = time.monotonic() + 30
            while client.xlen(keys.INBOX) and time.monotonic() < deadline:
                time.sleep(0.05)
            retained = (int(client.info("memory")["used_memory"]) - mem_before) / args.recordings

            # (b2) the default configuration: the same bodies (other sids), each event
            # also folded into its recording's record in the turn path.
            worker.stop()
            worker = start_worker(builtin=True)
            worker.wait_ready(client, timeout=60)
            reset(client)
            default_items = [(k.replace("bench", "deflt", 1), b.replace(b'"bench', b'"deflt'))
                             for k, b in items]
            default_rate, default_lat = through_pipeline("default", default_items)
            from agora_callbacks.workers.builtin import store

            sample_sids = [f"deflt{r:05d}" for r in range(0, args.recordings,
                                                           max(1, args.recordings // 50))]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(
                    (store.load(client, sid) or {}).get("event_count") != args.events
                    for sid in sample_sids):
                time.sleep(0.05)
            record_bytes = statistics.mean(
                int(client.memory_usage(keys.recording_state(sid)) or 0) for sid in sample_sids)
            folded = sum(int((store.load(client, sid) or {}).get("event_count", 0))
                         for sid in sample_sids)

            second_s, more_lat = bare_celery(items[n // 2:])
            celery_rate = n / (first_s + second_s)
            celery_lat += more_lat

            # (c) steady rate, half the pipeline's throughput: latency without backlog.
            reset(client)
            rate = max(50.0, ours_rate / 2)
            steady_recordings = max(1, int(rate * args.steady_s / args.events) + 1)
            steady = [(k.replace("bench", "steady", 1), b.replace(b'"bench', b'"steady'))
                      for k, b in shuffled_bodies(steady_recordings, args.events, rng, swap=0)]
            steady = steady[: int(rate * args.steady_s)]
            received_steady: dict[str, float] = {}
            start = time.monotonic()
            for i in range(0, len(steady), 10):
                due = start + i / rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                store_all(client, steady[i:i + 10], received_steady)
            wait_count(client, len(steady), timeout=120)
            steady_lat = latencies(client, received_steady)

            # (d) memory of active recordings: every event admitted, waiting behind a
            # turn held by event 0 (no handler runs: admitted directly, no worker).
            worker.stop()
            client.execute_command("FLUSHALL", "SYNC")  # lazyfree may make a plain FLUSHALL async
            mem0 = int(client.info("memory")["used_memory"])
            ordering = Ordering(ttl_s=86400, hold_ms=15000, lease_ms=5000,
                                deadline_ms=3_600_000)
            sample = shuffled_bodies(args.recordings, args.events, rng)
            pipe = client.pipeline(transaction=False)
            for i, (key, raw) in enumerate(sample):
                sid, et, seq = key.split(":")
                rec = Record(handlers=("bench.handler",), key=key,
                             meta={"received_ms": 1, "signature": "v2", "secret_index": 0,
                                   "remote_addr": "127.0.0.1", "request_id": str(i)},
                             entry_id=f"{i}-0", body=raw)
                ordering.q_admit(pipe, sid, f"{et}:{seq}", int(seq), f"{i}-0", rec)
                if i % 500 == 499:
                    pipe.execute()
            pipe.execute()
            active = (int(client.info("memory")["used_memory"]) - mem0) / args.recordings
        finally:
            worker.stop()
            server.stop()

    body_size = statistics.mean(len(b) for _, b in items)
    print(f"workers benchmark: {args.recordings} recordings x {args.events} events = {n} "
          f"events, prefork -c {args.concurrency}, bodies ~{body_size:.0f} B, Celery broker "
          f"{'RabbitMQ' if broker_url else 'Redis'}")
    print()
    print(f"| {'figure':<58} | {'value':>12} |")
    print(f"|{'-' * 60}|{'-' * 14}|")
    rows = [
        ("bare Celery no-op tasks, events/s (baseline)", f"{celery_rate:,.0f}"),
        ("ours: body -> parse, dedupe, order, dispatch -> handler, events/s",
         f"{ours_rate:,.0f}"),
        ("ratio ours / baseline (goal >= 0.8)", f"{ours_rate / celery_rate:.2f}"),
        ("default config (record folded, lifecycle) + 1 no-op handler, events/s",
         f"{default_rate:,.0f}"),
        ("ratio default config / baseline (goal >= 0.8)",
         f"{default_rate / celery_rate:.2f}"),
        (f"CPU per event, worker + Redis{' + RabbitMQ' if broker_url else ''}: "
         "baseline / ours / default, ms",
         f"{cpu['bare'] / n * 1000:.2f} / {cpu['ours'] / n * 1000:.2f} / "
         f"{cpu['default'] / n * 1000:.2f}"),
        *((f"  of which {part}: baseline / ours / default, ms",
           f"{parts['bare'].get(part, 0) / n * 1000:.2f} / "
           f"{parts['ours'].get(part, 0) / n * 1000:.2f} / "
           f"{parts['default'].get(part, 0) / n * 1000:.2f}")
          for part in ("main", "pool", "intake", "redis",
                       *(("rabbitmq",) if broker_url else ()))),
        ("baseline publish-to-start latency p50 / p99, ms (burst)",
         f"{percentile(celery_lat, .5):,.0f} / {percentile(celery_lat, .99):,.0f}"),
        ("ours receive-to-handler latency p50 / p99, ms (burst)",
         f"{percentile(ours_lat, .5):,.0f} / {percentile(ours_lat, .99):,.0f}"),
        ("default config receive-to-handler p50 / p99, ms (burst)",
         f"{percentile(default_lat, .5):,.0f} / {percentile(default_lat, .99):,.0f}"),
        (f"default config receive-to-handler p50 / p99, ms (steady {rate:,.0f}/s)",
         f"{percentile(steady_lat, .5):,.1f} / {percentile(steady_lat, .99):,.1f}"),
        (f"Redis bytes per active recording ({args.events} events buffered)",
         f"{active:,.0f}"),
        ("Redis bytes per handled recording (dedupe window state)", f"{retained:,.0f}"),
        (f"Redis bytes per record ({folded} events in {len(sample_sids)} sampled records)",
         f"{record_bytes:,.0f}"),
        ("ours: turns published again / handler copies skipped (burst)",
         f"{counters.get('republished', 0):,} / {counters.get('skipped_copies', 0):,}"),
    ]
    for name, value in rows:
        print(f"| {name:<58} | {value:>12} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
