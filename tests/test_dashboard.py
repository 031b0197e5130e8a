"""The dashboard at ``/ui/`` through Flask's test client: closed without ADMIN_TOKEN,
sign-in, session cookie, refusals without the session or the CSRF token, and what
each page shows (issue 13). The browser tests are in ``test_dashboard_browser.py``."""

from __future__ import annotations

import base64
import dataclasses
import json
import re

import pytest
import redis
from dashboard_support import TOKEN, csrf_of, sign_in, simulate
from flask.testing import FlaskClient
from structlog.testing import capture_logs

from agora_callbacks import deadletters, keys, recordings_index, recordings_query
from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.ingress.app import create_app
from agora_callbacks.settings import Settings
from agora_callbacks.simulate.lifecycles import encode, lifecycle
from agora_callbacks.workers import hook_runs
from agora_callbacks.workers.application import DEFAULT_QUEUE
from agora_callbacks.workers.builtin import store
from agora_callbacks.workers.builtin.record import new_record
from agora_callbacks.workers.ordering import Failure

SID = "5e1d0a4f9c2b4b8e8f0a1b2c3d4e5f60"
PAGES = ["/ui/", "/ui/health", "/ui/deadletters", f"/ui/recordings/{SID}",
         "/ui/deadletters/1-0"]
FORMS = ["/ui/logout", "/ui/deadletters/requeue"]


def http_for(settings: Settings, token: str | None = TOKEN, **overrides: object) -> FlaskClient:
    return create_app(dataclasses.replace(settings, admin_token=token,
                                          **overrides)).test_client()


@pytest.fixture
def http(settings: Settings, redis_client: redis.Redis) -> FlaskClient:
    return http_for(settings)


def test_closed_without_admin_token(settings: Settings, redis_client: redis.Redis) -> None:
    http = http_for(settings, None)
    for path in [*PAGES, "/ui/login", "/ui/static/dashboard.css"]:
        assert http.get(path).status_code == 404, path
    for path in [*FORMS, "/ui/login"]:
        assert http.post(path, data={"token": ""}).status_code == 404, path


def test_every_page_refuses_a_request_without_the_session(http: FlaskClient) -> None:
    for path in PAGES:
        answer = http.get(path)
        assert answer.status_code == 302, path
        assert answer.headers["Location"].startswith("/ui/login"), path
        assert "<table" not in answer.get_data(as_text=True)
    for path in FORMS:
        assert http.post(path, data={"id": "1-0", "confirm": "yes"}).status_code == 403, path


def test_sign_in_needs_the_right_token_and_the_csrf_token(http: FlaskClient) -> None:
    csrf = csrf_of(http.get("/ui/login").get_data(as_text=True))
    assert http.post("/ui/login", data={"token": TOKEN}).status_code == 400
    assert http.post("/ui/login", data={"token": TOKEN, "csrf_token": "forged"}).status_code == 400
    assert http.post("/ui/login", data={"token": "wrong", "csrf_token": csrf}).status_code == 401
    assert http.get("/ui/").status_code == 302
    answer = http.post("/ui/login", data={"token": TOKEN, "csrf_token": csrf,
                                          "next": "//elsewhere.example/ui/"})
    assert answer.status_code == 302 and answer.headers["Location"] == "/ui/"  # not elsewhere
    assert http.get("/ui/").status_code == 200
    # A sign-in from a page's redirect goes back to that page.
    again = http_for_same_app(http)
    first = again.get(f"/ui/recordings/{SID}")
    csrf = csrf_of(again.get(first.headers["Location"]).get_data(as_text=True))
    back = again.post("/ui/login", data={"token": TOKEN, "csrf_token": csrf,
                                         "next": f"/ui/recordings/{SID}"})
    assert back.headers["Location"] == f"/ui/recordings/{SID}"


def http_for_same_app(http: FlaskClient) -> FlaskClient:
    """Another browser on the same app (no cookies)."""
    return http.application.test_client()


def test_pages_answer_503_while_redis_is_away(http: FlaskClient,
                                              redis_server: ServerProcess) -> None:
    sign_in(http)
    redis_server.stop()
    for path in ["/ui/", f"/ui/recordings/{SID}", "/ui/deadletters", "/ui/health"]:
        answer = http.get(path)
        assert answer.status_code == 503, path


