"""What the codes in a callback mean, with the reference page's own descriptions.

Every enum member carries ``.description``. Typed event fields hold the member
when the value is documented and the plain value when it is not (Agora adds
codes), so ``describe(value)`` is the way to get a text for any of them.
Members compare equal to their raw values (``ServiceType.UPLOADER == 2``,
``TrackType.AUDIO == "audio"``).
"""

from __future__ import annotations

from enum import Enum, IntEnum, StrEnum

__all__ = [
    "CloudRecordingErrorCode",
    "DescribedInt",
    "DescribedStr",
    "ErrorLevel",
    "EventType",
    "ExitStatus",
    "FinalTranscodeResult",
    "LeaveReason",
    "LimitType",
    "Module",
    "ProductId",
    "RecordingMode",
    "RecordingStatus",
    "ReloadReason",
    "RtmpPublishStatus",
    "ServiceType",
    "StreamState",
    "TrackType",
    "TranscodeResult",
    "UidTranscodeResult",
    "UploadErrorCode",
    "UploadWarningCode",
    "WebRecorderStopCode",
    "decode_leave_code",
    "describe",
    "member_or_value",
]


class DescribedInt(IntEnum):
    """An integer code with a description."""

    description: str

    def __new__(cls, value: int, description: str = "") -> DescribedInt:
        member = int.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member


class DescribedStr(StrEnum):
    """A string code with a description."""

    description: str

    def __new__(cls, value: str, description: str = "") -> DescribedStr:
        member = str.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member


def describe(value: object) -> str | None:
    """The description of an enum member; ``None`` for an undocumented value."""
    if isinstance(value, DescribedInt | DescribedStr):
        return value.description
    return None


class ProductId(DescribedInt):
    RTC = 1, "Real-time communication."
    CLOUD_RECORDING = 3, "Cloud Recording."
    MEDIA_PULL = 4, "Media Pull."
    MEDIA_PUSH = 5, "Media Push."


class EventType(DescribedInt):
    CLOUD_RECORDING_ERROR = 1, "An error occurs during the recording."
    CLOUD_RECORDING_WARNING = 2, "A warning occurs during the recording."
    CLOUD_RECORDING_STATUS_UPDATE = 3, "The status of the Agora Cloud Recording service changes."
    CLOUD_RECORDING_FILE_INFOS = 4, "The M3U8 playlist file is generated."
    SESSION_EXIT = 11, "The cloud recording service has ended its tasks and exited."
    SESSION_FAILOVER = 12, (
        "The cloud recording service has enabled the high availability mechanism.")
    UPLOADER_STARTED = 30, "The upload service starts."
    UPLOADED = 31, (
        "All the recorded files are uploaded to the specified third-party cloud storage.")
    BACKUPED = 32, (
        "All the recorded files are uploaded, but at least one file is uploaded to "
        "Agora Cloud Backup.")
    UPLOADING_PROGRESS = 33, (
        "The progress of uploading the recorded files to the cloud storage.")
    RECORDER_STARTED = 40, "The recording starts."
    RECORDER_LEAVE = 41, "The recording exits."
    RECORDER_SLICE_START = 42, (
        "The recording service syncs the information of the recorded files.")
    RECORDER_AUDIO_STREAM_STATE_CHANGED = 43, "The state of the audio stream changes."
    RECORDER_VIDEO_STREAM_STATE_CHANGED = 44, "The state of the video stream changes."
    RECORDER_SNAPSHOT_FILE = 45, "The screenshot is captured successfully."
    VOD_STARTED = 60, (
        "The uploader for ApsaraVideo for VoD has started and successfully acquired the "
        "upload credential.")
    VOD_TRIGGERED = 61, "All recorded files have been uploaded to ApsaraVideo for VoD."
    WEB_RECORDER_STARTED = 70, "Web page recording starts."
    WEB_RECORDER_STOPPED = 71, "Web page recording stops."
    WEB_RECORDER_CAPABILITY_LIMIT = 72, (
        "The web page to record uses a feature that is unsupported by web page recording. "
        "The recording service will stop immediately.")
    WEB_RECORDER_RELOAD = 73, "The web page reloads."
    TRANSCODER_STARTED = 80, "The transcoding starts."
    TRANSCODER_COMPLETED = 81, "The transcoding completes."
    DOWNLOAD_FAILED = 90, "The recording service fails to download the recorded files."
    RTMP_PUBLISH_STATUS = 100, "The CDN streaming status of the web page recording changes."
    POSTPONE_TRANSCODE_FINAL_RESULT = 1001, "The result of the transcoding."


