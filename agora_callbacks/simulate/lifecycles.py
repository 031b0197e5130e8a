"""Realistic Cloud Recording callback lifecycles, generated deterministically.

``lifecycle(kind, sid, ...)`` returns the full NCS envelopes (``noticeId``,
``productId`` 3, ``eventType``, ``notifyMs``, ``payload``) that one recording
produces, in the order Agora's reference page implies, with ``payload.sequence``
running 0..n-1. Every field the reference documents for each event type is
filled with a plausible value. The same arguments (``seed`` and ``start_ms``
included) always give the same list, so tests can rely on it.

What each kind produces (``with_*`` options add to it):

- ``individual`` (two users, audio and video recorded separately):
  30 uploader_started, 40 recorder_started, 43/44 stream states per user,
  42 recorder_slice_start per file, 4 cloud_recording_file_infos per file,
  33 uploading_progress once a minute, a video mute/unmute (44), 43/44 as the
  users leave, 41 recorder_leave, 33 at 10000, 31 uploaded (file list, one
  entry per user and track), 11 session_exit.
- ``composite``: the same with ``streamUid``/``uid`` ``"0"``, one mixed
  ``audio_and_video`` stream, and an MP4 besides the M3U8 in 31 uploaded.
- ``web``: 30 uploader_started, 70 web_recorder_started, 100 rtmp_publish_status
  (connecting, publishing), 33 uploading_progress, 73 web_recorder_reload,
  100 (disconnected), 71 web_recorder_stopped with its file list (one entry
  spelled ``filename``, the quirk in Agora's own example), 31 uploaded (no file
  list, as documented for web recordings), 11 session_exit.

Options:

- ``with_errors``: individual/composite get 2 cloud_recording_warning (uploader
  re-upload), 3 cloud_recording_status_update (a ``start`` call that did not
  match the running state), 1 cloud_recording_error (upload failure) and end
  with 32 backuped instead of 31 uploaded. Web gets a reload on page load timeout,
  72 web_recorder_capability_limit, a fatal 1 cloud_recording_error from the web
  module, 71 with code 2 ``capability_limit`` and an abnormal exit (11 with
  ``exitStatus`` 1).
- ``with_failover``: mid-recording, 12 session_failover with a ``newUid``; every
  later event carries that uid, and the recorder starts again (40, or 70 for web;
  42 with ``discontinueUtcMs`` before ``startUtcMs``).
- ``real_traffic``: what captured traffic does that the page does not say: every
  4 cloud_recording_file_infos comes twice (a second notification, its own
  sequence); after a failover (``with_failover``) the recorder under its new uid
  sends its stream states and file infos again; and the recording ends
  41, 11 session_exit, a last 43, 33 at 10000, then 31 uploaded (or 32): the
  exit comes before the upload report (web: 71, 11, 33, 31).
- ``with_backup``: the upload ends with 32 backuped (some files went to Agora
  Cloud Backup, uploaded to your storage later) instead of 31, without errors.
- ``with_transcoding`` (individual only): postponed transcoding after the upload,
  80 transcoder_started, 81 transcoder_completed and 1001
  postpone_transcode_final_result (with ``with_errors``: 90 download_failed and
  partial results).

Times: ``start_ms`` is the ``sendts`` of the first event. When it is ``None`` the
recording is placed so that its last notification is sent "now": the events are
recent, as a receiver's stale-replay check expects of live traffic.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any, Literal

Kind = Literal["individual", "composite", "web"]
KINDS: tuple[Kind, ...] = ("individual", "composite", "web")

#: Cloud Recording product id in the NCS envelope.
PRODUCT_ID = 3

#: eventType -> (msgName, serviceType), from the reference page.
EVENT_TYPES: dict[int, tuple[str, int]] = {
    1: ("cloud_recording_error", 0),
    2: ("cloud_recording_warning", 0),
    3: ("cloud_recording_status_update", 0),
    4: ("cloud_recording_file_infos", 0),
    11: ("session_exit", 0),
    12: ("session_failover", 0),
    30: ("uploader_started", 2),
    31: ("uploaded", 2),
    32: ("backuped", 2),
    33: ("uploading_progress", 2),
    40: ("recorder_started", 1),
    41: ("recorder_leave", 1),
    42: ("recorder_slice_start", 1),
    43: ("recorder_audio_stream_state_changed", 1),
    44: ("recorder_video_stream_state_changed", 1),
    45: ("recorder_snapshot_file", 1),
    60: ("vod_started", 4),
    61: ("vod_triggered", 4),
    70: ("web_recorder_started", 6),
    71: ("web_recorder_stopped", 6),
    72: ("web_recorder_capability_limit", 6),
    73: ("web_recorder_reload", 6),
    80: ("transcoder_started", 0),
    81: ("transcoder_completed", 0),
    90: ("download_failed", 8),
    100: ("rtmp_publish_status", 6),
    1001: ("postpone_transcode_final_result", 0),
}

#: leaveCode bits (41 recorder_leave).
LEAVE_CODE_SIG = 2
LEAVE_CODE_NO_USERS = 4
LEAVE_CODE_CLIENT_LEAVE = 16


def new_sid(rng: random.Random | None = None) -> str:
    """A recording id shaped like Agora's: 32 lowercase hex characters."""
    r = rng or random.Random()
    return f"{r.getrandbits(128):032x}"


