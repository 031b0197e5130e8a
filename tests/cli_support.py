"""Run the real ``agora-callbacks`` (or ``celery``) in a subprocess, its stdout a pipe
or a terminal (a pseudo-terminal from the standard library's ``pty``)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BIN_DIR = Path(sys.executable).parent
CLI = BIN_DIR / "agora-callbacks"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    @property
    def plain_out(self) -> str:
        """stdout without colour codes."""
        return ANSI.sub("", self.out)


def environ(drop: Sequence[str] = (), **extra: str) -> dict[str, str]:
    """This process's environment without ``drop``, with ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


def run(args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
        tty: bool = False, program: Path = CLI, timeout: float = 120) -> Ran:
    """Run ``program args``; with ``tty`` its stdout is a terminal (stderr stays a file)."""
    argv = [str(program), *args]
    environment = dict(os.environ if env is None else env)
    if not tty:
        done = subprocess.run(argv, env=environment, cwd=cwd, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        return Ran(done.returncode, done.stdout.decode("utf-8", "replace"),
                   done.stderr.decode("utf-8", "replace"))
    master, slave = pty.openpty()
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, env=environment, cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=slave, stderr=err)
        finally:
            os.close(slave)
        chunks = []
        try:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the program closed its end of the terminal
                    break
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(master)
        code = proc.wait(timeout=timeout)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    stdout = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return Ran(code, stdout, stderr)


def one_error_line(err: str) -> str:
    """The one ``Error: ...`` line a refused command printed (fails on anything else:
    a traceback, two lines)."""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]
