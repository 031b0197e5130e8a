"""The lifecycle phases of a recording, decided from its folded record (pure).

A recording goes through five phases, each fired at most once (``record
["lifecycle"]["fired"]``); ``evaluate(record, now_ms, ...)`` fires those that are
due and says when to look again. What each phase means, what triggers it and what
it waits for (README, "Recording lifecycle"):

- ``started``: the recorder is recording: 40 ``recorder_started`` or 70
  ``web_recorder_started``, or the first event that can only come from a running
  recorder (42, 43, 44, 45, 4, 41, 71, 31, 32; a 3 with status 5) when those were lost.
- ``files_ready``: the files are uploaded: 31 ``uploaded``, or 32 ``backuped``
  (then ``backup`` is true: some files reach your storage later, uploaded by
  Agora Cloud Backup, and no event says when). It waits for the exit (11, or 71
  for web page recording) or ``SETTLE_S`` after the upload report, whichever
  first, so that the files of a second report (failover resends) are in; and
  for a file name (``info["files"]`` is never empty: a web 31 names no file, 71
  does). Also ``SETTLE_S`` after a normal exit (11 status 0: "the files are
  uploaded") whose 31 was lost, when file names are known from 4, 71 or
  ``query`` and no upload error was reported (then the recording failed,
  ``upload_failed``).
- ``finished``: the recording ended normally: a normal exit (11 status 0, or for
  web page recording 71 with code 0 or 1), once the upload report is folded or
  ``SETTLE_S`` after the exit (31 and 33 arrive after 11 in real traffic); or an
  upload report whose exit was lost, ``SETTLE_S`` after it; or ``query`` saying the
  session ended and files are known.
- ``failed``: the recording ended badly or cannot go on; ``reason`` says why
  (``REASONS``). Exclusive with ``finished``: the first one decided wins.
- ``stalled``: no event for ``STALL_AFTER_S`` while the recording had not exited;
  ``failed`` (reason ``stalled``) follows after as long again with still no event.

Times are the fold clock's (Redis time when the event was folded), kept in
``record["lifecycle"]["marks"]``: what matters for a silence is when events
arrived, not their ``sendts``.
"""

from __future__ import annotations

from typing import Any

from agora_callbacks.schemas import enums
from agora_callbacks.workers.builtin.record import NORMAL_EXIT, as_int

#: Phases in the order they are fired when several are due at once.
ORDER = ("started", "files_ready", "finished", "failed", "stalled")

#: Events that only a recorder that runs (or ran) sends.
START_EVIDENCE = frozenset({40, 70, 42, 43, 44, 45, 4, 41, 71, 31, 32})

REASONS: dict[str, str] = {
    "exit_status": "The recording service exited abnormally (session_exit with exitStatus "
                   "other than 0, e.g. a parameter set incorrectly).",
    "fatal_error": "The service reported a fatal error (errorLevel 5) and no failover or "
                   "normal exit followed within SETTLE_S.",
    "upload_failed": "The files were not uploaded: an upload error (uploader errors 32, 47, "
                     "51, or service error 50) and no uploaded/backuped report after the "
                     "exit.",
    "web_capability_limit": "The web page uses a feature web page recording does not "
                            "support (web_recorder_capability_limit): the recording stopped.",
    "web_recorder_stopped": "Web page recording stopped abnormally (web_recorder_stopped "
                            "with a code from 2 to 6).",
    "service_failed": "The recording service reports that it exited abnormally (status 20).",
    "stalled": "No event for twice STALL_AFTER_S and no exit: the recording went silent.",
    "no_exit": "Agora's query says the session ended, but no exit and no upload report "
               "arrived: what became of the files is unknown.",
}

#: Upload error codes of the uploader module and of the service (50: upload timeout).
UPLOAD_ERRORS = {int(enums.Module.UPLOADER): {32, 47, 51}, 2: {50}}


def new_lifecycle() -> dict[str, Any]:
    return {"fired": {}, "pending": [], "marks": {}, "reconcile": {}}


def lifecycle_of(record: dict[str, Any]) -> dict[str, Any]:
    lc = record.get("lifecycle")
    if not isinstance(lc, dict):
        lc = new_lifecycle()
        record["lifecycle"] = lc
    return lc