def encode(envelope: dict[str, Any]) -> bytes:
    """The request body of one envelope: compact UTF-8 JSON, as NCS sends it."""
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class _Builder:
    """Accumulates one recording's envelopes; time is a cursor in ms from the start."""

    def __init__(self, sid: str, cname: str, uid: str, rng: random.Random, base_ms: int,
                 top_level_sid: bool) -> None:
        self.sid = sid
        self.cname = cname
        self.uid = uid
        self.rng = rng
        self.base_ms = base_ms
        self.top_level_sid = top_level_sid
        self.now = 0
        self.progress = 0
        self.events: list[dict[str, Any]] = []

    def at(self) -> int:
        """Absolute unix ms of the cursor."""
        return self.base_ms + self.now

    def advance(self, low: int, high: int | None = None) -> int:
        self.now += low if high is None else self.rng.randint(low, high)
        return self.at()

    def emit(self, event_type: int, **fields: Any) -> dict[str, Any]:
        msg_name, service_type = EVENT_TYPES[event_type]
        sendts = self.at()
        details: dict[str, Any] = {"msgName": msg_name, **fields}
        payload: dict[str, Any] = {
            "cname": self.cname,
            "uid": self.uid,
            "sid": self.sid,
            "sequence": len(self.events),
            "sendts": sendts,
            "serviceType": service_type,
            "details": details,
        }
        envelope: dict[str, Any] = {
            "noticeId": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "productId": PRODUCT_ID,
            "eventType": event_type,
            "notifyMs": sendts + self.rng.randint(3, 150),
            "payload": payload,
        }
        if self.top_level_sid:
            envelope["sid"] = self.sid
        self.events.append(envelope)
        return envelope


def _user_uids(rng: random.Random, n: int) -> list[str]:
    return [str(rng.randint(10000, 99999)) for _ in range(n)]


def _progress_ticks(b: _Builder, minutes: int) -> None:
    """33 uploading_progress once a minute, ever increasing, below 10000 until the end."""
    for _ in range(minutes):
        b.advance(59_000, 61_000)
        b.progress = min(9_900, b.progress + b.rng.randint(200, 900))
        b.emit(33, progress=b.progress)


