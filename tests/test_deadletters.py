"""``agora_callbacks.deadletters``: the recording a letter names, and reading the
newest letters that match, a bounded number at a time."""

from __future__ import annotations

import json

import redis
from workers_support import body

from agora_callbacks import deadletters

SID = "5ca1ab1e" * 4


def add(client: redis.Redis, raw: bytes, kind: str = deadletters.BODY, **extra: object) -> str:
    entry = deadletters.add(client, 1000, kind=kind, reason="invalid", detail="", body=raw,
                            meta={}, extra=extra or None)
    return entry.decode() if isinstance(entry, bytes) else str(entry)


def test_the_sid_of_a_letter(redis_client: redis.Redis) -> None:
    top_level = json.dumps({"sid": "top", "payload": {"sequence": 1}}).encode()
    both = json.dumps({"sid": "top", "payload": {"sid": "inner"}}).encode()
    ids = [add(redis_client, body(SID, 4)), add(redis_client, top_level),
           add(redis_client, both), add(redis_client, b"\xff not json"),
           add(redis_client, b"[1, 2]"),
           add(redis_client, b"{}", kind=deadletters.HOOK, sid=SID, phase="files_ready")]
    got = [letter.sid for letter in deadletters.list_(redis_client, 10)]
    assert got == [SID, "top", "inner", "", "", SID]
    assert len(ids) == len(got)


def test_newest_reads_newest_first_and_says_where_to_go_on(redis_client: redis.Redis) -> None:
    ids = [add(redis_client, body(SID if n % 3 == 0 else "other", n)) for n in range(12)]
    mine = [i for n, i in enumerate(ids) if n % 3 == 0][::-1]  # newest first

    def is_mine(letter: deadletters.DeadLetter) -> bool:
        return letter.sid == SID

    first, go_on = deadletters.newest(redis_client, is_mine, 3)
    assert [letter.id for letter in first] == mine[:3]
    assert go_on == mine[2]
    rest, end = deadletters.newest(redis_client, is_mine, 3, before=go_on)
    assert [letter.id for letter in rest] == mine[3:]
    assert end == ""


def test_newest_reads_at_most_scan_limit_letters(redis_client: redis.Redis) -> None:
    ids = [add(redis_client, body(SID if n in (0, 1) else "other", n)) for n in range(10)]

    def is_mine(letter: deadletters.DeadLetter) -> bool:
        return letter.sid == SID

    # The two matches are the oldest: a scan of 4 finds none and says where it stopped.
    found, go_on = deadletters.newest(redis_client, is_mine, 5, scan_limit=4)
    assert found == [] and go_on == ids[6]
    found, go_on = deadletters.newest(redis_client, is_mine, 5, before=go_on, scan_limit=4)
    assert found == [] and go_on == ids[2]
    found, go_on = deadletters.newest(redis_client, is_mine, 5, before=go_on, scan_limit=4)
    assert [letter.id for letter in found] == [ids[1], ids[0]] and go_on == ""
