"""``agora-callbacks dlq``: read, export and safely requeue dead letters."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click
import redis

from agora_callbacks import deadletters, replay
from agora_callbacks.cli import context
from agora_callbacks.cli.letters import (
    DeadLetterId,
    Filter,
    error_summary,
    first_matching,
    iter_all,
    letter_summary,
    selected,
)
from agora_callbacks.cli.output import ERROR, OK, WARNING, CommandFailed, status, table
from agora_callbacks.deadletters import DeadLetter
from agora_callbacks.logs import get_logger
from agora_callbacks.settings import Settings

log = get_logger("cli.dlq")


def _when(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def dlq() -> None:
    """Dead letters: bodies that never became events, handlers and lifecycle hooks
    that gave up.

    Nothing is lost: each keeps its raw bytes, reason and receive metadata.
    `requeue` re-injects safely (deduplication still applies).
    """


def _not_empty(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """An empty ``--sid`` or ``--reason`` (``--sid "$SID"`` with SID unset) is refused:
    an empty ``--sid`` would list every recording's dead letters."""
    values = value if isinstance(value, tuple) else (value,)
    if any(v is not None and not v.strip() for v in values):
        raise click.BadParameter("must not be empty")
    return value


@dlq.command("list")
@click.option("--limit", "-n", default=50, show_default=True, type=click.IntRange(1),
              help="At most this many.")
@click.option("--after", default="-", type=DeadLetterId(allow_start=True),
              help="Start after this dead letter id.")
@click.option("--kind", type=click.Choice(deadletters.KINDS),
              help="Only this kind: a stored body, a handler or a lifecycle hook that "
                   "failed.")
@click.option("--reason", "reasons", multiple=True, metavar="REASON", callback=_not_empty,
              help="Only this reason (invalid_json, stale, handler_failed, lost, ...); "
                   "repeat for several.")
