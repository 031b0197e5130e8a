"""Reconciliation with ``query``: answers read, retries decided, the shared rate limit,
the registration, against a real local fake of Agora's REST API (``fake_agora``)."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from typing import Any

import pytest
import redis
from fake_agora import (
    APP_ID,
    BAD_REQUEST_2,
    CUSTOMER_ID,
    CUSTOMER_SECRET,
    NOT_COMPLETED_65,
    NOT_FOUND,
    NOT_FOUND_SESSION,
    PROXY_404,
    TIMEOUT_62,
    FakeAgora,
    Reply,
    credentials,
    ok_json,
    ok_string,
    ok_web,
)

from agora_callbacks import keys
from agora_callbacks.errors import ConfigError
from agora_callbacks.reconcile import observe, policy, registration
from agora_callbacks.reconcile.client import Answer, QueryClient, classify, form_of
from agora_callbacks.reconcile.ratelimit import RateLimiter
from agora_callbacks.settings import Settings

SID = "38f8e3cfdc474cd56fc1ceba380d7e1a"
RID = "JyvK8nXHuV1BE-resource"


def make_client(fake: FakeAgora, client: redis.Redis, **kwargs: Any) -> QueryClient:
    return QueryClient(fake.url, APP_ID, CUSTOMER_ID, CUSTOMER_SECRET,
                       RateLimiter(client, APP_ID), **kwargs)


REG = registration.Registration(sid=SID, resource_id=RID, mode="mix")


# --- settings -------------------------------------------------------------------


def test_reconciliation_is_off_by_default_and_on_with_all_three() -> None:
    assert not Settings.from_env({}).reconcile_enabled
    on = Settings.from_env(credentials("https://api.sd-rtn.com"))
    assert on.reconcile_enabled
    assert Settings.from_env({}).agora_rest_url == "https://api.sd-rtn.com"


@pytest.mark.parametrize("given", [("AGORA_APP_ID",), ("AGORA_APP_ID", "AGORA_CUSTOMER_ID"),
                                   ("AGORA_CUSTOMER_SECRET",)])
def test_a_partial_configuration_is_one_line_naming_what_is_missing(
        given: tuple[str, ...]) -> None:
    env = {name: "s3cret-value" for name in given}
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    message = str(err.value)
    assert "\n" not in message
    missing = [n for n in ("AGORA_APP_ID", "AGORA_CUSTOMER_ID", "AGORA_CUSTOMER_SECRET")
               if n not in given]
    assert message.startswith(" and ".join(missing) + ": not set")
    assert "s3cret-value" not in message  # no value echoed (secrets)


def test_a_bad_rest_url_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^AGORA_REST_URL: "):
        Settings.from_env({"AGORA_REST_URL": "api.sd-rtn.com"})


# --- answers: classification and facts (pure) ------------------------------------


def test_classify_the_documented_answers() -> None:
    assert classify(200, ok_string(SID, RID)).kind == "ok"
    assert classify(404, NOT_FOUND) == Answer("not_found", 404, code=404,
                                              reason="failed to find worker")
    wrong_url = classify(404, {"message": "no Route matched with those values"})
    assert wrong_url.kind == "error" and "wrong URL" in str(wrong_url.reason)
    assert classify(504, TIMEOUT_62) == Answer("retry", 504, code=62, reason="request timeout")
    assert classify(206, NOT_COMPLETED_65).kind == "retry"
    assert classify(429, {"message": "API rate limit exceeded"}).kind == "retry"
    assert classify(500, None).kind == "retry"
    assert classify(200, None).kind == "retry"  # not JSON: a proxy's page, ask again
    assert classify(400, BAD_REQUEST_2) == Answer("error", 400, code=2,
                                                  reason="invalid parameters")
    assert classify(401, {"message": "Invalid authentication credentials"}).kind == "error"


def test_agoras_own_404_is_not_found_whichever_of_its_shapes() -> None:
    # The documented error shape, and the session's answer integrators saw.
    assert classify(404, NOT_FOUND).kind == "not_found"
    seen = classify(404, NOT_FOUND_SESSION)
    assert seen == Answer("not_found", 404, code=404, reason="failed to find worker")


@pytest.mark.parametrize("name", sorted(PROXY_404))
def test_a_404_that_is_not_agoras_is_retried_with_its_reason(name: str) -> None:
    raw, content_type = PROXY_404[name]
    body = json.loads(raw) if content_type == "application/json" else None
    answer = classify(404, body, form=form_of(raw, content_type))
    assert answer.kind == "retry" and answer.http_status == 404
    assert answer.reason is not None and answer.reason.startswith("404 not from Agora (")
    assert "AGORA_REST_URL" in answer.reason
    assert {"html": "text/html", "empty": "empty body",
            "json": "JSON without Agora's code"}[name] in answer.reason


@pytest.mark.parametrize("body", [
    {"code": 404, "message": "Not Found"},  # a generic gateway's JSON
    {"reason": "failed to find worker"},  # no code
    {"code": "404", "reason": "failed to find worker"},  # code not a number
    {"code": True, "reason": "x"},
    [{"code": 404, "reason": "failed to find worker"}],
])
def test_json_without_agoras_shape_is_not_agoras_404(body: object) -> None:
    answer = classify(404, body)
    assert answer.kind == "retry" and answer.code is None


def test_facts_of_file_list_mode_string() -> None:
    facts = observe.active(ok_string(SID, RID, status=5), at_ms=1, reason="stalled",
                           mode="mix")
    assert facts["outcome"] == "active" and facts["source"] == "query"
    assert facts["status"] == 5 and "first recorded file" in facts["status_meaning"]
    assert facts["file_list_mode"] == "string"
    assert facts["files"] == [{"file_name": "x.m3u8", "track_type": None, "uid": None,
                               "mixed_all_user": None, "is_playable": None,
                               "slice_start_time": 1606357122528}]
    assert facts["cname"] == "room" and facts["uid"] == "527841"


def test_facts_of_file_list_mode_json_seconds_become_ms() -> None:
    facts = observe.active(ok_json(SID, RID, status=6), at_ms=1, reason="gap", mode="mix")
    assert facts["file_list_mode"] == "json" and facts["status"] == 6
    names = [f["file_name"] for f in facts["files"]]
    assert names == [f"{SID}_room.m3u8", f"{SID}_room_0.mp4"]
    first = facts["files"][0]
    assert first["track_type"] == "audio_and_video" and first["uid"] == "0"
    assert first["mixed_all_user"] is True and first["is_playable"] is True
    assert first["slice_start_time"] == 1619172632000  # seconds in query, ms here


def test_facts_of_web_page_recording() -> None:
    facts = observe.active(ok_web(SID, RID, state="inProgress", onhold=True), at_ms=1,
                           reason="stalled", mode="web")
    web = facts["web"]
    assert web["state"] == "inProgress" and web["onhold"] is True
    assert [s["service_name"] for s in web["services"]] == ["web_recorder_service",
                                                             "rtmp_publish_service"]
    assert web["services"][1]["outputs"] == [{"rtmp_url": "rtmp://cdn.example/live/x",
                                              "status": "publishing"}]
    assert [f["file_name"] for f in facts["files"]] == [f"{SID}_web.m3u8"]
    assert facts["file_list_mode"] is None


def test_facts_of_the_documented_web_example_verbatim() -> None:
    body = {"cname": "httpClient463224", "uid": "527841", "resourceId": "JyvK8nXHuV1BE.....",
            "sid": "38f8e3c.....", "serverResponse": {"status": 0, "extensionServiceState": [
                {"payload": {"fileList": [{"filename": "xxx.m3u8", "sliceStartTime": 0}],
                             "onhold": True, "state": "inProgress"},
                 "serviceName": "web_recorder_service"}]}}
    facts = observe.active(body, at_ms=1, reason="manual", mode="web")
    assert facts["status"] == 0 and facts["web"]["state"] == "inProgress"
    assert facts["files"][0]["file_name"] == "xxx.m3u8"
    assert facts["files"][0]["slice_start_time"] == 0


def test_facts_tolerate_a_malformed_answer() -> None:
    facts = observe.active({"serverResponse": {"status": "5", "fileList": [{"x": 1}, 3],
                                               "extensionServiceState": "no"}},
                           at_ms=1, reason="manual", mode=None)
    assert facts["status"] == 5 and facts["files"] == [] and facts["web"] is None
    assert observe.active({}, at_ms=1, reason="manual", mode=None)["status"] is None


@pytest.mark.parametrize("bad", ["--5", "\u00b2", "1_0", "+5", "5 5", "9" * 5000])
def test_facts_tolerate_numbers_that_are_not_decimal_integers(bad: str) -> None:
    # str.isdigit() accepts "\u00b2" and "--5".lstrip("-") is "5": int() raises on both,
    # and on more than 4300 digits.
    body = {"serverResponse": {"status": bad, "sliceStartTime": bad, "fileListMode": "json",
                               "fileList": [{"fileName": "a.m3u8", "sliceStartTime": bad}]}}
    facts = observe.active(body, at_ms=1, reason="manual", mode="individual")
    assert facts["status"] is None and facts["slice_start_time"] is None
    assert facts["files"][0]["slice_start_time"] is None


# --- policy (pure) ----------------------------------------------------------------

RULES = policy.Policy(failover_window_s=60, error_budget_s=30, backoff_first_s=1,
                      backoff_max_s=15)


def decide(answer: Answer, progress: policy.Progress, now_ms: int,
           stopped: bool = False) -> policy.Finish | policy.Retry:
    return policy.decide(answer, progress, now_ms=now_ms, stopped=stopped, reason="stalled",
                         mode="mix", policy=RULES)


def test_404_after_the_recording_stopped_is_ended_at_once() -> None:
    step = decide(Answer("not_found", 404, code=404), policy.Progress(started_ms=0), 0,
                  stopped=True)
    assert isinstance(step, policy.Finish) and step.facts["outcome"] == "ended"


def test_404_during_a_failover_is_retried_with_backoff_for_a_minute_then_ended() -> None:
    progress, now, delays = policy.Progress(started_ms=0), 0, []
    while True:
        step = decide(Answer("not_found", 404, code=404), progress, now)
        if isinstance(step, policy.Finish):
            break
        delays.append(step.delay_s)
        progress, now = step.progress, now + int(step.delay_s * 1000)
    assert step.facts["outcome"] == "ended"
    assert "failover window" in step.facts["ended_because"]
    assert delays[:5] == [1, 2, 4, 8, 15] and max(delays) == 15
    assert now == 60_000  # asked once more right at the end of the window


def test_404_then_200_during_a_failover_is_active() -> None:
    step = decide(Answer("not_found", 404), policy.Progress(started_ms=0), 0)
    assert isinstance(step, policy.Retry)
    done = decide(Answer("ok", 200, body=ok_string(SID, RID)), step.progress, 1000)
    assert isinstance(done, policy.Finish) and done.facts["outcome"] == "active"


def test_timeouts_are_retried_within_the_budget_then_an_error() -> None:
    step = decide(Answer("retry", None, reason="timeout"), policy.Progress(started_ms=0), 0)
    assert isinstance(step, policy.Retry) and step.delay_s == 1
    late = decide(Answer("retry", 504, code=62, reason="request timeout"), step.progress,
                  30_000)
    assert isinstance(late, policy.Finish) and late.facts["outcome"] == "error"
    assert late.facts["error"] == {"code": 62, "reason": "request timeout",
                                   "http_status": 504}


def test_a_permanent_error_is_not_retried() -> None:
    step = decide(Answer("error", 401, reason="Invalid authentication credentials"),
                  policy.Progress(started_ms=0), 0)
    assert isinstance(step, policy.Finish) and step.facts["outcome"] == "error"


def test_throttled_waits_outside_every_budget() -> None:
    progress = policy.Progress(started_ms=0, attempts=3, first_not_found_ms=0)
    step = decide(Answer("throttled", None, reason="no slot", retry_after_s=0.7), progress,
                  10**9)
    assert isinstance(step, policy.Retry)
    assert step.delay_s == 0.7 and step.progress == progress


def test_a_slot_wait_before_the_first_call_spends_no_error_budget() -> None:
    # A burst of reconciliations (after an outage): this one waits 70 s for a slot,
    # then its first call times out. It must be asked again, not given up at once.
    throttled = Answer("throttled", None, reason="no slot", retry_after_s=2.0)
    progress, now = policy.Progress(started_ms=0), 0
    while now < 70_000:
        step = decide(throttled, progress, now)
        assert isinstance(step, policy.Retry)
        progress, now = step.progress, now + 2_000
    timeout = Answer("retry", None, reason="timeout")
    step = decide(timeout, progress, now)
    assert isinstance(step, policy.Retry) and step.delay_s == 1
    # Calls that keep failing still end within the budget (30 s in RULES).
    first = now
    while isinstance(step, policy.Retry):
        progress, now = step.progress, now + int(step.delay_s * 1000)
        step = decide(timeout, progress, now)
    assert step.facts["outcome"] == "error" and now - first == 30_000


def test_known_stopped_reads_the_record() -> None:
    assert not policy.known_stopped(None)
    assert not policy.known_stopped({"times": {"stopped_ms": None}, "exit": None})
    assert policy.known_stopped({"exit": {"code": 0}})
    assert policy.known_stopped({"times": {"stopped_ms": 5}})
    assert policy.known_stopped({"lifecycle": {"fired": {"failed": {"at_ms": 1}}}})
    # A recorder that left, then a failover: its replacement may still answer.
    assert not policy.known_stopped({"times": {"stopped_ms": 5},
                                     "failovers": [{"at_ms": 6, "old_uid": "1"}]})
    assert policy.known_stopped({"times": {"stopped_ms": 7},
                                 "failovers": [{"at_ms": 6, "old_uid": "1"}]})


def test_progress_travels_as_json() -> None:
    progress = policy.Progress(started_ms=5, attempts=2, first_not_found_ms=7)
    assert policy.Progress.from_dict(progress.to_dict(), now_ms=99) == progress
    assert policy.Progress.from_dict(None, now_ms=99) == policy.Progress(started_ms=99)


# --- the client against the fake --------------------------------------------------


def test_client_reads_each_answer_of_the_fake(fake: FakeAgora,
                                              redis_client: redis.Redis) -> None:
    query = make_client(fake, redis_client)
    try:
        fake.script(SID, Reply(200, ok_json(SID, RID)), Reply(404, NOT_FOUND),
                    Reply(504, TIMEOUT_62), Reply(400, BAD_REQUEST_2))
        kinds = [query.query(REG).kind for _ in range(4)]
        assert kinds == ["ok", "not_found", "retry", "error"]
        hit = fake.hits_for(SID)[0]
        assert (hit.mode, hit.resource_id) == ("mix", RID)
    finally:
        query.close()


def test_client_wrong_credentials_and_wrong_url_are_errors(fake: FakeAgora,
                                                           redis_client: redis.Redis) -> None:
    bad = QueryClient(fake.url, APP_ID, CUSTOMER_ID, "wrong", RateLimiter(redis_client, APP_ID))
    wrong_url = QueryClient(fake.url + "/nowhere", APP_ID, CUSTOMER_ID, CUSTOMER_SECRET,
                            RateLimiter(redis_client, APP_ID))
    try:
        answer = bad.query(REG)
        assert (answer.kind, answer.http_status) == ("error", 401)
        answer = wrong_url.query(REG)
        assert answer.kind == "error" and "no Route matched" in str(answer.reason)
    finally:
        bad.close()
        wrong_url.close()


@pytest.mark.parametrize("name", sorted(PROXY_404))
def test_a_proxys_404_is_counted_as_retry_not_not_found(fake: FakeAgora,
                                                       redis_client: redis.Redis,
                                                       name: str) -> None:
    # Something that is not Agora answers the query path with a 404 of its own.
    from prometheus_client import REGISTRY

    def count(kind: str) -> float:
        value = REGISTRY.get_sample_value("acb_reconcile_queries_total", {"answer": kind})
        return value or 0.0

    query = make_client(fake, redis_client)
    fake.proxy_404 = name
    try:
        retry, not_found = count("retry"), count("not_found")
        answer = query.query(REG)
        assert (answer.kind, answer.http_status) == ("retry", 404)
        assert str(answer.reason).startswith("404 not from Agora (")
        assert len(fake.hits_for(SID)) == 1
        assert (count("retry"), count("not_found")) == (retry + 1, not_found)
    finally:
        query.close()


def test_a_slow_answer_is_a_timeout_to_retry(fake: FakeAgora,
                                             redis_client: redis.Redis) -> None:
    query = make_client(fake, redis_client, timeout_s=0.3)
    try:
        fake.script(SID, Reply(200, ok_string(SID, RID), delay_s=2.0))
        answer = query.query(REG)
        assert answer == Answer("retry", None, reason="timeout")
    finally:
        query.close()


def test_an_answer_still_arriving_at_the_timeout_is_a_timeout_to_retry(
        fake: FakeAgora, redis_client: redis.Redis) -> None:
    # httpx's timeout bounds each read, not the call: bytes that keep coming, one
    # piece every 0.2 s, held the call for 2 s with a 0.3 s timeout.
    query = make_client(fake, redis_client, timeout_s=0.3)
    try:
        fake.script(SID, Reply(200, ok_string(SID, RID), drip_s=0.2))
        started = time.monotonic()
        answer = query.query(REG)
        assert time.monotonic() - started < 1.0
        assert answer == Answer("retry", None, reason="timeout")
    finally:
        query.close()


def test_an_answer_that_does_not_decode_is_retried(fake: FakeAgora,
                                                   redis_client: redis.Redis) -> None:
    # A body announced as gzip that is not: httpx raises DecodingError, which is no
    # TransportError and escaped the client (the task failed, --reconcile crashed).
    query = make_client(fake, redis_client)
    try:
        fake.script(SID, Reply(200, b"not gzip at all", headers={"Content-Encoding": "gzip"}))
        answer = query.query(REG)
        assert answer.kind == "retry" and answer.http_status == 200
        assert "does not decode" in str(answer.reason)
    finally:
        query.close()


def test_no_slot_is_throttled_and_sends_nothing(fake: FakeAgora,
                                                 redis_client: redis.Redis) -> None:
    query = QueryClient(fake.url, APP_ID, CUSTOMER_ID, CUSTOMER_SECRET,
                        RateLimiter(redis_client, APP_ID, limit=1, window_ms=60_000),
                        rate_wait_s=0.2)
    try:
        fake.script(SID, Reply(200, ok_string(SID, RID)))
        assert query.query(REG).kind == "ok"
        answer = query.query(REG)
        assert answer.kind == "throttled" and answer.retry_after_s is not None
        assert answer.retry_after_s > 50  # the window's remaining wait, plus a spread
        assert len(fake.hits_for(SID)) == 1
    finally:
        query.close()


# --- the rate limit, shared by processes ------------------------------------------


def _hammer(url: str, redis_url: str, sid: str, count: int) -> None:
    client = redis.Redis.from_url(redis_url)
    query = QueryClient(url, APP_ID, CUSTOMER_ID, CUSTOMER_SECRET,
                        RateLimiter(client, APP_ID), rate_wait_s=120)
    try:
        for _ in range(count):
            assert query.query(dataclasses.replace(REG, sid=sid)).kind == "ok"
    finally:
        query.close()


def test_several_processes_never_exceed_ten_requests_per_second(
        fake: FakeAgora, redis_client: redis.Redis, settings: Settings) -> None:
    procs, per_proc = 4, 12
    for n in range(procs):
        fake.script(f"sid{n}", Reply(200, ok_string(f"sid{n}", RID)))
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_hammer, args=(fake.url, settings.redis_url,
                                                     f"sid{n}", per_proc))
               for n in range(procs)]
    started = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    elapsed = time.monotonic() - started
    assert [w.exitcode for w in workers] == [0] * procs
    assert len(fake.hits) == procs * per_proc
    assert fake.max_per_second() <= 10, fake.max_per_second()
    assert fake.max_in_any_second() <= 10, fake.max_in_any_second()
    # The limit is what held them back: 48 calls at 10 per 1.25 s take over 4.5 s.
    assert elapsed > 4.5
    # The limiter's key stays bounded: at most the limit's count of members.
    assert redis_client.zcard(keys.query_rate(APP_ID)) <= 10


def test_limiter_is_per_app_id(redis_client: redis.Redis) -> None:
    a = RateLimiter(redis_client, "app-a", limit=2, window_ms=60_000)
    b = RateLimiter(redis_client, "app-b", limit=2, window_ms=60_000)
    assert [a.try_acquire(), a.try_acquire()] == [0, 0]
    assert a.try_acquire() > 0
    assert b.try_acquire() == 0
    assert 0 < redis_client.pttl(keys.query_rate("app-a")) <= 60_000


# --- registration -----------------------------------------------------------------


def test_registration_is_validated() -> None:
    assert registration.validate(SID, RID, "web").mode == "web"
    for bad, field in [((SID, RID, "composite"), "mode"), ((SID, "", "mix"), "resourceId"),
                       ((SID, "a/b", "mix"), "resourceId"), (("", RID, "mix"), "sid"),
                       ((SID, 5, "mix"), "resourceId")]:
        with pytest.raises(registration.InvalidRegistration, match=field):
            registration.validate(*bad)


@pytest.mark.parametrize("dots", [".", ".."])
def test_a_dot_segment_is_no_identifier(fake: FakeAgora, redis_client: redis.Redis,
                                        dots: str) -> None:
    # quote() leaves dots alone and httpx removes dot segments from the path: a
    # resourceId ".." asked another URL (answered "no Route matched", read as a wrong
    # AGORA_REST_URL) for a registration that was accepted.
    query = make_client(fake, redis_client)
    try:
        answer = query.query(dataclasses.replace(REG, resource_id=dots))
        assert answer.kind == "error" and "wrong URL" in str(answer.reason)
    finally:
        query.close()
    for bad, field in [((SID, dots, "mix"), "resourceId"), ((dots, RID, "mix"), "sid")]:
        with pytest.raises(registration.InvalidRegistration, match=field):
            registration.validate(*bad)


def test_register_recording_stores_it_with_a_ttl(redis_client: redis.Redis) -> None:
    import agora_callbacks

    agora_callbacks.register_recording(SID, RID, "individual", client=redis_client, ttl_s=100)
    assert registration.load(redis_client, SID) == registration.Registration(
        SID, RID, "individual")
    assert 0 < redis_client.ttl(keys.recording_resource(SID)) <= 100
    with pytest.raises(ValueError, match="mode"):
        agora_callbacks.register_recording(SID, RID, "mixed", client=redis_client, ttl_s=100)


def test_register_recording_with_redis_down_is_storage_unavailable(
        redis_client: redis.Redis, redis_server: Any) -> None:
    import agora_callbacks
    from agora_callbacks.errors import StorageUnavailable

    client = redis.Redis.from_url(redis_server.url, socket_timeout=1, socket_connect_timeout=1)
    redis_server.stop()
    with pytest.raises(StorageUnavailable, match=SID):
        agora_callbacks.register_recording(SID, RID, "web", client=client, ttl_s=100)