class ServiceType(DescribedInt):
    CLOUD_RECORDING = 0, "The cloud recording service."
    RECORDER = 1, "The recorder module."
    UPLOADER = 2, "The uploader module."
    EXTENSION = 4, "The extension services."
    WEB_RECORDER = 6, "The web page recording module."
    DOWNLOADER = 8, "The download module."


class Module(DescribedInt):
    """``module`` of events 1 (error) and 2 (warning)."""

    RECORDER = 0, "The recorder."
    UPLOADER = 1, "The uploader."
    CLOUD_RECORDING = 2, "The Agora Cloud Recording Service."
    WEB_RECORDER = 6, "The Agora Web Page Recording Service."


class ErrorLevel(DescribedInt):
    DEBUG = 1, "Debug."
    MINOR = 2, "Minor."
    MEDIUM = 3, "Medium."
    MAJOR = 4, "Major."
    FATAL = 5, (
        "Fatal. A fatal error may cause the recording to exit; call query to check the "
        "current status.")


class UploadErrorCode(DescribedInt):
    """``errorCode`` of event 1 when ``module`` is the uploader."""

    STORAGE_CONFIG = 32, "An error occurs in the configuration of the third-party cloud storage."
    UPLOAD_FAILED = 47, "The recording file upload fails."
    PROCESSING = 51, "An error occurs when the uploader processes the recorded files."


class UploadWarningCode(DescribedInt):
    """``warnCode`` of event 2 when ``module`` is the uploader."""

    REUPLOAD_TO_STORAGE = 31, (
        "The recording service re-uploads the slice file to the specified cloud storage.")
    REUPLOAD_TO_BACKUP = 32, (
        "The recording service re-uploads the slice file to Agora Cloud Backup.")


class CloudRecordingErrorCode(DescribedInt):
    """``errorCode`` of event 1 when ``module`` is the Cloud Recording Service."""

    UPLOAD_TIMEOUT = 50, "A timeout occurs in uploading the recorded files."
    START_TIMEOUT = 52, "A timeout occurs in starting the Cloud Recording Service."


class RecordingStatus(DescribedInt):
    """Status codes of the Cloud Recording service (event 3, and ``query``)."""

    NOT_STARTED = 0, "The recording has not started."
    INITIALIZED = 1, "The initialization is complete."
    RECORDER_STARTING = 2, "The recorder is starting."
    UPLOADER_READY = 3, "The uploader is ready."
    RECORDER_READY = 4, "The recorder is ready."
    FIRST_FILE_UPLOADED = 5, (
        "The first recorded file is uploaded; the status stays 5 while the recording runs.")
    RECORDING_STOPPED = 6, "The recording stops."
    SERVICE_STOPPED = 7, "The Agora Cloud Recording service stops."
    READY_TO_EXIT = 8, "The recording is ready to exit."
    EXITED_ABNORMALLY = 20, "The recording exits abnormally."


class RecordingMode(DescribedInt):
    INDIVIDUAL = 0, "Individual recording mode."
    COMPOSITE = 1, "Composite recording mode."


class ExitStatus(DescribedInt):
    NORMAL = 0, "A normal exit: the recording ended and the recorded files are uploaded."
    ABNORMAL = 1, "An abnormal exit, for example a parameter is incorrectly set."


class LeaveReason(DescribedInt):
    """Bits of event 41's ``leaveCode``; see ``decode_leave_code``."""

    INIT = 0, "LEAVE_CODE_INIT: the initialization fails."
    SIG = 2, "LEAVE_CODE_SIG: the AgoraCoreService process receives the SIGINT signal."
    NO_USERS = 4, (
        "LEAVE_CODE_NO_USERS: the recording server leaves the channel and stops recording "
        "because the channel has no user.")
    TIMER_CATCH = 8, "LEAVE_CODE_TIMER_CATCH: ignore it."
    CLIENT_LEAVE = 16, (
        "LEAVE_CODE_CLIENT_LEAVE: the recording server calls leaveChannel to leave the channel.")