def test_session_cookie_attributes(settings: Settings, redis_client: redis.Redis) -> None:
    http = http_for(settings)
    sign_in(http)
    cookie = http.get_cookie("acb_ui", path="/ui")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Strict"
    assert not cookie.secure
    # Over HTTPS (or behind a trusted proxy saying so): Secure.
    https = http_for(settings)
    https.get("/ui/login", base_url="https://localhost")
    assert https.get_cookie("acb_ui", path="/ui").secure  # type: ignore[union-attr]
    proxied = http_for(settings, trusted_proxy_hops=1)
    proxied.get("/ui/login", headers={"X-Forwarded-Proto": "https"})
    assert proxied.get_cookie("acb_ui", path="/ui").secure  # type: ignore[union-attr]
    # X-Forwarded-Proto from an untrusted client is not believed.
    untrusted = http_for(settings)
    untrusted.get("/ui/login", headers={"X-Forwarded-Proto": "https"})
    assert not untrusted.get_cookie("acb_ui", path="/ui").secure  # type: ignore[union-attr]


def test_the_ncs_endpoint_gets_no_session_cookie(http: FlaskClient) -> None:
    sign_in(http)
    answer = http.post("/agora/ncs", data=b"{}")
    assert "Set-Cookie" not in answer.headers


def test_a_cookie_signed_with_another_token_is_refused(settings: Settings,
                                                        redis_client: redis.Redis) -> None:
    http = http_for(settings)
    sign_in(http)
    cookie = http.get_cookie("acb_ui", path="/ui")
    assert cookie is not None
    other = http_for(settings, "another-token")
    other.set_cookie("acb_ui", cookie.value, path="/ui")
    assert other.get("/ui/").status_code == 302


def test_forms_refuse_a_missing_or_wrong_csrf_token(http: FlaskClient,
                                                     redis_client: redis.Redis) -> None:
    csrf = sign_in(http)
    letter = deadletters.add(redis_client, 100, kind="body", reason="invalid", detail="",
                             body=b"x", meta={}).decode()
    for path in FORMS:
        for data in ({"id": letter, "confirm": "yes"},
                     {"id": letter, "confirm": "yes", "csrf_token": csrf + "x"}):
            assert http.post(path, data=data).status_code == 400, (path, data)
    assert deadletters.count(redis_client) == 1  # nothing requeued
    assert http.get("/ui/").status_code == 200  # still signed in
    assert http.post("/ui/logout", data={"csrf_token": csrf}).status_code == 302
    assert http.get("/ui/").status_code == 302


def test_recordings_list_filters_and_meanings(http: FlaskClient,
                                              redis_client: redis.Redis) -> None:
    simulate(redis_client, SID, "individual", skip=(3,), cname="room-a")
    simulate(redis_client, "b" * 32, "web", with_errors=True, cname="room-b")
    simulate(redis_client, "c" * 32, "composite", cname="room-a")
    sign_in(http)

    def sids(query: str = "") -> list[str]:
        html = http.get(f"/ui/{query}").get_data(as_text=True)
        return re.findall(r'href="/ui/recordings/([0-9a-f]+)"', html)

    assert sids() == ["c" * 32, "b" * 32, SID]  # newest update first
    html = http.get("/ui/").get_data(as_text=True)
    assert "The recording service ended its tasks and exited normally." in html
    assert ">web<" in html and ">composite<" in html and ">individual<" in html
    assert sids("?flag=gaps") == [SID]
    assert sids("?flag=errors") == ["b" * 32]
    assert sids("?channel=room-a") == ["c" * 32, SID]
    assert sids("?status=exited_abnormally") == ["b" * 32]
    assert sids("?status=exited&channel=room-a&flag=gaps") == [SID]
    assert sids(f"?sid={SID[:6]}") == [SID]
    assert sids("?sid=ffff") == []


