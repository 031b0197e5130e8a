"""End-to-end benchmark of the stack as `agora-callbacks dev` runs it, driven by the
simulator (`agora_callbacks.simulate`), against the simulator's own ceiling.

    python benchmarks/bench_stack.py                     # full: 300 recordings (~6,000 events)
    python benchmarks/bench_stack.py --recordings 40     # reduced, on a busy machine

In one run:

1. baseline: the simulator posting every request to a bare HTTP server (stdlib,
   threads, answers `200 {}` without looking): what the load generator itself can
   push on this machine;
2. the stack: `agora-callbacks dev` (embedded Redis with AOF, the ingress with 2
   processes, one worker with 2 pool processes; Flower off) in a temporary
   directory; the same traffic (mixed kinds, 10% duplicates, 200 ms reordering, no
   loss) posted as fast as it is accepted, then waited on until the built-in
   recording-state handler has folded every event of every recording.

Prints requests/s accepted by each, acknowledgement latency p50/p99, end-to-end
events/s (first request sent -> last event handled) and the ratios. The two
processes share the machine's cores with the simulator, so the figures are a
floor for a deployment where the load comes from elsewhere.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from agora_callbacks.embedded_server import free_port  # noqa: E402
from agora_callbacks.simulate import lifecycles, sender  # noqa: E402

SECRET = "bench-secret"


class Bare(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self._headers_buffer.append(b"\r\n{}")  # type: ignore[attr-defined]
        self.flush_headers()

    def log_message(self, *args: Any) -> None:
        pass


def traffic(recordings: int, seed: int) -> tuple[sender.Plan, int]:
    kinds = lifecycles.mixed_kinds(recordings, seed)
    import random

    rng = random.Random(seed)
    envelopes = [lifecycles.lifecycle(k, lifecycles.new_sid(rng), seed=seed) for k in kinds]
    plan = sender.build_plan(envelopes, SECRET, duplicates=0.1, reorder_ms=200, rate=0,
                             seed=seed)
    return plan, sum(len(e) for e in envelopes)


def run_bare(plan: sender.Plan, concurrency: int) -> sender.Report:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Bare)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/agora/ncs"
        return sender.send(url, plan.deliveries, concurrency=concurrency)
    finally:
        server.shutdown()
        server.server_close()


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def run_stack(plan: sender.Plan, events: int, concurrency: int,
              timeout: float) -> tuple[sender.Report, float]:
    from agora_callbacks.workers.builtin import store

    with tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp:
        port, metrics_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PORT")}
        env.update({"AGORA_NCS_SECRETS": SECRET, "LOG_LEVEL": "warning",
                    "LOG_FORMAT": "json", "AGORA_DEV_DIR": str(Path(tmp) / "dev")})
        log = open(Path(tmp) / "dev.log", "wb")  # noqa: SIM115
        dev = subprocess.Popen(
            [str(Path(sys.executable).parent / "agora-callbacks"), "dev", "--port", str(port),
             "--no-flower", "--worker-metrics-port", str(metrics_port), "-c", "2"],
            env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", 90)
            url_file = Path(tmp) / "dev" / "redis.url"
            deadline = time.monotonic() + 90
            while not (url_file.exists() and (Path(tmp) / "dev.log").read_bytes().find(
                    b"dev stack is up") >= 0):
                if time.monotonic() > deadline or dev.poll() is not None:
                    raise RuntimeError((Path(tmp) / "dev.log").read_text()[-3000:])
                time.sleep(0.2)
            client = redis.Redis.from_url(url_file.read_text().strip())
            sids = plan.sids
            expected = {}
            for d in plan.deliveries:
                expected.setdefault(d.sid, set()).add(d.sequence)
            start = time.perf_counter()
            report = sender.send(f"http://127.0.0.1:{port}/agora/ncs", plan.deliveries,
                                 concurrency=concurrency)
            pending = set(sids)
            deadline = time.monotonic() + timeout
            while pending:
                for sid in list(pending):
                    record = store.load(client, sid)
                    if record and record.get("event_count") == len(expected[sid]):
                        pending.discard(sid)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(pending)} recordings not fully handled")
                time.sleep(0.05)
            elapsed = time.perf_counter() - start
            client.close()
            return report, events / elapsed
        finally:
            dev.send_signal(2)
            try:
                dev.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, 9)
                dev.wait()
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    plan, events = traffic(args.recordings, args.seed)
    bare = run_bare(plan, args.concurrency)
    stack, e2e = run_stack(plan, events, args.concurrency, args.timeout)
    assert bare.failed == 0 and stack.failed == 0, (bare.statuses, stack.statuses)

    rows = [
        ("requests (events + duplicates)", f"{len(plan.deliveries)}", ""),
        ("bare server: accepted req/s", f"{bare.rate:,.0f}", "baseline"),
        ("bare server: ack p50 / p99 ms",
         f"{bare.percentile(50):.2f} / {bare.percentile(99):.2f}", ""),
        ("stack ingress: accepted req/s", f"{stack.rate:,.0f}",
         f"{stack.rate / bare.rate:.2f} x baseline"),
        ("stack ingress: ack p50 / p99 ms",
         f"{stack.percentile(50):.2f} / {stack.percentile(99):.2f}", ""),
        ("stack end to end: events handled/s", f"{e2e:,.0f}",
         f"{e2e / (stack.rate * events / len(plan.deliveries)):.2f} x ingress events/s"),
    ]
    print(f"stack benchmark: {args.recordings} recordings, {events} events, "
          f"concurrency {args.concurrency}, 2 cores shared by sender and stack")
    width = max(len(r[0]) for r in rows)
    for name, value, ratio in rows:
        print(f"  {name:<{width}}  {value:>14}  {ratio}")


if __name__ == "__main__":
    main()
