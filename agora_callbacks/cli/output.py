"""How the commands speak: exit codes, ``Error:`` lines, status colours, tables.

The convention every command follows (README, "Command line"):

- exit 0: done;
- exit 1: the command ran and failed, or what it was asked about does not exist
  (no such dead letter or recording, Redis unreachable, a bad setting in the
  environment, a request not answered 200);
- exit 2: the command line is wrong (a missing or malformed argument or option).

Every failure is one ``Error: ...`` line on stderr (click's own parser errors add
its usage lines before it). Colours come from click (``click.style``): ``click.echo``
drops them when the stream is not a terminal, so piped output is plain text, and
``--json`` output is never styled in the first place.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO, Any

import click

OK = "ok"
WARNING = "warning"
ERROR = "error"
_COLOUR = {OK: "green", WARNING: "yellow", ERROR: "red"}


class CommandFailed(click.ClickException):
    """Exit 1: one ``Error: ...`` line (red on a terminal)."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{status('Error:', ERROR)} {self.format_message()}",
                   file=file or sys.stderr, err=file is None)


class BadArgument(CommandFailed):
    """Exit 2, a usage error, yet one line: the value at fault and what was expected."""

    exit_code = 2


def status(text: str, level: str) -> str:
    """``text`` in the colour of ``level`` (``OK``, ``WARNING``, ``ERROR``)."""
    return click.style(text, fg=_COLOUR[level], bold=True if level == ERROR else None)


def note(text: str) -> str:
    """Secondary text (where a command's data came from), dimmed on a terminal."""
    return click.style(text, dim=True)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


#: A table cell: its text, or its text and a status level to colour it with.
Cell = str | tuple[str, str | None]


def table(header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> list[str]:
    """Lines of a table, columns two spaces apart, padded to the widest cell (the
    last column is not padded). Widths are measured on the plain text, then colour
    is applied, so the columns line up on a terminal and the text is the same off
    one."""
    plain_rows = [[c if isinstance(c, str) else c[0] for c in row] for row in rows]
    widths = [max(len(r[i]) for r in [list(header), *plain_rows]) for i in range(len(header))]

    def line(cells: Sequence[Cell], bold: bool = False) -> str:
        out = []
        for i, cell in enumerate(cells):
            text, level = (cell, None) if isinstance(cell, str) else cell
            padded = text if i == len(cells) - 1 else text.ljust(widths[i])
            if level is not None:
                # Style the text only: the padding stays outside the escape codes.
                padded = status(text, level) + padded[len(text):]
            elif bold:
                padded = click.style(text, bold=True) + padded[len(text):]
            out.append(padded)
        return "  ".join(out).rstrip()

    return [line(header, bold=True), *(line(row) for row in rows)]