def test_paging_walks_every_record_once_even_with_equal_scores(
        http: FlaskClient, redis_client: redis.Redis) -> None:
    pipe = redis_client.pipeline()
    for i in range(130):
        record = new_record(f"{i:032x}")
        # 3 updates per millisecond: pages must split ties without losing any.
        recordings_index.queue_update(pipe, f"{i:032x}", record, 3600,
                                      now_ms=1_900_000_000_000 + i // 3)
    pipe.execute()
    found = recordings_query.page(redis_client, recordings_query.Filters(), ttl_s=3600,
                                  size=50, now_ms=1_900_000_000_100)
    seen = [r["sid"] for r in found.rows]
    while found.next_cursor:
        found = recordings_query.page(redis_client, recordings_query.Filters(), ttl_s=3600,
                                      size=50, cursor=found.next_cursor,
                                      now_ms=1_900_000_000_100)
        seen += [r["sid"] for r in found.rows]
    assert len(seen) == 130 and set(seen) == {f"{i:032x}" for i in range(130)}
    assert found.total == 130
    # Through the pages too: each "older" link carries the cursor.
    sign_in(http)
    url: str | None = "/ui/"
    listed: list[str] = []
    while url:
        html = http.get(url).get_data(as_text=True)
        listed += re.findall(r'href="/ui/recordings/([0-9a-f]+)"', html)
        older = re.search(r'id="older" href="([^"]+)"', html)
        url = older.group(1).replace("&amp;", "&") if older else None
    assert sorted(listed) == sorted(seen)


def test_index_follows_the_record_and_forgets_it_past_retention(
        redis_client: redis.Redis) -> None:
    record = new_record(SID)
    record["cname"] = "room-z"
    store.save(redis_client, SID, record, 3600)
    assert redis_client.zscore(recordings_index.phase_index("unknown"), SID) is not None
    record["status"] = {"phase": "recording", "meaning": "m"}
    record["errors"] = [{"fatal": False}]
    store.save(redis_client, SID, record, 3600)
    assert redis_client.zscore(recordings_index.phase_index("unknown"), SID) is None
    assert redis_client.zscore(recordings_index.phase_index("recording"), SID) is not None
    assert redis_client.zscore(recordings_index.flag_index("errors"), SID) is not None
    assert redis_client.ttl(recordings_index.channel_index("room-z")) > 0
    # An hour and a bit later, the index forgets it (and lists nothing meanwhile).
    later = int(redis_client.zscore(recordings_index.ALL, SID) or 0) + 3_601_000
    empty = recordings_query.page(redis_client, recordings_query.Filters(), ttl_s=3600,
                                  now_ms=later)
    assert empty.rows == [] and empty.total == 0
    assert recordings_index.prune(redis_client, 3600, now_ms=later) == 1
    for key in (recordings_index.ALL, keys.DASHBOARD_SIDS,
                recordings_index.phase_index("recording"),
                recordings_index.flag_index("errors")):
        assert redis_client.zscore(key, SID) is None, key


def test_recording_page_shows_timeline_gap_files_and_meanings(
        http: FlaskClient, redis_client: redis.Redis) -> None:
    envelopes = simulate(redis_client, SID, "individual", skip=(4, 5), late=(9,),
                         with_errors=True, with_failover=True)
    sign_in(http)
    html = http.get(f"/ui/recordings/{SID}").get_data(as_text=True)
    shown = [int(s) for s in re.findall(r'data-seq="(\d+)"', html)]
    expected = [e["payload"]["sequence"] for e in envelopes
                if e["payload"]["sequence"] not in (4, 5)]
    assert shown == sorted(expected)
    assert 'data-gap="4-5"' in html
    assert html.index('data-gap="4-5"') < html.index('data-seq="6"')
    assert html.index('data-seq="3"') < html.index('data-gap="4-5"')
    assert "agora_callbacks.recording_state: <b>done</b> in 1.5 ms" in html
    assert 'class="event late"' in html
    assert "The recording starts." in html  # event 40's meaning
    assert ".m3u8" in html and "audio" in html  # files with their track
    assert "Failovers" in html and "→" in html
    assert http.get("/ui/recordings/unknown").status_code == 404


def test_deadletter_requeue_asks_then_requeues(http: FlaskClient,
                                               redis_client: redis.Redis) -> None:
    body = encode(lifecycle("web", SID, seed=1)[0])
    letter = deadletters.add(redis_client, 100, kind="body", reason="stale", detail="old",
                             body=body, meta={"received_ms": 1}).decode()
    other = deadletters.add(redis_client, 100, kind="body", reason="invalid", detail="",
                            body=b"not json", meta={}).decode()
    csrf = sign_in(http)
    listing = http.get("/ui/deadletters?reason=stale").get_data(as_text=True)
    assert letter in listing and other not in listing and SID in listing
    assert SID in http.get(f"/ui/deadletters?sid={SID[:8]}").get_data(as_text=True)
    full = http.get(f"/ui/deadletters/{letter}").get_data(as_text=True)
    assert json.loads(body)["noticeId"] in full
    ask = http.post("/ui/deadletters/requeue", data={"id": letter, "csrf_token": csrf})
    assert ask.status_code == 200 and "Yes, requeue" in ask.get_data(as_text=True)
    assert deadletters.count(redis_client) == 2  # asking changes nothing
    done = http.post("/ui/deadletters/requeue",
                     data={"id": letter, "confirm": "yes", "csrf_token": csrf},
                     follow_redirects=True)
    assert "Requeued 1 of 1." in done.get_data(as_text=True)
    assert deadletters.get(redis_client, letter) is None
    assert deadletters.get(redis_client, other) is not None
    (_, fields), = redis_client.xrange(keys.INBOX)
    assert fields[b"body"] == body


def test_a_handler_letter_being_requeued_elsewhere_is_not_published_again(
        http: FlaskClient, redis_client: redis.Redis) -> None:
    letter = deadletters.add(redis_client, 100, kind="handler", reason="handler_failed",
                             detail="", body=encode(lifecycle("web", SID, seed=1)[0]),
                             meta={}, key="k", handler="myapp.on_event").decode()
    redis_client.set(keys.requeue_claim(letter), "1")  # another requeue is publishing it
    csrf = sign_in(http)
    done = http.post("/ui/deadletters/requeue",
                     data={"id": letter, "confirm": "yes", "csrf_token": csrf},
                     follow_redirects=True)
    page = done.get_data(as_text=True)
    assert done.status_code == 200
    assert "Requeued 0 of 1." in page
    assert f"{letter}: requeued already (by another request)." in page
    assert redis_client.llen(DEFAULT_QUEUE) == 0
    assert deadletters.get(redis_client, letter) is not None


def test_a_hook_deadletter_shows_its_recording_and_phase_and_requeues_its_hook(
        http: FlaskClient, redis_client: redis.Redis) -> None:
    run = hook_runs.HookRun(sid=SID, phase="files_ready", info={"sequence": 9},
                            record={"sid": SID, "files": []}, name="myapp.hooks.publish",
                            task_id="t-1")
    assert hook_runs.claim(redis_client, run, 60)
    letter = hook_runs.record_outcome(
        redis_client, run, Failure("handler_failed", "Traceback ...", "OSError: bucket"),
        maxlen=100, ttl_s=60)
    deadletters.add(redis_client, 100, kind="body", reason="invalid", detail="",
                    body=b"not json", meta={})
    csrf = sign_in(http)
    listing = http.get("/ui/deadletters?kind=hook").get_data(as_text=True)
    assert letter in listing and "files_ready" in listing and "myapp.hooks.publish" in listing
    assert f'href="/ui/recordings/{SID}"' in listing and "not json" not in listing
    assert '<option value="hook" selected>' in listing
    assert letter in http.get(f"/ui/deadletters?sid={SID[:8]}").get_data(as_text=True)
    full = http.get(f"/ui/deadletters/{letter}").get_data(as_text=True)
    assert "<dt>phase</dt><dd>files_ready</dd>" in full
    assert f'href="/ui/recordings/{SID}"' in full and "Record the hook got" in full

    done = http.post("/ui/deadletters/requeue",
                     data={"id": letter, "confirm": "yes", "csrf_token": csrf},
                     follow_redirects=True)
    assert "Requeued 1 of 1." in done.get_data(as_text=True)
    assert "hook myapp.hooks.publish published again" in done.get_data(as_text=True)
    assert deadletters.get(redis_client, letter) is None
    assert redis_client.xlen(keys.INBOX) == 0  # a record is never an inbox body
    # The hook's task is on the broker (the test's Redis; Celery's message protocol 2).
    message = json.loads(redis_client.lindex(DEFAULT_QUEUE, 0))
    assert message["headers"]["task"] == "myapp.hooks.publish"
    args, _, _ = json.loads(base64.b64decode(message["body"]))
    assert args == [SID, "files_ready", {"sequence": 9, "redrive": letter},
                    {"sid": SID, "files": []}]


def test_health_shows_the_metrics_figures(http: FlaskClient,
                                          redis_client: redis.Redis) -> None:
    redis_client.xadd(keys.INBOX, {"body": b"{}"})
    deadletters.add(redis_client, 100, kind="handler", reason="handler_failed", detail="",
                    body=b"{}", meta={}, handler="my.handler")
    sign_in(http)
    html = http.get("/ui/health").get_data(as_text=True)
    assert "<code>acb_inbox_backlog</code></td><td class=\"num\">1</td>" in html
    assert "my.handler" in html
    strip = http.get("/ui/").get_data(as_text=True)
    assert "<b>1</b><span>inbox backlog</span>" in strip


@pytest.mark.parametrize("scan_limit", [recordings_query.SCAN_LIMIT, 7])
def test_paging_with_two_filters_finds_each_match_once(
        redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, scan_limit: int) -> None:
    monkeypatch.setattr(recordings_query, "SCAN_LIMIT", scan_limit)
    pipe = redis_client.pipeline()
    for i in range(300):
        record = new_record(f"{i:032x}")
        if i % 2 == 0:
            record["status"] = {"phase": "exited", "meaning": "m"}
        if i % 3 == 0:
            record["errors"] = [{"fatal": False}]
        recordings_index.queue_update(pipe, f"{i:032x}", record, 3600,
                                      now_ms=1_900_000_000_000 + i // 4)
    pipe.execute()
    filters = recordings_query.Filters(phase="exited", flag="errors")
    seen: list[str] = []
    cursor = ""
    for _ in range(200):
        found = recordings_query.page(redis_client, filters, ttl_s=3600, size=5,
                                      cursor=cursor, now_ms=1_900_000_000_100)
        assert not found.exact
        seen += [r["sid"] for r in found.rows]
        cursor = found.next_cursor
        if not cursor:
            break
    expected = [f"{i:032x}" for i in range(299, -1, -1) if i % 6 == 0]
    assert sorted(seen) == sorted(expected) and len(seen) == len(expected)
    # Newest first, apart from the order within one millisecond.
    scores = [(int(s, 16)) // 4 for s in seen]
    assert scores == sorted(scores, reverse=True)


def test_requeueing_a_full_page_keeps_the_session(http: FlaskClient,
                                                  redis_client: redis.Redis) -> None:
    ids = [deadletters.add(redis_client, 1000, kind="body", reason="invalid", detail="",
                           body=b"not json %d" % i, meta={}).decode() for i in range(50)]
    csrf = sign_in(http)
    done = http.post("/ui/deadletters/requeue",
                     data={"id": ["not-an-id", *ids], "confirm": "yes", "csrf_token": csrf},
                     follow_redirects=True)
    html = done.get_data(as_text=True)
    # At most a page (50) at once: the last one stays; an id that is none is "gone".
    assert "Requeued 49 of 50." in html and "not-an-id: gone already" in html
    assert "and 45 more" in html
    cookie = http.get_cookie("acb_ui", path="/ui")
    assert cookie is not None and len(cookie.value) < 4000
    assert deadletters.count(redis_client) == 1 and redis_client.xlen(keys.INBOX) == 49
    assert http.get("/ui/").status_code == 200  # still signed in


def test_pages_load_nothing_from_another_origin(http: FlaskClient,
                                                redis_client: redis.Redis) -> None:
    simulate(redis_client, SID, "web", with_errors=True)
    letter = deadletters.add(redis_client, 100, kind="body", reason="invalid", detail="",
                             body=b"x", meta={}).decode()
    csrf = sign_in(http)
    pages = [http.get(p) for p in ("/ui/", "/ui/health", "/ui/deadletters",
                                   f"/ui/recordings/{SID}", f"/ui/deadletters/{letter}")]
    pages.append(http.post("/ui/deadletters/requeue", data={"id": letter, "csrf_token": csrf}))
    pages.append(http_for_same_app(http).get("/ui/login"))
    for answer in pages:
        assert answer.status_code == 200, answer.request.path
        html = answer.get_data(as_text=True)
        links = re.findall(r'(?:href|src|action)="([^"]*)"', html)
        assert links and all(link.startswith(("/ui/", "#")) for link in links), links
        assert "<script" not in html
        assert "script-src" not in answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["Cache-Control"] == "no-store"


def test_a_save_prunes_aged_entries_at_most_once_a_minute(
        redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = redis_client.pipeline()
    recordings_index.queue_update(pipe, "old", new_record("old"), 60, now_ms=1_000)
    pipe.execute()
    monkeypatch.setattr(recordings_index, "_next_prune", 0.0)
    store.save(redis_client, SID, new_record(SID), 60)
    assert redis_client.zscore(recordings_index.ALL, "old") is None
    assert redis_client.zscore(recordings_index.phase_index("unknown"), "old") is None
    assert redis_client.zscore(recordings_index.ALL, SID) is not None
    # Not again within the minute.
    pipe = redis_client.pipeline()
    recordings_index.queue_update(pipe, "old", new_record("old"), 60, now_ms=1_000)
    pipe.execute()
    store.save(redis_client, SID, new_record(SID), 60)
    assert redis_client.zscore(recordings_index.ALL, "old") is not None


def test_recording_page_shows_events_held_for_a_missing_sequence(
        http: FlaskClient, redis_client: redis.Redis) -> None:
    simulate(redis_client, SID, "individual")
    sign_in(http)
    assert 'id="waiting"' not in http.get(f"/ui/recordings/{SID}").get_data(as_text=True)
    # As the ordering scripts leave a recording waiting for sequence 4 (PROTOCOL.md).
    redis_client.hset(keys.recording_order(SID), mapping={"next": 4})
    redis_client.zadd(keys.recording_buffer(SID), {"5": 5, "6": 6})
    html = http.get(f"/ui/recordings/{SID}").get_data(as_text=True)
    assert "2 events buffered" in html and "sequences 5, 6" in html
    assert "waiting for sequence 4" in html


def test_rebuild_indexes_records_saved_before_the_index(redis_client: redis.Redis) -> None:
    for i in range(7):
        record = new_record(f"{i:032x}")
        record["cname"] = "room-r"
        # As store.save wrote them before the dashboard: the record alone.
        redis_client.set(keys.recording_state(f"{i:032x}"), store.dumps(record),
                         ex=3600 - i * 60)
    redis_client.set(keys.recording_state("f" * 32), "not json", ex=3600)
    assert recordings_query.page(redis_client, recordings_query.Filters(),
                                 ttl_s=3600).rows == []
    assert recordings_index.rebuild(redis_client, 3600, batch=3) == 7
    found = recordings_query.page(redis_client, recordings_query.Filters(channel="room-r"),
                                  ttl_s=3600)
    # Newest first: the one with the most time left was saved last.
    assert [r["sid"] for r in found.rows] == [f"{i:032x}" for i in range(7)]
    assert 3500 < redis_client.ttl(keys.recording_summary(f"{0:032x}")) <= 3600


def test_timeline_keeps_its_last_entries_and_flags_dead_letters(
        redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    from agora_callbacks import recording_timeline

    monkeypatch.setattr(recording_timeline, "MAX_ENTRIES", 6)
    envelopes = simulate(redis_client, SID, "individual")  # one event + one run each
    steps = recording_timeline.load(redis_client, SID)
    last = envelopes[-1]["payload"]["sequence"]
    assert [s.sequence for s in steps] == [last - 2, last - 1, last]
    assert all(s.event is not None and len(s.runs) == 1 for s in steps)
    assert 0 < redis_client.ttl(keys.recording_timeline(SID)) <= 3600
    dead = recordings_index.flag_index("deadletters")
    assert redis_client.zscore(dead, SID) is None
    body = encode(envelopes[-1])
    recording_timeline.handler_finished(
        redis_client, 3600, sid="", key="k", late=False, gap=None, meta={},
        body=body.decode(), handler="h", outcome="handler_failed", duration_ms=None,
        exception="Boom: x")
    assert redis_client.zscore(dead, SID) is not None
    (step,) = [s for s in recording_timeline.load(redis_client, SID) if s.sequence == last]
    assert [(r["handler"], r["outcome"], r["redriven"]) for r in step.runs][-1] == \
        ("h", "handler_failed", True)


def test_recording_page_lists_the_lifecycle_phases_fired(http: FlaskClient,
                                                         redis_client: redis.Redis) -> None:
    record = new_record(SID)
    # The shape the lifecycle phases keep in the record (record["lifecycle"]).
    record["lifecycle"] = {
        "fired": {"started": {"at_ms": 1_800_000_000_000, "sequence": 1, "event_type": 40,
                              "source": "events"},
                  "files_ready": {"at_ms": 1_800_000_060_000, "sequence": 20,
                                  "event_type": 31, "source": "events",
                                  "evidence": "uploaded", "files": ["a.m3u8", "b.ts"]}},
        "pending": ["files_ready"], "marks": {}, "reconcile": {}}
    recordings_index.update(redis_client, SID, record, 3600)
    store.save(redis_client, SID, record, 3600)
    sign_in(http)
    html = http.get(f"/ui/recordings/{SID}").get_data(as_text=True)
    table = html[html.index('id="lifecycle"'):]
    assert table.index("started") < table.index("files_ready")
    assert "evidence uploaded" in table and "files 2 items" in table
    assert "hooks pending" in table and "2027-01-15" in table


def test_a_deeply_nested_body_letter_does_not_break_the_dead_letter_pages(
        http: FlaskClient, redis_client: redis.Redis) -> None:
    # What the workers dead-letter as ``too_deep``: json would recurse past Python's limit.
    deep = deadletters.add(redis_client, 100, kind="body", reason="too_deep", detail="",
                           body=b"[" * 100_000, meta={}).decode()
    sign_in(http)
    listing = http.get("/ui/deadletters")
    assert listing.status_code == 200 and deep in listing.get_data(as_text=True)
    assert http.get(f"/ui/deadletters?sid={SID[:8]}").status_code == 200
    assert http.get(f"/ui/deadletters/{deep}").status_code == 200
    assert deadletters.body_fields(b"[" * 100_000) == {}


@pytest.mark.parametrize("query", [
    "/ui/?cursor=abc", "/ui/?cursor=1:99999999999999999999:0",
    "/ui/?cursor=1:0:99999999999999999999", "/ui/?cursor=1:0:0:0",
    "/ui/deadletters?before=garbage", "/ui/deadletters?before=1-0)",
    "/ui/deadletters?before=99999999999999999999999-0"])
def test_a_wrong_paging_parameter_is_a_400_not_storage_unavailable(
        http: FlaskClient, redis_client: redis.Redis, query: str) -> None:
    deadletters.add(redis_client, 100, kind="body", reason="invalid", detail="", body=b"x",
                    meta={})
    simulate(redis_client, SID, "web")
    sign_in(http)
    answer = http.get(query)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert "Retry-After" not in answer.headers


def test_the_paging_parameters_the_pages_link_to_are_accepted(
        http: FlaskClient, redis_client: redis.Redis) -> None:
    for _ in range(3):
        deadletters.add(redis_client, 100, kind="body", reason="invalid", detail="",
                        body=b"x", meta={})
    sign_in(http)
    for query in ("/ui/?cursor=1900000000000:2:0", "/ui/?cursor=1900000000000",
                  "/ui/?cursor=", "/ui/deadletters?before=", "/ui/deadletters?before=1-0",
                  f"/ui/deadletters?before={2**64 - 1}-{2**64 - 1}"):
        assert http.get(query).status_code == 200, query


def test_a_sign_in_whose_next_holds_a_line_break_goes_to_the_list(
        http: FlaskClient) -> None:
    csrf = csrf_of(http.get("/ui/login").get_data(as_text=True))
    answer = http.post("/ui/login", data={"token": TOKEN, "csrf_token": csrf,
                                          "next": "/ui/\r\nSet-Cookie: x=1"})
    assert answer.status_code == 302 and answer.headers["Location"] == "/ui/"
    # The same from a page's own redirect: a path with an encoded line break.
    again = http_for_same_app(http)
    first = again.get("/ui/deadletters/1-0%0A")
    login = again.get(first.headers["Location"])
    next_value = re.search(r'name="next" value="([^"]*)"', login.get_data(as_text=True))
    assert next_value is not None and "\n" in next_value.group(1)
    back = again.post("/ui/login", data={"token": TOKEN, "next": next_value.group(1),
                                         "csrf_token": csrf_of(login.get_data(as_text=True))})
    assert back.status_code == 302 and back.headers["Location"] == "/ui/"


def test_health_shows_large_figures_in_full(http: FlaskClient,
                                           redis_client: redis.Redis) -> None:
    entry = redis_client.xadd(keys.INBOX, {"body": b"{}"}).decode()
    redis_client.hset(keys.COUNTERS, mapping={"admitted": 12_345_678, "dispatched": 12_345_670})
    sign_in(http)
    html = http.get("/ui/health").get_data(as_text=True)

    def shown(name: str) -> str:
        found = re.search(rf'<code>{name}</code></td><td class="num">([^<]*)<', html)
        assert found, name
        return found.group(1)

    assert shown("acb_pipeline_admitted_total") == "12345678"  # not 1.23457e+07
    assert shown("acb_events_buffered") == "8"
    # Unix seconds of the last body stored (not 1.79604e+09), to the millisecond.
    stored = shown("acb_inbox_last_stored_timestamp_seconds")
    assert "e" not in stored and float(stored) == int(entry.split("-")[0]) / 1000
    assert "e+" not in shown("acb_inbox_oldest_age_seconds")


def test_a_recording_whose_sid_holds_a_slash_opens_from_its_link(
        http: FlaskClient, redis_client: redis.Redis) -> None:
    # The schema takes any non-empty string as a sid; the list links to each one.
    for sid in ("room/1", "a b?c#d", "line\nbreak"):
        simulate(redis_client, sid, "web")
    sign_in(http)
    links = re.findall(r'class="sid" href="([^"]+)"', http.get("/ui/").get_data(as_text=True))
    assert len(links) == 3
    for link in links:
        page = http.get(link.replace("&amp;", "&"))
        assert page.status_code == 200, link
        assert 'id="timeline"' in page.get_data(as_text=True)


def test_redis_away_is_a_page_that_says_so(http: FlaskClient, redis_client: redis.Redis,
                                           redis_server: ServerProcess,
                                           settings: Settings) -> None:
    letter = deadletters.add(redis_client, 100, kind="body", reason="invalid", detail="",
                             body=b"x", meta={}).decode()
    csrf = sign_in(http)
    redis_server.stop()
    answers = [http.get(p) for p in ("/ui/", f"/ui/recordings/{SID}", "/ui/deadletters",
                                     f"/ui/deadletters/{letter}")]
    answers.append(http.post("/ui/deadletters/requeue", data={"id": letter, "csrf_token": csrf}))
    for answer in answers:
        assert answer.status_code == 503, answer.request.path
        assert answer.mimetype == "text/html", answer.request.path
        html = answer.get_data(as_text=True)
        assert "Redis is not answering" in html and 'id="sign-out"' in html
        assert answer.headers["Retry-After"] == str(settings.retry_after_s)
        assert answer.headers["Cache-Control"] == "no-store"


def test_pages_say_their_times_are_utc(http: FlaskClient, redis_client: redis.Redis) -> None:
    simulate(redis_client, SID, "web")
    letter = deadletters.add(redis_client, 100, kind="body", reason="invalid", detail="",
                             body=b"x", meta={}).decode()
    sign_in(http)
    for path in ("/ui/", f"/ui/recordings/{SID}", "/ui/deadletters", f"/ui/deadletters/{letter}"):
        html = http.get(path).get_data(as_text=True)
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", html), path  # a time...
        assert "Times are UTC" in html, path  # ...and its zone


def test_a_filtered_dead_letter_page_with_no_match_yet_says_older_ones_may(
        http: FlaskClient, redis_client: redis.Redis) -> None:
    old = deadletters.add(redis_client, 10_000, kind="body", reason="stale", detail="",
                          body=b"x", meta={}).decode()
    pipe = redis_client.pipeline(transaction=False)
    for _ in range(deadletters.SCAN_LIMIT):
        deadletters.add(pipe, 10_000, kind="body", reason="invalid", detail="", body=b"y",
                        meta={})
    pipe.execute()
    sign_in(http)
    html = http.get("/ui/deadletters?reason=stale").get_data(as_text=True)
    assert old not in html and "older »" in html  # one page looks at 5,000 at most
    assert "No dead letter matches." not in html  # it is there, further back
    assert f"None of the {deadletters.SCAN_LIMIT} letters looked at matches" in html
    older = re.search(r'<a href="([^"]+)">older »', html)
    assert older is not None
    assert old in http.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)


#: Stored values that are not a record, and what the page says of each.
CORRUPT = {
    "not JSON": (b'{"sid": "' + SID.encode() + b'", "stat', "not JSON"),
    "not UTF-8": (b"\x80\x81 binary", "not JSON"),
    "a list": (b"[1, 2]", "JSON, but an array, not an object"),
    "null": (b"null", "JSON, but null, not an object"),
    "no status": (json.dumps({"sid": SID}).encode(), "no status field"),
    "status a string": (json.dumps({"sid": SID, "status": "recording"}).encode(),
                        "status is a string, not an object"),
    "a file a number": (json.dumps({"sid": SID, "status": {}, "files": [1]}).encode(),
                        "files[0] is a number, not an object"),
    "an error's module a string": (
        json.dumps({"sid": SID, "status": {}, "errors": [{"module": "m"}]}).encode(),
        "errors[0].module is a string, not an object"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_record_is_a_page_that_says_so_with_the_timeline(
        http: FlaskClient, redis_client: redis.Redis, case: str) -> None:
    simulate(redis_client, SID, "individual")
    raw, said = CORRUPT[case]
    redis_client.set(keys.recording_state(SID), raw)
    sign_in(http)
    with capture_logs() as logs:
        answer = http.get(f"/ui/recordings/{SID}")
    assert answer.status_code == 500
    assert answer.mimetype == "text/html"
    html = answer.get_data(as_text=True)
    assert "record cannot be read" in html and said in html
    assert 'id="sign-out"' in html  # the dashboard's own page
    assert re.findall(r'data-seq="(\d+)"', html)  # the timeline, still shown
    assert f"/ui/deadletters?sid={SID}" in html  # and the recording's dead letters
    lines = [line for line in logs if line["event"] == "dashboard.record_unreadable"]
    assert len(lines) == 1 and lines[0]["sid"] == SID and said in lines[0]["reason"]
    assert redis_client.get(keys.recording_state(SID)) == raw  # nothing changed


def test_a_corrupt_record_without_a_timeline_is_the_same_page(
        http: FlaskClient, redis_client: redis.Redis) -> None:
    redis_client.set(keys.recording_state(SID), b"[]")
    sign_in(http)
    answer = http.get(f"/ui/recordings/{SID}")
    assert answer.status_code == 500 and answer.mimetype == "text/html"
    html = answer.get_data(as_text=True)
    assert "record cannot be read" in html
    assert "Nothing is on this recording" in html


def test_a_record_of_the_shape_but_a_deeper_field_is_the_same_page(
        http: FlaskClient, redis_client: redis.Redis) -> None:
    # Beyond what store.shape_problem checks: a leave reason that is not an object.
    record = new_record(SID)
    record["leaves"] = [{"sequence": 3, "uid": "1", "code": 0, "reasons": [7]}]
    store.save(redis_client, SID, record, 3600)
    sign_in(http)
    with capture_logs() as logs:
        answer = http.get(f"/ui/recordings/{SID}")
    assert answer.status_code == 500 and answer.mimetype == "text/html"
    html = answer.get_data(as_text=True)
    assert "record cannot be read" in html and "a field the page reads" in html
    assert [line["sid"] for line in logs if line["event"] == "dashboard.record_unreadable"] \
        == [SID]
