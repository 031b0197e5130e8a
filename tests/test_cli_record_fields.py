"""The README documents every field of the recording record (``recording SID --json``):
records folded from every simulated lifecycle, with late events and a skipped gap,
are walked, and each object path and key must be in the README's table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agora_callbacks.schemas import parse_event
from agora_callbacks.simulate.lifecycles import KINDS, lifecycle
from agora_callbacks.workers.builtin.fold import fold
from agora_callbacks.workers.builtin.record import new_record

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "#### Every field of the record (version 1)"
#: Objects keyed by data, not by field name, and what the README calls their keys.
MAPS = {"streams": "<uid>", "web.rtmp": "<url>", "event_types": None, "dropped": None}
OPTIONS: list[dict[str, bool]] = [
    {}, {"with_errors": True}, {"with_failover": True},
    {"with_errors": True, "with_failover": True, "with_transcoding": True},
]


def records() -> list[dict[str, Any]]:
    out = [new_record("a" * 32)]
    for kind in KINDS:
        for options in OPTIONS:
            if options.get("with_transcoding") and kind != "individual":
                continue
            state = None
            events = lifecycle(kind, "a" * 32, seed=1, **options)  # type: ignore[arg-type]
            for envelope in events:
                state = fold(state, parse_event(envelope))
            # A late event after a skipped gap, as the workers report them.
            state = fold(state, parse_event(events[1]), late=True, gap="2-3", key="late")
            out.append(state)
    return out


def objects(value: Any, path: str, out: dict[str, set[str]]) -> None:
    """Every object path (``files[]``, ``streams.<uid>.audio``) with its keys."""
    if isinstance(value, dict):
        if set(value) <= {"code", "meaning"}:
            return  # a {code, meaning} pair, described once for all
        if path in MAPS:
            out.setdefault(path, set())
            name = MAPS[path]
            for item in value.values():
                if name is not None:
                    objects(item, f"{path}.{name}", out)
            return
        out.setdefault(path, set()).update(value)
        for key, item in value.items():
            objects(item, f"{path}.{key}" if path else key, out)
    elif isinstance(value, list):
        for item in value:
            objects(item, f"{path}[]", out)


def documented() -> list[tuple[str, str]]:
    """(first cell, whole row) of each row of the README's table."""
    text = README.read_text()
    assert SECTION in text
    section = text.split(SECTION, 1)[1].split("\n#", 1)[0]
    return [(line.split("|")[1], line) for line in section.splitlines()
            if line.startswith("| `")]


def test_the_readme_documents_every_field_of_the_record() -> None:
    found: dict[str, set[str]] = {}
    for record in records():
        objects(record, "", found)
    assert found["sequences.gaps[]"] and found["sequences.late[]"]  # the walk saw them
    rows = documented()

    def row(path: str) -> str:
        matches = [r for first, r in rows if f"`{path}`" in first]
        assert matches, f"README: no row for `{path}`"
        return matches[0]

    missing = []
    for key in found.pop(""):
        if not any(f"`{key}`" in first or f"`{key}[]`" in first for first, _ in rows):
            missing.append(key)
    for path, keys in sorted(found.items()):
        text = row(path)
        missing += [f"{path}.{key}" for key in sorted(keys) if f"`{key}`" not in text]
    assert not missing, f"README, '{SECTION}': not documented: {missing}"
