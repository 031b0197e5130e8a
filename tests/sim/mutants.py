"""Mutants of the workers: the simulation must catch each of them.

A script mutant replaces one piece of one script's text (``scripts.source`` and
``scripts.sha`` are swapped for the run, nothing is written to ``workers/``); a
Python mutant (``PATCHES``) swaps one function of the workers for a broken one
for the run. Each one brings back a defect of a class the project fixed (issue 9:
its findings, numbered as there, or its other rules). If the simulation passed
with a mutant, its invariants would not be checking what they claim to.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from unittest import mock

from agora_callbacks.workers import dispatch
from agora_callbacks.workers.intake import Intake
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
    # 1: a timer later than the state's due time (the sweep race turned a publish
    # lease into the handler deadline): a turn's timer ignores the publish lease.
    "late_timer": ("_lib", "if pl < due then due = pl end", "", "timer"),
    # Gap holds add up: the hold is measured from the arrival of the event after
    # the gap (the turn's), not from the oldest arrival among the buffered events.
    "hold_adds_up": ("_lib", "local oldest = redis.call('ZRANGE', K_ARRIVALS, 0, 0, "
                     "'WITHSCORES')",
                     "local oldest = redis.call('ZRANGE', K_ARRIVALS, -1, -1, 'WITHSCORES')",
                     "timer"),
    # 2: a gap ending at 10^14 or more comes back as "1e+14" (tostring, not int).
    "gap_as_float": ("_lib", "gap = int(nxt) .. '-' .. int(seq - 1)",
                     "gap = int(nxt) .. '-' .. (seq - 1)", "crash"),
    # 4: an invalid or stale body is dead-lettered by a call whose XACK did not
    # acknowledge it (its entry was taken over and settled by another worker).
    "double_dead_letter": ("settle_entry", "if acked ~= 1 then return 0 end", "",
                           "outcome"),
    # 6: the inbox entry's acknowledgement and its event's claim part ways: the
    # admit claims the event and never acknowledges the entry.
    "admit_no_ack": ("admit", "if settle(entry) then", "if true then", "ack"),
    # A handler past its deadline leaves its turn without a dead letter (lost).
    "lost_without_dead_letter": ("_lib", "dead_letter(record, cur, handler, 'lost', "
                                 "detail, '')", "", "outcome"),
    # 8, 11: a copy of a handler that already finished starts again (a redelivery
    # after the finish runs the handler twice).
    "start_after_finish": ("start", "if not slot then\n  count('skipped_copies', 1)\n"
                           "  return 0\nend", "if not slot then return 1 end", "once"),
    # Every key has a TTL: a recording's arrivals are never given one.
    "no_ttl": ("_lib", "for i = 1, 6 do redis.call('EXPIRE'",
               "for i = 1, 5 do redis.call('EXPIRE'", "ttl"),
}


def _finish_tried_once() -> AbstractContextManager[None]:
    """3: a handler's finish is tried once: a transient Redis error is not retried."""
    original = dispatch.retrying

    def retrying(rt: Any, what: str, call: Callable[[], Any]) -> Any:
        return call() if what == "handler finish" else original(rt, what, call)

    return mock.patch.object(dispatch, "retrying", retrying)


def _stale_cutoff_on_the_host_clock() -> AbstractContextManager[None]:
    """5: the stale-body cutoff reads the host's clock, not Redis's (the simulation's
    Redis runs on the virtual clock, years ahead of the host's)."""
    original = Intake._classify

    def classify(self: Intake, entry: Any, now_ms: int) -> Any:
        return original(self, entry, int(time.time() * 1000))

    return mock.patch.object(Intake, "_classify", classify)


#: name -> (the patch, the violation kind expected): Python mutants.
PATCHES: dict[str, tuple[Callable[[], AbstractContextManager[None]], str]] = {
    "finish_tried_once": (_finish_tried_once, "retry"),
    "stale_cutoff_on_host_clock": (_stale_cutoff_on_the_host_clock, "outcome"),
}

#: Every mutant's name.
NAMES = sorted([*MUTANTS, *PATCHES])


@contextmanager
def mutated(name: str) -> Iterator[str]:
    """Run with the mutant ``name``; yields the violation kind expected."""
    if name in PATCHES:
        patch, kind = PATCHES[name]
        with patch():
            yield kind
        return
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
