"""Prometheus metrics: the Redis collector, the scrape registry, multi-process mode."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import redis
from conftest import SECRET
from flask import Flask
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agora_callbacks import deadletters, inbox, keys, metrics, metrics_dir
from agora_callbacks.embedded_server import ServerProcess, free_port
from agora_callbacks.ingress.app import create_app
from agora_callbacks.ingress.signature import sign_headers
from agora_callbacks.settings import Settings


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def scrape(client: redis.Redis) -> str:
    return generate_latest(metrics.scrape_registry(client)).decode()


def _meta(n: int) -> inbox.ReceiveMeta:
    return inbox.ReceiveMeta(received_ms=int(time.time() * 1000), signature="v2",
                             secret_index=0, remote_addr="127.0.0.1", request_id=f"r{n}")


def test_redis_figures_are_read_at_scrape_time(redis_client: redis.Redis) -> None:
    empty = scrape(redis_client)
    assert value(empty, "acb_redis_up") == 1
    assert value(empty, "acb_inbox_backlog") == 0
    assert value(empty, "acb_inbox_oldest_age_seconds") == 0
    assert value(empty, "acb_inbox_last_stored_timestamp_seconds") == 0
    assert value(empty, "acb_deadletters") == 0
    assert value(empty, "acb_recordings_waiting") == 0
    assert value(empty, "acb_events_buffered") == 0
    for name in metrics.PIPELINE_COUNTERS:
        assert value(empty, f"acb_pipeline_{name}_total") == 0

    old_ms = int(time.time() * 1000) - 60_000
    redis_client.xadd(keys.INBOX, inbox.fields_for(b"{}", _meta(0)), id=f"{old_ms}-0")
    for n in range(1, 3):
        inbox.store(redis_client, b"{}", _meta(n))
    for reason in ("invalid", "stale"):
        deadletters.add(redis_client, 1000, kind="body", reason=reason, detail="", body=b"x",
                        meta={})
    redis_client.zadd(keys.TIMERS, {"sid-a": time.time() * 1000 - 30_000,
                                    "sid-b": time.time() * 1000 + 60_000})
    redis_client.hset(keys.COUNTERS, mapping={"duplicates": 7, "gaps": 2, "brand_new": 3,
                                              "admitted": 10, "dispatched": 6,
                                              "no_handler": 1})

    text = scrape(redis_client)
    assert value(text, "acb_inbox_backlog") == 3
    assert 59 <= value(text, "acb_inbox_oldest_age_seconds") < 120
    assert abs(value(text, "acb_inbox_last_stored_timestamp_seconds") - time.time()) < 30
    assert value(text, "acb_deadletters") == 2
    assert value(text, "acb_recordings_waiting") == 2
    assert 29 <= value(text, "acb_recordings_overdue_seconds") < 90
    assert value(text, "acb_pipeline_duplicates_total") == 7
    assert value(text, "acb_pipeline_gaps_total") == 2
    assert value(text, "acb_pipeline_admitted_total") == 10
    assert value(text, "acb_events_buffered") == 10 - 6 - 1
    # A counter the workers add later is exported without a code change here.
    assert value(text, "acb_pipeline_brand_new_total") == 3


def test_pending_entries_are_reported(redis_client: redis.Redis) -> None:
    redis_client.xgroup_create(keys.INBOX, keys.INBOX_GROUP, id="0", mkstream=True)
    for n in range(4):
        inbox.store(redis_client, b"{}", _meta(n))
    redis_client.xreadgroup(keys.INBOX_GROUP, "c1", {keys.INBOX: ">"}, count=3)
    assert value(scrape(redis_client), "acb_inbox_pending") == 3


def test_scrape_survives_redis_down() -> None:
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
    metrics.INGRESS_RECEIVED.inc()
    text = scrape(dead)
    assert value(text, "acb_redis_up") == 0
    assert value(text, "acb_ingress_received_total") >= 1
    assert ("acb_inbox_backlog", ()) not in samples(text)


METRICS_TOKEN = "metrics-token"
#: What Prometheus sends (its scrape config's ``authorization`` credentials).
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def _app(settings: Settings, client: redis.Redis | None = None) -> Flask:
    return create_app(dataclasses.replace(settings, metrics_token=METRICS_TOKEN),
                      redis_client=client)


def test_ingress_counts_its_decisions(settings: Settings, redis_client: redis.Redis) -> None:
    http = _app(settings, redis_client).test_client()
    before = samples(http.get("/metrics", headers=SCRAPE).get_data(as_text=True))

    def delta(name: str, **labels: str) -> float:
        now = samples(http.get("/metrics", headers=SCRAPE).get_data(as_text=True))
        key = (name, tuple(sorted(labels.items())))
        return now.get(key, 0.0) - before.get(key, 0.0)

    body = b'{"noticeId":"n1","productId":3,"eventType":40,"notifyMs":1,"payload":{}}'
    for _ in range(3):
        response = http.post("/agora/ncs", data=body, headers=sign_headers(body, SECRET))
        assert response.status_code == 200
    assert http.post("/agora/ncs", data=body,
                     headers=sign_headers(body, "wrong")).status_code == 401
    assert http.post("/agora/ncs", data=b"",
                     headers=sign_headers(b"", SECRET)).status_code == 400
    assert http.get("/nowhere").status_code == 404

    assert delta("acb_ingress_received_total") == 5
    assert delta("acb_ingress_verified_total", signature="v2") == 3
    assert delta("acb_ingress_stored_total") == 3
    assert delta("acb_ingress_rejected_total", reason="signature_mismatch") == 1
    assert delta("acb_ingress_rejected_total", reason="empty_body") == 1
    assert delta("acb_ingress_responses_total", route="/agora/ncs", status="200") == 3
    assert delta("acb_ingress_responses_total", route="/agora/ncs", status="401") == 1
    assert delta("acb_ingress_responses_total", route="other", status="404") == 1
    assert delta("acb_ingress_request_duration_seconds_count", route="/agora/ncs") == 5
    response = http.get("/metrics", headers=SCRAPE)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    assert value(text, "acb_inbox_backlog") == 3
    assert value(text, "acb_redis_up") == 1


def test_ingress_counts_store_failures(settings: Settings, redis_server: ServerProcess,
                                       redis_client: redis.Redis) -> None:
    http = _app(settings).test_client()
    before = samples(http.get("/metrics", headers=SCRAPE).get_data(as_text=True))
    body = b'{"noticeId":"n2"}'
    redis_server.stop()
    response = http.post("/agora/ncs", data=body, headers=sign_headers(body, SECRET))
    assert response.status_code == 503
    after = samples(http.get("/metrics", headers=SCRAPE).get_data(as_text=True))
    assert after[("acb_ingress_store_failed_total", ())] == \
        before.get(("acb_ingress_store_failed_total", ()), 0) + 1
    assert after[("acb_redis_up", ())] == 0


MULTIPROC_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from agora_callbacks.metrics_dir import ensure_multiproc_dir
    ensure_multiproc_dir("test")
    import redis
    from prometheus_client import generate_latest
    from agora_callbacks import metrics

    children = []
    for n in range(3):
        pid = os.fork()
        if pid == 0:
            metrics.HANDLER_FAILURES.labels("h").inc(n + 1)
            metrics.INGRESS_STORED.inc()
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    client = redis.Redis.from_url(sys.argv[1])
    print(json.dumps({"dir": os.environ["PROMETHEUS_MULTIPROC_DIR"],
                      "text": generate_latest(metrics.scrape_registry(client)).decode()}))
    """
)


