"""A typed ``details`` object for every Cloud Recording event of the reference page.

Field names are the documented ones in snake_case (``fileList`` -> ``file_list``,
``UtcMs`` -> ``utc_ms``). Every model keeps unknown keys in ``extra``. A value of
the wrong type is tolerated (see ``schemas.loader``): the field reads ``None``
and ``Event.problems`` says why, because refusing the event would lose a real
notification over a field no key depends on; the raw value stays in
``Event.raw``.

The page's quirks: event 71's example spells ``filename`` where its field list
says ``fileName`` (both read as ``file_name``); event 100's ``status`` is
documented as Number but sent as strings (``"connecting"``...); ``fileList`` is a
string in events 3 and 4 and an array of objects in 31, 32, 71, 81 and 1001.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agora_callbacks.schemas import enums as e
from agora_callbacks.schemas.fields import Bool, Int, Obj, ObjList, Str, StrOrInt, Uid
from agora_callbacks.schemas.loader import Model, spec


@dataclass(frozen=True, slots=True, kw_only=True)
class Details(Model):
    """Base of every details type; also the details of an undocumented event type."""

    msg_name: str | None = spec(Str, "msgName")


GenericDetails = Details


__all__ = [
    "DETAILS_TYPES",
    "AliVodInfo",
    "BackupedDetails",
    "CloudRecordingErrorDetails",
    "CloudRecordingFileInfosDetails",
    "CloudRecordingStatusUpdateDetails",
    "CloudRecordingWarningDetails",
    "Details",
    "DownloadFailedDetails",
    "GenericDetails",
    "Mp4File",
    "PostponeTranscodeFinalResultDetails",
    "RecorderAudioStreamStateChangedDetails",
    "RecorderLeaveDetails",
    "RecorderSliceStartDetails",
    "RecorderSnapshotFileDetails",
    "RecorderStartedDetails",
    "RecorderVideoStreamStateChangedDetails",
    "RtmpPublishStatusDetails",
    "SessionExitDetails",
    "SessionFailoverDetails",
    "TranscoderCompletedDetails",
    "TranscoderStartedDetails",
    "UidTranscode",
    "UploadedDetails",
    "UploadedFile",
    "UploaderStartedDetails",
    "UploadingProgressDetails",
    "VodStartedDetails",
    "VodTriggeredDetails",
    "WebRecordedFile",
    "WebRecorderCapabilityLimitDetails",
    "WebRecorderReloadDetails",
    "WebRecorderStartedDetails",
    "WebRecorderStoppedDetails",
]


# --- items of arrays and nested objects -------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class UploadedFile(Model):
    """One entry of ``fileList`` in events 31 and 32."""

    file_name: str | None = spec(Str, "fileName")
    track_type: e.TrackType | str | None = spec(Str, "trackType", enum=e.TrackType)
    uid: str | None = spec(Uid, "uid")
    mixed_all_user: bool | None = spec(Bool, "mixedAllUser")
    is_playable: bool | None = spec(Bool, "isPlayable")
    slice_start_time: int | None = spec(Int, "sliceStartTime")


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRecordedFile(Model):
    """One entry of ``fileList`` in event 71 (``fileName`` or ``filename``)."""

    file_name: str | None = spec(Str, "fileName", "filename")
    slice_start_time: int | None = spec(Int, "sliceStartTime")


@dataclass(frozen=True, slots=True, kw_only=True)
class Mp4File(Model):
    """One entry of ``fileList`` in events 81 (per uid) and 1001."""

    file_name: str | None = spec(Str, "fileName")


@dataclass(frozen=True, slots=True, kw_only=True)
class UidTranscode(Model):
    """One entry of event 81's ``uids``."""

    uid: str | None = spec(Uid, "uid")
    result: e.UidTranscodeResult | str | None = spec(Str, "result", enum=e.UidTranscodeResult)
    file_list: tuple[Mp4File, ...] | None = spec(ObjList, "fileList", child=Mp4File)


@dataclass(frozen=True, slots=True, kw_only=True)
class AliVodInfo(Model):
    video_id: str | None = spec(Str, "videoId")


