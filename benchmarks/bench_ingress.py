"""Ingress benchmark: the real ingress against a bare Flask endpoint, same server.

In one run on this machine, with ``wrk`` (Debian) POSTing a realistic signed Cloud
Recording body (event 31, ``uploaded``, ~1 KiB) over keep-alive connections:

  (a) requests/s and p50/p99 of the real ingress (verify + XADD + log + metrics);
  (b) the same server, same worker count, serving a bare Flask endpoint that reads
      the body and answers 200 (``bench_ingress_bare.py``);
  (c) the ratio a/b (goal: at least 0.5);
  (d) latency of the ingress at a steady 1,000 requests/s, measured from each
      request's intended send time (``bench_ingress_load.py``; goal: p99 < 10 ms).

Redis is a private embedded server started for the run (AOF off: the figure is the
ingress's, not the disk's). ``--servers`` compares servers (the figures behind the
README's choice); the default measures the chosen one, ``web``: ``agora-callbacks
web``, granian's ASGI interface with the body deadline in front of the Flask app on
threads. ``granian`` serves the same Flask app on granian's WSGI interface (no body
deadline). The bare baseline of ``web`` runs on granian's WSGI interface, as that of
``granian`` does, so both ingress paths are compared with the same baseline.

Full size (about 1 minute per server):
    python benchmarks/bench_ingress.py
Server comparison:
    python benchmarks/bench_ingress.py --servers granian,gunicorn-gthread,gunicorn-sync
The ASGI path and the WSGI one, in one run:
    python benchmarks/bench_ingress.py --servers web,granian
Quick check on a busy machine:
    python benchmarks/bench_ingress.py --duration 3 --rate-duration 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agora_callbacks import keys  # noqa: E402
from agora_callbacks.embedded_server import ServerProcess, free_port  # noqa: E402
from agora_callbacks.ingress.signature import sign_headers  # noqa: E402
from benchmarks.bench_ingress_load import constant_rate  # noqa: E402

SECRET = "bench-secret"
PATH = "/agora/ncs"
INGRESS_APP = "agora_callbacks.ingress.wsgi:app"
BARE_APP = "benchmarks.bench_ingress_bare:app"

# A Cloud Recording "uploaded" callback (event 31) for a two-file individual recording.
BODY = json.dumps({
    "noticeId": "4c1f5a2e-0b7d-4d0e-9a51-2f3c8e6d1b90", "productId": 3, "eventType": 31,
    "notifyMs": 1732451234567, "sid": "38f8e3cfdc474cd56fc1ceba380d7e1a",
    "payload": {
        "cname": "class-2026-11-24-room-17", "uid": "527841", "sid":
        "38f8e3cfdc474cd56fc1ceba380d7e1a", "sequence": 7, "sendts": 1732451234501,
        "serviceType": 0, "details": {
            "msgName": "uploaded", "status": 0,
            "fileList": [
                {"filename": "38f8e3cfdc474cd56fc1ceba380d7e1a_class-2026-11-24-room-17__uid_s_"
                 "1001__uid_e_audio.m3u8", "trackType": "audio", "uid": "1001",
                 "mixedAllUser": False, "isPlayable": True, "sliceStartTime": 1732450000123},
                {"filename": "38f8e3cfdc474cd56fc1ceba380d7e1a_class-2026-11-24-room-17__uid_s_"
                 "1001__uid_e_video.m3u8", "trackType": "video", "uid": "1001",
                 "mixedAllUser": False, "isPlayable": True, "sliceStartTime": 1732450000123},
            ],
        },
    },
}, separators=(",", ":")).encode()

SERVERS = ("granian", "gunicorn-gthread", "gunicorn-sync")


def server_command(kind: str, app: str, port: int, workers: int, threads: int) -> list[str]:
    bindir = Path(sys.executable).parent
    if kind == "granian":
        return [str(bindir / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(workers), "--blocking-threads",
                str(threads), "--no-ws", "--http", "1", "--log-level", "warning", app]
    gunicorn = [str(bindir / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers",
                str(workers), "--log-level", "warning", "--keep-alive", "10"]
    if kind == "gunicorn-gthread":
        return [*gunicorn, "--worker-class", "gthread", "--threads", str(threads), app]
    if kind == "gunicorn-sync":
        return [*gunicorn, "--worker-class", "sync", app]
    if kind == "web":  # the project's own command, as the Procfile runs it (granian ASGI)
        if app != INGRESS_APP:
            return server_command("granian", app, port, workers, threads)
        return [str(bindir / "agora-callbacks"), "web", "--host", "127.0.0.1", "--port",
                str(port), "--workers", str(workers), "--threads", str(threads)]
    raise ValueError(f"unknown server {kind!r}")


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its worker processes so far."""
        total = 0.0
        try:
            root = psutil.Process(self.process.pid)
            for proc in [root, *root.children(recursive=True)]:
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            pass
        return total

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the server's process group (its own session): killing
        only the master would leave its worker processes running."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(5)


