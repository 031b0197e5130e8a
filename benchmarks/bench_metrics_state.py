"""Cost of the metrics and of the recording-state handler, each against its baseline.

In one run, on a private embedded Redis (AOF off):

1. Ingress hot path, metrics on vs off: signed ``POST /agora/ncs`` requests (verify +
   XADD) driven straight through the WSGI app (no HTTP server, so the metrics' share is
   not hidden behind socket costs), as shipped vs with every metric call a no-op and
   no timing middleware, in alternating short rounds (median of the paired ratios).
   In one process and in prometheus_client's multi-process mode (what the forked
   servers use: every increment writes an mmap'ed file). Also the metric calls of one
   stored request timed alone.
2. ``GET /metrics`` scrape time (process metrics + the Redis collector's one round trip).
3. The built-in recording-state handler per event (GET state, fold, SET state) over full
   simulated lifecycles (individual, composite, web), against the bare Redis round trips
   it cannot avoid (GET + SET of a record of the same size). Ratio baseline/handler, and
   the pure fold (copy + apply) alone in microseconds per event.
4. Memory of one recording's state in Redis (``MEMORY USAGE``) at the end of each kind of
   lifecycle: what each recording costs for ``RECORD_TTL_S`` after its last event.

Full size (about 30 s):
    python benchmarks/bench_metrics_state.py
Quick check on a busy machine:
    python benchmarks/bench_metrics_state.py --requests 500 --recordings 30
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret"


class _Null:
    """A stand-in metric: every call does nothing."""

    def labels(self, *args: Any, **kwargs: Any) -> _Null:
        return self

    def inc(self, *args: Any) -> None:
        return None

    def observe(self, *args: Any) -> None:
        return None


def _drive(app: Any, body: bytes, headers: dict[str, str], n: int) -> float:
    """Requests per second of ``n`` POSTs through ``app``'s WSGI callable."""
    import io

    environ_base = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/agora/ncs", "SERVER_NAME": "bench",
        "SERVER_PORT": "80", "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.1",
    }
    for name, value in headers.items():
        environ_base["HTTP_" + name.upper().replace("-", "_")] = value
    statuses: list[str] = []

    def start_response(status: str, _headers: Any, _exc: Any = None) -> Any:
        statuses.append(status)
        return lambda _data: None

    started = time.perf_counter()
    for _ in range(n):
        environ = dict(environ_base)
        environ["wsgi.input"] = io.BytesIO(body)
        for _chunk in app(environ, start_response):
            pass
    elapsed = time.perf_counter() - started
    if any(not s.startswith("200") for s in statuses):
        raise SystemExit(f"unexpected statuses: {sorted(set(statuses))}")
    return n / elapsed


