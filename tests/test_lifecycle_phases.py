"""The lifecycle phase rules (``workers.builtin.phases``), pure: simulated
recordings of each kind folded event by event on a clock the test drives."""

from __future__ import annotations

import random
from typing import Any

import pytest

from agora_callbacks.schemas import parse_event
from agora_callbacks.simulate.lifecycles import encode, lifecycle
from agora_callbacks.workers.builtin import phases
from agora_callbacks.workers.builtin.lifecycle import apply_query, fold_change

SETTLE = 30_000
STALL = 300_000
T0 = 1_800_000_000_000


class Run:
    """One recording's record, folded on a test clock; every phase fired, in order."""

    def __init__(self) -> None:
        self.record: dict[str, Any] | None = None
        self.now = T0
        self.fired: list[str] = []
        self.asked: list[str] = []

    def fold(self, envelope: dict[str, Any], *, step: int = 100, late: bool = False,
             gap: Any = None) -> list[str]:
        self.now += step
        event = parse_event(encode(envelope))
        key = f"{event.sid}:{event.event_type}:{event.sequence}"
        changed = fold_change(event, key=key, late=late, gap=gap)(self.record, self.now)
        if changed is None:
            return []
        self.record = changed
        return self._evaluate()

    def tick(self, ms: int) -> list[str]:
        self.now += ms
        return self._evaluate()

    def query(self, facts: dict[str, Any], step: int = 100) -> list[str]:
        self.now += step
        assert self.record is not None
        apply_query(self.record, {"source": "query", "at_ms": self.now, **facts})
        return self._evaluate()

    def _evaluate(self) -> list[str]:
        assert self.record is not None
        new = phases.evaluate(self.record, self.now, settle_ms=SETTLE, stall_ms=STALL)
        self.asked += phases.reconcile_reasons(self.record, self.now)
        self.fired += new
        return new

    def info(self, phase: str) -> dict[str, Any]:
        assert self.record is not None
        info: dict[str, Any] = self.record["lifecycle"]["fired"][phase]
        return info

    def due(self) -> int:
        assert self.record is not None
        return phases.next_due_ms(self.record, self.now, settle_ms=SETTLE, stall_ms=STALL)


def fold_all(events: list[dict[str, Any]], run: Run | None = None) -> Run:
    run = run or Run()
    for envelope in events:
        run.fold(envelope)
    return run


def types(events: list[dict[str, Any]]) -> list[int]:
    return [e["eventType"] for e in events]


@pytest.mark.parametrize("kind", ["individual", "composite", "web"])
@pytest.mark.parametrize("real", [False, True], ids=["page-order", "real-traffic"])
def test_a_normal_recording_starts_has_its_files_and_finishes(kind: Any, real: bool) -> None:
    events = lifecycle(kind, "a" * 32, seed=1, real_traffic=real, minutes=2)
    run = fold_all(events)
    assert run.fired == ["started", "files_ready", "finished"]
    assert run.info("started")["event_type"] == (70 if kind == "web" else 40)
    uploaded = next(e for e in events if e["eventType"] == 31)["payload"]["sequence"]
    files = run.info("files_ready")
    assert files["evidence"] == "uploaded" and files["backup"] is False
    assert files["files"] == [f["file_name"] for f in run.record["files"]]  # type: ignore[index]
    assert files["files"]
    finished = run.info("finished")
    # The end is the exit (11), or for web page recording 71 when it comes first.
    end = 71 if kind == "web" and not real else 11
    assert finished["evidence"] == ("exit" if end == 11 else "web_recorder_stopped")
    assert finished["source"] == "events"
    end_seq = next(e for e in events if e["eventType"] == end)["payload"]["sequence"]
    assert finished["sequence"] == end_seq
    assert run.info("files_ready")["sequence"] == uploaded
    assert run.tick(10 * STALL) == [] and run.due() == 0
    assert run.asked == []


def test_real_traffic_sends_the_exit_before_the_upload_and_file_infos_twice() -> None:
    events = lifecycle("individual", "b" * 32, seed=2, real_traffic=True, with_failover=True)
    kinds = types(events)
    assert kinds.index(11) < kinds.index(31) and kinds[-1] == 31
    assert kinds.count(4) >= 2 * 4  # two users x two tracks, twice, and again after 12
    run = Run()
    fired_at: dict[str, int] = {}
    for envelope in events:
        for phase in run.fold(envelope):
            fired_at[phase] = envelope["eventType"]
    # finished is decided by the upload report that follows the exit, not by the exit.
    assert fired_at == {"started": 40, "files_ready": 31, "finished": 31}
    assert run.fired.count("started") == 1  # 40 again after the failover: no second start


