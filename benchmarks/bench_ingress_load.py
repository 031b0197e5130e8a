"""A constant-rate HTTP/1.1 load generator that does not hide queueing.

``wrk`` sends as fast as the server answers (closed loop), so it cannot say what a
steady 1,000 requests/s costs. This sends request ``i`` at ``t0 + i / rate``
whatever happened before, on a pool of keep-alive connections (a new one is opened
when all are busy), and measures each latency from the request's *intended* send
time: when the server (or this generator) falls behind, the delay counts
(coordinated omission avoided). The generator's own scheduling jitter is counted
too, so the figures are an upper bound on the server's latency.

    python benchmarks/bench_ingress_load.py --url http://127.0.0.1:8080/agora/ncs \\
        --rate 1000 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    rate: float
    duration_s: float
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    connections_opened: int = 0
    elapsed_s: float = 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index]

    @property
    def achieved_rate(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> dict[str, float]:
        return {
            "target_rps": self.rate,
            "achieved_rps": self.achieved_rate,
            "p50_ms": self.percentile(50),
            "p90_ms": self.percentile(90),
            "p99_ms": self.percentile(99),
            "p999_ms": self.percentile(99.9),
            "max_ms": max(self.latencies_ms, default=float("nan")),
            "mean_ms": statistics.fmean(self.latencies_ms) if self.latencies_ms else float("nan"),
            "ok": float(self.statuses.get(200, 0)),
            "not_ok": float(sum(v for k, v in self.statuses.items() if k != 200)
                            + sum(self.errors.values())),
        }


def build_request(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {host}:{port}",
             f"Content-Length: {len(body)}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send one request, read its response; return (status, keep the connection)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        keep = True
        for line in lines[1:]:
            name, _, value = line.partition(":")
            lowered = name.strip().lower()
            if lowered == "content-length":
                length = int(value.strip())
            elif lowered == "connection" and value.strip().lower() == "close":
                keep = False
        if length:
            await self.reader.readexactly(length)
        return status, keep

    def close(self) -> None:
        self.writer.close()


async def run_constant_rate(url: str, body: bytes, headers: Mapping[str, str], rate: float,
                            duration_s: float, warmup_s: float = 1.0,
                            max_connections: int = 256) -> LoadResult:
    """Send at ``rate`` for ``warmup_s`` (not recorded) then ``duration_s`` (recorded)."""
    host, port, request = build_request(url, body, headers)
    result = LoadResult(rate=rate, duration_s=duration_s)
    idle: list[_Connection] = []
    open_count = 0
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def one(intended: float, record: bool) -> None:
        nonlocal open_count
        conn = idle.pop() if idle else None
        try:
            if conn is None:
                if open_count >= max_connections:
                    result.errors["pool_exhausted"] += 1
                    return
                open_count += 1
                result.connections_opened += 1
                reader, writer = await asyncio.open_connection(host, port)
                conn = _Connection(reader, writer)
            status, keep = await conn.exchange(request)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            if conn is not None:
                conn.close()
                open_count -= 1
            if record:
                result.errors[type(exc).__name__] += 1
            return
        done = loop.time()
        if keep:
            idle.append(conn)
        else:
            conn.close()
            open_count -= 1
        if record:
            result.statuses[status] += 1
            result.latencies_ms.append((done - intended) * 1000.0)

    total_warmup = int(warmup_s * rate)
    total = total_warmup + int(duration_s * rate)
    start = loop.time() + 0.05
    recorded_start = start + total_warmup / rate
    for i in range(total):
        intended = start + i / rate
        delay = intended - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(intended, i >= total_warmup))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if i >= total_warmup:
            result.sent += 1
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    result.elapsed_s = max(loop.time() - recorded_start, duration_s)
    for conn in idle:
        conn.close()
    return result


def constant_rate(url: str, body: bytes, headers: Mapping[str, str], rate: float,
                  duration_s: float, warmup_s: float = 1.0) -> LoadResult:
    return asyncio.run(run_constant_rate(url, body, headers, rate, duration_s, warmup_s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--body", default='{"hello":"world"}')
    args = parser.parse_args()
    started = time.perf_counter()
    result = constant_rate(args.url, args.body.encode(), {"Content-Type": "application/json"},
                           args.rate, args.duration)
    for key, value in result.summary().items():
        print(f"{key:>14} {value:10.2f}")
    print(f"{'wall_s':>14} {time.perf_counter() - started:10.2f}")


if __name__ == "__main__":
    main()
