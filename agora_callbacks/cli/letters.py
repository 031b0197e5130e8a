"""Dead letters as the commands name, select, filter and summarise them
(``dlq`` and ``replay --from-dlq``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import click
import redis

from agora_callbacks import deadletters
from agora_callbacks.cli.output import BadArgument, CommandFailed
from agora_callbacks.deadletters import DeadLetter

PAGE = 200
#: Longest error text in a ``dlq list`` row (``dlq show`` has it all).
ERROR_WIDTH = 100


def check_id(value: str, what: str = "dead letter id") -> str:
    """``value`` if it has the form of a dead letter id; else a one-line usage error
    (exit 2) naming it and the expected form."""
    if not deadletters.is_id(value):
        raise BadArgument(f"{value!r} is not a {what}: expected the form "
                          f"{deadletters.ID_EXAMPLE} (as `agora-callbacks dlq list` shows)")
    return value


class DeadLetterId(click.ParamType):
    """A click argument type: a dead letter id, checked before Redis is touched.
    ``allow_start``: ``-`` (the start of the stream) is accepted too."""

    name = "ID"

    def __init__(self, allow_start: bool = False) -> None:
        self.allow_start = allow_start

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        text = str(value)
        if self.allow_start and text == "-":
            return text
        return check_id(text)


def iter_all(client: redis.Redis, after: str = "-") -> Iterator[DeadLetter]:
    """Every dead letter after ``after``, oldest first, read page by page."""
    while True:
        page = deadletters.list_(client, PAGE, after)
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].id


def selected(client: redis.Redis, ids: tuple[str, ...], all_: bool,
             usage: str = "give dead letter IDs or --all (not both)") -> list[DeadLetter]:
    """The dead letters named by ``ids`` (each once), or every one with ``all_``
    (exactly one of the two); exit 1 naming an id that is not there."""
    if all_ == bool(ids):
        raise click.UsageError(usage)
    if all_:
        return list(iter_all(client))
    letters = []
    for i in dict.fromkeys(ids):  # an id given twice is taken once
        letter = deadletters.get(client, check_id(i))
        if letter is None:
            raise CommandFailed(f"no dead letter {i}")
        letters.append(letter)
    return letters


def letter_summary(letter: DeadLetter) -> dict[str, Any]:
    """What a list row shows of a letter: ``sid``, ``sequence`` and ``eventType`` of
    an event's body (``deadletters.body_fields``); a ``hook`` letter's body is a
    record, not an event: its ``sid`` and ``phase`` (``extra``)."""
    if letter.kind != deadletters.HOOK:
        return deadletters.body_fields(letter.body)
    out = {"sid": letter.sid, "phase": letter.extra.get("phase")}
    return {k: v for k, v in out.items() if v}


def _flat_detail(detail: str) -> str:
    """A body's validation messages (``{"payload.sequence": ["Not a valid integer."]}``)
    as ``payload.sequence: Not a valid integer.``; any other detail as it is."""
    try:
        value = json.loads(detail)
    except ValueError:
        return detail
    if not isinstance(value, dict):
        return detail
    parts = []
    for path, reasons in value.items():
        texts = reasons if isinstance(reasons, list) else [reasons]
        parts.append(f"{path}: {' '.join(str(t) for t in texts)}")
    return "; ".join(parts)


def error_summary(letter: DeadLetter, width: int | None = ERROR_WIDTH) -> str:
    """One line saying what went wrong: a handler's exception, else the detail
    (validation messages, a lost handler's deadline), cut to ``width``."""
    text = letter.exception or _flat_detail(letter.detail) or letter.reason
    if text.startswith("Traceback (most recent call last)"):
        text = text.rstrip().rsplit("\n", 1)[-1]  # the exception is the last line
    line = " ".join(text.split())
    if width is not None and len(line) > width:
        line = line[:width - 3] + "..."
    return line


@dataclass(frozen=True)
class Filter:
    """``dlq list``'s filters; empty ones match everything."""

    kind: str | None = None
    reasons: tuple[str, ...] = ()
    sid: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.kind or self.reasons or self.sid)

    def matches(self, letter: DeadLetter) -> bool:
        if self.kind and letter.kind != self.kind:
            return False
        if self.reasons and letter.reason not in self.reasons:
            return False
        return not self.sid or letter.sid == self.sid


def first_matching(letters: Iterable[DeadLetter], wanted: Filter,
                   limit: int) -> tuple[list[DeadLetter], bool]:
    """The first ``limit`` letters that match, and whether another one follows."""
    out: list[DeadLetter] = []
    for letter in letters:
        if wanted.matches(letter):
            if len(out) == limit:
                return out, True
            out.append(letter)
    return out, False
