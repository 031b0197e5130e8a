"""The ingress's /metrics under its production server (``agora-callbacks web``, two
worker processes): only with the metrics (or admin) token, and every scrape reports
the whole process tree, whichever worker answers it."""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import SECRET, wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_ingress_server import serving

from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.ingress.signature import sign_headers

pytestmark = pytest.mark.slow

METRICS_TOKEN = "prometheus-credential"
ADMIN_TOKEN = "admin-credential"
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def request(port: int, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request on a fresh connection, so the server may hand it to any worker."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Connection": "close", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def web_env(redis_url: str, **extra: str) -> dict[str, str]:
    """This environment without the metrics' directory and tokens, for
    ``agora-callbacks web`` on ``redis_url``, with ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() != "prometheus_multiproc_dir" and k not in ("METRICS_TOKEN", "ADMIN_TOKEN")}
    env.update({"REDIS_URL": redis_url, "AGORA_NCS_SECRETS": SECRET,
                "LOG_LEVEL": "warning", "LOG_FORMAT": "json", **extra})
    return env


@pytest.fixture
def web(redis_server: ServerProcess, redis_client: redis.Redis, tmp_path: Path) -> Iterator[int]:
    env = web_env(redis_server.url, METRICS_TOKEN=METRICS_TOKEN, ADMIN_TOKEN=ADMIN_TOKEN)
    with serving(env, tmp_path / "web.log", workers=2, threads=None) as (_, port):
        yield port


def stored(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "acb_ingress_stored_total":
                return sample.value
    return 0.0


def test_every_scrape_sums_all_worker_processes(web: int) -> None:
    body = b'{"noticeId":"w1","productId":3,"eventType":40,"notifyMs":1,"payload":{}}'
    sent = 40
    for _ in range(sent):
        status, _ = request(web, "POST", "/agora/ncs", body, sign_headers(body, SECRET))
        assert status == 200

    def scraped() -> float:
        status, text = request(web, "GET", "/metrics", headers=SCRAPE)
        assert status == 200
        return stored(text.decode())

    # Each process hands its counts on within a second (agora_callbacks.tally); from
    # then on every scrape, whichever worker answers, shows all of them, once.
    wait_for(lambda: scraped() == sent, timeout=10, message=f"a scrape showing {sent}")
    assert [scraped() for _ in range(10)] == [sent] * 10


def test_metrics_need_the_metrics_or_admin_token(web: int) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN},
                    {"Authorization": f"Basic {METRICS_TOKEN}"}):
        status, text = request(web, "GET", "/metrics", headers=headers)
        assert status == 401, (headers, status)
        assert b"acb_" not in text
    for token in (METRICS_TOKEN, ADMIN_TOKEN):
        status, text = request(web, "GET", "/metrics",
                               headers={"Authorization": f"Bearer {token}"})
        assert status == 200
        assert b"acb_redis_up 1.0" in text


def test_metrics_are_closed_without_a_token(redis_server: ServerProcess,
                                            redis_client: redis.Redis, tmp_path: Path) -> None:
    with serving(web_env(redis_server.url), tmp_path / "web.log",
                 threads=None) as (_, port):
        assert request(port, "GET", "/metrics")[0] == 404
        assert request(port, "GET", "/metrics", headers={"Authorization": "Bearer x"})[0] == 404