# --- one details type per event -------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class CloudRecordingErrorDetails(Details):
    """1 cloud_recording_error."""

    module: e.Module | int | None = spec(Int, "module", enum=e.Module)
    error_level: e.ErrorLevel | int | None = spec(Int, "errorLevel", enum=e.ErrorLevel)
    error_code: int | None = spec(Int, "errorCode")
    stat: int | None = spec(Int, "stat")
    error_msg: str | None = spec(Str, "errorMsg")

    @property
    def error(self) -> e.DescribedInt | int | None:
        """``error_code`` as the enum of its module's table, when the page has one."""
        table: Any = None
        if self.module == e.Module.UPLOADER:
            table = e.UploadErrorCode
        elif self.module == e.Module.CLOUD_RECORDING:
            table = e.CloudRecordingErrorCode
        if table is None or self.error_code is None:
            return self.error_code
        return table._value2member_map_.get(self.error_code, self.error_code)


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudRecordingWarningDetails(Details):
    """2 cloud_recording_warning."""

    module: e.Module | int | None = spec(Int, "module", enum=e.Module)
    warn_code: int | None = spec(Int, "warnCode")

    @property
    def warning(self) -> e.DescribedInt | int | None:
        """``warn_code`` as ``UploadWarningCode`` when the uploader warns."""
        if self.module == e.Module.UPLOADER and self.warn_code is not None:
            return e.UploadWarningCode._value2member_map_.get(  # type: ignore[return-value]
                self.warn_code, self.warn_code)
        return self.warn_code


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudRecordingStatusUpdateDetails(Details):
    """3 cloud_recording_status_update (``fileList`` is a string here)."""

    status: e.RecordingStatus | int | None = spec(Int, "status", enum=e.RecordingStatus)
    recording_mode: e.RecordingMode | int | None = spec(Int, "recordingMode",
                                                        enum=e.RecordingMode)
    file_list: str | None = spec(Str, "fileList")


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudRecordingFileInfosDetails(Details):
    """4 cloud_recording_file_infos (``fileList`` is a string here)."""

    file_list: str | None = spec(Str, "fileList")


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionExitDetails(Details):
    """11 session_exit."""

    exit_status: e.ExitStatus | int | None = spec(Int, "exitStatus", enum=e.ExitStatus)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionFailoverDetails(Details):
    """12 session_failover."""

    new_uid: int | None = spec(Int, "newUid")


@dataclass(frozen=True, slots=True, kw_only=True)
class UploaderStartedDetails(Details):
    """30 uploader_started."""

    status: int | None = spec(Int, "status")


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadedDetails(Details):
    """31 uploaded."""

    status: int | None = spec(Int, "status")
    file_list: tuple[UploadedFile, ...] | None = spec(ObjList, "fileList", child=UploadedFile)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupedDetails(UploadedDetails):
    """32 backuped (same fields as 31)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadingProgressDetails(Details):
    """33 uploading_progress (0 to 10,000)."""

    progress: int | None = spec(Int, "progress")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderStartedDetails(Details):
    """40 recorder_started."""

    status: int | None = spec(Int, "status")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderLeaveDetails(Details):
    """41 recorder_leave."""

    leave_code: int | None = spec(Int, "leaveCode")

    @property
    def leave_reasons(self) -> tuple[e.LeaveReason, ...]:
        """``leave_code`` decoded as a bitmask; empty when there is no code."""
        return () if self.leave_code is None else e.decode_leave_code(self.leave_code)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderSliceStartDetails(Details):
    """42 recorder_slice_start."""

    start_utc_ms: int | None = spec(Int, "startUtcMs")
    discontinue_utc_ms: int | None = spec(Int, "discontinueUtcMs")
    mixed_all_user: bool | None = spec(Bool, "mixedAllUser")
    stream_uid: str | None = spec(Uid, "streamUid")
    track_type: e.TrackType | str | None = spec(Str, "trackType", enum=e.TrackType)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderAudioStreamStateChangedDetails(Details):
    """43 recorder_audio_stream_state_changed."""

    stream_uid: str | None = spec(Uid, "streamUid")
    state: e.StreamState | int | None = spec(Int, "state", enum=e.StreamState)
    utc_ms: int | None = spec(Int, "UtcMs")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderVideoStreamStateChangedDetails(RecorderAudioStreamStateChangedDetails):
    """44 recorder_video_stream_state_changed (same fields as 43)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderSnapshotFileDetails(Details):
    """45 recorder_snapshot_file (``file_name`` is ``<fileNamePrefix>/<file name>``)."""

    file_name: str | None = spec(Str, "fileName")


@dataclass(frozen=True, slots=True, kw_only=True)
class VodStartedDetails(Details):
    """60 vod_started."""

    ali_vod_info: AliVodInfo | None = spec(Obj, "aliVodInfo", child=AliVodInfo)


