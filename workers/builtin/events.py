"""What each Cloud Recording event type changes in the record: ``RULES[eventType]``.

Each rule reads the typed ``details`` (snake_case fields from ``schemas``) and
changes the record only through ``agora_callbacks.workers.builtin.record``'s helpers. Event types
without a rule (future ones, 60/61 VoD) still count in ``event_types`` and the
sequence tracking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agora_callbacks.schemas import enums
from agora_callbacks.workers.builtin import meanings
from agora_callbacks.workers.builtin.meanings import coded, plain
from agora_callbacks.workers.builtin.record import (
    NORMAL_EXIT,
    Context,
    add_file_list,
    append_bounded,
    as_int,
    as_str,
    field,
    set_mode,
    set_mode_from_code,
    set_phase,
    set_time,
)

Rule = Callable[[dict[str, Any], Context], None]
ET = enums.EventType


def _uid(ctx: Context) -> str | None:
    return as_str(field(ctx.event, "uid"))


def _web(record: dict[str, Any]) -> dict[str, Any]:
    if record["web"] is None:
        record["web"] = {"started_ms": None, "stop": None, "capability_limit": None,
                         "reloads": [], "rtmp": {}}
    web: dict[str, Any] = record["web"]
    return web


def error(record: dict[str, Any], ctx: Context) -> None:
    module, level, code = ctx.get("module"), ctx.get("error_level"), ctx.get("error_code")
    append_bounded(record, "errors", {
        "sequence": ctx.sequence, "at_ms": ctx.at_ms,
        "module": coded(module, enums.Module), "level": coded(level, enums.ErrorLevel),
        "error": meanings.error_code(module, code), "stat": plain(ctx.get("stat")),
        "message": as_str(ctx.get("error_msg")),
        "fatal": as_int(level) == enums.ErrorLevel.FATAL})


def warning(record: dict[str, Any], ctx: Context) -> None:
    module = ctx.get("module")
    append_bounded(record, "warnings", {
        "sequence": ctx.sequence, "at_ms": ctx.at_ms, "module": coded(module, enums.Module),
        "warning": meanings.warning_code(module, ctx.get("warn_code"))})


def status_update(record: dict[str, Any], ctx: Context) -> None:
    status = ctx.get("status")
    set_mode_from_code(record, ctx.get("recording_mode"))
    add_file_list(record, ctx, ctx.get("file_list"))
    if ctx.current and status is not None:
        record["service_status"] = {**(coded(status, enums.RecordingStatus) or {}),
                                    "sequence": ctx.sequence, "at_ms": ctx.at_ms}
    phase = meanings.phase_of_status(status)
    if phase is not None:
        set_phase(record, ctx, phase)


def file_infos(record: dict[str, Any], ctx: Context) -> None:
    add_file_list(record, ctx, ctx.get("file_list"))


def session_exit(record: dict[str, Any], ctx: Context) -> None:
    status = ctx.get("exit_status")
    record["exit"] = {**(coded(status, enums.ExitStatus) or {"code": None, "meaning": None}),
                      "sequence": ctx.sequence, "at_ms": ctx.at_ms}
    set_time(record, "exited_ms", ctx)
    normal = as_int(status) in NORMAL_EXIT
    set_phase(record, ctx, "exited" if normal else "exited_abnormally")


def failover(record: dict[str, Any], ctx: Context) -> None:
    new_uid = as_str(ctx.get("new_uid"))
    append_bounded(record, "failovers", {"sequence": ctx.sequence, "at_ms": ctx.at_ms,
                                         "old_uid": _uid(ctx), "new_uid": new_uid})
    if ctx.current and new_uid is not None:
        record["uid"] = new_uid
    set_phase(record, ctx, "failing_over")


def uploader_started(record: dict[str, Any], ctx: Context) -> None:
    record["upload"]["started"] = True
    if record["status"]["phase"] == "unknown":
        set_phase(record, ctx, "starting")


def uploaded(backup: bool) -> Rule:
    def rule(record: dict[str, Any], ctx: Context) -> None:
        upload = record["upload"]
        upload["completed"] = True
        upload["backup_used"] = upload["backup_used"] or backup
        upload["status"] = plain(ctx.get("status"))
        add_file_list(record, ctx, ctx.get("file_list"))
        set_phase(record, ctx, "uploaded")
    return rule


def progress(record: dict[str, Any], ctx: Context) -> None:
    value = as_int(ctx.get("progress"))
    upload = record["upload"]
    if value is not None and (upload["progress"] is None or value > upload["progress"]):
        upload["progress"] = value
        upload["percent"] = round(value / 100, 2)


def recorder_started(record: dict[str, Any], ctx: Context) -> None:
    set_time(record, "started_ms", ctx, earliest=True)
    set_phase(record, ctx, "recording")


def recorder_leave(record: dict[str, Any], ctx: Context) -> None:
    code = ctx.get("leave_code")
    append_bounded(record, "leaves", {"code": as_int(code),
                                      "reasons": meanings.leave_reasons(code),
                                      "uid": _uid(ctx), "sequence": ctx.sequence,
                                      "at_ms": ctx.at_ms})
    set_time(record, "stopped_ms", ctx)
    set_phase(record, ctx, "stopped")


def slice_start(record: dict[str, Any], ctx: Context) -> None:
    start, stop = as_int(ctx.get("start_utc_ms")), as_int(ctx.get("discontinue_utc_ms"))
    set_time(record, "slice_started_ms", ctx, earliest=True, value=start)
    if start is not None and stop is not None and stop < start:
        # The recording was interrupted (e.g. a failover) and resumed: the slices
        # between ``stopped_ms`` and ``resumed_ms`` are missing from the files.
        append_bounded(record, "interruptions", {
            "stream_uid": as_str(ctx.get("stream_uid")),
            "track_type": as_str(ctx.get("track_type")), "stopped_ms": stop,
            "resumed_ms": start, "sequence": ctx.sequence})
    mixed = ctx.get("mixed_all_user")
    if isinstance(mixed, bool):
        set_mode(record, "composite" if mixed else "individual")


def stream(kind: str) -> Rule:
    def rule(record: dict[str, Any], ctx: Context) -> None:
        uid = as_str(ctx.get("stream_uid"))
        if uid is None:
            return
        streams = record["streams"]
        entry = streams.get(uid, {}).get(kind)
        if entry is not None and not ctx.current:
            return
        state = ctx.get("state")
        at = as_int(ctx.get("utc_ms"))
        streams.setdefault(uid, {})[kind] = {
            "receiving": as_int(state) == enums.StreamState.RECEIVING,
            "meaning": (coded(state, enums.StreamState) or {}).get("meaning"),
            "at_ms": at if at is not None else ctx.at_ms}
        record["streams"] = dict(sorted(streams.items()))
    return rule


def snapshot(record: dict[str, Any], ctx: Context) -> None:
    name = as_str(ctx.get("file_name"))
    if name is not None and name not in record["snapshots"]:
        # In arrival order: when capped, the oldest screenshots are the ones dropped.
        append_bounded(record, "snapshots", name)


def web_started(record: dict[str, Any], ctx: Context) -> None:
    set_mode(record, "web")
    web = _web(record)
    start = as_int(ctx.get("recorder_start_time"))
    if start is not None and (web["started_ms"] is None or start < web["started_ms"]):
        web["started_ms"] = start
    recorder_started(record, ctx)


def web_stopped(record: dict[str, Any], ctx: Context) -> None:
    set_mode(record, "web")
    stop = meanings.web_stop(ctx.get("code")) or {}
    _web(record)["stop"] = {**stop, "message": as_str(ctx.get("message")),
                            "details": as_str(ctx.get("details")),
                            "sequence": ctx.sequence, "at_ms": ctx.at_ms}
    add_file_list(record, ctx, ctx.get("file_list"))
    set_time(record, "stopped_ms", ctx)
    set_phase(record, ctx, "stopped")


def capability_limit(record: dict[str, Any], ctx: Context) -> None:
    set_mode(record, "web")
    limit = ctx.get("limit_type")
    _web(record)["capability_limit"] = {**(coded(limit, enums.LimitType) or {}),
                                        "sequence": ctx.sequence, "at_ms": ctx.at_ms}


def reload(record: dict[str, Any], ctx: Context) -> None:
    set_mode(record, "web")
    append_bounded(record, "reloads", {
        **(coded(ctx.get("reason"), enums.ReloadReason) or {"code": None, "meaning": None}),
        "sequence": ctx.sequence, "at_ms": ctx.at_ms}, _web(record))


def rtmp(record: dict[str, Any], ctx: Context) -> None:
    set_mode(record, "web")
    url = as_str(ctx.get("rtmp_url")) or ""
    targets = _web(record)["rtmp"]
    if url in targets and not ctx.current:
        return
    targets[url] = {**(coded(ctx.get("status"), enums.RtmpPublishStatus) or {}),
                    "sequence": ctx.sequence, "at_ms": ctx.at_ms}
    _web(record)["rtmp"] = dict(sorted(targets.items()))


def transcoder_started(record: dict[str, Any], ctx: Context) -> None:
    transcoding = record["transcoding"]
    if transcoding["started_ms"] is None:
        transcoding["started_ms"] = ctx.at_ms
    set_phase(record, ctx, "transcoding")


def _names(file_list: Any) -> list[str]:
    names = [as_str(field(item, "file_name")) for item in (file_list or [])]
    return sorted(n for n in names if n)


def transcoder_completed(record: dict[str, Any], ctx: Context) -> None:
    uids = [{"uid": as_str(field(u, "uid")),
             "result": coded(field(u, "result"), enums.UidTranscodeResult),
             "files": _names(field(u, "file_list"))} for u in (ctx.get("uids") or [])]
    record["transcoding"]["completed"] = {
        "result": coded(ctx.get("result"), enums.TranscodeResult), "uids": uids,
        "sequence": ctx.sequence, "at_ms": ctx.at_ms}
    set_phase(record, ctx, "transcoded")


def final_result(record: dict[str, Any], ctx: Context) -> None:
    record["transcoding"]["final"] = {
        "result": coded(ctx.get("result"), enums.FinalTranscodeResult),
        "files": _names(ctx.get("file_list")), "sequence": ctx.sequence, "at_ms": ctx.at_ms}
    set_phase(record, ctx, "transcoded")


def download_failed(record: dict[str, Any], ctx: Context) -> None:
    names = as_str(ctx.get("file_name")) or ""
    append_bounded(record, "download_failures", {
        "files": [n for n in names.split(";") if n], "vendor": plain(ctx.get("vendor")),
        "region": plain(ctx.get("region")), "bucket": as_str(ctx.get("bucket")),
        "sequence": ctx.sequence, "at_ms": ctx.at_ms}, record["transcoding"])


RULES: dict[int, Rule] = {
    int(ET.CLOUD_RECORDING_ERROR): error,
    int(ET.CLOUD_RECORDING_WARNING): warning,
    int(ET.CLOUD_RECORDING_STATUS_UPDATE): status_update,
    int(ET.CLOUD_RECORDING_FILE_INFOS): file_infos,
    int(ET.SESSION_EXIT): session_exit,
    int(ET.SESSION_FAILOVER): failover,
    int(ET.UPLOADER_STARTED): uploader_started,
    int(ET.UPLOADED): uploaded(backup=False),
    int(ET.BACKUPED): uploaded(backup=True),
    int(ET.UPLOADING_PROGRESS): progress,
    int(ET.RECORDER_STARTED): recorder_started,
    int(ET.RECORDER_LEAVE): recorder_leave,
    int(ET.RECORDER_SLICE_START): slice_start,
    int(ET.RECORDER_AUDIO_STREAM_STATE_CHANGED): stream("audio"),
    int(ET.RECORDER_VIDEO_STREAM_STATE_CHANGED): stream("video"),
    int(ET.RECORDER_SNAPSHOT_FILE): snapshot,
    int(ET.WEB_RECORDER_STARTED): web_started,
    int(ET.WEB_RECORDER_STOPPED): web_stopped,
    int(ET.WEB_RECORDER_CAPABILITY_LIMIT): capability_limit,
    int(ET.WEB_RECORDER_RELOAD): reload,
    int(ET.TRANSCODER_STARTED): transcoder_started,
    int(ET.TRANSCODER_COMPLETED): transcoder_completed,
    int(ET.DOWNLOAD_FAILED): download_failed,
    int(ET.RTMP_PUBLISH_STATUS): rtmp,
    int(ET.POSTPONE_TRANSCODE_FINAL_RESULT): final_result,
}
