"""Prepare prometheus_client's multi-process mode for a process tree.

prometheus_client decides once, when it is first imported, whether metric values
live in memory (one process) or in files under ``PROMETHEUS_MULTIPROC_DIR`` shared
by every process of a tree (gunicorn workers, Celery's prefork children). A
command that forks must therefore call ``ensure_multiproc_dir`` before anything
imports ``prometheus_client`` (or ``agora_callbacks.metrics``).

This module deliberately imports nothing from prometheus_client.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def ensure_multiproc_dir(process_type: str, *, wipe: bool = True) -> str:
    """Make sure ``PROMETHEUS_MULTIPROC_DIR`` names an existing, clean directory.

    When the variable is unset, a fresh private directory is created for this
    process tree (``process_type`` is only part of its name) and removed when the
    creating process exits. When it is set, the
    directory is created if missing and, with ``wipe``, emptied of the ``*.db``
    files a previous run left (prometheus_client requires a clean directory at
    start, or old counts would be added to new ones). Returns the directory.
    """
    path = os.environ.get(ENV) or os.environ.get(ENV.lower())
    if not path:
        _sweep_dead()
        path = tempfile.mkdtemp(prefix=f"{_PREFIX}{process_type}-{os.getpid()}-")
        os.environ[ENV] = path
        _remove_at_exit(path)
        return path
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    if wipe:
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
    os.environ[ENV] = str(directory)
    return str(directory)


_created: list[tuple[int, str]] = []
_PREFIX = "acb-metrics-"


def _sweep_dead() -> None:
    """Remove private directories left by process trees that are gone (``exec``'d
    servers never run their exit hooks): the creator's pid is in the name."""
    for stale in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*-*-*"):
        parts = stale.name[len(_PREFIX):].split("-")
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            continue


def _remove_at_exit(path: str) -> None:
    _created.append((os.getpid(), path))
    atexit.register(cleanup)


def cleanup() -> None:
    """Remove the directories this process created (not in forked children, which
    share them; never after ``exec``, which replaces the process). Runs at exit; call
    it explicitly where a process ends without running ``atexit`` (Celery's worker)."""
    pid = os.getpid()
    for creator, path in list(_created):
        if creator == pid:
            shutil.rmtree(path, ignore_errors=True)
            _created.remove((creator, path))


def multiproc_dir() -> str | None:
    """The multi-process directory of this process, or None in single-process mode."""
    return os.environ.get(ENV) or os.environ.get(ENV.lower()) or None
