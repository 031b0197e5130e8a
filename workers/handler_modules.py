"""Importing the handler modules a worker runs, with one clear line when one fails.

Handler modules come from ``CALLBACK_HANDLERS`` (import paths, comma-separated)
and from the ``agora_callbacks.handlers`` entry-point group, whose values must be
module paths too (``myproject.handlers``, no ``:attribute``). Each is imported
through the Celery app's loader (``app.loader.import_from_cwd``), the way
``celery -A`` imports its own argument: a module in the current directory is
found without ``PYTHONPATH``.

A module that cannot be imported, or a name that is not a module, raises
``HandlerImportError``: one line naming where the name came from (the variable
or the entry point), the module, and why.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path
from types import ModuleType
from typing import Any

import agora_callbacks
from agora_callbacks.errors import ConfigError

VARIABLE = "CALLBACK_HANDLERS"
ENTRY_POINT_GROUP = "agora_callbacks.handlers"

_MODULE_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

Importer = Callable[[str], ModuleType]


class HandlerImportError(ConfigError):
    """A handler module could not be imported; the message is the whole story."""


@dataclass(frozen=True)
class Source:
    """Where a handler module's name came from, as the error message names it."""

    label: str
    module: str


def from_variable(names: Iterable[str], variable: str = VARIABLE) -> list[Source]:
    return [Source(variable, name) for name in names]


def from_entry_points(points: Iterable[EntryPoint]) -> list[Source]:
    sources = []
    for ep in points:
        label = f"entry point {ep.name!r} (group {ep.group})"
        if ep.attr:
            raise HandlerImportError(
                f"{label}: {ep.value!r} is not a module path: the value must name a module "
                f"that registers handlers when imported, e.g. {ep.module!r} (no ':attribute')")
        sources.append(Source(label, ep.module))
    return sources


#: This library's code (the workers folder and the top package, links resolved).
_OWN = tuple(str(path.resolve().parent) + os.sep
             for path in (Path(__file__), Path(agora_callbacks.__file__)))


def _where(exc: BaseException) -> str:
    """`` (at FILE, line N)``: the innermost line of the failing module's code (not
    importlib's, not this library's), or '' (a SyntaxError names its own place)."""
    if isinstance(exc, SyntaxError):
        return ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        filename = frame.filename
        if filename.startswith("<") or str(Path(filename).resolve()).startswith(_OWN):
            continue
        return f" (at {filename}, line {frame.lineno})"
    return ""


def _not_a_module(name: str, importer: Importer) -> str | None:
    """Why ``name`` is not a module, when its parent is one that has it as an attribute."""
    parent, _, attr = name.rpartition(".")
    if not parent:
        return None
    try:
        owner = importer(parent)
    except Exception:  # only a better message is at stake
        return None
    value: Any = getattr(owner, attr, None)
    if value is None or isinstance(value, ModuleType):
        return None
    return (f"{name!r} is not a module ({attr!r} is a {type(value).__name__} in {parent}): "
            f"name the module, {parent!r}")


def import_one(source: Source, importer: Importer) -> ModuleType:
    name = source.module
    if not _MODULE_PATH.match(name):
        raise HandlerImportError(
            f"{source.label}: {name!r} is not a module path (expected a dotted import path "
            "such as myhandlers or myproject.handlers)")
    try:
        return importer(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == name or name.startswith(missing + "."):
            reason = _not_a_module(name, importer) or (
                f"no module named {missing!r} in the current directory ({Path.cwd()}) "
                "or on sys.path")
            raise HandlerImportError(f"{source.label}: cannot import {name!r}: {reason}") from None
        raise HandlerImportError(
            f"{source.label}: module {name!r} failed to import: {type(exc).__name__}: "
            f"{exc}{_where(exc)}") from None
    except Exception as exc:  # its code raised: say what, and where
        raise HandlerImportError(
            f"{source.label}: module {name!r} failed to import: {type(exc).__name__}: "
            f"{exc}{_where(exc)}") from None


def import_all(sources: Iterable[Source], importer: Importer) -> list[str]:
    """Import every module of ``sources`` in order; return their names."""
    loaded = []
    for source in sources:
        import_one(source, importer)
        loaded.append(source.module)
    return loaded