def ingress_child(redis_url: str, n: int) -> dict[str, float]:
    """Runs in a subprocess (so the metrics mode is fixed before import)."""
    import redis

    from agora_callbacks import keys, metrics
    from agora_callbacks.ingress.app import BLUEPRINTS, create_app
    from agora_callbacks.ingress.signature import sign_headers
    from agora_callbacks.settings import Settings

    settings = Settings.from_env({"REDIS_URL": redis_url, "AGORA_NCS_SECRETS": SECRET,
                                  "METRICS_TOKEN": "bench", "LOG_LEVEL": "error",
                                  "LOG_FORMAT": "json"})
    client = redis.Redis.from_url(redis_url)
    body = json.dumps({"noticeId": "n", "productId": 3, "eventType": 40, "notifyMs": 1,
                       "payload": {"sid": "s", "sequence": 1, "details": {}}}).encode()
    headers = sign_headers(body, SECRET)

    rounds = 10
    per_round = max(50, n // rounds)

    def measure(app: Any) -> float:
        rate = _drive(app, body, headers, per_round)
        client.delete(keys.INBOX)
        return rate

    on = create_app(settings).wsgi_app
    scrape = create_app(settings).test_client()
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        assert scrape.get("/metrics", headers={"Authorization": "Bearer bench"}).status_code == 200
        times.append(time.perf_counter() - t0)
    saved = {name: getattr(metrics, name) for name in dir(metrics)
             if name.startswith("INGRESS_")}
    nulls = dict.fromkeys(saved, _Null())
    off = create_app(settings, blueprints=[b for b in BLUEPRINTS
                                           if "metrics_endpoint" not in b]).wsgi_app
    _drive(on, body, headers, per_round)  # warm up both
    _drive(off, body, headers, per_round)
    # Short rounds, alternating on and off, compared pairwise: both sides of a pair
    # see the same machine, so the median ratio holds on a shared machine too.
    rates: dict[str, list[float]] = {"on": [], "off": []}
    ratios = []
    for _ in range(rounds):
        for name, app, patch in (("on", on, saved), ("off", off, nulls)):
            for attr, value in patch.items():
                setattr(metrics, attr, value)
            rates[name].append(measure(app))
        ratios.append(rates["on"][-1] / rates["off"][-1])
    for attr, value in saved.items():
        setattr(metrics, attr, value)

    # The metric calls one stored request makes, alone.
    calls = 20000
    t0 = time.perf_counter()
    for _ in range(calls):
        metrics.INGRESS_RECEIVED.inc()
        metrics.INGRESS_VERIFIED.labels("v2").inc()
        metrics.INGRESS_STORED.inc()
        metrics.INGRESS_RESPONSES.labels("/agora/ncs", "200").inc()
        metrics.INGRESS_DURATION.labels("/agora/ncs").observe(0.001)
    calls_us = (time.perf_counter() - t0) / calls * 1e6
    return {"on": statistics.median(rates["on"]), "off": statistics.median(rates["off"]),
            "ratio": statistics.median(ratios), "calls_us": calls_us,
            "scrape_ms": statistics.median(times) * 1000}


def run_ingress(redis_url: str, n: int, multiprocess: bool) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
    with tempfile.TemporaryDirectory(prefix="bench-prom-") as directory:
        if multiprocess:
            env["PROMETHEUS_MULTIPROC_DIR"] = directory
        done = subprocess.run([sys.executable, __file__, "--ingress-child", redis_url,
                               "--requests", str(n)], env=env, capture_output=True,
                              text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_state(client: Any, recordings: int) -> dict[str, Any]:
    import random

    from agora_callbacks import keys
    from agora_callbacks.schemas import parse_event
    from agora_callbacks.simulate.lifecycles import KINDS, lifecycle, new_sid
    from agora_callbacks.workers.builtin import store
    from agora_callbacks.workers.builtin.fold import apply, fold
    from agora_callbacks.workers.builtin.record import new_record

    rng = random.Random(5)
    plans = []
    for i in range(recordings):
        kind = KINDS[i % 3]
        options = {"with_errors": i % 2 == 0, "with_failover": i % 5 == 0}
        if kind == "individual":
            options["with_transcoding"] = i % 4 == 0
        events = [parse_event(e) for e in lifecycle(kind, new_sid(rng), seed=i,
                                                    start_ms=1_700_000_000_000, **options)]
        plans.append((kind, events))
    total = sum(len(events) for _, events in plans)
    ttl = 3600

    # Fold alone.
    t0 = time.perf_counter()
    for _, events in plans:
        state = None
        for event in events:
            state = fold(state, event)
    fold_us = (time.perf_counter() - t0) / total * 1e6

    # The fold's work (workers.builtin.lifecycle, before: a handler): load, apply, save,
    # against the same number of bare GET + SET round trips of a record of the same
    # size, in alternating chunks (median of the paired ratios).
    client.flushdb()
    blob = b"x" * 3500
    chunks = [plans[i::5] for i in range(5)]
    handler_rates, baseline_rates, ratios = [], [], []
    for chunk in chunks:
        count = sum(len(events) for _, events in chunk)
        t0 = time.perf_counter()
        for _, events in chunk:
            for event in events:
                sid = event.sid
                record = store.load(client, sid) or new_record(sid)
                apply(record, event)
                store.save(client, sid, record, ttl)
        handler_rates.append(count / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for n in range(count):
            key = f"bench:{n % 50}"
            client.get(key)
            client.set(key, blob, ex=ttl)
        baseline_rates.append(count / (time.perf_counter() - t0))
        ratios.append(handler_rates[-1] / baseline_rates[-1])
    handler_rate = statistics.median(handler_rates)
    baseline_rate = statistics.median(baseline_rates)

    sizes: dict[str, list[int]] = {}
    memory: dict[str, list[int]] = {}
    for kind, events in plans:
        raw = client.get(keys.recording_state(events[0].sid))
        sizes.setdefault(kind, []).append(len(raw))
        memory.setdefault(kind, []).append(int(client.memory_usage(
            keys.recording_state(events[0].sid)) or 0))
    client.flushdb()
    return {"events": total, "fold_us": fold_us, "handler_rate": handler_rate,
            "baseline_rate": baseline_rate, "ratio": statistics.median(ratios),
            "sizes": sizes, "memory": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--recordings", type=int, default=150)
    parser.add_argument("--ingress-child", metavar="REDIS_URL")
    args = parser.parse_args()
    if args.ingress_child:
        print(json.dumps(ingress_child(args.ingress_child, args.requests)))
        return

    import redis

    from agora_callbacks.embedded_server import ServerProcess

    with tempfile.TemporaryDirectory(prefix="bench-redis-") as data:
        server = ServerProcess(Path(data), appendonly=False)
        server.start()
        try:
            client = redis.Redis.from_url(server.url)
            single = run_ingress(server.url, args.requests, multiprocess=False)
            multi = run_ingress(server.url, args.requests, multiprocess=True)
            state = run_state(client, args.recordings)
        finally:
            server.stop()

    print("\n1. ingress hot path (WSGI, verify + XADD), requests/s (medians of 10 rounds)")
    print(f"{'mode':<16}{'metrics off':>13}{'metrics on':>12}{'ratio on/off':>14}"
          f"{'metric calls/request':>23}")
    for name, r in (("one process", single), ("multi-process", multi)):
        print(f"{name:<16}{r['off']:>13.0f}{r['on']:>12.0f}{r['ratio']:>14.3f}"
              f"{r['calls_us']:>20.1f} us")
    print("\n2. GET /metrics scrape, median ms")
    print(f"   one process {single['scrape_ms']:.2f}   multi-process {multi['scrape_ms']:.2f}")
    print(f"\n3. recording-state handler over {state['events']} events "
          f"({args.recordings} lifecycles), events/s")
    print(f"{'baseline GET+SET':>18}{'handler':>12}{'ratio':>10}{'pure fold':>14}")
    print(f"{state['baseline_rate']:>18.0f}{state['handler_rate']:>12.0f}"
          f"{state['ratio']:>10.3f}"
          f"{state['fold_us']:>11.1f} us")
    print("\n4. one recording's state at the end of its lifecycle")
    print(f"{'kind':<12}{'JSON bytes mean':>16}{'max':>8}{'Redis MEMORY USAGE mean':>25}{'max':>8}")
    for kind in sorted(state["sizes"]):
        s, m = state["sizes"][kind], state["memory"][kind]
        print(f"{kind:<12}{statistics.mean(s):>16.0f}{max(s):>8}{statistics.mean(m):>25.0f}"
              f"{max(m):>8}")


if __name__ == "__main__":
    main()
