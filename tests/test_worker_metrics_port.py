"""Several workers on one host each get a scrape endpoint: the first free port of a range."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from agora_callbacks.embedded_server import free_port
from agora_callbacks.workers.metrics_server import serve_on_first_free_port


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("probe", "a probe counter", registry=registry).inc()
    return registry


def test_a_taken_port_moves_the_endpoint_to_the_next_free_one() -> None:
    first = free_port()
    taken = socket.socket()
    taken.bind(("0.0.0.0", first))
    taken.listen()
    try:
        port, server, thread = serve_on_first_free_port(first, _registry(), span=4)
        try:
            assert first < port < first + 4
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                assert b"probe_total 1.0" in r.read()
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
    finally:
        taken.close()


def test_every_port_taken_raises() -> None:
    first = free_port()
    taken = socket.socket()
    taken.bind(("0.0.0.0", first))
    taken.listen()
    try:
        with pytest.raises(OSError):
            serve_on_first_free_port(first, _registry(), span=1)
    finally:
        taken.close()