@click.option("--sid", callback=_not_empty, help="Only the dead letters of this recording.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@context.redis_url_option
def list_cmd(limit: int, after: str, kind: str | None, reasons: tuple[str, ...],
             sid: str | None, as_json: bool, redis_url: str | None) -> None:
    """List dead letters, oldest first, each with what went wrong (ERROR: the
    handler's or hook's exception, or why the body was refused). For a `hook`
    letter, EVENT is the lifecycle phase and HANDLER the hook.

    \b
    Examples:
      agora-callbacks dlq list -n 20
      agora-callbacks dlq list --kind handler --sid 38f8e3cfdc474cd56fc1ceba380d7e1a
      agora-callbacks dlq list --kind hook
    """
    client = context.redis_client(redis_url=redis_url, quiet=as_json)
    wanted = Filter(kind, reasons, sid)
    letters, more = first_matching(iter_all(client, after), wanted, limit)
    if as_json:
        for letter in letters:
            row = {k: v for k, v in letter.as_dict().items() if k != "body"}
            row["error"] = error_summary(letter, width=None)
            click.echo(json.dumps({**row, **letter_summary(letter)}))
        return
    total = deadletters.count(client)
    if not letters:
        if total == 0:
            click.echo(status("no dead letters", OK))
        elif wanted.active:
            click.echo(f"no dead letter matches ({total} in all)")
        else:
            click.echo(f"none after {after} ({total} in all)")
        return
    header = ("ID", "TIME (UTC)", "KIND", "REASON", "SID", "SEQ", "EVENT", "HANDLER", "ERROR")
    rows = []
    for letter in letters:
        s = letter_summary(letter)
        rows.append((letter.id, _when(letter.at_ms), letter.kind, (letter.reason, WARNING),
                     str(s.get("sid", "-")), str(s.get("sequence", "-")),
                     str(s.get("event_type", s.get("phase", "-"))), letter.handler or "-",
                     (error_summary(letter) or "-", ERROR)))
    for line in table(header, rows):
        click.echo(line)
    if more:
        shown = f"{len(letters)} shown" + ("" if wanted.active else f" of {total}")
        click.echo(f"({shown}; next page: --after {letters[-1].id})")


@dlq.command("show")
@click.argument("dead_letter_id", type=DeadLetterId())
@click.option("--json", "as_json", is_flag=True, help="As one JSON object.")
@context.redis_url_option
def show_cmd(dead_letter_id: str, as_json: bool, redis_url: str | None) -> None:
    """Everything about one dead letter, the body pretty-printed when it is JSON.

    \b
    Example:
      agora-callbacks dlq show 1732476245123-0
    """
    client = context.redis_client(redis_url=redis_url, quiet=as_json)
    letter = deadletters.get(client, dead_letter_id)
    if letter is None:
        raise CommandFailed(f"no dead letter {dead_letter_id}")
    if as_json:
        click.echo(json.dumps(replay.export_record(letter), indent=2, ensure_ascii=False))
        return
    fields = [("id", letter.id), ("time", f"{_when(letter.at_ms)} UTC"),
              ("kind", letter.kind), ("reason", status(letter.reason, WARNING)),
              ("error", status(error_summary(letter, width=None), ERROR)),
              ("detail", letter.detail)]
    if letter.kind == deadletters.HOOK:
        fields += _hook_fields(letter)
    else:
        fields += [(name, str(value))
                   for name, value in deadletters.body_fields(letter.body).items()]
        fields += [("event key", letter.key), ("handler", letter.handler)]
        fields += [("received", json.dumps(letter.meta, sort_keys=True))]
        if letter.extra:
            fields.append(("extra", json.dumps(letter.extra, sort_keys=True)))
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        if value:
            click.echo(f"{name:<{width}}  {value}")
    if letter.exception:
        click.echo("exception:")
        click.echo("  " + letter.exception.rstrip().replace("\n", "\n  "))
    what = "record the hook got" if letter.kind == deadletters.HOOK else "body"
    click.echo(f"{what} ({len(letter.body)} bytes):")
    try:
        click.echo(json.dumps(json.loads(letter.body), indent=2, ensure_ascii=False))
    except ValueError:
        click.echo(letter.body.decode("utf-8", "replace"))


def _hook_fields(letter: DeadLetter) -> list[tuple[str, str]]:
    """``dlq show``'s lines of a ``hook`` letter: recording, phase, hook, info."""
    info = letter.extra.get("info")
    return [("sid", letter.sid),
            ("phase", str(letter.extra.get("phase", ""))), ("hook", letter.handler),
            ("info", json.dumps(info, sort_keys=True) if info else "")]


@dlq.command("requeue")
@click.argument("ids", nargs=-1, type=DeadLetterId())
@click.option("--all", "all_", is_flag=True, help="Every dead letter.")
@context.redis_url_option
def requeue_cmd(ids: tuple[str, ...], all_: bool, redis_url: str | None) -> None:
    """Re-inject dead letters and remove them.

    A `body` dead letter goes back into the inbox (the stale-replay check is
    skipped for it; deduplication still applies). A `handler` dead letter re-runs
    that one handler on that event, outside the per-recording order (its turn has
    long passed). A `hook` dead letter re-runs that lifecycle hook with the record
    it got, once. A worker runs either later, so its outcome comes later (a new
    failure is a new dead letter).

    A letter that another requeue (another operator, the dashboard, `replay
    --from-dlq`) took since this one read it is skipped and counted apart:
    "skipped: requeued already"; it is not requeued twice. The summary line says
    how many were requeued, skipped and failed. Exit status: 0 when none failed
    (letters skipped as requeued already included: they are on their way, by the
    other requeue), 1 when any failed (each is named on stderr; it stays a dead
    letter, to requeue again).

    \b
    Examples:
      agora-callbacks dlq requeue 1732476245123-0
      agora-callbacks dlq requeue --all
    """
    current = context.settings(redis_url)
    client = context.redis_client(current, redis_url=redis_url)
    letters = selected(client, ids, all_)
    done = failed = skipped = 0
    rerun_sids: dict[str, set[str]] = {}
    for letter in letters:
        try:
            target = requeue_one(current, client, letter)
        except deadletters.RequeuedAlready:  # by another requeue since it was read
            skipped += 1
            log.info("dlq.requeue_skipped", dead_letter=letter.id, kind=letter.kind,
                     why="requeued_already")
            click.echo(f"{letter.id}: {status('skipped: requeued already', WARNING)} "
                       f"({letter.kind}, by another requeue since this one read it)")
            continue
        except Exception as exc:  # report and go on with the others
            failed += 1
            log.warning("dlq.requeue_failed", dead_letter=letter.id, kind=letter.kind,
                        error=str(exc))
            click.echo(f"{letter.id}: {status('not requeued', ERROR)}: {exc}", err=True)
            continue
        done += 1
        log.info("dlq.requeued", dead_letter=letter.id, kind=letter.kind, to=target)
        click.echo(f"{letter.id}: {status('requeued', OK)} ({letter.kind}) -> {target}")
        if letter.kind in (deadletters.HANDLER, deadletters.HOOK):
            rerun_sids.setdefault(letter.kind, set()).add(letter.sid)
    summary = f"{done} requeued, {failed} failed"
    if skipped:
        summary += f", {skipped} skipped: requeued already"
    click.echo(status(summary, ERROR if failed else WARNING if skipped else OK))
    for kind, sids in rerun_sids.items():
        _outcome_note(kind, sids)
    if failed:
        sys.exit(1)


def _outcome_note(kind: str, sids: set[str]) -> None:
    """A handler or hook requeue only publishes a task: say when and where its
    outcome shows."""
    see = f"agora-callbacks dlq list --kind {kind}"
    if len(sids) == 1 and "" not in sids:
        see += f" --sid {next(iter(sids))}"
    click.echo(status(f"The {kind} outcome comes later: ", WARNING)
               + f"a worker runs the task when it takes it. If the {kind} fails again it "
               f"is dead-lettered again: see `{see}`; Flower shows the task's run "
               "(succeeded or failed).")


def requeue_one(settings: Settings, client: redis.Redis, letter: DeadLetter) -> str:
    """Requeue one dead letter; return where it went (inbox entry, handler or hook task)."""
    if letter.kind == deadletters.BODY:
        return f"inbox {deadletters.requeue_body(client, letter)}"
    if letter.kind in (deadletters.HANDLER, deadletters.HOOK):
        from agora_callbacks.redrive import redrive

        return f"task {letter.handler}[{redrive(settings, client, letter)}]"
    raise ValueError(f"unknown dead letter kind {letter.kind or '(none)'}")


@dlq.command("export")
@click.argument("file", type=click.File("w", encoding="utf-8"))
@click.argument("ids", nargs=-1, type=DeadLetterId())
@click.option("--all", "all_", is_flag=True, help="Every dead letter.")
@context.redis_url_option
def export_cmd(file: Any, ids: tuple[str, ...], all_: bool, redis_url: str | None) -> None:
    """Write dead letters to FILE as JSON lines (raw body + metadata), for
    `agora-callbacks replay FILE`; `-` writes to stdout. Nothing is removed.

    \b
    Example:
      agora-callbacks dlq export dead.jsonl --all
    """
    client = context.redis_client(redis_url=redis_url, quiet=True)
    n = replay.write_export(selected(client, ids, all_), file)
    file.write("")  # FILE is opened on the first write: it is made (emptied) even for none
    click.echo(f"{n} dead letter(s) exported", err=True)