def start_server(kind: str, app: str, workers: int, threads: int, env: dict[str, str],
                 log_path: Path) -> Served:
    port = free_port()
    env = {**env, "PORT": str(port), "WEB_CONCURRENCY": str(workers)}
    with log_path.open("ab") as log:
        process = subprocess.Popen(server_command(kind, app, port, workers, threads),
                                   cwd=ROOT, env=env, stdout=log, stderr=log,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    served = Served(process, base + PATH)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            served.stop()
            raise RuntimeError(f"{kind} exited at start-up; see {log_path}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            served.stop()
            raise TimeoutError(f"{kind} did not answer /healthz within 30 s")
        time.sleep(0.05)
    return served


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(url: str, body_path: Path, headers: dict[str, str], duration: float,
            connections: int, threads: int, workdir: Path) -> dict[str, float]:
    script = workdir / "post.lua"
    lines = ['wrk.method = "POST"',
             f'local f = assert(io.open("{body_path}", "rb"))',
             "wrk.body = f:read(\"*a\")", "f:close()"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    seconds = f"{max(1, round(duration))}s"
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", seconds, "--latency",
               "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore
    dist = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", output, re.M))
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    return {
        "rps": rps, "p50_ms": _ms(dist["50"]), "p99_ms": _ms(dist["99"]),
        "requests": float(total), "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0,
        "socket_errors": float(sum(int(x) for x in errors.groups())) if errors else 0.0,
    }


@dataclass
class WrkSetup:
    """A run's scratch folder, with the signed body wrk POSTs and its headers."""

    workdir: Path
    body_path: Path
    headers: dict[str, str]


def wrk_setup(prefix: str) -> WrkSetup | None:
    """The scratch folder and signed request of a wrk run; None (with the reason on
    stderr) when wrk is not installed."""
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return None
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    body_path = workdir / "body.json"
    body_path.write_bytes(BODY)
    headers = {"Content-Type": "application/json", **sign_headers(BODY, SECRET)}
    return WrkSetup(workdir, body_path, headers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="web",
                        help="comma-separated, from web (agora-callbacks web), "
                        + ", ".join(SERVERS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4,
                        help="threads per worker (gthread; granian's blocking threads; "
                        "web: WEB_THREADS)")
    parser.add_argument("--duration", type=float, default=15.0, help="wrk seconds per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--rate-duration", type=float, default=20.0)
    parser.add_argument("--redis-unix", action="store_true",
                        help="reach Redis over a Unix socket instead of TCP loopback")
    args = parser.parse_args()
    setup = wrk_setup("bench-ingress-")
    if setup is None:
        return 2
    workdir, body_path, headers = setup.workdir, setup.body_path, setup.headers
    sock = workdir / "redis.sock"
    extra = ("--unixsocket", str(sock), "--unixsocketperm", "700") if args.redis_unix else ()
    redis_server = ServerProcess(workdir / "redis", extra_args=extra)
    redis_server.start()
    redis_url = f"unix://{sock}" if args.redis_unix else redis_server.url
    client = redis.Redis.from_url(redis_url)
    env = {**os.environ, "AGORA_NCS_SECRETS": SECRET,
           "REDIS_URL": redis_url, "LOG_FORMAT": "json", "LOG_LEVEL": "info",
           "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    rows: list[dict[str, object]] = []
    try:
        for kind in [s.strip() for s in args.servers.split(",") if s.strip()]:
            figures: dict[str, dict[str, float]] = {}
            for label, app in (("bare", BARE_APP), ("ingress", INGRESS_APP)):
                client.delete(keys.INBOX)
                served = start_server(kind, app, args.workers, args.threads, env,
                                      workdir / f"{kind}-{label}.log")
                try:
                    run_wrk(served.url, body_path, headers, 2, args.connections,
                            args.wrk_threads, workdir)  # warm-up
                    client.delete(keys.INBOX)
                    cpu_before = served.cpu_seconds()
                    figures[label] = run_wrk(served.url, body_path, headers, args.duration,
                                             args.connections, args.wrk_threads, workdir)
                    figures[label]["cpu_us"] = ((served.cpu_seconds() - cpu_before)
                                                / max(figures[label]["requests"], 1) * 1e6)
                    if label == "ingress":
                        stored = int(client.xlen(keys.INBOX))
                        figures[label]["stored"] = float(stored)
                        client.delete(keys.INBOX)
                        load = constant_rate(served.url, BODY, headers, args.rate,
                                             args.rate_duration)
                        figures["steady"] = load.summary()
                        detail = {**{str(k): v for k, v in load.statuses.items()},
                                  **dict(load.errors)}
                        print(f"{kind}: steady run outcomes {detail}, "
                              f"{load.connections_opened} connections", file=sys.stderr)
                        client.delete(keys.INBOX)
                finally:
                    served.stop()
            rows.append({"server": kind, **{f"{k}": v for k, v in figures.items()}})
    finally:
        client.close()
        redis_server.stop()

    print(f"\nIngress benchmark: {args.workers} workers, wrk -t{args.wrk_threads} "
          f"-c{args.connections} -d{args.duration:g}s, body {len(BODY)} B, "
          f"{os.cpu_count()} CPUs, steady {args.rate:g} req/s for {args.rate_duration:g}s, "
          f"Redis over {'a Unix socket' if args.redis_unix else 'TCP loopback'}\n")
    header = (f"{'server':<17}{'bare rps':>10}{'p50':>8}{'p99':>8}{'ingress rps':>13}"
              f"{'p50':>8}{'p99':>8}{'ratio':>7}{'@rate p50':>11}{'p99':>8}{'p99.9':>8}"
              f"{'max':>8}{'errors':>8}{'cpu us/req':>15}{'cpu ratio':>10}")
    print(header)
    print("-" * len(header))
    for row in rows:
        bare, real, steady = row["bare"], row["ingress"], row["steady"]
        assert isinstance(bare, dict) and isinstance(real, dict) and isinstance(steady, dict)
        errors = (real["non_2xx"] + real["socket_errors"] + bare["non_2xx"]
                  + bare["socket_errors"] + steady["not_ok"])
        print(f"{row['server']:<17}{bare['rps']:>10.0f}{bare['p50_ms']:>8.2f}"
              f"{bare['p99_ms']:>8.2f}{real['rps']:>13.0f}{real['p50_ms']:>8.2f}"
              f"{real['p99_ms']:>8.2f}{real['rps'] / bare['rps']:>7.2f}"
              f"{steady['p50_ms']:>11.2f}{steady['p99_ms']:>8.2f}{steady['p999_ms']:>8.2f}"
              f"{steady['max_ms']:>8.2f}{errors:>8.0f}"
              f"{bare['cpu_us']:>7.0f}/{real['cpu_us']:<7.0f}"
              f"{bare['cpu_us'] / real['cpu_us']:>10.2f}")
    print("\nlatencies in ms; ratio = ingress rps / bare rps (goal >= 0.5); "
          f"@rate = steady {args.rate:g} req/s from intended send time (goal p99 < 10 ms);\n"
          "cpu us/req = CPU of the server's processes per request, bare/ingress (Redis "
          "and wrk excluded); cpu ratio = bare/ingress: what the rps ratio would be if the "
          "server had the CPUs to itself (less sensitive to other load than rps)")
    for row in rows:
        real = row["ingress"]
        assert isinstance(real, dict)
        print(f"{row['server']}: {real['requests']:.0f} requests answered during the "
              f"measured wrk run, {real['stored']:.0f} bodies stored "
              "(stored >= answered 200s: wrk stops counting at the deadline)")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