@dataclass(frozen=True, slots=True, kw_only=True)
class VodTriggeredDetails(Details):
    """61 vod_triggered."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRecorderStartedDetails(Details):
    """70 web_recorder_started."""

    recorder_start_time: int | None = spec(Int, "recorderStartTime")


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRecorderStoppedDetails(Details):
    """71 web_recorder_stopped (its ``details`` is a text)."""

    code: e.WebRecorderStopCode | int | None = spec(Int, "code", enum=e.WebRecorderStopCode)
    message: str | None = spec(Str, "message")
    details: str | None = spec(Str, "details")
    file_list: tuple[WebRecordedFile, ...] | None = spec(ObjList, "fileList",
                                                        child=WebRecordedFile)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRecorderCapabilityLimitDetails(Details):
    """72 web_recorder_capability_limit."""

    limit_type: e.LimitType | str | None = spec(Str, "limitType", enum=e.LimitType)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRecorderReloadDetails(Details):
    """73 web_recorder_reload."""

    reason: e.ReloadReason | str | None = spec(Str, "reason", enum=e.ReloadReason)


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscoderStartedDetails(Details):
    """80 transcoder_started."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscoderCompletedDetails(Details):
    """81 transcoder_completed."""

    result: e.TranscodeResult | str | None = spec(Str, "result", enum=e.TranscodeResult)
    uids: tuple[UidTranscode, ...] | None = spec(ObjList, "uids", child=UidTranscode)


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadFailedDetails(Details):
    """90 download_failed."""

    vendor: int | None = spec(Int, "vendor")
    region: int | None = spec(Int, "region")
    bucket: str | None = spec(Str, "bucket")
    file_name: str | None = spec(Str, "fileName")

    @property
    def file_names(self) -> tuple[str, ...]:
        """``file_name`` split on ``";"``, empty parts left out."""
        return tuple(p for p in (self.file_name or "").split(";") if p)


@dataclass(frozen=True, slots=True, kw_only=True)
class RtmpPublishStatusDetails(Details):
    """100 rtmp_publish_status (``status`` is a string: see the module docstring)."""

    rtmp_url: str | None = spec(Str, "rtmpUrl")
    status: e.RtmpPublishStatus | str | int | None = spec(StrOrInt, "status",
                                                          enum=e.RtmpPublishStatus)


@dataclass(frozen=True, slots=True, kw_only=True)
class PostponeTranscodeFinalResultDetails(Details):
    """1001 postpone_transcode_final_result."""

    result: e.FinalTranscodeResult | str | None = spec(Str, "result",
                                                       enum=e.FinalTranscodeResult)
    file_list: tuple[Mp4File, ...] | None = spec(ObjList, "fileList", child=Mp4File)


#: eventType -> (details type, documented msgName)
DETAILS_TYPES: dict[int, tuple[type[Details], str]] = {
    1: (CloudRecordingErrorDetails, "cloud_recording_error"),
    2: (CloudRecordingWarningDetails, "cloud_recording_warning"),
    3: (CloudRecordingStatusUpdateDetails, "cloud_recording_status_update"),
    4: (CloudRecordingFileInfosDetails, "cloud_recording_file_infos"),
    11: (SessionExitDetails, "session_exit"),
    12: (SessionFailoverDetails, "session_failover"),
    30: (UploaderStartedDetails, "uploader_started"),
    31: (UploadedDetails, "uploaded"),
    32: (BackupedDetails, "backuped"),
    33: (UploadingProgressDetails, "uploading_progress"),
    40: (RecorderStartedDetails, "recorder_started"),
    41: (RecorderLeaveDetails, "recorder_leave"),
    42: (RecorderSliceStartDetails, "recorder_slice_start"),
    43: (RecorderAudioStreamStateChangedDetails, "recorder_audio_stream_state_changed"),
    44: (RecorderVideoStreamStateChangedDetails, "recorder_video_stream_state_changed"),
    45: (RecorderSnapshotFileDetails, "recorder_snapshot_file"),
    60: (VodStartedDetails, "vod_started"),
    61: (VodTriggeredDetails, "vod_triggered"),
    70: (WebRecorderStartedDetails, "web_recorder_started"),
    71: (WebRecorderStoppedDetails, "web_recorder_stopped"),
    72: (WebRecorderCapabilityLimitDetails, "web_recorder_capability_limit"),
    73: (WebRecorderReloadDetails, "web_recorder_reload"),
    80: (TranscoderStartedDetails, "transcoder_started"),
    81: (TranscoderCompletedDetails, "transcoder_completed"),
    90: (DownloadFailedDetails, "download_failed"),
    100: (RtmpPublishStatusDetails, "rtmp_publish_status"),
    1001: (PostponeTranscodeFinalResultDetails, "postpone_transcode_final_result"),
}
