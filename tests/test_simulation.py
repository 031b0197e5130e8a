"""The workers' promises under faults: the simulation in ``tests/sim`` (see
``tests/sim/world.py``) drives the workers' own code, several workers at once,
against the session's Redis with the real scripts, injecting faults at every
step, and checks the invariants of ``tests/sim/model.py`` after every step and
once the run has settled.

Seeds run one after the other until ``SIM_BUDGET_S`` seconds are spent (CI: about
a minute and a half). A failing seed is printed with the command that replays it:
``SIM_SEED=<seed> SIM_STEPS=<steps> pytest tests/test_simulation.py``. The soak
(``python benchmarks/soak_simulation.py``) runs many more steps.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import pytest
import redis
from sim import Simulation
from sim.world import SIM_ENV, sim_settings

#: Seconds of simulation per test run (all seeds together).
SIM_BUDGET_S = float(os.environ.get("SIM_BUDGET_S", "90"))
#: Steps per seed (before settling).
SIM_STEPS = int(os.environ.get("SIM_STEPS", "1500"))
#: First seed (the next ones follow); SIM_SEED alone replays one seed.
SIM_SEED_BASE = int(os.environ.get("SIM_SEED_BASE", "1000"))
SIM_SEED = os.environ.get("SIM_SEED")


def _report(results: list[Any]) -> str:
    faults: dict[str, int] = {}
    for r in results:
        for kind, n in r.faults.items():
            faults[kind] = faults.get(kind, 0) + n
    steps = sum(r.steps for r in results)
    return (f"{len(results)} seeds ({results[0].seed}..{results[-1].seed}), {steps} steps, "
            f"{sum(len(r.violations) for r in results)} violations; faults: "
            + ", ".join(f"{k}={v}" for k, v in sorted(faults.items())))


@pytest.mark.timeout(int(SIM_BUDGET_S) + 240)
def test_the_promises_hold_under_faults(redis_server: Any, redis_client: redis.Redis) -> None:
    started = time.monotonic()
    seeds = [int(SIM_SEED)] if SIM_SEED else None
    results = []
    seed = SIM_SEED_BASE
    while True:
        if seeds is not None:
            if not seeds:
                break
            seed = seeds.pop()
        elif results and time.monotonic() - started > SIM_BUDGET_S:
            break
        result = Simulation(redis_server.url, seed).run(SIM_STEPS)
        results.append(result)
        if result.violations:
            tail = "\n".join(result.trace[-60:])
            pytest.fail(
                f"seed {seed}: {len(result.violations)} violations; replay with\n"
                f"  SIM_SEED={seed} SIM_STEPS={SIM_STEPS} pytest tests/test_simulation.py\n"
                + "\n".join(result.violations[:20]) + f"\nlast steps of the trace:\n{tail}")
        assert result.settled
        seed += 1
    print("\nsimulation:", _report(results))


def _normalised(trace: list[str]) -> list[str]:
    """The trace without inbox entry ids (Redis makes them from its real clock)."""
    return [re.sub(r"\d{13}-\d+", "<id>", line) for line in trace]


def test_a_seed_replays_exactly(redis_server: Any, redis_client: redis.Redis) -> None:
    first = Simulation(redis_server.url, 7).run(400)
    second = Simulation(redis_server.url, 7).run(400)
    assert _normalised(first.trace) == _normalised(second.trace)
    assert first.faults == second.faults
    assert first.tally == second.tally


def test_the_simulation_settings_pass_the_settings_rules(redis_server: Any) -> None:
    settings = sim_settings(redis_server.url)
    assert settings.claim_idle_ms == int(SIM_ENV["CLAIM_IDLE_MS"])
