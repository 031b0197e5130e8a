"""Soak the workers' simulation: many seeds, many steps, every fault.

    python benchmarks/soak_simulation.py                 # 100,000 steps
    python benchmarks/soak_simulation.py --steps 500000 --jobs 2 --seed-base 7000

Runs ``--steps`` scheduler steps in all, ``--per-seed`` per seed (seeds from
``--seed-base`` on; every ``--gentle-every``-th seed runs the gentle fault mix,
where a ``lost`` dead letter counts as a liveness violation: ``tests/sim/world.py``),
each job against its own embedded Redis server (never the shared one). Prints the
steps, the faults injected per kind, the violations found (0 expected), the seeds
used and the time taken. A violation prints its seed: replay it with
``SIM_SEED=<seed> SIM_STEPS=<per-seed> pytest tests/test_simulation.py`` (add
``SIM_GENTLE=1`` for a gentle seed).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds (the embedded Redis servers are stopped on the way out)."""
    signal.signal(signal.SIGTERM, lambda *_a: sys.exit(143))


def _run_seeds(seeds: list[tuple[int, bool]], per_seed: int) -> list[dict[str, Any]]:
    from sim import Rates, Simulation
    from sim.model import relevant

    _stop_on_sigterm()
    from agora_callbacks.embedded_server import ServerProcess

    out = []
    with tempfile.TemporaryDirectory(prefix="soak-redis-") as data:
        server = ServerProcess(data)
        server.start()
        try:
            for seed, gentle in seeds:
                rates = Rates.gentle() if gentle else Rates()
                r = Simulation(server.url, seed, rates=rates).run(per_seed)
                out.append({"seed": seed, "gentle": gentle, "steps": r.steps,
                            "faults": dict(r.faults), "violations": r.violations,
                            "tally": r.tally, "settled": r.settled, "known": r.known,
                            "trace": relevant(r.trace, r.violations[0]) if r.violations
                            else []})
                mark = "gentle " if gentle else ""
                print(f"  {mark}seed {seed}: {len(r.violations)} violations, "
                      f"{r.seconds:.1f} s", flush=True)
        finally:
            server.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100_000, help="steps in all")
    ap.add_argument("--per-seed", type=int, default=2000, help="steps per seed")
    ap.add_argument("--seed-base", type=int, default=100_000, help="first seed")
    ap.add_argument("--jobs", type=int, default=2, help="processes (one Redis each)")
    ap.add_argument("--gentle-every", type=int, default=4,
                    help="every n-th seed runs the gentle fault mix (0: none)")
    args = ap.parse_args(argv)

    n = max(1, -(-args.steps // args.per_seed))
    seeds = [(args.seed_base + i, bool(args.gentle_every) and i % args.gentle_every == 1)
             for i in range(n)]
    chunks = [seeds[j::args.jobs] for j in range(args.jobs)]
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    if args.jobs == 1:
        results = _run_seeds(seeds, args.per_seed)
    else:
        with ProcessPoolExecutor(args.jobs) as pool:
            for part in pool.map(_run_seeds, chunks, [args.per_seed] * args.jobs):
                results.extend(part)
    took = time.monotonic() - started

    faults: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    known: Counter[str] = Counter()
    for r in results:
        faults.update(r["faults"])
        outcomes.update(r["tally"])
        known.update(r["known"])
    bad = [r for r in results if r["violations"] or not r["settled"]]
    print(f"steps: {sum(r['steps'] for r in results)} "
          f"({len(results)} seeds x {args.per_seed}, plus settling)")
    gentle = [r for r in results if r["gentle"]]
    judged = [r for r in gentle if not r["tally"].get("queue_overloaded")]
    print(f"seeds: {args.seed_base}..{args.seed_base + n - 1} (gentle: {len(gentle)}, "
          f"{len(judged)} of them judged on liveness: queue within the deadline)")
    print("faults injected:")
    for kind, count in sorted(faults.items()):
        print(f"  {kind:28s} {count}")
    print("outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
    print("known gaps (already reported, not violations): "
          + (", ".join(f"{k}={v}" for k, v in sorted(known.items())) or "none"))
    print(f"violations: {sum(len(r['violations']) for r in results)}")
    for r in bad:
        print(f"  seed {r['seed']}{' (gentle)' if r['gentle'] else ''}: "
              f"settled={r['settled']}")
        for v in r["violations"][:10]:
            print(f"    {v}")
        for line in r["trace"]:
            print(f"      | {line}")
    print(f"time: {took:.1f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