def test_multiprocess_mode_sums_children(redis_client: redis.Redis, tmp_path: Path) -> None:
    url = redis_client.connection_pool.connection_kwargs
    redis_url = f"redis://{url.get('host', '127.0.0.1')}:{url['port']}/0"
    env = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prom")
    (tmp_path / "prom").mkdir()
    (tmp_path / "prom" / "counter_999.db").write_bytes(b"stale from a previous run")
    done = subprocess.run([sys.executable, "-c", MULTIPROC_SCRIPT, redis_url], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(done.stdout)
    assert result["dir"] == str(tmp_path / "prom")
    text = result["text"]
    assert value(text, "acb_handler_failures_total", handler="h") == 1 + 2 + 3
    assert value(text, "acb_ingress_stored_total") == 3
    assert value(text, "acb_redis_up") == 1


def test_private_directories_are_removed(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"acb-metrics-web-{dead.pid}-abc"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"")
    alive = tmp_path / f"acb-metrics-web-{os.getppid()}-def"
    alive.mkdir()
    monkeypatch.setenv(metrics_dir.ENV, "placeholder")
    monkeypatch.delenv(metrics_dir.ENV)
    path = Path(metrics_dir.ensure_multiproc_dir("worker"))
    assert os.environ[metrics_dir.ENV] == str(path)
    assert path.parent == tmp_path and f"-{os.getpid()}-" in path.name
    assert not stale.exists(), "a dead tree's directory is swept"
    assert alive.exists(), "a live tree's directory is kept"
    metrics_dir.cleanup()
    assert not path.exists()


IMPORT_METRICS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from typing import get_args
    from agora_callbacks import metrics
    loaded = sorted(m for m in sys.modules if m.startswith(("agora_callbacks", "httpx")))
    from agora_callbacks.reconcile import client
    print(json.dumps({"loaded": loaded, "answers": list(metrics.RECONCILE_ANSWERS),
                      "kinds": list(get_args(client.Kind))}))
    """
)


def test_the_reconcile_answers_are_the_client_s_kinds_without_importing_it() -> None:
    """``acb_reconcile_queries``'s label values are the query client's answer kinds
    (``reconcile.answers``, one list), and importing the metrics, which the client
    imports, loads neither the client nor httpx (no cycle, nothing heavy)."""
    env = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
    done = subprocess.run([sys.executable, "-c", IMPORT_METRICS_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    found = json.loads(done.stdout)
    assert found["answers"] == found["kinds"] == ["ok", "not_found", "retry", "error",
                                                  "throttled"]
    assert "agora_callbacks.reconcile.client" not in found["loaded"]
    assert not [m for m in found["loaded"] if m.startswith("httpx")]


WORKER_SWITCH_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import redis
    from prometheus_client import generate_latest
    from agora_callbacks import metrics  # imported in single-process mode, as a worker does

    metrics.use_multiprocess("worker")  # celeryd_init, before the pool forks
    pid = os.fork()
    if pid == 0:  # a pool process that called Agora's query twice
        metrics.RECONCILE_QUERIES.labels("ok").inc()
        metrics.RECONCILE_QUERIES.labels("retry").inc()
        os._exit(0)
    os.waitpid(pid, 0)
    client = redis.Redis.from_url(sys.argv[1])
    print(json.dumps(generate_latest(metrics.scrape_registry(client)).decode()))
    """
)


def test_a_worker_counts_the_reconcile_queries_of_its_pool_processes(
        redis_client: redis.Redis) -> None:
    """``acb_reconcile_queries_total``'s answers are created at import (at 0), before
    a worker switches to multi-process mode: its pool processes' calls must still
    reach the worker's endpoint."""
    url = redis_client.connection_pool.connection_kwargs
    redis_url = f"redis://{url.get('host', '127.0.0.1')}:{url['port']}/0"
    env = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
    done = subprocess.run([sys.executable, "-c", WORKER_SWITCH_SCRIPT, redis_url], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    assert "Warning" not in done.stderr, done.stderr  # a worker's lines are all JSON
    text = json.loads(done.stdout)
    assert value(text, "acb_reconcile_queries_total", answer="ok") == 1
    assert value(text, "acb_reconcile_queries_total", answer="retry") == 1
    assert value(text, "acb_reconcile_queries_total", answer="throttled") == 0
