"""Mutants of the scripts: the simulation must catch each of them.

A mutant replaces one piece of one script's text (``scripts.source`` and
``scripts.sha`` are swapped for the run, nothing is written to ``workers/``). If
the simulation passed with a mutant, its invariants would not be checking what
they claim to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from agora_callbacks.workers.ordering import scripts

#: name -> (script, text to replace, replacement, the violation kind expected);
#: script "_lib" changes the prologue of every per-recording script.
MUTANTS: dict[str, tuple[str, str, str, str]] = {
    # Any copy of a handler task may start: the fence of "once" is gone.
    "no_fence": ("start", "if owner ~= '-' and owner ~= task then", "if false then",
                 "fence"),
    # A script forgets to set the recording's timer when a turn is taken.
    "no_timer_on_take": ("admit", "      arm(NOW + LEASE)\n", "\n", "timer"),
    # The next event is taken before the turn's last handler is done.
    "early_turn_end": ("finish", "if redis.call('HLEN', K_TURN) > 0 then",
                       "if redis.call('HLEN', K_TURN) > 99 then", "overlap"),
    # Dedupe is gone: every copy of an event is admitted as new.
    "no_dedupe": ("admit", "local owner = redis.call('HGET', K_DEDUPE, field)",
                  "local owner = nil", "outcome"),
    # A turn's handlers are never published again when none started in time.
    "no_republish": ("_lib", "if #unstarted > 0 and pl <= NOW then",
                     "if false then", "liveness"),
}


@contextmanager
def mutated(name: str) -> Iterator[str]:
    """Run with the mutant ``name``; yields the violation kind expected."""
    script, old, new, expected = MUTANTS[name]
    original_source, original_sha = scripts.source, scripts.sha
    targets = scripts.RECORDING_SCRIPTS if script == "_lib" else (script,)
    for target in targets:
        assert old in original_source(target), \
            f"mutant {name}: {old!r} is not in {target}.lua any more"

    def source(n: str) -> str:
        text = original_source(n)
        return text.replace(old, new) if n in targets else text

    def sha(n: str) -> str:
        return hashlib.sha1(source(n).encode()).hexdigest()

    scripts.source, scripts.sha = source, sha  # type: ignore[assignment]
    try:
        yield expected
    finally:
        scripts.source, scripts.sha = original_source, original_sha  # type: ignore[assignment]
