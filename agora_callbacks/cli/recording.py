"""``agora-callbacks recording SID``: where a recording stands, with the codes' meanings.

Reads the record the built-in handler folds (``agora_callbacks.workers.builtin.recording_state``)
from Redis; ``--json`` prints it as stored. Exits 1 when there is no record
(never seen, or expired ``RECORDING_STATE_TTL_S`` after its last event).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from agora_callbacks.cli import context
from agora_callbacks.workers.builtin import store


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


def _section(lines: list[str], title: str, rows: list[str]) -> None:
    if rows:
        lines.append(f"{title}:")
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
              + (f", message {e['message']!r}" if e.get("message") else "")
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
        rows.append(f"stopped: {code(stop)}, message {stop.get('message')!r}, "
                    f"details {stop.get('details')!r}")
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


def render(record: dict[str, Any]) -> str:
    """The readable summary of a record."""
    status, times, upload = record["status"], record["times"], record["upload"]
    lines = [
        f"Recording {record['sid']}",
        f"  channel {record.get('cname') or '-'}, mode {record.get('mode') or 'unknown'}, "
        f"recorder uid {record.get('uid') or '-'}",
        f"Status: {status['phase']}: {status['meaning']}",
        f"  set by event {status['event_type']} (seq {status['sequence']}) at "
        f"{when(status['at_ms'])}",
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
    _section(lines, f"Errors ({len(errors)})", errors)
    _section(lines, f"Warnings ({len(warnings)})", warnings)
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
    lines.append(f"Sequences: {_sequences(record)}")
    types = ", ".join(f"{k} x{v}" for k, v in record["event_types"].items())
    lines.append(f"Events: {record['event_count']} ({types}); first "
                 f"{when(times['first_event_ms'])}, last {when(times['last_event_ms'])}")
    if record.get("dropped"):
        lines.append(f"Dropped (oldest, beyond the kept length): {record['dropped']}")
    return "\n".join(lines)


@click.command("recording")
@click.argument("sid")
@click.option("--json", "as_json", is_flag=True, help="Print the stored record as JSON.")
@click.option("--reconcile", "reconcile_now", is_flag=True,
              help="First ask Agora's query where the recording stands and fold the answer "
                   "into its record (needs AGORA_APP_ID, AGORA_CUSTOMER_ID, "
                   "AGORA_CUSTOMER_SECRET and a registered resourceId).")
def recording(sid: str, as_json: bool, reconcile_now: bool) -> None:
    """Show where recording SID stands: status and its meaning, mode, times, files,
    errors, warnings, leave reasons, exit, failovers, transcoding, gaps and late
    events, as folded from its callbacks by the built-in handler."""
    current = context.settings()
    client = context.redis_client(current)
    if reconcile_now:
        from agora_callbacks.reconcile.manual import reconcile_for_cli

        click.echo(reconcile_for_cli(current, client, sid), err=True)
    record = store.load(client, sid)
    if record is None:
        click.echo(f"no state for recording {sid}: never seen, or expired after "
                   "RECORDING_STATE_TTL_S", err=True)
        raise SystemExit(1)
    if as_json:
        click.echo(json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        click.echo(render(record))
