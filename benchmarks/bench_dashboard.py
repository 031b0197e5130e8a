"""Dashboard pages with 100,000 recordings of 20 events each, against a bare Flask page.

In one run, on a private embedded Redis (AOF off, its own port; never the shared one):

0. Write costs, what the workers pay for the dashboard: ``store.save`` (the record
   and its index entries, one MULTI with one script call) against the SET of the
   record alone (what it was before), and the timeline write of one handler run
   by a call of its own (``recording_timeline.handler_finished``, one script call)
   against a PING: what each handler run cost before the workers' scripts wrote the
   timeline in their own step (now only a re-run from a dead letter pays it).
1. Fill: ``--records`` recordings (default 100,000), each a record folded from 20
   events of a simulated lifecycle (12 templates: three kinds, with and without
   errors, a failover or a skipped gap), its dashboard index entries (written by
   ``recordings_index.queue_update``, as ``store.save`` does) spread over a day and
   over 1,000 channels, and its timeline (20 events and 20 handler runs).
2. Pages, each requested ``--repeat`` times through the WSGI app (Flask's test client,
   signed in; no HTTP server, so the figures are the app's and Redis's own):
   a bare Flask page (the baseline: one route returning a short string), the list's
   first page, a page further down (its cursor), filtered pages (one facet; two
   facets, which walk one and filter the other; two that match nothing, so the page
   gives up after ``SCAN_LIMIT`` candidates; a channel; a sid prefix), one
   recording's page, the dead-letter list and the health page.

Goals (issue 13): the list's first page and a filtered page under 200 ms, one
recording's page under 100 ms. Medians and 95th percentiles are printed.

    python benchmarks/bench_dashboard.py                 # about a minute to fill
    python benchmarks/bench_dashboard.py --records 10000 --repeat 10   # quick check
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "bench-token"
EVENTS = 20
DAY_MS = 86_400_000


def templates() -> list[tuple[str, dict[str, Any], list[tuple[str, int]]]]:
    """(template sid, record, timeline members) for 12 kinds of 20-event recordings."""
    from agora_callbacks.recording_timeline import _dumps, event_entry
    from agora_callbacks.schemas import parse_event
    from agora_callbacks.simulate.lifecycles import encode, lifecycle
    from agora_callbacks.workers.builtin.fold import apply
    from agora_callbacks.workers.builtin.record import new_record

    out = []
    n = 0
    for kind in ("individual", "composite", "web"):
        for errors, failover, gap in ((False, False, False), (True, False, False),
                                      (False, True, False), (False, False, True)):
            sid = f"{n:02d}" + "f" * 30
            n += 1
            envelopes = lifecycle(kind, sid, seed=n, with_errors=errors,  # type: ignore[arg-type]
                                  with_failover=failover, minutes=1)[:EVENTS + 1]
            record = new_record(sid)
            members: list[tuple[str, int]] = []
            for envelope in envelopes:
                seq = envelope["payload"]["sequence"]
                if gap and seq == 5:
                    continue
                event = parse_event(encode(envelope))
                key = f"{event.event_type}:{seq}"
                skipped = (5, 5) if gap and seq == 6 else None
                apply(record, event, gap=skipped, key=key)
                entry = event_entry(event, key=key, late=False, gap=skipped,
                                    meta={"received_ms": event.sendts})
                run = {"k": "h", "seq": seq, "handler": "agora_callbacks.recording_state",
                       "outcome": "done", "ms": 2.5, "at_ms": event.sendts, "exception": "",
                       "redriven": False}
                members += [(_dumps(entry), seq), (_dumps(run), seq)]
                if len(members) == 2 * EVENTS:
                    break
            out.append((sid, record, members))
    return out


def fill(client: Any, records: int, now_ms: int) -> float:
    from agora_callbacks import keys, recordings_index
    from agora_callbacks.workers.builtin.store import dumps

    shapes = [(sid, dumps(record), record, members) for sid, record, members in templates()]
    began = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    ttl = 7 * 86_400
    for i in range(records):
        tsid, blob, record, members = shapes[i % len(shapes)]
        sid = f"{i:08x}" + tsid[8:]
        cname = f"room-{i % 1000}"
        record = {**record, "sid": sid, "cname": cname}
        pipe.set(keys.recording_state(sid), blob.replace(tsid, sid), ex=ttl)
        recordings_index.queue_update(pipe, sid, record, ttl,
                                      now_ms=now_ms - DAY_MS + i * DAY_MS // records)
        pipe.zadd(keys.recording_timeline(sid), dict(members))
        pipe.expire(keys.recording_timeline(sid), ttl)
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - began


def write_costs(client: Any, n: int = 2000) -> None:
    from agora_callbacks import keys, recording_timeline
    from agora_callbacks.schemas import parse_event
    from agora_callbacks.simulate.lifecycles import encode, lifecycle
    from agora_callbacks.workers.builtin import store

    sid, record, _ = templates()[0]
    body = encode(lifecycle("individual", sid, seed=1)[3]).decode()
    event = parse_event(body.encode())

    def per_call(fn: Any) -> float:
        began = time.perf_counter()
        for i in range(n):
            fn(i)
        return (time.perf_counter() - began) / n * 1e6

    rows = {
        "SET of the record alone (before)": lambda i: client.set(
            keys.recording_state(f"w{i % 50}"), store.dumps(record), ex=600),
        "store.save: record + index": lambda i: store.save(client, f"w{i % 50}", record, 600),
        "PING": lambda i: client.ping(),
        "timeline write of one handler run": lambda i: recording_timeline.handler_finished(
            client, 600, sid=f"w{i % 50}", key="k", late=False, gap=None,
            meta={"received_ms": 1}, body=body, handler="h", outcome="done",
            duration_ms=1.0, event=event),
    }
    for _ in range(2):  # the first round warms up; the second is printed
        figures = {name: per_call(fn) for name, fn in rows.items()}
    for name, us in figures.items():
        print(f"write cost: {name:36} {us:8.0f} us per call")
    client.flushall()


def measure(http: Any, url: str, repeat: int) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(repeat):
        began = time.perf_counter()
        answer = http.get(url)
        times.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, (url, answer.status_code)
        size = len(answer.data)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    import re

    import redis
    from flask import Flask

    from agora_callbacks import deadletters
    from agora_callbacks.embedded_server import ServerProcess
    from agora_callbacks.ingress.app import create_app
    from agora_callbacks.settings import Settings

    with tempfile.TemporaryDirectory(prefix="bench-redis-") as data:
        server = ServerProcess(Path(data), appendonly=False)
        server.start()
        try:
            client = redis.Redis.from_url(server.url)
            write_costs(client)
            now_ms = int(time.time() * 1000)
            took = fill(client, args.records, now_ms)
            for i in range(200):
                deadletters.add(client, 100_000, kind="handler", reason="handler_failed",
                                detail="Traceback ...", body=b'{"noticeId": "x"}', meta={},
                                handler=f"h{i % 3}")
            info = client.info("memory")
            print(f"filled {args.records} recordings x {EVENTS} events in {took:.1f} s; "
                  f"Redis used_memory {info['used_memory'] / 2**20:.0f} MiB "
                  f"({info['used_memory'] / args.records / 1024:.1f} KiB per recording)")

            settings = Settings.from_env({"REDIS_URL": server.url, "AGORA_NCS_SECRETS": "x",
                                          "ADMIN_TOKEN": TOKEN, "LOG_LEVEL": "warning",
                                          "LOG_FORMAT": "json"})
            http = create_app(settings).test_client()
            login = http.get("/ui/login").get_data(as_text=True)
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', login)
            assert csrf is not None
            http.post("/ui/login", data={"token": TOKEN, "csrf_token": csrf.group(1)})
            first = http.get("/ui/").get_data(as_text=True)
            older = re.search(r'id="older" href="([^"]+)"', first)
            assert older is not None
            cursor_url = older.group(1).replace("&amp;", "&")
            sid = re.search(r'href="/ui/recordings/([0-9a-f]+)"', first)
            assert sid is not None

            bare = Flask("bare")
            bare.add_url_rule("/", "bare", lambda: "ok")
            pages = [
                ("baseline: bare Flask page", bare.test_client(), "/"),
                ("list, first page", http, "/ui/"),
                ("list, next page (cursor)", http, cursor_url),
                ("list, has errors", http, "/ui/?flag=errors"),
                ("list, status exited + has gaps", http, "/ui/?status=exited&flag=gaps"),
                ("list, worst case: no match", http, "/ui/?status=exited_abnormally&flag=gaps"),
                ("list, channel", http, "/ui/?channel=room-7"),
                ("list, sid prefix", http, f"/ui/?sid={sid.group(1)[:6]}"),
                ("one recording", http, f"/ui/recordings/{sid.group(1)}"),
                ("dead letters", http, "/ui/deadletters"),
                ("health", http, "/ui/health"),
            ]
            print(f"{'page':36} {'median ms':>10} {'p95 ms':>8} {'bytes':>8}")
            results = {}
            for name, client_, url in pages:
                median, p95, size = measure(client_, url, args.repeat)
                results[name] = median
                print(f"{name:36} {median:10.2f} {p95:8.2f} {size:8d}")
            print(json.dumps({"records": args.records, "events": EVENTS,
                              "median_ms": {k: round(v, 2) for k, v in results.items()}}))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