def test_backuped_files_are_ready_with_the_backup_flag() -> None:
    run = fold_all(lifecycle("composite", "c" * 32, seed=3, with_backup=True))
    assert run.fired == ["started", "files_ready", "finished"]
    assert run.info("files_ready")["evidence"] == "backuped"
    assert run.info("files_ready")["backup"] is True


def test_upload_errors_that_end_in_backuped_are_not_a_failure() -> None:
    # with_errors: a non-fatal upload error (47), then 32 backuped and a normal exit.
    run = fold_all(lifecycle("individual", "d" * 32, seed=4, with_errors=True))
    assert run.fired == ["started", "files_ready", "finished"]
    assert run.info("files_ready")["backup"] is True


def test_an_upload_error_whose_backuped_report_was_lost_is_not_files_ready() -> None:
    # An upload error (47), a normal exit, and the 32 that would say where the files
    # went never comes: the recording failed (upload_failed), and nothing may say
    # its files are ready (a normal exit alone is not evidence against the error).
    events = [e for e in lifecycle("individual", "d1" * 16, seed=4, with_errors=True,
                                   real_traffic=True) if e["eventType"] != 32]
    run = fold_all(events)
    assert run.tick(SETTLE) == ["failed"]
    assert run.info("failed")["reason"]["code"] == "upload_failed"
    assert run.fired == ["started", "failed"]
    assert run.tick(10 * STALL) == [] and run.due() == 0


@pytest.mark.parametrize("real", [False, True], ids=["page-order", "real-traffic"])
def test_files_ready_waits_for_file_names_an_upload_report_does_not_give(real: bool) -> None:
    # Web page recording: 31 has no file list, the names come with 71. With the 71
    # late (delivered after the 31 and the exit) files_ready waits for it, and never
    # fires without a file name.
    events = lifecycle("web", "f1" * 16, seed=16, real_traffic=real)
    stop = types(events).index(71)
    run = fold_all(events[:stop] + events[stop + 1:])
    run.tick(10 * STALL)
    assert "files_ready" not in run.fired
    assert "finished" in run.fired
    assert run.fold(events[stop], late=True) == ["files_ready"]
    files = run.info("files_ready")
    assert files["files"] and files["evidence"] == "uploaded"
    assert files["sequence"] == events[-1 if real else -2]["payload"]["sequence"]


def test_web_capability_limit_fails_at_once_and_files_still_come() -> None:
    events = lifecycle("web", "e" * 32, seed=5, with_errors=True)
    run = Run()
    fired_at: dict[str, int] = {}
    for envelope in events:
        for phase in run.fold(envelope):
            fired_at[phase] = envelope["eventType"]
    assert fired_at["failed"] == 72
    reason = run.info("failed")["reason"]
    assert reason["code"] == "web_capability_limit" and reason["limit_type"] is not None
    assert "not support" in reason["meaning"]
    assert run.fired == ["started", "failed", "files_ready"]  # 31 and 11 follow the 72
    assert "finished" not in run.fired
    assert run.asked == ["fatal_error"]  # the fatal 1 from the web module


@pytest.mark.parametrize("exit_status", [1])
def test_an_abnormal_exit_fails_with_its_status(exit_status: int) -> None:
    events = lifecycle("individual", "f" * 32, seed=6)
    events[-1]["payload"]["details"]["exitStatus"] = exit_status
    run = fold_all(events)
    assert run.fired == ["started", "files_ready", "failed"]
    reason = run.info("failed")["reason"]
    assert reason == {"code": "exit_status", "meaning": phases.REASONS["exit_status"],
                      "exit_status": exit_status, "detail": reason["detail"]}
    assert reason["detail"]


