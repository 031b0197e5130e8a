"""Where the ingress's CPU goes, per request: the real ingress against itself with one
part taken out at a time (``ingress_without.py``), and against bare Flask.

Each configuration runs on granian (2 workers, 4 threads, like ``bench_ingress.py``)
under the same wrk load; the figure is the CPU time of the server's processes per
request. Configurations alternate for ``--rounds`` rounds and the median is printed,
because one run moves by 10-20 us on a 2-CPU machine that also runs Redis and wrk.
What a part costs = its configuration's saving against the full ingress.

    python benchmarks/bench_ingress_costs.py              # about 4 minutes
    python benchmarks/bench_ingress_costs.py --rounds 1 --duration 4   # quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agora_callbacks.embedded_server import ServerProcess  # noqa: E402
from benchmarks.bench_ingress import (  # noqa: E402
    BARE_APP,
    SECRET,
    run_wrk,
    start_server,
    wrk_setup,
)

#: label -> (app, INGRESS_WITHOUT)
CONFIGURATIONS: dict[str, tuple[str, str]] = {
    "bare Flask": (BARE_APP, ""),
    "ingress": ("benchmarks.ingress_without:app", ""),
    "without log line": ("benchmarks.ingress_without:app", "log"),
    "without metrics": ("benchmarks.ingress_without:app", "metrics"),
    "without XADD": ("benchmarks.ingress_without:app", "store"),
    "without all three": ("benchmarks.ingress_without:app", "log,metrics,store"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0, help="wrk seconds per run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--multiprocess-metrics", action=argparse.BooleanOptionalAction,
                        default=True, help="prometheus_client's multi-process mode, as "
                        "agora-callbacks web runs it (default: on)")
    args = parser.parse_args()
    setup = wrk_setup("bench-ingress-costs-")
    if setup is None:
        return 2
    workdir, body_path, headers = setup.workdir, setup.body_path, setup.headers
    redis_server = ServerProcess(workdir / "redis")
    redis_server.start()
    cpu: dict[str, list[float]] = {label: [] for label in CONFIGURATIONS}
    rps: dict[str, list[float]] = {label: [] for label in CONFIGURATIONS}
    try:
        for round_no in range(args.rounds):
            for label, (app, without) in CONFIGURATIONS.items():
                env = {**os.environ, "AGORA_NCS_SECRETS": SECRET, "REDIS_URL": redis_server.url,
                       "LOG_FORMAT": "json", "LOG_LEVEL": "info", "PYTHONPATH": str(ROOT),
                       "INGRESS_WITHOUT": without}
                env.pop("PROMETHEUS_MULTIPROC_DIR", None)
                if args.multiprocess_metrics:
                    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(dir=workdir)
                served = start_server("granian", app, args.workers, args.threads, env,
                                      workdir / "server.log")
                try:
                    run_wrk(served.url, body_path, headers, 2, 32, 1, workdir)  # warm-up
                    before = served.cpu_seconds()
                    figures = run_wrk(served.url, body_path, headers, args.duration, 32, 1,
                                      workdir)
                    used = served.cpu_seconds() - before
                finally:
                    served.stop()
                cpu[label].append(used / max(figures["requests"], 1) * 1e6)
                rps[label].append(figures["rps"])
                print(f"round {round_no + 1}: {label:<18} {cpu[label][-1]:6.0f} us/req "
                      f"{figures['rps']:8.0f} req/s", file=sys.stderr)
    finally:
        redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    full = statistics.median(cpu["ingress"])
    bare = statistics.median(cpu["bare Flask"])
    print(f"\nIngress CPU per request by part: granian {args.workers} workers x "
          f"{args.threads} threads, wrk -c32 -d{args.duration:g}s, {args.rounds} rounds "
          f"(median), {os.cpu_count()} CPUs, multi-process metrics "
          f"{'on' if args.multiprocess_metrics else 'off'}\n")
    print(f"{'configuration':<20}{'cpu us/req':>11}{'runs':>22}{'req/s':>9}{'saves':>8}")
    for label in CONFIGURATIONS:
        median = statistics.median(cpu[label])
        runs = "/".join(f"{x:.0f}" for x in cpu[label])
        saves = "" if label in ("ingress", "bare Flask") else f"{full - median:.0f}"
        print(f"{label:<20}{median:>11.0f}{runs:>22}{statistics.median(rps[label]):>9.0f}"
              f"{saves:>8}")
    print(f"\nthe ingress costs {full - bare:.0f} us/req more than bare Flask; the ratio goal "
          f"(ingress req/s >= half of bare) needs it at or under {2 * bare:.0f} us/req")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
