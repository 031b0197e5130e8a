"""``agora-callbacks dlq``: read, export and safely requeue dead letters."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import click
import redis

from agora_callbacks import deadletters, replay
from agora_callbacks.cli import context
from agora_callbacks.deadletters import DeadLetter
from agora_callbacks.logs import get_logger
from agora_callbacks.settings import Settings

log = get_logger("cli.dlq")
PAGE = 200


def _when(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def body_summary(body: bytes) -> dict[str, Any]:
    """``sid``, ``sequence`` and ``eventType`` of a body, where it parses that far."""
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    payload = value.get("payload")
    if not isinstance(payload, dict):
        payload = {}
    out = {"sid": payload.get("sid", value.get("sid")), "sequence": payload.get("sequence"),
           "event_type": value.get("eventType")}
    return {k: v for k, v in out.items() if v is not None}


def iter_all(client: redis.Redis) -> Iterator[DeadLetter]:
    """Every dead letter, oldest first, read page by page."""
    after = "-"
    while True:
        page = deadletters.list_(client, PAGE, after)
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].id


def selected(client: redis.Redis, ids: tuple[str, ...], all_: bool,
             usage: str = "give dead letter IDs or --all (not both)") -> list[DeadLetter]:
    """The dead letters named by ``ids``, or every one with ``all_`` (exactly one of
    the two); a click error for an unknown id."""
    if all_ == bool(ids):
        raise click.UsageError(usage)
    if all_:
        return list(iter_all(client))
    letters = []
    for i in ids:
        letter = deadletters.get(client, i)
        if letter is None:
            raise click.ClickException(f"no dead letter {i}")
        letters.append(letter)
    return letters


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def dlq() -> None:
    """Dead letters: bodies that never became events, handlers that gave up.

    Nothing is lost: each keeps its raw bytes, reason and receive metadata.
    `requeue` re-injects safely (deduplication still applies).
    """


@dlq.command("list")
@click.option("--limit", "-n", default=50, show_default=True, type=click.IntRange(1),
              help="At most this many.")
@click.option("--after", default="-", help="Start after this dead letter id.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_cmd(limit: int, after: str, as_json: bool) -> None:
    """List dead letters, oldest first.

    \b
    Example:
      agora-callbacks dlq list -n 20
    """
    client = context.redis_client()
    letters = deadletters.list_(client, limit, after)
    total = deadletters.count(client)
    if as_json:
        for letter in letters:
            row = {k: v for k, v in letter.as_dict().items() if k != "body"}
            click.echo(json.dumps({**row, **body_summary(letter.body)}))
        return
    if not letters:
        click.echo("no dead letters" if total == 0 else f"none after {after} ({total} in all)")
        return
    rows = [("ID", "TIME (UTC)", "KIND", "REASON", "SID", "SEQ", "EVENT", "HANDLER")]
    for letter in letters:
        s = body_summary(letter.body)
        rows.append((letter.id, _when(letter.at_ms), letter.kind, letter.reason,
                     str(s.get("sid", "-")), str(s.get("sequence", "-")),
                     str(s.get("event_type", "-")), letter.handler or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    shown = len(letters)
    if shown < total:
        click.echo(f"({shown} shown of {total}; next page: --after {letters[-1].id})")


@dlq.command("show")
@click.argument("dead_letter_id")
@click.option("--json", "as_json", is_flag=True, help="As one JSON object.")
def show_cmd(dead_letter_id: str, as_json: bool) -> None:
    """Everything about one dead letter, the body pretty-printed when it is JSON.

    \b
    Example:
      agora-callbacks dlq show 1732476245123-0
    """
    letter = deadletters.get(context.redis_client(), dead_letter_id)
    if letter is None:
        raise click.ClickException(f"no dead letter {dead_letter_id}")
    if as_json:
        click.echo(json.dumps(replay.export_record(letter), indent=2, ensure_ascii=False))
        return
    fields = [("id", letter.id), ("time", f"{_when(letter.at_ms)} UTC"),
              ("kind", letter.kind), ("reason", letter.reason), ("detail", letter.detail)]
    fields += [(name, str(value)) for name, value in body_summary(letter.body).items()]
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
    click.echo(f"body ({len(letter.body)} bytes):")
    try:
        click.echo(json.dumps(json.loads(letter.body), indent=2, ensure_ascii=False))
    except ValueError:
        click.echo(letter.body.decode("utf-8", "replace"))


@dlq.command("requeue")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead letter.")
def requeue_cmd(ids: tuple[str, ...], all_: bool) -> None:
    """Re-inject dead letters and remove them.

    A `body` dead letter goes back into the inbox (the stale-replay check is
    skipped for it; deduplication still applies). A `handler` dead letter re-runs
    that one handler on that event, outside the per-recording order (its turn has
    long passed).

    \b
    Examples:
      agora-callbacks dlq requeue 1732476245123-0
      agora-callbacks dlq requeue --all
    """
    current = context.settings()
    client = context.redis_client(current)
    letters = selected(client, ids, all_)
    done = failed = 0
    for letter in letters:
        try:
            target = requeue_one(current, client, letter)
        except Exception as exc:  # report and go on with the others
            failed += 1
            log.warning("dlq.requeue_failed", dead_letter=letter.id, kind=letter.kind,
                        error=str(exc))
            click.echo(f"{letter.id}: not requeued: {exc}", err=True)
            continue
        done += 1
        log.info("dlq.requeued", dead_letter=letter.id, kind=letter.kind, to=target)
        click.echo(f"{letter.id}: requeued ({letter.kind}) -> {target}")
    click.echo(f"{done} requeued, {failed} failed")
    if failed:
        sys.exit(1)


def requeue_one(settings: Settings, client: redis.Redis, letter: DeadLetter) -> str:
    """Requeue one dead letter; return where it went (inbox entry or handler task)."""
    if letter.kind == deadletters.BODY:
        return f"inbox {deadletters.requeue_body(client, letter)}"
    if letter.kind == deadletters.HANDLER:
        from agora_callbacks.redrive import redrive_handler

        return f"task {letter.handler}[{redrive_handler(settings, client, letter)}]"
    raise click.ClickException(f"unknown dead letter kind {letter.kind!r}")


@dlq.command("export")
@click.argument("file", type=click.File("w", encoding="utf-8"))
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead letter.")
def export_cmd(file: Any, ids: tuple[str, ...], all_: bool) -> None:
    """Write dead letters to FILE as JSON lines (raw body + metadata), for
    `agora-callbacks replay FILE`; `-` writes to stdout. Nothing is removed.

    \b
    Example:
      agora-callbacks dlq export dead.jsonl --all
    """
    client = context.redis_client()
    n = replay.write_export(selected(client, ids, all_), file)
    click.echo(f"{n} dead letter(s) exported", err=True)