def _failover(b: _Builder, *, web: bool) -> int:
    """12 session_failover then the recorder restarting under the new uid.

    Returns the unix ms at which the last slice before the failover stopped."""
    last_slice_stop = b.advance(1_000, 20_000)
    new_uid = b.rng.randint(100_000_000, 4_294_967_295)
    b.advance(5_000, 60_000)
    b.emit(12, newUid=new_uid)
    b.uid = str(new_uid)
    b.advance(2_000, 30_000)
    if web:
        b.emit(70, recorderStartTime=b.at())
    else:
        b.emit(40, status=0)
    return last_slice_stop


def _channel(b: _Builder, kind: Kind, *, with_errors: bool, with_failover: bool,
             with_transcoding: bool, minutes: int, real_traffic: bool = False,
             with_backup: bool = False) -> None:
    """Individual or composite recording of a channel."""
    rng = b.rng
    composite = kind == "composite"
    users = ["0"] if composite else _user_uids(rng, 2)
    tracks = ["audio_and_video"] if composite else ["audio", "video"]
    mode = 1 if composite else 0

    def m3u8(uid: str, track: str) -> str:
        if composite:
            return f"{b.sid}_{b.cname}.m3u8"
        return f"{b.sid}_{b.cname}__uid_s_{uid}__uid_e_{track}.m3u8"

    b.emit(30, status=0)
    b.advance(200, 900)
    b.emit(40, status=0)
    b.advance(300, 1_500)
    for uid in users:
        b.emit(43, streamUid=uid, state=0, UtcMs=b.at())
        b.advance(5, 80)
        b.emit(44, streamUid=uid, state=0, UtcMs=b.at())
        b.advance(5, 80)
    slice_start: dict[tuple[str, str], int] = {}
    for uid in users:
        for track in tracks:
            b.advance(100, 600)
            slice_start[(uid, track)] = b.at()
            b.emit(42, startUtcMs=b.at(), discontinueUtcMs=b.at(), mixedAllUser=composite,
                   streamUid=uid, trackType=track)
    b.advance(10_000, 15_000)  # the first HLS segments are written and uploaded
    for uid in users:
        for track in tracks:
            b.emit(4, fileList=m3u8(uid, track))
            b.advance(20, 400)
            if real_traffic:  # event 4 comes twice in captured traffic
                b.emit(4, fileList=m3u8(uid, track))
                b.advance(20, 400)

    first_half = max(1, minutes // 2)
    _progress_ticks(b, first_half)
    if with_errors:
        b.advance(1_000, 9_000)
        b.emit(2, module=1, warnCode=31)
        b.advance(500, 5_000)
        b.emit(3, status=5, recordingMode=mode, fileList=m3u8(users[0], tracks[0]))
        b.advance(1_000, 9_000)
        b.emit(1, module=1, errorLevel=3, errorCode=47, stat=0,
               errorMsg="upload to the third-party cloud storage failed, using Agora backup")
    if not composite:
        muted = users[-1]
        b.advance(2_000, 20_000)
        b.emit(44, streamUid=muted, state=1, UtcMs=b.at())
        b.advance(5_000, 30_000)
        b.emit(44, streamUid=muted, state=0, UtcMs=b.at())
    if with_failover:
        stopped = _failover(b, web=False)
        if real_traffic:  # the new recorder sends again what the old one had sent
            for uid in users:
                b.emit(43, streamUid=uid, state=0, UtcMs=b.at())
                b.advance(5, 80)
                b.emit(44, streamUid=uid, state=0, UtcMs=b.at())
                b.advance(5, 80)
        for uid in users:
            for track in tracks:
                b.advance(100, 600)
                b.emit(42, startUtcMs=b.at(), discontinueUtcMs=stopped,
                       mixedAllUser=composite, streamUid=uid, trackType=track)
        if real_traffic:
            for uid in users:
                for track in tracks:
                    b.emit(4, fileList=m3u8(uid, track))
                    b.advance(20, 400)
    _progress_ticks(b, max(1, minutes - first_half))

    b.advance(1_000, 30_000)
    for uid in users:
        b.emit(43, streamUid=uid, state=1, UtcMs=b.at())
        b.advance(5, 80)
        b.emit(44, streamUid=uid, state=1, UtcMs=b.at())
        b.advance(5, 80)
    b.advance(200, 2_000)
    leave_code = (LEAVE_CODE_SIG | LEAVE_CODE_NO_USERS) if rng.random() < 0.3 \
        else LEAVE_CODE_CLIENT_LEAVE
    b.emit(41, leaveCode=leave_code)
    if real_traffic:  # captured: ..., 41, 11, 43, 31: the exit before the upload report
        b.advance(500, 3_000)
        b.emit(11, exitStatus=0)
        b.advance(5, 80)
        b.emit(43, streamUid=users[0], state=1, UtcMs=b.at())
    b.advance(1_000, 8_000)
    b.emit(33, progress=10_000)

    files: list[dict[str, Any]] = []
    if composite:
        files.append({"fileName": f"{b.sid}_{b.cname}_0.mp4", "trackType": "audio_and_video",
                      "uid": "0", "mixedAllUser": True, "isPlayable": True,
                      "sliceStartTime": slice_start[("0", "audio_and_video")]})
    for uid in users:
        for track in tracks:
            files.append({"fileName": m3u8(uid, track), "trackType": track, "uid": uid,
                          "mixedAllUser": composite, "isPlayable": True,
                          "sliceStartTime": slice_start[(uid, track)]})
    b.advance(500, 3_000)
    b.emit(32 if with_errors or with_backup else 31, status=0, fileList=files)

    if with_transcoding and not composite:
        b.advance(2_000, 10_000)
        b.emit(80)
        b.advance(30_000, 120_000)
        mp4s = {uid: f"{b.sid}_{b.cname}__uid_s_{uid}__uid_e_av.mp4" for uid in users}
        failed = users[-1] if with_errors else None
        if failed is not None:
            b.emit(90, vendor=1, region=0, bucket="recordings",
                   fileName=f"{m3u8(failed, 'audio')};{m3u8(failed, 'video')}")
            b.advance(1_000, 5_000)
        b.emit(81, result="partial_success" if failed else "all_success",
               uids=[{"uid": uid, "result": "fail" if uid == failed else "success",
                      "fileList": [] if uid == failed else [{"fileName": mp4s[uid]}]}
                     for uid in users])
        b.advance(500, 3_000)
        b.emit(1001, result="partial_success" if failed else "total_success",
               fileList=[{"fileName": mp4s[uid]} for uid in users if uid != failed])

    if not real_traffic:
        b.advance(500, 3_000)
        b.emit(11, exitStatus=0)


def _web(b: _Builder, *, with_errors: bool, with_failover: bool, minutes: int,
         real_traffic: bool = False, with_backup: bool = False) -> None:
    """Web page recording, pushed to a CDN as well."""
    rng = b.rng
    rtmp_url = f"rtmp://live.example.com/app/{b.cname}"
    b.emit(30, status=0)
    b.advance(500, 2_000)
    started = b.at()
    b.emit(70, recorderStartTime=started)
    b.advance(200, 1_000)
    b.emit(100, rtmpUrl=rtmp_url, status="connecting")
    b.advance(300, 2_000)
    b.emit(100, rtmpUrl=rtmp_url, status="publishing")
    first_half = max(1, minutes // 2)
    _progress_ticks(b, first_half)
    b.advance(2_000, 20_000)
    b.emit(73, reason="page_load_timeout" if with_errors else "audio_silence")
    if with_failover:
        _failover(b, web=True)
        b.advance(200, 1_000)
        b.emit(100, rtmpUrl=rtmp_url, status="publishing")
        if real_traffic:  # sent again by the new recorder
            b.advance(50, 300)
            b.emit(100, rtmpUrl=rtmp_url, status="publishing")
    if with_errors:
        b.advance(1_000, 10_000)
        b.emit(72, limitType=rng.choice(["WebGL", "resolution", "bandwidth"]))
        b.advance(50, 500)
        b.emit(1, module=6, errorLevel=5, errorCode=2, stat=1,
               errorMsg="the web page uses a feature web page recording does not support")
    else:
        _progress_ticks(b, max(1, minutes - first_half))
    b.advance(500, 5_000)
    b.emit(100, rtmpUrl=rtmp_url, status="disconnected")
    b.advance(200, 2_000)
    if with_errors:
        code, message, detail = 2, "capability_limit", "the page uses WebGL"
    else:
        code, message, detail = 0, "ok", "stop by user"
    b.emit(71, code=code, message=message, details=detail, fileList=[
        {"fileName": f"{b.sid}_{b.cname}.m3u8", "sliceStartTime": started},
        {"filename": f"{b.sid}_{b.cname}_0.mp4", "sliceStartTime": started},
    ])
    if real_traffic:
        b.advance(500, 3_000)
        b.emit(11, exitStatus=1 if with_errors else 0)
    b.advance(1_000, 6_000)
    b.emit(33, progress=10_000)
    b.advance(500, 3_000)
    b.emit(32 if with_backup else 31, status=0)
    if not real_traffic:
        b.advance(500, 3_000)
        b.emit(11, exitStatus=1 if with_errors else 0)


def lifecycle(
    kind: Kind,
    sid: str,
    *,
    cname: str | None = None,
    uid: str | None = None,
    start_ms: int | None = None,
    seed: int | str = 0,
    with_errors: bool = False,
    with_failover: bool = False,
    with_transcoding: bool = False,
    minutes: int | None = None,
    real_traffic: bool = False,
    with_backup: bool = False,
) -> list[dict[str, Any]]:
    """Every NCS envelope of one recording, in sending order, ``sequence`` 0..n-1.

    ``kind``: ``individual``, ``composite`` or ``web``. ``cname`` and ``uid`` (the
    recording client's uid) are drawn from ``seed`` unless given; ``minutes`` is
    how long the recording runs (1-4, drawn from the seed by default). See the
    module docstring for the events of each kind and option.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")

    def build(base_ms: int) -> list[dict[str, Any]]:
        rng = random.Random(f"{seed}:{kind}:{sid}")
        name = cname or f"room-{rng.randint(1000, 9999)}"
        rec_uid = uid or str(rng.randint(100_000, 999_999))
        top_level_sid = rng.random() < 0.5
        length = minutes if minutes is not None else rng.randint(1, 4)
        b = _Builder(sid, name, rec_uid, rng, base_ms, top_level_sid)
        if kind == "web":
            _web(b, with_errors=with_errors, with_failover=with_failover, minutes=length,
                 real_traffic=real_traffic, with_backup=with_backup)
        else:
            _channel(b, kind, with_errors=with_errors, with_failover=with_failover,
                     with_transcoding=with_transcoding, minutes=length,
                     real_traffic=real_traffic, with_backup=with_backup)
        return b.events

    if start_ms is not None:
        return build(start_ms)
    # Place the recording so that its last notification is sent now.
    span = max(e["notifyMs"] for e in build(0))
    return build(int(time.time() * 1000) - span)


def mixed_kinds(count: int, seed: int | str = 0) -> list[Kind]:
    """``count`` kinds cycling through individual, composite and web in a seeded order."""
    rng = random.Random(f"{seed}:kinds")
    order: list[Kind] = list(KINDS)
    rng.shuffle(order)
    return [order[i % len(order)] for i in range(count)]


def describe(event: dict[str, Any]) -> str:
    """One short line for an envelope: ``seq 3 ev 42 recorder_slice_start``."""
    payload = event.get("payload", {})
    return f"seq {payload.get('sequence')} ev {event.get('eventType')} " \
           f"{payload.get('details', {}).get('msgName', '')}"