def _mark(lc: dict[str, Any], name: str, ms: int, sequence: int | None,
          event_type: int | None, *, last: bool = False, newest: bool = False) -> None:
    """Keep the first mark of ``name``; ``last``: the last folded; ``newest``: the
    last in the recording's order (a late event does not replace a newer one)."""
    mark = {"ms": ms, "sequence": sequence, "event_type": event_type}
    old = lc["marks"].get(name)
    if old is None or last or (newest and _follows(mark, old)):
        lc["marks"][name] = mark


def _follows(mark: dict[str, Any], other: dict[str, Any]) -> bool:
    """``mark`` comes after ``other`` in the recording's order: by sequence when
    both have one, else by when they were folded."""
    if mark.get("sequence") is not None and other.get("sequence") is not None:
        return bool(mark["sequence"] > other["sequence"])
    return bool(mark["ms"] >= other["ms"])


def note_event(record: dict[str, Any], event_type: int | None, sequence: int | None,
               details_get: Any, now_ms: int) -> None:
    """Remember when (fold clock) the events that decide phases were folded."""
    lc = lifecycle_of(record)
    _mark(lc, "last", now_ms, sequence, event_type, last=True)
    et = event_type
    if et in START_EVIDENCE or (et == 3 and as_int(details_get("status")) == 5):
        _mark(lc, "start", now_ms, sequence, et)
    if et == 11:
        _mark(lc, "exit", now_ms, sequence, et)
    elif et in (31, 32):
        _mark(lc, "upload", now_ms, sequence, et)
    elif et == 12:
        _mark(lc, "failover", now_ms, sequence, et, last=True)
    elif et == 72:
        _mark(lc, "web_limit", now_ms, sequence, et)
    elif et == 71:
        _mark(lc, "web_stop", now_ms, sequence, et)
    elif et == 3 and as_int(details_get("status")) == 20:
        _mark(lc, "service_failed", now_ms, sequence, et)
    elif et == 1:
        module, code = as_int(details_get("module")), as_int(details_get("error_code"))
        if as_int(details_get("error_level")) == int(enums.ErrorLevel.FATAL):
            _mark(lc, "fatal", now_ms, sequence, et, newest=True)
        if _is_upload_code(module, code):
            _mark(lc, "upload_error", now_ms, sequence, et)


def _is_upload_code(module: int | None, code: int | None) -> bool:
    return module is not None and code in UPLOAD_ERRORS.get(module, ())


def _is_upload_error(error: dict[str, Any]) -> bool:
    """An entry of ``record["errors"]`` is an upload error (``UPLOAD_ERRORS``)."""
    return _is_upload_code(as_int((error.get("module") or {}).get("code")),
                           as_int((error.get("error") or {}).get("code")))


def note_query(record: dict[str, Any], facts: dict[str, Any], now_ms: int) -> None:
    """Marks from a ``query`` answer (``facts``, see ``lifecycle.apply_query``)."""
    lc = lifecycle_of(record)
    outcome, status = facts.get("outcome"), as_int(facts.get("status"))
    if outcome == "active" and status is not None and status <= 5:
        _mark(lc, "alive", now_ms, None, None, last=True)
        if status == 5:
            _mark(lc, "start", now_ms, None, None)
    if outcome == "ended" or (outcome == "active" and status in (6, 7, 8)):
        _mark(lc, "ended", now_ms, None, None)
    if outcome == "active" and status == 20:
        _mark(lc, "service_failed", now_ms, None, None)


def _reason(code: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "meaning": REASONS[code], **extra}


def _last_error(record: dict[str, Any], sequence: int | None) -> dict[str, Any] | None:
    for err in reversed(record.get("errors") or []):
        if err.get("sequence") == sequence:
            return dict(err)
    return None


def _web_stop_code(record: dict[str, Any]) -> int | None:
    web = record.get("web") or {}
    stop = web.get("stop") or {}
    return as_int(stop.get("code"))


def _exit_code(record: dict[str, Any]) -> int | None:
    return as_int((record.get("exit") or {}).get("code"))


