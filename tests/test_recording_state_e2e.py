"""Through the real pipeline: signed bodies posted to the ingress, a real Celery
worker (prefork) with no handler of its own (every event is folded into its record
in the turn path, no task), the record read back from ``GET /recordings/<sid>``;
and the worker's scrape endpoint counting the folds of all its processes."""

from __future__ import annotations

import dataclasses
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import SECRET, wait_for
from prometheus_client.parser import text_string_to_metric_families
from workers_procs import Worker

from agora_callbacks import keys
from agora_callbacks.embedded_server import free_port
from agora_callbacks.ingress.app import create_app
from agora_callbacks.ingress.signature import sign_headers
from agora_callbacks.schemas import parse_event
from agora_callbacks.settings import Settings
from agora_callbacks.simulate.lifecycles import encode, lifecycle
from agora_callbacks.workers.builtin.fold import fold

pytestmark = pytest.mark.slow

TOKEN = "e2e-admin-token"
FOLDED = ("acb_record_folds_total", (("outcome", "folded"),))
FAILED = ("acb_record_folds_total", (("outcome", "failed"),))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def worker(redis_client: redis.Redis, redis_server: Any, tmp_path: Path) -> Iterator[Worker]:
    port = free_port()
    started = Worker(redis_server.url, "state", handlers="", log_dir=tmp_path,
                     env={"WORKER_METRICS_PORT": str(port)})
    started.metrics_port = port  # type: ignore[attr-defined]
    try:
        started.wait_ready(redis_client)
        yield started
    finally:
        started.stop()


def test_lifecycle_is_folded_by_the_worker_and_served(settings: Settings,
                                                      redis_client: redis.Redis,
                                                      worker: Worker) -> None:
    sid = "e2e0" * 8
    events = lifecycle("individual", sid, seed=31, with_errors=True, with_failover=True)
    http = create_app(dataclasses.replace(settings, admin_token=TOKEN)).test_client()
    # Every body once, a few twice, two neighbours swapped: what NCS really does.
    order = list(range(len(events)))
    order[3], order[4] = order[4], order[3]
    order += [0, 5, len(events) - 1]
    for index in order:
        raw = encode(events[index])
        response = http.post("/agora/ncs", data=raw, headers=sign_headers(raw, SECRET))
        assert response.status_code == 200

    auth = {"Authorization": f"Bearer {TOKEN}"}

    def record() -> dict[str, Any] | None:
        response = http.get(f"/recordings/{sid}", headers=auth)
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.get_json()
        return body if body["event_count"] == len(events) else None

    got = wait_for(record, timeout=60, message=f"the record of {sid}\n{worker.log()}")
    assert isinstance(got, dict)

    expected = None
    for envelope in events:
        expected = fold(expected, parse_event(encode(envelope)))
    assert expected is not None
    # The worker passes its dedupe keys, and adds the lifecycle; the rest is equal.
    for name in ("recent_keys", "lifecycle"):
        got.pop(name)
        expected.pop(name, None)
    assert got == expected
    assert got["status"]["phase"] == "exited"
    assert got["sequences"]["late"] == [] and got["sequences"]["missing"] == []

    # The worker's endpoint counts every fold, whichever of its processes folded.
    port = worker.metrics_port  # type: ignore[attr-defined]

    def scraped() -> dict[Any, float] | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            found = samples(r.read().decode())
        return found if found.get(FOLDED, 0) == len(events) else None

    metrics = wait_for(scraped, timeout=20, message="folds on the worker's /metrics")
    assert isinstance(metrics, dict)
    assert metrics[("acb_pipeline_admitted_total", ())] == len(events)
    assert metrics[("acb_pipeline_duplicates_total", ())] == 3
    assert metrics[("acb_pipeline_dispatched_total", ())] == len(events)
    assert metrics[("acb_inbox_backlog", ())] == 0
    assert metrics[("acb_redis_up", ())] == 1
    assert FAILED not in metrics
    assert not any(name == "acb_handler_duration_seconds_count" for name, _ in metrics)

    ingress = samples(http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
                      .get_data(as_text=True))
    assert ingress[("acb_ingress_stored_total", ())] >= len(order)
    assert ingress[("acb_pipeline_admitted_total", ())] == len(events)



def test_redis_errors_are_retried_and_no_event_is_missed(settings: Settings,
                                                         redis_client: redis.Redis,
                                                         worker: Worker) -> None:
    sid = "e2e1" * 8
    events = lifecycle("composite", sid, seed=32)
    # A value of the wrong type under the state key: every GET of it fails (WRONGTYPE).
    redis_client.hset(keys.recording_state(sid), "blocked", "1")
    http = create_app(dataclasses.replace(settings, admin_token=TOKEN)).test_client()
    for envelope in events:
        raw = encode(envelope)
        assert http.post("/agora/ncs", data=raw,
                         headers=sign_headers(raw, SECRET)).status_code == 200
    port = worker.metrics_port  # type: ignore[attr-defined]

    def failures() -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            found = samples(r.read().decode())
        return found.get(FAILED, 0)

    wait_for(lambda: failures() >= 1, timeout=30, message="a failed fold")
    redis_client.delete(keys.recording_state(sid))

    def complete() -> dict[str, Any] | None:
        response = http.get(f"/recordings/{sid}", headers={"Authorization": f"Bearer {TOKEN}"})
        body = response.get_json() if response.status_code == 200 else None
        return body if body and body["event_count"] == len(events) else None

    record = wait_for(complete, timeout=90, message=f"the full record\n{worker.log()}")
    assert isinstance(record, dict)
    assert record["status"]["phase"] == "exited"
    assert record["sequences"]["seen"] == [[0, len(events) - 1]]
    assert record["sequences"]["late"] == []
    assert redis_client.xlen(keys.DEADLETTERS) == 0