@pytest.mark.parametrize("upload", [True, False], ids=["uploaded", "upload-lost"])
def test_an_exit_without_exit_status_counts_as_a_normal_exit(upload: bool) -> None:
    # The parser accepts an 11 without exitStatus; it must still end the recording
    # (it left it neither finished nor failed, with no timer, for good).
    events = [e for e in lifecycle("individual", "e" * 32, seed=6)
              if upload or e["eventType"] != 31]
    assert events[-1]["eventType"] == 11
    del events[-1]["payload"]["details"]["exitStatus"]
    run = fold_all(events)
    if not upload:
        assert run.fired == ["started"]
        assert run.due() == run.now + SETTLE
        run.tick(SETTLE)
    assert run.fired == ["started", "files_ready", "finished"]
    assert run.info("finished")["evidence"] == "exit"
    assert run.due() == 0


def _fatal(seq: int, sid: str, module: int = 2, code: int = 52) -> dict[str, Any]:
    return {"noticeId": f"fatal-{seq}", "productId": 3, "eventType": 1, "notifyMs": T0,
            "payload": {"sid": sid, "cname": "c", "uid": "1", "sequence": seq, "sendts": T0,
                        "serviceType": 0,
                        "details": {"msgName": "cloud_recording_error", "module": module,
                                    "errorLevel": 5, "errorCode": code, "stat": 1,
                                    "errorMsg": "fatal"}}}


def test_a_fatal_error_fails_after_the_settle_window_unless_a_failover_follows() -> None:
    sid = "9" * 32
    events = lifecycle("individual", sid, seed=7, with_failover=True)
    failover_at = types(events).index(12)
    head = events[:failover_at]
    seq = len(events) + 10
    run = fold_all(head)
    assert run.fold(_fatal(seq, sid)) == []
    assert run.asked == ["fatal_error"]
    assert run.due() == run.now + SETTLE
    run.fold(events[failover_at])  # the failover comes within the window: recovered
    assert run.tick(SETTLE + 1) == []
    rest = fold_all(events[failover_at + 1:], run)
    assert rest.fired == ["started", "files_ready", "finished"]

    run = fold_all(head)
    run.fold(_fatal(seq, sid))
    assert run.tick(SETTLE - 200) == []
    assert run.tick(200) == ["failed"]
    assert run.info("failed")["reason"]["code"] == "fatal_error"
    assert run.info("failed")["sequence"] == seq


def test_a_fatal_error_after_a_recovered_failover_fails() -> None:
    # A fatal error, a failover that recovers from it, the recording goes on, then a
    # second fatal error and nothing more: failed (fatal_error, the second one) after
    # the settle window, not "stalled" ten minutes later.
    sid = "9a" * 16
    events = lifecycle("individual", sid, seed=7, with_failover=True)
    failover_at, leave_at = types(events).index(12), types(events).index(41)
    run = fold_all(events[:failover_at])
    run.fold(_fatal(900, sid))
    run.fold(events[failover_at])
    fold_all(events[failover_at + 1:leave_at], run)
    run.fold(_fatal(901, sid))
    assert run.tick(SETTLE) == ["failed"]
    assert run.info("failed")["reason"]["code"] == "fatal_error"
    assert run.info("failed")["sequence"] == 901


def test_a_fatal_upload_error_is_an_upload_failure() -> None:
    sid = "8" * 32
    events = lifecycle("composite", sid, seed=8)
    run = fold_all(events[: types(events).index(41)])
    run.fold(_fatal(999, sid, module=1, code=47))
    assert run.tick(SETTLE) == ["failed"]
    assert run.info("failed")["reason"]["code"] == "upload_failed"


def test_a_fatal_upload_error_after_a_minor_one_is_an_upload_failure() -> None:
    # with_errors: a medium upload error (47) first; then a fatal one from the
    # uploader and nothing more: upload_failed, about the fatal error.
    sid = "8a" * 16
    events = lifecycle("individual", sid, seed=8, with_errors=True)
    run = fold_all(events[: types(events).index(41)])
    assert any(e["error"]["code"] == 47 for e in run.record["errors"])  # type: ignore[index]
    run.fold(_fatal(999, sid, module=1, code=51))
    assert run.tick(SETTLE) == ["failed"]
    reason = run.info("failed")["reason"]
    assert reason["code"] == "upload_failed" and reason["error"]["code"] == 51
    assert run.info("failed")["sequence"] == 999


