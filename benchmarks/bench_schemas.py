"""Parse-and-validate throughput of ``schemas.parse_event``, beside ``json.loads``.

A realistic mix of Cloud Recording bodies (the events of a recording's life, in
the proportions one recording produces them: mostly progress and stream-state
events, a few lifecycle events, a file list at the end) is generated once; then,
on the same bodies, in the same run, one process, one core:

- ``json.loads`` alone: the floor, the baseline of the ratios;
- ``parse_event`` (fast path on, as the workers run it);
- ``parse_event`` with marshmallow for every object (``FAST_PATH = False``);
- ``parse_event`` on "loose" bodies (legacy names, numeric strings, int uids),
  which take marshmallow for the objects holding such values.

Each figure is the best of ``--repeat`` passes over all bodies.

Run at full size (about 30 s):   python benchmarks/bench_schemas.py
Quick check on a busy machine:   python benchmarks/bench_schemas.py --events 5000 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import agora_callbacks.schemas.loader
from agora_callbacks.schemas import parse_event

# (eventType, weight in one recording, details factory)
MIX: list[tuple[int, int, Callable[[random.Random], dict[str, Any]]]] = [
    (33, 30, lambda r: {"msgName": "uploading_progress", "progress": r.randint(0, 10000)}),
    (43, 12, lambda r: {"msgName": "recorder_audio_stream_state_changed",
                        "streamUid": str(r.randint(1, 10**6)), "state": r.randint(0, 1),
                        "UtcMs": 1700000000000 + r.randint(0, 10**7)}),
    (44, 12, lambda r: {"msgName": "recorder_video_stream_state_changed",
                        "streamUid": str(r.randint(1, 10**6)), "state": r.randint(0, 1),
                        "UtcMs": 1700000000000 + r.randint(0, 10**7)}),
    (42, 4, lambda r: {"msgName": "recorder_slice_start", "startUtcMs": 1700000000000,
                       "discontinueUtcMs": 1700000000000, "mixedAllUser": True,
                       "streamUid": "0", "trackType": "audio_and_video"}),
    (40, 3, lambda r: {"msgName": "recorder_started", "status": 0}),
    (30, 3, lambda r: {"msgName": "uploader_started", "status": 0}),
    (3, 4, lambda r: {"msgName": "cloud_recording_status_update", "status": r.randint(0, 8),
                      "recordingMode": 1, "fileList": "sid_room.m3u8"}),
    (4, 2, lambda r: {"msgName": "cloud_recording_file_infos", "fileList": "sid_room.m3u8"}),
    (2, 2, lambda r: {"msgName": "cloud_recording_warning", "module": 1, "warnCode": 31}),
    (1, 1, lambda r: {"msgName": "cloud_recording_error", "module": 1, "errorLevel": 4,
                      "errorCode": 47, "stat": 1, "errorMsg": "upload failed"}),
    (41, 3, lambda r: {"msgName": "recorder_leave", "leaveCode": 6}),
    (31, 3, lambda r: {"msgName": "uploaded", "status": 0, "fileList": [
        {"fileName": f"sid_room_{i}.m3u8", "trackType": "audio_and_video", "uid": str(i),
         "mixedAllUser": False, "isPlayable": True, "sliceStartTime": 1700000000000 + i}
        for i in range(r.randint(1, 4))]}),
    (11, 3, lambda r: {"msgName": "session_exit", "exitStatus": 0}),
    (71, 1, lambda r: {"msgName": "web_recorder_stopped", "code": 0, "message": "ok",
                       "details": "stopped by user", "fileList": [
                           {"filename": "web.m3u8", "sliceStartTime": 1700000000000}]}),
    (100, 1, lambda r: {"msgName": "rtmp_publish_status", "rtmpUrl": "rtmp://cdn/app/key",
                        "status": "publishing"}),
]


def make_bodies(count: int, *, loose: bool, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    types = [m for m in MIX]
    weights = [m[1] for m in MIX]
    bodies = []
    for n in range(count):
        event_type, _, details = rng.choices(types, weights)[0]
        sid = uuid.UUID(int=rng.getrandbits(128)).hex
        payload: dict[str, Any] = {
            "cname": f"room-{n % 97}", "uid": str(rng.randint(1, 2**31)), "sid": sid,
            "sequence": n % 500, "sendts": 1700000000000 + n,
            "serviceType": 1, "details": details(rng)}
        body: dict[str, Any] = {
            "noticeId": str(uuid.UUID(int=rng.getrandbits(128))), "productId": 3,
            "eventType": event_type, "notifyMs": 1700000000000 + n, "sid": sid,
            "payload": payload}
        if loose:
            body["notificationId"] = body.pop("noticeId")
            body["eventMs"] = body.pop("notifyMs")
            payload["sequence"] = str(payload["sequence"])
            payload["uid"] = int(payload["uid"])
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


def best_rate(fn: Callable[[bytes], object], bodies: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for body in bodies:
            fn(body)
        best = min(best, time.perf_counter() - start)
    return len(bodies) / best


def parse_marshmallow_only(body: bytes) -> object:
    agora_callbacks.schemas.loader.FAST_PATH = False
    try:
        return parse_event(body)
    finally:
        agora_callbacks.schemas.loader.FAST_PATH = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bodies = make_bodies(args.events, loose=False)
    loose = make_bodies(args.events, loose=True)
    for body in bodies[:200] + loose[:200]:  # the mix is valid and clean
        assert parse_event(body).problems == {}
    mean_size = sum(map(len, bodies)) / len(bodies)
    print(f"{args.events} bodies, mean {mean_size:.0f} bytes, {len(MIX)} event types, "
          f"best of {args.repeat}, one core\n")
    rows = [("json.loads alone (baseline)", best_rate(json.loads, bodies, args.repeat)),
            ("parse_event, fast path (as deployed)", best_rate(parse_event, bodies, args.repeat)),
            ("parse_event, marshmallow for every object",
             best_rate(parse_marshmallow_only, bodies, args.repeat)),
            ("parse_event, loose/legacy bodies", best_rate(parse_event, loose, args.repeat))]
    base = rows[0][1]
    print(f"{'what':<44}{'events/s':>12}{'us/event':>10}{'ratio':>8}")
    for name, rate in rows:
        print(f"{name:<44}{rate:>12,.0f}{1e6 / rate:>10.1f}{rate / base:>8.2f}")
    fast, slow = rows[1][1], rows[2][1]
    print(f"\nfast path speed-up over marshmallow alone: {fast / slow:.1f}x")
    print("for scale: Celery runs about 1.4k no-op tasks/s per 2-core box (DESIGN.md), so "
          f"parsing costs {1.4e3 / fast:.1%} of that budget with the fast path, "
          f"{1.4e3 / slow:.1%} without")


if __name__ == "__main__":
    main()
