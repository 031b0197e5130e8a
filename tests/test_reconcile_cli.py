"""``agora-callbacks recording SID --reconcile``: query asked now, answer folded, summary."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from fake_agora import APP_ID, NOT_FOUND, FakeAgora, Reply, credentials, ok_json

from agora_callbacks import logs
from agora_callbacks.cli import main
from agora_callbacks.reconcile import manual, policy, registration
from agora_callbacks.reconcile.run import Reconciler
from agora_callbacks.simulate.lifecycles import new_sid
from agora_callbacks.workers.builtin import store

RID = "resource-id-cli"


def invoke(env: dict[str, str], *args: str) -> Any:
    # A fresh logging configuration, as in a new process: an earlier test of this
    # process may have bound loggers to stdout, and the command's log lines belong on
    # stderr (cli.context.configure_logging does not rebind loggers already bound).
    logs.configure("info", "json", force=True)
    return CliRunner().invoke(main, ["recording", *args], env=env, catch_exceptions=False)


def on(fake: FakeAgora) -> dict[str, str]:
    return {**credentials(fake.url), "LOG_LEVEL": "warning"}


def test_reconcile_folds_the_answer_and_says_what_it_found(
        fake: FakeAgora, redis_client: redis.Redis) -> None:
    sid = new_sid()
    registration.save(redis_client, registration.Registration(sid, RID, "mix"), ttl_s=60)
    # A recording no callback reached: a failover 404, then the answer.
    fake.script(sid, Reply(404, NOT_FOUND), Reply(200, ok_json(sid, RID, status=5)))
    result = invoke(on(fake), sid, "--reconcile", "--json")
    assert result.exit_code == 0, result.output
    assert "query: 404: the session ended, or a failover is under way; asking again in " \
           "1.0 s" in result.stderr
    assert "reconciled with Agora's query: active, status 5 (The first recorded file is " \
           "uploaded" in result.stderr
    assert "2 file(s); phases fired: started" in result.stderr
    record = json.loads(result.stdout)
    assert record == store.load(redis_client, sid)
    assert record["query"]["reason"] == "manual"
    assert {f["file_name"] for f in record["files"]} == {f"{sid}_room.m3u8",
                                                          f"{sid}_room_0.mp4"}


def test_a_proxys_404_is_said_in_one_line_and_ends_nothing(
        fake: FakeAgora, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # The command's budgets are a minute; shortened here, the answers are the same.
    fast = policy.Policy(failover_window_s=1.0, error_budget_s=1.0, backoff_first_s=0.1,
                         backoff_max_s=0.3)
    monkeypatch.setattr(manual, "Reconciler", functools.partial(Reconciler, rules=fast))
    sid = new_sid()
    registration.save(redis_client, registration.Registration(sid, RID, "mix"), ttl_s=60)
    fake.proxy_404 = "html"
    result = invoke(on(fake), sid, "--reconcile", "--json")
    assert result.exit_code == 0, result.output
    # What the command says (the log's JSON lines aside).
    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    reason = ("404 not from Agora (a text/html body, not JSON): a proxy or a wrong "
              "AGORA_REST_URL answered, not Agora")
    assert lines[0].startswith(f"query: {reason}; asking again in 0.1 s"), lines
    assert lines[-1] == (f"reconciled with Agora's query: error, {reason}, "
                         "0 file(s); phases fired: none")
    record = json.loads(result.stdout)
    assert record["query"]["outcome"] == "error"
    assert record["lifecycle"]["fired"] == {}
    assert record["status"]["phase"] == "unknown"


def test_reconcile_refusals_are_one_line(fake: FakeAgora, redis_client: redis.Redis) -> None:
    sid = new_sid()
    off = invoke({"LOG_LEVEL": "warning"}, sid, "--reconcile")
    assert off.exit_code == 1
    assert off.stderr.strip() == ("Error: reconciliation with Agora's query is off: set "
                                  "AGORA_APP_ID, AGORA_CUSTOMER_ID and AGORA_CUSTOMER_SECRET")
    unregistered = invoke(on(fake), sid, "--reconcile")
    assert unregistered.exit_code == 1
    assert unregistered.stderr.startswith(f"Error: no resourceId registered for recording {sid}")
    assert len(unregistered.stderr.strip().splitlines()) == 1
    partial = invoke({"AGORA_APP_ID": APP_ID}, sid, "--reconcile")
    assert partial.exit_code == 1  # a bad setting (README: exit codes)
    assert "AGORA_CUSTOMER_ID and AGORA_CUSTOMER_SECRET: not set" in partial.stderr
    assert fake.hits == []
