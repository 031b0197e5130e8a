"""Dead letters: the list (``/ui/deadletters``), one letter, and requeueing.

The list reads the dead-letter stream newest first (``XREVRANGE``), filtered by
kind, reason, handler and sid, looking at most ``deadletters.SCAN_LIMIT``
letters per page.
Requeueing (one letter, or those ticked) asks for a confirmation first, then
uses what the command line uses: a ``body`` letter goes back to the inbox
(``deadletters.requeue_body``), a ``handler`` or ``hook`` letter has its handler's
or lifecycle hook's task published again (``redrive.redrive``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from flask import flash, redirect, render_template, request, url_for

from agora_callbacks import deadletters, redrive
from agora_callbacks.deadletters import DeadLetter
from agora_callbacks.ingress import responses
from agora_callbacks.ingress.dashboard import bp, recordings
from agora_callbacks.ingress.state import get_state
from agora_callbacks.logs import get_logger

log = get_logger("ingress.dashboard")

PAGE_SIZE = 50
#: Most per-letter lines shown after a requeue.
FLASH_LINES = 5


@dataclass(frozen=True)
class LetterFilters:
    kind: str = ""
    reason: str = ""
    handler: str = ""
    sid: str = ""

    def matches(self, letter: DeadLetter) -> bool:
        return ((not self.kind or letter.kind == self.kind)
                and (not self.reason or letter.reason == self.reason)
                and (not self.handler or self.handler in letter.handler)
                and (not self.sid or letter.sid.startswith(self.sid)))


def scan(client: redis.Redis, filters: LetterFilters,
         before: str = "") -> tuple[list[DeadLetter], str]:
    """Up to ``PAGE_SIZE`` matching letters, newest first, and the next page's start."""
    return deadletters.newest(client, filters.matches, PAGE_SIZE, before=before)


def _unavailable(exc: Exception) -> Any:
    return recordings.unavailable("deadletters", exc)


@bp.get("/deadletters")
def deadletter_list() -> Any:
    state = get_state()
    filters = LetterFilters(**{name: request.args.get(name, "").strip()
                               for name in ("kind", "reason", "handler", "sid")})
    before = request.args.get("before", "")
    if before and not deadletters.is_id(before):
        return responses.error(400, f"before: not a dead letter id ({deadletters.ID_EXAMPLE})")
    try:
        letters, next_before = scan(state.redis, filters, before)
        total = deadletters.count(state.redis)
    except (redis.RedisError, OSError) as exc:
        return _unavailable(exc)
    return render_template("dashboard/deadletters.html", letters=letters, filters=filters,
                           next_before=next_before, total=total,
                           kinds=deadletters.KINDS, scan_limit=deadletters.SCAN_LIMIT)


@bp.get("/deadletters/<letter_id>")
def deadletter(letter_id: str) -> Any:
    try:
        letter = _get(get_state().redis, letter_id)
    except (redis.RedisError, OSError) as exc:
        return _unavailable(exc)
    if letter is None:
        return render_template("dashboard/missing.html", what=f"dead letter {letter_id}"), 404
    return render_template("dashboard/deadletter.html", letter=letter, sid=letter.sid)


def _get(client: redis.Redis, letter_id: str) -> DeadLetter | None:
    """The letter, or None when there is none (or the id is not a stream id)."""
    try:
        return deadletters.get(client, letter_id)
    except redis.ResponseError:
        return None


def requeue_one(letter: DeadLetter) -> str:
    """Requeue one letter; return what became of it."""
    state = get_state()
    # A hook letter's body is a record, never an inbox body.
    if letter.kind == deadletters.HOOK or (letter.kind == deadletters.HANDLER
                                           and letter.handler):
        task_id = redrive.redrive(state.settings, state.redis, letter)
        log.info("dashboard.requeued", letter=letter.id, kind=letter.kind, task_id=task_id)
        return f"{letter.kind} {letter.handler} published again (task {task_id})"
    entry = deadletters.requeue_body(state.redis, letter)
    log.info("dashboard.requeued", letter=letter.id, kind=letter.kind, entry=entry)
    return f"body back in the inbox (entry {entry})"


@bp.post("/deadletters/requeue")
def requeue() -> Any:
    """Step 1 (no ``confirm``): show what would be requeued. Step 2: requeue it."""
    state = get_state()
    ids = [i for i in request.form.getlist("id") if i][:PAGE_SIZE]
    if not ids:
        flash("No dead letter selected.")
        return redirect(url_for("dashboard.deadletter_list"))
    try:
        letters = [(i, _get(state.redis, i)) for i in ids]
    except (redis.RedisError, OSError) as exc:
        return _unavailable(exc)
    if request.form.get("confirm") != "yes":
        return render_template("dashboard/confirm_requeue.html", letters=letters)
    done = 0
    notes: list[str] = []
    for letter_id, letter in letters:
        if letter is None:
            notes.append(f"{letter_id}: gone already (requeued or trimmed).")
            continue
        try:
            notes.append(f"{letter_id}: {requeue_one(letter)}.")
            done += 1
        except deadletters.RequeuedAlready:
            notes.append(f"{letter_id}: requeued already (by another request).")
        except Exception as exc:  # Redis, the broker: report it, go on with the others
            log.warning("dashboard.requeue_failed", letter=letter_id, error=type(exc).__name__)
            notes.append(f"{letter_id}: not requeued ({type(exc).__name__}); it is still here.")
    # Flashed messages live in the session cookie: a few lines, not one per letter.
    flash(f"Requeued {done} of {len(letters)}.")
    for note in notes[:FLASH_LINES]:
        flash(note)
    if len(notes) > FLASH_LINES:
        flash(f"... and {len(notes) - FLASH_LINES} more (see the log).")
    return redirect(url_for("dashboard.deadletter_list"))
