"""Reconciliation folds what ``query`` says into the record and fires the phases it
decides: a lost ``uploaded`` event, silent recordings, failovers, the end; the Celery
task deduplicated per sid. Real Redis, the real lifecycle, a local fake of Agora."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from conftest import wait_for
from fake_agora import (
    APP_ID,
    CUSTOMER_ID,
    CUSTOMER_SECRET,
    NOT_FOUND,
    TIMEOUT_62,
    FakeAgora,
    Reply,
    ok_json,
    ok_string,
    ok_web,
)

from agora_callbacks import keys
from agora_callbacks.reconcile import inflight, policy, registration
from agora_callbacks.reconcile.run import NotRegistered, Reconciler, run_blocking
from agora_callbacks.schemas import parse_event
from agora_callbacks.settings import Settings
from agora_callbacks.simulate.lifecycles import encode, lifecycle, new_sid
from agora_callbacks.workers import dedupe_key
from agora_callbacks.workers.builtin import lifecycle as record_lifecycle
from agora_callbacks.workers.builtin import store

RID = "resource-id-1"
FAST = policy.Policy(failover_window_s=1.0, error_budget_s=1.0, backoff_first_s=0.1,
                     backoff_max_s=0.3)


@pytest.fixture
def on(settings: Settings, fake: FakeAgora) -> Settings:
    return dataclasses.replace(settings, agora_app_id=APP_ID, agora_customer_id=CUSTOMER_ID,
                               agora_customer_secret=CUSTOMER_SECRET, agora_rest_url=fake.url)


@pytest.fixture
def reconciler(on: Settings, redis_client: redis.Redis) -> Iterator[Reconciler]:
    worker = Reconciler(on, redis_client, rules=FAST)
    yield worker
    worker.close()


def fold(client: redis.Redis, settings: Settings, envelopes: list[dict[str, Any]]) -> None:
    for envelope in envelopes:
        event = parse_event(encode(envelope))
        record_lifecycle.fold_event(client, settings, str(event.sid), event,
                                    key=dedupe_key(event), late=False, gap=None)


def recording(kind: str, client: redis.Redis, settings: Settings, *,
              keep: Callable[[dict[str, Any]], bool], mode: str) -> str:
    """A recording of ``kind`` whose events ``keep`` accepts were folded, registered."""
    sid = new_sid()
    events = lifecycle(kind, sid, seed=3, minutes=1)  # type: ignore[arg-type]
    fold(client, settings, [e for e in events if keep(e)])
    registration.save(client, registration.Registration(sid, RID, mode), ttl_s=600)
    return sid


def fired(record: dict[str, Any] | None) -> dict[str, Any]:
    assert record is not None
    result: dict[str, Any] = record["lifecycle"]["fired"]
    return result


def test_fills_a_record_whose_uploaded_event_was_lost(
        reconciler: Reconciler, fake: FakeAgora, redis_client: redis.Redis,
        on: Settings) -> None:
    # 31 (uploaded) and 11 (session_exit) were lost: the recording went silent.
    sid = recording("composite", redis_client, on, mode="mix",
                    keep=lambda e: e["eventType"] not in (31, 11))
    before = store.load(redis_client, sid)
    assert before is not None
    assert "finished" not in fired(before) and "files_ready" not in fired(before)
    mp4 = f"{sid}_room_0.mp4"
    fake.script(sid, Reply(200, ok_json(sid, RID, status=7)))

    facts, record = run_blocking(reconciler, sid, "stalled")

    assert facts["outcome"] == "active" and facts["status"] == 7
    assert record is not None and record["query"]["source"] == "query"
    assert record["query"]["reason"] == "stalled"
    files = {f["file_name"]: f for f in record["files"]}
    assert files[mp4]["source"] == "query"
    assert files[mp4]["slice_start_ms"] == 1619172632000
    assert fired(record)["files_ready"]["source"] == "query"
    assert mp4 in fired(record)["files_ready"]["files"]
    assert fired(record)["finished"]["evidence"] == "query"
    assert "failed" not in fired(record)
    stored = store.load(redis_client, sid)
    assert stored == record
    assert redis_client.get(keys.recording_reconcile(sid)) is None  # lease released


def test_turns_a_silent_recording_into_failed_when_query_says_it_exited_abnormally(
        reconciler: Reconciler, fake: FakeAgora, redis_client: redis.Redis,
        on: Settings) -> None:
    sid = recording("individual", redis_client, on, mode="individual",
                    keep=lambda e: e["eventType"] in (30, 40, 43, 44))
    fake.script(sid, Reply(200, ok_string(sid, RID, status=20)))
    facts, record = run_blocking(reconciler, sid, "stalled")
    assert facts["status"] == 20
    assert fired(record)["failed"]["reason"]["code"] == "service_failed"
    assert "finished" not in fired(record)


def test_turns_a_silent_recording_whose_session_ended_into_finished(
        reconciler: Reconciler, fake: FakeAgora, redis_client: redis.Redis,
        on: Settings) -> None:
    sid = recording("web", redis_client, on, mode="web",
                    keep=lambda e: e["eventType"] in (30, 70, 100, 33))
    fake.script(sid, Reply(200, ok_web(sid, RID, status=8, state="exit")))
    facts, record = run_blocking(reconciler, sid, "stalled")
    assert facts["web"]["state"] == "exit"
    assert record is not None and record["query"]["web"]["services"][0]["service_name"] == \
        "web_recorder_service"
    assert f"{sid}_web.m3u8" in {f["file_name"] for f in record["files"]}
    assert fired(record)["finished"]["source"] == "query"


def test_404_during_a_failover_then_200(reconciler: Reconciler, fake: FakeAgora,
                                        redis_client: redis.Redis, on: Settings) -> None:
    sid = recording("composite", redis_client, on, mode="mix",
                    keep=lambda e: e["eventType"] in (30, 40, 43))
    fake.script(sid, Reply(404, NOT_FOUND), Reply(404, NOT_FOUND),
                Reply(200, ok_string(sid, RID, status=5)))
    retries: list[policy.Retry] = []
    facts, record = run_blocking(reconciler, sid, "stalled", on_retry=retries.append)
    assert len(fake.hits_for(sid)) == 3 and len(retries) == 2
    assert facts["outcome"] == "active" and facts["status"] == 5
    assert record is not None and "failed" not in fired(record)
    assert record["lifecycle"]["marks"]["alive"]["ms"] == facts["at_ms"]


def test_404_for_the_whole_failover_window_without_an_exit_is_the_end(
        reconciler: Reconciler, fake: FakeAgora, redis_client: redis.Redis,
        on: Settings) -> None:
    sid = recording("individual", redis_client, on, mode="individual",
                    keep=lambda e: e["eventType"] in (30, 40))
    fake.script(sid, Reply(404, NOT_FOUND))
    facts, record = run_blocking(reconciler, sid, "stalled")
    assert facts["outcome"] == "ended" and "failover window" in facts["ended_because"]
    assert len(fake.hits_for(sid)) >= 3  # asked again through the window
    assert fired(record)["failed"]["reason"]["code"] == "no_exit"


def test_404_after_the_end_is_read_at_once(reconciler: Reconciler, fake: FakeAgora,
                                           redis_client: redis.Redis, on: Settings) -> None:
    # The exit (11) was folded: the recording is known to have stopped.
    sid = recording("composite", redis_client, on, mode="mix",
                    keep=lambda e: e["eventType"] != 31)
    fake.script(sid, Reply(404, NOT_FOUND))
    facts, record = run_blocking(reconciler, sid, "gap")
    assert facts["outcome"] == "ended" and "stopped" in facts["ended_because"]
    assert len(fake.hits_for(sid)) == 1
    assert record is not None and record["query"]["outcome"] == "ended"


def test_errors_are_retried_then_kept_as_an_error(reconciler: Reconciler, fake: FakeAgora,
                                                  redis_client: redis.Redis,
                                                  on: Settings) -> None:
    sid = recording("composite", redis_client, on, mode="mix",
                    keep=lambda e: e["eventType"] in (30, 40))
    fake.script(sid, Reply(504, TIMEOUT_62))
    facts, record = run_blocking(reconciler, sid, "fatal_error")
    assert facts["outcome"] == "error"
    assert facts["error"] == {"code": 62, "reason": "request timeout", "http_status": 504}
    assert len(fake.hits_for(sid)) >= 2
    assert record is not None and record["query"]["error"]["code"] == 62
    assert "finished" not in fired(record) and "failed" not in fired(record)


@pytest.mark.parametrize("name", ["html", "empty", "json"])
def test_a_proxys_404_is_an_error_not_the_end(reconciler: Reconciler, fake: FakeAgora,
                                              redis_client: redis.Redis, on: Settings,
                                              name: str) -> None:
    # As in the failover-window test above, a recording that went silent with no exit:
    # Agora's 404 for the whole window ends it (failed, no_exit). A 404 from something
    # else in front of Agora (or a wrong AGORA_REST_URL) says nothing about it.
    sid = recording("individual", redis_client, on, mode="individual",
                    keep=lambda e: e["eventType"] in (30, 40))
    before = store.load(redis_client, sid)
    assert before is not None
    fake.proxy_404 = name
    retries: list[policy.Retry] = []
    facts, record = run_blocking(reconciler, sid, "stalled", on_retry=retries.append)
    assert facts["outcome"] == "error"
    assert facts["error"]["http_status"] == 404
    assert str(facts["error"]["reason"]).startswith("404 not from Agora (")
    assert retries and all(r.why.startswith("404 not from Agora (") for r in retries)
    assert len(fake.hits_for(sid)) >= 2  # asked again, as other errors are
    assert record is not None
    assert fired(record) == fired(before)  # no phase fired: neither finished nor failed
    assert record["status"] == before["status"]
    assert "ended" not in record["lifecycle"]["marks"]
    assert record["query"]["outcome"] == "error"


def test_unregistered_and_in_flight_are_refused(reconciler: Reconciler, fake: FakeAgora,
                                                redis_client: redis.Redis) -> None:
    sid = new_sid()
    with pytest.raises(NotRegistered, match="POST /recordings/<sid>/resource"):
        run_blocking(reconciler, sid, "manual")
    registration.save(redis_client, registration.Registration(sid, RID, "mix"), ttl_s=60)
    assert inflight.claim(redis_client, sid, "someone-else")
    with pytest.raises(RuntimeError, match="already in flight"):
        run_blocking(reconciler, sid, "manual")
    assert fake.hits_for(sid) == []


def test_a_request_during_a_manual_reconciliation_of_the_sid_starts_nothing(
        reconciler: Reconciler, fake: FakeAgora, redis_client: redis.Redis,
        on: Settings) -> None:
    from agora_callbacks.reconcile import requests

    sid = recording("composite", redis_client, on, mode="mix",
                    keep=lambda e: e["eventType"] in (30, 40))
    fake.script(sid, Reply(404, NOT_FOUND), Reply(200, ok_string(sid, RID, status=5)))
    answers: list[bool] = []

    def meanwhile(step: policy.Retry) -> None:
        holder = inflight.holder(redis_client, sid)
        answers.append(requests.request(sid, "stalled"))
        assert inflight.holder(redis_client, sid) == holder

    run_blocking(reconciler, sid, "manual", on_retry=meanwhile)
    assert answers == [False]
    assert len(fake.hits_for(sid)) == 2


# --- the Celery task, in a real worker --------------------------------------------


@pytest.fixture
def reconcile_runtime(on: Settings) -> Iterator[Settings]:
    """This process's runtime with reconciliation on (``request`` reads it); after the
    Celery app, whose creation configures the runtime from the environment."""
    import agora_callbacks.reconcile.task  # noqa: F401
    from agora_callbacks.workers import runtime

    runtime.configure(on)
    yield on
    runtime.configure(Settings.from_env())


@pytest.mark.slow
def test_request_runs_one_task_per_sid_in_a_worker(
        start_worker: Any, reconcile_runtime: Settings, fake: FakeAgora,
        redis_client: redis.Redis) -> None:
    from agora_callbacks import reconcile

    on = reconcile_runtime
    start_worker("reconcile", env={
        "AGORA_APP_ID": APP_ID, "AGORA_CUSTOMER_ID": CUSTOMER_ID,
        "AGORA_CUSTOMER_SECRET": CUSTOMER_SECRET, "AGORA_REST_URL": on.agora_rest_url})
    # Still recording when it went silent (no 41 recorder_leave, 31, 11).
    sid = recording("composite", redis_client, on, mode="mix",
                    keep=lambda e: e["eventType"] not in (41, 31, 11))
    # A 404 first (a failover): the task retries with a countdown (1 s backoff).
    fake.script(sid, Reply(404, NOT_FOUND), Reply(200, ok_json(sid, RID, status=7)))
    assert reconcile.request(sid, "stalled") is True
    assert reconcile.request(sid, "gap") is False  # one in flight per sid

    def reconciled() -> dict[str, Any] | None:
        record = store.load(redis_client, sid)
        return record if record and record.get("query") else None

    record = wait_for(reconciled, timeout=60, message="the query facts in the record")
    assert isinstance(record, dict)
    assert record["query"]["outcome"] == "active" and record["query"]["reason"] == "stalled"
    assert fired(record)["finished"]["evidence"] == "query"
    assert len(fake.hits_for(sid)) == 2
    wait_for(lambda: redis_client.get(keys.recording_reconcile(sid)) is None, timeout=10,
             message="the in-flight lease released")
    # Not registered: nothing is started.
    assert reconcile.request(new_sid(), "stalled") is False


@pytest.mark.slow
def test_several_workers_never_exceed_the_rate_limit(
        start_worker: Any, reconcile_runtime: Settings, fake: FakeAgora,
        redis_client: redis.Redis) -> None:
    from agora_callbacks import reconcile

    env = {"AGORA_APP_ID": APP_ID, "AGORA_CUSTOMER_ID": CUSTOMER_ID,
           "AGORA_CUSTOMER_SECRET": CUSTOMER_SECRET,
           "AGORA_REST_URL": reconcile_runtime.agora_rest_url}
    start_worker("rate-a", concurrency=3, env=env)
    start_worker("rate-b", concurrency=3, env=env)
    sids = [new_sid() for _ in range(30)]
    for sid in sids:
        registration.save(redis_client, registration.Registration(sid, RID, "mix"), ttl_s=600)
        fake.script(sid, Reply(200, ok_string(sid, RID, status=5)))
    assert all(reconcile.request(sid, "stalled") for sid in sids)

    def all_reconciled() -> bool:
        return all((store.load(redis_client, sid) or {}).get("query") for sid in sids)

    wait_for(all_reconciled, timeout=120, message="30 recordings reconciled")
    assert len(fake.hits) == 30
    # Six pool processes in two workers: Agora never sees more than 10 in a second.
    assert fake.max_per_second() <= 10, fake.max_per_second()
    assert fake.max_in_any_second() <= 10, fake.max_in_any_second()
    arrivals = sorted(hit.at for hit in fake.hits)
    assert arrivals[-1] - arrivals[0] >= 2.0  # 30 calls at 10 per 1.25 s: 2.5 s at least


@pytest.mark.slow
def test_a_recording_gone_silent_is_reconciled_through_the_stall_path(
        start_worker: Any, on: Settings, fake: FakeAgora, redis_client: redis.Redis) -> None:
    """The whole path: no event for STALL_AFTER_S -> the worker's lifecycle sweep fires
    ``stalled`` -> ``request`` -> the task calls the fake -> ``finished`` from query."""
    # failed (reason stalled) would follow at twice STALL_AFTER_S: room for the answer.
    quick = dataclasses.replace(on, stall_after_s=5, settle_s=1)
    start_worker("stall", env={
        "AGORA_APP_ID": APP_ID, "AGORA_CUSTOMER_ID": CUSTOMER_ID,
        "AGORA_CUSTOMER_SECRET": CUSTOMER_SECRET, "AGORA_REST_URL": on.agora_rest_url,
        "STALL_AFTER_S": "5", "SETTLE_S": "1"})
    # Recording, then silence: 41, 31 and 11 never come.
    sid = recording("composite", redis_client, quick, mode="mix",
                    keep=lambda e: e["eventType"] not in (41, 31, 11))
    fake.script(sid, Reply(200, ok_json(sid, RID, status=7)))

    def finished() -> dict[str, Any] | None:
        record = store.load(redis_client, sid)
        return record if record and "finished" in fired(record) else None

    record = wait_for(finished, timeout=60, message="finished from the stall path")
    assert isinstance(record, dict)
    assert "stalled" in fired(record)
    assert record["query"]["reason"] == "stalled"
    assert fired(record)["finished"]["evidence"] == "query"
    assert f"{sid}_room_0.mp4" in {f["file_name"] for f in record["files"]}
    assert len(fake.hits_for(sid)) == 1