def decode_leave_code(code: int) -> tuple[LeaveReason, ...]:
    """The reasons set in a ``leaveCode`` bitmask, lowest bit first; ``(INIT,)`` for 0.

    Bits the page does not document are not reasons and are left out (the raw code
    stays on the event)."""
    if code == 0:
        return (LeaveReason.INIT,)
    return tuple(reason for reason in LeaveReason if reason and code & reason)


class StreamState(DescribedInt):
    """``state`` of events 43 (audio) and 44 (video)."""

    RECEIVING = 0, "Agora Cloud Recording is receiving the stream."
    NOT_RECEIVING = 1, "Agora Cloud Recording is not receiving the stream."


class WebRecorderStopCode(DescribedInt):
    """``code`` of event 71; ``.message`` is the ``message`` Agora sends with it."""

    message: str

    def __new__(cls, value: int, message: str = "", description: str = "") -> WebRecorderStopCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.message = message
        member.description = description
        return member

    OK = 0, "ok", "Normal, the user stops the recording."
    MAX_RECORDING_HOUR = 1, "max_recording_hour", (
        "The recording time reaches the set maximum recording length (maxRecordingHour).")
    CAPABILITY_LIMIT = 2, "capability_limit", (
        "The web page to be recorded uses an unsupported function.")
    START_ENGINE_FAILED = 3, "start_engine_failed", "The recording engine failed to start."
    PAGE_LOAD_TIMEOUT = 4, "page_load_timeout", "The web page load timed out."
    ACCESS_URL_FAILED = 5, "access_url_failed", (
        "An error occurred when opening the web page to be recorded.")
    # The page prints "recorder_error " with a trailing space: a typo.
    RECORDER_ERROR = 6, "recorder_error", (
        "The web page recording has an error and cannot continue.")


class TrackType(DescribedStr):
    AUDIO = "audio", "Audio file."
    VIDEO = "video", "Video file (no audio)."
    AUDIO_AND_VIDEO = "audio_and_video", "Video file (with audio)."


class LimitType(DescribedStr):
    """``limitType`` of event 72."""

    RESOLUTION = "resolution", (
        "The web page contains a video source whose resolution exceeds 1280 x 720.")
    WEBGL = "WebGL", "The web page uses WebGL."
    BANDWIDTH = "bandwidth", (
        "The upstream bandwidth exceeds 10 M, or the downstream bandwidth exceeds 1 G.")


class ReloadReason(DescribedStr):
    """``reason`` of event 73."""

    AUDIO_SILENCE = "audio_silence", "Audio loss issue."
    PAGE_LOAD_TIMEOUT = "page_load_timeout", "Web page load timeout."


class TranscodeResult(DescribedStr):
    """``result`` of event 81."""

    ALL_SUCCESS = "all_success", "Successfully transcodes all files."
    PARTIAL_SUCCESS = "partial_success", "Fails to transcode some files."
    FAIL = "fail", "The transcoding fails."


class UidTranscodeResult(DescribedStr):
    """``result`` of one entry of event 81's ``uids``."""

    SUCCESS = "success", "Transcoding succeeds."
    FAIL = "fail", "Transcoding fails."


class FinalTranscodeResult(DescribedStr):
    """``result`` of event 1001."""

    TOTAL_SUCCESS = "total_success", "Successfully transcodes all files."
    PARTIAL_SUCCESS = "partial_success", "Fails to transcode some files."
    FAILED = "failed", "The transcoding fails."


class RtmpPublishStatus(DescribedStr):
    """``status`` of event 100 (documented as Number, sent as these strings)."""

    CONNECTING = "connecting", "Connecting to the CDN server."
    PUBLISHING = "publishing", "Pushing the stream to the CDN server."
    ONHOLD = "onhold", "Pause streaming."
    DISCONNECTED = "disconnected", (
        "Failed to connect to the CDN server; Agora recommends changing the CDN address.")


def member_or_value(enum_cls: type[Enum], value: object) -> object:
    """The member of ``enum_cls`` whose value is ``value``, else ``value`` itself."""
    return enum_cls._value2member_map_.get(value, value)
