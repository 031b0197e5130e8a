"""A fault-injecting simulation of the workers (see ``world.py``).

- ``scheduler``: the baton-passing scheduler over threads, the virtual clock;
- ``faulty``: the Redis client that fails round trips before or after they apply;
- ``broker``: the simulated task broker (late acks, redelivery, loss, duplicates);
- ``traffic``: what NCS sends (resends, copies, reordering, gaps, junk);
- ``model``: what happened, and the promises checked against it;
- ``world``: the workers and executors, the faults, one seeded run;
- ``soak``: ``python -m tests.sim.soak`` (or ``benchmarks/soak_simulation.py``).
"""

from .world import Rates, Result, Simulation, sim_settings

__all__ = ["Rates", "Result", "Simulation", "sim_settings"]
