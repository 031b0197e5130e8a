"""The workers' promises under faults: the simulation in ``tests/sim`` (see
``tests/sim/world.py``) drives the workers' own code, several workers at once,
against the session's Redis with the real scripts, injecting faults at every
step, and checks the invariants of ``tests/sim/model.py`` after every step and
once the run has settled.

Seeds run one after the other until their share of ``SIM_BUDGET_S`` is spent
(about a minute and a half in all on a 2-core machine): every fault, then the
gentle mix (no fault that may legitimately make a handler miss its deadline, so
a ``lost`` dead letter is a liveness violation). A failing seed is printed with
the command that replays it exactly:
``SIM_SEED=<seed> SIM_STEPS=<steps> [SIM_GENTLE=1] pytest tests/test_simulation.py``.
The soak (``python benchmarks/soak_simulation.py``) runs many more steps.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import pytest
import redis
from sim import Rates, Result, Simulation, scenarios
from sim.model import relevant
from sim.mutants import NAMES, mutated
from sim.world import SIM_ENV, sim_settings, violation_kinds

#: Seconds of simulation per test session (all seeds of both mixes together).
SIM_BUDGET_S = float(os.environ.get("SIM_BUDGET_S", "75"))
#: Steps per seed (before settling).
SIM_STEPS = int(os.environ.get("SIM_STEPS", "1500"))
#: First seed (the next ones follow).
SIM_SEED_BASE = int(os.environ.get("SIM_SEED_BASE", "1000"))
#: Replay this one seed (with SIM_GENTLE=1 for the gentle mix).
SIM_SEED = os.environ.get("SIM_SEED")
SIM_GENTLE = os.environ.get("SIM_GENTLE", "") not in ("", "0")
#: Share of the budget for the gentle mix.
GENTLE_SHARE = 0.3


def _report(results: list[Result]) -> str:
    faults: dict[str, int] = {}
    for r in results:
        for kind, n in r.faults.items():
            faults[kind] = faults.get(kind, 0) + n
    steps = sum(r.steps for r in results)
    return (f"{len(results)} seeds ({results[0].seed}..{results[-1].seed}), {steps} steps, "
            f"{sum(len(r.violations) for r in results)} violations; faults: "
            + ", ".join(f"{k}={v}" for k, v in sorted(faults.items())))


def _fail(result: Result, gentle: bool) -> None:
    tail = "\n".join(relevant(result.trace, result.violations[0])
                     if result.violations else result.trace[-60:])
    pytest.fail(
        f"seed {result.seed}: {len(result.violations)} violations; replay with\n"
        f"  SIM_SEED={result.seed} SIM_STEPS={result.steps}{' SIM_GENTLE=1' if gentle else ''}"
        f" pytest tests/test_simulation.py -k promises\n"
        + "\n".join(result.violations[:20]) + f"\nthe trace of the first one:\n{tail}")


def _run(url: str, gentle: bool, budget_s: float, first_seed: int) -> list[Result]:
    started = time.monotonic()
    results: list[Result] = []
    seed = first_seed
    while not results or (SIM_SEED is None and time.monotonic() - started < budget_s):
        rates = Rates.gentle() if gentle else Rates()
        result = Simulation(url, seed, rates=rates).run(SIM_STEPS)
        results.append(result)
        if result.violations or not result.settled:
            _fail(result, gentle)
        seed += 1
    return results


@pytest.mark.timeout(int(SIM_BUDGET_S) + 240)
@pytest.mark.parametrize("gentle", [False, True], ids=["every-fault", "gentle"])
def test_the_promises_hold(gentle: bool, redis_server: Any,
                           redis_client: redis.Redis) -> None:
    if SIM_SEED is not None and gentle != SIM_GENTLE:
        pytest.skip("replaying one seed of the other mix")
    share = GENTLE_SHARE if gentle else 1 - GENTLE_SHARE
    first = int(SIM_SEED) if SIM_SEED is not None else SIM_SEED_BASE + (50_000 if gentle else 0)
    results = _run(redis_server.url, gentle, SIM_BUDGET_S * share, first)
    print(f"\nsimulation ({'gentle' if gentle else 'every fault'}):", _report(results))


@pytest.mark.parametrize("name", NAMES)
def test_a_broken_script_is_caught(name: str, redis_server: Any,
                                   redis_client: redis.Redis) -> None:
    """The invariants have teeth: each mutant of the scripts (or of the workers'
    Python, ``sim.mutants.PATCHES``) breaks one of them, the one it is expected to;
    a run ends as soon as it finds that one."""
    with mutated(name) as expected:
        rates = Rates()
        if expected == "liveness":
            # More lost messages: a turn that is never published again shows sooner.
            rates = Rates.gentle()
            rates.msg_lost = 0.15
        kinds: set[str] = set()
        for seed in range(1, 6):
            result = Simulation(redis_server.url, seed, rates=rates).run(600, stop_at=expected)
            kinds |= violation_kinds(result.violations)
            if expected in kinds:
                return
    pytest.fail(f"mutant {name} not caught ({expected} expected, found {sorted(kinds)})")


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


def test_a_second_script_flush_during_a_start_keeps_the_order(
        redis_server: Any, redis_client: redis.Redis) -> None:
    result = scenarios.second_script_flush_during_a_start(redis_server.url)
    assert not result.violations, "\n".join(result.violations)


def test_an_unordered_failure_is_dead_lettered_when_redis_was_away(
        redis_server: Any, redis_client: redis.Redis) -> None:
    result = scenarios.unordered_failure_while_redis_is_away(redis_server.url)
    assert not result.violations, "\n".join(result.violations)