def _failure(record: dict[str, Any], now_ms: int, settle_ms: int,
             stall_ms: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(reason, mark) of the failure now decided, if any."""
    marks = record["lifecycle"]["marks"]
    exit_mark = marks.get("exit")
    exit_code = _exit_code(record)
    if exit_mark and exit_code not in NORMAL_EXIT:
        return _reason("exit_status", exit_status=exit_code,
                       detail=(record.get("exit") or {}).get("meaning")), exit_mark
    if "web_limit" in marks:
        limit = (record.get("web") or {}).get("capability_limit") or {}
        return _reason("web_capability_limit", limit_type=limit.get("code"),
                       detail=limit.get("meaning")), marks["web_limit"]
    web_code = _web_stop_code(record)
    if "web_stop" in marks and web_code is not None and 2 <= web_code <= 6:
        stop = (record.get("web") or {}).get("stop") or {}
        return _reason("web_recorder_stopped", web_code=web_code,
                       detail=stop.get("message")), marks["web_stop"]
    if "service_failed" in marks:
        return _reason("service_failed"), marks["service_failed"]
    normal_exit = exit_mark is not None and exit_code in NORMAL_EXIT
    upload = marks.get("upload")
    fatal = marks.get("fatal")
    if fatal and not normal_exit and not upload and now_ms >= fatal["ms"] + settle_ms:
        failover = marks.get("failover")
        if not (failover and failover["ms"] >= fatal["ms"]):
            error = _last_error(record, fatal["sequence"]) or {}
            return _reason("upload_failed" if _is_upload_error(error) else "fatal_error",
                           error=error.get("error"), module=error.get("module"),
                           detail=error.get("message")), fatal
    if exit_mark and not upload and "upload_error" in marks \
            and now_ms >= exit_mark["ms"] + settle_ms:
        error = _last_error(record, marks["upload_error"]["sequence"]) or {}
        return _reason("upload_failed", error=error.get("error"), module=error.get("module"),
                       detail=error.get("message")), marks["upload_error"]
    if "ended" in marks and not exit_mark and not upload and not record.get("files"):
        return _reason("no_exit"), marks["ended"]
    stalled = record["lifecycle"]["fired"].get("stalled")
    last = _silence_since(marks)
    if stalled and not exit_mark and last is not None and now_ms >= last + 2 * stall_ms:
        return _reason("stalled", silent_s=(now_ms - last) // 1000), marks.get("last") or {}
    return None


def _silence_since(marks: dict[str, Any]) -> int | None:
    times = [m["ms"] for name in ("last", "alive") if (m := marks.get(name))]
    return max(times) if times else None


def _ended_ok(record: dict[str, Any]) -> dict[str, Any] | None:
    """The mark of a normal end: an exit with status 0, or web 71 with code 0/1."""
    marks = record["lifecycle"]["marks"]
    if marks.get("exit") and _exit_code(record) in NORMAL_EXIT:
        return dict(marks["exit"])
    web_code = _web_stop_code(record)
    if marks.get("web_stop") and web_code in (0, 1) and not marks.get("exit"):
        return dict(marks["web_stop"])
    return None


def _finish(record: dict[str, Any], now_ms: int, settle_ms: int) -> dict[str, Any] | None:
    marks = record["lifecycle"]["marks"]
    upload, ended = marks.get("upload"), _ended_ok(record)
    if ended and (upload or now_ms >= ended["ms"] + settle_ms):
        return {"evidence": "exit" if ended["event_type"] == 11 else "web_recorder_stopped",
                **ended}
    if upload and not marks.get("exit") and now_ms >= upload["ms"] + settle_ms:
        return {"evidence": "upload", **upload}
    if marks.get("ended") and (upload or record.get("files")):
        return {"evidence": "query", **marks["ended"], "source": "query"}
    return None


def _files(record: dict[str, Any], now_ms: int, settle_ms: int) -> dict[str, Any] | None:
    if not record.get("files"):
        return None  # files_ready names the files: it waits for a name (4, 71, query)
    marks = record["lifecycle"]["marks"]
    upload, exit_mark = marks.get("upload"), marks.get("exit") or marks.get("web_stop")
    if upload and (exit_mark or now_ms >= upload["ms"] + settle_ms):
        return {"evidence": "backuped" if upload["event_type"] == 32 else "uploaded",
                "backup": bool(record["upload"].get("backup_used")), **upload}
    ended = _ended_ok(record)
    # An upload error and no upload report: ``failed`` (upload_failed) says the
    # files were not uploaded; a normal exit alone is no evidence against it.
    if ended and not upload and "upload_error" not in marks \
            and now_ms >= ended["ms"] + settle_ms:
        return {"evidence": "exit", "backup": False, **ended}
    if marks.get("ended") and not upload:
        return {"evidence": "query", "backup": False, **marks["ended"], "source": "query"}
    return None


def _info(mark: dict[str, Any], now_ms: int, **extra: Any) -> dict[str, Any]:
    info = {"at_ms": now_ms, "sequence": mark.get("sequence"),
            "event_type": mark.get("event_type"), "source": mark.get("source") or (
                "events" if mark.get("event_type") is not None else "query")}
    info.update(extra)
    return info


def evaluate(record: dict[str, Any], now_ms: int, *, settle_ms: int,
             stall_ms: int) -> list[str]:
    """Fire the phases due now (in ``ORDER``): each is added to ``fired`` with its
    info and to ``pending`` (its hooks are to be published). Returns their names."""
    lc = lifecycle_of(record)
    fired: dict[str, Any] = lc["fired"]
    marks = lc["marks"]
    new: list[str] = []

    def fire(phase: str, info: dict[str, Any]) -> None:
        fired[phase] = info
        lc["pending"] = [*lc["pending"], phase]
        new.append(phase)

    ended = "finished" in fired or "failed" in fired
    if "started" not in fired and "start" in marks:
        fire("started", _info(marks["start"], now_ms))
    if "files_ready" not in fired:
        files = _files(record, now_ms, settle_ms)
        if files is not None:
            fire("files_ready", _info(files, now_ms, evidence=files["evidence"],
                                      backup=files["backup"],
                                      files=[f["file_name"] for f in record["files"]]))
    if not ended:
        failure = _failure(record, now_ms, settle_ms, stall_ms)
        done = None if failure is not None else _finish(record, now_ms, settle_ms)
        if done is not None:
            fire("finished", _info(done, now_ms, evidence=done["evidence"]))
        elif failure is not None:
            reason, mark = failure
            fire("failed", _info(mark, now_ms, reason=reason))
    ended = "finished" in fired or "failed" in fired
    last = _silence_since(marks)
    if "stalled" not in fired and not ended and "exit" not in marks and last is not None \
            and now_ms >= last + stall_ms:
        fire("stalled", _info(marks.get("last") or {}, now_ms,
                              silent_s=(now_ms - last) // 1000, source="timer"))
        if "failed" not in fired:  # the stalled timer may also be the failure's
            failure = _failure(record, now_ms, settle_ms, stall_ms)
            if failure is not None:
                reason, mark = failure
                fire("failed", _info(mark, now_ms, reason=reason))
    return new


def next_due_ms(record: dict[str, Any], now_ms: int, *, settle_ms: int, stall_ms: int) -> int:
    """When ``evaluate`` may next fire something without a new event, after
    ``now_ms`` (0: never)."""
    lc = lifecycle_of(record)
    fired, marks = lc["fired"], lc["marks"]
    ended = "finished" in fired or "failed" in fired
    due: list[int] = []
    for name in ("exit", "upload", "fatal", "web_stop"):
        mark = marks.get(name)
        if mark and not (ended and "files_ready" in fired):
            due.append(mark["ms"] + settle_ms)
    last = _silence_since(marks)
    if not ended and "exit" not in marks and last is not None:
        due.append(last + (2 * stall_ms if "stalled" in fired else stall_ms))
    due = [d for d in due if d > now_ms]
    return min(due) if due else 0


def reconcile_reasons(record: dict[str, Any], now_ms: int) -> list[str]:
    """Reasons to ask Agora's ``query`` now, each once per recording (recorded)."""
    lc = lifecycle_of(record)
    fired, marks, asked = lc["fired"], lc["marks"], lc["reconcile"]
    ended = "finished" in fired or "failed" in fired
    reasons: list[str] = []
    if "stalled" in fired:
        reasons.append("stalled")
    if "fatal" in marks:
        reasons.append("fatal_error")
    gaps = (record.get("sequences") or {}).get("gaps") or []
    # A gap may have skipped the exit or the upload report: ask when one of them is
    # missing after the other (or the recording ended by a timeout).
    if gaps and not ended and (("exit" in marks) != ("upload" in marks)):
        reasons.append("gap")
    out = [r for r in reasons if r not in asked]
    for r in out:
        asked[r] = now_ms
    return out
