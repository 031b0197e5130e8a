"""``agora-callbacks recording SID``: where a recording stands, with the codes' meanings.

Reads the record the workers fold in each event's turn
(``agora_callbacks.workers.builtin.lifecycle``) from Redis, and the recording's
newest dead letters (failed handlers and hooks, refused bodies: at most
``DEAD_LETTERS_SHOWN``, among the newest ``deadletters.SCAN_LIMIT``); ``--json``
prints the record as stored; ``--reconcile`` first asks Agora's ``query``
(``agora_callbacks.reconcile``).
Exits 1 when there is no record (never seen, or expired ``RECORD_TTL_S`` after its
last change).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from agora_callbacks import deadletters
from agora_callbacks.cli import context
from agora_callbacks.cli.letters import error_summary, letter_summary
from agora_callbacks.cli.output import ERROR, OK, WARNING, CommandFailed, status
from agora_callbacks.deadletters import DeadLetter
from agora_callbacks.workers.builtin import phases, store

#: How each lifecycle phase is coloured on a terminal.
PHASE_LEVEL = {"exited": OK, "uploaded": OK, "transcoded": OK, "recording": OK,
               "failing_over": WARNING, "failed": ERROR, "exited_abnormally": ERROR}


def when(ms: Any) -> str:
    if not isinstance(ms, int):
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(start: Any, end: Any) -> str | None:
    if not isinstance(start, int) or not isinstance(end, int) or end < start:
        return None
    seconds = (end - start) // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def code(pair: dict[str, Any] | None) -> str:
    """``47 (The recording file upload fails.)`` from a ``{"code", "meaning"}`` pair."""
    if not pair:
        return "-"
    meaning = pair.get("meaning")
    return f"{pair.get('code')} ({meaning})" if meaning else f"{pair.get('code')} (undocumented)"


def quoted(text: Any) -> str:
    """A text in double quotes (JSON's escaping), ``-`` when there is none."""
    return "-" if text is None else json.dumps(str(text), ensure_ascii=False)


def numeric_order(name: str) -> tuple[int, int, str]:
    """Sort key of a dict key: numbers by value (``2`` before ``10``), then the rest."""
    stripped = name.lstrip("-")
    return (0, int(name), "") if stripped.isdigit() else (1, 0, name)


def ordered(value: Any) -> Any:
    """``value`` with every dict's keys sorted, numbers as numbers (``event_types``)."""
    if isinstance(value, dict):
        return {k: ordered(value[k]) for k in sorted(value, key=numeric_order)}
    if isinstance(value, list):
        return [ordered(v) for v in value]
    return value


def shown_sid(sid: str) -> str:
    """``sid`` for a message: as it is when plain, quoted (``repr``) when empty or
    holding spaces, line breaks or control characters, so the message stays one
    line and shows them."""
    plain = sid and sid.isprintable() and not any(c.isspace() for c in sid)
    return sid if plain else repr(sid)


def _section(lines: list[str], title: str, rows: list[str], level: str | None = None) -> None:
    if rows:
        lines.append(f"{status(title, level) if level else title}:")
        lines.extend(f"  {row}" for row in rows)


def _files(record: dict[str, Any]) -> list[str]:
    rows = []
    for f in record["files"]:
        bits = [f["file_name"]]
        if f.get("track_type"):
            bits.append(f"track {f['track_type']}")
        if f.get("uid") is not None:
            bits.append(f"uid {f['uid']}")
        if f.get("playable") is not None:
            bits.append("playable" if f["playable"] else "not playable")
        if f.get("slice_start_ms") is not None:
            bits.append(f"slice start {when(f['slice_start_ms'])}")
        rows.append(", ".join(bits))
    return rows


def _problems(record: dict[str, Any]) -> tuple[list[str], list[str]]:
    errors = [f"seq {e['sequence']} {when(e['at_ms'])}: module {code(e['module'])}, "
              f"level {code(e['level'])}, error {code(e['error'])}"
              + (f", message {quoted(e['message'])}" if e.get("message") else "")
              for e in record["errors"]]
    warnings = [f"seq {w['sequence']} {when(w['at_ms'])}: module {code(w['module'])}, "
                f"warning {code(w['warning'])}" for w in record["warnings"]]
    return errors, warnings


def _web(record: dict[str, Any]) -> list[str]:
    web = record.get("web")
    if not web:
        return []
    rows = [f"page recording started {when(web['started_ms'])}"]
    if web.get("stop"):
        stop = web["stop"]
        rows.append(f"stopped: {code(stop)}, message {quoted(stop.get('message'))}, "
                    f"details {quoted(stop.get('details'))}")
    if web.get("capability_limit"):
        rows.append(f"capability limit: {code(web['capability_limit'])}")
    rows += [f"reload seq {r['sequence']}: {code(r)}" for r in web.get("reloads", [])]
    rows += [f"CDN {url}: {code(s)}" for url, s in web.get("rtmp", {}).items()]
    return rows


def _transcoding(record: dict[str, Any]) -> list[str]:
    t = record["transcoding"]
    rows = []
    if t.get("started_ms"):
        rows.append(f"started {when(t['started_ms'])}")
    if t.get("completed"):
        rows.append(f"completed: {code(t['completed']['result'])}")
        rows += [f"  uid {u['uid']}: {code(u['result'])} {', '.join(u['files'])}".rstrip()
                 for u in t["completed"]["uids"]]
    if t.get("final"):
        rows.append(f"final result: {code(t['final']['result'])}; files: "
                    f"{', '.join(t['final']['files']) or '-'}")
    rows += [f"download failed seq {d['sequence']}: {', '.join(d['files'])}"
             for d in t.get("download_failures", [])]
    return rows


def _sequences(record: dict[str, Any]) -> str:
    s = record["sequences"]
    gaps = ", ".join(f"{g['first']}-{g['last']}" for g in s["gaps"]) or "none"
    late = ", ".join(str(x["sequence"]) for x in s["late"]) or "none"
    missing = ", ".join(str(x) for x in s["missing"]) or "none"
    return f"last {s['last']}; missing {missing}; skipped gaps {gaps}; late {late}"


def _lifecycle(record: dict[str, Any]) -> str:
    """The lifecycle phases fired (``@on_recording``), in firing order, with a failure's
    reason and the source of a phase that ``query`` decided."""
    fired = (record.get("lifecycle") or {}).get("fired") or {}
    if not fired:
        return "no phase fired yet"
    parts = []
    rank = {phase: i for i, phase in enumerate(phases.ORDER)}
    # The stored record's keys are sorted: order by when, then by the firing order.
    for phase, info in sorted(fired.items(), key=lambda item: (
            (item[1] or {}).get("at_ms") or 0, rank.get(item[0], len(rank)))):
        info = info or {}
        extra = [str(info["reason"])] if info.get("reason") else []
        if info.get("source") and info["source"] != "events":
            extra.append(f"from {info['source']}")
        parts.append(f"{phase} ({', '.join(extra)})" if extra else phase)
    return ", ".join(parts)


#: Most dead letters ``recording SID`` lists.
DEAD_LETTERS_SHOWN = 10


def _dead_letter(letter: DeadLetter) -> str:
    """One dead letter of the recording: what failed, where, and why."""
    summary = letter_summary(letter)
    where = (f"phase {summary['phase']}" if "phase" in summary
             else f"seq {summary.get('sequence', '-')}")
    who = f", {letter.handler}" if letter.handler else ""
    return (f"{letter.id} {when(letter.at_ms)}: {letter.kind} {letter.reason} ({where}{who}): "
            f"{error_summary(letter) or '-'}")


def dead_letter_rows(letters: list[DeadLetter], more: bool, sid: str) -> list[str]:
    """The rows of the dead-letter section; ``more``: point to ``dlq list --sid``."""
    rows = [_dead_letter(letter) for letter in letters]
    if more:
        rows.append(f"(maybe more: agora-callbacks dlq list --sid {sid})")
    return rows


def render(record: dict[str, Any], letters: list[DeadLetter] | None = None,
           more_letters: bool = False) -> str:
    """The readable summary of a record, with the recording's newest dead letters
    (``letters``; ``more_letters``: some may not be shown)."""
    state, times, upload = record["status"], record["times"], record["upload"]
    level = PHASE_LEVEL.get(state["phase"])
    phase = status(state["phase"], level) if level else state["phase"]
    lines = [
        f"Recording {record['sid']}",
        f"  channel {record.get('cname') or '-'}, mode {record.get('mode') or 'unknown'}, "
        f"recorder uid {record.get('uid') or '-'}",
        f"Status: {phase}: {state['meaning']}",
        f"  set by event {state['event_type']} (seq {state['sequence']}) at "
        f"{when(state['at_ms'])}",
    ]
    if record.get("service_status"):
        lines.append(f"  service status {code(record['service_status'])}")
    if record.get("exit"):
        lines.append(f"  exit status {code(record['exit'])}")
    lasted = duration(times["started_ms"], times["stopped_ms"])
    lines.append(f"Times: started {when(times['started_ms'])}, first slice "
                 f"{when(times['slice_started_ms'])}, stopped {when(times['stopped_ms'])}"
                 + (f" ({lasted})" if lasted else "")
                 + f", exited {when(times['exited_ms'])}")
    progress = "-" if upload["percent"] is None else f"{upload['percent']}%"
    done = "completed" if upload["completed"] else "not completed"
    backup = " (some files through Agora Cloud Backup)" if upload["backup_used"] else ""
    lines.append(f"Upload: {done}{backup}, progress {progress}")
    _section(lines, f"Files ({len(record['files'])})", _files(record))
    errors, warnings = _problems(record)
    _section(lines, f"Errors ({len(errors)})", errors, ERROR)
    _section(lines, f"Warnings ({len(warnings)})", warnings, WARNING)
    _section(lines, "Leaves", [
        f"seq {leave['sequence']} {when(leave['at_ms'])}: code {leave['code']}: "
        + "; ".join(f"{r['name']} ({r['meaning']})" for r in leave["reasons"])
        for leave in record["leaves"]])
    _section(lines, "Failovers", [
        f"seq {f['sequence']} {when(f['at_ms'])}: uid {f['old_uid']} -> {f['new_uid']}"
        for f in record["failovers"]])
    _section(lines, "Interruptions (slices missing between)", [
        f"seq {i['sequence']}: uid {i['stream_uid']} {i['track_type']}: stopped "
        f"{when(i['stopped_ms'])}, resumed {when(i['resumed_ms'])}"
        for i in record.get("interruptions", [])])
    _section(lines, "Transcoding", _transcoding(record))
    _section(lines, "Web page recording", _web(record))
    lines.append(f"Lifecycle: {_lifecycle(record)}")
    lines.append(f"Sequences: {_sequences(record)}")
    counts = record["event_types"]
    types = ", ".join(f"{k} x{counts[k]}" for k in sorted(counts, key=numeric_order))
    lines.append(f"Events: {record['event_count']} ({types}); first "
                 f"{when(times['first_event_ms'])}, last {when(times['last_event_ms'])}")
    if record.get("dropped"):
        lines.append(f"Dropped (oldest, beyond the kept length): {record['dropped']}")
    if letters or more_letters:
        _section(lines, "Dead letters (newest first)",
                 dead_letter_rows(letters or [], more_letters, record["sid"]), ERROR)
    else:
        lines.append("Dead letters: none")
    return "\n".join(lines)


@click.command("recording", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("sid")
@click.option("--json", "as_json", is_flag=True, help="Print the stored record as JSON.")
@context.redis_url_option
@click.option("--reconcile", "reconcile_now", is_flag=True,
              help="First ask Agora's query where the recording stands and fold the answer "
                   "into its record (needs AGORA_APP_ID, AGORA_CUSTOMER_ID, "
                   "AGORA_CUSTOMER_SECRET and a registered resourceId).")
def recording(sid: str, as_json: bool, redis_url: str | None, reconcile_now: bool) -> None:
    """Show where recording SID stands: status and its meaning, mode, times, files,
    errors, warnings, leave reasons, exit, failovers, transcoding, gaps and late
    events, lifecycle phases, as folded from its callbacks in the workers, and its
    newest dead letters (failed handlers and lifecycle hooks). Exits 1 when there
    is no record of SID."""
    current = context.settings(redis_url)
    client = context.redis_client(current, redis_url=redis_url, quiet=as_json)
    if reconcile_now:
        from agora_callbacks.reconcile.manual import reconcile_for_cli

        click.echo(reconcile_for_cli(current, client, sid), err=True)
    try:
        record = store.load_checked(client, sid)
    except store.UnreadableRecord as exc:
        raise CommandFailed(f"the record of recording {shown_sid(sid)} cannot be read: "
                            f"{exc}") from None
    if record is None:
        raise CommandFailed(f"no record of recording {shown_sid(sid)}: never seen by these "
                            "workers, or expired RECORD_TTL_S after its last change")
    if as_json:
        click.echo(json.dumps(ordered(record), indent=2, ensure_ascii=False))
        return
    letters, go_on = deadletters.newest(client, lambda letter: letter.sid == sid,
                                        DEAD_LETTERS_SHOWN)
    click.echo(render(record, letters, more_letters=bool(go_on)))
