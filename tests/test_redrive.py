"""``agora_callbacks.redrive``: a handler or hook dead letter requeued twice (two
operators, a form submitted twice, a stale page) is published once."""

from __future__ import annotations

import threading

import redis
from workers_support import body

from agora_callbacks import deadletters, redrive
from agora_callbacks.settings import Settings
from agora_callbacks.workers.application import DEFAULT_QUEUE


def handler_letter(client: redis.Redis) -> deadletters.DeadLetter:
    entry = deadletters.add(client, 100, kind=deadletters.HANDLER, reason="handler_failed",
                            detail="", body=body("ab" * 16, 3), meta={}, key="k",
                            handler="myapp.on_event", exception="ValueError: boom")
    letter = deadletters.get(client, entry.decode() if isinstance(entry, bytes) else entry)
    assert letter is not None
    return letter


def published(client: redis.Redis) -> int:
    """Task messages waiting on Celery's default queue (the broker is this Redis)."""
    return int(client.llen(DEFAULT_QUEUE))


def test_a_letter_requeued_twice_at_once_is_published_once(
        redis_client: redis.Redis, settings: Settings) -> None:
    letter = handler_letter(redis_client)
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def requeue() -> None:
        start.wait()
        try:
            outcomes.append(redrive.redrive(settings, redis_client, letter))
        except deadletters.RequeuedAlready as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=requeue) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(type(o).__name__ for o in outcomes) == ["RequeuedAlready", "str"]
    assert published(redis_client) == 1
    assert deadletters.get(redis_client, letter.id) is None


def test_a_letter_requeued_again_from_a_stale_page_is_refused(
        redis_client: redis.Redis, settings: Settings) -> None:
    letter = handler_letter(redis_client)
    redrive.redrive(settings, redis_client, letter)
    try:
        redrive.redrive(settings, redis_client, letter)  # the letter as read before
    except deadletters.RequeuedAlready as exc:
        assert str(exc) == f"dead letter {letter.id} was requeued already"
    else:
        raise AssertionError("requeued twice")
    assert published(redis_client) == 1


def test_a_requeue_whose_publish_failed_can_be_tried_again(
        redis_client: redis.Redis, settings: Settings) -> None:
    letter = handler_letter(redis_client)
    broken = Settings.from_env({"REDIS_URL": settings.redis_url,
                                "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
                                "AGORA_NCS_SECRETS": "s"})
    try:
        redrive.redrive(broken, redis_client, letter)
    except deadletters.RequeuedAlready:
        raise AssertionError("the failed attempt must not count") from None
    except Exception:
        pass
    else:
        raise AssertionError("published to a broker that is not there")
    assert deadletters.get(redis_client, letter.id) is not None
    redrive.redrive(settings, redis_client, letter)
    assert published(redis_client) == 1
