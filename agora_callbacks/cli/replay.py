"""``agora-callbacks replay``: re-inject stored raw bodies through the normal pipeline."""

from __future__ import annotations

import sys
from typing import BinaryIO

import click

from agora_callbacks import deadletters
from agora_callbacks import replay as replaying
from agora_callbacks.cli import context
from agora_callbacks.cli.letters import check_id, selected
from agora_callbacks.cli.output import CommandFailed
from agora_callbacks.logs import get_logger

log = get_logger("cli.replay")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("sources", nargs=-1, metavar="FILE | --from-dlq [ID...]")
@click.option("--from-dlq", "from_dlq", is_flag=True,
              help="Replay dead letters: the IDs given, or --all.")
@click.option("--all", "all_", is_flag=True, help="With --from-dlq: every body dead letter.")
@click.option("--dry-run", is_flag=True, help="Count what would be replayed; change nothing.")
@context.redis_url_option
def replay(sources: tuple[str, ...], from_dlq: bool, all_: bool, dry_run: bool,
           redis_url: str | None) -> None:
    """Re-inject raw bodies into the inbox; the workers handle them as usual.

    FILE holds JSON lines as written by `agora-callbacks dlq export`, or raw NCS
    bodies one per line (`-` reads stdin). With --from-dlq, `body` dead letters
    are moved back into the inbox. Re-injected bodies skip the stale-replay check;
    deduplication still applies, so replaying what was already handled is
    harmless. (A `handler` dead letter's event was already dispatched, so a replay
    would be deduplicated: re-run its handler with `agora-callbacks dlq requeue`.
    A `hook` dead letter holds a record, not an event: it is skipped, from FILE
    too; re-run its hook with `agora-callbacks dlq requeue`.) With dead letter IDs it
    exits 1 when one of them is not a body dead letter; one that another command
    requeued meanwhile is skipped ("requeued already") without failing.

    \b
    Examples:
      agora-callbacks replay dead.jsonl
      agora-callbacks replay --from-dlq --all
      agora-callbacks replay --from-dlq 1732476245123-0 1732476245124-0
    """
    if not from_dlq:
        if len(sources) != 1 or all_:
            raise click.UsageError("give one FILE, or --from-dlq with dead letter IDs or --all")
        _replay_file(sources[0], dry_run, redis_url)
        return
    for source in sources:
        check_id(source)
    client = context.redis_client(redis_url=redis_url)
    letters = selected(client, sources, all_,
                       usage="with --from-dlq, give dead letter IDs or --all")
    bodies = [letter for letter in letters if letter.kind == deadletters.BODY]
    skipped = [letter for letter in letters if letter.kind != deadletters.BODY]
    for letter in skipped:
        click.echo(f"{letter.id}: skipped ({letter.kind} dead letter: "
                   f"use `agora-callbacks dlq requeue {letter.id}`)", err=True)
    if dry_run:
        click.echo(f"{len(bodies)} dead letter(s) would be replayed, {len(skipped)} skipped")
        return
    gone = 0
    for letter in bodies:
        try:
            entry = deadletters.requeue_body(client, letter)
        except deadletters.RequeuedAlready:  # by another command since it was read
            gone += 1
            click.echo(f"{letter.id}: skipped (requeued already)", err=True)
            continue
        log.info("replay.dead_letter", dead_letter=letter.id, entry_id=entry)
    click.echo(f"{len(bodies) - gone} dead letter(s) replayed into the inbox, "
               f"{len(skipped) + gone} skipped")
    # A letter another command requeued since it was read is on its way, once: not a
    # failure (as with ``dlq requeue``). A named letter of another kind is.
    if sources and skipped:
        sys.exit(1)


def _replay_file(path: str, dry_run: bool, redis_url: str | None) -> None:
    name = "stdin" if path == "-" else path
    stream: BinaryIO
    try:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise CommandFailed(f"cannot read {path}: {exc.strerror}") from None
    skipped: list[str] = []

    def skip(source: str, kind: str) -> None:
        skipped.append(source)
        click.echo(f"{source}: skipped ({kind} dead letter: its body is a recording's "
                   f"record, not an event; use `agora-callbacks dlq requeue`)", err=True)

    with stream:  # read as a stream: a large file is injected batch by batch
        bodies = replaying.read_bodies(stream, on_skip=skip)
        if dry_run:
            try:
                count = sum(1 for _ in bodies)
            except replaying.BadLine as exc:
                raise CommandFailed(f"{name} {exc}") from None
            click.echo(f"{count} bodies would be replayed from {name}{_skipped(skipped)}")
            return
        client = context.redis_client(redis_url=redis_url)
        try:
            entries = replaying.inject(client, bodies, origin=f"replay:{name}")
        except replaying.BadLine as exc:
            raise CommandFailed(f"{name} {exc}; the lines before it were replayed, none from "
                                f"it on") from None
    log.info("replay.file", file=name, bodies=len(entries), skipped=len(skipped))
    click.echo(f"{len(entries)} bodies replayed from {name} into the inbox{_skipped(skipped)}")


def _skipped(skipped: list[str]) -> str:
    return f", {len(skipped)} skipped" if skipped else ""
