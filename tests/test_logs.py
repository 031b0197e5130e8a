"""The JSON log pipeline: lean processors that match structlog's own output, and the
``LineWriter`` (unbuffered, or buffered for the ingress: order kept, warnings at once,
nothing lost at a normal exit, nothing written twice across a fork)."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import structlog
from conftest import wait_for

from agora_callbacks import logs


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_timestamp_has_the_format_of_structlogs_iso_utc_stamper() -> None:
    ours = logs.timestamp_utc(None, "info", {})["timestamp"]
    theirs = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})["timestamp"]
    pattern = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
    assert re.fullmatch(pattern, ours) and re.fullmatch(pattern, theirs)
    assert abs(_seconds(ours) - _seconds(theirs)) < 1.0


def _seconds(stamp: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_json_rendering_matches_json_dumps_and_falls_back_to_repr() -> None:
    event = {"event": "ncs.stored", "bytes": 770, "uni": "é", "nested": {"a": [1, None]}}
    assert logs.encode_json(dict(event)) == json.dumps(event)

    class Odd:
        def __repr__(self) -> str:
            return "<odd>"

    class WithHook:
        def __structlog__(self) -> str:
            return "hooked"

    assert json.loads(logs.encode_json({"a": Odd(), "b": WithHook()})) == {
        "a": "<odd>", "b": "hooked"}


def test_unbuffered_writer_writes_each_line_at_once(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    with path.open("w") as out:
        writer = logs.LineWriter(out.fileno())
        writer.info("one")
        assert _lines(path) == ["one"]
        writer.error("two")
        assert _lines(path) == ["one", "two"]


def test_buffered_writer_keeps_order_and_writes_warnings_at_once(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    with path.open("w") as out:
        writer = logs.LineWriter(out.fileno(), buffer_s=3600.0)  # the thread never flushes
        writer.info("a")
        writer.debug("b")
        assert _lines(path) == []  # buffered
        writer.warning("c")  # at once, after the lines before it
        assert _lines(path) == ["a", "b", "c"]
        writer.info("d")
        writer.flush()
        assert _lines(path) == ["a", "b", "c", "d"]


def test_buffered_lines_are_written_within_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    with path.open("w") as out:
        writer = logs.LineWriter(out.fileno(), buffer_s=0.05)
        for i in range(100):
            writer.info(f"line {i}")
        wait_for(lambda: len(_lines(path)) == 100, timeout=5, message="the flushing thread")
        assert _lines(path) == [f"line {i}" for i in range(100)]


def test_a_full_buffer_is_written_by_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    with path.open("w") as out:
        writer = logs.LineWriter(out.fileno(), buffer_s=3600.0)
        for i in range(logs.MAX_BUFFERED_LINES + 1):
            writer.info(str(i))
        assert len(_lines(path)) == logs.MAX_BUFFERED_LINES + 1


def test_a_forked_child_does_not_write_its_parents_lines(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    with path.open("w") as out:
        writer = logs.LineWriter(out.fileno(), buffer_s=3600.0)
        logs._writers[(-1, -1.0)] = writer  # registered like configure's writers
        try:
            writer.info("parent before fork")
            pid = os.fork()
            if pid == 0:
                try:
                    writer.info("child")
                    writer.flush()
                finally:
                    os._exit(0)
            os.waitpid(pid, 0)
            writer.flush()
        finally:
            del logs._writers[(-1, -1.0)]
    assert sorted(_lines(path)) == ["child", "parent before fork"]


_KEEP_OPEN: list[object] = []


def _child_logs(path: str) -> None:
    out = open(path, "w")  # noqa: SIM115 - open until the process ends, like stdout
    _KEEP_OPEN.append(out)
    writer = logs.LineWriter(out.fileno(), buffer_s=3600.0)
    writer.info("written when the child ends")


def test_a_multiprocessing_child_writes_its_buffer_when_it_ends(tmp_path: Path) -> None:
    """granian's workers are multiprocessing children, which end with ``os._exit``."""
    path = tmp_path / "child.log"
    process = multiprocessing.get_context("fork").Process(target=_child_logs,
                                                          args=(str(path),))
    process.start()
    process.join(30)
    assert process.exitcode == 0
    assert _lines(path) == ["written when the child ends"]


def test_configured_process_writes_json_lines_and_flushes_at_exit(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import structlog
        from agora_callbacks import logs
        logs.configure("info", "json", buffer_ms=60000)
        structlog.contextvars.bind_contextvars(request_id="r1")
        log = logs.get_logger("t")
        log.info("first", n=1)
        log.debug("hidden")
        log.info("second", n=2)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(x["event"], x["n"], x["request_id"], x["logger"], x["level"]) for x in lines] == [
        ("first", 1, "r1", "t", "info"), ("second", 2, "r1", "t", "info")]


def test_json_line_gives_the_line_of_structlogs_processor_chain() -> None:
    chain = [structlog.processors.add_log_level, logs.timestamp_utc,
             structlog.processors.StackInfoRenderer(), structlog.processors.format_exc_info,
             structlog.processors.JSONRenderer()]

    def through_chain(method: str, event: dict[str, object]) -> dict[str, object]:
        value: object = dict(event)
        for processor in chain:
            value = processor(None, method, value)  # type: ignore[arg-type]
        return _without_timestamp(str(value))

    try:
        raise ValueError("boom")
    except ValueError:
        events = [("info", {"event": "e", "n": 1}),
                  ("exception", {"event": "e", "exc_info": True}),
                  ("warning", {"event": "e", "stack_info": True})]
        for method, event in events:
            ours = _without_timestamp(logs.json_line(None, method, dict(event)))
            assert ours == through_chain(method, event)
            assert "timestamp" not in event  # the caller's dict is a copy
        line = logs.json_line(None, "exception", {"event": "e", "exc_info": True})
    rendered = json.loads(line)
    assert rendered["level"] == "error" and "ValueError: boom" in rendered["exception"]


def _without_timestamp(line: str) -> dict[str, object]:
    value = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", value.pop("timestamp"))
    if "stack" in value:  # the frames differ by the line that called the renderer
        value["stack"] = bool(value["stack"])
    return value


def test_encode_json_is_json_dumps() -> None:
    values: list[object] = [
        {"event": "x", "n": 1, "f": 0.25, "big": 10**30, "neg": -3, "t": True, "no": None,
         "uni": "é\u2028\x00\"\\", "nested": {"a": [1, "b", {"c": None}]}, "tuple": (1, 2)},
        {}, {"nan": float("nan"), "inf": float("inf")}, [1, 2], "plain",
    ]
    for value in values:
        assert logs.encode_json(value) == json.dumps(value)

    class Odd:
        def __repr__(self) -> str:
            return "<odd>"

    assert logs.encode_json({"o": Odd(), "s": {1}}) == json.dumps({"o": "<odd>", "s": "{1}"})


def test_encode_json_reports_a_cycle_like_json_dumps() -> None:
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    with pytest.raises(ValueError, match="Circular reference"):
        logs.encode_json(cyclic)