@pytest.mark.parametrize("lost", [31, 11])
def test_a_lost_exit_or_upload_report_is_waited_for_then_done_without(lost: int) -> None:
    events = [e for e in lifecycle("individual", "7" * 32, seed=9) if e["eventType"] != lost]
    run = fold_all(events)
    assert run.fired == ["started"]
    assert run.due() == run.now + SETTLE  # the last event folded opened the window
    assert run.tick(SETTLE - 1) == []
    fired = run.tick(1)
    assert fired == ["files_ready", "finished"]
    evidence = run.info("finished")["evidence"]
    assert evidence == ("exit" if lost == 31 else "upload")
    assert run.info("files_ready")["evidence"] == ("exit" if lost == 31 else "uploaded")


def test_duplicates_and_reordering_fire_each_phase_once() -> None:
    rng = random.Random(10)
    events = lifecycle("composite", "6" * 32, seed=10, real_traffic=True, with_failover=True)
    order = list(range(len(events)))
    for i in range(0, len(order) - 1, 2):
        if rng.random() < 0.4:
            order[i], order[i + 1] = order[i + 1], order[i]
    order += rng.sample(range(len(events)), 8)  # resends
    run = Run()
    for i in order:
        run.fold(events[i])
    run.tick(SETTLE)
    assert sorted(run.fired) == ["files_ready", "finished", "started"]


def test_silence_is_stalled_then_failed() -> None:
    events = lifecycle("individual", "5" * 32, seed=11)
    run = fold_all(events[: types(events).index(41)])
    assert run.due() == run.now + STALL
    assert run.tick(STALL - 1) == []
    assert run.tick(1) == ["stalled"]
    assert run.asked == ["stalled"]
    assert run.info("stalled")["source"] == "timer"
    assert run.info("stalled")["silent_s"] == STALL // 1000
    assert run.due() == run.now + STALL
    assert run.tick(STALL) == ["failed"]
    assert run.info("failed")["reason"]["code"] == "stalled"
    assert run.due() == 0
    # Events resume and end normally: failed stays the only end.
    for envelope in events[types(events).index(41):]:
        run.fold(envelope)
    run.tick(SETTLE)
    assert run.fired == ["started", "stalled", "failed", "files_ready"]


def test_query_alive_restarts_the_stall_clock_and_ended_decides() -> None:
    events = lifecycle("individual", "4" * 32, seed=12)
    run = fold_all(events[: types(events).index(41)])
    run.tick(STALL - 1000)
    run.query({"outcome": "active", "status": 5, "files": []})
    assert run.tick(2000) == []  # alive 1 s ago: not stalled
    assert run.due() == run.now - 2000 + STALL
    # The session ended and nothing more came: finished from query, files known.
    fired = run.query({"outcome": "ended", "status": None, "files": [
        {"file_name": "extra.mp4", "track_type": "audio_and_video", "uid": "0",
         "mixed_all_user": True, "is_playable": True, "slice_start_time": 1}]})
    assert fired == ["files_ready", "finished"]
    assert run.info("finished")["source"] == "query"
    assert run.info("files_ready")["source"] == "query"
    record = run.record
    assert record is not None and record["query"]["outcome"] == "ended"
    extra = [f for f in record["files"] if f["file_name"] == "extra.mp4"]
    assert extra and extra[0]["source"] == "query"
    assert all("source" not in f for f in record["files"] if f["file_name"] != "extra.mp4")


def test_query_ended_without_exit_upload_or_files_is_a_failure() -> None:
    sid = "3" * 32
    events = [e for e in lifecycle("individual", sid, seed=13)[:3] if e["eventType"] != 4]
    run = fold_all(events)
    assert run.query({"outcome": "ended", "status": None, "files": []}) == ["failed"]
    assert run.info("failed")["reason"]["code"] == "no_exit"
    assert run.info("failed")["source"] == "query"


def test_query_status_20_is_a_service_failure() -> None:
    run = fold_all(lifecycle("web", "2" * 32, seed=14)[:4])
    assert run.query({"outcome": "active", "status": 20, "files": []}) == ["failed"]
    assert run.info("failed")["reason"]["code"] == "service_failed"


def test_a_gap_before_a_missing_end_asks_for_reconciliation() -> None:
    events = [e for e in lifecycle("individual", "1" * 32, seed=15) if e["eventType"] != 31]
    run = Run()
    for envelope in events[:-1]:
        run.fold(envelope)
    run.fold(events[-1], gap=(len(events) - 1, len(events) - 1))  # 31 was skipped
    assert run.asked == ["gap"]
    run.tick(SETTLE)
    assert run.asked == ["gap"]  # once per recording
